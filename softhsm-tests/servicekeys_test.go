package softhsmtests

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// Issue 13 defect 6: keysvc started on a token whose service keys are gone
// (zeroized, re-initialised, another token) must refuse, not quietly make
// new ones under a store whose blobs and audit log were made with the old.

// serviceKeySpecs are keysvc's service keys as keysvc itself generates
// them (dev mode), from the one exported list.
var serviceKeySpecs = func() []pkcs11shim.KeySpec {
	var specs []pkcs11shim.KeySpec
	for _, ks := range keysvc.ServiceKeySpecs() {
		specs = append(specs, ks.KeySpec())
	}
	return specs
}()

// ceremonyServiceKeySpec is ks as `ceremony keygen` makes it under the
// service_keys preset (cmd/ceremony/tokens.go, keygen with backup: true):
// backup-able (extractable, but only under the SO's trusted KEK: the
// template adds CKA_WRAP_WITH_TRUSTED), and not destroyable with the user
// PIN — except epoch 1's KEKs, which the first KEK rotation destroys.
func ceremonyServiceKeySpec(ks keysvc.ServiceKeySpec) pkcs11shim.KeySpec {
	spec := ks.KeySpec()
	spec.Extractable = true
	spec.Undestroyable = ks.Label != keysvc.KEKLabel && ks.Label != keysvc.SMKEKLabel
	return spec
}

// provisionServiceKeys makes keysvc's service keys on token label (user
// PIN userPIN) the way the ceremony's service_keys preset does, so that a
// production keysvc (a config file: RequireServiceKeys) starts on it.
func provisionServiceKeys(t testing.TB, label string) {
	t.Helper()
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "provision-guard.db"), 0)
	tok, err := token.Open(context.Background(), token.Config{Kind: token.KindHSM, Module: modulePath, Label: label, PIN: &switchablePIN{pin: userPIN}, PINGuard: g.Config(), WaitTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	for _, ks := range keysvc.ServiceKeySpecs() {
		if _, err := tok.Pool().GenerateKey(context.Background(), ceremonyServiceKeySpec(ks)); err != nil {
			t.Fatalf("provision %s on %s: %v", ks.Label, label, err)
		}
	}
}

// newServiceKeyToken is a fresh token holding keysvc's service keys as a
// ceremony makes them (newTokenLabel, provisionServiceKeys).
func newServiceKeyToken(t testing.TB) pkcs11shim.TokenInfo {
	t.Helper()
	ti := newTokenLabel(t)
	provisionServiceKeys(t, ti.Label)
	return ti
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

// TestServiceKeysKeysvcProcess: the real keysvc (cmd/keysvc) on a token
// re-initialised (C_InitToken, as ceremony zeroize does) after its first
// start exits with the refusal, naming the token and the keys, and
// creates nothing on the token.
func TestServiceKeysKeysvcProcess(t *testing.T) {
	dir := t.TempDir()
	tt := newTestTLS(t, dir)
	d := newDaemon(t, "keysvc", dir, tt)
	ti := newServiceKeyToken(t)
	pinFile, conf := filepath.Join(dir, "user.pin"), filepath.Join(dir, "keysvc.yaml")
	writeFiles(t, pinFile, userPIN+"\n", conf, fmt.Sprintf(`listen: %q
data_dir: %q
tls: {cert: %q, key: %q}
token:
  uri: %q
  wait_timeout: 10s
destroy: {default_delay: 24h, min_delay: 1h}
scheduler_interval: 1h
clients:
  - {name: officer, admin: true, token_sha256: %s}
`, d.addr, filepath.Join(dir, "keysvc"), tt.cert, tt.key,
		"pkcs11:token="+ti.Label+"?module-path="+modulePath+"&pin-source=file:"+pinFile, sha(officerToken)))
	d.args = []string{"serve", "-config", conf}
	d.start(t)
	d.stop()

	if _, err := module.InitToken(ti.Serial, []byte(soPIN), ti.Label); err != nil {
		t.Fatalf("re-initialise the token: %v", err)
	}
	if err := module.InitPIN(pkcs11shim.Selector{Label: ti.Label}, []byte(soPIN), []byte(userPIN)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, d.bin, d.args...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("keysvc on the re-initialised token: %v\n%s", err, out)
	}
	t.Logf("keysvc refused:\n%s", out)
	for _, want := range []string{"the token's service keys do not match this store", `token \"` + ti.Label + `\"`, "keysvc-kek: missing from the token", "keysvc-audit: missing from the token", "restore the token", "start keysvc with a fresh one"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("keysvc's refusal does not say %q:\n%s", want, out)
		}
	}
	if objs := objectsOn(t, ti.Label); len(objs) != 0 {
		t.Fatalf("the refused keysvc left objects on the token: %v", objs)
	}
}

// objectsOn lists the token objects a user login sees.
func objectsOn(t *testing.T, label string) []pkcs11shim.ObjectInfo {
	t.Helper()
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "guard.db"), 0)
	tok, err := token.Open(context.Background(), token.Config{Kind: token.KindHSM, Module: modulePath, Label: label, PIN: &switchablePIN{pin: userPIN}, PINGuard: g.Config(), WaitTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	objs, err := tok.Pool().ListTokenObjects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestManagedKeyMissingAtStart: an hsm key version whose token object is
// gone does not stop keysvc (its other keys serve) but is counted in
// Stats (keyward_token_keys_missing) and logged by name at start.
func TestManagedKeyMissingAtStart(t *testing.T) {
	e := newKeysvcEnv(t)
	e.createKey(t, "a", "sign", "ec-p256", "hsm", "sign")
	e.createKey(t, "b", "sign", "ec-p256", "hsm", "sign")
	if n := e.svc.Stats().MissingTokenKeys; n != 0 {
		t.Fatalf("missing at first start: %d", n)
	}
	e.stop()
	destroyTokenKey(t, e.tok.pool, "kw/a/v1")
	e.start(t)
	if n := e.svc.Stats().MissingTokenKeys; n != 1 {
		t.Fatalf("MissingTokenKeys %d, want 1", n)
	}
	e.must(t, 200, bankingToken, "POST", "/v1/keys/b/sign", map[string]any{"message": b64("m")})
	if code, out := e.call(t, bankingToken, "POST", "/v1/keys/a/sign", map[string]any{"message": b64("m")}); code == 200 {
		t.Fatalf("sign with the missing version: %d %v", code, out)
	}
}

// TestProductionKeysvcRequiresCeremonyServiceKeys (issue 15 item 1): the
// real keysvc with a config file (production) on a token without service
// keys exits 1 naming each missing key, its type and usage and the
// ceremony that makes them, and creates nothing on the token; once the keys
// are there as the ceremony's preset makes them (backup-able,
// undestroyable), it starts and records them.
func TestProductionKeysvcRequiresCeremonyServiceKeys(t *testing.T) {
	dir := t.TempDir()
	tt := newTestTLS(t, dir)
	d := newDaemon(t, "keysvc", dir, tt)
	ti := newTokenLabel(t)
	pinFile, conf := filepath.Join(dir, "user.pin"), filepath.Join(dir, "keysvc.yaml")
	writeFiles(t, pinFile, userPIN+"\n", conf, fmt.Sprintf(`listen: %q
data_dir: %q
tls: {cert: %q, key: %q}
token:
  uri: %q
  wait_timeout: 10s
destroy: {default_delay: 24h, min_delay: 1h}
scheduler_interval: 1h
clients:
  - {name: officer, admin: true, token_sha256: %s}
`, d.addr, filepath.Join(dir, "keysvc"), tt.cert, tt.key,
		"pkcs11:token="+ti.Label+"?module-path="+modulePath+"&pin-source=file:"+pinFile, sha(officerToken)))
	d.args = []string{"serve", "-config", conf}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, d.bin, d.args...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("production keysvc on a token without service keys: %v\n%s", err, out)
	}
	t.Logf("keysvc refused:\n%s", out)
	wants := []string{"service keys missing from the token", `token \"` + ti.Label + `\" (serial ` + ti.Serial + `)`,
		"ceremony keygen", "service_keys: true", "ceremony backup", "ceremony restore"}
	for _, ks := range keysvc.ServiceKeySpecs() {
		wants = append(wants, fmt.Sprintf("%s (%v, usage %s", ks.Label, ks.Type, keysvc.UsageNames(ks.Usage)))
	}
	for _, want := range wants {
		if !strings.Contains(string(out), want) {
			t.Errorf("keysvc's refusal does not say %q", want)
		}
	}
	if objs := objectsOn(t, ti.Label); len(objs) != 0 {
		t.Fatalf("the refused keysvc left objects on the token: %v", objs)
	}
	provisionServiceKeys(t, ti.Label)
	d.start(t)
	d.stop()
	st, err := boltstore.Open(filepath.Join(dir, "keysvc", "keysvc.db"), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := st.ServiceKeys()
	if err != nil || rec == nil || len(rec.Keys) != len(keysvc.ServiceKeySpecs()) || rec.TokenSerial != ti.Serial {
		t.Fatalf("record after the start on ceremony-made keys: %+v (%v)", rec, err)
	}
}
