package pkcs11shim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"
)

// PKCtx is the part of *pkcs11.Ctx this package calls. It exists so pure
// logic (error mapping, pool bookkeeping, PIN guarding above) can be tested
// with a fake; real behaviour is proven against SoftHSM2 in softhsm-tests.
type PKCtx interface {
	Initialize(opts ...pkcs11.InitializeOption) error
	Finalize() error
	Destroy()
	GetInfo() (pkcs11.Info, error)
	GetSlotList(tokenPresent bool) ([]uint, error)
	GetSlotInfo(slotID uint) (pkcs11.SlotInfo, error)
	GetTokenInfo(slotID uint) (pkcs11.TokenInfo, error)
	GetMechanismList(slotID uint) ([]*pkcs11.Mechanism, error)
	InitToken(slotID uint, pin string, label string) error
	InitPIN(sh pkcs11.SessionHandle, pin string) error
	SetPIN(sh pkcs11.SessionHandle, oldpin string, newpin string) error
	OpenSession(slotID uint, flags uint) (pkcs11.SessionHandle, error)
	CloseSession(sh pkcs11.SessionHandle) error
	GetSessionInfo(sh pkcs11.SessionHandle) (pkcs11.SessionInfo, error)
	Login(sh pkcs11.SessionHandle, userType uint, pin string) error
	Logout(sh pkcs11.SessionHandle) error
	DestroyObject(sh pkcs11.SessionHandle, oh pkcs11.ObjectHandle) error
	GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error)
	FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error
	FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error)
	FindObjectsFinal(sh pkcs11.SessionHandle) error
	EncryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Encrypt(sh pkcs11.SessionHandle, message []byte) ([]byte, error)
	DecryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Decrypt(sh pkcs11.SessionHandle, cipher []byte) ([]byte, error)
	SignInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Sign(sh pkcs11.SessionHandle, message []byte) ([]byte, error)
	VerifyInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, key pkcs11.ObjectHandle) error
	Verify(sh pkcs11.SessionHandle, data []byte, signature []byte) error
	GenerateKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	GenerateKeyPair(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, public, private []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error)
	WrapKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, wrappingkey, key pkcs11.ObjectHandle) ([]byte, error)
	UnwrapKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, unwrappingkey pkcs11.ObjectHandle, wrappedkey []byte, a []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	GenerateRandom(sh pkcs11.SessionHandle, length int) ([]byte, error)
}

var _ PKCtx = (*pkcs11.Ctx)(nil)

// DefaultMinReinitInterval is how often, at most, a module is finalised and
// initialised again while a token is missing. A dead HSM connection must not
// be hammered by every request.
const DefaultMinReinitInterval = time.Second

// Module is one loaded PKCS#11 library. Open it with OpenModule; every
// OpenModule of the same path returns the same *Module (reference-counted),
// because C_Initialize/C_Finalize are process-wide for a library.
//
// # Concurrency
//
// Every call into the library runs under a read lock; Reinitialize takes the
// write lock, so C_Finalize never runs while another goroutine is inside the
// module. Each re-initialisation bumps Generation: sessions and object handles
// from an older generation are dead and are dropped, never reused (a stale
// handle could name a different object after re-initialisation).
type Module struct {
	path string
	ctx  PKCtx

	mu  sync.RWMutex // R: any call into ctx; W: Finalize + Initialize
	gen atomic.Uint64

	// MinReinitInterval rate-limits Reinitialize. Set before use.
	MinReinitInterval time.Duration
	reinitMu          sync.Mutex
	lastReinit        time.Time
	// now is the rate limit's clock: time.Now unless a test sets it.
	now func() time.Time

	refs int // guarded by modulesMu
}

var (
	modulesMu sync.Mutex
	modules   = map[string]*Module{}
)

// OpenModule loads the PKCS#11 library at path (once per process) and
// initialises it, tolerating CKR_CRYPTOKI_ALREADY_INITIALIZED. Each
// successful OpenModule must be paired with Close.
func OpenModule(path string) (*Module, error) {
	if path == "" || !filepath.IsAbs(path) {
		return nil, fmt.Errorf("%w: module path %q must be absolute", ErrModuleLoad, path)
	}
	path = filepath.Clean(path)
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if m, ok := modules[path]; ok {
		m.refs++
		return m, nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: %s: file not found or unreadable (is the package installed? for SoftHSM2: apt-get install softhsm2)", ErrModuleLoad, path)
	}
	ctx := pkcs11.New(path)
	if ctx == nil { // miekg/pkcs11 returns nil when dlopen or C_GetFunctionList fails
		return nil, fmt.Errorf("%w: %s: dlopen failed (not a PKCS#11 library, wrong architecture, or a missing dependency)", ErrModuleLoad, path)
	}
	m, err := newModule(path, ctx)
	if err != nil {
		ctx.Destroy()
		return nil, err
	}
	m.refs = 1
	modules[path] = m
	return m, nil
}

// newModule initialises ctx; tests use it with a fake PKCtx.
func newModule(path string, ctx PKCtx) (*Module, error) {
	m := &Module{path: path, ctx: ctx, MinReinitInterval: DefaultMinReinitInterval}
	if err := initialize(ctx); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrModuleLoad, path, err)
	}
	m.gen.Store(1)
	return m, nil
}

func initialize(ctx PKCtx) error {
	err := ctx.Initialize()
	if errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		return nil
	}
	return wrapErr("C_Initialize", err)
}

// Path returns the library path.
func (m *Module) Path() string { return m.path }

// Generation increases with every re-initialisation of the module.
func (m *Module) Generation() uint64 { return m.gen.Load() }

// Close drops one reference; the last one finalises and unloads the library.
func (m *Module) Close() error {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m.refs--
	if m.refs > 0 {
		return nil
	}
	delete(modules, m.path)
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.ctx.Finalize()
	m.ctx.Destroy()
	m.gen.Add(1)
	if err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)) {
		return wrapErr("C_Finalize", err)
	}
	return nil
}

// Reinitialize finalises and initialises the module again, so tokens that
// came back (or were created by another process) become visible. seen is the
// generation the caller observed failing: if someone already re-initialised
// since, nothing is done. Calls closer together than MinReinitInterval return
// ErrTokenNotPresent without touching the module.
func (m *Module) Reinitialize(seen uint64) error {
	m.reinitMu.Lock()
	defer m.reinitMu.Unlock()
	if m.gen.Load() != seen {
		return nil
	}
	now := time.Now
	if m.now != nil {
		now = m.now
	}
	if since := now().Sub(m.lastReinit); since < m.MinReinitInterval {
		return fmt.Errorf("%w: module %s re-initialised %v ago; waiting before the next try", ErrTokenNotPresent, m.path, since.Round(time.Millisecond))
	}
	m.lastReinit = now()
	m.mu.Lock()
	defer m.mu.Unlock()
	_ = m.ctx.Finalize() // may already be finalised under us; Initialize tells the truth
	m.gen.Add(1)
	return initialize(m.ctx)
}

// Finalize calls C_Finalize without unloading or re-initialising, leaving
// every session dead. It exists for recovery tests ("module finalised under
// the pool") and for orderly shutdown drills; production code uses Close.
func (m *Module) Finalize() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return wrapErr("C_Finalize", m.ctx.Finalize())
}

// call runs fn under the module's read lock.
func (m *Module) call(fn func(ctx PKCtx) error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return fn(m.ctx)
}
