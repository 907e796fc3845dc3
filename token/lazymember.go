package token

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/keyward/keyward/pkcs11shim"
)

// IsAway reports whether err from Open means the token is not there now
// (not found in any slot, or not answering), as opposed to a mistake in
// its configuration. See LazyStore.
func IsAway(err error) bool {
	return errors.Is(err, pkcs11shim.ErrTokenNotFound) || errors.Is(err, ErrTokenNotPresent)
}

// notAwayOpenErrors are the errors of an opening that end the LazyStore's
// retries: each new try would be one more PIN guess, or cannot succeed
// before the configuration is fixed.
var notAwayOpenErrors = []error{pkcs11shim.ErrPINIncorrect, pkcs11shim.ErrPINLocked, pkcs11shim.ErrPINInvalid,
	ErrPINSource, pkcs11shim.ErrTokenAmbiguous, pkcs11shim.ErrModuleLoad, pkcs11shim.ErrInvalidURI}

func permanentOpenError(err error) bool {
	for _, e := range notAwayOpenErrors {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// lazyMember is a Member opened on first success of its Health. Before
// that, every operation answers ErrTokenNotPresent naming the token; after
// that, everything goes to the opened member, including the optional
// abilities the set and keysvc find by type assertion (replication, its
// check value, Rewrap, KeyUsage).
type lazyMember struct {
	label, serial string // from the configuration, until opened
	open          func(ctx context.Context) (Member, error)
	log           *slog.Logger

	mu    sync.Mutex            // one opening at a time
	fatal atomic.Pointer[error] // an opening error that ends the retries

	inner atomic.Pointer[openedMember]
}

type openedMember struct{ Member }

var (
	_ Member             = (*lazyMember)(nil)
	_ replicator         = (*lazyMember)(nil)
	_ replicationChecker = (*lazyMember)(nil)
	_ rewrapper          = (*lazyMember)(nil)
)

func (l *lazyMember) name() string {
	if l.serial != "" {
		return fmt.Sprintf("token %q (serial %s)", l.label, l.serial)
	}
	return fmt.Sprintf("token %q", l.label)
}

// opened returns the opened member, or ErrTokenNotPresent naming the token.
func (l *lazyMember) opened() (Member, error) {
	if m := l.inner.Load(); m != nil {
		return m.Member, nil
	}
	return nil, fmt.Errorf("%w: %s is not open: it was away when keysvc started, and the token set opens it when it answers", ErrTokenNotPresent, l.name())
}

// tryOpen opens the member, once per call; nil when it is open.
func (l *lazyMember) tryOpen(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inner.Load() != nil {
		return nil
	}
	if f := l.fatal.Load(); f != nil {
		return *f
	}
	m, err := l.open(ctx)
	if err != nil {
		if permanentOpenError(err) {
			fatal := fmt.Errorf("%s answers again but cannot be opened, and is not tried again: %w; fix this and restart keysvc", l.name(), err)
			l.fatal.Store(&fatal)
			l.log.Error("token set member: a token that was away at start cannot be opened", "token", l.label, "serial", l.serial, "err", fatal)
			return fatal
		}
		if IsAway(err) {
			return fmt.Errorf("%w: %s is still away: %w", ErrTokenNotPresent, l.name(), err)
		}
		return fmt.Errorf("%w: %s could not be opened yet: %w", ErrTokenNotPresent, l.name(), err)
	}
	l.inner.Store(&openedMember{m})
	label, serial := m.Identity()
	l.log.Info("token set member: a token that was away at start is open now; the token set checks it and catches it up before it serves",
		"token", label, "serial", serial)
	return nil
}

// Health answers the opened member's health; before that it tries to open
// the token (once per call) and answers the error while it cannot.
func (l *lazyMember) Health(ctx context.Context) error {
	if m := l.inner.Load(); m != nil {
		return m.Health(ctx)
	}
	return l.tryOpen(ctx)
}

// Identity is the opened token's label and serial, or the configured ones.
func (l *lazyMember) Identity() (label, serial string) {
	if m := l.inner.Load(); m != nil {
		return m.Identity()
	}
	return l.label, l.serial
}

// Stats is the opened member's, or an empty, unhealthy StoreStats.
func (l *lazyMember) Stats() StoreStats {
	if m := l.inner.Load(); m != nil {
		return m.Stats()
	}
	return StoreStats{}
}

func (l *lazyMember) FindKey(ctx context.Context, label string) (KeyRef, error) {
	m, err := l.opened()
	if err != nil {
		return nil, err
	}
	return m.FindKey(ctx, label)
}

func (l *lazyMember) GenerateKey(ctx context.Context, spec KeySpec) (KeyRef, error) {
	m, err := l.opened()
	if err != nil {
		return nil, err
	}
	return m.GenerateKey(ctx, spec)
}

func (l *lazyMember) GenerateWrapped(ctx context.Context, kek KeyRef, spec KeySpec) ([]byte, crypto.PublicKey, error) {
	m, err := l.opened()
	if err != nil {
		return nil, nil, err
	}
	return m.GenerateWrapped(ctx, kek, spec)
}

func (l *lazyMember) Use(ctx context.Context, mat Material, fn func(KeyUse) error) error {
	m, err := l.opened()
	if err != nil {
		return err
	}
	return m.Use(ctx, mat, fn)
}

func (l *lazyMember) CheckValue(ctx context.Context, ref KeyRef) (string, []byte, error) {
	m, err := l.opened()
	if err != nil {
		return "", nil, err
	}
	return m.CheckValue(ctx, ref)
}

func (l *lazyMember) KeyLabels(ctx context.Context) ([]string, error) {
	m, err := l.opened()
	if err != nil {
		return nil, err
	}
	return m.KeyLabels(ctx)
}

func (l *lazyMember) DestroyKey(ctx context.Context, ref KeyRef) error {
	m, err := l.opened()
	if err != nil {
		return err
	}
	return m.DestroyKey(ctx, ref)
}

func (l *lazyMember) Random(ctx context.Context, n int) ([]byte, error) {
	m, err := l.opened()
	if err != nil {
		return nil, err
	}
	return m.Random(ctx, n)
}

// cannot is the error of an optional ability the opened member lacks.
func (l *lazyMember) cannot(m Member, what string) error {
	return fmt.Errorf("%w: %s (%T) cannot %s", ErrMechanismInvalid, l.name(), m, what)
}

// ExportReplica is the opened member's (replication, an optional ability).
func (l *lazyMember) ExportReplica(ctx context.Context, ref KeyRef) (Replica, error) {
	m, err := l.opened()
	if err != nil {
		return Replica{}, err
	}
	r, ok := m.(replicator)
	if !ok {
		return Replica{}, l.cannot(m, "copy keys")
	}
	return r.ExportReplica(ctx, ref)
}

// ImportReplica is the opened member's (replication, an optional ability).
func (l *lazyMember) ImportReplica(ctx context.Context, rep Replica) (KeyRef, error) {
	m, err := l.opened()
	if err != nil {
		return nil, err
	}
	r, ok := m.(replicator)
	if !ok {
		return nil, l.cannot(m, "copy keys")
	}
	return r.ImportReplica(ctx, rep)
}

// Replicable is the opened member's; false when it has no replication.
func (l *lazyMember) Replicable(ctx context.Context) (bool, error) {
	m, err := l.opened()
	if err != nil {
		return false, err
	}
	r, ok := m.(replicator)
	if !ok {
		return false, nil
	}
	return r.Replicable(ctx)
}

// ReplicationCheckValue is the opened member's (an optional ability).
func (l *lazyMember) ReplicationCheckValue(ctx context.Context) ([]byte, error) {
	m, err := l.opened()
	if err != nil {
		return nil, err
	}
	r, ok := m.(replicationChecker)
	if !ok {
		return nil, l.cannot(m, "tell its replication key's check value")
	}
	return r.ReplicationCheckValue(ctx)
}

// Rewrap is the opened member's (keysvc's KEK rotation).
func (l *lazyMember) Rewrap(ctx context.Context, from, to KeyRef, blob []byte, spec KeySpec) ([]byte, error) {
	m, err := l.opened()
	if err != nil {
		return nil, err
	}
	r, ok := m.(rewrapper)
	if !ok {
		return nil, l.cannot(m, "re-wrap")
	}
	return r.Rewrap(ctx, from, to, blob, spec)
}

// KeyUsage is the opened member's (an optional ability keysvc uses to
// check service keys); ErrMechanismInvalid when it cannot tell.
func (l *lazyMember) KeyUsage(ctx context.Context, ref KeyRef) (Usage, error) {
	m, err := l.opened()
	if err != nil {
		return 0, err
	}
	ku, ok := m.(interface {
		KeyUsage(context.Context, KeyRef) (Usage, error)
	})
	if !ok {
		return 0, l.cannot(m, "read a key's usage")
	}
	return ku.KeyUsage(ctx, ref)
}

// LazyStore is a token of a Set that was away when the set was built
// (OpenLater): a keysvc restart during an HSM outage must still start on
// the tokens that answer (issue 15, R-AV-4). It is DOWN until the set's prober finds it answering: its
// Health then opens it (Open, with the configuration it was given), and
// the set checks it (SetConfig.Admit), catches it up and re-admits it as
// it does any member that comes back. Once open it is the token's *Store
// in every respect: every Member method and every optional ability
// (ExportReplica, ImportReplica, Replicable, ReplicationCheckValue,
// Rewrap, KeyUsage) goes to it; before that each answers
// ErrTokenNotPresent naming the token.
//
// Like *Store it is on a PKCS#11 module shared with the set's other
// members: SoftHSM2 shows a token whose directory came back only after a
// new C_Initialize, which the set's prober asks of the module
// (moduleRenewed) exactly as for a *Store member that went down; the
// LazyStore's own Health only looks (pkcs11shim.Module.LookupToken) and
// never re-initialises the module, so it ends no session of the others.
//
// # Which errors mean "away"
//
// IsAway: the token is not in any slot (ErrTokenNotFound: SoftHSM2 lists
// no token whose directory is gone; an HSM partition that is unreachable)
// or does not answer (ErrTokenNotPresent: device removed, device error,
// the token vanishing while it is opened). A mistyped label looks the same
// as an absent token; the LazyStore's state and logs name the label, so an
// operator who sees it down for good checks the configuration.
//
// Configuration mistakes, which waiting does not mend, are refused: by
// Open at start (keysvc then does not start), by OpenLater, or by the
// first opening that meets them, after which the LazyStore stays down
// and is not tried again (each try could be one more PIN guess): a bad
// URI, a module that does not load, a PIN source that cannot be read, a
// PIN the token or the PIN guard refuses or has locked, a label that
// names two tokens. Any other error of an opening is tried again at the
// next probe.
//
// # Limitations
//
// Until it is opened, a LazyStore knows only what its configuration says:
// Identity is the configured label and serial (empty when the URI gives
// none), Stats has no sessions and no PIN state. The Set keeps the
// identity it read when it was built, so its logs, events and /readyz
// name such a member by the configured label (and no serial) after it is
// opened too.
//
// # Concurrency
//
// A LazyStore is safe for concurrent use; one opening runs at a time.
// Close closes the token if it was opened and releases the module.
type LazyStore struct {
	*lazyMember
	mod *pkcs11shim.Module
	sel pkcs11shim.Selector

	tokMu     sync.Mutex
	tok       *Token
	closed    bool
	closeOnce sync.Once
}

var (
	_ Member             = (*LazyStore)(nil)
	_ replicator         = (*LazyStore)(nil)
	_ replicationChecker = (*LazyStore)(nil)
	_ rewrapper          = (*LazyStore)(nil)
	_ moduleMember       = (*LazyStore)(nil)
)

// OpenLater returns a LazyStore for cfg, a token Open found away (IsAway).
// It checks now what it can without the token: the configuration (URI,
// module path, selector, PIN guard), that the module loads, and that the
// PIN source can be read (except a terminal prompt, which is only asked
// when the token is opened); each failure is an error, as Open's would be.
func OpenLater(cfg Config) (*LazyStore, error) {
	module, sel, pin, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if pin == nil {
		return nil, errors.New("token: no user PIN source (file:, env: or prompt)")
	}
	if err := pinReadable(pin); err != nil {
		return nil, fmt.Errorf("token %s: %w", sel, err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	mod, err := pkcs11shim.OpenModule(module)
	if err != nil {
		return nil, err
	}
	s := &LazyStore{mod: mod, sel: sel}
	s.lazyMember = &lazyMember{label: sel.Label, serial: sel.Serial, log: cfg.Logger, open: func(ctx context.Context) (Member, error) {
		return s.openToken(ctx, cfg)
	}}
	return s, nil
}

// pinReadable reads the PIN once and wipes it: a PIN source that cannot
// be read is a configuration mistake, refused at start rather than when
// the token comes back. A prompt is not asked here.
func pinReadable(pin PINSource) error {
	switch pin.(type) {
	case PromptPIN, *PromptPIN:
		return nil
	}
	p, err := pin.PIN()
	if err != nil {
		return err
	}
	Wipe(p)
	return nil
}

// openToken looks for the token without disturbing the module and opens
// it when it is there.
func (s *LazyStore) openToken(ctx context.Context, cfg Config) (Member, error) {
	s.tokMu.Lock()
	defer s.tokMu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("%w: %s: closed", ErrTokenNotPresent, s.name())
	}
	if _, err := s.mod.LookupToken(s.sel); err != nil {
		return nil, err
	}
	tok, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.tok = tok
	return tok.Store(), nil
}

// Opened returns the token's *Store once it is open, nil before.
func (s *LazyStore) Opened() *Store {
	if m := s.inner.Load(); m != nil {
		st, _ := m.Member.(*Store)
		return st
	}
	return nil
}

func (s *LazyStore) moduleGeneration() uint64 { return s.mod.Generation() }

// reinitializeModule re-initialises the shared module for the set's
// prober, unless the token can never be opened by this process (a PIN
// refused): then the other members are left alone.
func (s *LazyStore) reinitializeModule(seen uint64) error {
	if f := s.fatal.Load(); f != nil {
		return *f
	}
	return s.mod.Reinitialize(seen)
}

// Close closes the token if it was opened and releases the module.
func (s *LazyStore) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.tokMu.Lock()
		s.closed = true
		tok := s.tok
		s.tokMu.Unlock()
		if tok != nil {
			err = tok.Close()
		}
		if cerr := s.mod.Close(); err == nil {
			err = cerr
		}
	})
	return err
}
