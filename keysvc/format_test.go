package keysvc

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	"github.com/keyward/keyward/keysvc/wire"
)

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
		want wire.JWK
	}{
		{"rsa 65537", &k.PublicKey, wire.JWK{Kty: "RSA", N: n, E: "AQAB", Kid: "k/v1"}},
		{"rsa e=3", small, wire.JWK{Kty: "RSA", N: "q83v", E: "Aw", Kid: "k/v1"}},
		{"unsupported", edPub, wire.JWK{Kid: "k/v1"}},
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
