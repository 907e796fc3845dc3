package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestVersionedRoundTrip(t *testing.T) {
	long := bytes.Repeat([]byte{0xfb, 0xff, 0x00}, 400)
	cases := []struct {
		version int
		body    []byte
		want    string // exact encoding, when short enough to write down
	}{
		{1, []byte{1, 2, 3}, "kw:v1:AQID"},
		{7, []byte{0xfb, 0xff}, "kw:v7:+/8="},
		{10, []byte{0}, "kw:v10:AA=="},
		{123456, long, ""},
	}
	for _, c := range cases {
		s := encodeVersioned(c.version, c.body)
		if c.want != "" && s != c.want {
			t.Errorf("encodeVersioned(%d, %x) = %q, want %q", c.version, c.body, s, c.want)
		}
		for _, sentinel := range []error{ErrInvalidSignature, ErrInvalidCiphertext} {
			v, b, err := decodeVersioned(s, sentinel)
			if err != nil {
				t.Fatalf("decodeVersioned(%q): %v", s, err)
			}
			if v != c.version || !bytes.Equal(b, c.body) {
				t.Errorf("decodeVersioned(%q) = %d, %x; want %d, %x", s, v, b, c.version, c.body)
			}
		}
	}
}

func TestDecodeVersionedRefusals(t *testing.T) {
	cases := []struct {
		name, in string
		msg      string // substring of the message
	}{
		{"empty", "", "must look like kw:v<version>:<base64>"},
		{"no prefix", "AQID", "must look like kw:v<version>:<base64>"},
		{"upper-case prefix", "KW:V1:AQID", "must look like kw:v<version>:<base64>"},
		{"prefix without v", "kw:1:AQID", "must look like kw:v<version>:<base64>"},
		{"missing colon", "kw:v1AQID", "must look like kw:v<version>:<base64>"},
		{"version 0", "kw:v0:AQID", `version "0" is not a positive number`},
		{"leading zero", "kw:v01:AQID", `version "01" is not a positive number`},
		{"negative", "kw:v-1:AQID", `version "-1" is not a positive number`},
		{"plus sign", "kw:v+1:AQID", `version "+1" is not a positive number`},
		{"letters", "kw:vx:AQID", `version "x" is not a positive number`},
		{"empty version", "kw:v:AQID", `version "" is not a positive number`},
		{"overflow", "kw:v99999999999999999999:AQID", "is not a positive number"},
		{"spaces", "kw:v 1:AQID", "is not a positive number"},
		{"bad base64", "kw:v1:!!!!", "the part after kw:v1: is not valid base64"},
		{"url-safe base64", "kw:v2:-_8=", "the part after kw:v2: is not valid base64"},
		{"unpadded base64", "kw:v1:AQI", "the part after kw:v1: is not valid base64"},
		{"second colon", "kw:v1:AQID:AQID", "the part after kw:v1: is not valid base64"},
		{"empty body", "kw:v3:", "the part after kw:v3: is not valid base64"},
	}
	for _, sentinel := range []error{ErrInvalidSignature, ErrInvalidCiphertext} {
		other := ErrInvalidCiphertext
		if sentinel == ErrInvalidCiphertext {
			other = ErrInvalidSignature
		}
		for _, c := range cases {
			t.Run(sentinel.Error()+"/"+c.name, func(t *testing.T) {
				v, b, err := decodeVersioned(c.in, sentinel)
				if !errors.Is(err, sentinel) {
					t.Fatalf("decodeVersioned(%q) = %d, %x, %v; want %v", c.in, v, b, err, sentinel)
				}
				if errors.Is(err, other) {
					t.Errorf("error also matches %v", other)
				}
				if v != 0 || b != nil {
					t.Errorf("returned %d, %x with the error", v, b)
				}
				if !strings.HasPrefix(err.Error(), sentinel.Error()+": ") || !strings.Contains(err.Error(), c.msg) {
					t.Errorf("err = %q, want %q: ...%s...", err, sentinel, c.msg)
				}
			})
		}
	}
}

// findECKey generates keys on curve until one has an X coordinate with a
// leading zero byte (about one in 256), so fixed-width encoding matters.
// FuzzDecodeVersioned (issue 12): the "kw:v<n>:<base64>" parser of
// signatures, MACs and ciphertexts. Any input either parses to a positive
// version and non-empty bytes that encode and parse back the same, or is
// refused with the given sentinel; never a panic.
func FuzzDecodeVersioned(f *testing.F) {
	for _, s := range []string{"kw:v1:AAAA", "kw:v12:aGVsbG8=", "kw:v0:AA==", "kw:v01:AA==", "kw:v-1:AA==", "kw:v1:", "kw:v1:!!",
		"kw:v9999999999999999999:AA==", "kw:v1:AA==\n", "kw:v1:A\rA==", "kw:v1", "kv:v1:AA==", "", "kw:v+1:AA=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// VersionOf (how clients such as banking read a stored value's
		// version) refuses with ErrInvalidArgument and agrees with the parser.
		n, err := VersionOf(s)
		if v, _, derr := decodeVersioned(s, ErrInvalidSignature); (err == nil) != (derr == nil) || (err == nil && n != v) {
			t.Fatalf("%q: VersionOf %d, %v; decodeVersioned %d, %v", s, n, err, v, derr)
		}
		if err != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("%q: VersionOf refusal %v is not ErrInvalidArgument", s, err)
		}
		for _, sentinel := range []error{ErrInvalidSignature, ErrInvalidCiphertext} {
			v, b, err := decodeVersioned(s, sentinel)
			if err != nil {
				if !errors.Is(err, sentinel) {
					t.Fatalf("%q: error %v does not wrap %v", s, err, sentinel)
				}
				continue
			}
			if v < 1 || len(b) == 0 {
				t.Fatalf("%q parsed to version %d, %d bytes", s, v, len(b))
			}
			v2, b2, err := decodeVersioned(encodeVersioned(v, b), sentinel)
			if err != nil || v2 != v || !bytes.Equal(b2, b) {
				t.Fatalf("%q: re-encoding parses to %d %x %v, want %d %x", s, v2, b2, err, v, b)
			}
		}
	})
}

// Versioned is the typed face of the kw:v<n>: format.
func TestVersionedType(t *testing.T) {
	v := Versioned{Version: 12, Bytes: []byte{0xfb, 0xff}}
	if s := v.String(); s != "kw:v12:+/8=" {
		t.Fatalf("String = %q", s)
	}
	got, err := ParseVersioned("kw:v12:+/8=", ErrInvalidCiphertext)
	if err != nil || got.Version != 12 || !bytes.Equal(got.Bytes, v.Bytes) {
		t.Fatalf("ParseVersioned = %+v, %v", got, err)
	}
	if _, err := ParseVersioned("kw:v0:AA==", ErrInvalidCiphertext); !errors.Is(err, ErrInvalidCiphertext) {
		t.Fatalf("version 0: %v, want ErrInvalidCiphertext", err)
	}
}
