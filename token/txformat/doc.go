// Package txformat recognises the data a customer's key is asked to sign,
// validates it strictly and renders the fields the key holder must confirm.
//
// It serves two requirements (../shared/REQUIREMENTS.md):
//
//   - R-DC-2: the format of the data to be signed is recognised
//     automatically and its key fields — payee, account, amount,
//     currency — are displayed. [Recognise] identifies the format and
//     [Document.DisplayLines] produces the text to show.
//   - R-DC-3: what is displayed is exactly what is signed. Every rule below
//     exists so that no byte sequence can be displayed as one instruction
//     and executed as another: anything ambiguous is refused, not repaired.
//
// The caller must sign the very bytes it passed to Recognise, never a
// re-encoding of the Document, and must show every line of DisplayLines.
//
// # Formats
//
// Two formats are recognised. [Recognise] chooses by the first byte after
// optional white space: '{' means keyward.transfer.v1 and '<' means
// pain.001.001.09. Anything else is [ErrUnrecognised]. After that choice
// every refusal is [ErrInvalid], carried by a [*FieldError] whose Path names
// the JSON field or XML element at fault.
//
// Limits common to both: at most [MaxDocumentSize] bytes (1 MiB), valid
// UTF-8 throughout, at most [MaxTransfers] transactions.
//
// # Field rules
//
// These apply to both formats.
//
// Amount: the regular expression ^[0-9]+(\.[0-9]+)?$, greater than zero,
// at most 18 integer digits, no leading zero ("0.50" is fine, "007" is
// not), and no more decimals than the currency's minor units. Trailing
// zeros within that limit are kept ("1.50" and "1.5" are both accepted, as
// written). So "1e3", "-5", "+5", " 5", "5.", ".5", "1,000" and "0" are all
// refused, as are "1.234" CNY and "1.5" JPY.
//
// Currency: one of these ISO 4217 codes, upper case, with its minor units:
//
//	CNY 2   USD 2   EUR 2   HKD 2   GBP 2
//	JPY 0   KRW 0
//	BHD 3   KWD 3
//
// Accounts: after trimming surrounding spaces, 6 to 34 characters of
// A-Z, a-z, 0-9 and space. In pain.001 an IBAN element must also match the
// ISO 20022 IBAN pattern (no spaces) and carry correct mod-97 check digits.
//
// Names, bank names, purpose and pain.001 identifiers: 1 to 140 characters
// (1 to 35 for MsgId, EndToEndId and the like), no leading or trailing
// white space, and none of: control characters (tab and newline
// included), the line and paragraph separators U+2028 and U+2029, Unicode
// bidirectional controls (U+202A–U+202E, U+2066–U+2069, and the marks
// U+200E, U+200F, U+061C — they can make text display in a different
// order than it is stored), other invisible format characters (category
// Cf, except the zero-width non-joiner U+200C and joiner U+200D that some
// scripts need), private-use characters, the blank fillers U+115F,
// U+1160, U+3164, U+FFA0 and U+2800 that display as nothing, and U+FFFD,
// which is what a lone-surrogate escape such as "\ud800" decodes to. The
// first character may not be a combining mark.
//
// # keyward.transfer.v1 (JSON)
//
// One JSON object, exactly these members, every value a JSON string:
//
//	{
//	  "type":          "keyward.transfer.v1",        required, exactly this
//	  "payer_account": "6222 0202 0011 2233 445",    required, account rule
//	  "payee_account": "6222 0200 1234 5678",        required, account rule
//	  "payee_name":    "李雷",                        required, 1–140, name rule
//	  "payee_bank":    "ICBC Beijing",               required, 1–140, name rule
//	  "amount":        "1234.50",                    required, amount rule
//	  "currency":      "CNY",                        required, currency table
//	  "purpose":       "货款 发票号 20260215",          optional, 1–140 if present
//	  "requested_at":  "2026-03-02T09:30:00+08:00",  required, RFC 3339
//	  "nonce":         "k7Qm2vX9pL4sT8wZ"            required, 16–64 of [A-Za-z0-9_-]
//	}
//
// Members may come in any order on input. Refused: invalid UTF-8; any
// value that is not a string (numbers, booleans, null, arrays, objects);
// a missing required member; an unknown member (keys are compared
// exactly, so "Amount" is unknown); a member given twice, even when the
// two keys are spelled differently but decode equal ("type" and
// "\u0074ype"); anything but white space after the object.
//
// "requested_at" must match
// ^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$ and
// name a real instant; it is kept as written. The nonce becomes both
// [Document.MessageID] and [Transfer.EndToEndID].
//
// The canonical form, produced by [CanonicalJSON], has the members in the
// order above, "purpose" omitted when empty, no white space, and strings
// escaped as encoding/json does without HTML escaping.
//
// # pain.001.001.09 (XML)
//
// An ISO 20022 Customer Credit Transfer Initiation, version 09. The
// accepted subset, in XSD sequence order (? optional, * repeatable,
// | exactly one of):
//
//	Document                                  xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
//	  CstmrCdtTrfInitn
//	    GrpHdr
//	      MsgId                               → Document.MessageID (Max35Text)
//	      CreDtTm                             ISODateTime
//	      NbOfTxs                             must equal the number of CdtTrfTxInf
//	      CtrlSum?                            must equal the sum of all InstdAmt
//	      InitgPty { Nm? }
//	    PmtInf+
//	      PmtInfId                            Max35Text
//	      PmtMtd                              TRF only
//	      BtchBookg?                          true | false
//	      NbOfTxs?                            must equal this PmtInf's CdtTrfTxInf count
//	      CtrlSum?                            must equal this PmtInf's sum
//	      PmtTpInf? { InstrPrty?, SvcLvl* {Cd|Prtry}, LclInstrm? {Cd|Prtry}, CtgyPurp? {Cd|Prtry} }
//	      ReqdExctnDt { Dt | DtTm }           → Document.Requested, as written
//	      Dbtr { Nm? }
//	      DbtrAcct { Id { IBAN | Othr { Id, SchmeNm? {Cd|Prtry} } } }  → PayerAccount
//	      DbtrAgt { FinInstnId { BICFI | Nm } }
//	      CdtTrfTxInf+
//	        PmtId { InstrId?, EndToEndId }    → EndToEndID
//	        Amt { InstdAmt Ccy="…" }          → Amount, Currency
//	        CdtrAgt { FinInstnId { BICFI | Nm } }                      → PayeeBank
//	        Cdtr { Nm }                       → PayeeName
//	        CdtrAcct { Id { IBAN | Othr { Id, SchmeNm? } } }           → PayeeAccount
//	        RmtInf? { Ustrd }                 → Purpose
//
// Every element must be in the pain.001.001.09 namespace (any prefix).
// Attributes allowed: namespace declarations anywhere, xsi:schemaLocation
// on Document, Ccy on InstdAmt. Refused, with the path of the element:
//
//   - any element not in the tree above, even one the XSD allows: an
//     element this package does not display (UltmtCdtr, IntrmyAgt1,
//     EqvtAmt, InstrForCdtrAgt, …) could change what the bank does;
//   - a singleton element given twice (two InstdAmt in one transaction),
//     elements out of sequence order, a missing required element, both or
//     neither of a choice — including BICFI and Nm together, since the name
//     shown could belong to a different bank than the BIC that routes;
//   - text in an element that holds elements, other than white space;
//     elements inside a text element; text split by CDATA sections;
//   - leaf values that break their rule (see Field rules; dates must be
//     real dates; NbOfTxs is 1–15 digits; CtrlSum is a decimal of at most
//     18 digits); leaf text is not trimmed, so "<Nm> 李雷</Nm>" is refused;
//   - NbOfTxs or CtrlSum that disagree with the transactions (control
//     sums add amounts regardless of currency, as ISO 20022 defines);
//   - PmtInf blocks with different ReqdExctnDt values: the Document shows
//     one execution date;
//   - any DOCTYPE or other markup declaration (so no entity declarations
//     and no billion laughs), references to entities other than the five
//     predefined and numeric character references, comments (a comment
//     can split a value so that a naive receiver reads only part of it),
//     processing instructions, an XML declaration that is not first,
//     not version 1.0 or names an encoding other than UTF-8;
//   - a second root element or text after the root;
//   - nesting deeper than [MaxDepth] (32) elements; more than
//     [MaxTransfers] CdtTrfTxInf; more than 100,000 elements in all.
//
// # Display
//
// [Document.DisplayLines] documents the exact layout in English and
// [Document.DisplayLinesIn] the Chinese one (the bank's default language,
// issue 18), with CNY amounts also in Chinese capitals (大写金额). Amounts
// are shown with thousands separators and the currency's minor-unit
// digits; accounts are regrouped in fours; everything else is shown as
// parsed, in whatever script it was written. Languages, grouping and the
// capitals come from package token/l10n, the one place for them.
//
// # Concurrency
//
// All functions are safe for concurrent use. A Document is a plain value;
// the package never modifies one after returning it.
//
// # Limitations
//
//   - Only the subset above of pain.001.001.09 is accepted. Files using
//     other elements (for example ClrSysMmbId for CNAPS bank codes,
//     structured remittance, ultimate parties, postal addresses) are
//     refused and must be simplified by the sender.
//   - Text is checked for invisible and reordering characters, not for
//     look-alike characters from other scripts (confusables); the holder
//     still has to read the name.
//   - Names may contain parentheses and words such as "at", so a payee
//     name can imitate the account and bank parts of the "Pay …" line.
//     The line still shows the real account and bank after the name;
//     interfaces that can should also show the fields separately
//     ([Transfer] has them).
//   - The package checks what the data says, not whether it is legitimate;
//     authenticating the requester and binding the confirmation to the
//     signature are the caller's part of R-DC-3.
package txformat
