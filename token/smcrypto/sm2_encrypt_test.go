package smcrypto_test

// SM2 encryption checked against GB/T 32918.4-2016 itself: refDecrypt is the
// decryption procedure of section 7 written out with math/big affine point
// arithmetic (GB/T 32918.1-2016 3.2.3), sharing no code with gmsm beyond
// SM3, so it can referee what gmsm computes.

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"testing"
	"testing/cryptotest"

	"github.com/emmansun/gmsm/sm2"

	"github.com/keyward/keyward/token/smcrypto"
)

// sm2P is the field prime p of the SM2 recommended curve (GB/T 32918.5).
var sm2P, _ = new(big.Int).SetString("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF", 16)

// refPoint is an affine point; nil coordinates are the point at infinity.
type refPoint struct{ x, y *big.Int }

// refAdd adds two points with the affine formulas of GB/T 32918.1 3.2.3
// (a = p - 3).
func refAdd(p, q refPoint) refPoint {
	if p.x == nil {
		return q
	}
	if q.x == nil {
		return p
	}
	var l *big.Int
	if p.x.Cmp(q.x) == 0 {
		if new(big.Int).Add(p.y, q.y).Mod(new(big.Int).Add(p.y, q.y), sm2P).Sign() == 0 {
			return refPoint{}
		}
		num := new(big.Int).Mul(p.x, p.x)
		num.Mul(num, big.NewInt(3)).Sub(num, big.NewInt(3)) // 3x² + a
		den := new(big.Int).ModInverse(new(big.Int).Lsh(p.y, 1), sm2P)
		l = num.Mul(num, den)
	} else {
		num := new(big.Int).Sub(q.y, p.y)
		den := new(big.Int).ModInverse(new(big.Int).Sub(q.x, p.x).Mod(new(big.Int).Sub(q.x, p.x), sm2P), sm2P)
		l = num.Mul(num, den)
	}
	l.Mod(l, sm2P)
	x := new(big.Int).Mul(l, l)
	x.Sub(x, p.x).Sub(x, q.x).Mod(x, sm2P)
	y := new(big.Int).Sub(p.x, x)
	y.Mul(y, l).Sub(y, p.y).Mod(y, sm2P)
	return refPoint{x, y}
}

// refMul is [k]P by double-and-add.
func refMul(k *big.Int, p refPoint) refPoint {
	var r refPoint
	for i := k.BitLen() - 1; i >= 0; i-- {
		r = refAdd(r, r)
		if k.Bit(i) == 1 {
			r = refAdd(r, p)
		}
	}
	return r
}

// refKDF is the key derivation function of GB/T 32918.4 5.4.3 with SM3.
func refKDF(z []byte, n int) []byte {
	var out []byte
	for ct := uint32(1); len(out) < n; ct++ {
		h := smcrypto.SM3(binary.BigEndian.AppendUint32(bytes.Clone(z), ct))
		out = append(out, h[:]...)
	}
	return out[:n]
}

var (
	errRefC1    = errors.New("C1 is not a point of the curve")
	errRefTZero = errors.New("t = KDF(x2 || y2, klen) is all zero (B4)")
	errRefC3    = errors.New("u = Hash(x2 || M' || y2) differs from C3 (B6)")
)

// refDecrypt decrypts a raw C1 ‖ C3 ‖ C2 ciphertext with the private scalar
// d by GB/T 32918.4-2016 section 7 (steps B1-B7).
func refDecrypt(d *big.Int, raw []byte) ([]byte, error) {
	if len(raw) < 97 || raw[0] != 0x04 {
		return nil, errRefC1
	}
	c1 := refPoint{new(big.Int).SetBytes(raw[1:33]), new(big.Int).SetBytes(raw[33:65])}
	if !sm2.P256().IsOnCurve(c1.x, c1.y) { // B1
		return nil, errRefC1
	}
	s := refMul(d, c1) // B3
	z := append(s.x.FillBytes(make([]byte, 32)), s.y.FillBytes(make([]byte, 32))...)
	c3, c2 := raw[65:97], raw[97:]
	t := refKDF(z, len(c2)) // B4
	if allZero(t) {
		return nil, errRefTZero
	}
	m := make([]byte, len(c2)) // B5
	for i := range m {
		m[i] = c2[i] ^ t[i]
	}
	u := smcrypto.SM3(append(append(bytes.Clone(z[:32]), m...), z[32:]...)) // B6
	if !bytes.Equal(u[:], c3) {
		return nil, errRefC3
	}
	return m, nil
}

func allZero(b []byte) bool {
	for _, v := range b {
		if v != 0 {
			return false
		}
	}
	return true
}

// zeroTSeed seeds cryptotest.SetGlobalRandom so that the first 32 bytes
// drawn, taken as k, give t = KDF(x2 ‖ y2, 8) = 0x00 for a 1-byte message
// to the standard's key (stdKey): found by trying seeds 0, 1, 2, … and
// checked again by the test, so a change of Go's test generator shows up
// as a failed precondition, not as a silently weaker test.
const zeroTSeed = 180

// zeroTK returns the first k drawn from the zeroTSeed stream after checking
// that it is in range and gives t = 00 for a 1-byte message to stdKey.
func zeroTK(t *testing.T) *big.Int {
	t.Helper()
	k := stdKey(t)
	cryptotest.SetGlobalRandom(t, zeroTSeed)
	first := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, first); err != nil {
		t.Fatal(err)
	}
	k1 := new(big.Int).SetBytes(first)
	s := refMul(k1, refPoint{k.X, k.Y})
	z := append(scalar(s.x), scalar(s.y)...)
	if t1 := refKDF(z, 1); t1[0] != 0 || k1.Sign() == 0 || k1.Cmp(sm2N) >= 0 {
		t.Fatalf("precondition: seed %d no longer draws a k with t = 00 first (t = %x); pick another seed", zeroTSeed, t1)
	}
	return k1
}

// zeroTCiphertext is a raw ciphertext of the 1-byte message 0x42 to stdKey
// made with k = zeroTK: t is all zero, so C2 = M. A conforming encrypter
// never emits it (A5) and a conforming decrypter refuses it (B4).
func zeroTCiphertext(t *testing.T) []byte {
	t.Helper()
	k, k1 := stdKey(t), zeroTK(t)
	params := sm2.P256().Params()
	c1 := refMul(k1, refPoint{params.Gx, params.Gy})
	s := refMul(k1, refPoint{k.X, k.Y})
	m := []byte{0x42}
	c3 := smcrypto.SM3(append(append(scalar(s.x), m...), scalar(s.y)...))
	raw := append([]byte{0x04}, scalar(c1.x)...)
	raw = append(append(append(raw, scalar(c1.y)...), c3[:]...), m...)
	return raw
}

// TestSM2DecryptRefusesZeroT pins GB/T 32918.4-2016 7.1 step B4: a
// ciphertext whose t is all zero is refused, in both encodings.
func TestSM2DecryptRefusesZeroT(t *testing.T) {
	k, raw := stdKey(t), zeroTCiphertext(t)
	if _, err := refDecrypt(k.D, raw); !errors.Is(err, errRefTZero) {
		t.Fatalf("refDecrypt = %v, want errRefTZero", err)
	}
	der, err := sm2.PlainCiphertext2ASN1(raw, sm2.C1C3C2)
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range [][]byte{raw, der} {
		if got, err := smcrypto.SM2Decrypt(k, ct); err != smcrypto.ErrDecrypt || got != nil {
			t.Fatalf("SM2Decrypt(%x) = (%x, %v), want ErrDecrypt", ct, got, err)
		}
	}
}

// TestSM2EncryptRestartsAtA1 pins GB/T 32918.4-2016 6.1 step A5: when t is
// all zero, encryption goes back to A1 with a new k and recomputes both
// C1 = [k]G and (x2, y2) = [k]P_B. gmsm v0.44.1 recomputed (x2, y2) from a
// point it had overwritten, so the ciphertext of this seed did not decrypt
// (OpenSSL: "ossl_sm2_decrypt ... sm2_crypt.c:409", reason 102 invalid
// digest). The ciphertext is checked with refDecrypt, not with gmsm.
func TestSM2EncryptRestartsAtA1(t *testing.T) {
	k, k1 := stdKey(t), zeroTK(t)
	params := sm2.P256().Params()
	k1G := refMul(k1, refPoint{params.Gx, params.Gy})
	for _, enc := range []smcrypto.Encoding{smcrypto.EncodingRaw, smcrypto.EncodingASN1} {
		cryptotest.SetGlobalRandom(t, zeroTSeed) // the same stream again: k1 comes first
		ct, err := smcrypto.SM2Encrypt(&k.PublicKey, []byte{0x42}, enc)
		if err != nil {
			t.Fatal(err)
		}
		raw := ct
		if enc == smcrypto.EncodingASN1 {
			if raw, err = sm2.ASN1Ciphertext2Plain(ct, nil); err != nil {
				t.Fatal(err)
			}
		}
		if bytes.Equal(raw[1:65], append(scalar(k1G.x), scalar(k1G.y)...)) {
			t.Fatalf("encoding %d: C1 = [k1]G although t was all zero for k1", enc)
		}
		m, err := refDecrypt(k.D, raw)
		if err != nil || !bytes.Equal(m, []byte{0x42}) {
			t.Fatalf("encoding %d: ciphertext %x does not decrypt by GB/T 32918.4 section 7: (%x, %v)", enc, ct, m, err)
		}
		if got, err := smcrypto.SM2Decrypt(k, ct); err != nil || !bytes.Equal(got, []byte{0x42}) {
			t.Fatalf("encoding %d: SM2Decrypt = (%x, %v)", enc, got, err)
		}
	}
}

// TestSM2EncryptOneByteAlwaysDecrypts encrypts 4096 one-byte messages (about
// 16 of which meet an all-zero t) from a fixed random stream and decrypts
// every one: the 0.4 % of broken ciphertexts cannot hide in it.
func TestSM2EncryptOneByteAlwaysDecrypts(t *testing.T) {
	k := stdKey(t)
	cryptotest.SetGlobalRandom(t, 1)
	for i := range 4096 {
		pt := []byte{byte(i)}
		ct, err := smcrypto.SM2Encrypt(&k.PublicKey, pt, smcrypto.EncodingRaw)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := smcrypto.SM2Decrypt(k, ct); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("ciphertext %d (%x) does not decrypt: %v", i, ct, err)
		}
	}
}

// TestRefDecryptStandardExample checks the referee on the worked example of
// GB/T 32918.4 (kat_test.go), and that it refuses the example with one bit
// of C3 flipped.
func TestRefDecryptStandardExample(t *testing.T) {
	raw := unhex(t, "04"+stdEncX1+stdEncY1+stdEncC3+stdEncC2)
	m, err := refDecrypt(stdKey(t).D, raw)
	if err != nil || string(m) != stdEncPlain {
		t.Fatalf("refDecrypt(standard example) = (%q, %v), want %q", m, err, stdEncPlain)
	}
	raw[70] ^= 1
	if _, err := refDecrypt(stdKey(t).D, raw); !errors.Is(err, errRefC3) {
		t.Fatalf("refDecrypt(tampered C3) = %v, want errRefC3", err)
	}
}
