package softhsmtests

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkcs11shim"
)

// TestKeysvcStaleHandleRetried: keysvc's cached object handle of a key
// goes stale while keysvc runs — another application destroys the token
// object and creates it again under the same label and CKA_ID, as a
// restore or an HSM fail-over does, and SoftHSM2 gives the new object a new
// handle (CKR_KEY_HANDLE_INVALID for the old one). keysvc's next sign must
// still work: token.Store runs it through pkcs11shim.Pool.WithKey, which
// re-finds the handle by label and CKA_ID and signs once more (issue 14
// item 2). Before that, keysvc signed through a bare WithSession and
// answered version_not_usable ("missing from the token").
//
// The re-created object has new material (SoftHSM2 keys are not
// copyable), so the signature is checked against the new object's public
// key: the sign really reached the object found again.
func TestKeysvcStaleHandleRetried(t *testing.T) {
	ctx := context.Background()
	e := newKeysvcEnv(t)
	e.createKey(t, "stale", "sign", "ec-p256", "hsm", "sign")
	e.must(t, 200, bankingToken, "POST", "/v1/keys/stale/sign", map[string]any{"message": b64("first")}) // caches the handles

	other := mustOpenSecond(t, e.tok) // its own pool and key cache: keysvc's handles are untouched
	old, err := other.Pool().FindKey(ctx, "kw/stale/v1")
	if err != nil {
		t.Fatal(err)
	}
	id := append([]byte(nil), old.ID...)
	if err := other.Pool().DestroyKey(ctx, old); err != nil {
		t.Fatal(err)
	}
	nk, err := other.Pool().GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: "kw/stale/v1", ID: id, Usage: pkcs11shim.UsageSign})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := other.Pool().PublicKey(ctx, nk)
	if err != nil {
		t.Fatal(err)
	}

	st, out := e.call(t, bankingToken, "POST", "/v1/keys/stale/sign", map[string]any{"message": b64("second")})
	if st != 200 {
		t.Fatalf("sign after the key's handle went stale: %d %v; want 200 (the handle re-found by label and CKA_ID)", st, out)
	}
	sig, ok := out["signature"].(string)
	if !ok || !strings.HasPrefix(sig, "kw:v1:") {
		t.Fatalf("signature %v", out["signature"])
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sig, "kw:v1:"))
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("second"))
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], der) {
		t.Fatal("the signature does not verify with the re-created object's public key")
	}
}
