package pkcs11shim

import (
	"errors"
	"fmt"
	"math/bits"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/keyward/keyward/token/pinsource"
)

// ErrInvalidURI is wrapped by every error ParseURI returns, so callers can
// test for it with errors.Is. The message after it names the offending
// attribute and says how to fix it.
//
// Per requirement R-TOK-4 these errors never contain a pin-value's value
// nor the pin-source value, and never quote the URI as a whole: an operator
// who pastes a PIN into a URI must not find it echoed into logs.
var ErrInvalidURI = errors.New("pkcs11shim: invalid PKCS#11 URI")

// URI is a parsed RFC 7512 PKCS#11 URI.
//
// A field left at its zero value was not given in the URI and matches
// anything. ParseURI never produces an empty-but-given value (it refuses
// "token=" and the like), so the zero value is never ambiguous.
type URI struct {
	// Path attributes, in canonical order.

	// Token is token= (CK_TOKEN_INFO.label).
	Token string
	// Manufacturer is manufacturer= (CK_TOKEN_INFO.manufacturerID).
	Manufacturer string
	// Serial is serial= (CK_TOKEN_INFO.serialNumber).
	Serial string
	// Model is model= (CK_TOKEN_INFO.model).
	Model string
	// LibraryManufacturer is library-manufacturer= (CK_INFO.manufacturerID).
	LibraryManufacturer string
	// LibraryDescription is library-description= (CK_INFO.libraryDescription).
	LibraryDescription string
	// LibraryVersion is library-version= (CK_INFO.libraryVersion), "M" or
	// "M.N" in decimal, each part 0-255. It is kept as written.
	LibraryVersion string
	// SlotDescription is slot-description= (CK_SLOT_INFO.slotDescription).
	SlotDescription string
	// SlotManufacturer is slot-manufacturer= (CK_SLOT_INFO.manufacturerID).
	SlotManufacturer string
	// SlotID is slot-id= (CK_SLOT_ID, decimal); nil when not given. It is
	// kept for completeness, but callers never select a token by it alone:
	// slot ids move when tokens are initialised or HSMs restart (see
	// SelectorFromURI).
	SlotID *uint
	// Object is object= (CKA_LABEL).
	Object string
	// ID is id= (CKA_ID), the percent-decoded bytes; nil when not given.
	ID []byte
	// Type is type= (CKA_CLASS): one of "public", "private", "cert",
	// "secret-key" or "data".
	Type string

	// Query attributes.

	// ModulePath is module-path=, the absolute path of the PKCS#11 library.
	// It is never given together with ModuleName.
	ModulePath string
	// ModuleName is module-name=, a bare library name without any directory.
	// It is never given together with ModulePath.
	ModuleName string
	// PINSource is pin-source=, where the PIN comes from, in the grammar of
	// ParsePINSource ("file:/abs/path", "env:NAME", "prompt", ...). It is
	// kept verbatim after percent-decoding; ParsePINSource accepts it.
	PINSource string

	// There is deliberately no PINValue: pin-value= is refused, because a
	// PIN must never appear in a URI, a configuration file or argv
	// (requirement R-TOK-4).
}

// uriScheme is the RFC 7512 scheme, compared case-insensitively.
const uriScheme = "pkcs11:"

// uriMaxQuote bounds how much of a value or name an error message quotes.
const uriMaxQuote = 64

// uriPart is a component of a PKCS#11 URI.
type uriPart bool

const (
	uriPath  uriPart = false // before "?", attributes separated by ";"
	uriQuery uriPart = true  // after "?", attributes separated by "&"
)

func (p uriPart) String() string {
	if p == uriQuery {
		return "query"
	}
	return "path"
}

// sep returns the attribute separator of p.
func (p uriPart) sep() string {
	if p == uriQuery {
		return "&"
	}
	return ";"
}

// uriPathNames and uriQueryNames are the attribute names RFC 7512 defines
// for each component. pin-value is listed so that it is recognised (and
// refused with its own message) rather than reported as unknown.
var (
	uriPathNames = map[string]bool{
		"token": true, "manufacturer": true, "serial": true, "model": true,
		"library-manufacturer": true, "library-description": true, "library-version": true,
		"slot-description": true, "slot-manufacturer": true, "slot-id": true,
		"object": true, "id": true, "type": true,
	}
	uriQueryNames = map[string]bool{
		"module-path": true, "module-name": true, "pin-source": true, "pin-value": true,
	}
)

// uriObjectTypes are the values type= may take (RFC 7512, section 2.3).
var uriObjectTypes = []string{"public", "private", "cert", "secret-key", "data"}

// Character sets of RFC 7512, section 2.3. Bytes outside a value's set
// must be percent-encoded.
//
//	pk11-res-avail       = ":" / "[" / "]" / "@" / "!" / "$" /
//	                       "'" / "(" / ")" / "*" / "+" / "," / "="
//	pk11-path-res-avail  = pk11-res-avail / "&"
//	pk11-query-res-avail = pk11-res-avail / "/" / "?" / "|"
//	pk11-pchar           = unreserved / pk11-path-res-avail / pct-encoded
//	pk11-qchar           = unreserved / pk11-query-res-avail / pct-encoded
var (
	uriPathChars  = uriCharSet(":[]@!$'()*+,=&")
	uriQueryChars = uriCharSet(":[]@!$'()*+,=/?|")

	// String leaves fewer characters unencoded than the grammar allows:
	// only the unreserved ones, plus "/" and ":" in the query so that paths
	// and pin sources stay readable. In particular "+" is always encoded,
	// because form decoders would read it as a space.
	uriPathVerbatim  = uriCharSet("")
	uriQueryVerbatim = uriCharSet("/:")
	uriNoVerbatim    = [256]bool{} // id=: every byte is encoded
)

// uriCharSet returns the RFC 3986 unreserved characters plus extra.
func uriCharSet(extra string) *[256]bool {
	var set [256]bool
	for c := 'a'; c <= 'z'; c++ {
		set[c] = true
		set[c-'a'+'A'] = true
	}
	for c := '0'; c <= '9'; c++ {
		set[c] = true
	}
	for _, c := range []byte("-._~" + extra) {
		set[c] = true
	}
	return &set
}

// ParseURI parses s as an RFC 7512 PKCS#11 URI, strictly.
//
// The scheme "pkcs11:" is matched case-insensitively; attribute names are
// lower case. "pkcs11:" alone is valid and matches everything. Values are
// percent-decoded. ParseURI refuses, with an error wrapping ErrInvalidURI:
//
//   - a fragment ("#"), an empty attribute (stray ";" or "&"), an attribute
//     without "=", and characters that must be percent-encoded but are not;
//   - unknown attributes, except vendor attributes "x-...", which are
//     checked for syntax and then ignored;
//   - an attribute given twice (vendor query attributes may repeat, as
//     RFC 7512 allows);
//   - an empty value ("token="), which would otherwise read as "any token";
//   - malformed percent-encoding ("%zz", "%4");
//   - a type other than public, private, cert, secret-key or data; a
//     slot-id that is not a decimal unsigned integer; a library-version
//     that is not M or M.N with parts 0-255;
//   - text attributes that are not UTF-8 or contain NUL;
//   - a relative module-path, a module-name containing a directory, and
//     module-name and module-path together;
//   - pin-value, always (requirement R-TOK-4): use pin-source;
//   - a pin-source that ParsePINSource refuses (the one PIN-source
//     grammar: file:/abs/path, file:///abs/path, /abs/path, env:NAME,
//     prompt, prompt:Label); its error also matches ErrPINSourceSyntax (pinsource.ErrSyntax).
func ParseURI(s string) (*URI, error) {
	if len(s) < len(uriScheme) || !strings.EqualFold(s[:len(uriScheme)], uriScheme) {
		return nil, uriErrorf("must start with %q, e.g. pkcs11:token=bank;object=receipt", uriScheme)
	}
	rest := s[len(uriScheme):]
	path, query, _ := strings.Cut(rest, "?")
	var pathAttrs, queryAttrs []string
	if path != "" {
		pathAttrs = strings.Split(path, ";")
	}
	if query != "" {
		queryAttrs = strings.Split(query, "&")
	}

	// pin-value is refused before anything else is looked at, so that no
	// later error can quote any part of the PIN.
	for _, attrs := range [][]string{pathAttrs, queryAttrs} {
		for _, a := range attrs {
			if name, _, _ := strings.Cut(a, "="); strings.EqualFold(name, "pin-value") {
				return nil, uriErrorf("pin-value is not supported: a PIN must never be written in a URI (R-TOK-4); use pin-source=file:/abs/path or pin-source=env:NAME instead")
			}
		}
	}
	if strings.Contains(rest, "#") {
		return nil, uriErrorf(`fragment ("#") not allowed; percent-encode a literal "#" in a value as %%23`)
	}

	u := new(URI)
	seen := make(map[string]bool)
	for i, item := range pathAttrs {
		if err := u.uriParseAttr(uriPath, i, item, seen); err != nil {
			return nil, err
		}
	}
	seen = make(map[string]bool)
	for i, item := range queryAttrs {
		if err := u.uriParseAttr(uriQuery, i, item, seen); err != nil {
			return nil, err
		}
	}
	if u.ModuleName != "" && u.ModulePath != "" {
		return nil, uriErrorf("module-name and module-path are both given; they are conflicting selectors for the PKCS#11 library, give only one (preferably module-path)")
	}
	return u, nil
}

// uriParseAttr parses item, the i-th (0-based) attribute of part, into u.
// seen holds the names already given in part.
func (u *URI) uriParseAttr(part uriPart, i int, item string, seen map[string]bool) error {
	if item == "" {
		return uriErrorf("empty %s attribute; remove the stray %q", part, part.sep())
	}
	name, raw, ok := strings.Cut(item, "=")
	if !ok {
		if part == uriQuery {
			// Not quoted: it may be a PIN pasted where an attribute belongs.
			return uriErrorf("query attribute #%d has no \"=\"; write name=value (its text is not shown in case it is a secret)", i+1)
		}
		return uriErrorf("path attribute %s has no \"=\"; write name=value", uriQuote(item))
	}
	if name == "" {
		return uriErrorf("empty attribute name in %s attribute #%d; write name=value", part, i+1)
	}
	if !uriValidName(name) {
		return uriErrorf("invalid attribute name %s; names consist of letters, digits, \"-\" and \"_\"", uriQuote(name))
	}

	vendor := strings.HasPrefix(name, "x-") && len(name) > len("x-")
	switch {
	case vendor:
		// RFC 7512 lets vendor attributes repeat in the query only.
		if seen[name] && part == uriPath {
			return uriErrorf("attribute %q given twice", name)
		}
		seen[name] = true
		// Checked for syntax, then ignored.
		_, err := uriUnescape(name, raw, part)
		return err
	case part == uriPath && !uriPathNames[name], part == uriQuery && !uriQueryNames[name]:
		return uriUnknownAttr(part, name)
	case seen[name]:
		return uriErrorf("attribute %q given twice", name)
	case raw == "":
		return uriErrorf("attribute %q has an empty value; leave the attribute out to match any value", name)
	}
	seen[name] = true

	v, err := uriUnescape(name, raw, part)
	if err != nil {
		return err
	}
	if part == uriQuery {
		return u.uriSetQuery(name, v)
	}
	return u.uriSetPath(name, v)
}

// uriSetPath stores the decoded value v of path attribute name.
func (u *URI) uriSetPath(name, v string) error {
	var text *string
	switch name {
	case "token":
		text = &u.Token
	case "manufacturer":
		text = &u.Manufacturer
	case "serial":
		text = &u.Serial
	case "model":
		text = &u.Model
	case "library-manufacturer":
		text = &u.LibraryManufacturer
	case "library-description":
		text = &u.LibraryDescription
	case "slot-description":
		text = &u.SlotDescription
	case "slot-manufacturer":
		text = &u.SlotManufacturer
	case "object":
		text = &u.Object
	case "library-version":
		if err := uriCheckVersion(v); err != nil {
			return err
		}
		u.LibraryVersion = v
		return nil
	case "slot-id":
		if !uriDigits(v) {
			return uriErrorf("slot-id %s must be a decimal unsigned integer, e.g. slot-id=0", uriQuote(v))
		}
		n, err := strconv.ParseUint(v, 10, bits.UintSize)
		if err != nil {
			return uriErrorf("slot-id %s is out of range", uriQuote(v))
		}
		id := uint(n)
		u.SlotID = &id
		return nil
	case "id":
		u.ID = []byte(v)
		return nil
	case "type":
		if !slices.Contains(uriObjectTypes, v) {
			return uriErrorf("type %s is not one of %s", uriQuote(v), strings.Join(uriObjectTypes, ", "))
		}
		u.Type = v
		return nil
	default:
		return uriUnknownAttr(uriPath, name)
	}
	if err := uriCheckText(name, v); err != nil {
		return err
	}
	*text = v
	return nil
}

// uriSetQuery stores the decoded value v of query attribute name.
func (u *URI) uriSetQuery(name, v string) error {
	if strings.IndexByte(v, 0) >= 0 {
		return uriErrorf("attribute %q contains a NUL byte (%%00)", name)
	}
	switch name {
	case "module-path":
		if !filepath.IsAbs(v) {
			return uriErrorf("module-path must be an absolute path, e.g. /usr/lib/softhsm/libsofthsm2.so; got %s", uriQuote(v))
		}
		u.ModulePath = v
	case "module-name":
		if strings.ContainsAny(v, `/\`) {
			return uriErrorf("module-name %s must be a bare library name without a directory; use module-path for a path", uriQuote(v))
		}
		u.ModuleName = v
	case "pin-source":
		if err := uriCheckPINSource(v); err != nil {
			return err
		}
		u.PINSource = v
	default:
		// pin-value never gets here: ParseURI refuses it up front.
		return uriUnknownAttr(uriQuery, name)
	}
	return nil
}

// uriCheckPINSource checks a decoded pin-source value with the one
// PIN-source grammar (ParsePINSource). Its errors do not quote v: it may
// be a PIN given where a source belongs.
func uriCheckPINSource(v string) error {
	if _, err := pinsource.Parse(v); err != nil {
		return fmt.Errorf("%w: pin-source: %w", ErrInvalidURI, err)
	}
	return nil
}

// uriCheckText checks a decoded text attribute: PKCS#11 strings are UTF-8
// and can hold no NUL.
func uriCheckText(name, v string) error {
	if strings.IndexByte(v, 0) >= 0 {
		return uriErrorf("attribute %q contains a NUL byte (%%00)", name)
	}
	if !utf8.ValidString(v) {
		return uriErrorf("attribute %q is not valid UTF-8 after percent-decoding", name)
	}
	return nil
}

// uriCheckVersion checks a library-version value: M or M.N, each a decimal
// number that fits a CK_VERSION byte.
func uriCheckVersion(v string) error {
	major, minor, dot := strings.Cut(v, ".")
	if !uriDigits(major) || dot && !uriDigits(minor) {
		return uriErrorf("library-version %s must be M or M.N in decimal digits, e.g. 2.6", uriQuote(v))
	}
	for _, part := range []string{major, minor} {
		if part == "" {
			continue
		}
		if _, err := strconv.ParseUint(part, 10, 8); err != nil {
			return uriErrorf("library-version %s is out of range; major and minor are each 0-255", uriQuote(v))
		}
	}
	return nil
}

// uriUnknownAttr returns the error for an attribute name that part does
// not define, with a hint for the usual mistakes.
func uriUnknownAttr(part uriPart, name string) error {
	own, other, where := uriPathNames, uriQueryNames, `after "?"`
	if part == uriQuery {
		own, other, where = uriQueryNames, uriPathNames, `before "?"`
	}
	switch lower := strings.ToLower(name); {
	case lower != name && (own[lower] || other[lower]):
		return uriErrorf("unknown %s attribute %s; attribute names are lower case: write %q", part, uriQuote(name), lower)
	case other[name]:
		return uriErrorf("%q is a %s attribute, not a %s attribute; put it %s", name, !part, part, where)
	}
	return uriErrorf("unknown %s attribute %s; vendor attributes must start with \"x-\"", part, uriQuote(name))
}

// uriUnescape checks that raw, the value of attribute name in part, uses
// only the characters the grammar allows there and well-formed
// percent-encoding, and returns it decoded. Query values other than
// module-path and module-name are never quoted in errors.
func uriUnescape(name, raw string, part uriPart) (string, error) {
	allowed := uriPathChars
	if part == uriQuery {
		allowed = uriQueryChars
	}
	quiet := part == uriQuery && name != "module-path" && name != "module-name"
	buf := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' {
			if i+2 >= len(raw) || uriUnhex(raw[i+1]) < 0 || uriUnhex(raw[i+2]) < 0 {
				if quiet {
					return "", uriErrorf("attribute %q: invalid percent-encoding; \"%%\" must be followed by two hex digits (write a literal \"%%\" as %%25)", name)
				}
				return "", uriErrorf("attribute %q: invalid percent-encoding %q; \"%%\" must be followed by two hex digits (write a literal \"%%\" as %%25)", name, raw[i:min(i+3, len(raw))])
			}
			buf = append(buf, byte(uriUnhex(raw[i+1])<<4|uriUnhex(raw[i+2])))
			i += 2
			continue
		}
		if !allowed[c] {
			if quiet {
				return "", uriErrorf("attribute %q: byte %d of the value must be percent-encoded as %%%02X", name, i+1, c)
			}
			if c >= 0x20 && c < 0x7f {
				return "", uriErrorf("attribute %q: character %q must be percent-encoded as %%%02X", name, c, c)
			}
			return "", uriErrorf("attribute %q: byte 0x%02X must be percent-encoded as %%%02X", name, c, c)
		}
		buf = append(buf, c)
	}
	return string(buf), nil
}

// uriUnhex returns the value of hex digit c, or -1.
func uriUnhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// uriDigits reports whether s is one or more ASCII decimal digits.
func uriDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// uriValidName reports whether name uses only the characters RFC 7512
// allows in attribute names (ALPHA / DIGIT / "-" / "_").
func uriValidName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// uriQuote quotes s for an error message, truncated to uriMaxQuote bytes.
func uriQuote(s string) string {
	if len(s) > uriMaxQuote {
		return strconv.Quote(s[:uriMaxQuote]) + "..."
	}
	return strconv.Quote(s)
}

// uriErrorf returns an error wrapping ErrInvalidURI.
func uriErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidURI, fmt.Sprintf(format, args...))
}

// String returns u in canonical form: "pkcs11:", the path attributes in
// the order of the URI fields separated by ";", then, if any are set, "?"
// and the query attributes separated by "&". Unset fields are left out.
//
// Values are percent-encoded (upper-case hex) except for RFC 3986
// unreserved characters, and "/" and ":" in the query; id is always fully
// percent-encoded, as RFC 7512 recommends for binary values.
//
// String does not validate u. For every u returned by ParseURI,
// ParseURI(u.String()) returns a URI equal to u; a hand-built URI that
// ParseURI would refuse (say, with both ModulePath and ModuleName) yields a
// string ParseURI refuses. String never contains a PIN: URI cannot hold one.
func (u *URI) String() string {
	var slotID string
	if u.SlotID != nil {
		slotID = strconv.FormatUint(uint64(*u.SlotID), 10)
	}
	type attr struct {
		name, v  string
		verbatim *[256]bool
	}
	path := []attr{
		{"token", u.Token, uriPathVerbatim},
		{"manufacturer", u.Manufacturer, uriPathVerbatim},
		{"serial", u.Serial, uriPathVerbatim},
		{"model", u.Model, uriPathVerbatim},
		{"library-manufacturer", u.LibraryManufacturer, uriPathVerbatim},
		{"library-description", u.LibraryDescription, uriPathVerbatim},
		{"library-version", u.LibraryVersion, uriPathVerbatim},
		{"slot-description", u.SlotDescription, uriPathVerbatim},
		{"slot-manufacturer", u.SlotManufacturer, uriPathVerbatim},
		{"slot-id", slotID, uriPathVerbatim},
		{"object", u.Object, uriPathVerbatim},
		{"id", string(u.ID), &uriNoVerbatim},
		{"type", u.Type, uriPathVerbatim},
	}
	query := []attr{
		{"module-path", u.ModulePath, uriQueryVerbatim},
		{"module-name", u.ModuleName, uriQueryVerbatim},
		{"pin-source", u.PINSource, uriQueryVerbatim},
	}

	var b strings.Builder
	b.WriteString(uriScheme)
	for _, part := range []struct {
		first, sep string
		attrs      []attr
	}{{"", ";", path}, {"?", "&", query}} {
		sep := part.first
		for _, a := range part.attrs {
			if a.v == "" {
				continue
			}
			b.WriteString(sep)
			b.WriteString(a.name)
			b.WriteByte('=')
			uriEscape(&b, a.v, a.verbatim)
			sep = part.sep
		}
	}
	return b.String()
}

// uriEscape writes v to b, percent-encoding every byte not in verbatim.
func uriEscape(b *strings.Builder, v string, verbatim *[256]bool) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		c := v[i]
		if verbatim[c] {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0f])
	}
}
