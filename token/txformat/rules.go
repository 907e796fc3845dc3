package txformat

import (
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Field rules shared by both formats. Each check returns "" when the value
// is acceptable, otherwise a reason for a FieldError.

// minorUnits is the number of decimals each accepted ISO 4217 currency
// allows. A currency not listed here is refused.
var minorUnits = map[string]int{
	"CNY": 2, "USD": 2, "EUR": 2, "HKD": 2, "GBP": 2,
	"JPY": 0, "KRW": 0,
	"BHD": 3, "KWD": 3,
}

// maxIntegerDigits bounds the integer part of an amount.
const maxIntegerDigits = 18

// checkCurrency refuses a code missing from minorUnits.
func checkCurrency(ccy string) string {
	if _, ok := minorUnits[ccy]; !ok {
		return "currency " + quote(ccy) + " is not supported; use one of BHD, CNY, EUR, GBP, HKD, JPY, KRW, KWD, USD"
	}
	return ""
}

// checkAmount validates amount for currency ccy, which must already have
// passed checkCurrency. The form is digits, optionally '.' followed by one
// to minor-units digits; no sign, exponent, space or leading zero (other
// than the single zero of "0.50"); at most 18 integer digits; above zero.
func checkAmount(amount, ccy string) string {
	intPart, frac, hasPoint := strings.Cut(amount, ".")
	if intPart == "" || !allDigits(intPart) || (hasPoint && (frac == "" || !allDigits(frac))) {
		return "amount " + quote(amount) + " is not a plain decimal such as 1234.50 (digits and an optional '.' with decimals; no sign, exponent, grouping or spaces)"
	}
	if len(intPart) > 1 && intPart[0] == '0' {
		return "amount " + quote(amount) + " has a leading zero"
	}
	if len(intPart) > maxIntegerDigits {
		return "amount " + quote(amount) + " has more than 18 integer digits"
	}
	if strings.Trim(intPart+frac, "0") == "" {
		return "amount must be greater than zero"
	}
	if mu := minorUnits[ccy]; len(frac) > mu {
		if mu == 0 {
			return "amount " + quote(amount) + " has decimals; " + ccy + " allows none"
		}
		return "amount " + quote(amount) + " has " + itoa(len(frac)) + " decimals; " + ccy + " allows at most " + itoa(mu)
	}
	return ""
}

// minorUnitsOf returns amount, already validated for ccy, as an integer
// count of the currency's minor units.
func minorUnitsOf(amount, ccy string) *big.Int {
	intPart, frac, _ := strings.Cut(amount, ".")
	frac += strings.Repeat("0", minorUnits[ccy]-len(frac))
	n, _ := new(big.Int).SetString(intPart+frac, 10)
	return n
}

// formatMinor writes n minor units of ccy as a decimal string with exactly
// the currency's minor-unit digits ("6234.50", "1000").
func formatMinor(n *big.Int, ccy string) string {
	mu := minorUnits[ccy]
	s := n.String()
	if mu == 0 {
		return s
	}
	if len(s) <= mu {
		s = strings.Repeat("0", mu-len(s)+1) + s
	}
	return s[:len(s)-mu] + "." + s[len(s)-mu:]
}

// checkText is the rule for names, bank names, purposes and identifiers:
// min to max characters (runes), no leading or trailing white space, and
// nothing that can make the displayed text differ from the text signed:
// control characters (which include tab and newline), line and paragraph
// separators, Unicode bidirectional controls (U+202A–U+202E,
// U+2066–U+2069, U+200E, U+200F, U+061C), other invisible format
// characters except the zero-width (non-)joiner, private-use characters,
// blank fillers (Hangul fillers, braille blank), U+FFFD, which is what a
// lone UTF-16 surrogate escape decodes to, and a combining mark first.
func checkText(s string, min, max int) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	n := utf8.RuneCountInString(s)
	if n < min || n > max {
		if min == 1 && n == 0 {
			return "must not be empty"
		}
		return "must be " + itoa(min) + " to " + itoa(max) + " characters long, is " + itoa(n)
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	if n > 0 && (unicode.IsSpace(first) || unicode.IsSpace(last)) {
		return "must not start or end with white space"
	}
	if unicode.In(first, unicode.Mn, unicode.Me) {
		return "must not start with a combining mark, which would join the text displayed before it"
	}
	for _, r := range s {
		if why := badRune(r); why != "" {
			return "contains " + runeName(r) + ", " + why
		}
	}
	return ""
}

// badRune says why r may not appear in displayed text, or "" if it may.
func badRune(r rune) string {
	switch {
	case isBidiControl(r):
		return "a Unicode bidirectional control that can reorder what is displayed"
	case r == utf8.RuneError:
		return "the replacement character (a broken encoding or a lone surrogate escape)"
	case unicode.Is(unicode.Cc, r):
		return "a control character"
	case unicode.Is(unicode.Zl, r) || unicode.Is(unicode.Zp, r):
		return "a line or paragraph separator"
	case unicode.Is(unicode.Cf, r) && r != '\u200c' && r != '\u200d':
		return "an invisible format character"
	case unicode.Is(unicode.Co, r):
		return "a private-use character"
	case r == '\u115f' || r == '\u1160' || r == '\u3164' || r == '\uffa0' || r == '\u2800':
		return "a blank filler character that displays as nothing"
	}
	return ""
}

// isBidiControl reports the characters that override or isolate the
// direction of text (embeddings, overrides, isolates) and the implicit
// direction marks.
func isBidiControl(r rune) bool {
	return (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069') ||
		r == '\u200e' || r == '\u200f' || r == '\u061c'
}

// checkAccount validates an account identifier after trimming
// surrounding spaces: 6 to 34 characters of ASCII letters, digits and
// spaces. It returns the trimmed value.
func checkAccount(s string) (string, string) {
	t := strings.Trim(s, " ")
	for _, r := range t {
		if !(r == ' ' || r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z') {
			return "", "may contain only letters A-Z, digits and spaces, found " + runeName(r)
		}
	}
	if len(t) < 6 || len(t) > 34 {
		return "", "must be 6 to 34 characters after trimming spaces, is " + itoa(len(t))
	}
	return t, ""
}

var ibanRE = regexp.MustCompile(`^[A-Z]{2}[0-9]{2}[A-Za-z0-9]{1,30}$`)

// checkIBAN applies the ISO 20022 IBAN2007Identifier pattern and the ISO
// 13616 mod-97 check digits.
func checkIBAN(s string) string {
	if !ibanRE.MatchString(s) {
		return "is not an IBAN (two capital letters, two check digits, then up to 30 letters or digits, no spaces)"
	}
	rem := 0
	for _, c := range strings.ToUpper(s[4:] + s[:4]) {
		v := int(c - '0')
		if c >= 'A' {
			v = int(c-'A') + 10
		}
		if v >= 10 {
			rem = (rem*100 + v) % 97
		} else {
			rem = (rem*10 + v) % 97
		}
	}
	if rem != 1 {
		return "IBAN check digits are wrong"
	}
	return ""
}

var bicRE = regexp.MustCompile(`^[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$`)

// checkBIC applies the ISO 9362 BIC pattern used by BICFIDec2014Identifier.
func checkBIC(s string) string {
	if !bicRE.MatchString(s) {
		return "is not a BIC (8 or 11 capital letters and digits, e.g. ICBKCNBJBJM)"
	}
	return ""
}

var nonceRE = regexp.MustCompile(`^[A-Za-z0-9_-]{16,64}$`)

// checkNonce: 16 to 64 characters of [A-Za-z0-9_-].
func checkNonce(s string) string {
	if !nonceRE.MatchString(s) {
		return "must be 16 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"
	}
	return ""
}

var (
	rfc3339RE  = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`)
	isoDTRE    = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?$`)
	isoDateRE  = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	decimalRE  = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
	numeric15  = regexp.MustCompile(`^[0-9]{1,15}$`)
	code4RE    = regexp.MustCompile(`^[A-Za-z0-9]{1,4}$`)
	code35RE   = regexp.MustCompile(`^[A-Za-z0-9]{1,35}$`)
	hasZoneRE  = regexp.MustCompile(`(Z|[+-][0-9]{2}:[0-9]{2})$`)
	fracSecsRE = regexp.MustCompile(`\.[0-9]+`)
)

// checkRFC3339 requires a full RFC 3339 date-time with a time zone, upper
// case 'T' and 'Z', and in-range fields.
func checkRFC3339(s string) string {
	if !rfc3339RE.MatchString(s) {
		return "must be an RFC 3339 date-time such as 2026-03-02T09:30:00+08:00"
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
		return "is not a real date-time: " + err.Error()
	}
	return ""
}

// checkISODateTime accepts the xs:dateTime subset ISO 20022 uses: like
// RFC 3339 but the time zone is optional.
func checkISODateTime(s string) string {
	if !isoDTRE.MatchString(s) {
		return "must be an ISO date-time such as 2026-03-02T09:30:00 or 2026-03-02T09:30:00+08:00"
	}
	layout := "2006-01-02T15:04:05"
	if hasZoneRE.MatchString(s) {
		layout += "Z07:00"
	}
	if _, err := time.Parse(layout, fracSecsRE.ReplaceAllString(s, "")); err != nil {
		return "is not a real date-time: " + err.Error()
	}
	return ""
}

// checkISODate accepts YYYY-MM-DD naming a real day.
func checkISODate(s string) string {
	if !isoDateRE.MatchString(s) {
		return "must be a date such as 2026-03-02"
	}
	if _, err := time.Parse("2006-01-02", s); err != nil {
		return "is not a real date: " + err.Error()
	}
	return ""
}

// checkDecimal is ISO 20022 DecimalNumber (control sums): digits with an
// optional fraction, at most 18 digits of which at most 17 decimals.
func checkDecimal(s string) string {
	if !decimalRE.MatchString(s) {
		return "must be a plain decimal such as 6234.50"
	}
	i, f, _ := strings.Cut(s, ".")
	if len(i)+len(f) > 18 || len(f) > 17 {
		return "has more than 18 digits or 17 decimals"
	}
	return ""
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func itoa(n int) string { return strconv.Itoa(n) }

// quote shows a value in an error message; values that failed validation
// may hold anything, so it escapes non-printing characters and truncates.
func quote(s string) string {
	if utf8.RuneCountInString(s) > 40 {
		s = string([]rune(s)[:40]) + "…"
	}
	return strconv.Quote(s)
}

func runeName(r rune) string { return fmt.Sprintf("U+%04X", r) }
