package token

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestCheckPIN(t *testing.T) {
	tests := []struct {
		name    string
		newPIN  string
		oldPIN  string
		wantErr error
	}{
		// Accepted.
		{"ok digits not a run", "135790", "", nil},
		{"ok mixed", "pass-w0rd", "", nil},
		{"ok random digits", "482913", "", nil},
		{"ok exactly min length", "a1b2c3", "", nil},
		{"ok exactly max length", strings.Repeat("ab", 32), "", nil},
		{"ok punctuation edges", "!~!~!~", "", nil},
		{"ok differs from old", "482913", "482914", nil},
		{"ok old is prefix", "4829137", "482913", nil},
		{"ok repeated pair not one char", "121212", "", nil},
		{"ok step two", "246802", "", nil},
		{"ok run broken at end", "123457", "", nil},
		{"ok run broken at start", "023456", "", nil},
		{"ok letters do not wrap", "xyzabc", "", nil},
		{"ok letters reverse do not wrap", "cbazyx", "", nil},
		{"ok digits then letters", "789abc", "", nil},
		{"ok letter run with digit", "abcde1", "", nil},
		{"ok repeated with different char", "111112", "", nil},

		// Length.
		{"empty", "", "", ErrPINTooShort},
		{"five chars", "48291", "", ErrPINTooShort},
		{"five chars with spaces", "  a  ", "", ErrPINTooShort},
		{"65 chars", strings.Repeat("ab", 32) + "c", "", ErrPINTooLong},
		{"way too long", strings.Repeat("x", 1000), "", ErrPINTooLong},

		// Characters.
		{"space", "pass word", "", ErrPINCharacters},
		{"leading space", " 482913", "", ErrPINCharacters},
		{"tab", "4829\t13", "", ErrPINCharacters},
		{"newline", "482913\n", "", ErrPINCharacters},
		{"carriage return", "482913\r", "", ErrPINCharacters},
		{"NUL", "4829\x0013", "", ErrPINCharacters},
		{"DEL", "482913\x7f", "", ErrPINCharacters},
		{"non-ASCII UTF-8", "pässwörd", "", ErrPINCharacters},
		{"high byte", "482913\xff", "", ErrPINCharacters},
		{"all spaces", "      ", "", ErrPINCharacters},

		// Repeated.
		{"ones", "111111", "", ErrPINRepeated},
		{"zeros long", "0000000000", "", ErrPINRepeated},
		{"letters", "aaaaaa", "", ErrPINRepeated},
		{"mixed case letter", "aAaAaA", "", ErrPINRepeated},
		{"punctuation", "******", "", ErrPINRepeated},

		// Sequences.
		{"ascending digits", "123456", "", ErrPINSequence},
		{"ascending digits from 2", "234567", "", ErrPINSequence},
		{"ascending from 0", "012345", "", ErrPINSequence},
		{"descending digits", "987654", "", ErrPINSequence},
		{"descending 654321", "654321", "", ErrPINSequence},
		{"ascending wrap", "789012", "", ErrPINSequence},
		{"ascending wrap 890123", "890123", "", ErrPINSequence},
		{"descending wrap", "210987", "", ErrPINSequence},
		{"long ascending wrap", "1234567890123", "", ErrPINSequence},
		{"ascending letters", "abcdef", "", ErrPINSequence},
		{"descending upper letters", "FEDCBA", "", ErrPINSequence},
		{"ascending to z", "uvwxyz", "", ErrPINSequence},
		{"mixed case run", "aBcDeF", "", ErrPINSequence},
		{"long letter run", "abcdefghijklmnopqrstuvwxyz", "", ErrPINSequence},

		// Reuse.
		{"same as old", "482913", "482913", ErrPINReused},
		{"same as old mixed", "pass-w0rd", "pass-w0rd", ErrPINReused},

		// Earlier rules win over reuse.
		{"short and same as old", "12", "12", ErrPINTooShort},
		{"sequence and same as old", "123456", "123456", ErrPINSequence},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			newPIN := []byte(tt.newPIN)
			var oldPIN []byte
			if tt.oldPIN != "" {
				oldPIN = []byte(tt.oldPIN)
			}
			err := CheckPIN(newPIN, oldPIN)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("CheckPIN() = %v, want nil", err)
				}
			} else {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("CheckPIN() = %v, want %v", err, tt.wantErr)
				}
				// The error is the bare sentinel, so it cannot carry the PIN.
				if err != tt.wantErr {
					t.Fatalf("CheckPIN() returned %#v, want the sentinel itself", err)
				}
			}
			// CheckPIN must not modify its inputs.
			if string(newPIN) != tt.newPIN {
				t.Errorf("newPIN modified: %q", newPIN)
			}
			if tt.oldPIN != "" && string(oldPIN) != tt.oldPIN {
				t.Errorf("oldPIN modified: %q", oldPIN)
			}
		})
	}
}

func TestCheckPINOldNilVsEmpty(t *testing.T) {
	for _, old := range [][]byte{nil, {}} {
		if err := CheckPIN([]byte("482913"), old); err != nil {
			t.Errorf("CheckPIN(ok, %#v) = %v, want nil", old, err)
		}
	}
}

func TestCheckPINSentinelsDistinct(t *testing.T) {
	all := []error{ErrPINTooShort, ErrPINTooLong, ErrPINRepeated, ErrPINSequence, ErrPINReused, ErrPINCharacters}
	for i, a := range all {
		if !strings.HasPrefix(a.Error(), "token: ") {
			t.Errorf("%v: missing package prefix", a)
		}
		for j, b := range all {
			if i != j && errors.Is(a, b) {
				t.Errorf("errors.Is(%v, %v) = true", a, b)
			}
		}
	}
	if MinPINLength != 6 {
		t.Errorf("MinPINLength = %d, want 6", MinPINLength)
	}
}

func TestCheckPINLengthBoundaries(t *testing.T) {
	// Build non-trivial PINs of every length from 0 to 70 and check that
	// only the length rule decides.
	const alphabet = "q7#Lm2!xK9"
	for n := 0; n <= 70; n++ {
		pin := make([]byte, n)
		for i := range pin {
			pin[i] = alphabet[i%len(alphabet)]
		}
		err := CheckPIN(pin, nil)
		var want error
		switch {
		case n < MinPINLength:
			want = ErrPINTooShort
		case n > 64:
			want = ErrPINTooLong
		}
		if err != want {
			t.Errorf("len %d: CheckPIN() = %v, want %v", n, err, want)
		}
	}
}

func TestWipe(t *testing.T) {
	b := []byte("482913")
	alias := b[:4]
	Wipe(b)
	if !bytes.Equal(b, make([]byte, 6)) {
		t.Fatalf("Wipe left %q", b)
	}
	if !bytes.Equal(alias, make([]byte, 4)) {
		t.Fatalf("alias not wiped: %q", alias)
	}
	if len(b) != 6 || cap(b) < 6 {
		t.Fatalf("Wipe changed length: len %d cap %d", len(b), cap(b))
	}

	// Only the slice's elements are wiped, not the rest of the array.
	arr := []byte("abcdef")
	Wipe(arr[1:3])
	if string(arr) != "a\x00\x00def" {
		t.Fatalf("Wipe(sub-slice) gave %q", arr)
	}

	// Nil and empty slices are fine.
	Wipe(nil)
	Wipe([]byte{})
}
