package softhsmtests

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/pkcs11shim"
)

// Issue 13 defect 6: keysvc started on a token whose service keys are gone
// (zeroized, re-initialised, another token) must refuse, not quietly make
// new ones under a store whose blobs and audit log were made with the old.

// serviceKeySpecs mirror keysvc's service keys (keysvc/servicekeys.go).
var serviceKeySpecs = []pkcs11shim.KeySpec{
	{Type: pkcs11shim.KeyAES256, Label: keysvc.KEKLabel, Usage: pkcs11shim.UsageWrap},
	{Type: pkcs11shim.KeyAES256, Label: keysvc.SMKEKLabel, Usage: pkcs11shim.UsageEncrypt},
	{Type: pkcs11shim.KeyGenericSecret, Label: keysvc.PINMACLabel},
	{Type: pkcs11shim.KeyGenericSecret, Label: keysvc.AuditDigestKeyLabel},
	{Type: pkcs11shim.KeyECP256, Label: keysvc.AuditKeyLabel},
}

// tryStart is keysvc.New on e's store and token; it closes what it opened.
func (e *keysvcEnv) tryStart(t *testing.T) error {
	t.Helper()
	st, err := boltstore.Open(e.dbPath, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc, err := keysvc.New(context.Background(), keysvc.Config{Token: e.tok.tok, Store: st, MinDestroyDelay: time.Hour, DefaultDestroyDelay: 24 * time.Hour, Now: e.clock.Now, AuditSigner: e.auditSigner})
	if err == nil {
		svc.Close()
	}
	return err
}

func (e *keysvcEnv) serviceKeyRecord(t *testing.T) *keysvc.ServiceKeyRecord {
	t.Helper()
	st, err := boltstore.Open(e.dbPath, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := st.ServiceKeys()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func destroyTokenKey(t *testing.T, pool *pkcs11shim.Pool, label string) {
	t.Helper()
	k, err := pool.FindKey(context.Background(), label)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.DestroyKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
}

// wantRefused checks a refused start: ErrServiceKeysChanged, naming the
// token, the key and what differs, and the operator's way out.
func wantRefused(t *testing.T, e *keysvcEnv, err error, label, what string) {
	t.Helper()
	if !errors.Is(err, keysvc.ErrServiceKeysChanged) {
		t.Fatalf("start: %v, want ErrServiceKeysChanged", err)
	}
	msg := err.Error()
	for _, want := range []string{`token "` + e.tok.info.Label + `"`, label + ": " + what, "restore the token", "start keysvc with a fresh one"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal does not say %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "regenerate") {
		t.Errorf("refusal offers to regenerate:\n%s", msg)
	}
}

// TestServiceKeysRecordedAndChecked: the first start records every
// service key; each one, destroyed on the token or replaced by another key
// with the same label and CKA_ID, makes the next start refuse, and keysvc
// does not recreate it.
func TestServiceKeysRecordedAndChecked(t *testing.T) {
	for _, ks := range serviceKeySpecs {
		t.Run(ks.Label, func(t *testing.T) {
			e := newKeysvcEnv(t)
			e.createKey(t, "a", "sign", "ec-p256", "hsm", "sign")
			e.stop()
			rec := e.serviceKeyRecord(t)
			if rec == nil || len(rec.Keys) != len(serviceKeySpecs) || rec.TokenSerial != e.tok.info.Serial {
				t.Fatalf("service-key record %+v", rec)
			}
			if err := e.tryStart(t); err != nil {
				t.Fatalf("restart on the same token: %v", err)
			}
			pool := e.tok.pool
			old, err := pool.FindKey(context.Background(), ks.Label)
			if err != nil {
				t.Fatal(err)
			}
			destroyTokenKey(t, pool, ks.Label)
			// Another key under the same label and CKA_ID.
			again := ks
			again.ID = old.ID
			if _, err := pool.GenerateKey(context.Background(), again); err != nil {
				t.Fatal(err)
			}
			wantRefused(t, e, e.tryStart(t), ks.Label, "another key with the same label and CKA_ID")
			destroyTokenKey(t, pool, ks.Label)
			wantRefused(t, e, e.tryStart(t), ks.Label, "missing from the token")
			if _, err := pool.FindKey(context.Background(), ks.Label); !errors.Is(err, pkcs11shim.ErrKeyNotFound) {
				t.Fatalf("the refused start left %s on the token: %v", ks.Label, err)
			}
		})
	}
}

// TestServiceKeysZeroizedToken: every token object gone (a zeroized
// token): keysvc refuses and lists each service key; a fresh data
// directory starts.
func TestServiceKeysZeroizedToken(t *testing.T) {
	e := newKeysvcEnv(t)
	e.createKey(t, "a", "sign", "ec-p256", "hsm", "sign")
	e.stop()
	if _, err := e.tok.pool.DestroyAllObjects(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := e.tryStart(t)
	for _, ks := range serviceKeySpecs {
		wantRefused(t, e, err, ks.Label, "missing from the token")
	}
	if n, _ := e.tok.pool.CountTokenObjects(context.Background(), 10); n != 0 {
		t.Fatalf("the refused start created %d token objects", n)
	}
	fresh := &keysvcEnv{tok: e.tok, dbPath: t.TempDir() + "/keysvc.db", clock: e.clock}
	if err := fresh.tryStart(t); err != nil {
		t.Fatalf("fresh data directory on the zeroized token: %v", err)
	}
}

// TestServiceKeysUpgradeRecords: a store written before the record existed
// (today's layout: no service-keys bucket) starts on its own token: what
// the token holds is recorded (no key is regenerated), and later starts
// check it.
func TestServiceKeysUpgradeRecords(t *testing.T) {
	e := newKeysvcEnv(t)
	e.createKey(t, "a", "sign", "ec-p256", "hsm", "sign")
	e.stop()
	ids := map[string][]byte{}
	for _, k := range e.serviceKeyRecord(t).Keys {
		ids[k.Label] = k.ID
	}
	db, err := bolt.Open(e.dbPath, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("service-keys")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if e.serviceKeyRecord(t) != nil {
		t.Fatal("record still there")
	}
	e.start(t)
	e.must(t, 200, bankingToken, "POST", "/v1/keys/a/sign", map[string]any{"message": b64("m")})
	e.stop()
	rec := e.serviceKeyRecord(t)
	if rec == nil || len(rec.Keys) != len(serviceKeySpecs) {
		t.Fatalf("after the upgrade start: %+v", rec)
	}
	for _, k := range rec.Keys {
		if string(k.ID) != string(ids[k.Label]) {
			t.Errorf("%s was regenerated by the upgrade start", k.Label)
		}
	}
	destroyTokenKey(t, e.tok.pool, keysvc.KEKLabel)
	wantRefused(t, e, e.tryStart(t), keysvc.KEKLabel, "missing from the token")
}

// TestServiceKeysUpgradeV1Fixture: the audit-v1 fixture, a store written by
// an older keysvc, holds an SM key sealed under keysvc-sm-kek. On a token
// without the service keys it is refused (never given a new SM KEK); on a
// token with them it is recorded and starts.
func TestServiceKeysUpgradeV1Fixture(t *testing.T) {
	e := v1Env(t)
	if _, err := e.tok.pool.DestroyAllObjects(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := e.tryStart(t)
	wantRefused(t, e, err, keysvc.SMKEKLabel, "missing from the token, and the store holds 1 sealed SM key(s)")
	if n, _ := e.tok.pool.CountTokenObjects(context.Background(), 10); n != 0 {
		t.Fatalf("the refused start created %d token objects", n)
	}
	seedServiceKeys(t, e)
	e.start(t)
	e.stop()
	if rec := e.serviceKeyRecord(t); rec == nil || len(rec.Keys) != len(serviceKeySpecs)-1 { // the fixture signs audit with its own key
		t.Fatalf("record after the upgrade: %+v", rec)
	}
	destroyTokenKey(t, e.tok.pool, keysvc.PINMACLabel)
	wantRefused(t, e, e.tryStart(t), keysvc.PINMACLabel, "missing from the token")
}

// seedServiceKeys stands in for the token the audit-v1 fixture was written
// with (not kept): the service keys an older keysvc would have left on it.
func seedServiceKeys(t *testing.T, e *keysvcEnv) {
	t.Helper()
	for _, ks := range serviceKeySpecs {
		if ks.Label == keysvc.AuditKeyLabel && e.auditSigner != nil {
			continue
		}
		if _, err := e.tok.pool.GenerateKey(context.Background(), ks); err != nil {
			t.Fatal(err)
		}
	}
}
