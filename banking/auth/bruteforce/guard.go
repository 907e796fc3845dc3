package bruteforce

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/banking/auth"
	"github.com/keyward/keyward/banking/internal/kv"
	"github.com/keyward/keyward/banking/store"
)

// Defaults (R-AUTH-3).
const (
	DefaultAccountLimit  = 5
	DefaultAccountLock   = 15 * time.Minute
	DefaultAccountWindow = 24 * time.Hour
	DefaultIPLimit       = 20
	DefaultIPWindow      = 10 * time.Minute
	DefaultIPLock        = 15 * time.Minute
)

// Scopes of a lock.
const (
	ScopeAccount = "account"
	ScopeIP      = "ip"
)

// Errors. A refused Begin returns a *LockedError, which matches ErrLocked
// and one of ErrAccountLocked or ErrIPLocked.
var (
	ErrLocked        = errors.New("bruteforce: temporarily locked after too many failed logins")
	ErrAccountLocked = errors.New("bruteforce: account temporarily locked after too many failed logins")
	ErrIPLocked      = errors.New("bruteforce: source address temporarily locked after too many failed logins")
	// ErrCaptchaRequired refuses an attempt without a solved captcha
	// after Config.CaptchaAfter failures (BeginHuman).
	ErrCaptchaRequired = errors.New("bruteforce: a captcha is required after repeated failed logins")
	ErrAttemptSettled  = errors.New("bruteforce: attempt already settled")
	ErrBadInput        = errors.New("bruteforce: invalid account or address")
	ErrConfig          = errors.New("bruteforce: bad configuration")
)

// LockedError says what is locked and until when.
type LockedError struct {
	Scope string    // ScopeAccount or ScopeIP
	Until time.Time // the lock ends then (the next Begin after it starts afresh)
}

func (e *LockedError) Error() string {
	if e.Scope == ScopeIP {
		return ErrIPLocked.Error()
	}
	return ErrAccountLocked.Error()
}

// Is matches ErrLocked and the scope's sentinel.
func (e *LockedError) Is(target error) bool {
	return target == ErrLocked ||
		(e.Scope == ScopeAccount && target == ErrAccountLocked) ||
		(e.Scope == ScopeIP && target == ErrIPLocked)
}

// Config configures a Guard. Zero values mean the defaults.
type Config struct {
	DB store.DB // buckets "auth-guard-accounts" and "auth-guard-ips"

	AccountLimit  int           // failures before the account locks (5)
	AccountLock   time.Duration // how long it stays locked (15 min)
	AccountWindow time.Duration // failures older than this are forgotten (24 h)
	IPLimit       int           // failures per source within IPWindow before it locks (20)
	IPWindow      time.Duration // sliding window for IPLimit (10 min)
	IPLock        time.Duration // how long a source stays locked (15 min)
	// CaptchaAfter is how many recent failures of the account, or of the
	// source, make BeginHuman refuse an attempt not vouched for by a
	// solved captcha (ErrCaptchaRequired); 0: never (Begin never asks).
	CaptchaAfter int

	Alerts auth.Alerts      // every lock is reported here; nil: dropped
	Now    func() time.Time // nil: time.Now
}

func (c *Config) fill() error {
	if c.DB == nil {
		return fmt.Errorf("%w: DB is nil", ErrConfig)
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.AccountLimit, DefaultAccountLimit)
	def(&c.IPLimit, DefaultIPLimit)
	defd(&c.AccountLock, DefaultAccountLock)
	defd(&c.AccountWindow, DefaultAccountWindow)
	defd(&c.IPWindow, DefaultIPWindow)
	defd(&c.IPLock, DefaultIPLock)
	if c.CaptchaAfter < 0 {
		return fmt.Errorf("%w: CaptchaAfter must not be negative", ErrConfig)
	}
	if c.AccountLimit < 1 || c.AccountLimit > 20 || c.IPLimit < 1 || c.IPLimit > 10000 {
		return fmt.Errorf("%w: AccountLimit must be 1-20 and IPLimit 1-10000", ErrConfig)
	}
	if c.AccountLock <= 0 || c.AccountWindow <= 0 || c.IPWindow <= 0 || c.IPLock <= 0 {
		return fmt.Errorf("%w: durations must be positive", ErrConfig)
	}
	if c.Alerts == nil {
		c.Alerts = auth.NopAlerts{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

var (
	bucketAccounts = []byte("auth-guard-accounts")
	bucketIPs      = []byte("auth-guard-ips")
)

// Guard counts failed logins per account and per source address and locks
// either for a while when it reaches its limit. See the package
// documentation.
type Guard struct{ cfg Config }

// New checks cfg and prepares the buckets.
func New(cfg Config) (*Guard, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if err := kv.Ensure(cfg.DB, bucketAccounts, bucketIPs); err != nil {
		return nil, fmt.Errorf("bruteforce: %w", err)
	}
	return &Guard{cfg: cfg}, nil
}

// accountState is stored per account.
type accountState struct {
	Failures    int       `json:"failures"` // counted failures, including attempts in flight
	LastFailure time.Time `json:"last_failure"`
	LockedUntil time.Time `json:"locked_until,omitzero"`
	// Epoch changes when the count is reset (success, unlock, expiry), so
	// an attempt begun before the reset knows its provisional failure is
	// no longer in Failures.
	Epoch uint64 `json:"epoch"`
}

// ipState is stored per source (an IPv4 address or an IPv6 /64).
type ipState struct {
	Times []time.Time `json:"times"` // failures (and attempts in flight) in the window, oldest first
	// Pending are the attempts in flight among Times (begun, not
	// settled). They count towards the source's lock, which bounds
	// concurrent guesses, but not towards the captcha: many customers
	// behind one address (a NAT, an office proxy) logging in at once are
	// not failures. An attempt whose process died is forgotten with the
	// window, like a failure.
	Pending     []time.Time `json:"pending,omitempty"`
	LockedUntil time.Time   `json:"locked_until,omitzero"`
}

// failures is the source's settled failures in the window.
func (s *ipState) failures() int { return max(0, len(s.Times)-len(s.Pending)) }

func (s *accountState) refresh(now time.Time, cfg *Config) {
	if !s.LockedUntil.IsZero() && !now.Before(s.LockedUntil) {
		*s = accountState{Epoch: s.Epoch + 1} // lock served: start afresh
	}
	if s.LockedUntil.IsZero() && s.Failures > 0 && now.Sub(s.LastFailure) >= cfg.AccountWindow {
		*s = accountState{Epoch: s.Epoch + 1}
	}
}

func (s *ipState) refresh(now time.Time, cfg *Config) {
	if !s.LockedUntil.IsZero() && !now.Before(s.LockedUntil) {
		*s = ipState{}
	}
	i := 0
	for i < len(s.Times) && now.Sub(s.Times[i]) >= cfg.IPWindow {
		i++
	}
	s.Times = s.Times[i:]
	i = 0
	for i < len(s.Pending) && now.Sub(s.Pending[i]) >= cfg.IPWindow {
		i++
	}
	s.Pending = s.Pending[i:]
}

// SourceKey is how an address is counted: IPv4 (and IPv4-mapped IPv6) as
// the address itself, IPv6 as its /64, since one customer line gets a
// whole /64 and rotates addresses inside it freely.
func SourceKey(ip netip.Addr) (string, error) {
	if !ip.IsValid() {
		return "", ErrBadInput
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String(), nil
	}
	p, _ := ip.Prefix(64)
	return p.String(), nil
}

// Attempt is one login attempt admitted by Begin. Settle it exactly once
// with Succeeded, Failed or Abandon; until then it counts as a failure.
type Attempt struct {
	g       *Guard
	account string
	ip      netip.Addr
	ipKey   string
	at      time.Time
	epoch   uint64
	settled atomic.Bool
}

// Begin admits a login attempt before the password is checked. It refuses
// (with *LockedError) when the account or the source is locked, or when
// its failure count is at the limit — counting attempts still in flight, so
// concurrent attempts never get more password checks than the limit. An
// admitted attempt is counted as a failure at once, durably; Succeeded or
// Abandon take it back.
func (g *Guard) Begin(ctx context.Context, account string, ip netip.Addr) (*Attempt, error) {
	return g.BeginHuman(ctx, account, ip, true)
}

// BeginHuman is Begin for a login that may need a captcha: when human
// is false (no captcha solved with it) and the account or the source has
// Config.CaptchaAfter failures or more counted, it is refused with
// ErrCaptchaRequired — decided in the same transaction that would count
// it, and counting nothing, so no password is checked. A lock is
// reported before the captcha.
func (g *Guard) BeginHuman(ctx context.Context, account string, ip netip.Addr, human bool) (*Attempt, error) {
	if err := kv.CheckID("account", account); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	ipKey, err := SourceKey(ip)
	if err != nil {
		return nil, err
	}
	var (
		refused *LockedError
		captcha bool
		events  []auth.Event
		epoch   uint64
		now     = g.cfg.Now()
	)
	err = g.cfg.DB.Batch(func(tx store.Tx) error {
		refused, events, captcha = nil, nil, false
		ab, ib := tx.Bucket(bucketAccounts), tx.Bucket(bucketIPs)
		var as accountState
		var is ipState
		if _, err := kv.Get(ab, []byte(account), &as); err != nil {
			return err
		}
		if _, err := kv.Get(ib, []byte(ipKey), &is); err != nil {
			return err
		}
		as.refresh(now, &g.cfg)
		is.refresh(now, &g.cfg)
		switch {
		case !is.LockedUntil.IsZero():
			refused = &LockedError{ScopeIP, is.LockedUntil}
		case !as.LockedUntil.IsZero():
			refused = &LockedError{ScopeAccount, as.LockedUntil}
		case len(is.Times) >= g.cfg.IPLimit:
			is.LockedUntil = now.Add(g.cfg.IPLock)
			refused = &LockedError{ScopeIP, is.LockedUntil}
			events = append(events, auth.Event{Kind: auth.KindIPLocked, IP: ip.String(), Account: account,
				Time: now, Count: len(is.Times), Until: is.LockedUntil})
		case as.Failures >= g.cfg.AccountLimit:
			as.LockedUntil = now.Add(g.cfg.AccountLock)
			refused = &LockedError{ScopeAccount, as.LockedUntil}
			events = append(events, auth.Event{Kind: auth.KindAccountLocked, Account: account, IP: ip.String(),
				Time: now, Count: as.Failures, Until: as.LockedUntil})
		case !human && g.cfg.CaptchaAfter > 0 && (as.Failures >= g.cfg.CaptchaAfter || is.failures() >= g.cfg.CaptchaAfter):
			captcha = true
			return nil // nothing counted, nothing changed
		default:
			as.Failures++
			as.LastFailure = now
			is.Times = append(is.Times, now)
			is.Pending = append(is.Pending, now)
		}
		epoch = as.Epoch
		if err := kv.Put(ab, []byte(account), &as); err != nil {
			return err
		}
		return kv.Put(ib, []byte(ipKey), &is)
	})
	if err != nil {
		return nil, fmt.Errorf("bruteforce: %w", err)
	}
	g.emit(ctx, events)
	if refused != nil {
		return nil, refused
	}
	if captcha {
		return nil, ErrCaptchaRequired
	}
	return &Attempt{g: g, account: account, ip: ip, ipKey: ipKey, at: now, epoch: epoch}, nil
}

func (g *Guard) emit(ctx context.Context, events []auth.Event) {
	for _, ev := range events {
		g.cfg.Alerts.Alert(ctx, ev)
	}
}

// settle kinds
const (
	settleSuccess = iota + 1
	settleFailure
	settleAbandon
)

// Succeeded records a correct password: the account's count is reset (a
// lock too), and the attempt no longer counts against the source.
func (a *Attempt) Succeeded(ctx context.Context) error { return a.settle(ctx, settleSuccess) }

// Failed records a wrong password. The failure counted at Begin stays; when
// the account or the source reaches its limit it is locked and an alert
// raised with this attempt's address.
func (a *Attempt) Failed(ctx context.Context) error { return a.settle(ctx, settleFailure) }

// Abandon takes the attempt back without a verdict: use it when the
// password was never checked (keysvc unreachable, malformed request after
// Begin). Never use it after the password was compared.
func (a *Attempt) Abandon(ctx context.Context) error { return a.settle(ctx, settleAbandon) }

func (a *Attempt) settle(ctx context.Context, how int) error {
	if !a.settled.CompareAndSwap(false, true) {
		return ErrAttemptSettled
	}
	g := a.g
	now := g.cfg.Now()
	var events []auth.Event
	err := g.cfg.DB.Batch(func(tx store.Tx) error {
		events = nil
		ab, ib := tx.Bucket(bucketAccounts), tx.Bucket(bucketIPs)
		var as accountState
		var is ipState
		if _, err := kv.Get(ab, []byte(a.account), &as); err != nil {
			return err
		}
		if _, err := kv.Get(ib, []byte(a.ipKey), &is); err != nil {
			return err
		}
		sameEpoch := as.Epoch == a.epoch
		is.Pending = removeOne(is.Pending, a.at) // settled, whatever the verdict
		switch how {
		case settleSuccess:
			as = accountState{Epoch: as.Epoch + 1}
			is.Times = removeOne(is.Times, a.at)
		case settleAbandon:
			if sameEpoch && as.Failures > 0 {
				as.Failures--
			}
			is.Times = removeOne(is.Times, a.at)
		case settleFailure:
			as.refresh(now, &g.cfg)
			if as.Epoch != a.epoch && as.LockedUntil.IsZero() {
				// The count was reset since Begin (a success, an unlock):
				// this failure happened all the same.
				as.Failures++
			}
			as.LastFailure = now
			if as.LockedUntil.IsZero() && as.Failures >= g.cfg.AccountLimit {
				as.LockedUntil = now.Add(g.cfg.AccountLock)
				events = append(events, auth.Event{Kind: auth.KindAccountLocked, Account: a.account,
					IP: a.ip.String(), Time: now, Count: as.Failures, Until: as.LockedUntil})
			}
			is.refresh(now, &g.cfg)
			if is.LockedUntil.IsZero() && len(is.Times) >= g.cfg.IPLimit {
				is.LockedUntil = now.Add(g.cfg.IPLock)
				events = append(events, auth.Event{Kind: auth.KindIPLocked, Account: a.account,
					IP: a.ip.String(), Time: now, Count: len(is.Times), Until: is.LockedUntil})
			}
		}
		if err := kv.Put(ab, []byte(a.account), &as); err != nil {
			return err
		}
		return kv.Put(ib, []byte(a.ipKey), &is)
	})
	if err != nil {
		return fmt.Errorf("bruteforce: %w", err)
	}
	g.emit(ctx, events)
	return nil
}

func removeOne(ts []time.Time, t time.Time) []time.Time {
	for i := range ts {
		if ts[i].Equal(t) {
			return append(ts[:i], ts[i+1:]...)
		}
	}
	return ts
}

// Status is what the guard holds for an account, for officers' tools.
type Status struct {
	Failures    int
	LockedUntil time.Time // zero when not locked
}

// AccountStatus returns the account's current count and lock.
func (g *Guard) AccountStatus(account string) (Status, error) {
	var as accountState
	err := g.cfg.DB.View(func(tx store.Tx) error {
		_, err := kv.Get(tx.Bucket(bucketAccounts), []byte(account), &as)
		return err
	})
	if err != nil {
		return Status{}, fmt.Errorf("bruteforce: %w", err)
	}
	as.refresh(g.cfg.Now(), &g.cfg)
	return Status{Failures: as.Failures, LockedUntil: as.LockedUntil}, nil
}

// UnlockAccount clears an account's count and lock (an officer's action,
// after verifying the customer; audit it in the caller).
func (g *Guard) UnlockAccount(ctx context.Context, account string) error {
	return g.cfg.DB.Update(func(tx store.Tx) error {
		b := tx.Bucket(bucketAccounts)
		var as accountState
		if _, err := kv.Get(b, []byte(account), &as); err != nil {
			return err
		}
		return kv.Put(b, []byte(account), &accountState{Epoch: as.Epoch + 1})
	})
}

// UnlockSource clears the count and lock of an address (its /64 for IPv6).
func (g *Guard) UnlockSource(ctx context.Context, ip netip.Addr) error {
	key, err := SourceKey(ip)
	if err != nil {
		return err
	}
	return g.cfg.DB.Update(func(tx store.Tx) error {
		return tx.Bucket(bucketIPs).Delete([]byte(key))
	})
}

// Sweep deletes states with nothing left to remember (no lock, no failure
// within the window) and returns how many. Run it every few minutes:
// account names are attacker-chosen, so the bucket would otherwise grow.
// (An attempt in flight across a Sweep that also saw a reset may be
// counted one failure short; it needs a success, a Sweep and a failure
// within one login's duration.)
func (g *Guard) Sweep(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := g.cfg.Now()
	n := 0
	err := g.cfg.DB.Update(func(tx store.Tx) error {
		n = 0
		a, err := sweepBucket(tx.Bucket(bucketAccounts), func(v []byte) bool {
			var as accountState
			if json.Unmarshal(v, &as) != nil {
				return true
			}
			as.refresh(now, &g.cfg)
			return as.Failures == 0 && as.LockedUntil.IsZero()
		})
		if err != nil {
			return err
		}
		i, err := sweepBucket(tx.Bucket(bucketIPs), func(v []byte) bool {
			var is ipState
			if json.Unmarshal(v, &is) != nil {
				return true
			}
			is.refresh(now, &g.cfg)
			return len(is.Times) == 0 && is.LockedUntil.IsZero()
		})
		n = a + i
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("bruteforce: sweep: %w", err)
	}
	return n, nil
}

func sweepBucket(b store.Bucket, idle func(v []byte) bool) (int, error) {
	var dead [][]byte
	if err := b.ForEach(func(k, v []byte) error {
		if idle(v) {
			dead = append(dead, bytes.Clone(k))
		}
		return nil
	}); err != nil {
		return 0, err
	}
	for _, k := range dead {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(dead), nil
}
