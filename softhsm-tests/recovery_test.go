package softhsmtests

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// tokenDir finds the SoftHSM directory holding the token labelled label.
func tokenDir(t *testing.T, label string) string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(confDir, "tokens", "*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "token.object"))
		if err == nil && contains(string(b), label) {
			return d
		}
	}
	t.Fatalf("no token directory for %q", label)
	return ""
}

// signUntilOK retries until a signature succeeds (the pool re-initialises
// the module at most every MinReinitInterval) and fails the test if an
// error on the way is not a typed "token unavailable" error.
func signUntilOK(t *testing.T, env *tokenEnv, k *pkcs11shim.Key, digest []byte, auth pkcs11shim.ContextAuth) []byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sig, err := env.pool.Sign(context.Background(), k, digest, crypto.SHA256, auth)
		if err == nil {
			return sig
		}
		if !errors.Is(err, pkcs11shim.ErrTokenNotPresent) && !errors.Is(err, pkcs11shim.ErrSessionClosed) {
			t.Fatalf("during recovery: untyped error %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery within 10 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRecoveryTokenRemoved: the token's files vanish under an open pool
// (an HSM partition going away); operations fail with ErrTokenNotPresent;
// when the files come back the same pool recovers, logs in again through the
// guard, and the key works, without a process restart.
func TestRecoveryTokenRemoved(t *testing.T) {
	env := mustNewToken(t, token.KindHSM)
	ctx := context.Background()
	k, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: "survivor"})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := env.pool.PublicKey(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("still here"))
	dir := tokenDir(t, env.info.Label)
	away := filepath.Join(t.TempDir(), "away")
	if err := os.Rename(dir, away); err != nil {
		t.Fatal(err)
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			os.Rename(away, dir)
		}
	})
	for i := 0; i < 3; i++ {
		_, err := env.pool.Sign(ctx, k, digest[:], crypto.SHA256, nil)
		if !errors.Is(err, pkcs11shim.ErrTokenNotPresent) {
			t.Fatalf("sign %d with token gone: got %v, want ErrTokenNotPresent", i, err)
		}
		time.Sleep(120 * time.Millisecond) // let the rate limiter allow a re-initialisation
	}
	if st := env.pool.Stats(); st.Healthy {
		t.Fatalf("pool reports healthy with the token gone: %+v", st)
	}
	if err := os.Rename(away, dir); err != nil {
		t.Fatal(err)
	}
	restored = true
	sig := signUntilOK(t, env, k, digest[:], nil)
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatal("signature after recovery does not verify with the original public key")
	}
	if st, _ := env.tok.PINState(); st.Failures != 0 {
		t.Fatalf("re-login after recovery left the guard at %d failures", st.Failures)
	}
	if st := env.pool.Stats(); !st.Healthy {
		t.Fatalf("pool not healthy after recovery: %+v", st)
	}
}

// TestRecoveryModuleFinalized: C_Finalize under a working pool (an HSM
// client library restarting); the pool re-initialises the module, re-finds
// the token and key, and carries on.
func TestRecoveryModuleFinalized(t *testing.T) {
	env := mustNewToken(t, token.KindHSM)
	ctx := context.Background()
	k, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: "phoenix"})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("after restart"))
	gen := module.Generation()
	time.Sleep(120 * time.Millisecond) // outside the previous test's rate-limit window
	if err := module.Finalize(); err != nil {
		t.Fatal(err)
	}
	signUntilOK(t, env, k, digest[:], nil)
	if module.Generation() == gen {
		t.Fatal("module was not re-initialised")
	}
	// The key's handle was re-found in the new generation and verifies.
	sig := signUntilOK(t, env, k, digest[:], nil)
	if err := env.pool.Verify(ctx, k, digest[:], sig, crypto.SHA256); err != nil {
		t.Fatalf("verify after recovery: %v", err)
	}
}
