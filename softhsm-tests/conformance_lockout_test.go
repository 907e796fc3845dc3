package softhsmtests

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// confLockout: wrong user PINs until the token locks; Keyward must report it
// locked whichever lock trips first (R-TOK-5):
//
//   - the module's own: tpm2-pkcs11 unseals its keys with the PIN, so a wrong
//     PIN is a TPM authorisation failure, and after 3 of them the whole TPM
//     is in dictionary-attack lockout; C_Login then answers CKR_PIN_LOCKED
//     even for the right PIN, without setting CKF_USER_PIN_LOCKED. The guard
//     locks on that answer.
//   - Keyward's guard: 6 consecutive wrong PINs (the only lock on SoftHSM
//     2.6.1, which never locks).
//
// Once locked, Keyward refuses the right PIN without calling C_Login. Clearing
// the module's lock (the TPM owner's tpm2_dictionarylockout --clear-lockout)
// does not unlock Keyward: a security officer does, by setting a new user PIN.
//
// On tpm2-pkcs11 this locks every token of the TPM, so it runs last, on a
// token of its own, and the TPM's lockout is cleared before and after.
func confLockout(t *testing.T, m *confModule) {
	label := m.label
	if m.caps.InitToken { // the SO unlock below changes the user PIN: use a token of its own
		label = confLabel("kw-lock")
		if _, err := m.mod.InitToken("", []byte(m.so), label); err != nil {
			t.Fatalf("InitToken: %v", err)
		}
		if err := m.mod.InitPIN(pkcs11shim.Selector{Label: label}, []byte(m.so), []byte(m.user)); err != nil {
			t.Fatalf("InitPIN: %v", err)
		}
	}
	if m.clearLockout != nil {
		m.clearLockout(t) // earlier behaviours' wrong PINs count in the TPM
		t.Cleanup(func() { m.clearLockout(t) })
	}
	sel := pkcs11shim.Selector{Label: label}
	ti, err := m.mod.FindToken(sel)
	if err != nil {
		t.Fatal(err)
	}
	g, st := newGuard(t, filepath.Join(t.TempDir(), "g.db"), 0)
	id := token.PINID(ti, pkcs11shim.UserNormal)
	wrongs := g.Limit()
	if n := m.caps.ModuleLockAfter; n > 0 && n < wrongs {
		wrongs = n
	}
	for i := 1; i <= wrongs; i++ {
		_, err := confOpenLabel(t, m, label, g, &switchablePIN{pin: "wrong-pin-0"})
		if !errors.Is(err, token.ErrPINIncorrect) {
			t.Fatalf("wrong PIN %d: got %v, want ErrPINIncorrect", i, err)
		}
		if locked := errors.Is(err, token.ErrPINLocked); locked != (i == g.Limit()) {
			t.Fatalf("wrong PIN %d of guard limit %d: locked=%v (%v)", i, g.Limit(), locked, err)
		}
		if s, _ := g.State(id); s.Failures != i {
			t.Fatalf("wrong PIN %d: guard counted %d", i, s.Failures)
		}
	}

	// The right PIN now: refused as locked.
	right := &countingPIN{pin: m.user}
	_, err = confOpenLabel(t, m, label, g, right)
	if !errors.Is(err, token.ErrPINLocked) {
		t.Fatalf("right PIN after %d wrong: got %v, want ErrPINLocked", wrongs, err)
	}
	if m.caps.ModuleLockAfter > 0 {
		// The module refused it: one C_Login, answered CKR_PIN_LOCKED.
		if right.n.Load() != 1 {
			t.Fatalf("right PIN read %d times, want 1 (one C_Login, refused by the module)", right.n.Load())
		}
		err := m.mod.CheckLogin(sel, pkcs11shim.UserNormal, []byte(m.user))
		if !errors.Is(err, pkcs11shim.ErrPINLocked) {
			t.Fatalf("module itself, right PIN: got %v, want ErrPINLocked", err)
		}
		t.Logf("module answers the right user PIN: %v", err)
		t.Logf("module answers the right SO PIN: %v", m.mod.CheckLogin(sel, pkcs11shim.UserSO, []byte(m.so)))
		evs, err := st.Events(id)
		if err != nil || len(evs) != 1 || evs[0].Kind != "locked" || evs[0].Detail != "the module reports the PIN locked" {
			t.Fatalf("guard events: %v %+v", err, evs)
		}
	} else {
		if right.n.Load() != 0 {
			t.Fatalf("locked guard read the PIN %d times: C_Login was called", right.n.Load())
		}
		if err := m.mod.CheckLogin(sel, pkcs11shim.UserNormal, []byte(m.user)); err != nil {
			t.Fatalf("%s declares no lock of its own, but refuses the right PIN: %v", m.name, err)
		}
	}
	if s, _ := g.State(id); !s.Locked {
		t.Fatalf("guard not locked: %+v", s)
	}
	live, err := m.mod.LookupToken(sel)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("token flags while locked: CKF_USER_PIN_LOCKED=%v COUNT_LOW=%v FINAL_TRY=%v",
		live.Flags.UserPINLocked, live.Flags.UserPINCountLow, live.Flags.UserPINFinalTry)

	// From now on Keyward refuses without asking the module.
	confExpectGuardLocked(t, m, label, g)
	if m.clearLockout != nil && m.caps.InitToken {
		// An SO unlock during the TPM's lockout: refused as locked by the
		// module, and not latched by Keyward — once the TPM recovers the
		// same SO PIN works (below).
		a, err := token.OpenAdmin(token.Config{Kind: token.KindHSM, Module: m.path, Label: label, PINGuard: g.Config()})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Unlock([]byte(m.so), []byte("735190"), "officer-conf"); !errors.Is(err, pkcs11shim.ErrPINLocked) {
			t.Fatalf("SO unlock during the TPM lockout: %v, want ErrPINLocked", err)
		}
		a.Close()
		if s, _ := g.State(strings.TrimSuffix(id, "/user") + "/so"); s.Locked {
			t.Fatalf("Keyward latched the module's SO lock: %+v", s)
		}
	}
	if m.clearLockout != nil {
		m.clearLockout(t)
		if err := m.mod.CheckLogin(sel, pkcs11shim.UserNormal, []byte(m.user)); err != nil {
			t.Fatalf("module after its lockout was cleared, right PIN: %v", err)
		}
		confExpectGuardLocked(t, m, label, g)
	}
	if !m.caps.InitToken {
		return // no token of its own: leave the shared token's PIN alone
	}
	a, err := token.OpenAdmin(token.Config{Kind: token.KindHSM, Module: m.path, Label: label, PINGuard: g.Config()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const newPIN = "735190"
	if err := a.Unlock([]byte(m.so), []byte(newPIN), "officer-conf"); err != nil {
		t.Fatalf("SO unlock: %v", err)
	}
	if s, _ := g.State(id); s.Locked || s.Failures != 0 {
		t.Fatalf("guard after SO unlock: %+v", s)
	}
	if _, err := confOpenLabel(t, m, label, g, &switchablePIN{pin: newPIN}); err != nil {
		t.Fatalf("new PIN after unlock: %v", err)
	}
}

// confExpectGuardLocked: the right PIN is refused as locked without a
// C_Login (the PIN is never read).
func confExpectGuardLocked(t *testing.T, m *confModule, label string, g *token.Guard) {
	t.Helper()
	right := &countingPIN{pin: m.user}
	if _, err := confOpenLabel(t, m, label, g, right); !errors.Is(err, token.ErrPINLocked) || right.n.Load() != 0 {
		t.Fatalf("locked guard: got %v after %d PIN reads, want ErrPINLocked and 0", err, right.n.Load())
	}
}
