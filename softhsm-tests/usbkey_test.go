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

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// TestUSBKey runs TestUSBKeyChild in a process whose SoftHSM config has
// slots.removable = true: a USB key is emulated by a SoftHSM token in a
// removable slot, with keys that demand the PIN for every use.
func TestUSBKey(t *testing.T) {
	if removable {
		t.Skip("already the child")
	}
	out, err := runChild(t, "TestUSBKeyChild", "KEYWARD_TEST_REMOVABLE=true")
	if err != nil || !contains(out, "--- PASS: TestUSBKeyChild") {
		t.Fatalf("USB-key child: %v\n%s", err, out)
	}
}

func TestUSBKeyChild(t *testing.T) {
	childOnly(t)
	env := mustNewToken(t, token.KindUSBKey)
	ctx := context.Background()
	ti, err := env.tok.Info()
	if err != nil || !ti.Flags.Removable {
		t.Fatalf("slot not removable: %v %+v", err, ti.Flags)
	}
	k, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: "holder-sign", AlwaysAuthenticate: true})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := env.pool.PublicKey(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("pay 500.00 CNY to Li Lei"))
	// No per-operation PIN: refused, and the refused session is not reused.
	if _, err := env.pool.Sign(ctx, k, digest[:], crypto.SHA256, nil); !errors.Is(err, pkcs11shim.ErrNotLoggedIn) {
		t.Fatalf("sign without context PIN: got %v, want ErrNotLoggedIn", err)
	}
	// A key found again by label knows it needs the PIN each time.
	found, err := mustOpenSecond(t, env).Pool().FindKey(ctx, "holder-sign")
	if err != nil || !found.Always {
		t.Fatalf("FindKey: %v, Always=%v", err, found != nil && found.Always)
	}
	auth := env.tok.ContextAuth()
	sig, err := env.pool.Sign(ctx, k, digest[:], crypto.SHA256, auth)
	if err != nil {
		t.Fatalf("sign with context PIN: %v", err)
	}
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatal("signature does not verify")
	}
	// Each per-operation PIN is a guarded attempt: wrong ones count.
	env.pin.set("999999")
	for i := 1; i <= 2; i++ {
		if _, err := env.pool.Sign(ctx, k, digest[:], crypto.SHA256, auth); !errors.Is(err, pkcs11shim.ErrPINIncorrect) {
			t.Fatalf("wrong context PIN %d: %v", i, err)
		}
		if st, _ := env.tok.PINState(); st.Failures != i {
			t.Fatalf("guard counter %d after %d wrong context PINs", st.Failures, i)
		}
	}
	env.pin.set(userPIN)
	if _, err := env.pool.Sign(ctx, k, digest[:], crypto.SHA256, auth); err != nil {
		t.Fatalf("right context PIN: %v", err)
	}
	if st, _ := env.tok.PINState(); st.Failures != 0 {
		t.Fatalf("counter not reset: %d", st.Failures)
	}
	// Pull the key out and plug it back in: typed error, then recovery with
	// a fresh guarded login.
	dir := tokenDir(t, env.info.Label)
	away := filepath.Join(t.TempDir(), "pulled")
	if err := os.Rename(dir, away); err != nil {
		t.Fatal(err)
	}
	if _, err := env.pool.Sign(ctx, k, digest[:], crypto.SHA256, auth); !errors.Is(err, pkcs11shim.ErrTokenNotPresent) {
		os.Rename(away, dir)
		t.Fatalf("sign with key pulled: got %v, want ErrTokenNotPresent", err)
	}
	if err := os.Rename(away, dir); err != nil {
		t.Fatal(err)
	}
	signUntilOK(t, env, k, digest[:], auth)
}
