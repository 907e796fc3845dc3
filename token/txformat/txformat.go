package txformat

import (
	"errors"
	"fmt"
)

// Format names a recognised transaction format.
type Format string

// The formats this package recognises.
const (
	// FormatPain001 is an ISO 20022 Customer Credit Transfer Initiation,
	// message version pain.001.001.09, in XML.
	FormatPain001 Format = "pain.001.001.09"
	// FormatTransferJSON is Keyward's own single-transfer JSON object.
	FormatTransferJSON Format = "keyward.transfer.v1"
)

// Limits applied to every input before or while it is parsed.
const (
	// MaxDocumentSize is the largest input accepted, in bytes (1 MiB).
	MaxDocumentSize = 1 << 20
	// MaxDepth is the deepest element nesting accepted in XML; the root
	// element is at depth 1.
	MaxDepth = 32
	// MaxTransfers is the largest number of transactions in one document.
	MaxTransfers = 1000
)

// Transfer is one credit transfer as displayed to the holder.
type Transfer struct {
	PayerAccount string // debtor account, surrounding spaces trimmed
	PayeeAccount string // creditor account, surrounding spaces trimmed
	PayeeName    string // creditor name, exactly as in the input
	PayeeBank    string // creditor's bank: a BIC or a name, exactly as in the input

	// Amount is the decimal string exactly as in the input. The parsers
	// only accept the normalised form: digits, optionally '.' and at most
	// the currency's minor-unit digits; no sign, exponent, leading zeros or
	// surrounding space.
	Amount string
	// Currency is an ISO 4217 alpha-3 code from the table in the package
	// documentation.
	Currency string
	// Purpose is the unstructured remittance text; empty if none was given.
	Purpose string
	// EndToEndID is the pain.001 PmtId/EndToEndId; for JSON, the nonce.
	EndToEndID string
}

// Document is a recognised, fully validated document.
//
// A Document describes the bytes it was parsed from; it is not a way to
// rebuild them. Sign the very bytes that were parsed (R-DC-3).
type Document struct {
	Format    Format
	MessageID string     // pain.001 GrpHdr/MsgId; JSON: the nonce
	Requested string     // requested execution date or date-time, as written
	Transfers []Transfer // one or more, in document order

	// Total is the exact sum of the transfers' amounts per currency code,
	// written with exactly the currency's minor-unit digits and no grouping
	// ("6234.50" for CNY, "1000" for JPY).
	Total map[string]string
}

// ErrUnrecognised is returned when the input is not one of the formats:
// it starts (after optional white space) with neither '{' nor '<'.
var ErrUnrecognised = errors.New("txformat: unrecognised format")

// ErrInvalid is returned when the input was taken to be one of the formats
// but is refused. Errors that wrap it are *FieldError values naming the
// field or XML path at fault.
var ErrInvalid = errors.New("txformat: invalid document")

// FieldError is the error returned for a refused document. It wraps
// ErrInvalid, so test with errors.Is(err, ErrInvalid); use errors.As to
// reach the path, for example to highlight the field in a user interface.
type FieldError struct {
	// Path names what is wrong. For JSON it is the field name
	// ("amount"); for XML it is the element path from the root, with a
	// 1-based index on repeatable elements and "@" before an attribute
	// ("Document/CstmrCdtTrfInitn/PmtInf[1]/CdtTrfTxInf[2]/Amt/InstdAmt/@Ccy").
	// Names taken from the input that are not the format's own (an unknown
	// JSON key, an odd element name) are quoted as Go strings. It is empty
	// when the fault lies with the document as a whole
	// (size, encoding, trailing data, malformed syntax).
	Path string
	// Reason says what is wrong, for a person to act on.
	Reason string
}

// Error implements error.
func (e *FieldError) Error() string {
	if e.Path == "" {
		return ErrInvalid.Error() + ": " + e.Reason
	}
	return ErrInvalid.Error() + ": " + e.Path + ": " + e.Reason
}

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// invalid builds a *FieldError.
func invalid(path, format string, args ...any) error {
	return &FieldError{Path: path, Reason: fmt.Sprintf(format, args...)}
}

// Recognise identifies the format of b and parses it.
//
// The choice is made on the first byte after optional JSON white space
// (space, tab, CR, LF): '{' selects keyward.transfer.v1 (ParseTransferJSON)
// and '<' selects pain.001.001.09 (ParsePain001). Any other input, including
// empty input and input starting with a byte order mark, yields an error
// wrapping ErrUnrecognised. Once a format is chosen, every refusal wraps
// ErrInvalid: a document that looks like JSON or XML but is not exactly one
// of the formats is refused, never passed on to the other parser.
func Recognise(b []byte) (*Document, error) {
	if len(b) > MaxDocumentSize {
		return nil, invalid("", "document is %d bytes, larger than the %d-byte limit", len(b), MaxDocumentSize)
	}
	for i, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return ParseTransferJSON(b)
		case '<':
			return ParsePain001(b)
		default:
			return nil, fmt.Errorf("%w: byte %d is 0x%02x, expected '{' (%s) or '<' (%s)",
				ErrUnrecognised, i, c, FormatTransferJSON, FormatPain001)
		}
	}
	return nil, fmt.Errorf("%w: input is empty or only white space", ErrUnrecognised)
}
