package tpm_test

import (
	"crypto"
	"crypto/sha256"
	"testing"

	"github.com/keyward/keyward/token/tpm"
)

// BenchmarkSign: one ECDSA P-256 signature by a loaded TPM key (swtpm over TCP).
func BenchmarkSign(b *testing.B) {
	tp := newTPM(b)
	s, _ := newSigner(b, tp)
	d := sha256.Sum256([]byte("checkpoint"))
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Sign(nil, d[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnseal: a whole Unseal (CreatePrimary SRK, Load, salted session, policy, Unseal,
// flushes) as keysvc does once at start-up.
func BenchmarkUnseal(b *testing.B) {
	tp := newTPM(b)
	for _, c := range []struct {
		name string
		opt  tpm.SealOptions
	}{
		{"plain", tpm.SealOptions{}},
		{"pcr", tpm.SealOptions{PCRs: []int{0, 7}}},
		{"pcr+auth", tpm.SealOptions{PCRs: []int{0, 7}, Auth: []byte("pw")}},
	} {
		s, err := tp.Seal(dek, c.opt)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := tp.Unseal(s, c.opt.Auth); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSeal: a whole Seal bound to two PCRs.
func BenchmarkSeal(b *testing.B) {
	tp := newTPM(b)
	for b.Loop() {
		if _, err := tp.Seal(dek, tpm.SealOptions{PCRs: []int{0, 7}}); err != nil {
			b.Fatal(err)
		}
	}
}
