package softhsmtests

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// Every login of every ceremony goes through the PIN guard that keysvc
// uses (R-TOK-5, issue 12 item 7): the real cmd/ceremony binary counts in
// keysvc's keysvc.db, opened here exactly as cmd/keysvc opens it
// (boltstore.Open, then token.NewBoltStore on the same bbolt database).
// The tokens are made in this process, so that this process sees them
// without re-initialising the module; SoftHSM never locks a PIN by itself,
// so a refusal of the right PIN proves the guard refused it.

var (
	cerGuardOnce sync.Once
	cerGuardPath string
	cerGuardErr  error
)

// cerWorkstationGuard is the pin_guard of ceremony files that don't name
// one (${GUARD}): the officers' workstation's own file, where no keysvc
// runs (rotate and schedule-destroy need keysvc running elsewhere).
func cerWorkstationGuard(t *testing.T) string {
	t.Helper()
	cerGuardOnce.Do(func() {
		cerGuardPath = filepath.Join(confDir, "officers-workstation-keysvc.db")
		var st *token.BoltStore
		if st, cerGuardErr = token.OpenBoltStore(cerGuardPath); cerGuardErr == nil {
			cerGuardErr = st.Close()
		}
	})
	if cerGuardErr != nil {
		t.Fatal(cerGuardErr)
	}
	return cerGuardPath
}

// cerHost is keysvc's host: its keysvc.db (keysvc ran once and is
// stopped) and its token, made with a ceremony-audit key so ceremonies on
// it can sign their transcripts.
type cerHost struct {
	db    string
	info  pkcs11shim.TokenInfo
	right string // PIN files with the right PINs
	wrong string // the same with a wrong user PIN and a wrong second SO part
}

func newCerHost(t *testing.T) *cerHost {
	t.Helper()
	h := &cerHost{db: filepath.Join(t.TempDir(), "keysvc.db"), info: newTokenLabel(t)}
	cerEnrolOfficers(t, h.info.Label) // sensitive ceremonies need two enrolled officers' approvals
	store, err := boltstore.Open(h.db, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := token.NewBoltStore(store.DB()); err != nil {
		t.Fatal(err)
	}
	store.Close()
	p, err := pkcs11shim.NewPool(context.Background(), module, pkcs11shim.PoolConfig{Selector: pkcs11shim.Selector{Label: h.info.Label}, MaxSessions: 1,
		Authenticate: func(_ context.Context, login pkcs11shim.LoginFunc) error { return login([]byte(userPIN)) }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.GenerateKey(context.Background(), pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: "ceremony-audit", Usage: pkcs11shim.UsageSign})
	p.Close()
	if err != nil {
		t.Fatal(err)
	}
	h.right = cerGuardPINs(t, userPIN, soPIN[8:])
	h.wrong = cerGuardPINs(t, "Wrong#PIN-77", "zzz")
	return h
}

// cerGuardPINs writes PIN files: the SO PIN as two parts (soPIN[:8] then
// so2), the user PIN, a new user PIN (user2) and keysvc's officer token.
func cerGuardPINs(t *testing.T, user, so2 string) string {
	t.Helper()
	dir := t.TempDir()
	for name, v := range map[string]string{"so-part1": soPIN[:8], "so-part2": so2, "user": user, "user2": "Nw#7315!q", "admin.token": officerToken} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// keysvcGuard opens keysvc's PIN guard as cmd/keysvc does; close it
// before the next ceremony (keysvc "stops").
func (h *cerHost) keysvcGuard(t *testing.T) (*token.Guard, func()) {
	t.Helper()
	store, err := boltstore.Open(h.db, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pins, err := token.NewBoltStore(store.DB())
	if err != nil {
		t.Fatal(err)
	}
	g, err := token.NewGuard(pins, 0)
	if err != nil {
		t.Fatal(err)
	}
	return g, func() { store.Close() }
}

// state is keysvc's guard state of the token's user or SO PIN.
func (h *cerHost) state(t *testing.T, ut pkcs11shim.UserType) token.PINState {
	t.Helper()
	g, done := h.keysvcGuard(t)
	defer done()
	st, err := g.State(token.PINID(h.info, ut))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// keysvcLogin starts keysvc's token login (token.Open through its guard)
// with pin, as keysvc's start-up does, and stops again.
func (h *cerHost) keysvcLogin(t *testing.T, pin string) error {
	t.Helper()
	g, done := h.keysvcGuard(t)
	defer done()
	tok, err := token.Open(context.Background(), token.Config{Kind: token.KindHSM, Module: modulePath, Label: h.info.Label, PIN: token.HeldPIN(pin), PINGuard: g.Config()})
	if err == nil {
		tok.Close()
	}
	return err
}

// run fills a ceremony template with keysvc's pin_guard and runs it.
func (h *cerHost) run(t *testing.T, sub []string, tmpl, pins string, vars map[string]string, edit ...string) (cerResult, string) {
	t.Helper()
	all := map[string]string{"GUARD": h.db}
	for k, v := range vars {
		all[k] = v
	}
	f, out := cerFile(t, tmpl, pins, all, edit...)
	return cerRun(t, append(append(sub, "-f", f), cerApprovals(t, sub, f)...)...), out
}

func touch(t *testing.T, path string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCeremonyGuardUserPIN: a wrong user PIN in any ceremony that logs in
// is one failure in keysvc's counter; keysvc's successful login resets it;
// six in a row (through ceremonies) lock the token for keysvc too, and the
// ceremony then refuses the right PIN without trying it.
func TestCeremonyGuardUserPIN(t *testing.T) {
	h := newCerHost(t)
	label := h.info.Label

	// Keys to back up, and a backup with its shares, made with the right PIN.
	if r, _ := h.run(t, []string{"keygen"}, "keygen.yaml", h.right, map[string]string{"LABEL": label}); r.code != 0 {
		t.Fatalf("keygen: %v", r)
	}
	r, bout := h.run(t, []string{"backup"}, "backup.yaml", h.right, map[string]string{"LABEL": label, "KEYS": "receipt-signer"})
	if r.code != 0 {
		t.Fatalf("backup: %v", r)
	}
	shares := strings.Join([]string{filepath.Join(bout, "share-1.txt"), filepath.Join(bout, "share-2.txt"), filepath.Join(bout, "share-3.txt")}, ", ")
	if st := h.state(t, pkcs11shim.UserNormal); st != (token.PINState{}) {
		t.Fatalf("after right PINs keysvc's counter is %+v", st)
	}

	dead := "http://127.0.0.1:1"     // never reached: the signer's login comes first
	victim := newTokenLabel(t).Label // zeroize's target: its roster approves, then the signer's login fails
	cerEnrolOfficers(t, victim)
	for _, c := range []struct {
		sub  []string
		tmpl string
		vars map[string]string
	}{
		{[]string{"keygen"}, "keygen.yaml", map[string]string{"LABEL": label}},
		{[]string{"backup"}, "backup.yaml", map[string]string{"LABEL": label, "KEYS": "receipt-signer"}},
		{[]string{"restore"}, "restore.yaml", map[string]string{"LABEL": label, "BACKUP": filepath.Join(bout, "backup.json"), "SHARES": shares}},
		{[]string{"zeroize"}, "zeroize.yaml", map[string]string{"SIGNER": label, "LABEL": victim, "CONFIRM": `""`}},
		{[]string{"rotate"}, "rotate.yaml", map[string]string{"SIGNER": label, "URL": dead}},
		{[]string{"schedule-destroy"}, "schedule-destroy.yaml", map[string]string{"SIGNER": label, "URL": dead}},
		{[]string{"audit", "verify"}, "audit-verify.yaml", map[string]string{"SIGNER": label}},
		{[]string{"seal"}, "seal.yaml", map[string]string{"LABEL": label, "PIN": "user", "TPM": "tcp:127.0.0.1:1", "TLSKEY": touch(t, filepath.Join(t.TempDir(), "tls.key"))}},
		{[]string{"reseal"}, "reseal.yaml", map[string]string{"LABEL": label, "TPM": "tcp:127.0.0.1:1", "FILE": touch(t, filepath.Join(t.TempDir(), "secrets.json"))}},
	} {
		name := strings.Join(c.sub, " ")
		before := h.state(t, pkcs11shim.UserNormal).Failures
		all := map[string]string{"GUARD": h.db}
		for k, v := range c.vars {
			all[k] = v
		}
		f, out := cerFile(t, c.tmpl, h.wrong, all)
		if name == "audit verify" { // inputs that must exist; never opened
			touch(t, filepath.Join(out, "keysvc.db"))
			touch(t, filepath.Join(out, "audit-key.pem"))
		}
		r := cerRun(t, append(append(c.sub, "-f", f), cerApprovals(t, c.sub, f)...)...)
		if r.code != 1 || !strings.Contains(r.stderr, "left before") {
			t.Fatalf("%s with a wrong user PIN: want exit 1 and the attempts left; %v", name, r)
		}
		if got := h.state(t, pkcs11shim.UserNormal).Failures; got != before+1 {
			t.Fatalf("%s with a wrong user PIN: keysvc's counter %d -> %d, want one more", name, before, got)
		}
		if before+1 == token.MaxPINAttempts-1 {
			// keysvc's own successful login resets the count the ceremonies raised.
			if err := h.keysvcLogin(t, userPIN); err != nil {
				t.Fatalf("keysvc login with the right PIN: %v", err)
			}
			if st := h.state(t, pkcs11shim.UserNormal); st.Failures != 0 {
				t.Fatalf("keysvc's right PIN left the counter at %+v", st)
			}
		}
	}

	if err := h.keysvcLogin(t, userPIN); err != nil {
		t.Fatal(err)
	}
	for i := range token.MaxPINAttempts {
		r, _ := h.run(t, []string{"keygen"}, "keygen.yaml", h.wrong, map[string]string{"LABEL": label})
		if r.code != 1 {
			t.Fatalf("wrong PIN %d: %v", i+1, r)
		}
	}
	if st := h.state(t, pkcs11shim.UserNormal); !st.Locked || st.Failures != token.MaxPINAttempts {
		t.Fatalf("after six wrong PINs in ceremonies keysvc's guard has %+v, want locked at 6", st)
	}
	// keysvc refuses to start on the token the ceremonies locked.
	if err := h.keysvcLogin(t, userPIN); !errors.Is(err, token.ErrPINLocked) {
		t.Fatalf("keysvc with the right PIN after six ceremony failures: %v, want ErrPINLocked", err)
	}
	// The ceremony refuses the right PIN: SoftHSM would accept it, so it was never tried.
	r, out := h.run(t, []string{"keygen"}, "keygen.yaml", h.right, map[string]string{"LABEL": label})
	if r.code != 1 || !strings.Contains(r.stderr, "locked") {
		t.Fatalf("keygen with the right PIN on a locked token: want exit 1, locked; %v", r)
	}
	if _, err := os.Stat(filepath.Join(out, "receipt-signer.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a locked token's keygen wrote a key: %v", err)
	}
	if st := h.state(t, pkcs11shim.UserNormal); st.Failures != token.MaxPINAttempts {
		t.Fatalf("a refused login was counted: %+v", st)
	}
}

// TestCeremonyGuardLockedByKeysvc: six wrong PINs at keysvc's start-ups
// lock the token, and every ceremony then refuses it, right PIN or not.
func TestCeremonyGuardLockedByKeysvc(t *testing.T) {
	h := newCerHost(t)
	for range token.MaxPINAttempts {
		if err := h.keysvcLogin(t, "Wrong#PIN-77"); !errors.Is(err, token.ErrPINIncorrect) {
			t.Fatalf("keysvc with a wrong PIN: %v", err)
		}
	}
	for _, c := range []struct {
		sub  []string
		tmpl string
		vars map[string]string
	}{
		{[]string{"keygen"}, "keygen.yaml", map[string]string{"LABEL": h.info.Label}},
		{[]string{"rotate"}, "rotate.yaml", map[string]string{"SIGNER": h.info.Label, "URL": "http://127.0.0.1:1"}},
	} {
		r, _ := h.run(t, c.sub, c.tmpl, h.right, c.vars)
		if r.code != 1 || !strings.Contains(r.stderr, "locked") {
			t.Fatalf("%v with the right PIN on a token keysvc's guard locked: want exit 1, locked; %v", c.sub, r)
		}
	}
	if st := h.state(t, pkcs11shim.UserNormal); st.Failures != token.MaxPINAttempts || !st.Locked {
		t.Fatalf("keysvc's counter after refused ceremonies: %+v", st)
	}
}

// TestCeremonyGuardSOPIN: the SO logins of unlock (C_InitPIN) and of a
// token init over an initialised token (C_InitToken checks the SO PIN)
// count in keysvc's SO counter; at six the right SO PIN is refused.
func TestCeremonyGuardSOPIN(t *testing.T) {
	h := newCerHost(t)
	reinit := func(pins string) cerResult {
		t.Helper()
		newLabel := h.info.Label + "-x"
		r, _ := h.run(t, []string{"token", "init", "--yes"}, "init.yaml", pins, map[string]string{"LABEL": newLabel},
			"  label: "+newLabel, "  label: "+newLabel+"\n  serial: "+h.info.Serial)
		return r
	}
	unlock := func(pins string) cerResult {
		t.Helper()
		r, _ := h.run(t, []string{"unlock"}, "unlock.yaml", pins, map[string]string{"LABEL": h.info.Label, "OFFICER2": "Bob Lee", "PART2": "so-part2"})
		return r
	}
	if r := reinit(h.wrong); r.code != 1 || !strings.Contains(r.stderr, "left before") {
		t.Fatalf("token init over an initialised token with a wrong SO PIN: %v", r)
	}
	if st := h.state(t, pkcs11shim.UserSO); st.Failures != 1 {
		t.Fatalf("keysvc's SO counter after a wrong SO PIN at token init: %+v", st)
	}
	for i := 2; i <= token.MaxPINAttempts; i++ {
		if r := unlock(h.wrong); r.code != 1 {
			t.Fatalf("unlock with a wrong SO part: %v", r)
		}
		if st := h.state(t, pkcs11shim.UserSO); st.Failures != i {
			t.Fatalf("keysvc's SO counter after %d wrong SO PINs: %+v", i, st)
		}
	}
	if st := h.state(t, pkcs11shim.UserSO); !st.Locked {
		t.Fatalf("SO PIN not locked after six failures: %+v", st)
	}
	if r := unlock(h.right); r.code != 1 || !strings.Contains(r.stderr, "locked") {
		t.Fatalf("unlock with the right SO PIN, SO locked: want exit 1, locked; %v", r)
	}
	if r := reinit(h.right); r.code != 1 || !strings.Contains(r.stderr, "locked") {
		t.Fatalf("token init with the right SO PIN, SO locked: want exit 1, locked; %v", r)
	}
	if st := h.state(t, pkcs11shim.UserSO); st.Failures != token.MaxPINAttempts {
		t.Fatalf("refused SO logins were counted: %+v", st)
	}
	// The user PIN was never reset: keysvc still logs in with it.
	if err := h.keysvcLogin(t, userPIN); err != nil {
		t.Fatalf("keysvc with the old user PIN: %v", err)
	}
}

// TestCeremonyGuardKeysvcRunning: while keysvc holds keysvc.db, a ceremony
// can't count and so tries no PIN: it says to stop keysvc, and does nothing.
func TestCeremonyGuardKeysvcRunning(t *testing.T) {
	h := newCerHost(t)
	_, stop := h.keysvcGuard(t) // keysvc running
	r, out := h.run(t, []string{"keygen"}, "keygen.yaml", h.wrong, map[string]string{"LABEL": h.info.Label})
	stop()
	if r.code != 1 || !strings.Contains(r.stderr, "stop keysvc") || !strings.Contains(r.stderr, h.db) {
		t.Fatalf("keygen while keysvc runs: want exit 1 naming %s and telling to stop keysvc; %v", h.db, r)
	}
	if _, err := os.Stat(filepath.Join(out, "transcript")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a ceremony refused before it began left a transcript: %v", err)
	}
	if st := h.state(t, pkcs11shim.UserNormal); st != (token.PINState{}) {
		t.Fatalf("a ceremony that could not count tried a PIN: %+v", st)
	}
}
