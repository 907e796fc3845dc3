package softhsmtests

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/boltstore/boltsurgeon"
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

// v1Env starts keysvc (fresh token seeded with service keys, the fixture's
// audit signer) on a copy of the audit-v1 fixture store.
func v1Env(t *testing.T) *keysvcEnv {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(auditV1Dir, "keysvc.db"))
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "keysvc.db")
	if err := os.WriteFile(db, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(filepath.Join(auditV1Dir, "audit-signer.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	e := &keysvcEnv{tok: mustNewToken(t, token.KindHSM), dbPath: db, clock: &fakeClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}, auditSigner: k.(*ecdsa.PrivateKey)}
	seedServiceKeys(t, e) // keysvc refuses a store with sealed keys on a token without its KEKs
	return e
}

// TestAuditMigratesV1Store: keysvc starts on a store written by the
// keysvc before keyed digests (the audit-v1 fixture): it verifies the old
// chain, rekeys every digest to what a new record of the same request
// holds, reseals the chain, drops the old checkpoints, records
// audit_migrated and signs a fresh checkpoint; the log then verifies, and
// no record holds the unkeyed digest of the password request.
func TestAuditMigratesV1Store(t *testing.T) {
	e := v1Env(t)
	body, _ := json.Marshal(map[string]any{"message": b64(auditV1Password)})
	oldSum := sha256.Sum256(body)
	oldHex := hex.EncodeToString(oldSum[:])
	var before []audit.Record
	{
		st, err := boltstore.Open(e.dbPath, boltstore.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		st.AuditRecords(0, func(r audit.Record) error { before = append(before, r); return nil })
		if f, _ := st.AuditFormat(); f != 1 {
			t.Fatalf("fixture format %d, want 1", f)
		}
		if _, err := keysvc.VerifyAudit(st, &e.auditSigner.(*ecdsa.PrivateKey).PublicKey); !errors.Is(err, audit.ErrUnmigrated) {
			t.Fatalf("verify of an unmigrated store: %v, want ErrUnmigrated", err)
		}
		st.Close()
	}
	if !slices.ContainsFunc(before, func(r audit.Record) bool { return r.RequestDigest == oldHex }) {
		t.Fatal("the fixture holds no unkeyed digest of the password request")
	}
	e.start(t)
	rep, err := e.svc.VerifyAudit()
	if err != nil {
		t.Fatalf("migrated log: %v", err)
	}
	var after []audit.Record
	e.store.AuditRecords(0, func(r audit.Record) error { after = append(after, r); return nil })
	if len(after) < len(before)+1 || rep.Checkpoints < 1 {
		t.Fatalf("%d records before, %d after, report %+v", len(before), len(after), rep)
	}
	mig := after[len(before)]
	if mig.Op != "audit_migrated" || mig.Detail != fmt.Sprintf("records=%d digests_rekeyed=%d checkpoints_dropped=2", len(before), countDigests(before)) {
		t.Fatalf("migration record %+v", mig)
	}
	for i, r := range after {
		if r.RequestDigest != "" && !audit.IsKeyedDigest(r.RequestDigest) {
			t.Errorf("record %d keeps an unkeyed digest %q", r.Seq, r.RequestDigest)
		}
		if i < len(before) && (r.Op != before[i].Op || r.Client != before[i].Client || !r.Time.Equal(before[i].Time) || (r.RequestDigest == "") != (before[i].RequestDigest == "")) {
			t.Errorf("record %d changed beyond its digest: %+v -> %+v", r.Seq, before[i], r)
		}
	}
	// The same request now gets the digest the migration gave the old one
	// (it fails here: the key was wrapped by the fixture's token, not this
	// one; the failure is audited with its digest all the same).
	e.call(t, bankingToken, "POST", "/v1/keys/pwd-hash/mac", map[string]any{"message": b64(auditV1Password)})
	var last, migrated audit.Record
	e.store.AuditRecords(0, func(r audit.Record) error {
		last = r
		if i := int(r.Seq) - 1; i < len(before) && before[i].RequestDigest == oldHex {
			migrated = r
		}
		return nil
	})
	if last.RequestDigest != migrated.RequestDigest || migrated.RequestDigest == "" {
		t.Fatalf("new digest %q, migrated %q", last.RequestDigest, migrated.RequestDigest)
	}
	// A restart does not migrate again.
	e.stop()
	e.start(t)
	if _, err := e.svc.VerifyAudit(); err != nil {
		t.Fatal(err)
	}
}

func countDigests(recs []audit.Record) int {
	n := 0
	for _, r := range recs {
		if r.RequestDigest != "" {
			n++
		}
	}
	return n
}

// TestAuditMigrationRefusesBrokenV1Log: an old log that does not verify
// is not migrated (which would launder it): keysvc refuses to start.
func TestAuditMigrationRefusesBrokenV1Log(t *testing.T) {
	e := v1Env(t)
	db, err := bolt.Open(e.dbPath, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := boltsurgeon.TamperAudit(db, 3, func(raw []byte) []byte { return bytes.Replace(raw, []byte(`"ok"`), []byte(`"forbidden"`), 1) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	st, err := boltstore.Open(e.dbPath, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = keysvc.New(context.Background(), keysvc.Config{Token: e.tok.tok, Store: st, MinDestroyDelay: time.Hour, DefaultDestroyDelay: 24 * time.Hour, AuditSigner: e.auditSigner})
	if !errors.Is(err, keysvc.ErrAuditBroken) || !strings.Contains(err.Error(), "must be migrated, but it does not verify") {
		t.Fatalf("New on a broken v1 log: %v, want ErrAuditBroken", err)
	}
	if f, _ := st.AuditFormat(); f != 1 {
		t.Fatal("the broken log was migrated")
	}
}

// TestAuditStartRefusesCutBack is the attack of issue 12 item 6 against a
// real keysvc: checkpoints after K deleted and the records after K
// rewritten. A deleted middle checkpoint is refused at start on its own;
// a cut-back tail is refused at start given the anchor keysvc logged
// (-audit-expect), and by audit verify given it as -expect.
func TestAuditStartRefusesCutBack(t *testing.T) {
	e := newKeysvcEnv(t)
	e.createKey(t, "a", "sign", "ec-p256", "hsm", "sign")
	var cps []audit.Checkpoint
	for range 3 {
		for range 3 {
			e.must(t, 200, bankingToken, "POST", "/v1/keys/a/sign", map[string]any{"message": b64("m")})
		}
		if err := e.svc.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
		var err error
		if cps, err = e.store.Checkpoints(); err != nil {
			t.Fatal(err)
		}
	}
	if len(cps) != 3 {
		t.Fatalf("%d checkpoints", len(cps))
	}
	anchor := audit.Anchor{Seq: cps[2].Seq, Hash: cps[2].Hash}
	k := cps[0].Seq
	e.stop()

	startErr := func(anchors ...audit.Anchor) error {
		st, err := boltstore.Open(e.dbPath, boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		svc, err := keysvc.New(context.Background(), keysvc.Config{Token: e.tok.tok, Store: st, MinDestroyDelay: time.Hour, DefaultDestroyDelay: 24 * time.Hour, AuditAnchors: anchors})
		if err == nil {
			svc.Close()
		}
		return err
	}
	if err := startErr(anchor); err != nil {
		t.Fatalf("honest log with its anchor: %v", err)
	}
	surgery := func(fn func(db *bolt.DB) error) {
		db, err := bolt.Open(e.dbPath, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := fn(db); err != nil {
			t.Fatal(err)
		}
	}
	// A middle checkpoint deleted: the chain of checkpoints breaks.
	var saved []byte
	surgery(func(db *bolt.DB) error {
		return db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("checkpoints"))
			key := binary.BigEndian.AppendUint64(nil, cps[1].Seq)
			saved = bytes.Clone(b.Get(key))
			return b.Delete(key)
		})
	})
	if err := startErr(); !errors.Is(err, keysvc.ErrAuditBroken) || !strings.Contains(err.Error(), "checkpoints were deleted") {
		t.Fatalf("start with a middle checkpoint deleted: %v", err)
	}
	surgery(func(db *bolt.DB) error {
		return db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("checkpoints")).Put(binary.BigEndian.AppendUint64(nil, cps[1].Seq), saved)
		})
	})
	// The attack: every checkpoint after K deleted, the tail rewritten.
	surgery(func(db *bolt.DB) error {
		if _, err := boltsurgeon.DeleteCheckpointsAfter(db, k); err != nil {
			return err
		}
		return boltsurgeon.RewriteAuditFrom(db, k+1, func(r *audit.Record) { r.Client = "officer" })
	})
	if err := startErr(anchor); !errors.Is(err, keysvc.ErrAuditBroken) || !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("start on the cut-back log with the anchor: %v, want ErrAuditBroken", err)
	}
	st, err := boltstore.Open(e.dbPath, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pub := verifyKey(t, e)
	if _, err := keysvc.VerifyAudit(st, pub, anchor); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("audit verify -expect on the cut-back log: %v", err)
	}
}

// verifyKey is the token's audit public key.
func verifyKey(t *testing.T, e *keysvcEnv) *ecdsa.PublicKey {
	t.Helper()
	k, err := e.tok.tok.Pool().FindKey(context.Background(), keysvc.AuditKeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.tok.tok.Pool().NewSigner(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	return s.Public().(*ecdsa.PublicKey)
}
