package memtoken

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/keyward/keyward/token"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestKWPVectors: RFC 5649 §6's two examples, both directions.
func TestKWPVectors(t *testing.T) {
	kek := unhex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	for _, tc := range []struct{ key, wrapped string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	} {
		got, err := wrapKWP(kek, unhex(tc.key))
		if err != nil || !bytes.Equal(got, unhex(tc.wrapped)) {
			t.Fatalf("wrap %s = %x, %v; want %s", tc.key, got, err, tc.wrapped)
		}
		back, err := unwrapKWP(kek, got)
		if err != nil || !bytes.Equal(back, unhex(tc.key)) {
			t.Fatalf("unwrap = %x, %v; want %s", back, err, tc.key)
		}
		bad := bytes.Clone(got)
		bad[len(bad)-1] ^= 1
		if _, err := unwrapKWP(kek, bad); !errors.Is(err, token.ErrDecrypt) {
			t.Fatalf("unwrap of an altered blob = %v, want ErrDecrypt", err)
		}
	}
}
