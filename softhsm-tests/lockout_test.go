package softhsmtests

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// SoftHSM 2.6.1 never locks a PIN, so everything below is Keyward's own
// guard at work (R-TOK-5).

func openWith(t *testing.T, info pkcs11shim.TokenInfo, g *token.Guard, pin string) (*token.Token, error) {
	t.Helper()
	tok, err := token.Open(context.Background(), token.Config{Kind: token.KindHSM, Module: modulePath, Label: info.Label, PIN: &switchablePIN{pin: pin}, PINGuard: g.Config()})
	if err == nil {
		t.Cleanup(func() { tok.Close() })
	}
	return tok, err
}

// TestLockoutFiveWrongThenRight: five wrong PINs, then the right one logs in
// and resets the counter.
func TestLockoutFiveWrongThenRight(t *testing.T) {
	info := newTokenLabel(t)
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "g.db"), 0)
	id := token.PINID(info, pkcs11shim.UserNormal)
	for i := 1; i <= 5; i++ {
		_, err := openWith(t, info, g, "999999")
		if !errors.Is(err, token.ErrPINIncorrect) || errors.Is(err, token.ErrPINLocked) {
			t.Fatalf("attempt %d: got %v, want ErrPINIncorrect (not locked)", i, err)
		}
		if st, _ := g.State(id); st.Failures != i {
			t.Fatalf("after %d wrong: counter %d", i, st.Failures)
		}
	}
	if _, err := openWith(t, info, g, userPIN); err != nil {
		t.Fatalf("right PIN after 5 wrong: %v", err)
	}
	if st, _ := g.State(id); st.Failures != 0 || st.Locked {
		t.Fatalf("counter not reset: %+v", st)
	}
}

// countingPIN counts how often the PIN is read: once per C_Login.
type countingPIN struct {
	n   atomic.Int64
	pin string
}

func (c *countingPIN) PIN() ([]byte, error) { c.n.Add(1); return []byte(c.pin), nil }

// TestLockoutSixWrongLocks: six wrong PINs lock the token; the right PIN is
// then refused without a C_Login; the lock survives a re-initialised module
// and a fresh process; the SO unlock works and is recorded.
func TestLockoutSixWrongLocks(t *testing.T) {
	info := newTokenLabel(t)
	dbPath := filepath.Join(t.TempDir(), "g.db")
	g, st := newGuard(t, dbPath, 0)
	id := token.PINID(info, pkcs11shim.UserNormal)
	for i := 1; i <= 6; i++ {
		_, err := openWith(t, info, g, "999999")
		if !errors.Is(err, token.ErrPINIncorrect) {
			t.Fatalf("attempt %d: %v", i, err)
		}
		if locked := errors.Is(err, token.ErrPINLocked); locked != (i == 6) {
			t.Fatalf("attempt %d: locked=%v (%v)", i, locked, err)
		}
	}
	right := &countingPIN{pin: userPIN}
	_, err := token.Open(context.Background(), token.Config{Kind: token.KindHSM, Module: modulePath, Label: info.Label, PIN: right, PINGuard: g.Config()})
	if !errors.Is(err, token.ErrPINLocked) {
		t.Fatalf("right PIN on locked token: got %v, want ErrPINLocked", err)
	}
	if right.n.Load() != 0 {
		t.Fatalf("locked token read the PIN %d times: C_Login was called", right.n.Load())
	}
	// A re-initialised module changes nothing: the lock is Keyward's.
	if err := module.Reinitialize(module.Generation()); err != nil {
		t.Fatal(err)
	}
	if _, err := openWith(t, info, g, userPIN); !errors.Is(err, token.ErrPINLocked) {
		t.Fatalf("after module re-init: got %v, want ErrPINLocked", err)
	}
	// A fresh process with the same guard file is refused too.
	st.Close()
	out, err := runChild(t, "TestChildStillLocked", "KEYWARD_TEST_GUARD="+dbPath, "KEYWARD_TEST_LABEL="+info.Label)
	if err != nil || !contains(out, "--- PASS: TestChildStillLocked") {
		t.Fatalf("child process: %v\n%s", err, out)
	}
	g, st = newGuard(t, dbPath, 0)
	if s, _ := g.State(id); !s.Locked || s.Failures != 6 {
		t.Fatalf("state after child: %+v", s)
	}
	// Wrong SO PIN: refused, counted on the SO counter, user stays locked.
	tok := openUnlocker(t, info, g)
	if err := tok.Unlock([]byte("wrong-so-pin"), []byte("735190"), "officer-a"); !errors.Is(err, token.ErrPINIncorrect) {
		t.Fatalf("unlock with wrong SO PIN: %v", err)
	}
	if s, _ := g.State(token.PINID(info, pkcs11shim.UserSO)); s.Failures != 1 {
		t.Fatalf("SO counter %d, want 1", s.Failures)
	}
	// A weak new PIN is refused before anything reaches the token.
	if err := tok.Unlock([]byte(soPIN), []byte("123456"), "officer-a"); !errors.Is(err, token.ErrPINSequence) {
		t.Fatalf("weak new PIN: %v", err)
	}
	if err := tok.Unlock([]byte(soPIN), []byte("735190"), "officer-a"); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	if s, _ := g.State(id); s.Locked || s.Failures != 0 {
		t.Fatalf("after unlock: %+v", s)
	}
	evs, err := st.Events(id)
	if err != nil || len(evs) != 2 || evs[0].Kind != "locked" || evs[1].Kind != "unlocked" || !contains(evs[1].Detail, "officer-a") {
		t.Fatalf("events: %v %+v", err, evs)
	}
	fresh, err := openWith(t, info, g, "735190")
	if err != nil {
		t.Fatalf("login with new PIN: %v", err)
	}
	fresh.Close() // while any session is logged in, C_Login answers USER_ALREADY_LOGGED_IN without checking
	if _, err := openWith(t, info, g, userPIN); !errors.Is(err, token.ErrPINIncorrect) {
		t.Fatalf("old PIN after unlock: %v", err)
	}
}

// openUnlocker opens the token for SO work, without a user login (a locked
// user PIN cannot open a Token).
func openUnlocker(t *testing.T, info pkcs11shim.TokenInfo, g *token.Guard) *token.Admin {
	t.Helper()
	a, err := token.OpenAdmin(token.Config{Kind: token.KindHSM, Module: modulePath, Label: info.Label, PINGuard: g.Config()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestChildStillLocked runs in a fresh process started by
// TestLockoutSixWrongLocks.
func TestChildStillLocked(t *testing.T) {
	childOnly(t)
	g, _ := newGuard(t, os.Getenv("KEYWARD_TEST_GUARD"), 0)
	right := &countingPIN{pin: userPIN}
	_, err := token.Open(context.Background(), token.Config{Kind: token.KindHSM, Module: modulePath, Label: os.Getenv("KEYWARD_TEST_LABEL"), PIN: right, PINGuard: g.Config()})
	if !errors.Is(err, token.ErrPINLocked) || right.n.Load() != 0 {
		t.Fatalf("fresh process: got %v after %d PIN reads, want ErrPINLocked and 0", err, right.n.Load())
	}
}

// TestLockoutConcurrent: 50 goroutines with a wrong PIN cause at most six
// C_Login calls in all.
func TestLockoutConcurrent(t *testing.T) {
	info := newTokenLabel(t)
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "g.db"), 0)
	wrong := &countingPIN{pin: "999999"}
	var wg sync.WaitGroup
	var locked, incorrect atomic.Int64
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := token.Open(context.Background(), token.Config{Kind: token.KindHSM, Module: modulePath, Label: info.Label, PIN: wrong, PINGuard: g.Config()})
			switch {
			case err == nil:
				tok.Close()
				t.Error("wrong PIN opened the token")
			case errors.Is(err, token.ErrPINLocked):
				locked.Add(1)
			case errors.Is(err, token.ErrPINIncorrect):
				incorrect.Add(1)
			default:
				t.Errorf("unexpected: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := wrong.n.Load(); n > 6 {
		t.Fatalf("%d C_Login calls for 50 concurrent wrong attempts, limit is 6", n)
	}
	if wrong.n.Load() != 6 || incorrect.Load() != 5 || locked.Load() != 45 {
		// 5 plain incorrect; the 6th is incorrect-and-locked, 44 refused locked.
		t.Fatalf("logins %d, incorrect %d, locked %d", wrong.n.Load(), incorrect.Load(), locked.Load())
	}
}

// TestGuardLimitConfig: the limit can be lowered, never raised above six.
func TestGuardLimitConfig(t *testing.T) {
	info := newTokenLabel(t)
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "g.db"), 3)
	for i := 1; i <= 3; i++ {
		_, err := openWith(t, info, g, "999999")
		if locked := errors.Is(err, token.ErrPINLocked); locked != (i == 3) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	st, err := token.OpenBoltStore(filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, bad := range []int{7, -1, 100} {
		if _, err := token.NewGuard(st, bad); !errors.Is(err, token.ErrBadLimit) {
			t.Fatalf("limit %d: %v", bad, err)
		}
	}
}
