package memtoken_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/memtoken"
)

// TestRewrap: Rewrap moves a blob from one KEK to another, as
// token.Store.Rewrap does in a token (softhsm-tests' TestStoreRewrap): the
// new blob opens under the new KEK only, as the same key; the wrong KEK is
// ErrDecrypt; a KEK without wrap usage is refused.
func TestRewrap(t *testing.T) {
	ctx := context.Background()
	tok := memtoken.New("mem", "1")
	var keks []token.KeyRef
	for _, l := range []string{"a", "b"} {
		k, err := tok.GenerateKey(ctx, token.KeySpec{Type: token.KeyAES256, Label: l, Usage: token.UsageWrap})
		if err != nil {
			t.Fatal(err)
		}
		keks = append(keks, k)
	}
	enc, err := tok.GenerateKey(ctx, token.KeySpec{Type: token.KeyAES256, Label: "enc", Usage: token.UsageEncrypt})
	if err != nil {
		t.Fatal(err)
	}
	spec := token.KeySpec{Type: token.KeyECP256, Label: "kw/k/v1", Usage: token.UsageSign}
	blob, pub, err := tok.GenerateWrapped(ctx, keks[0], spec)
	if err != nil {
		t.Fatal(err)
	}
	moved, err := tok.Rewrap(ctx, keks[0], keks[1], blob, spec)
	if err != nil || bytes.Equal(moved, blob) {
		t.Fatalf("Rewrap: %v (blob unchanged: %v)", err, bytes.Equal(moved, blob))
	}
	digest := sha256.Sum256([]byte("x"))
	sign := func(kek token.KeyRef, b []byte) ([]byte, error) {
		var sig []byte
		err := tok.Use(ctx, token.Material{KEK: kek, Wrapped: b, Spec: spec}, func(u token.KeyUse) error {
			var err error
			sig, err = u.Sign(digest[:], crypto.SHA256)
			return err
		})
		return sig, err
	}
	sig, err := sign(keks[1], moved)
	if err != nil || !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatalf("the moved blob under the new KEK: %v", err)
	}
	if _, err := sign(keks[0], moved); err == nil {
		t.Fatal("the moved blob opens under the old KEK")
	}
	if _, err := tok.Rewrap(ctx, keks[1], keks[0], blob, spec); !errors.Is(err, token.ErrDecrypt) {
		t.Fatalf("Rewrap under the wrong KEK: %v, want ErrDecrypt", err)
	}
	if _, err := tok.Rewrap(ctx, keks[0], enc, blob, spec); !errors.Is(err, token.ErrKeyMismatch) {
		t.Fatalf("Rewrap to an encryption key: %v, want ErrKeyMismatch", err)
	}
}
