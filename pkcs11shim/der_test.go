package pkcs11shim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
)

// derCurves are the curves Keyward signs with and the r/s width of each.
var derCurves = []struct {
	name    string
	curve   elliptic.Curve
	byteLen int
	hash    func([]byte) []byte
}{
	{"P-256", elliptic.P256(), 32, func(b []byte) []byte { h := sha256.Sum256(b); return h[:] }},
	{"P-384", elliptic.P384(), 48, func(b []byte) []byte { h := sha512.Sum384(b); return h[:] }},
}

// derSig is the ASN.1 ECDSA-Sig-Value, decoded independently of the code
// under test (encoding/asn1 instead of cryptobyte).
type derSig struct{ R, S *big.Int }

func derEncodeSig(t testing.TB, r, s *big.Int) []byte {
	t.Helper()
	der, err := asn1.Marshal(derSig{r, s})
	if err != nil {
		t.Fatalf("asn1.Marshal: %v", err)
	}
	return der
}

func derDecodeSig(t testing.TB, der []byte) (r, s *big.Int) {
	t.Helper()
	var sig derSig
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 {
		t.Fatalf("asn1.Unmarshal(%x): rest %d, %v", der, len(rest), err)
	}
	return sig.R, sig.S
}

func TestECDSARoundTripGoSignatures(t *testing.T) {
	for _, c := range derCurves {
		t.Run(c.name, func(t *testing.T) {
			priv, err := ecdsa.GenerateKey(c.curve, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 100 {
				digest := c.hash([]byte{byte(i), byte(i >> 8), 'x'})
				der, err := ecdsa.SignASN1(rand.Reader, priv, digest)
				if err != nil {
					t.Fatal(err)
				}
				raw, err := ECDSADERToRaw(der, c.byteLen)
				if err != nil {
					t.Fatalf("ECDSADERToRaw(%x): %v", der, err)
				}
				if len(raw) != 2*c.byteLen {
					t.Fatalf("raw length %d, want %d", len(raw), 2*c.byteLen)
				}
				wantR, wantS := derDecodeSig(t, der)
				gotR := new(big.Int).SetBytes(raw[:c.byteLen])
				gotS := new(big.Int).SetBytes(raw[c.byteLen:])
				if gotR.Cmp(wantR) != 0 || gotS.Cmp(wantS) != 0 {
					t.Fatalf("raw halves (%x, %x) differ from DER (%x, %x)", gotR, gotS, wantR, wantS)
				}
				if !ecdsa.Verify(&priv.PublicKey, digest, gotR, gotS) {
					t.Fatalf("raw r‖s does not verify")
				}
				der2, err := ECDSARawToDER(raw)
				if err != nil {
					t.Fatalf("ECDSARawToDER: %v", err)
				}
				if !bytes.Equal(der2, der) {
					t.Fatalf("DER→raw→DER changed the signature:\n got %x\nwant %x", der2, der)
				}
				if !ecdsa.VerifyASN1(&priv.PublicKey, digest, der2) {
					t.Fatalf("re-encoded DER does not verify")
				}
			}
		})
	}
}

// A token's raw output always has fixed-width halves; r or s with a zero top
// byte must stay padded both ways.
func TestECDSALeadingZeroKeepsWidth(t *testing.T) {
	for _, c := range derCurves {
		t.Run(c.name, func(t *testing.T) {
			priv, err := ecdsa.GenerateKey(c.curve, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			// Find real signatures whose r, then s, has a zero high byte
			// (1 in 256 each), and check both conversions on them.
			var foundR, foundS bool
			for i := 0; i < 20000 && !(foundR && foundS); i++ {
				digest := c.hash([]byte{byte(i), byte(i >> 8), byte(i >> 16)})
				der, err := ecdsa.SignASN1(rand.Reader, priv, digest)
				if err != nil {
					t.Fatal(err)
				}
				r, s := derDecodeSig(t, der)
				shortR, shortS := len(r.Bytes()) < c.byteLen, len(s.Bytes()) < c.byteLen
				if !(shortR && !foundR) && !(shortS && !foundS) {
					continue
				}
				foundR, foundS = foundR || shortR, foundS || shortS
				raw, err := ECDSADERToRaw(der, c.byteLen)
				if err != nil {
					t.Fatalf("ECDSADERToRaw: %v", err)
				}
				if len(raw) != 2*c.byteLen {
					t.Fatalf("raw length %d, want %d", len(raw), 2*c.byteLen)
				}
				if shortR && raw[0] != 0 {
					t.Fatalf("r %x not left-padded in raw %x", r, raw)
				}
				if shortS && raw[c.byteLen] != 0 {
					t.Fatalf("s %x not left-padded in raw %x", s, raw)
				}
				der2, err := ECDSARawToDER(raw)
				if err != nil || !bytes.Equal(der2, der) {
					t.Fatalf("round trip of %x: %x, %v", der, der2, err)
				}
				if !ecdsa.VerifyASN1(&priv.PublicKey, digest, der2) {
					t.Fatal("round-tripped signature does not verify")
				}
			}
			if !foundR || !foundS {
				t.Fatalf("no signature with a short r (%v) or s (%v) in 20000 tries", foundR, foundS)
			}
		})
	}
}

func TestECDSAFixedValues(t *testing.T) {
	full := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	tests := []struct {
		name    string
		byteLen int
		r, s    *big.Int
	}{
		{"P-256 r=1 s=1", 32, big.NewInt(1), big.NewInt(1)},
		{"P-256 r one byte short", 32, new(big.Int).SetBytes(full(31, 0xff)), new(big.Int).SetBytes(full(32, 0x7f))},
		{"P-256 s many bytes short", 32, new(big.Int).SetBytes(full(32, 0x80)), big.NewInt(0x1234)},
		{"P-256 high bit set both (DER needs 0x00 pad)", 32, new(big.Int).SetBytes(full(32, 0x80)), new(big.Int).SetBytes(full(32, 0xff))},
		{"P-384 r=2 s max width", 48, big.NewInt(2), new(big.Int).SetBytes(full(48, 0xfe))},
		{"P-384 high bit set", 48, new(big.Int).SetBytes(full(48, 0x81)), new(big.Int).SetBytes(full(47, 0x81))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der := derEncodeSig(t, tt.r, tt.s)
			raw, err := ECDSADERToRaw(der, tt.byteLen)
			if err != nil {
				t.Fatalf("ECDSADERToRaw: %v", err)
			}
			want := make([]byte, 2*tt.byteLen)
			tt.r.FillBytes(want[:tt.byteLen])
			tt.s.FillBytes(want[tt.byteLen:])
			if !bytes.Equal(raw, want) {
				t.Fatalf("raw\n got %x\nwant %x", raw, want)
			}
			der2, err := ECDSARawToDER(raw)
			if err != nil {
				t.Fatalf("ECDSARawToDER: %v", err)
			}
			if !bytes.Equal(der2, der) {
				t.Fatalf("DER\n got %x\nwant %x", der2, der)
			}
		})
	}
}

func TestECDSADERToRawMalformed(t *testing.T) {
	good := derEncodeSig(t, big.NewInt(0x4242), big.NewInt(0x1717)) // 30 08 02 02 42 42 02 02 17 17
	if _, err := ECDSADERToRaw(good, 32); err != nil {
		t.Fatalf("control signature refused: %v", err)
	}
	big33 := new(big.Int).Lsh(big.NewInt(1), 256) // needs 33 bytes
	big49 := new(big.Int).Lsh(big.NewInt(1), 384) // needs 49 bytes
	p384sig := derEncodeSig(t, new(big.Int).SetBytes(bytes.Repeat([]byte{0x11}, 48)), big.NewInt(1))
	tests := []struct {
		name    string
		der     []byte
		byteLen int
	}{
		{"nil", nil, 32},
		{"empty", []byte{}, 32},
		{"trailing byte after sequence", append(append([]byte{}, good...), 0x00), 32},
		{"second sequence after the first", append(append([]byte{}, good...), good...), 32},
		{"third integer inside", []byte{0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}, 32},
		{"trailing byte inside sequence", []byte{0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00}, 32},
		{"missing s", []byte{0x30, 0x03, 0x02, 0x01, 0x01}, 32},
		{"empty sequence", []byte{0x30, 0x00}, 32},
		{"negative r", derEncodeSig(t, big.NewInt(-5), big.NewInt(1)), 32},
		{"negative s", derEncodeSig(t, big.NewInt(1), big.NewInt(-128)), 32},
		{"zero r", derEncodeSig(t, big.NewInt(0), big.NewInt(1)), 32},
		{"zero s", derEncodeSig(t, big.NewInt(1), big.NewInt(0)), 32},
		{"r too long for P-256", derEncodeSig(t, big33, big.NewInt(1)), 32},
		{"s too long for P-256", derEncodeSig(t, big.NewInt(1), big33), 32},
		{"r too long for P-384", derEncodeSig(t, big49, big.NewInt(1)), 48},
		{"P-384 sized r given to P-256", p384sig, 32},
		{"not a sequence: SET", append([]byte{0x31}, good[1:]...), 32},
		{"not a sequence: OCTET STRING", append([]byte{0x04}, good[1:]...), 32},
		{"not a sequence: bare INTEGER", []byte{0x02, 0x01, 0x01}, 32},
		{"integer tagged as OCTET STRING", []byte{0x30, 0x06, 0x04, 0x01, 0x01, 0x02, 0x01, 0x01}, 32},
		{"non-minimal integer (leading 0x00)", []byte{0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01}, 32},
		{"non-minimal negative integer (leading 0xff)", []byte{0x30, 0x07, 0x02, 0x02, 0xff, 0x80, 0x02, 0x01, 0x01}, 32},
		{"empty integer", []byte{0x30, 0x05, 0x02, 0x00, 0x02, 0x01, 0x01}, 32},
		{"non-minimal long-form length", append([]byte{0x30, 0x81, 0x08}, good[2:]...), 32},
		{"indefinite length (BER)", append(append([]byte{0x30, 0x80}, good[2:]...), 0x00, 0x00), 32},
		{"length beyond input", []byte{0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}, 32},
		{"truncated", good[:len(good)-1], 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := ECDSADERToRaw(tt.der, tt.byteLen)
			if !errors.Is(err, ErrSignatureInvalid) {
				t.Fatalf("ECDSADERToRaw(%x) = %x, %v; want ErrSignatureInvalid", tt.der, raw, err)
			}
			if errors.Is(err, ErrInputInvalid) {
				t.Fatalf("malformed DER also reported as ErrInputInvalid: %v", err)
			}
			if raw != nil {
				t.Fatalf("raw %x returned with an error", raw)
			}
		})
	}
}

func TestECDSARawToDERBadLength(t *testing.T) {
	for _, n := range []int{0, 1, 3, 63, 65, 95, 97} {
		raw := bytes.Repeat([]byte{0x01}, n)
		der, err := ECDSARawToDER(raw)
		if !errors.Is(err, ErrInputInvalid) {
			t.Errorf("ECDSARawToDER(len %d) = %x, %v; want ErrInputInvalid", n, der, err)
		}
		if errors.Is(err, ErrSignatureInvalid) {
			t.Errorf("len %d: also ErrSignatureInvalid: %v", n, err)
		}
	}
	for _, n := range []int{2, 64, 96, 132} { // even lengths are converted
		if _, err := ECDSARawToDER(bytes.Repeat([]byte{0x01}, n)); err != nil {
			t.Errorf("ECDSARawToDER(len %d): %v", n, err)
		}
	}
}

func TestParseECPoint(t *testing.T) {
	for _, c := range derCurves {
		t.Run(c.name, func(t *testing.T) {
			priv, err := ecdsa.GenerateKey(c.curve, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			epub, err := priv.PublicKey.ECDH()
			if err != nil {
				t.Fatal(err)
			}
			raw := epub.Bytes() // X9.62 uncompressed: 04 ‖ X ‖ Y
			if len(raw) != 1+2*c.byteLen || raw[0] != 4 {
				t.Fatalf("unexpected point encoding %x", raw)
			}
			if m := elliptic.Marshal(c.curve, priv.X, priv.Y); !bytes.Equal(m, raw) { //nolint:staticcheck // cross-check of the encoding
				t.Fatalf("ecdh and elliptic.Marshal disagree")
			}
			wrapped, err := asn1.Marshal(raw) // DER OCTET STRING, as SoftHSM returns
			if err != nil {
				t.Fatal(err)
			}
			for name, v := range map[string][]byte{"raw": raw, "octet-string": wrapped} {
				pub, err := parseECPoint(c.curve, v)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !pub.Equal(&priv.PublicKey) {
					t.Fatalf("%s: parsed key differs", name)
				}
			}

			offCurve := append([]byte{}, raw...)
			offCurve[len(offCurve)-1] ^= 0x01 // y±1: not on the curve
			offWrapped, _ := asn1.Marshal(offCurve)
			compressed := elliptic.MarshalCompressed(c.curve, priv.X, priv.Y)
			compWrapped, _ := asn1.Marshal(compressed)
			xTooBig := append([]byte{4}, bytes.Repeat([]byte{0xff}, 2*c.byteLen)...)
			other := elliptic.P384()
			if c.curve == other {
				other = elliptic.P256()
			}
			opriv, _ := ecdsa.GenerateKey(other, rand.Reader)
			oraw, _ := opriv.PublicKey.ECDH()
			otherWrapped, _ := asn1.Marshal(oraw.Bytes())
			trailing := append(append([]byte{}, wrapped...), 0x00)
			garbage := make([]byte, 40)
			_, _ = rand.Read(garbage)
			bad := []struct {
				name string
				v    []byte
			}{
				{"nil", nil},
				{"empty", []byte{}},
				{"off-curve raw", offCurve},
				{"off-curve wrapped", offWrapped},
				{"coordinates not below p", xTooBig},
				{"point at infinity", []byte{0}},
				{"infinity wrapped", []byte{0x04, 0x01, 0x00}},
				{"compressed raw", compressed},
				{"compressed wrapped", compWrapped},
				{"wrong prefix byte", append([]byte{0x05}, raw[1:]...)},
				{"point of another curve", oraw.Bytes()},
				{"point of another curve wrapped", otherWrapped},
				{"OCTET STRING with trailing byte", trailing},
				{"BIT STRING instead of OCTET STRING", append([]byte{0x03}, wrapped[1:]...)},
				{"random garbage", garbage},
				{"truncated wrapped", wrapped[:len(wrapped)-1]},
			}
			for _, b := range bad {
				pub, err := parseECPoint(c.curve, b.v)
				if !errors.Is(err, ErrKeyMismatch) {
					t.Errorf("%s: parseECPoint(%x) = %v, %v; want ErrKeyMismatch", b.name, b.v, pub, err)
				}
				if pub != nil {
					t.Errorf("%s: key returned with an error", b.name)
				}
			}
		})
	}
}

func FuzzECDSADERToRaw(f *testing.F) {
	for _, c := range derCurves {
		priv, err := ecdsa.GenerateKey(c.curve, rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		for i := range 4 {
			der, err := ecdsa.SignASN1(rand.Reader, priv, c.hash([]byte{byte(i)}))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(der, c.byteLen == 48)
		}
	}
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}, false)
	f.Add([]byte{0x30, 0x07, 0x02, 0x02, 0x00, 0x80, 0x02, 0x01, 0x01}, false)
	f.Add([]byte{0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}, true)
	f.Add([]byte{0x30, 0x80, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00, 0x00}, true)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, der []byte, wide bool) {
		byteLen := 32
		if wide {
			byteLen = 48
		}
		raw, err := ECDSADERToRaw(der, byteLen)
		if err != nil {
			if !errors.Is(err, ErrSignatureInvalid) {
				t.Fatalf("error %v is not ErrSignatureInvalid", err)
			}
			if raw != nil {
				t.Fatalf("raw %x returned with an error", raw)
			}
			return
		}
		if len(raw) != 2*byteLen {
			t.Fatalf("raw length %d, want %d", len(raw), 2*byteLen)
		}
		der2, err := ECDSARawToDER(raw)
		if err != nil {
			t.Fatalf("ECDSARawToDER(%x) of an accepted signature: %v", raw, err)
		}
		raw2, err := ECDSADERToRaw(der2, byteLen)
		if err != nil {
			t.Fatalf("re-encoded DER %x refused: %v", der2, err)
		}
		if !bytes.Equal(raw2, raw) {
			t.Fatalf("raw changed across DER round trip: %x → %x", raw, raw2)
		}
		// The parser accepts DER only, so the accepted input is the one
		// canonical encoding: no malleable alternative forms.
		if !bytes.Equal(der2, der) {
			t.Fatalf("accepted non-canonical DER %x (canonical %x)", der, der2)
		}
	})
}
