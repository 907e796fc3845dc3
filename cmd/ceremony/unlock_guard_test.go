package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// Issue 13 defect 3: unlock pointed at a pin_guard that is not keysvc's
// (a fresh file token init created at a mistyped path) printed "guard
// lockout cleared" and signed it while keysvc's real guard stayed locked.

// newKeysvcStore makes keysvc's keysvc.db as cmd/keysvc does: the store's
// buckets, then the PIN guard's on the same database.
func newKeysvcStore(path string) error {
	store, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		return err
	}
	if _, err := token.NewBoltStore(store.DB()); err != nil {
		store.Close()
		return err
	}
	return store.Close()
}

// keysvcGuardState reads the state of the PIN id in keysvc's guard, opened
// as keysvc opens it (after six wrong PINs counted there, with lock).
func keysvcGuardState(t *testing.T, db, id string, lock bool) token.PINState {
	t.Helper()
	store, err := boltstore.Open(db, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	pins, err := token.NewBoltStore(store.DB())
	if err != nil {
		t.Fatal(err)
	}
	g, _ := token.NewGuard(pins, 0)
	if lock {
		// As keysvc leaves it after six wrong PINs.
		for range token.MaxPINAttempts {
			g.Attempt(id, func() error { return pkcs11shim.ErrPINIncorrect })
		}
	}
	st, err := g.State(id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestUnlockRefusesGuardNotKeysvcs(t *testing.T) {
	setup(t)
	label := initToken(t, "ulg")
	keysvcDB := filepath.Join(t.TempDir(), "keysvc.db")
	if err := newKeysvcStore(keysvcDB); err != nil {
		t.Fatal(err)
	}
	p := testPool(t, label, userPIN)
	id := token.PINID(p.Info(), pkcs11shim.UserNormal)
	p.Close()
	if st := keysvcGuardState(t, keysvcDB, id, true); !st.Locked {
		t.Fatalf("keysvc's guard not locked: %+v", st)
	}

	// A fresh file (what token init creates at a mistyped path) and another
	// program's bbolt file: refused before any PIN is read, naming the
	// path and where keysvc keeps its guard.
	fresh := filepath.Join(t.TempDir(), "keysvc.db")
	st, err := token.OpenBoltStore(fresh)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	foreign := filepath.Join(t.TempDir(), "bank.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("customers")); return err })
	db.Close()
	for _, bad := range []string{fresh, foreign} {
		f, out := ceremonyFile(t, "unlock.yaml", map[string]string{"LABEL": label, "OFFICER2": "Bob Lee", "PART2": "so-part2", "GUARD": bad})
		r := runBin(t, "unlock", "-f", f)
		if r.code != exitUsage || !strings.Contains(r.stderr, "pin_guard: "+bad+" is not keysvc's store") ||
			!strings.Contains(r.stderr, "<data_dir>/keysvc.db") || !strings.Contains(r.stderr, "pin_guard_kind: workstation") {
			t.Fatalf("unlock with pin_guard %s: want exit 2 naming it and keysvc's <data_dir>/keysvc.db; %v", bad, r)
		}
		if _, err := os.Stat(filepath.Join(out, "transcript")); !os.IsNotExist(err) {
			t.Fatalf("a refused unlock wrote a transcript: %v", err)
		}
		// The dry run says the same.
		if r := runBin(t, "unlock", "-f", f, "--dry-run"); r.code != exitUsage {
			t.Fatalf("dry run of a mis-pointed unlock: %v", r)
		}
	}
	testPool(t, label, userPIN).Close() // the user PIN was not changed
	if st := keysvcGuardState(t, keysvcDB, id, false); !st.Locked {
		t.Fatalf("keysvc's guard changed by refused unlocks: %+v", st)
	}

	// Pointed at keysvc's store: the real state before (locked, six
	// failures) and after (cleared) is shown and recorded, and keysvc's
	// guard is really cleared.
	f, out := ceremonyFile(t, "unlock.yaml", map[string]string{"LABEL": label, "OFFICER2": "Bob Lee", "PART2": "so-part2", "GUARD": keysvcDB})
	r := mustRun(t, []string{"unlock"}, f, out)
	md, _ := os.ReadFile(filepath.Join(out, "transcript", "transcript.md"))
	for _, want := range []string{"PIN guard before", "user PIN LOCKED since", "6 failed attempts counted (limit 6)", "PIN guard after", "user PIN not locked, 0 failed attempts counted"} {
		if !strings.Contains(r.stdout, want) || !strings.Contains(string(md), want) {
			t.Fatalf("unlock does not show %q in its output and transcript:\n%v\n%s", want, r, md)
		}
	}
	if st := keysvcGuardState(t, keysvcDB, id, false); st.Locked || st.Failures != 0 {
		t.Fatalf("keysvc's guard after the unlock: %+v", st)
	}
	testPool(t, label, newPIN).Close()

	// A workstation guard, said so in the file, is accepted.
	other := initToken(t, "ulw")
	f, out = ceremonyFile(t, "unlock.yaml", map[string]string{"LABEL": other, "OFFICER2": "Bob Lee", "PART2": "so-part2", "GUARD": fresh})
	raw, _ := os.ReadFile(f)
	os.WriteFile(f, append(raw, []byte("pin_guard_kind: workstation\n")...), 0o600)
	if r := mustRun(t, []string{"unlock"}, f, out); !strings.Contains(r.stdout, "officers' workstation guard "+fresh) {
		t.Fatalf("workstation unlock: %v", r)
	}
	f, _ = ceremonyFile(t, "unlock.yaml", map[string]string{"LABEL": other, "OFFICER2": "Bob Lee", "PART2": "so-part2", "GUARD": fresh})
	raw, _ = os.ReadFile(f)
	os.WriteFile(f, append(raw, []byte("pin_guard_kind: elsewhere\n")...), 0o600)
	if r := runBin(t, "unlock", "-f", f); r.code != exitUsage || !strings.Contains(r.stderr, "pin_guard_kind: must be keysvc") {
		t.Fatalf("bad pin_guard_kind: %v", r)
	}
}
