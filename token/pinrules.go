package token

import (
	"crypto/subtle"
	"errors"
	"runtime"
)

// PIN complexity rules (requirement R-TOK-4).
//
// Every error returned by CheckPIN is one of the sentinel errors below,
// returned as is: the message tells a security officer which rule was broken
// and never contains the PIN (or any part of it), so the error may be logged
// or shown safely.
var (
	ErrPINTooShort   = errors.New("token: PIN must be at least 6 characters")
	ErrPINTooLong    = errors.New("token: PIN must be at most 64 characters")
	ErrPINRepeated   = errors.New("token: PIN must not be one character repeated")
	ErrPINSequence   = errors.New("token: PIN must not be a simple sequence such as 123456 or 654321")
	ErrPINReused     = errors.New("token: new PIN must differ from the old one")
	ErrPINCharacters = errors.New("token: PIN must contain only printable ASCII characters")
)

// MinPINLength is the minimum PIN length in characters (R-TOK-4).
const MinPINLength = 6

// maxPINLength is the maximum PIN length in characters (R-TOK-4).
const maxPINLength = 64

// CheckPIN applies the PIN complexity rules of requirement R-TOK-4 to newPIN.
// oldPIN is the PIN being replaced; it may be nil or empty when there is no
// old PIN (for example when a token is first initialised).
//
// The rules, checked in this order, are:
//
//   - at least MinPINLength and at most 64 characters
//     (ErrPINTooShort, ErrPINTooLong);
//   - printable ASCII only, 0x21 to 0x7e: no spaces, control characters or
//     non-ASCII bytes (ErrPINCharacters);
//   - not one character repeated, such as 111111 or aaaaaa; letters are
//     compared ignoring case (ErrPINRepeated);
//   - not a simple ascending or descending run with step 1 over digits or
//     over letters, such as 123456, 987654, abcdef or FEDCBA. Digits are
//     treated as the cycle 0-9, so 789012 and 210987 are runs too; letters
//     are compared ignoring case and do not wrap from z to a
//     (ErrPINSequence);
//   - different from oldPIN, compared in constant time (ErrPINReused).
//
// The returned error is nil or exactly one of the sentinel errors, which
// never contain the PIN. PINs are passed as byte slices so that callers can
// wipe them with Wipe after use; CheckPIN neither modifies nor retains them.
func CheckPIN(newPIN, oldPIN []byte) error {
	switch {
	case len(newPIN) < MinPINLength:
		return ErrPINTooShort
	case len(newPIN) > maxPINLength:
		return ErrPINTooLong
	}
	for _, c := range newPIN {
		if c < 0x21 || c > 0x7e {
			return ErrPINCharacters
		}
	}
	if pinIsRepeated(newPIN) {
		return ErrPINRepeated
	}
	if pinIsRun(newPIN, 1) || pinIsRun(newPIN, -1) {
		return ErrPINSequence
	}
	// ConstantTimeCompare takes time independent of the contents; it
	// returns early only when the lengths differ.
	if len(oldPIN) > 0 && subtle.ConstantTimeCompare(newPIN, oldPIN) == 1 {
		return ErrPINReused
	}
	return nil
}

// Wipe overwrites b with zeros. Callers wipe PINs as soon as they are no
// longer needed so that no clear-text copy lingers in memory (R-TOK-4).
// Wipe of a nil or empty slice does nothing.
func Wipe(b []byte) {
	clear(b)
	// Keep b reachable until the stores above have happened so that they
	// cannot be treated as dead.
	runtime.KeepAlive(b)
}

// pinIsRepeated reports whether p (non-empty) consists of one character
// repeated, ignoring the case of letters.
func pinIsRepeated(p []byte) bool {
	first := pinLower(p[0])
	for _, c := range p[1:] {
		if pinLower(c) != first {
			return false
		}
	}
	return true
}

// pinIsRun reports whether p (non-empty) is a run of digits or of letters in
// which each character is the previous one plus step. Digits wrap around
// (9+1 is 0, 0-1 is 9); letters are compared ignoring case and do not wrap.
func pinIsRun(p []byte, step int) bool {
	switch {
	case pinIsDigit(p[0]):
		for i := 1; i < len(p); i++ {
			if !pinIsDigit(p[i]) {
				return false
			}
			want := (int(p[i-1]-'0') + step + 10) % 10
			if int(p[i]-'0') != want {
				return false
			}
		}
		return true
	case pinIsLetter(p[0]):
		for i := 1; i < len(p); i++ {
			if !pinIsLetter(p[i]) {
				return false
			}
			if int(pinLower(p[i]))-int(pinLower(p[i-1])) != step {
				return false
			}
		}
		return true
	}
	return false
}

func pinIsDigit(c byte) bool { return '0' <= c && c <= '9' }

func pinIsLetter(c byte) bool { return 'a' <= pinLower(c) && pinLower(c) <= 'z' }

// pinLower maps ASCII upper-case letters to lower case and leaves every other
// byte unchanged.
func pinLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}
