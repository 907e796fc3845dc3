package token

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
)

// MaxPINAttempts is the most consecutive wrong PINs a token may take before
// Keyward locks it (R-TOK-5). A configured limit may be lower, never higher.
const MaxPINAttempts = 6

// Errors of the PIN guard. ErrPINLocked and ErrPINIncorrect are the
// pkcs11shim sentinels, so errors.Is works whichever layer said it.
var (
	ErrPINLocked    = pkcs11shim.ErrPINLocked
	ErrPINIncorrect = pkcs11shim.ErrPINIncorrect
	ErrBadLimit     = errors.New("token: PIN attempt limit must be between 1 and 6")
)

// PINState is what the guard keeps per token and user type.
type PINState struct {
	Failures    int       `json:"failures"`     // consecutive failed (or in-flight) verifications
	Locked      bool      `json:"locked"`       // set at the limit, or when the module says locked
	LockedAt    time.Time `json:"locked_at"`    // when it locked
	LastFailure time.Time `json:"last_failure"` // when the last wrong PIN was seen
}

// Event is a recorded PIN-guard event (lock, unlock, PIN change). It never
// holds a PIN.
type Event struct {
	At     time.Time `json:"at"`
	Token  string    `json:"token"`
	Kind   string    `json:"kind"` // "locked", "unlocked", "pin-changed"
	Detail string    `json:"detail,omitempty"`
}

// CounterStore keeps PIN states durably. Update must have committed to
// stable storage before it returns: the guard counts an attempt *before*
// C_Login, so a crash mid-attempt cannot give an attacker a free try.
// The bbolt implementation is BoltStore; keysvc reuses the interface.
type CounterStore interface {
	Get(id string) (PINState, error)
	Update(id string, fn func(st *PINState) error) error
	Record(ev Event) error
	Events(id string) ([]Event, error)
}

// Guard enforces the lockout (R-TOK-5) in front of every PIN verification
// Keyward makes, on modules that lock by themselves and on those that don't
// (SoftHSM 2.6.1 never does).
//
// # How it counts
//
// For each attempt, under a per-token lock so concurrent attempts are
// serialised: refuse if locked (without calling C_Login); durably add one
// failure; call C_Login once; on success reset to zero; on a wrong PIN keep
// the failure and lock at the limit; on the module's own CKR_PIN_LOCKED lock;
// on an answer that proves the PIN was never checked (token gone, session
// closed) take the failure back. The state survives restarts in the store.
// The per-PIN lock is the process's, not the Guard's: every Guard of the
// process (token.Open builds one per open token) serialises attempts on
// the same PIN.
type Guard struct {
	store CounterStore
	limit int
	now   func() time.Time
}

// pinLocks are the process's per-PIN locks (PINID → *sync.Mutex), shared
// by every Guard.
var pinLocks sync.Map

// NewGuard returns a guard with the given limit (0 means MaxPINAttempts).
func NewGuard(store CounterStore, limit int) (*Guard, error) {
	if limit == 0 {
		limit = MaxPINAttempts
	}
	if limit < 1 || limit > MaxPINAttempts {
		return nil, fmt.Errorf("%w (got %d)", ErrBadLimit, limit)
	}
	return &Guard{store: store, limit: limit, now: time.Now}, nil
}

// Limit returns the configured attempt limit.
func (g *Guard) Limit() int { return g.limit }

func (g *Guard) lockFor(id string) *sync.Mutex {
	m, _ := pinLocks.LoadOrStore(id, new(sync.Mutex))
	return m.(*sync.Mutex)
}

// State returns the stored state for id.
func (g *Guard) State(id string) (PINState, error) { return g.store.Get(id) }

// Attempt runs login (exactly one PIN verification) under the guard for
// the PIN identified by id (see PINID).
func (g *Guard) Attempt(id string, login func() error) error {
	l := g.lockFor(id)
	l.Lock()
	defer l.Unlock()
	// Check and count in one durable transaction, so that even two guards
	// sharing a store can never let an attempt past the limit.
	var locked bool
	var failures int
	err := g.store.Update(id, func(s *PINState) error {
		if s.Locked || s.Failures >= g.limit {
			locked, failures = true, s.Failures
			return nil
		}
		s.Failures++
		return nil
	})
	if err != nil {
		return fmt.Errorf("token: PIN guard cannot record the attempt, refusing to try the PIN: %w", err)
	}
	if locked {
		return fmt.Errorf("%w: %s after %d failed attempts; a security officer must unlock it", ErrPINLocked, id, failures)
	}
	lerr := login()
	switch {
	case lerr == nil:
		return g.store.Update(id, func(s *PINState) error { *s = PINState{}; return nil })
	case errors.Is(lerr, pkcs11shim.ErrPINLocked) && isSOID(id):
		// Not latched for the SO PIN: nothing above the SO can clear a
		// Keyward lock, and a module's SO lock may be temporary (a TPM's
		// dictionary-attack lockout answers CKR_PIN_LOCKED to every PIN
		// until it recovers). The PIN was refused unchecked: the attempt is
		// taken back. The module's own lock still refuses every try.
		g.takeBack(id)
		return fmt.Errorf("%w: %s: the module reports the SO PIN locked (on a TPM-backed module this may be its dictionary-attack lockout: wait for its recovery time or clear it with the lockout authorization, then retry)", ErrPINLocked, id)
	case errors.Is(lerr, pkcs11shim.ErrPINLocked):
		if err := g.lock(id, "the module reports the PIN locked"); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s: the module reports the PIN locked", ErrPINLocked, id)
	case errors.Is(lerr, pkcs11shim.ErrPINIncorrect):
		var left int
		err := g.store.Update(id, func(s *PINState) error {
			s.LastFailure = g.now()
			if s.Failures >= g.limit {
				s.Locked, s.LockedAt = true, g.now()
			}
			left = g.limit - s.Failures
			return nil
		})
		if err != nil {
			return err
		}
		if left <= 0 {
			_ = g.store.Record(Event{At: g.now(), Token: id, Kind: "locked", Detail: fmt.Sprintf("%d consecutive wrong PINs", g.limit)})
			return fmt.Errorf("%w; %w: %s is now locked", ErrPINIncorrect, ErrPINLocked, id)
		}
		if left == 1 {
			return fmt.Errorf("%w: 1 attempt left before %s locks", ErrPINIncorrect, id)
		}
		return fmt.Errorf("%w: %d attempts left before %s locks", ErrPINIncorrect, left, id)
	case notVerified(lerr):
		g.takeBack(id)
		return lerr
	default: // the PIN may or may not have been checked: the failure stays counted
		return lerr
	}
}

// takeBack removes the failure Attempt counted before a login that turned
// out not to check the PIN.
func (g *Guard) takeBack(id string) {
	_ = g.store.Update(id, func(s *PINState) error {
		if s.Failures > 0 {
			s.Failures--
		}
		return nil
	})
}

// notVerified reports errors that prove the PIN never reached the token.
func notVerified(err error) bool {
	return errors.Is(err, pkcs11shim.ErrTokenNotPresent) || errors.Is(err, pkcs11shim.ErrSessionClosed) ||
		errors.Is(err, pkcs11shim.ErrPINInvalid) || errors.Is(err, ErrPINSource)
}

// MarkLocked records that the module itself reports the PIN locked. It
// returns only a storage error.
func (g *Guard) MarkLocked(id, why string) error {
	l := g.lockFor(id)
	l.Lock()
	defer l.Unlock()
	return g.lock(id, why)
}

func (g *Guard) lock(id, why string) error {
	if err := g.store.Update(id, func(s *PINState) error {
		if !s.Locked {
			s.Locked, s.LockedAt = true, g.now()
		}
		return nil
	}); err != nil {
		return err
	}
	return g.store.Record(Event{At: g.now(), Token: id, Kind: "locked", Detail: why})
}

// Reset clears the state for id after a security officer's unlock and
// records who did it.
func (g *Guard) Reset(id, detail string) error {
	l := g.lockFor(id)
	l.Lock()
	defer l.Unlock()
	if err := g.store.Update(id, func(s *PINState) error { *s = PINState{}; return nil }); err != nil {
		return err
	}
	return g.store.Record(Event{At: g.now(), Token: id, Kind: "unlocked", Detail: detail})
}

// isSOID reports whether id (from PINID) names an SO PIN.
func isSOID(id string) bool { return strings.HasSuffix(id, "/so") }

// PINID names the counter of one PIN: the token's manufacturer, model and
// serial (which survive slot renumbering) and the user type.
func PINID(ti pkcs11shim.TokenInfo, ut pkcs11shim.UserType) string {
	who := "user"
	if ut == pkcs11shim.UserSO {
		who = "so"
	}
	esc := strings.NewReplacer("%", "%25", "/", "%2F").Replace // a "/" inside a field must not make two tokens share a counter
	return fmt.Sprintf("%s/%s/%s/%s", esc(ti.Manufacturer), esc(ti.Model), esc(ti.Serial), who)
}
