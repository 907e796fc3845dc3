package tpm_test

import (
	"crypto/sha256"
	"slices"
)

func equalInts(a, b []int) bool { return slices.Equal(a, b) }

func sha256Concat(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}
