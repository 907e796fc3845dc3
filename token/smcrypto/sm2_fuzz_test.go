package smcrypto_test

import (
	"bytes"
	"testing"

	"github.com/emmansun/gmsm/sm2"

	"github.com/keyward/keyward/token/smcrypto"
)

// FuzzSM2Decrypt feeds SM2Decrypt arbitrary ciphertexts, raw C1 ‖ C3 ‖ C2
// and DER SM2Cipher alike (SM2Decrypt picks the parser by the first byte
// and the length). It must never panic, must refuse with exactly ErrDecrypt
// and no plaintext, and may accept only what the standard's procedure
// (refDecrypt) decrypts to the same plaintext, in its one canonical
// encoding: a DER SM2Cipher that re-encodes to other bytes (long-form
// lengths, padded INTEGERs, trailing data) is malleable and must be refused.
func FuzzSM2Decrypt(f *testing.F) {
	k := stdKey(f)
	raw := unhex(f, "04"+stdEncX1+stdEncY1+stdEncC3+stdEncC2)
	der := unhex(f, stdEncASN1)
	f.Add(raw)
	f.Add(der)
	f.Add(unhex(f, "04"+stdEncX1+stdEncY1+stdEncC2+stdEncC3)) // C1C2C3 order
	f.Add(unhex(f, "02"+stdEncX1+stdEncC3+stdEncC2))          // compressed C1
	f.Add(raw[:97])
	f.Add(der[:len(der)-1])
	f.Add(append(bytes.Clone(der), 0))
	// x padded with a needless zero byte: BER, not DER.
	f.Add(unhex(f, "307D"+"022100"+stdEncX1+"022100"+stdEncY1+"0420"+stdEncC3+"0413"+stdEncC2))
	// Long-form SEQUENCE length.
	f.Add(unhex(f, "30817C"+stdEncASN1[4:]))
	// C2 before C3 inside the SEQUENCE.
	f.Add(unhex(f, "307C"+"0220"+stdEncX1+"022100"+stdEncY1+"0413"+stdEncC2+"0420"+stdEncC3))
	// Negative x.
	f.Add(unhex(f, "307C"+"0220"+"84"+stdEncX1[2:]+"022100"+stdEncY1+"0420"+stdEncC3+"0413"+stdEncC2))
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x04})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, ct []byte) {
		pt, err := smcrypto.SM2Decrypt(k, ct)
		if err != nil {
			if err != smcrypto.ErrDecrypt || pt != nil {
				t.Fatalf("SM2Decrypt = (%x, %v), want (nil, ErrDecrypt)", pt, err)
			}
			return
		}
		if len(pt) == 0 {
			t.Fatal("SM2Decrypt returned an empty plaintext and no error")
		}
		plain := ct
		if ct[0] != 0x04 {
			plain, err = sm2.ASN1Ciphertext2Plain(ct, nil)
			if err != nil {
				t.Fatalf("accepted %x, which gmsm cannot convert to raw: %v", ct, err)
			}
			canonical, err := sm2.PlainCiphertext2ASN1(plain, sm2.C1C3C2)
			if err != nil || !bytes.Equal(canonical, ct) {
				t.Fatalf("accepted a non-canonical SM2Cipher %x (DER is %x)", ct, canonical)
			}
		}
		if m, err := refDecrypt(k.D, plain); err != nil || !bytes.Equal(m, pt) {
			t.Fatalf("accepted %x as %x; GB/T 32918.4 section 7 says (%x, %v)", ct, pt, m, err)
		}
	})
}
