package keysvc

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
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
func findECKey(t *testing.T, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	size := (curve.Params().BitSize + 7) / 8
	for i := 0; i < 100000; i++ {
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(k.X.Bytes()) < size {
			return k
		}
	}
	t.Fatal("no key with a short X coordinate found")
	return nil
}

func TestJWKEC(t *testing.T) {
	cases := []struct {
		curve elliptic.Curve
		crv   string
		size  int
	}{
		{elliptic.P256(), "P-256", 32},
		{elliptic.P384(), "P-384", 48},
	}
	for _, c := range cases {
		t.Run(c.crv, func(t *testing.T) {
			k := findECKey(t, c.curve)
			j := jwk(&k.PublicKey, "demo/v2")
			if j.Kty != "EC" || j.Crv != c.crv || j.Kid != "demo/v2" || j.N != "" || j.E != "" || j.Use != "" {
				t.Errorf("jwk = %+v", j)
			}
			for name, pair := range map[string]struct {
				enc string
				val *big.Int
			}{"x": {j.X, k.X}, "y": {j.Y, k.Y}} {
				if strings.ContainsAny(pair.enc, "=+/") {
					t.Errorf("%s = %q is not unpadded base64url", name, pair.enc)
				}
				raw, err := base64.RawURLEncoding.DecodeString(pair.enc)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if len(raw) != c.size {
					t.Errorf("%s is %d bytes, want %d (fixed width, RFC 7518 6.2.1.2)", name, len(raw), c.size)
				}
				if new(big.Int).SetBytes(raw).Cmp(pair.val) != 0 {
					t.Errorf("%s decodes to a different number", name)
				}
			}
			if raw, _ := base64.RawURLEncoding.DecodeString(j.X); raw[0] != 0 {
				t.Errorf("x does not start with the zero byte: %x", raw)
			}
		})
	}
}

func TestJWKRSAAndOthers(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	n := base64.RawURLEncoding.EncodeToString(k.N.Bytes())
	small := &rsa.PublicKey{N: big.NewInt(0xabcdef), E: 3}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		name string
		pub  any
		want JWK
	}{
		{"rsa 65537", &k.PublicKey, JWK{Kty: "RSA", N: n, E: "AQAB", Kid: "k/v1"}},
		{"rsa e=3", small, JWK{Kty: "RSA", N: "q83v", E: "Aw", Kid: "k/v1"}},
		{"unsupported", edPub, JWK{Kid: "k/v1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := jwk(c.pub, "k/v1"); got != c.want {
				t.Errorf("jwk = %+v, want %+v", got, c.want)
			}
		})
	}
	if raw, _ := base64.RawURLEncoding.DecodeString(n); len(raw) != 256 {
		t.Errorf("n is %d bytes, want 256", len(raw))
	}
}

func TestDurationJSON(t *testing.T) {
	cases := []struct {
		d    time.Duration
		json string
	}{
		{0, `"0s"`},
		{720 * time.Hour, `"720h0m0s"`},
		{90 * time.Minute, `"1h30m0s"`},
		{1500 * time.Millisecond, `"1.5s"`},
	}
	for _, c := range cases {
		b, err := json.Marshal(Duration(c.d))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.json {
			t.Errorf("Marshal(%v) = %s, want %s", c.d, b, c.json)
		}
		var d Duration
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if time.Duration(d) != c.d {
			t.Errorf("round trip of %v gave %v", c.d, time.Duration(d))
		}
	}
}

func TestDurationUnmarshal(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		msg  string // non-empty: must fail with this in the message
	}{
		{`"720h"`, 720 * time.Hour, ""},
		{`"30m"`, 30 * time.Minute, ""},
		{`"1h30m"`, 90 * time.Minute, ""},
		{`""`, 0, ""},
		{`null`, 0, ""},
		{`720`, 0, `duration must be a string such as "720h"`},
		{`true`, 0, `duration must be a string such as "720h"`},
		{`{}`, 0, `duration must be a string such as "720h"`},
		{`"720"`, 0, `duration "720" must look like "720h" or "30m"`},
		{`"-1h"`, 0, `duration "-1h" must look like "720h" or "30m"`},
		{`"soon"`, 0, `duration "soon" must look like "720h" or "30m"`},
		{`"1d"`, 0, `duration "1d" must look like "720h" or "30m"`},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			var r struct {
				D Duration `json:"d"`
			}
			r.D = Duration(time.Minute) // must be overwritten on success
			err := json.Unmarshal([]byte(`{"d":`+c.in+`}`), &r)
			if c.msg != "" {
				if err == nil || !strings.Contains(err.Error(), c.msg) {
					t.Fatalf("err = %v, want %q", err, c.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if time.Duration(r.D) != c.want {
				t.Errorf("got %v, want %v", time.Duration(r.D), c.want)
			}
		})
	}
}

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
