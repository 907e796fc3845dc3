package tpm_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/keyward/keyward/token/tpm"
)

func newSigner(t testing.TB, tp *tpm.TPM) (*tpm.Signer, *tpm.KeyBlob) {
	t.Helper()
	blob, err := tp.CreateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := tp.LoadSigner(blob)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, blob
}

func TestSigner(t *testing.T) {
	tp := newTPM(t)
	s, blob := newSigner(t, tp)
	pub, ok := s.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("Public() = %T %v, want a P-256 *ecdsa.PublicKey", s.Public(), pub)
	}
	if bp, err := blob.PublicKey(); err != nil || !bp.Equal(pub) {
		t.Fatalf("the blob's public key (%v) is not the loaded key's", err)
	}
	msg := sha256.Sum256([]byte("audit checkpoint 42"))
	sig, err := s.Sign(rand.Reader, msg[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(pub, msg[:], sig) {
		t.Fatal("signature does not verify")
	}
	other := sha256.Sum256([]byte("audit checkpoint 43"))
	if ecdsa.VerifyASN1(pub, other[:], sig) {
		t.Fatal("signature verifies over another digest")
	}

	// Refusals, as crypto.Signer implementations do.
	if _, err := s.Sign(rand.Reader, msg[:20], crypto.SHA256); err == nil {
		t.Error("Sign accepted a 20-byte digest for SHA-256")
	}
	if _, err := s.Sign(rand.Reader, msg[:], crypto.SHA384); err == nil {
		t.Error("Sign accepted SHA-384")
	}

	// The blob round-trips through JSON and loads again, with the same public key.
	js, err := json.Marshal(blob)
	if err != nil {
		t.Fatal(err)
	}
	var back tpm.KeyBlob
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := s.Sign(rand.Reader, msg[:], crypto.SHA256); !errors.Is(err, tpm.ErrClosed) {
		t.Fatalf("Sign after Close = %v, want ErrClosed", err)
	}
	s2, err := tp.LoadSigner(&back)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if !s2.Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Fatal("reloaded key has another public key")
	}
	sig2, err := s2.Sign(nil, msg[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(pub, msg[:], sig2) {
		t.Fatalf("reloaded key: %v", err)
	}
}

func TestSignerConcurrent(t *testing.T) {
	tp := newTPM(t)
	s, _ := newSigner(t, tp)
	pub := s.Public().(*ecdsa.PublicKey)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				d := sha256.Sum256(fmt.Appendf(nil, "goroutine %d message %d", g, i))
				sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
				if err != nil {
					errs <- err
					return
				}
				if !ecdsa.VerifyASN1(pub, d[:], sig) {
					errs <- fmt.Errorf("goroutine %d message %d: bad signature", g, i)
					return
				}
			}
		}()
	}
	// Sealing at the same time shares the TPM.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 3; i++ {
			sd, err := tp.Seal(dek, tpm.SealOptions{})
			if err == nil {
				_, err = tp.Unseal(sd, nil)
			}
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSignerOtherTPM(t *testing.T) {
	a, b := newTPM(t), newTPM(t)
	blob, err := a.CreateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.LoadSigner(blob); !errors.Is(err, tpm.ErrWrongTPM) {
		t.Fatalf("LoadSigner on TPM B = %v, want ErrWrongTPM", err)
	}
}

func TestSignerRefusesOtherBlobs(t *testing.T) {
	tp := newTPM(t)
	sealed, err := tp.Seal(dek, tpm.SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.LoadSigner(&tpm.KeyBlob{Public: sealed.Public, Private: sealed.Private}); !errors.Is(err, tpm.ErrBadBlob) {
		t.Fatalf("LoadSigner(sealed data) = %v, want ErrBadBlob", err)
	}
	blob, err := tp.CreateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Unseal(&tpm.Sealed{Public: blob.Public, Private: blob.Private}, nil); !errors.Is(err, tpm.ErrBadBlob) {
		t.Fatalf("Unseal(signing key) = %v, want ErrBadBlob", err)
	}
	if _, err := tp.LoadSigner(nil); !errors.Is(err, tpm.ErrBadBlob) {
		t.Fatalf("LoadSigner(nil) = %v, want ErrBadBlob", err)
	}
}

// TestCloseFlushesSigners: TPM.Close flushes loaded keys, so a simulator (no resource manager,
// three object slots in swtpm) does not fill up across reconnects.
func TestCloseFlushesSigners(t *testing.T) {
	tp := newTPM(t)
	blob, err := tp.CreateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := tp.LoadSigner(blob)
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(nil)
	if _, err := s.Sign(nil, d[:], crypto.SHA256); !errors.Is(err, tpm.ErrClosed) {
		t.Fatalf("Sign after TPM.Close = %v, want ErrClosed", err)
	}
}
