package softhsmtests

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/token"
)

// The audit-v1 fixture is a keysvc.db written by keysvc before keyed
// request digests and chained checkpoints (commit 060a5cd): records with
// unkeyed SHA-256 request digests, v1 checkpoints signed by the audit key
// in audit-signer.pem. TestAuditMigratesV1Store migrates it.
const (
	auditV1Dir      = "testdata/audit-v1"
	auditV1Password = "correct horse battery staple 42"
)

// TestWriteAuditV1Fixture wrote the fixture with the code of commit
// 060a5cd; it runs only with KEYWARD_WRITE_AUDIT_V1_FIXTURE=1 (and would
// now write a migrated store, not a v1 one).
func TestWriteAuditV1Fixture(t *testing.T) {
	if os.Getenv("KEYWARD_WRITE_AUDIT_V1_FIXTURE") != "1" {
		t.Skip("writes the fixture only with KEYWARD_WRITE_AUDIT_V1_FIXTURE=1")
	}
	signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e := &keysvcEnv{tok: mustNewToken(t, token.KindHSM), dbPath: filepath.Join(t.TempDir(), "keysvc.db"), clock: &fakeClock{t: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)}, auditSigner: signer}
	e.start(t)
	e.createKey(t, "pwd-hash", "mac", "hmac-sm3", "wrapped", "mac")
	e.createKey(t, "a", "sign", "ec-p256", "hsm", "sign")
	e.must(t, 200, bankingToken, "POST", "/v1/keys/pwd-hash/mac", map[string]any{"message": b64(auditV1Password)})
	e.must(t, 200, bankingToken, "POST", "/v1/keys/a/sign", map[string]any{"message": b64("m")})
	if err := e.svc.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.must(t, 200, bankingToken, "POST", "/v1/keys/a/sign", map[string]any{"message": b64("m2")})
	e.must(t, 403, intruderToken, "POST", "/v1/keys/a/sign", map[string]any{"message": b64("m")})
	if err := e.svc.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.must(t, 200, bankingToken, "POST", "/v1/keys/pwd-hash/mac", map[string]any{"message": b64(auditV1Password)})
	e.stop()
	raw, err := os.ReadFile(e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(auditV1Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(auditV1Dir, "keysvc.db"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(auditV1Dir, "audit-signer.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}
