package blacklist

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Sentinel errors.
var (
	// ErrListed: the account or name is on the list. Show the customer a
	// neutral refusal; the line number is for the log.
	ErrListed = errors.New("on the screening list")
	// ErrMalformed: a list file was refused (a *ParseError says where).
	ErrMalformed = errors.New("malformed screening list")
)

// MaxFileSize bounds a list file (64 MiB).
const MaxFileSize = 64 << 20

// maxNameRunes bounds one name entry.
const maxNameRunes = 256

// ParseError says which line of a list file is wrong and why.
type ParseError struct {
	Line   int // 1-based; 0 for the file as a whole
	Reason string
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%v: %s", ErrMalformed, e.Reason)
	}
	return fmt.Sprintf("%v: line %d: %s", ErrMalformed, e.Line, e.Reason)
}

// Is makes errors.Is(err, ErrMalformed) true.
func (e *ParseError) Is(target error) bool { return target == ErrMalformed }

// Kind is what an entry names.
type Kind uint8

const (
	KindAccount Kind = iota + 1
	KindName
)

func (k Kind) String() string {
	switch k {
	case KindAccount:
		return "account"
	case KindName:
		return "name"
	}
	return "unspecified"
}

// Match is the entry that matched.
type Match struct {
	Kind  Kind
	Value string // normalised, as compared
	Line  int    // in the list file
}

// List is one parsed list file. It is immutable, so it may be shared
// between goroutines freely.
type List struct {
	accounts map[string]int // normalised number → line
	names    map[string]int // normalised name → line
	entries  int
	digest   [32]byte
}

// Len is the number of entries (the file's end:<count>).
func (l *List) Len() int { return l.entries }

// Digest is the hex SHA-256 of the file the list came from, for logs.
func (l *List) Digest() string { return hex.EncodeToString(l.digest[:]) }

// Account reports whether an account number is listed. Both sides are
// normalised by NormaliseAccount; a number that is not one is not listed.
func (l *List) Account(number string) (Match, bool) {
	n, err := NormaliseAccount(number)
	if err != nil {
		return Match{}, false
	}
	line, ok := l.accounts[n]
	return Match{Kind: KindAccount, Value: n, Line: line}, ok
}

// Name reports whether a person's or organisation's name is listed, after
// NormaliseName on both sides. The comparison is exact: see the package
// documentation for what it does not catch.
func (l *List) Name(name string) (Match, bool) {
	n := NormaliseName(name)
	if n == "" {
		return Match{}, false
	}
	line, ok := l.names[n]
	return Match{Kind: KindName, Value: n, Line: line}, ok
}

// Parse reads a list file (format in the package documentation). Any
// error is a *ParseError: nothing is half loaded.
func Parse(data []byte) (*List, error) {
	if len(data) > MaxFileSize {
		return nil, &ParseError{Reason: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	if !utf8.Valid(data) {
		return nil, &ParseError{Reason: "not valid UTF-8"}
	}
	l := &List{accounts: map[string]int{}, names: map[string]int{}, digest: sha256.Sum256(data)}
	data = bytes.TrimPrefix(data, []byte("\uFEFF")) // a byte-order mark from some editors
	ended := false
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		no := i + 1
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if ended {
			return nil, &ParseError{Line: no, Reason: "entry after end:"}
		}
		kind, value, ok := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		if !ok || value == "" {
			return nil, &ParseError{Line: no, Reason: "want account:<number>, name:<name> or end:<count>"}
		}
		switch kind {
		case "account":
			n, err := NormaliseAccount(value)
			if err != nil {
				return nil, &ParseError{Line: no, Reason: err.Error()}
			}
			if _, dup := l.accounts[n]; !dup {
				l.accounts[n] = no
			}
		case "name":
			if utf8.RuneCountInString(value) > maxNameRunes {
				return nil, &ParseError{Line: no, Reason: fmt.Sprintf("name longer than %d characters", maxNameRunes)}
			}
			n := NormaliseName(value)
			if n == "" {
				return nil, &ParseError{Line: no, Reason: "name is empty once normalised"}
			}
			if _, dup := l.names[n]; !dup {
				l.names[n] = no
			}
		case "end":
			count, err := strconv.Atoi(value)
			if err != nil || count != l.entries {
				return nil, &ParseError{Line: no, Reason: fmt.Sprintf("end:%s but the file holds %d entries (truncated or edited?)", value, l.entries)}
			}
			ended = true
			continue
		default:
			return nil, &ParseError{Line: no, Reason: fmt.Sprintf("unknown kind %q (account, name or end)", truncate(kind, 16))}
		}
		l.entries++
	}
	if !ended {
		return nil, &ParseError{Reason: "no end:<count> line (truncated, or still being written?)"}
	}
	return l, nil
}

// NormaliseAccount folds an account number for comparison: NFKC (so
// full-width digits become ASCII), spaces and hyphens removed, letters
// upper-cased (IBAN-style numbers). The result must be 6 to 34 ASCII
// letters and digits.
func NormaliseAccount(s string) (string, error) {
	s = norm.NFKC.String(s)
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == ' ' || r == '-':
		case r >= '0' && r <= '9', r >= 'A' && r <= 'Z':
			b.WriteRune(r)
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		default:
			return "", fmt.Errorf("account number holds %q (only digits, letters, spaces and hyphens)", r)
		}
	}
	if b.Len() < 6 || b.Len() > 34 {
		return "", fmt.Errorf("account number must have 6 to 34 digits or letters, not %d", b.Len())
	}
	return b.String(), nil
}

// middleDots are the separators people use between the parts of a
// transliterated name (阿卜杜勒·拉希德); they are all compared as U+00B7.
var middleDots = map[rune]bool{'·': true, '•': true, '‧': true, '∙': true, '⋅': true, '・': true, '･': true}

// NormaliseName folds a name for comparison:
//
//  1. Unicode NFKC: full-width Latin letters, digits and the ideographic
//     space become ASCII, half-width katakana full-width, compatibility
//     ideographs their unified forms;
//  2. Unicode case folding, then NFKC again;
//  3. format characters (zero-width space and joiners, soft hyphen, BOM),
//     control characters other than white space and variation selectors
//     are dropped — they are invisible and would let a listed name slip by;
//  4. every middle-dot variant becomes U+00B7;
//  5. runs of white space become one ASCII space; leading and trailing
//     space is removed.
//
// Chinese characters are otherwise compared exactly: 张三 and 張三
// (simplified and traditional) are different names.
func NormaliseName(s string) string {
	s = norm.NFKC.String(cases.Fold().String(norm.NFKC.String(s)))
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		case unicode.Is(unicode.Cf, r), unicode.Is(unicode.Cc, r), unicode.Is(unicode.Variation_Selector, r):
			continue
		case middleDots[r]:
			r = '·'
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
