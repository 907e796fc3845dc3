package smcrypto_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"testing"

	"github.com/emmansun/gmsm/sm2"

	"github.com/keyward/keyward/token/smcrypto"
)

// sm2N is the order n of the SM2 recommended curve (GB/T 32918.5).
var sm2N, _ = new(big.Int).SetString("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)

func scalar(v *big.Int) []byte { return v.FillBytes(make([]byte, 32)) }

func mustGenerate(t testing.TB) *sm2.PrivateKey {
	t.Helper()
	k, err := smcrypto.GenerateSM2()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestGenerateMarshalParseSM2Private(t *testing.T) {
	seen := map[string]bool{}
	for range 8 {
		k := mustGenerate(t)
		if k.Curve != sm2.P256() {
			t.Fatalf("curve = %v, want SM2", k.Curve.Params().Name)
		}
		d := smcrypto.MarshalSM2Private(k)
		if len(d) != 32 {
			t.Fatalf("len(MarshalSM2Private) = %d, want 32", len(d))
		}
		if seen[string(d)] {
			t.Fatal("GenerateSM2 returned the same key twice")
		}
		seen[string(d)] = true
		k2, err := smcrypto.ParseSM2Private(d)
		if err != nil {
			t.Fatal(err)
		}
		if !k.Equal(k2) {
			t.Fatal("ParseSM2Private(MarshalSM2Private(k)) != k")
		}
		// ParseSM2Private must have copied d.
		smcrypto.Wipe(d)
		if !k.Equal(k2) || k2.D.Sign() == 0 {
			t.Fatal("wiping the input changed the parsed key")
		}
	}
}

func TestMarshalSM2PrivateFixedWidth(t *testing.T) {
	k, err := smcrypto.ParseSM2Private(scalar(big.NewInt(1)))
	if err != nil {
		t.Fatal(err)
	}
	want := append(make([]byte, 31), 1)
	if got := smcrypto.MarshalSM2Private(k); !bytes.Equal(got, want) {
		t.Fatalf("MarshalSM2Private(d=1) = %x, want %x", got, want)
	}
	if got := smcrypto.MarshalSM2Private(nil); got != nil {
		t.Fatalf("MarshalSM2Private(nil) = %x, want nil", got)
	}
}

func TestParseSM2PrivateRange(t *testing.T) {
	nMinus1 := new(big.Int).Sub(sm2N, big.NewInt(1))
	nMinus2 := new(big.Int).Sub(sm2N, big.NewInt(2))
	tests := []struct {
		name    string
		d       []byte
		wantErr bool
	}{
		{"nil", nil, true},
		{"empty", []byte{}, true},
		{"31 bytes", make([]byte, 31), true},
		{"33 bytes", append([]byte{0}, scalar(big.NewInt(5))...), true},
		{"64 bytes", make([]byte, 64), true},
		{"zero", make([]byte, 32), true},
		{"n-1", scalar(nMinus1), true},
		{"n", scalar(sm2N), true},
		{"all ones", bytes.Repeat([]byte{0xff}, 32), true},
		{"one", scalar(big.NewInt(1)), false},
		{"n-2", scalar(nMinus2), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := smcrypto.ParseSM2Private(tc.d)
			if tc.wantErr {
				if !errors.Is(err, smcrypto.ErrInvalidKey) || k != nil {
					t.Fatalf("got (%v, %v), want ErrInvalidKey", k, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(smcrypto.MarshalSM2Private(k), tc.d) {
				t.Fatal("round trip mismatch")
			}
		})
	}
}

func TestSM2PublicRoundTrip(t *testing.T) {
	k := mustGenerate(t)
	der, err := smcrypto.MarshalSM2Public(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := smcrypto.ParseSM2Public(der)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(&k.PublicKey) || pub.Curve != sm2.P256() {
		t.Fatal("ParseSM2Public(MarshalSM2Public(pub)) != pub")
	}
	// The algorithm identifier must be id-ecPublicKey with the SM2 curve
	// OID, which is what OpenSSL 3 writes and reads for SM2 keys.
	var spki struct {
		Algo struct {
			Algorithm asn1.ObjectIdentifier
			Curve     asn1.ObjectIdentifier
		}
		Key asn1.BitString
	}
	if rest, err := asn1.Unmarshal(der, &spki); err != nil || len(rest) != 0 {
		t.Fatalf("SPKI does not parse: %v", err)
	}
	if got, want := spki.Algo.Algorithm.String(), "1.2.840.10045.2.1"; got != want {
		t.Errorf("algorithm = %s, want %s (id-ecPublicKey)", got, want)
	}
	if got, want := spki.Algo.Curve.String(), "1.2.156.10197.1.301"; got != want {
		t.Errorf("curve = %s, want %s (SM2)", got, want)
	}
	if len(spki.Key.Bytes) != 65 || spki.Key.Bytes[0] != 4 {
		t.Errorf("public point is not uncompressed 65 bytes: %x", spki.Key.Bytes)
	}
}

func TestParseSM2PublicRefusesOthers(t *testing.T) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256DER, err := x509.MarshalPKIXPublicKey(&p256.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edDER, err := x509.MarshalPKIXPublicKey(edPub)
	if err != nil {
		t.Fatal(err)
	}
	good, err := smcrypto.MarshalSM2Public(&mustGenerate(t).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	offCurve := bytes.Clone(good)
	offCurve[len(offCurve)-1] ^= 0x01 // y no longer matches x
	tests := []struct {
		name string
		der  []byte
	}{
		{"NIST P-256", p256DER},
		{"Ed25519", edDER},
		{"point not on curve", offCurve},
		{"trailing data", append(bytes.Clone(good), 0)},
		{"truncated", good[:len(good)-1]},
		{"empty", nil},
		{"garbage", []byte("-----BEGIN PUBLIC KEY-----")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pub, err := smcrypto.ParseSM2Public(tc.der)
			if !errors.Is(err, smcrypto.ErrInvalidKey) || pub != nil {
				t.Fatalf("got (%v, %v), want ErrInvalidKey", pub, err)
			}
		})
	}
	t.Run("control: SM2 key parses", func(t *testing.T) {
		if _, err := smcrypto.ParseSM2Public(good); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSM2RejectsNonSM2PublicKeys(t *testing.T) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := mustGenerate(t)
	sig, err := smcrypto.SM2Sign(k, nil, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	// Same coordinates, wrong curve object.
	relabeled := &ecdsa.PublicKey{Curve: elliptic.P256(), X: k.X, Y: k.Y}
	tests := []struct {
		name string
		pub  *ecdsa.PublicKey
	}{
		{"P-256 key", &p256.PublicKey},
		{"SM2 point labelled P-256", relabeled},
		{"nil", nil},
		{"nil coordinates", &ecdsa.PublicKey{Curve: sm2.P256()}},
		{"off-curve point", &ecdsa.PublicKey{Curve: sm2.P256(), X: big.NewInt(1), Y: big.NewInt(2)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := smcrypto.MarshalSM2Public(tc.pub); !errors.Is(err, smcrypto.ErrInvalidKey) {
				t.Errorf("MarshalSM2Public err = %v, want ErrInvalidKey", err)
			}
			if _, err := smcrypto.SM2Digest(tc.pub, nil, []byte("m")); !errors.Is(err, smcrypto.ErrInvalidKey) {
				t.Errorf("SM2Digest err = %v, want ErrInvalidKey", err)
			}
			if _, err := smcrypto.SM2Encrypt(tc.pub, []byte("m"), smcrypto.EncodingASN1); !errors.Is(err, smcrypto.ErrInvalidKey) {
				t.Errorf("SM2Encrypt err = %v, want ErrInvalidKey", err)
			}
			if smcrypto.SM2Verify(tc.pub, nil, []byte("m"), sig) {
				t.Error("SM2Verify accepted")
			}
		})
	}
}

func TestSM2SignVerifyRoundTrip(t *testing.T) {
	k := mustGenerate(t)
	pub := &k.PublicKey
	longUID := bytes.Repeat([]byte{'u'}, 0x1fff)
	tests := []struct {
		name      string
		signUID   []byte
		verifyUID []byte
		msg       []byte
	}{
		{"nil uid both sides", nil, nil, []byte("transfer 100 CNY")},
		{"nil uid signs as DefaultUID", nil, []byte(smcrypto.DefaultUID), []byte("transfer 100 CNY")},
		{"empty uid is DefaultUID", []byte{}, []byte(smcrypto.DefaultUID), []byte("x")},
		{"custom uid", []byte("alice@bank.example"), []byte("alice@bank.example"), []byte("hello")},
		{"longest uid", longUID, longUID, []byte("hello")},
		{"empty message", nil, nil, nil},
		{"1 MiB message", nil, nil, bytes.Repeat([]byte{0xa5}, 1<<20)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := smcrypto.SM2Sign(k, tc.signUID, tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if sig[0] != 0x30 {
				t.Fatalf("signature is not a DER SEQUENCE: %x", sig)
			}
			var rs struct{ R, S *big.Int }
			if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 {
				t.Fatalf("signature is not SEQUENCE{r,s}: %x (%v)", sig, err)
			}
			if !smcrypto.SM2Verify(pub, tc.verifyUID, tc.msg, sig) {
				t.Fatal("SM2Verify rejected a fresh signature")
			}
			e, err := smcrypto.SM2Digest(pub, tc.verifyUID, tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if len(e) != 32 {
				t.Fatalf("len(e) = %d", len(e))
			}
			if !smcrypto.SM2VerifyDigest(pub, e, sig) {
				t.Fatal("SM2VerifyDigest rejected SM2Sign output")
			}
			// And the digest path signs what the message path verifies.
			sig2, err := smcrypto.SM2SignDigest(k, e)
			if err != nil {
				t.Fatal(err)
			}
			if !smcrypto.SM2Verify(pub, tc.verifyUID, tc.msg, sig2) {
				t.Fatal("SM2Verify rejected SM2SignDigest output")
			}
			if bytes.Equal(sig, sig2) {
				t.Fatal("two signatures are identical; nonce not randomized")
			}
		})
	}
}

func TestSM2VerifyNegative(t *testing.T) {
	k := mustGenerate(t)
	other := mustGenerate(t)
	pub := &k.PublicKey
	uid := []byte("alice@bank.example")
	msg := []byte("pay 1,000,000 CNY to bob")
	sig, err := smcrypto.SM2Sign(k, uid, msg)
	if err != nil {
		t.Fatal(err)
	}
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(sig, &rs); err != nil {
		t.Fatal(err)
	}
	reencode := func(r, s *big.Int) []byte {
		b, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sig)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name string
		pub  *ecdsa.PublicKey
		uid  []byte
		msg  []byte
		sig  []byte
		want bool
	}{
		{"control: valid", pub, uid, msg, sig, true},
		{"wrong uid", pub, []byte("mallory@bank.example"), msg, sig, false},
		{"default uid instead of custom", pub, nil, msg, sig, false},
		{"tampered message", pub, uid, []byte("pay 9,000,000 CNY to bob"), sig, false},
		{"other key", &other.PublicKey, uid, msg, sig, false},
		{"corrupted r", pub, uid, msg, flip(len(sig) - 40), false},
		{"corrupted s", pub, uid, msg, flip(len(sig) - 1), false},
		{"truncated", pub, uid, msg, sig[:len(sig)-1], false},
		{"trailing byte", pub, uid, msg, append(bytes.Clone(sig), 0), false},
		{"empty signature", pub, uid, msg, nil, false},
		{"r = 0", pub, uid, msg, reencode(big.NewInt(0), rs.S), false},
		{"s = 0", pub, uid, msg, reencode(rs.R, big.NewInt(0)), false},
		{"r + n", pub, uid, msg, reencode(new(big.Int).Add(rs.R, sm2N), rs.S), false},
		{"s + n", pub, uid, msg, reencode(rs.R, new(big.Int).Add(rs.S, sm2N)), false},
		{"n - s", pub, uid, msg, reencode(rs.R, new(big.Int).Sub(sm2N, rs.S)), false},
		{"raw r||s instead of DER", pub, uid, msg, append(scalar(rs.R), scalar(rs.S)...), false},
		{"uid too long", pub, bytes.Repeat([]byte{'u'}, 0x2000), msg, sig, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := smcrypto.SM2Verify(tc.pub, tc.uid, tc.msg, tc.sig); got != tc.want {
				t.Fatalf("SM2Verify = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSM2DigestLengthChecks(t *testing.T) {
	k := mustGenerate(t)
	e, err := smcrypto.SM2Digest(&k.PublicKey, nil, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := smcrypto.SM2SignDigest(k, e)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 31, 33, 64} {
		bad := make([]byte, n)
		copy(bad, e)
		if _, err := smcrypto.SM2SignDigest(k, bad); err == nil {
			t.Errorf("SM2SignDigest accepted a %d-byte digest", n)
		}
		if smcrypto.SM2VerifyDigest(&k.PublicKey, bad, sig) {
			t.Errorf("SM2VerifyDigest accepted a %d-byte digest", n)
		}
	}
	if !smcrypto.SM2VerifyDigest(&k.PublicKey, e, sig) {
		t.Fatal("control: 32-byte digest rejected")
	}
	if _, err := smcrypto.SM2Sign(k, bytes.Repeat([]byte{'u'}, 0x2000), []byte("m")); err == nil {
		t.Error("SM2Sign accepted an 8192-byte uid")
	}
	if _, err := smcrypto.SM2Sign(nil, nil, []byte("m")); !errors.Is(err, smcrypto.ErrInvalidKey) {
		t.Errorf("SM2Sign(nil key) err = %v, want ErrInvalidKey", err)
	}
}

// asn1Cipher mirrors GM/T 0009 SM2Cipher.
type asn1Cipher struct {
	X, Y       *big.Int
	Hash       []byte
	CipherText []byte
}

func TestSM2EncryptDecryptRoundTrip(t *testing.T) {
	k := mustGenerate(t)
	sizes := []int{1, 16, 19, 32, 255, 1000}
	for _, enc := range []smcrypto.Encoding{smcrypto.EncodingASN1, smcrypto.EncodingRaw} {
		for _, n := range sizes {
			name := map[smcrypto.Encoding]string{smcrypto.EncodingASN1: "ASN1", smcrypto.EncodingRaw: "raw"}[enc]
			t.Run(fmt.Sprintf("%s/%d", name, n), func(t *testing.T) {
				pt := make([]byte, n)
				if _, err := rand.Read(pt); err != nil {
					t.Fatal(err)
				}
				ct, err := smcrypto.SM2Encrypt(&k.PublicKey, pt, enc)
				if err != nil {
					t.Fatal(err)
				}
				switch enc {
				case smcrypto.EncodingRaw:
					if len(ct) != n+97 || ct[0] != 0x04 {
						t.Fatalf("raw ciphertext has len %d prefix %#x, want %d and 0x04", len(ct), ct[0], n+97)
					}
					// C1C3C2: C2 (last n bytes) and C3 (the 32 bytes
					// before it) are where gmsm's C1C3C2 decoder expects.
					if _, err := sm2.Decrypt(k, ct); err != nil {
						t.Fatalf("gmsm C1C3C2 decoder rejects output: %v", err)
					}
					if n != 32 { // with n == 32 both orders have the same split
						if _, err := k.Decrypt(nil, ct, sm2.NewPlainDecrypterOpts(sm2.C1C2C3)); err == nil {
							t.Fatal("raw ciphertext also decrypts as C1C2C3")
						}
					}
				case smcrypto.EncodingASN1:
					var c asn1Cipher
					rest, err := asn1.Unmarshal(ct, &c)
					if err != nil || len(rest) != 0 {
						t.Fatalf("not a DER SM2Cipher: %v", err)
					}
					if len(c.Hash) != 32 || len(c.CipherText) != n {
						t.Fatalf("SM2Cipher field lengths hash=%d ct=%d, want 32 and %d", len(c.Hash), len(c.CipherText), n)
					}
				}
				got, err := smcrypto.SM2Decrypt(k, ct)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, pt) {
					t.Fatal("plaintext mismatch")
				}
				ct2, err := smcrypto.SM2Encrypt(&k.PublicKey, pt, enc)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Equal(ct, ct2) {
					t.Fatal("encryption is deterministic")
				}
			})
		}
	}
}

func TestSM2CrossEncoding(t *testing.T) {
	k := mustGenerate(t)
	pt := []byte("wrapped SM4 key: 0123456789abcdef")
	asn1CT, err := smcrypto.SM2Encrypt(&k.PublicKey, pt, smcrypto.EncodingASN1)
	if err != nil {
		t.Fatal(err)
	}
	rawCT, err := smcrypto.SM2Encrypt(&k.PublicKey, pt, smcrypto.EncodingRaw)
	if err != nil {
		t.Fatal(err)
	}
	// Convert each encoding into the other with gmsm's independent
	// converters; SM2Decrypt must accept both forms of both ciphertexts.
	asn1AsRaw, err := sm2.ASN1Ciphertext2Plain(asn1CT, nil)
	if err != nil {
		t.Fatal(err)
	}
	rawAsASN1, err := sm2.PlainCiphertext2ASN1(rawCT, sm2.C1C3C2)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ct   []byte
	}{
		{"ASN.1", asn1CT},
		{"ASN.1 converted to raw", asn1AsRaw},
		{"raw", rawCT},
		{"raw converted to ASN.1", rawAsASN1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := smcrypto.SM2Decrypt(k, tc.ct)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, pt) {
				t.Fatal("plaintext mismatch")
			}
		})
	}
}

func TestSM2DecryptNegative(t *testing.T) {
	k := mustGenerate(t)
	other := mustGenerate(t)
	pt := []byte("0123456789abcdef")
	rawCT, err := smcrypto.SM2Encrypt(&k.PublicKey, pt, smcrypto.EncodingRaw)
	if err != nil {
		t.Fatal(err)
	}
	asn1CT, err := smcrypto.SM2Encrypt(&k.PublicKey, pt, smcrypto.EncodingASN1)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		return c
	}
	c1c2c3, err := sm2.AdjustCiphertextSplicingOrder(rawCT, sm2.C1C3C2, sm2.C1C2C3)
	if err != nil {
		t.Fatal(err)
	}
	// A valid ciphertext with a compressed C1 (gmsm can produce and read
	// it) is outside this package's formats and must be refused.
	compressed, err := sm2.Encrypt(rand.Reader, &k.PublicKey, pt, sm2.NewPlainEncrypterOpts(sm2.MarshalCompressed, sm2.C1C3C2))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := sm2.Decrypt(k, compressed); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("control: gmsm cannot decrypt its compressed ciphertext: %v", err)
	}
	tests := []struct {
		name string
		key  *sm2.PrivateKey
		ct   []byte
	}{
		{"wrong key raw", other, rawCT},
		{"wrong key ASN.1", other, asn1CT},
		{"tampered C1 x", k, flip(rawCT, 10)},
		{"tampered C3", k, flip(rawCT, 70)},
		{"tampered C2", k, flip(rawCT, len(rawCT)-1)},
		{"tampered ASN.1 C2", k, flip(asn1CT, len(asn1CT)-1)},
		{"C1C2C3 order", k, c1c2c3},
		{"compressed C1", k, compressed},
		{"truncated raw", k, rawCT[:len(rawCT)-1]},
		{"raw without C2", k, rawCT[:97]},
		{"ASN.1 trailing byte", k, append(bytes.Clone(asn1CT), 0)},
		{"ASN.1 truncated", k, asn1CT[:len(asn1CT)-1]},
		{"empty", k, nil},
		{"single 0x04", k, []byte{0x04}},
		{"nil key", nil, rawCT},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := smcrypto.SM2Decrypt(tc.key, tc.ct)
			if err != smcrypto.ErrDecrypt || got != nil {
				t.Fatalf("got (%x, %v), want exactly ErrDecrypt", got, err)
			}
		})
	}
	t.Run("control", func(t *testing.T) {
		for _, ct := range [][]byte{rawCT, asn1CT} {
			if got, err := smcrypto.SM2Decrypt(k, ct); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("control decryption failed: %v", err)
			}
		}
	})
}

func TestSM2EncryptArgumentChecks(t *testing.T) {
	k := mustGenerate(t)
	tests := []struct {
		name string
		pt   []byte
		enc  smcrypto.Encoding
	}{
		{"empty plaintext", nil, smcrypto.EncodingASN1},
		{"empty plaintext raw", []byte{}, smcrypto.EncodingRaw},
		{"zero Encoding", []byte("x"), 0},
		{"unknown Encoding", []byte("x"), smcrypto.EncodingRaw + 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if ct, err := smcrypto.SM2Encrypt(&k.PublicKey, tc.pt, tc.enc); err == nil {
				t.Fatalf("SM2Encrypt succeeded: %x", ct)
			}
		})
	}
}
