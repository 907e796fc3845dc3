package txformat

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode/utf8"
)

// jsonFields lists the keyward.transfer.v1 fields in canonical order.
var jsonFields = []string{
	"type", "payer_account", "payee_account", "payee_name", "payee_bank",
	"amount", "currency", "purpose", "requested_at", "nonce",
}

// ParseTransferJSON parses and validates a keyward.transfer.v1 object; see
// the package documentation for the schema and every rule applied.
//
// The object is read token by token (encoding/json's Unmarshal would keep
// the last of two equal keys, match keys case-insensitively and accept
// unknown fields — each a way to show one value and sign another).
func ParseTransferJSON(b []byte) (*Document, error) {
	if len(b) > MaxDocumentSize {
		return nil, invalid("", "document is %d bytes, larger than the %d-byte limit", len(b), MaxDocumentSize)
	}
	if !utf8.Valid(b) {
		return nil, invalid("", "document is not valid UTF-8")
	}
	vals, err := readFlatObject(b)
	if err != nil {
		return nil, err
	}
	for _, k := range jsonFields {
		if _, ok := vals[k]; !ok && k != "purpose" {
			return nil, invalid(k, "required field is missing")
		}
	}
	if vals["type"] != string(FormatTransferJSON) {
		return nil, invalid("type", "must be %q, is %s", FormatTransferJSON, quote(vals["type"]))
	}
	t := Transfer{Currency: vals["currency"], Amount: vals["amount"], EndToEndID: vals["nonce"]}
	var why string
	if t.PayerAccount, why = checkAccount(vals["payer_account"]); why != "" {
		return nil, invalid("payer_account", "%s", why)
	}
	if t.PayeeAccount, why = checkAccount(vals["payee_account"]); why != "" {
		return nil, invalid("payee_account", "%s", why)
	}
	t.PayeeName = vals["payee_name"]
	if why = checkText(t.PayeeName, 1, 140); why != "" {
		return nil, invalid("payee_name", "%s", why)
	}
	t.PayeeBank = vals["payee_bank"]
	if why = checkText(t.PayeeBank, 1, 140); why != "" {
		return nil, invalid("payee_bank", "%s", why)
	}
	if why = checkCurrency(t.Currency); why != "" {
		return nil, invalid("currency", "%s", why)
	}
	if why = checkAmount(t.Amount, t.Currency); why != "" {
		return nil, invalid("amount", "%s", why)
	}
	if p, ok := vals["purpose"]; ok {
		if why = checkText(p, 1, 140); why != "" {
			return nil, invalid("purpose", "%s", why)
		}
		t.Purpose = p
	}
	requested := vals["requested_at"]
	if why = checkRFC3339(requested); why != "" {
		return nil, invalid("requested_at", "%s", why)
	}
	if why = checkNonce(t.EndToEndID); why != "" {
		return nil, invalid("nonce", "%s", why)
	}
	doc := &Document{
		Format:    FormatTransferJSON,
		MessageID: t.EndToEndID,
		Requested: requested,
		Transfers: []Transfer{t},
	}
	doc.Total = totals(doc.Transfers)
	return doc, nil
}

// readFlatObject reads exactly one JSON object whose members are all
// strings, refusing unknown and duplicate keys and anything after the
// object but white space.
func readFlatObject(b []byte) (map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonSyntax(dec, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, invalid("", "document must be a single JSON object")
	}
	vals := make(map[string]string, len(jsonFields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonSyntax(dec, err)
		}
		key := tok.(string) // inside an object, Token yields keys as strings
		if !isJSONField(key) {
			return nil, invalid(quote(key), "unknown field; %s has only %s", FormatTransferJSON, strings.Join(jsonFields, ", "))
		}
		if _, dup := vals[key]; dup {
			return nil, invalid(key, "field appears more than once")
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, jsonSyntax(dec, err)
		}
		s, ok := tok.(string)
		if !ok {
			return nil, invalid(key, "must be a JSON string, is %s", jsonKind(tok))
		}
		vals[key] = s
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, jsonSyntax(dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("", "trailing data after the JSON object at byte offset %d", dec.InputOffset())
	}
	return vals, nil
}

func isJSONField(k string) bool {
	for _, f := range jsonFields {
		if f == k {
			return true
		}
	}
	return false
}

func jsonKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "an object"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "not a string"
}

func jsonSyntax(dec *json.Decoder, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return invalid("", "malformed JSON at byte offset %d: %v", se.Offset, err)
	}
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return invalid("", "JSON object is incomplete")
	}
	return invalid("", "malformed JSON at byte offset %d: %v", dec.InputOffset(), err)
}

// CanonicalJSON returns the canonical keyward.transfer.v1 encoding of t:
// one object with the fields in the documented order, "purpose" left out
// when empty, no white space, and strings escaped by encoding/json without
// HTML escaping. requestedAt and nonce fill "requested_at" and "nonce";
// t.EndToEndID must be empty or equal to nonce.
//
// The result is parsed back before it is returned, so CanonicalJSON never
// produces a document ParseTransferJSON refuses or reads differently; such
// a t yields an error wrapping ErrInvalid.
func CanonicalJSON(t Transfer, requestedAt, nonce string) ([]byte, error) {
	if t.EndToEndID != "" && t.EndToEndID != nonce {
		return nil, invalid("nonce", "differs from the transfer's EndToEndID")
	}
	vals := []string{
		string(FormatTransferJSON), t.PayerAccount, t.PayeeAccount, t.PayeeName, t.PayeeBank,
		t.Amount, t.Currency, t.Purpose, requestedAt, nonce,
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, k := range jsonFields {
		if k == "purpose" && t.Purpose == "" {
			continue
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		writeJSONString(&buf, k)
		buf.WriteByte(':')
		writeJSONString(&buf, vals[i])
	}
	buf.WriteByte('}')
	doc, err := ParseTransferJSON(buf.Bytes())
	if err != nil {
		return nil, err
	}
	t.EndToEndID = nonce
	if got := doc.Transfers[0]; got != t {
		return nil, invalid("", "transfer is not in canonical form (for example, an account with surrounding spaces)")
	}
	return buf.Bytes(), nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // encoding a string cannot fail
	buf.Truncate(buf.Len() - 1)
}
