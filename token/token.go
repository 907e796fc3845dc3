package token

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
)

// Kind says what sort of token holds the keys. The zero value is invalid.
type Kind int

const (
	// KindHSM is a partition of a network or PCIe HSM, logged in once for
	// the service's lifetime.
	KindHSM Kind = iota + 1
	// KindUSBKey is a removable token (USB key, smart card) used by one
	// person: its private keys carry CKA_ALWAYS_AUTHENTICATE, so every use
	// asks for the PIN again (CKU_CONTEXT_SPECIFIC), counted by the guard.
	KindUSBKey
)

func (k Kind) String() string {
	switch k {
	case KindHSM:
		return "hsm"
	case KindUSBKey:
		return "usb-key"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Config opens a token. Name the token by URI, or by Label/Serial, or
// both if they agree; conflicting selectors are refused by name.
type Config struct {
	Kind Kind
	// Module is the PKCS#11 library path; a URI's module-path may give it.
	Module string
	// URI is an RFC 7512 URI such as
	// pkcs11:token=bank?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin
	URI    string
	Label  string
	Serial string
	// PIN is the user PIN's source; a URI's pin-source may give it.
	PIN PINSource
	// PINGuard is where the PIN guard counts attempts (R-TOK-5). Required:
	// Open and OpenAdmin build the guard from it themselves, so no caller
	// can log a pool in without one, nor with counts that end with the
	// process.
	PINGuard GuardConfig
	// MaxSessions and WaitTimeout tune the session pool (see pkcs11shim).
	MaxSessions int
	WaitTimeout time.Duration
	// Logger gets operational events (never PINs). Default slog.Default().
	Logger *slog.Logger
}

// GuardConfig says where the PIN guard of a token counts (R-TOK-5): a
// bbolt file (or keysvc's etcd cluster), durable across runs, so six wrong PINs lock the token for
// every later run and every process that counts in the same file. Give
// exactly one of Path and Store. There is no in-memory counter: a count
// that ends with the process would give each run six fresh guesses.
type GuardConfig struct {
	// Path is the counter file, opened for each count and closed again
	// (FileStore): for a process that must not hold the file, such as
	// cmd/ceremony counting in keysvc's keysvc.db.
	Path string
	// Store is a counter store the caller holds open for its life
	// (BoltStore over keysvc.db, kwsign's state file; a clustered keysvc's
	// counters in etcd, etcdstore.Store.PINCounters, shared by every node).
	// It must be durable: never a count that ends with the process.
	Store CounterStore
	// Limit is the attempt limit, 1–6; 0 means MaxPINAttempts.
	Limit int
}

// Config is the GuardConfig that counts where g counts (its bbolt store or
// file, and its limit), for opening a token that shares g's counters. A
// guard over any other CounterStore gives the zero GuardConfig, which Open
// refuses.
func (g *Guard) Config() GuardConfig {
	switch st := g.store.(type) {
	case *BoltStore:
		return GuardConfig{Store: st, Limit: g.limit}
	case FileStore:
		return GuardConfig{Path: st.Path, Limit: g.limit}
	}
	return GuardConfig{}
}

// guard builds the guard gc describes.
func (gc GuardConfig) guard() (*Guard, error) {
	switch {
	case gc.Path == "" && gc.Store == nil:
		return nil, errors.New("token: a PIN guard is required: give PINGuard.Path (a bbolt counter file) or PINGuard.Store")
	case gc.Path != "" && gc.Store != nil:
		return nil, errors.New("token: conflicting PIN guard stores: give PINGuard.Path or PINGuard.Store, not both")
	case gc.Store != nil:
		return NewGuard(gc.Store, gc.Limit)
	}
	if !filepath.IsAbs(gc.Path) {
		return nil, fmt.Errorf("token: the PIN guard file %q must be an absolute path", gc.Path)
	}
	return NewGuard(FileStore{Path: gc.Path}, gc.Limit)
}

// Admin is a token opened for administration, without a user login: PIN
// unlock and change, live information. A locked token can still be opened
// this way (it is how it gets unlocked).
type Admin struct {
	cfg   Config
	guard *Guard // built from cfg.PINGuard
	sel   pkcs11shim.Selector
	mod   *pkcs11shim.Module
	info  pkcs11shim.TokenInfo // identity as found at open (serial is stable)
	log   *slog.Logger

	closeOnce sync.Once
	closeErr  error
}

// Token is an open token: a session pool logged in through the PIN guard,
// plus everything Admin offers.
type Token struct {
	*Admin
	pool *pkcs11shim.Pool
}

// resolve merges Config and URI into a module path, selector and PIN source.
func (c Config) resolve() (string, pkcs11shim.Selector, PINSource, error) {
	sel := pkcs11shim.Selector{Label: c.Label, Serial: c.Serial}
	module, pin := c.Module, c.PIN
	if c.URI != "" {
		u, err := pkcs11shim.ParseURI(c.URI)
		if err != nil {
			return "", sel, nil, err
		}
		us := pkcs11shim.Selector{Label: u.Token, Serial: u.Serial, Manufacturer: u.Manufacturer, Model: u.Model}
		if sel, err = sel.Merge(us); err != nil {
			return "", sel, nil, err
		}
		if sel.Label == "" && sel.Serial == "" && u.SlotID != nil {
			return "", sel, nil, fmt.Errorf("%w: slot-id alone does not name a token (slot ids move): add token= or serial=", pkcs11shim.ErrInvalidURI)
		}
		if u.ModulePath != "" {
			if module != "" && module != u.ModulePath {
				return "", sel, nil, fmt.Errorf("token: conflicting module path: config %q, URI module-path %q", module, u.ModulePath)
			}
			module = u.ModulePath
		}
		if u.ModuleName != "" {
			if module == "" {
				return "", sel, nil, errors.New("token: URI module-name needs the module's full path too: give module-path or the config module")
			}
			if filepath.Base(module) != u.ModuleName {
				return "", sel, nil, fmt.Errorf("token: conflicting module: %q, URI module-name %q", module, u.ModuleName)
			}
		}
		if u.PINSource != "" {
			if pin != nil {
				return "", sel, nil, errors.New("token: conflicting PIN sources: both the config and the URI's pin-source give one")
			}
			if pin, err = ParsePINSource(u.PINSource); err != nil {
				return "", sel, nil, err
			}
		}
	}
	switch {
	case c.Kind != KindHSM && c.Kind != KindUSBKey:
		return "", sel, nil, fmt.Errorf("token: kind must be hsm or usb-key")
	case module == "":
		return "", sel, nil, errors.New("token: no PKCS#11 module path (config module or URI module-path)")
	case sel.Label == "" && sel.Serial == "":
		return "", sel, nil, errors.New("token: name the token by label or serial (token= or serial= in a URI); slot ids move and are not accepted")
	}
	if _, err := c.PINGuard.guard(); err != nil {
		return "", sel, nil, err
	}
	return module, sel, pin, nil
}

// OpenAdmin loads the module and finds the token, without logging in.
func OpenAdmin(cfg Config) (*Admin, error) {
	module, sel, pin, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	return openAdmin(cfg, module, sel, pin)
}

func openAdmin(cfg Config, module string, sel pkcs11shim.Selector, pin PINSource) (*Admin, error) {
	guard, err := cfg.PINGuard.guard()
	if err != nil {
		return nil, err
	}
	cfg.PIN = pin
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	mod, err := pkcs11shim.OpenModule(module)
	if err != nil {
		return nil, err
	}
	info, err := mod.FindToken(sel)
	if err != nil {
		mod.Close()
		return nil, err
	}
	return &Admin{cfg: cfg, guard: guard, sel: pkcs11shim.Selector{Label: info.Label, Serial: info.Serial}, mod: mod, info: info,
		log: cfg.Logger.With("token", info.Label, "serial", info.Serial)}, nil
}

// Open loads the module, finds the token and logs in through the guard.
func Open(ctx context.Context, cfg Config) (*Token, error) {
	module, sel, pin, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if pin == nil {
		return nil, errors.New("token: no user PIN source (file:, env: or prompt)")
	}
	a, err := openAdmin(cfg, module, sel, pin)
	if err != nil {
		return nil, err
	}
	t := &Token{Admin: a}
	t.pool, err = pkcs11shim.NewPool(ctx, a.mod, pkcs11shim.PoolConfig{
		Selector:     a.sel,
		MaxSessions:  cfg.MaxSessions,
		WaitTimeout:  cfg.WaitTimeout,
		Authenticate: t.authenticate,
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	return t, nil
}

// userID is the guard counter of the user PIN.
func (t *Admin) userID() string { return PINID(t.info, pkcs11shim.UserNormal) }

// soID is the guard counter of the SO PIN.
func (t *Admin) soID() string { return PINID(t.info, pkcs11shim.UserSO) }

// authenticate is the pool's Authenticator: one guarded user login.
func (t *Token) authenticate(_ context.Context, login pkcs11shim.LoginFunc) error {
	if ti, err := t.liveInfo(); err == nil && ti.Flags.UserPINLocked {
		if err := t.guard.MarkLocked(t.userID(), "the module reports CKF_USER_PIN_LOCKED"); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s (module flag CKF_USER_PIN_LOCKED)", ErrPINLocked, t.userID())
	}
	return t.guarded(t.userID(), func(pin []byte) error { return login(pin) })
}

// ContextAuth returns the per-operation login for always-authenticate keys
// (USB keys): the PIN is read from the source each time and counted. It runs
// inside a lent session, so it makes no other call into the module; a
// module-side lock shows up as CKR_PIN_LOCKED from the login itself.
func (t *Token) ContextAuth() pkcs11shim.ContextAuth {
	return func(login pkcs11shim.LoginFunc) error {
		return t.guarded(t.userID(), func(pin []byte) error { return login(pin) })
	}
}

// guarded reads the PIN from the source and makes one counted attempt.
func (t *Token) guarded(id string, try func(pin []byte) error) error {
	return t.guard.Attempt(id, func() error {
		pin, err := t.cfg.PIN.PIN()
		if err != nil {
			return err
		}
		defer Wipe(pin)
		err = try(pin)
		if errors.Is(err, ErrPINIncorrect) {
			t.log.Warn("wrong user PIN", "counter", id)
		}
		return err
	})
}

// liveInfo reads the token's flags now (not from the pool's cache). It
// never re-initialises the module (it runs during pool recovery).
func (t *Admin) liveInfo() (pkcs11shim.TokenInfo, error) {
	return t.mod.LookupToken(t.sel)
}

// Guard returns the PIN guard Open or OpenAdmin built from Config.PINGuard.
func (t *Admin) Guard() *Guard { return t.guard }

// Pool returns the session pool for key operations.
func (t *Token) Pool() *pkcs11shim.Pool { return t.pool }

// Kind returns the token's kind.
func (t *Admin) Kind() Kind { return t.cfg.Kind }

// Info returns the token's live information (PIN flags decoded).
func (t *Admin) Info() (pkcs11shim.TokenInfo, error) { return t.liveInfo() }

// PINState returns the guard's state of the user PIN.
func (t *Admin) PINState() (PINState, error) { return t.guard.State(t.userID()) }

// Unlock sets a new user PIN with the security officer's PIN (C_InitPIN)
// and clears the lockout (R-TOK-5). The SO PIN is itself guarded. The new
// PIN must pass CheckPIN (R-TOK-4). The unlock is recorded; an open Token
// logs in again with Relogin once its PIN source yields the new PIN.
func (t *Admin) Unlock(soPIN, newUserPIN []byte, officer string) error {
	if err := CheckPIN(newUserPIN, nil); err != nil {
		return err
	}
	err := t.guard.Attempt(t.soID(), func() error { return t.mod.InitPIN(t.sel, soPIN, newUserPIN) })
	if err != nil {
		return err
	}
	if err := t.guard.Reset(t.userID(), "user PIN reset by security officer "+officer); err != nil {
		return err
	}
	t.log.Info("user PIN unlocked by security officer", "officer", officer)
	return nil
}

// ChangePIN changes the user PIN (C_SetPIN); the old PIN's check is a
// guarded attempt, and the new PIN must pass CheckPIN (R-TOK-4).
func (t *Admin) ChangePIN(oldPIN, newPIN []byte) error {
	if err := CheckPIN(newPIN, oldPIN); err != nil {
		return err
	}
	err := t.guard.Attempt(t.userID(), func() error {
		return t.mod.SetPIN(t.sel, pkcs11shim.UserNormal, oldPIN, newPIN)
	})
	if err == nil {
		_ = t.guard.store.Record(Event{At: time.Now(), Token: t.userID(), Kind: "pin-changed"})
	}
	return err
}

// Relogin clears a latched login failure and logs in again (one guarded
// attempt), e.g. after Unlock and a PIN-source update.
func (t *Token) Relogin(ctx context.Context) error { return t.pool.Reauthenticate(ctx) }

// Close closes the pool and drops the module reference.
func (t *Token) Close() error {
	return errors.Join(t.pool.Close(), t.Admin.Close())
}

// Close drops the module reference. Calling it again does nothing.
func (t *Admin) Close() error {
	t.closeOnce.Do(func() { t.closeErr = t.mod.Close() })
	return t.closeErr
}

// WrapForBackup wraps the token keys labelled labels under a trusted KEK
// made from kek, for the backup ceremony (issue 13, R-AV-3): in one
// session the SO logs in with soPIN (a guarded attempt on the SO counter,
// as Unlock makes), creates the KEK with CKA_TRUSTED, wrap-only, logs out;
// the user logs in with userPIN (a guarded attempt on the user counter);
// each key is wrapped; the KEK is destroyed. No pool of this process may be
// logged in to the token at the time (pkcs11shim.ErrLoggedIn, before any
// PIN is tried). See pkcs11shim.WrapUnderTrustedKEK.
func (t *Admin) WrapForBackup(soPIN, userPIN, kek []byte, labels []string) ([]pkcs11shim.WrappedKey, error) {
	so := func(login pkcs11shim.LoginFunc) error {
		return t.guard.Attempt(t.soID(), func() error { return login(soPIN) })
	}
	user := func(login pkcs11shim.LoginFunc) error {
		return t.guard.Attempt(t.userID(), func() error { return login(userPIN) })
	}
	return t.mod.WrapUnderTrustedKEK(t.sel, kek, labels, so, user)
}
