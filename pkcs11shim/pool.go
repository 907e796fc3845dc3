package pkcs11shim

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"
)

// UserType says who logs in.
type UserType uint

const (
	// UserNormal is CKU_USER, the key user.
	UserNormal UserType = pkcs11.CKU_USER
	// UserSO is CKU_SO, the security officer.
	UserSO UserType = pkcs11.CKU_SO
	// UserContextSpecific is CKU_CONTEXT_SPECIFIC, the per-operation login
	// for keys with CKA_ALWAYS_AUTHENTICATE.
	UserContextSpecific UserType = pkcs11.CKU_CONTEXT_SPECIFIC
)

// LoginFunc performs exactly one C_Login. It is handed to an Authenticator,
// which decides where the PIN comes from and counts the attempt (the PIN
// guard in package token); the pool itself never holds a PIN.
type LoginFunc func(pin []byte) error

// Authenticator logs the pool in by calling login at most once. The pool
// calls it when it opens, and again after it has recovered a token that went
// away (the login died with the sessions).
type Authenticator func(ctx context.Context, login LoginFunc) error

// PoolConfig configures a session pool.
type PoolConfig struct {
	// Selector names the token. Required.
	Selector Selector
	// MaxSessions bounds the sessions lent at once (the anchor is extra).
	// Default: 8×GOMAXPROCS, at least 16. Each goroutine inside the module
	// holds an OS thread, so the bound also bounds threads; more sessions
	// than cores still pay on SoftHSM, whose operations block on file I/O
	// (docs/PERFORMANCE.md).
	MaxSessions int
	// WaitTimeout bounds how long WithSession waits for a free session.
	// Default 5 s.
	WaitTimeout time.Duration
	// Authenticate logs in as the user. Nil: no login (public objects only).
	Authenticate Authenticator
}

// Pool lends sessions on one token. One anchor session is opened first and
// holds the login for the whole application (PKCS#11 login state belongs to
// the application, not to a session), so sessions can come and go freely.
//
// # Recovery
//
// A session failing with SESSION_HANDLE_INVALID, SESSION_CLOSED,
// CRYPTOKI_NOT_INITIALIZED, DEVICE_ERROR, DEVICE_REMOVED or TOKEN_NOT_PRESENT
// is closed and never lent again. A failure that reaches the token as a whole
// marks the pool broken; the next WithSession re-finds the token by selector
// (its slot id may have moved), re-initialises the module if needed (at most
// once per Module.MinReinitInterval), opens a new anchor and logs in again
// through the Authenticator. Until then callers get ErrTokenNotPresent.
//
// A PIN error from the Authenticator is latched: the pool refuses work with
// that error and never retries the login by itself, because each retry would
// be one more guess against the lockout. Call Reauthenticate after the PIN
// has been fixed.
//
// # Concurrency
//
// A Pool is safe for concurrent use. A Session is not: it belongs to the
// closure it was lent to and must not escape it. Do not call WithSession
// from inside a WithSession closure.
type Pool struct {
	mod *Module
	cfg PoolConfig

	sem  chan struct{}             // one token per lendable session
	idle chan pkcs11.SessionHandle // sessions ready to lend
	gen  atomic.Uint64             // module generation of idle sessions and handles; 0 = broken

	slot atomic.Uint64 // current slot id of the token (may move on recovery)
	// epoch names the current connection to the token, unique across all
	// pools; it changes on every recovery, even one without a module
	// re-initialisation, so cached object handles are re-found after any
	// reconnection (a re-inserted token may reuse handle numbers).
	epoch atomic.Uint64

	mu        sync.Mutex // guards the fields below and serialises recovery
	info      TokenInfo
	anchor    pkcs11.SessionHandle
	hasAnchor bool
	// anchorGen is the module generation the anchor (and every idle
	// session: give keeps only those of p.gen, set with it) was opened in.
	// After a re-initialisation handle numbers start again, so an older
	// generation's handle may number another pool's session now: it is
	// dropped, never closed.
	anchorGen uint64
	authErr   error // latched authentication failure
	closed    bool
	keys      map[keyCacheID]*Key

	lent     atomic.Int64
	lastFail atomic.Value // string: why the pool last broke; set without p.mu
}

// NewPool finds the token, opens the anchor session and logs in.
func NewPool(ctx context.Context, mod *Module, cfg PoolConfig) (*Pool, error) {
	if err := cfg.Selector.valid(); err != nil {
		return nil, err
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = max(16, 8*runtime.GOMAXPROCS(0))
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = 5 * time.Second
	}
	p := &Pool{
		mod:  mod,
		cfg:  cfg,
		sem:  make(chan struct{}, cfg.MaxSessions),
		idle: make(chan pkcs11.SessionHandle, cfg.MaxSessions),
		keys: map[keyCacheID]*Key{},
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.recoverLocked(ctx, true); err != nil {
		return nil, err
	}
	return p, nil
}

// Module returns the module the pool runs on.
func (p *Pool) Module() *Module { return p.mod }

// Info returns the token's information as of the last (re)connection; call
// RefreshInfo for live flags.
func (p *Pool) Info() TokenInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.info
}

// RefreshInfo reads the token's information again (live PIN flags).
func (p *Pool) RefreshInfo(ctx context.Context) (TokenInfo, error) {
	var ti TokenInfo
	err := p.WithSession(ctx, func(s *Session) error {
		var err error
		ti, err = p.mod.tokenInfo(s.ctx, s.slot)
		return err
	})
	if err == nil {
		p.mu.Lock()
		p.info = ti
		p.mu.Unlock()
	}
	return ti, err
}

// Mechanisms lists the token's mechanisms.
func (p *Pool) Mechanisms() ([]Mechanism, error) {
	return p.mod.Mechanisms(p.Info().SlotID)
}

// Session is a PKCS#11 session lent by a Pool for the length of one closure.
type Session struct {
	ctx   PKCtx
	h     pkcs11.SessionHandle
	slot  uint
	gen   uint64 // module generation
	epoch uint64 // pool connection epoch: object handles are valid within one
	pool  *Pool
}

// WithSession lends a session to fn. It waits at most the pool's WaitTimeout
// (or until ctx is done) for a free one. Errors from fn that mean the session
// is dead evict it; if the session merely died (not the token), fn is run
// once more on a fresh session.
func (p *Pool) WithSession(ctx context.Context, fn func(s *Session) error) error {
	err := p.withSession(ctx, fn)
	if errors.Is(err, ErrSessionClosed) && !errors.Is(err, ErrTokenNotPresent) {
		err = p.withSession(ctx, fn) // ready() recovers first if the module died
	}
	return err
}

func (p *Pool) withSession(ctx context.Context, fn func(s *Session) error) error {
	if err := p.acquire(ctx); err != nil {
		return err
	}
	defer func() { <-p.sem }()
	gen, err := p.ready(ctx)
	if err != nil {
		return err
	}
	p.mod.mu.RLock()
	defer p.mod.mu.RUnlock()
	if p.mod.gen.Load() != gen { // re-initialised between ready and RLock
		p.markBroken(gen, ErrSessionClosed)
		return fmt.Errorf("%w: module re-initialised", ErrSessionClosed)
	}
	h, err := p.take(gen)
	if err != nil {
		return err
	}
	p.lent.Add(1)
	defer p.lent.Add(-1)
	s := Session{ctx: p.mod.ctx, h: h, slot: p.slotID(), gen: gen, epoch: p.epoch.Load(), pool: p}
	err = fn(&s)
	var pz poisoned
	if errors.As(err, &pz) { // an operation may still be active: never lend this session again
		_ = p.mod.ctx.CloseSession(h)
		if pe, ok := err.(poisoned); ok {
			err = pe.error
		}
		if errors.Is(err, ErrTokenNotPresent) || errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)) {
			p.markBroken(gen, err)
		}
		return err
	}
	if err != nil && !sessionBroken(err) && suspicious(err) {
		err = p.probe(h, gen, err)
	}
	if err != nil && sessionBroken(err) {
		_ = p.mod.ctx.CloseSession(h)
		if errors.Is(err, ErrTokenNotPresent) || errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)) {
			p.markBroken(gen, err)
		}
		return err
	}
	p.give(h, gen)
	return err
}

func (p *Pool) acquire(ctx context.Context) error {
	select {
	case p.sem <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(p.cfg.WaitTimeout)
	defer t.Stop()
	select {
	case p.sem <- struct{}{}:
		return nil
	case <-t.C:
		return fmt.Errorf("%w after %v (%d sessions busy on token %q)", ErrPoolTimeout, p.cfg.WaitTimeout, p.cfg.MaxSessions, p.cfg.Selector.Label)
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrPoolTimeout, ctx.Err())
	}
}

func (p *Pool) slotID() uint { return uint(p.slot.Load()) }

// take returns an idle session of generation gen, or opens one. Called
// under the module read lock.
func (p *Pool) take(gen uint64) (pkcs11.SessionHandle, error) {
	select {
	case h := <-p.idle:
		return h, nil
	default:
	}
	h, err := p.mod.ctx.OpenSession(p.slotID(), pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		err = wrapErr("C_OpenSession", err)
		if sessionBroken(err) {
			p.markBroken(gen, err)
		}
		return 0, err
	}
	return h, nil
}

// give returns h to the idle list unless the pool moved on.
func (p *Pool) give(h pkcs11.SessionHandle, gen uint64) {
	if p.gen.Load() != gen {
		_ = p.mod.ctx.CloseSession(h)
		return
	}
	select {
	case p.idle <- h:
	default:
		_ = p.mod.ctx.CloseSession(h)
	}
}

// suspicious reports errors that may really mean "the token is gone":
// SoftHSM answers CKR_GENERAL_ERROR, and a missing key may be a missing token.
func suspicious(err error) bool {
	code, ok := ckrCode(err)
	return errors.Is(err, ErrKeyNotFound) || ok && (code == pkcs11.CKR_GENERAL_ERROR || code == pkcs11.CKR_FUNCTION_FAILED)
}

// probe checks that the token is still in its slot after a suspicious
// error. If it is, err stands; if not, the pool is marked broken and the
// caller gets ErrTokenNotPresent. Called under the module read lock.
func (p *Pool) probe(h pkcs11.SessionHandle, gen uint64, err error) error {
	ti, perr := p.mod.ctx.GetTokenInfo(p.slotID())
	if perr == nil && p.cfg.Selector.matches(ti) {
		// The token is there. Did the application lose its login (an HSM
		// dropping it, a stray C_Logout)? Private objects then look missing.
		if p.cfg.Authenticate != nil && errors.Is(err, ErrKeyNotFound) {
			if si, serr := p.mod.ctx.GetSessionInfo(h); serr == nil && (si.State == pkcs11.CKS_RO_PUBLIC_SESSION || si.State == pkcs11.CKS_RW_PUBLIC_SESSION) {
				p.markBroken(gen, errors.New("login lost"))
				return fmt.Errorf("%w: the token logged this application out; logging in again", ErrSessionClosed)
			}
		}
		return err
	}
	if perr == nil {
		perr = fmt.Errorf("slot %d now holds token %q", p.slotID(), strings.TrimSpace(ti.Label))
	}
	p.markBroken(gen, perr)
	return fmt.Errorf("%w: token %s: %w", ErrTokenNotPresent, p.cfg.Selector, wrapErr("C_GetTokenInfo", perr))
}

// markBroken records that sessions of generation gen are dead. It runs
// under the module read lock, so it must not take p.mu: recovery holds p.mu
// while it waits for the module's write lock.
func (p *Pool) markBroken(gen uint64, cause error) {
	if p.gen.CompareAndSwap(gen, 0) {
		p.lastFail.Store(cause.Error())
	}
}

// ready returns the generation to work in, recovering first if needed.
func (p *Pool) ready(ctx context.Context) (uint64, error) {
	if g := p.gen.Load(); g != 0 && g == p.mod.Generation() {
		return g, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, ErrPoolClosed
	}
	if p.authErr != nil {
		return 0, p.authErr
	}
	if g := p.gen.Load(); g != 0 && g == p.mod.Generation() {
		return g, nil
	}
	if err := p.recoverLocked(ctx, false); err != nil {
		return 0, err
	}
	return p.gen.Load(), nil
}

// recoverLocked (re)connects to the token: drops dead sessions, re-finds
// the token, re-initialises the module when it must, opens the anchor and
// logs in. p.mu is held.
func (p *Pool) recoverLocked(ctx context.Context, first bool) error {
	p.gen.Store(0)
	p.drainIdle()
	p.closeAnchor()
	gen := p.mod.Generation()
	ti, err := p.connect(gen)
	if err != nil && !first {
		// The token may be back behind a dead module connection, or still
		// gone. Re-initialise (rate-limited) and look once more.
		if rerr := p.mod.Reinitialize(gen); rerr != nil {
			return fmt.Errorf("%w: token %s: %w", ErrTokenNotPresent, p.cfg.Selector, err)
		}
		gen = p.mod.Generation()
		ti, err = p.connect(gen)
	}
	if err != nil {
		if errors.Is(err, ErrTokenNotFound) || sessionBroken(err) {
			return fmt.Errorf("%w: token %s: %w", ErrTokenNotPresent, p.cfg.Selector, err)
		}
		return err
	}
	p.info = ti
	p.slot.Store(uint64(ti.SlotID))
	if p.cfg.Authenticate != nil {
		err := p.cfg.Authenticate(ctx, func(pin []byte) error { return p.login(UserNormal, pin) })
		if err != nil {
			p.closeAnchor()
			if IsPINError(err) {
				p.authErr = err
			}
			return err
		}
	}
	p.epoch.Store(epochs.Add(1))
	p.gen.Store(gen)
	return nil
}

// epochs hands out connection epochs; 0 is never used.
var epochs atomic.Uint64

// connect finds the token and opens the anchor session in generation gen.
func (p *Pool) connect(gen uint64) (TokenInfo, error) {
	ti, err := p.mod.findToken(p.cfg.Selector)
	if err != nil {
		return ti, err
	}
	err = p.mod.call(func(c PKCtx) error {
		if p.mod.Generation() != gen {
			return fmt.Errorf("%w: module re-initialised", ErrSessionClosed)
		}
		h, err := c.OpenSession(ti.SlotID, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return wrapErr("C_OpenSession", err)
		}
		p.anchor, p.hasAnchor, p.anchorGen = h, true, gen
		return nil
	})
	return ti, err
}

// login performs one C_Login on the anchor. CKR_USER_ALREADY_LOGGED_IN is
// success: the application is logged in, which is all that matters.
func (p *Pool) login(ut UserType, pin []byte) error {
	return p.mod.call(func(c PKCtx) error {
		err := c.Login(p.anchor, uint(ut), string(pin))
		if errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
			return nil
		}
		return wrapErr("C_Login", err)
	})
}

// Reauthenticate clears a latched PIN error and logs in again through the
// Authenticator (once). Use it after the user PIN was reset or the PIN
// source fixed.
func (p *Pool) Reauthenticate(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrPoolClosed
	}
	p.authErr = nil
	return p.recoverLocked(ctx, false)
}

func (p *Pool) closeAnchor() {
	if p.hasAnchor {
		p.closeOwn(p.anchor)
		p.hasAnchor = false
	}
}

func (p *Pool) drainIdle() {
	for {
		select {
		case h := <-p.idle:
			p.closeOwn(h)
		default:
			return
		}
	}
}

// closeOwn closes h, a session of generation p.anchorGen, unless the module
// was re-initialised since: then h is already gone, and its number may
// belong to another pool's live session (closing it would log that pool
// out of its token). Called with p.mu held.
func (p *Pool) closeOwn(h pkcs11.SessionHandle) {
	_ = p.mod.call(func(c PKCtx) error {
		if p.mod.Generation() != p.anchorGen {
			return nil
		}
		return c.CloseSession(h)
	})
}

// Stats reports the pool's state, for metrics.
type Stats struct {
	MaxSessions int
	Idle        int
	Lent        int
	Healthy     bool
	LastFailure string
}

// Stats returns a snapshot of the pool.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Stats{MaxSessions: p.cfg.MaxSessions, Idle: len(p.idle), Lent: int(p.lent.Load()), Healthy: p.gen.Load() != 0 && p.authErr == nil}
	st.LastFailure, _ = p.lastFail.Load().(string)
	return st
}

// Close closes every session (which logs the application out of the token
// once the anchor goes). It waits for lent sessions to come back. The Module
// stays open; close it separately.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.gen.Store(0)
	p.mu.Unlock()
	for i := 0; i < cap(p.sem); i++ { // wait until no closure runs
		p.sem <- struct{}{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drainIdle()
	p.closeAnchor()
	for i := 0; i < cap(p.sem); i++ { // let later callers reach ready(), which says ErrPoolClosed
		<-p.sem
	}
	return nil
}
