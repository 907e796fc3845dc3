package token_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// Every test runs the Guard over a real BoltStore on a file in t.TempDir().

var testToken = pkcs11shim.TokenInfo{
	Label:        "bank",
	Serial:       "5f3c9a1b2d4e6f70",
	Manufacturer: "SoftHSM project",
	Model:        "SoftHSM v2",
}

var (
	userID = token.PINID(testToken, pkcs11shim.UserNormal)
	soID   = token.PINID(testToken, pkcs11shim.UserSO)
)

// ckr returns the error the shim returns for a C_Login answering code.
func ckr(code uint) error { return &pkcs11shim.CKRError{Op: "C_Login", Code: code} }

func wrongPIN() error   { return ckr(pkcs11.CKR_PIN_INCORRECT) }
func rightPIN() error   { return nil }
func moduleLock() error { return ckr(pkcs11.CKR_PIN_LOCKED) }

func storePath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "pin-guard.db")
}

// openStore opens the bbolt file at path; it is closed at the end of the
// test (closing twice is harmless).
func openStore(t *testing.T, path string) *token.BoltStore {
	t.Helper()
	s, err := token.OpenBoltStore(path)
	if err != nil {
		t.Fatalf("OpenBoltStore: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustGuard(t *testing.T, s token.CounterStore, limit int) *token.Guard {
	t.Helper()
	g, err := token.NewGuard(s, limit)
	if err != nil {
		t.Fatalf("NewGuard(%d): %v", limit, err)
	}
	return g
}

// newGuard returns a guard over a fresh store, and the store's path.
func newGuard(t *testing.T, limit int) (*token.Guard, *token.BoltStore, string) {
	t.Helper()
	path := storePath(t)
	s := openStore(t, path)
	return mustGuard(t, s, limit), s, path
}

func state(t *testing.T, g *token.Guard, id string) token.PINState {
	t.Helper()
	st, err := g.State(id)
	if err != nil {
		t.Fatalf("State(%q): %v", id, err)
	}
	return st
}

func eventKinds(t *testing.T, s *token.BoltStore, id string) []string {
	t.Helper()
	evs, err := s.Events(id)
	if err != nil {
		t.Fatalf("Events(%q): %v", id, err)
	}
	kinds := make([]string, 0, len(evs))
	for _, ev := range evs {
		kinds = append(kinds, ev.Kind)
	}
	return kinds
}

// counting wraps login so the test knows how often the guard called it.
func counting(n *atomic.Int32, login func() error) func() error {
	return func() error {
		n.Add(1)
		return login()
	}
}

// lockByWrongPINs makes limit wrong attempts on id and checks they all
// went through to the login function.
func lockByWrongPINs(t *testing.T, g *token.Guard, id string) {
	t.Helper()
	var calls atomic.Int32
	for range g.Limit() {
		if err := g.Attempt(id, counting(&calls, wrongPIN)); !errors.Is(err, token.ErrPINIncorrect) {
			t.Fatalf("wrong-PIN Attempt = %v, want ErrPINIncorrect", err)
		}
	}
	if got := int(calls.Load()); got != g.Limit() {
		t.Fatalf("login called %d times, want %d", got, g.Limit())
	}
	if st := state(t, g, id); !st.Locked {
		t.Fatalf("after %d wrong PINs state = %+v, want locked", g.Limit(), st)
	}
}

// assertRefused checks that Attempt on id is refused as locked without
// calling the login function.
func assertRefused(t *testing.T, g *token.Guard, id string) {
	t.Helper()
	var calls atomic.Int32
	err := g.Attempt(id, counting(&calls, rightPIN))
	if !errors.Is(err, token.ErrPINLocked) {
		t.Fatalf("Attempt on locked PIN = %v, want ErrPINLocked", err)
	}
	if errors.Is(err, token.ErrPINIncorrect) {
		t.Errorf("refusal %q also matches ErrPINIncorrect; no PIN was tried", err)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("login called %d times on a locked PIN, want 0", n)
	}
}

func TestGuardSentinelsAreTheShims(t *testing.T) {
	if token.ErrPINLocked != pkcs11shim.ErrPINLocked || token.ErrPINIncorrect != pkcs11shim.ErrPINIncorrect {
		t.Fatal("token.ErrPINLocked/ErrPINIncorrect must be the pkcs11shim sentinels")
	}
}

func TestGuardCountsWrongPINsAndLocks(t *testing.T) {
	for _, tc := range []struct {
		limit, effective int
	}{{0, token.MaxPINAttempts}, {1, 1}, {3, 3}, {6, 6}} {
		t.Run(fmt.Sprintf("limit=%d", tc.limit), func(t *testing.T) {
			g, s, _ := newGuard(t, tc.limit)
			if g.Limit() != tc.effective {
				t.Fatalf("Limit() = %d, want %d", g.Limit(), tc.effective)
			}
			var calls atomic.Int32
			for i := 1; i < tc.effective; i++ {
				err := g.Attempt(userID, counting(&calls, wrongPIN))
				if !errors.Is(err, token.ErrPINIncorrect) || errors.Is(err, token.ErrPINLocked) {
					t.Fatalf("wrong PIN #%d: err = %v, want ErrPINIncorrect and not ErrPINLocked", i, err)
				}
				if want := attemptsLeft(tc.effective - i); !strings.Contains(err.Error(), want) {
					t.Errorf("wrong PIN #%d: err = %q, want it to say %q", i, err, want)
				}
				st := state(t, g, userID)
				if st.Failures != i || st.Locked || st.LastFailure.IsZero() {
					t.Fatalf("after wrong PIN #%d: state = %+v, want %d failures, unlocked, LastFailure set", i, st, i)
				}
			}
			if k := eventKinds(t, s, userID); len(k) != 0 {
				t.Fatalf("events before the lock = %v, want none", k)
			}

			// The last allowed wrong PIN is reported as both.
			err := g.Attempt(userID, counting(&calls, wrongPIN))
			if !errors.Is(err, token.ErrPINIncorrect) || !errors.Is(err, token.ErrPINLocked) {
				t.Fatalf("wrong PIN #%d: err = %v, want ErrPINIncorrect and ErrPINLocked", tc.effective, err)
			}
			st := state(t, g, userID)
			if st.Failures != tc.effective || !st.Locked || st.LockedAt.IsZero() {
				t.Fatalf("after the lock: state = %+v, want %d failures, locked, LockedAt set", st, tc.effective)
			}
			evs, err := s.Events(userID)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 || evs[0].Kind != "locked" || evs[0].Token != userID || evs[0].At.IsZero() {
				t.Fatalf("events = %+v, want one locked event for %q", evs, userID)
			}
			if want := fmt.Sprintf("%d consecutive wrong PINs", tc.effective); evs[0].Detail != want {
				t.Errorf("lock event detail = %q, want %q", evs[0].Detail, want)
			}
			if got := int(calls.Load()); got != tc.effective {
				t.Fatalf("login called %d times, want %d", got, tc.effective)
			}

			// Locked: refused without calling login, even with the right PIN,
			// and the refusal does not count.
			for range 3 {
				assertRefused(t, g, userID)
			}
			if st := state(t, g, userID); st.Failures != tc.effective || !st.Locked {
				t.Fatalf("after refusals: state = %+v, want %d failures, locked", st, tc.effective)
			}
			if k := eventKinds(t, s, userID); len(k) != 1 {
				t.Fatalf("refusals recorded events: %v", k)
			}
		})
	}
}

func TestGuardSuccessResets(t *testing.T) {
	g, _, _ := newGuard(t, 0)
	for range token.MaxPINAttempts - 1 {
		if err := g.Attempt(userID, wrongPIN); !errors.Is(err, token.ErrPINIncorrect) {
			t.Fatalf("wrong PIN: %v", err)
		}
	}
	if err := g.Attempt(userID, rightPIN); err != nil {
		t.Fatalf("right PIN: %v", err)
	}
	st := state(t, g, userID)
	if st.Failures != 0 || st.Locked || !st.LastFailure.IsZero() || !st.LockedAt.IsZero() {
		t.Fatalf("after success: state = %+v, want zero", st)
	}
	// The count starts again from zero: limit-1 wrong PINs do not lock...
	for i := 1; i < token.MaxPINAttempts; i++ {
		err := g.Attempt(userID, wrongPIN)
		if !errors.Is(err, token.ErrPINIncorrect) || errors.Is(err, token.ErrPINLocked) {
			t.Fatalf("wrong PIN #%d after reset: %v, want ErrPINIncorrect only", i, err)
		}
		if want := attemptsLeft(token.MaxPINAttempts - i); !strings.Contains(err.Error(), want) {
			t.Fatalf("wrong PIN #%d after reset: %q, want %q", i, err, want)
		}
	}
	// ...and the limit-th does.
	if err := g.Attempt(userID, wrongPIN); !errors.Is(err, token.ErrPINLocked) {
		t.Fatalf("wrong PIN #%d after reset: %v, want ErrPINLocked", token.MaxPINAttempts, err)
	}
}

// The attempt is committed before login runs: a read view taken from inside
// the login function already counts it.
func TestGuardCountsBeforeLogin(t *testing.T) {
	g, _, _ := newGuard(t, 0)
	for i, login := range []func() error{wrongPIN, wrongPIN, rightPIN, wrongPIN, moduleLock} {
		before := state(t, g, userID).Failures
		var inside token.PINState
		var insideErr error
		ran := false
		_ = g.Attempt(userID, func() error {
			ran = true
			inside, insideErr = g.State(userID)
			return login()
		})
		if !ran {
			t.Fatalf("attempt %d: login not called", i)
		}
		if insideErr != nil {
			t.Fatalf("attempt %d: State inside login: %v", i, insideErr)
		}
		if inside.Failures != before+1 {
			t.Fatalf("attempt %d: failures seen inside login = %d, want %d (counted before C_Login)", i, inside.Failures, before+1)
		}
	}
}

// A login function that panics (the process dies mid-C_Login) leaves the
// attempt counted on disk, and the guard's per-PIN lock released.
func TestGuardPanicInLoginKeepsCount(t *testing.T) {
	path := storePath(t)
	s := openStore(t, path)
	g := mustGuard(t, s, 0)
	if err := g.Attempt(userID, wrongPIN); !errors.Is(err, token.ErrPINIncorrect) {
		t.Fatal(err)
	}

	func() {
		defer func() {
			if r := recover(); r != "simulated crash in C_Login" {
				t.Fatalf("recovered %v, want the simulated crash", r)
			}
		}()
		_ = g.Attempt(userID, func() error { panic("simulated crash in C_Login") })
		t.Fatal("Attempt returned after its login panicked")
	}()

	// The per-PIN lock was released: another attempt proceeds.
	done := make(chan error, 1)
	go func() { done <- g.Attempt(userID, wrongPIN) }()
	select {
	case err := <-done:
		if want := attemptsLeft(token.MaxPINAttempts - 3); !errors.Is(err, token.ErrPINIncorrect) || !strings.Contains(err.Error(), want) {
			t.Fatalf("attempt after the panic = %v, want ErrPINIncorrect with %q", err, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Attempt blocked after a login panicked: per-PIN lock not released")
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, path)
	g2 := mustGuard(t, s2, 0)
	if st := state(t, g2, userID); st.Failures != 3 {
		t.Fatalf("after reopening: failures = %d, want 3 (the panicked attempt stays counted)", st.Failures)
	}
}

const crashEnv = "KEYWARD_TEST_GUARD_CRASH_STORE"

// A real crash: a child process exits inside the login function. The
// attempt it started is on disk when the parent reopens the file.
func TestGuardProcessCrashKeepsCount(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		s, err := token.OpenBoltStore(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		g, err := token.NewGuard(s, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		_ = g.Attempt(userID, func() error {
			os.Exit(3) // dies mid-C_Login: no defers, no cleanup
			return nil
		})
		os.Exit(4)
	}

	path := storePath(t)
	s := openStore(t, path)
	g := mustGuard(t, s, 0)
	if err := g.Attempt(userID, wrongPIN); !errors.Is(err, token.ErrPINIncorrect) {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // release the file lock for the child
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestGuardProcessCrashKeepsCount$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("child: err = %v, want exit status 3; output:\n%s", err, out)
	}

	g2 := mustGuard(t, openStore(t, path), 0)
	st := state(t, g2, userID)
	if st.Failures != 2 || st.Locked {
		t.Fatalf("after the crash: state = %+v, want 2 failures (the crashed attempt counted), unlocked", st)
	}
}

func TestGuardSurvivesRestart(t *testing.T) {
	t.Run("partial count", func(t *testing.T) {
		path := storePath(t)
		s := openStore(t, path)
		g := mustGuard(t, s, 0)
		for range 3 {
			if err := g.Attempt(userID, wrongPIN); !errors.Is(err, token.ErrPINIncorrect) {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		g = mustGuard(t, openStore(t, path), 0)
		for i := 4; i < token.MaxPINAttempts; i++ {
			err := g.Attempt(userID, wrongPIN)
			if want := attemptsLeft(token.MaxPINAttempts - i); errors.Is(err, token.ErrPINLocked) || !strings.Contains(err.Error(), want) {
				t.Fatalf("wrong PIN #%d after restart: %v, want %q", i, err, want)
			}
		}
		if err := g.Attempt(userID, wrongPIN); !errors.Is(err, token.ErrPINLocked) {
			t.Fatalf("wrong PIN #%d (3 before the restart): %v, want ErrPINLocked", token.MaxPINAttempts, err)
		}
	})

	t.Run("locked", func(t *testing.T) {
		path := storePath(t)
		s := openStore(t, path)
		lockByWrongPINs(t, mustGuard(t, s, 0), userID)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		s2 := openStore(t, path)
		g := mustGuard(t, s2, 0)
		st := state(t, g, userID)
		if !st.Locked || st.Failures != token.MaxPINAttempts || st.LockedAt.IsZero() {
			t.Fatalf("after restart: state = %+v, want locked with %d failures", st, token.MaxPINAttempts)
		}
		assertRefused(t, g, userID)
		if k := eventKinds(t, s2, userID); len(k) != 1 || k[0] != "locked" {
			t.Fatalf("events after restart = %v, want [locked]", k)
		}
		// The other PIN of the same token is unaffected.
		if err := g.Attempt(soID, rightPIN); err != nil {
			t.Fatalf("SO PIN after user lock: %v", err)
		}
	})
}

// Errors proving the PIN never reached the token take the attempt back;
// any other error keeps it counted.
func TestGuardNotVerifiedTakesAttemptBack(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		sentinel  error // also matched, if not nil
		takenBack bool
	}{
		{"token not present", ckr(pkcs11.CKR_TOKEN_NOT_PRESENT), pkcs11shim.ErrTokenNotPresent, true},
		{"device removed", ckr(pkcs11.CKR_DEVICE_REMOVED), pkcs11shim.ErrTokenNotPresent, true},
		{"token removed, wrapped", fmt.Errorf("pool: login: %w", ckr(pkcs11.CKR_DEVICE_REMOVED)), pkcs11shim.ErrTokenNotPresent, true},
		{"session closed", ckr(pkcs11.CKR_SESSION_CLOSED), pkcs11shim.ErrSessionClosed, true},
		{"session handle invalid", ckr(pkcs11.CKR_SESSION_HANDLE_INVALID), pkcs11shim.ErrSessionClosed, true},
		{"bare session sentinel", fmt.Errorf("%w", pkcs11shim.ErrSessionClosed), pkcs11shim.ErrSessionClosed, true},
		{"PIN invalid", ckr(pkcs11.CKR_PIN_INVALID), pkcs11shim.ErrPINInvalid, true},
		{"PIN length range", ckr(pkcs11.CKR_PIN_LEN_RANGE), pkcs11shim.ErrPINInvalid, true},
		{"PIN source", fmt.Errorf("%w: environment variable %q is not set", token.ErrPINSource, "KEYWARD_PIN"), token.ErrPINSource, true},

		{"general error", ckr(pkcs11.CKR_GENERAL_ERROR), nil, false},
		{"function failed", ckr(pkcs11.CKR_FUNCTION_FAILED), nil, false},
		{"not logged in", ckr(pkcs11.CKR_USER_NOT_LOGGED_IN), pkcs11shim.ErrNotLoggedIn, false},
		{"plain error", errors.New("hsm: connection reset by peer"), nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, _, _ := newGuard(t, 0)
			if err := g.Attempt(userID, wrongPIN); !errors.Is(err, token.ErrPINIncorrect) {
				t.Fatal(err)
			}
			var inside int
			err := g.Attempt(userID, func() error {
				inside = state(t, g, userID).Failures
				return tc.err
			})
			if inside != 2 {
				t.Fatalf("failures inside login = %d, want 2", inside)
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("Attempt = %v, want the login error %v passed through", err, tc.err)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Fatalf("Attempt = %v, want errors.Is %v", err, tc.sentinel)
			}
			if errors.Is(err, token.ErrPINIncorrect) || errors.Is(err, token.ErrPINLocked) {
				t.Fatalf("Attempt = %v, must not be reported as a wrong or locked PIN", err)
			}
			want := 2
			if tc.takenBack {
				want = 1
			}
			if st := state(t, g, userID); st.Failures != want || st.Locked {
				t.Fatalf("after: state = %+v, want %d failures, unlocked", st, want)
			}
		})
	}

	t.Run("taken back from zero stays zero", func(t *testing.T) {
		g, _, _ := newGuard(t, 0)
		for range 3 {
			if err := g.Attempt(userID, func() error { return ckr(pkcs11.CKR_TOKEN_NOT_PRESENT) }); !errors.Is(err, pkcs11shim.ErrTokenNotPresent) {
				t.Fatal(err)
			}
		}
		if st := state(t, g, userID); st.Failures != 0 {
			t.Fatalf("failures = %d, want 0", st.Failures)
		}
	})

	t.Run("kept unclassified attempts count towards the limit", func(t *testing.T) {
		g, _, _ := newGuard(t, 0)
		for range token.MaxPINAttempts - 1 {
			if err := g.Attempt(userID, wrongPIN); !errors.Is(err, token.ErrPINIncorrect) {
				t.Fatal(err)
			}
		}
		unclassified := ckr(pkcs11.CKR_GENERAL_ERROR)
		if err := g.Attempt(userID, func() error { return unclassified }); !errors.Is(err, unclassified) {
			t.Fatal(err)
		}
		assertRefused(t, g, userID)
	})

	t.Run("taken-back attempts never lock", func(t *testing.T) {
		g, _, _ := newGuard(t, 0)
		for range 3 * token.MaxPINAttempts {
			if err := g.Attempt(userID, func() error { return ckr(pkcs11.CKR_SESSION_HANDLE_INVALID) }); !errors.Is(err, pkcs11shim.ErrSessionClosed) {
				t.Fatal(err)
			}
		}
		if err := g.Attempt(userID, rightPIN); err != nil {
			t.Fatalf("right PIN after session errors: %v", err)
		}
	})
}

func TestGuardModuleLock(t *testing.T) {
	t.Run("CKR_PIN_LOCKED from login", func(t *testing.T) {
		g, s, _ := newGuard(t, 0)
		if err := g.Attempt(userID, wrongPIN); !errors.Is(err, token.ErrPINIncorrect) {
			t.Fatal(err)
		}
		err := g.Attempt(userID, moduleLock)
		if !errors.Is(err, token.ErrPINLocked) || errors.Is(err, token.ErrPINIncorrect) {
			t.Fatalf("Attempt = %v, want ErrPINLocked only", err)
		}
		st := state(t, g, userID)
		if !st.Locked || st.LockedAt.IsZero() {
			t.Fatalf("state = %+v, want locked", st)
		}
		evs, err := s.Events(userID)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].Kind != "locked" || evs[0].Token != userID || !strings.Contains(evs[0].Detail, "module") {
			t.Fatalf("events = %+v, want one locked event naming the module", evs)
		}
		assertRefused(t, g, userID)
	})

	// A module's SO lock is not latched (a TPM's dictionary-attack lockout
	// answers CKR_PIN_LOCKED to the SO PIN too, until it recovers): the
	// attempt is taken back and the next one reaches the module again.
	t.Run("CKR_PIN_LOCKED for the SO PIN", func(t *testing.T) {
		g, _, _ := newGuard(t, 0)
		if err := g.Attempt(soID, wrongPIN); !errors.Is(err, token.ErrPINIncorrect) {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			if err := g.Attempt(soID, moduleLock); !errors.Is(err, token.ErrPINLocked) || !strings.Contains(err.Error(), "dictionary-attack lockout") {
				t.Fatalf("Attempt %d = %v, want ErrPINLocked naming a TPM lockout", i, err)
			}
		}
		if st := state(t, g, soID); st.Locked || st.Failures != 1 {
			t.Fatalf("state = %+v, want not locked, the one wrong PIN still counted", st)
		}
		if err := g.Attempt(soID, rightPIN); err != nil {
			t.Fatalf("SO PIN after the module's lock ended: %v", err)
		}
	})

	t.Run("MarkLocked", func(t *testing.T) {
		g, s, _ := newGuard(t, 0)
		const why = "the module reports CKF_USER_PIN_LOCKED"
		// MarkLocked reports the lock it recorded as an ErrPINLocked error.
		if err := g.MarkLocked(userID, why); err != nil && !errors.Is(err, token.ErrPINLocked) {
			t.Fatalf("MarkLocked = %v", err)
		}
		st := state(t, g, userID)
		if !st.Locked || st.LockedAt.IsZero() || st.Failures != 0 {
			t.Fatalf("state = %+v, want locked with no failures", st)
		}
		evs, err := s.Events(userID)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].Kind != "locked" || evs[0].Detail != why {
			t.Fatalf("events = %+v, want one locked event with detail %q", evs, why)
		}
		assertRefused(t, g, userID)
		if err := g.Attempt(soID, rightPIN); err != nil {
			t.Fatalf("SO PIN after MarkLocked(user): %v", err)
		}
	})
}

func TestGuardResetAndEvents(t *testing.T) {
	g, s, _ := newGuard(t, 0)
	lockByWrongPINs(t, g, userID)
	const detail = "user PIN reset by security officer alice"
	if err := g.Reset(userID, detail); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	st := state(t, g, userID)
	if st.Failures != 0 || st.Locked || !st.LockedAt.IsZero() || !st.LastFailure.IsZero() {
		t.Fatalf("after Reset: state = %+v, want zero", st)
	}
	evs, err := s.Events(userID)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Kind != "locked" || evs[1].Kind != "unlocked" {
		t.Fatalf("events = %+v, want [locked unlocked] in that order", evs)
	}
	if evs[1].Token != userID || evs[1].Detail != detail || !strings.Contains(evs[1].Detail, "alice") {
		t.Fatalf("unlock event = %+v, want token %q and detail naming the officer", evs[1], userID)
	}
	if evs[1].At.IsZero() || evs[1].At.Before(evs[0].At) {
		t.Fatalf("event times %v, %v: want set and in order", evs[0].At, evs[1].At)
	}

	// Usable again, and the count restarts.
	var calls atomic.Int32
	if err := g.Attempt(userID, counting(&calls, wrongPIN)); !errors.Is(err, token.ErrPINIncorrect) || errors.Is(err, token.ErrPINLocked) || calls.Load() != 1 {
		t.Fatalf("after Reset: Attempt = %v (login called %d times), want one counted wrong PIN", err, calls.Load())
	}

	// Lock and unlock again: events accumulate oldest first.
	for range token.MaxPINAttempts - 1 {
		_ = g.Attempt(userID, wrongPIN)
	}
	if st := state(t, g, userID); !st.Locked {
		t.Fatalf("state = %+v, want locked again", st)
	}
	if err := g.Reset(userID, "user PIN reset by security officer bob"); err != nil {
		t.Fatal(err)
	}
	evs, err = s.Events(userID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		got = append(got, ev.Kind+":"+ev.Detail)
	}
	want := []string{
		"locked:6 consecutive wrong PINs",
		"unlocked:" + detail,
		"locked:6 consecutive wrong PINs",
		"unlocked:user PIN reset by security officer bob",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events =\n%q\nwant\n%q", got, want)
	}

	// Events are per PIN.
	if k := eventKinds(t, s, soID); len(k) != 0 {
		t.Fatalf("SO events = %v, want none", k)
	}
}

// Concurrent attempts on one PIN are serialised and never exceed the limit.
func TestGuardConcurrentAttemptsOneID(t *testing.T) {
	g, _, _ := newGuard(t, 0)
	var calls, inFlight, maxInFlight atomic.Int32
	login := func() error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		calls.Add(1)
		time.Sleep(time.Millisecond) // widen the window for a racing attempt
		return wrongPIN()
	}

	const n = 100
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = g.Attempt(userID, login)
		})
	}
	close(start)
	wg.Wait()

	if c := int(calls.Load()); c > g.Limit() {
		t.Fatalf("login ran %d times under %d concurrent attempts, want at most %d", c, n, g.Limit())
	} else if c != g.Limit() {
		t.Fatalf("login ran %d times, want exactly %d", c, g.Limit())
	}
	if m := maxInFlight.Load(); m != 1 {
		t.Fatalf("%d logins on one PIN ran at once, want 1", m)
	}
	var incorrect, lockedNow, refused int
	for i, err := range errs {
		switch inc, lck := errors.Is(err, token.ErrPINIncorrect), errors.Is(err, token.ErrPINLocked); {
		case inc && !lck:
			incorrect++
		case inc && lck:
			lockedNow++
		case lck:
			refused++
		default:
			t.Fatalf("goroutine %d: unexpected error %v", i, err)
		}
	}
	if incorrect != g.Limit()-1 || lockedNow != 1 || refused != n-g.Limit() {
		t.Fatalf("results: %d wrong, %d wrong-and-locked, %d refused; want %d, 1, %d", incorrect, lockedNow, refused, g.Limit()-1, n-g.Limit())
	}
	if st := state(t, g, userID); st.Failures != g.Limit() || !st.Locked {
		t.Fatalf("state = %+v, want locked at %d", st, g.Limit())
	}
}

// An attempt in flight on one PIN does not hold up another PIN.
func TestGuardSeparateIDsDoNotBlock(t *testing.T) {
	g, _, _ := newGuard(t, 0)
	aIn, release := make(chan struct{}), make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	aDone := make(chan error, 1)
	go func() {
		aDone <- g.Attempt(userID, func() error {
			close(aIn)
			<-release
			return nil
		})
	}()
	<-aIn

	bDone := make(chan error, 1)
	go func() { bDone <- g.Attempt(soID, wrongPIN) }()
	select {
	case err := <-bDone:
		if !errors.Is(err, token.ErrPINIncorrect) {
			t.Fatalf("SO attempt = %v, want ErrPINIncorrect", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an attempt on the SO PIN blocked while a user-PIN login was in flight")
	}
	close(release)
	if err := <-aDone; err != nil {
		t.Fatalf("user attempt: %v", err)
	}
}

// Two PINs hammered concurrently each get their own limit.
func TestGuardConcurrentAttemptsTwoIDs(t *testing.T) {
	g, _, _ := newGuard(t, 0)
	ids := []string{userID, soID}
	calls := make([]atomic.Int32, len(ids))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for k, id := range ids {
		for range 50 {
			wg.Go(func() {
				<-start
				err := g.Attempt(id, counting(&calls[k], wrongPIN))
				if !errors.Is(err, token.ErrPINIncorrect) && !errors.Is(err, token.ErrPINLocked) {
					t.Errorf("%s: unexpected error %v", id, err)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	for k, id := range ids {
		if c := int(calls[k].Load()); c != g.Limit() {
			t.Errorf("%s: login ran %d times, want %d", id, c, g.Limit())
		}
		if st := state(t, g, id); st.Failures != g.Limit() || !st.Locked {
			t.Errorf("%s: state = %+v, want locked at %d", id, st, g.Limit())
		}
	}
}

func TestNewGuardLimits(t *testing.T) {
	s := openStore(t, storePath(t))
	tests := []struct {
		limit   int
		want    int
		wantErr error
	}{
		{0, token.MaxPINAttempts, nil},
		{1, 1, nil},
		{2, 2, nil},
		{3, 3, nil},
		{4, 4, nil},
		{5, 5, nil},
		{6, 6, nil},
		{7, 0, token.ErrBadLimit},
		{100, 0, token.ErrBadLimit},
		{-1, 0, token.ErrBadLimit},
	}
	for _, tc := range tests {
		g, err := token.NewGuard(s, tc.limit)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) || g != nil {
				t.Errorf("NewGuard(%d) = %v, %v; want nil, %v", tc.limit, g, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("NewGuard(%d): %v", tc.limit, err)
			continue
		}
		if g.Limit() != tc.want {
			t.Errorf("NewGuard(%d).Limit() = %d, want %d", tc.limit, g.Limit(), tc.want)
		}
	}
	if token.MaxPINAttempts != 6 {
		t.Errorf("MaxPINAttempts = %d, want 6 (R-TOK-5)", token.MaxPINAttempts)
	}
}

func TestGuardFailsClosedWithoutStore(t *testing.T) {
	g, s, _ := newGuard(t, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	err := g.Attempt(userID, counting(&calls, rightPIN))
	if !errors.Is(err, berrors.ErrDatabaseNotOpen) {
		t.Fatalf("Attempt with a closed store = %v, want it to wrap ErrDatabaseNotOpen", err)
	}
	if calls.Load() != 0 {
		t.Fatal("login called although the attempt could not be counted")
	}
}

func TestPINID(t *testing.T) {
	user := token.PINID(testToken, pkcs11shim.UserNormal)
	so := token.PINID(testToken, pkcs11shim.UserSO)
	if user == so {
		t.Fatalf("user and SO PINs share the id %q", user)
	}
	for _, id := range []string{user, so} {
		if !strings.Contains(id, testToken.Serial) {
			t.Errorf("PINID %q does not contain the serial %q", id, testToken.Serial)
		}
	}
	// Per-operation re-authentication verifies the user PIN: same counter.
	if ctx := token.PINID(testToken, pkcs11shim.UserContextSpecific); ctx != user {
		t.Errorf("context-specific id %q, want the user id %q", ctx, user)
	}
	// The id follows the token, not where it sits or what it is called.
	moved := testToken
	moved.SlotID, moved.Label, moved.SlotDescription = 7, "renamed", "other reader"
	if got := token.PINID(moved, pkcs11shim.UserNormal); got != user {
		t.Errorf("PINID changed with slot/label: %q, want %q", got, user)
	}
	// Another token, another counter.
	other := testToken
	other.Serial = "0000000000000001"
	if got := token.PINID(other, pkcs11shim.UserNormal); got == user {
		t.Errorf("two serials share the id %q", got)
	}
}

// No error the guard returns contains the PIN. The login function reads
// the PIN from a real file source, as token.Token does.
func TestGuardErrorsNeverContainPIN(t *testing.T) {
	const (
		pin     = "S3cr3t-PIN-xyz"
		realPIN = "C0rrect-PIN-abc"
	)
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := token.FilePIN{Path: pinFile}
	login := func(answer func([]byte) error) func() error {
		return func() error {
			p, err := src.PIN()
			if err != nil {
				return err
			}
			defer token.Wipe(p)
			return answer(p)
		}
	}
	check := func(p []byte) error {
		if !bytes.Equal(p, []byte(realPIN)) {
			return fmt.Errorf("pkcs11shim: login: %w", ckr(pkcs11.CKR_PIN_INCORRECT))
		}
		return nil
	}

	g, _, _ := newGuard(t, 0)
	var errs []error
	var loginCalls int
	counted := func(f func() error) func() error {
		return func() error { loginCalls++; return f() }
	}
	// Wrong PINs up to and past the lock.
	for range token.MaxPINAttempts + 2 {
		errs = append(errs, g.Attempt(userID, counted(login(check))))
	}
	if loginCalls != token.MaxPINAttempts {
		t.Fatalf("login called %d times, want %d", loginCalls, token.MaxPINAttempts)
	}
	// Module lock, unreadable source, token gone, unclassified, SO PIN.
	errs = append(errs,
		g.Attempt(soID, login(func([]byte) error { return ckr(pkcs11.CKR_PIN_LOCKED) })),
		g.MarkLocked(soID, "the module reports CKF_SO_PIN_LOCKED"),
	)
	if err := g.Reset(userID, "test"); err != nil {
		t.Fatal(err)
	}
	errs = append(errs,
		g.Attempt(userID, login(func([]byte) error { return ckr(pkcs11.CKR_TOKEN_NOT_PRESENT) })),
		g.Attempt(userID, login(func([]byte) error { return ckr(pkcs11.CKR_GENERAL_ERROR) })),
	)
	if err := os.Chmod(pinFile, 0o644); err != nil {
		t.Fatal(err)
	}
	srcErr := g.Attempt(userID, login(check))
	if !errors.Is(srcErr, token.ErrPINSource) {
		t.Fatalf("Attempt with a world-readable PIN file = %v, want ErrPINSource", srcErr)
	}
	errs = append(errs, srcErr)

	nonNil := 0
	for i, err := range errs {
		if err == nil {
			continue
		}
		nonNil++
		for _, secret := range []string{pin, realPIN} {
			if strings.Contains(err.Error(), secret) || strings.Contains(fmt.Sprintf("%+v", err), secret) {
				t.Errorf("error #%d %q contains a PIN", i, err)
			}
		}
	}
	if nonNil < len(errs)-1 {
		t.Fatalf("only %d of %d attempts failed; the test exercised fewer error paths than intended", nonNil, len(errs))
	}
}

// attemptsLeft is the guard's wording for n remaining attempts.
func attemptsLeft(n int) string {
	if n == 1 {
		return "1 attempt left"
	}
	return fmt.Sprintf("%d attempts left", n)
}
