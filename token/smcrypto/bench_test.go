package smcrypto_test

import (
	"testing"

	"github.com/keyward/keyward/token/smcrypto"
)

var benchMsg = []byte("R-AUTH-1 login challenge 0123456789abcdef0123456789abcdef")

func BenchmarkSM2Sign(b *testing.B) {
	k := mustGenerate(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := smcrypto.SM2Sign(k, nil, benchMsg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSM2Verify(b *testing.B) {
	k := mustGenerate(b)
	sig, err := smcrypto.SM2Sign(k, nil, benchMsg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !smcrypto.SM2Verify(&k.PublicKey, nil, benchMsg, sig) {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkSM4GCMSeal(b *testing.B) {
	key := randBytes(b, 16)
	pt := randBytes(b, 1024)
	aad := []byte("wrapped-key v1")
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := smcrypto.SM4GCMSeal(key, pt, aad); err != nil {
			b.Fatal(err)
		}
	}
}
