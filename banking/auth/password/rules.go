package password

import (
	"bufio"
	_ "embed"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/keyward/keyward/banking/auth/mask"
)

// Length limits of a login password (R-AUTH-2).
const (
	MinLength = 8
	MaxLength = 64
)

// ErrWeak is what every *WeakError matches with errors.Is.
var ErrWeak = errors.New("password: does not meet the password rules")

// Rule codes, stable for the HTTP layer and the client's translations.
const (
	RuleLength     = "length"
	RuleCharacters = "characters"
	RuleClasses    = "classes"
	RulePersonal   = "personal"
	RuleCommon     = "common"
)

// Problem is one broken rule, with a message a customer can act on.
type Problem struct {
	Rule    string // one of the Rule constants
	Message string
}

// WeakError lists every rule a candidate password breaks, so the customer
// can fix them all at once. It never holds the password or the personal
// data it was compared with.
type WeakError struct{ Problems []Problem }

func (e *WeakError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Message
	}
	return "password: " + strings.Join(msgs, " ")
}

// Is makes errors.Is(err, ErrWeak) true.
func (e *WeakError) Is(target error) bool { return target == ErrWeak }

// Has reports whether the rule is among the problems.
func (e *WeakError) Has(rule string) bool {
	for _, p := range e.Problems {
		if p.Rule == rule {
			return true
		}
	}
	return false
}

var messages = map[string]string{
	RuleLength:     "Use 8 to 64 characters.",
	RuleCharacters: "Use only letters, digits, spaces and the symbols on a standard keyboard (no Chinese, full-width or control characters).",
	RuleClasses:    "Use at least three of the four kinds of character: lower-case letters, upper-case letters, digits, symbols.",
	RulePersonal:   "Do not use your customer number, phone number, ID card number, date of birth or the last six digits of any of them.",
	RuleCommon:     "This password is too common: it is a well-known password, or one with only digits or symbols added. Choose something less predictable.",
}

// Check applies the password rules (R-AUTH-2, "medium" complexity or
// better) to a candidate password pw, given the customer's personal
// strings (customer id, phone number, ID card number, …). It returns nil or
// a *WeakError listing every broken rule:
//
//   - length: 8 to 64 characters;
//   - characters: printable ASCII only (0x20–0x7E): no control, full-width
//     or other non-ASCII characters, which different input methods and
//     keyboards produce differently (and 0x00 is the login encoding's
//     separator, see SplitPasswordChallenge);
//   - classes: at least three of lower case, upper case, digits and symbols
//     (space counts as a symbol);
//   - personal: pw must not contain, ignoring case, any personal string of
//     4 or more characters, nor the last six characters of one of 8 or
//     more (ID and card tails), nor the date of birth (YYYYMMDD) inside a
//     valid ID card number;
//   - common: pw must not be on the embedded list (common.txt) of leaked
//     passwords and base words, compared ignoring case, and also after
//     stripping leading and trailing digits and symbols and undoing l33t
//     spelling (@→a, 0→o, 1→i, 3→e, $→s, 5→s).
//
// Check does not keep or log pw. It is for choosing a password; a login
// compares keyed hashes and never re-checks the rules.
func Check(pw []byte, personal ...string) error {
	var probs []Problem
	add := func(rule string) { probs = append(probs, Problem{rule, messages[rule]}) }

	n := utf8.RuneCount(pw)
	if n < MinLength || n > MaxLength {
		add(RuleLength)
	}
	var lower, upper, digit, symbol, bad bool
	for _, c := range pw {
		switch {
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= '0' && c <= '9':
			digit = true
		case c >= 0x20 && c <= 0x7e:
			symbol = true
		default:
			bad = true
		}
	}
	if bad {
		add(RuleCharacters)
	}
	if count(lower, upper, digit, symbol) < 3 {
		add(RuleClasses)
	}
	lc := strings.ToLower(string(pw))
	if containsPersonal(lc, personal) {
		add(RulePersonal)
	}
	if isCommon(lc) {
		add(RuleCommon)
	}
	if probs != nil {
		return &WeakError{Problems: probs}
	}
	return nil
}

func count(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func containsPersonal(lc string, personal []string) bool {
	for _, p := range personal {
		p = strings.ToLower(strings.TrimSpace(p))
		if len(p) < 4 {
			continue
		}
		if strings.Contains(lc, p) {
			return true
		}
		if len(p) >= 8 && strings.Contains(lc, p[len(p)-6:]) {
			return true
		}
		if mask.ValidateID(p) == nil && strings.Contains(lc, p[6:14]) {
			return true
		}
	}
	return false
}

//go:embed common.txt
var commonTxt string

var common = func() map[string]bool {
	m := make(map[string]bool)
	sc := bufio.NewScanner(strings.NewReader(commonTxt))
	for sc.Scan() {
		w := strings.TrimSpace(sc.Text())
		if w != "" && !strings.HasPrefix(w, "#") {
			m[strings.ToLower(w)] = true
		}
	}
	return m
}()

var unLeet = strings.NewReplacer("@", "a", "0", "o", "1", "i", "3", "e", "$", "s", "5", "s")

func isCommon(lc string) bool {
	if common[lc] || common[unLeet.Replace(lc)] || common[strings.TrimRightFunc(lc, isSymbol)] {
		return true
	}
	digitOrSymbol := func(r rune) bool { return isSymbol(r) || (r >= '0' && r <= '9') }
	// "@dmin123!" → "@dmin" → "admin"; "2024Dragon!" → "dragon".
	for _, base := range []string{strings.TrimRightFunc(lc, digitOrSymbol), strings.TrimFunc(lc, digitOrSymbol)} {
		if len(base) >= 3 && (common[base] || common[unLeet.Replace(base)]) {
			return true
		}
	}
	return false
}

func isSymbol(r rune) bool {
	return r >= 0x20 && r <= 0x7e && !(r >= 'a' && r <= 'z') && !(r >= 'A' && r <= 'Z') && !(r >= '0' && r <= '9')
}
