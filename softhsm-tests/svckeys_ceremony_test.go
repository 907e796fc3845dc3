package softhsmtests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/token"
)

// keysvc's service keys made, backed up and restored by the real
// cmd/ceremony binary (issue 15 items 1–3): keygen with service_keys: true,
// a 3-of-5 backup, a restore into a fresh token from three shares. The
// tokens are initialised by `ceremony token init` (cerPINs' PINs, the test
// officers enrolled), every sensitive step with its officers' approvals.

// cerServiceKeyLabels is the backup's keys: list of every service key.
func cerServiceKeyLabels() string {
	var l []string
	for _, ks := range keysvc.ServiceKeySpecs() {
		l = append(l, ks.Label)
	}
	return strings.Join(l, ", ")
}

// cerInitToken runs `ceremony token init` on a new token and returns its label.
func cerInitToken(t *testing.T, pins, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	label := prefix + "-" + hex.EncodeToString(b)
	f, _ := cerFile(t, "init.yaml", pins, map[string]string{"LABEL": label})
	if r := cerRun(t, append([]string{"token", "init", "-f", f, "--yes"}, cerApprovals(t, []string{"token", "init"}, f)...)...); r.code != 0 {
		t.Fatalf("token init %s: %v", label, r)
	}
	return label
}

// cerRunApproved runs ceremony sub on file with its quorum's approvals and --yes.
func cerRunApproved(t *testing.T, sub []string, file string) cerResult {
	t.Helper()
	args := append(append([]string(nil), sub...), "-f", file, "--yes")
	r := cerRun(t, append(args, cerApprovals(t, sub, file)...)...)
	if r.code != 0 {
		t.Fatalf("ceremony %v: %v", sub, r)
	}
	return r
}

// cerServiceKeyBackup makes keysvc's service keys on token label with
// `ceremony keygen` (service_keys: true) and backs them up 3-of-5 with
// `ceremony backup`; it returns the backup file and the five share files.
func cerServiceKeyBackup(t *testing.T, pins, label string) (backup string, shares []string) {
	t.Helper()
	kf, _ := cerFile(t, "keygen-service-keys.yaml", pins, map[string]string{"LABEL": label})
	r := cerRunApproved(t, []string{"keygen"}, kf)
	for _, ks := range keysvc.ServiceKeySpecs() {
		if !strings.Contains(r.stdout+r.stderr, ks.Label) {
			t.Errorf("keygen's output does not name %s: %v", ks.Label, r)
		}
	}
	bf, out := cerFile(t, "backup.yaml", pins, map[string]string{"LABEL": label, "KEYS": cerServiceKeyLabels()})
	cerRunApproved(t, []string{"backup"}, bf)
	for i := 1; i <= 5; i++ {
		shares = append(shares, filepath.Join(out, fmt.Sprintf("share-%d.txt", i)))
	}
	return filepath.Join(out, "backup.json"), shares
}

// cerRestore runs `ceremony restore` of backup into token label with the
// given shares only.
func cerRestore(t *testing.T, pins, label, backup string, shares ...string) {
	t.Helper()
	rf, _ := cerFile(t, "restore.yaml", pins, map[string]string{"LABEL": label, "BACKUP": backup, "SHARES": strings.Join(shares, ", ")})
	cerRunApproved(t, []string{"restore"}, rf)
}

// cerUserPIN is the user PIN cerPINs writes (token init sets it).
func cerUserPIN(t *testing.T, pins string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(pins, "user"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// openTokenStore opens token label with pin (a throwaway PIN guard) as
// the key store keysvc would use.
func openTokenStore(t *testing.T, label, pin string) *token.Store {
	t.Helper()
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "guard.db"), 0)
	tok, err := token.Open(context.Background(), token.Config{Kind: token.KindHSM, Module: modulePath, Label: label, PIN: &switchablePIN{pin: pin}, PINGuard: g.Config(), WaitTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	return tok.Store()
}

// memberSet is the least a key store needs for keysvc.New to compare its
// members (Stores, which *token.Set has: keysvc asserts it at compile
// time): these ceremony-made tokens hold no replication key, which a real
// token.Set of two members would demand first. failover_test.go runs keysvc
// on a real token.Set.
type memberSet struct {
	*token.Store
	members []*token.Store
}

func (m memberSet) Stores() []*token.Store { return m.members }

// TestServiceKeysAgreeAfterCeremonyRestore (issue 15 item 3): two tokens
// whose service keys were restored from one ceremony backup agree
// (keysvc.CheckServiceKeysAgree, also with the record keysvc made on the
// restored one, and keysvc.New on a key store listing both members); a
// token whose keysvc-kek (and the rest) were generated independently is
// refused, by both, naming the key and that token's label and serial; so
// is a token missing a key.
func TestServiceKeysAgreeAfterCeremonyRestore(t *testing.T) {
	ctx := context.Background()
	pins := cerPINs(t)
	a, c := cerInitToken(t, pins, "svc-a"), cerInitToken(t, pins, "svc-c")
	backup, shares := cerServiceKeyBackup(t, pins, a)
	cerRestore(t, pins, c, backup, shares[0], shares[2], shares[4])
	pin := cerUserPIN(t, pins)
	sa, sc := openTokenStore(t, a, pin), openTokenStore(t, c, pin)
	specs := keysvc.ServiceKeySpecs()
	if err := keysvc.CheckServiceKeysAgree(ctx, []keysvc.KeyStore{sa, sc}, specs, nil); err != nil {
		t.Fatalf("tokens restored from one backup: %v", err)
	}
	// Epoch 1's KEKs come back destroyable (the preset makes them so, the
	// backup records CKA_DESTROYABLE, restore keeps it), so keysvc's first
	// KEK rotation can retire them in this token too; no other service key
	// is destroyable.
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "guard.db"), 0)
	ctok, err := token.Open(ctx, token.Config{Kind: token.KindHSM, Module: modulePath, Label: c, PIN: &switchablePIN{pin: pin}, PINGuard: g.Config(), WaitTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, ks := range specs {
		k, err := ctok.Pool().FindKey(ctx, ks.Label)
		if err != nil {
			t.Fatal(err)
		}
		wp, err := ctok.Pool().KeyWrapPolicy(ctx, k)
		if want := ks.Label == keysvc.KEKLabel || ks.Label == keysvc.SMKEKLabel; err != nil || wp.Destroyable != want || wp.Extractable {
			t.Errorf("restored %s: %+v %v; want destroyable %v, not extractable", ks.Label, wp, err, want)
		}
	}
	ctok.Close()
	// keysvc in production mode starts on the restored token and records
	// its keys; the original token agrees with that record too.
	dir := t.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc, err := keysvc.New(ctx, keysvc.Config{Keys: sc, Store: st, RequireServiceKeys: true, MinDestroyDelay: time.Hour})
	if err != nil {
		t.Fatalf("keysvc on the restored token: %v", err)
	}
	svc.Close()
	rec, err := st.ServiceKeys()
	if err != nil || rec == nil || len(rec.Keys) != len(specs) {
		t.Fatalf("record: %+v %v", rec, err)
	}
	if err := keysvc.CheckServiceKeysAgree(ctx, []keysvc.KeyStore{sa, sc}, specs, rec); err != nil {
		t.Fatalf("with the record: %v", err)
	}

	// keysvc.New on a key store that offers its members (as token.Set
	// will): the restored pair starts.
	st2, err := boltstore.Open(filepath.Join(dir, "keysvc-set.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if svc, err := keysvc.New(ctx, keysvc.Config{Keys: memberSet{sa, []*token.Store{sa, sc}}, Store: st2, RequireServiceKeys: true, MinDestroyDelay: time.Hour}); err != nil {
		t.Fatalf("keysvc on the restored pair: %v", err)
	} else {
		svc.Close()
	}

	// Independently generated service keys (as the ceremony preset makes
	// them, on another token): refused, naming the key and the token.
	bi := newServiceKeyToken(t)
	sb := openTokenStore(t, bi.Label, userPIN)
	if _, err := keysvc.New(ctx, keysvc.Config{Keys: memberSet{sa, []*token.Store{sa, sb}}, Store: st2, RequireServiceKeys: true, MinDestroyDelay: time.Hour}); !errors.Is(err, keysvc.ErrServiceKeysDiffer) ||
		!strings.Contains(err.Error(), fmt.Sprintf("keysvc-kek on token %q", bi.Label)) {
		t.Fatalf("keysvc.New on a set with independent keys: %v, want ErrServiceKeysDiffer naming keysvc-kek and %s", err, bi.Label)
	}
	err = keysvc.CheckServiceKeysAgree(ctx, []keysvc.KeyStore{sa, sb}, specs, nil)
	if !errors.Is(err, keysvc.ErrServiceKeysDiffer) {
		t.Fatalf("independent keys: %v, want ErrServiceKeysDiffer", err)
	}
	t.Logf("refused: %v", err)
	for _, want := range []string{fmt.Sprintf("keysvc-kek on token %q (serial %s): differs from token %q", bi.Label, bi.Serial, a), "ceremony restore"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal does not say %q", want)
		}
	}
	// The record alone also tells: B against the record made on C.
	if err := keysvc.CheckServiceKeysAgree(ctx, []keysvc.KeyStore{sb}, specs, rec); !errors.Is(err, keysvc.ErrServiceKeysDiffer) ||
		!strings.Contains(err.Error(), "differs from the store's record") {
		t.Fatalf("B against the record: %v", err)
	}
	// A member missing a key.
	di := newTokenLabel(t)
	sd := openTokenStore(t, di.Label, userPIN)
	for _, ks := range specs {
		if ks.Label == keysvc.SMKEKLabel {
			continue
		}
		if _, err := sd.GenerateKey(ctx, ks.KeySpec()); err != nil {
			t.Fatal(err)
		}
	}
	err = keysvc.CheckServiceKeysAgree(ctx, []keysvc.KeyStore{sa, sd}, specs, nil)
	if want := fmt.Sprintf("keysvc-sm-kek: missing from token %q (serial %s)", di.Label, di.Serial); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("missing key: %v, want %q", err, want)
	}
}

// TestServiceKeyWrongUsageRefused: a service key under the right label and
// type but with other usage attributes than keysvc needs (a keysvc-kek
// that may encrypt but not unwrap, as a hand-written keygen entry could
// make it) is refused at start, naming what it allows and what keysvc
// needs; nothing is recorded.
func TestServiceKeyWrongUsageRefused(t *testing.T) {
	ctx := context.Background()
	ti := newTokenLabel(t)
	st := openTokenStore(t, ti.Label, userPIN)
	for _, ks := range keysvc.ServiceKeySpecs() {
		spec := ceremonyServiceKeySpec(ks)
		if ks.Label == keysvc.KEKLabel {
			spec.Usage = token.UsageWrap | token.UsageEncrypt | token.UsageExact
		}
		if _, err := st.GenerateKey(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	bs, err := boltstore.Open(filepath.Join(t.TempDir(), "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	_, err = keysvc.New(ctx, keysvc.Config{Keys: st, Store: bs, RequireServiceKeys: true, MinDestroyDelay: time.Hour})
	if !errors.Is(err, keysvc.ErrServiceKeysChanged) || !strings.Contains(err.Error(), "keysvc-kek: the token's key allows encrypt, wrap, keysvc needs exactly wrap, unwrap") {
		t.Fatalf("keysvc-kek with usage encrypt, wrap: %v", err)
	}
	if rec, err := bs.ServiceKeys(); err != nil || rec != nil {
		t.Fatalf("refused start recorded %+v (%v)", rec, err)
	}
}
