package softhsmtests

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/tpm"
	"github.com/keyward/keyward/token/tpm/tpmtest"
)

// Issue 8: keys of protection "tpm" — ECC P-256 signing keys created in
// the host TPM (swtpm), for low-volume keys that must not share the HSM
// partition's fate. The store keeps only the TPM blob.
func TestKeysvcTPMKeys(t *testing.T) {
	tp, err := tpm.Open(tpmtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	e := &keysvcEnv{tok: mustNewToken(t, token.KindHSM), dbPath: filepath.Join(t.TempDir(), "keysvc.db"), clock: &fakeClock{t: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)}, tpm: tp}
	e.start(t)
	objects := func() int {
		n, err := e.tok.pool.CountTokenObjects(context.Background(), 1000)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := objects()

	for _, bad := range []map[string]any{
		{"name": "t-rsa", "purpose": "sign", "algorithm": "rsa-2048", "protection": "tpm"},
		{"name": "t-enc", "purpose": "encrypt", "algorithm": "aes-256", "protection": "tpm"},
	} {
		if out := e.must(t, 400, officerToken, "POST", "/v1/keys", bad); errCode(out) != "invalid_argument" || !strings.Contains(errMessage(out), "tpm keys are ec-p256 keys for purpose sign") {
			t.Fatalf("%v: %v", bad, out)
		}
	}
	e.createKey(t, "checkpoints", "sign", "ec-p256", "tpm", "sign", "verify", "public")
	msg := b64("statement 2026-11-28")
	s1 := e.must(t, 200, bankingToken, "POST", "/v1/keys/checkpoints/sign", map[string]any{"message": msg})["signature"].(string)
	e.must(t, 200, officerToken, "POST", "/v1/keys/checkpoints/rotate", nil)
	batch := e.must(t, 200, bankingToken, "POST", "/v1/keys/checkpoints/sign-batch", map[string]any{"items": []any{map[string]any{"message": msg}, map[string]any{"message": b64("two")}}})
	items := batch["signatures"].([]any)
	s2 := items[0].(map[string]any)["signature"].(string)
	if !strings.HasPrefix(s1, "kw:v1:") || !strings.HasPrefix(s2, "kw:v2:") || len(items) != 2 {
		t.Fatalf("signatures %q %q (%d items)", s1, s2, len(items))
	}
	for _, sig := range []string{s1, s2} {
		if out := e.must(t, 200, bankingToken, "POST", "/v1/keys/checkpoints/verify", map[string]any{"message": msg, "signature": sig}); out["valid"] != true {
			t.Fatalf("%s does not verify", sig[:6])
		}
	}
	if out := e.must(t, 200, bankingToken, "POST", "/v1/keys/checkpoints/verify", map[string]any{"message": b64("other"), "signature": s1}); out["valid"] != false {
		t.Fatal("a signature verifies another message")
	}
	if n := objects(); n != before {
		t.Fatalf("tpm keys made token objects: %d before, %d after", before, n)
	}

	// Destruction drops the blob; old signatures still verify.
	e.must(t, 200, officerToken, "POST", "/v1/keys/checkpoints/versions/1/schedule-destroy", nil)
	e.clock.Advance(25 * time.Hour)
	if err := e.svc.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	k, err := e.store.GetKey("checkpoints")
	if err != nil {
		t.Fatal(err)
	}
	if k.Versions[0].State != "destroyed" || k.Versions[0].TPMKey != nil || k.Versions[1].TPMKey == nil {
		t.Fatalf("after destruction: v1 %s blob %v, v2 blob %v", k.Versions[0].State, k.Versions[0].TPMKey != nil, k.Versions[1].TPMKey != nil)
	}
	if out := e.must(t, 200, bankingToken, "POST", "/v1/keys/checkpoints/verify", map[string]any{"message": msg, "signature": s1}); out["valid"] != true {
		t.Fatal("a destroyed version's signature no longer verifies")
	}

	// The same store on another machine's TPM: the key can't sign there.
	e.stop()
	other, err := tpm.Open(tpmtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	e.tpm = other
	e.start(t)
	if out := e.must(t, 409, bankingToken, "POST", "/v1/keys/checkpoints/sign", map[string]any{"message": msg}); errCode(out) != "version_not_usable" || !strings.Contains(errMessage(out), "another TPM") {
		t.Fatalf("sign on another TPM: %v", out)
	}
	// And without a TPM, no tpm key can be made.
	e.stop()
	e.tpm = nil
	e.start(t)
	if out := e.must(t, 400, officerToken, "POST", "/v1/keys", map[string]any{"name": "t2", "purpose": "sign", "algorithm": "ec-p256", "protection": "tpm"}); !strings.Contains(errMessage(out), "no TPM") {
		t.Fatalf("tpm key without a TPM: %v", out)
	}
}

// errMessage is the message of an error answer.
func errMessage(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}
