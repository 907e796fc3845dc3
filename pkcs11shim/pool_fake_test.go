package pkcs11shim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

// This file tests the pool's bookkeeping against a fake PKCtx. The fake
// models only what the pool relies on (slot list, sessions, application-wide
// login state, C_Finalize killing every session); real module behaviour is
// proven against SoftHSM2 in softhsm-tests.

const fakePIN = "1234"

// fakeToken is one token of the fake module.
type fakeToken struct {
	slot    uint
	label   string
	serial  string
	present bool // physically there
	visible bool // in the module's view; C_Initialize refreshes it from present
	blank   bool // not initialised (no CKF_TOKEN_INITIALIZED)
}

// fakeLogin records one C_Login.
type fakeLogin struct {
	h        pkcs11.SessionHandle
	userType uint
	pin      string
	open     bool // h was an open session at the time
	slot     uint // its slot
}

// fakeCtx implements PKCtx with counters and injectable failures.
type fakeCtx struct {
	mu          sync.Mutex
	initialized bool
	tokens      []*fakeToken
	pin         string
	loginErr    error // when set, every C_Login returns it
	openErr     error // when set, every C_OpenSession returns it
	loggedIn    bool
	nextH       pkcs11.SessionHandle
	open        map[pkcs11.SessionHandle]uint // open session → slot
	closeCalls  []pkcs11.SessionHandle        // every C_CloseSession argument
	calls       map[string]int
	logins      []fakeLogin
}

var _ PKCtx = (*fakeCtx)(nil)

func newFakeCtx(tokens ...*fakeToken) *fakeCtx {
	if len(tokens) == 0 {
		tokens = []*fakeToken{{slot: 0, label: "bank", serial: "0001", present: true}}
	}
	return &fakeCtx{tokens: tokens, pin: fakePIN, nextH: 100, open: map[pkcs11.SessionHandle]uint{}, calls: map[string]int{}}
}

var errFakeNotSupported = pkcs11.Error(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)

func (f *fakeCtx) enter(op string) func() {
	f.mu.Lock()
	f.calls[op]++
	return f.mu.Unlock
}

// visibleAt returns the token the module sees in slot, if any. f.mu is held.
func (f *fakeCtx) visibleAt(slot uint) *fakeToken {
	for _, t := range f.tokens {
		if t.visible && t.slot == slot {
			return t
		}
	}
	return nil
}

func (f *fakeCtx) Initialize(...pkcs11.InitializeOption) error {
	defer f.enter("Initialize")()
	if f.initialized {
		return pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)
	}
	f.initialized = true
	for _, t := range f.tokens {
		t.visible = t.present
	}
	return nil
}

func (f *fakeCtx) Finalize() error {
	defer f.enter("Finalize")()
	if !f.initialized {
		return pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)
	}
	f.initialized, f.loggedIn = false, false
	clear(f.open)
	return nil
}

func (f *fakeCtx) Destroy() { defer f.enter("Destroy")() }

func (f *fakeCtx) GetInfo() (pkcs11.Info, error) {
	defer f.enter("GetInfo")()
	return pkcs11.Info{ManufacturerID: "Fake"}, nil
}

func (f *fakeCtx) GetSlotList(bool) ([]uint, error) {
	defer f.enter("GetSlotList")()
	if !f.initialized {
		return nil, pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)
	}
	var out []uint
	for _, t := range f.tokens {
		if t.visible {
			out = append(out, t.slot)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (f *fakeCtx) GetSlotInfo(slot uint) (pkcs11.SlotInfo, error) {
	defer f.enter("GetSlotInfo")()
	if !f.initialized {
		return pkcs11.SlotInfo{}, pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)
	}
	if f.visibleAt(slot) == nil {
		return pkcs11.SlotInfo{}, pkcs11.Error(pkcs11.CKR_SLOT_ID_INVALID)
	}
	return pkcs11.SlotInfo{SlotDescription: fmt.Sprintf("fake slot %d", slot), Flags: pkcs11.CKF_TOKEN_PRESENT | pkcs11.CKF_REMOVABLE_DEVICE}, nil
}

func (f *fakeCtx) GetTokenInfo(slot uint) (pkcs11.TokenInfo, error) {
	defer f.enter("GetTokenInfo")()
	if !f.initialized {
		return pkcs11.TokenInfo{}, pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)
	}
	t := f.visibleAt(slot)
	if t == nil {
		return pkcs11.TokenInfo{}, pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT)
	}
	flags := uint(pkcs11.CKF_TOKEN_INITIALIZED | pkcs11.CKF_LOGIN_REQUIRED | pkcs11.CKF_USER_PIN_INITIALIZED | pkcs11.CKF_RNG)
	if t.blank {
		flags = pkcs11.CKF_RNG | pkcs11.CKF_LOGIN_REQUIRED
	}
	return pkcs11.TokenInfo{
		Label:          fmt.Sprintf("%-32s", t.label), // blank-padded, as modules return it
		SerialNumber:   fmt.Sprintf("%-16s", t.serial),
		ManufacturerID: "Fake",
		Model:          "Fake",
		Flags:          flags,
	}, nil
}

func (f *fakeCtx) OpenSession(slot uint, flags uint) (pkcs11.SessionHandle, error) {
	defer f.enter("OpenSession")()
	if !f.initialized {
		return 0, pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)
	}
	if f.openErr != nil {
		return 0, f.openErr
	}
	if flags&pkcs11.CKF_SERIAL_SESSION == 0 {
		return 0, pkcs11.Error(pkcs11.CKR_SESSION_PARALLEL_NOT_SUPPORTED)
	}
	if f.visibleAt(slot) == nil {
		return 0, pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT)
	}
	f.nextH++
	f.open[f.nextH] = slot
	return f.nextH, nil
}

func (f *fakeCtx) CloseSession(h pkcs11.SessionHandle) error {
	defer f.enter("CloseSession")()
	f.closeCalls = append(f.closeCalls, h)
	if !f.initialized {
		return pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)
	}
	if _, ok := f.open[h]; !ok {
		return pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)
	}
	delete(f.open, h)
	if len(f.open) == 0 { // closing the last session logs the application out
		f.loggedIn = false
	}
	return nil
}

func (f *fakeCtx) Login(h pkcs11.SessionHandle, userType uint, pin string) error {
	defer f.enter("Login")()
	slot, open := f.open[h]
	f.logins = append(f.logins, fakeLogin{h: h, userType: userType, pin: pin, open: open, slot: slot})
	switch {
	case !f.initialized:
		return pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)
	case !open:
		return pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)
	case f.loginErr != nil:
		return f.loginErr
	case pin != f.pin:
		return pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)
	case f.loggedIn:
		return pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)
	}
	f.loggedIn = true
	return nil
}

func (f *fakeCtx) GetSessionInfo(h pkcs11.SessionHandle) (pkcs11.SessionInfo, error) {
	defer f.enter("GetSessionInfo")()
	slot, open := f.open[h]
	if !open {
		return pkcs11.SessionInfo{}, pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)
	}
	state := uint(pkcs11.CKS_RW_PUBLIC_SESSION)
	if f.loggedIn {
		state = pkcs11.CKS_RW_USER_FUNCTIONS
	}
	return pkcs11.SessionInfo{SlotID: slot, State: state, Flags: pkcs11.CKF_RW_SESSION | pkcs11.CKF_SERIAL_SESSION}, nil
}

func (f *fakeCtx) Logout(pkcs11.SessionHandle) error {
	defer f.enter("Logout")()
	f.loggedIn = false
	return nil
}

// The pool never calls the operations below; they only complete PKCtx.

func (f *fakeCtx) GetMechanismList(uint) ([]*pkcs11.Mechanism, error) {
	defer f.enter("GetMechanismList")()
	return nil, errFakeNotSupported
}
func (f *fakeCtx) InitToken(uint, string, string) error {
	defer f.enter("InitToken")()
	return errFakeNotSupported
}
func (f *fakeCtx) InitPIN(pkcs11.SessionHandle, string) error {
	defer f.enter("InitPIN")()
	return errFakeNotSupported
}
func (f *fakeCtx) SetPIN(pkcs11.SessionHandle, string, string) error {
	defer f.enter("SetPIN")()
	return errFakeNotSupported
}
func (f *fakeCtx) DestroyObject(pkcs11.SessionHandle, pkcs11.ObjectHandle) error {
	defer f.enter("DestroyObject")()
	return errFakeNotSupported
}
func (f *fakeCtx) GetAttributeValue(pkcs11.SessionHandle, pkcs11.ObjectHandle, []*pkcs11.Attribute) ([]*pkcs11.Attribute, error) {
	defer f.enter("GetAttributeValue")()
	return nil, errFakeNotSupported
}
func (f *fakeCtx) FindObjectsInit(pkcs11.SessionHandle, []*pkcs11.Attribute) error {
	defer f.enter("FindObjectsInit")()
	return errFakeNotSupported
}
func (f *fakeCtx) FindObjects(pkcs11.SessionHandle, int) ([]pkcs11.ObjectHandle, bool, error) {
	defer f.enter("FindObjects")()
	return nil, false, errFakeNotSupported
}
func (f *fakeCtx) FindObjectsFinal(pkcs11.SessionHandle) error {
	defer f.enter("FindObjectsFinal")()
	return errFakeNotSupported
}
func (f *fakeCtx) EncryptInit(pkcs11.SessionHandle, []*pkcs11.Mechanism, pkcs11.ObjectHandle) error {
	defer f.enter("EncryptInit")()
	return errFakeNotSupported
}
func (f *fakeCtx) Encrypt(pkcs11.SessionHandle, []byte) ([]byte, error) {
	defer f.enter("Encrypt")()
	return nil, errFakeNotSupported
}
func (f *fakeCtx) DecryptInit(pkcs11.SessionHandle, []*pkcs11.Mechanism, pkcs11.ObjectHandle) error {
	defer f.enter("DecryptInit")()
	return errFakeNotSupported
}
func (f *fakeCtx) Decrypt(pkcs11.SessionHandle, []byte) ([]byte, error) {
	defer f.enter("Decrypt")()
	return nil, errFakeNotSupported
}
func (f *fakeCtx) SignInit(pkcs11.SessionHandle, []*pkcs11.Mechanism, pkcs11.ObjectHandle) error {
	defer f.enter("SignInit")()
	return errFakeNotSupported
}
func (f *fakeCtx) Sign(pkcs11.SessionHandle, []byte) ([]byte, error) {
	defer f.enter("Sign")()
	return nil, errFakeNotSupported
}
func (f *fakeCtx) VerifyInit(pkcs11.SessionHandle, []*pkcs11.Mechanism, pkcs11.ObjectHandle) error {
	defer f.enter("VerifyInit")()
	return errFakeNotSupported
}
func (f *fakeCtx) Verify(pkcs11.SessionHandle, []byte, []byte) error {
	defer f.enter("Verify")()
	return errFakeNotSupported
}
func (f *fakeCtx) GenerateKey(pkcs11.SessionHandle, []*pkcs11.Mechanism, []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	defer f.enter("GenerateKey")()
	return 0, errFakeNotSupported
}
func (f *fakeCtx) GenerateKeyPair(pkcs11.SessionHandle, []*pkcs11.Mechanism, []*pkcs11.Attribute, []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error) {
	defer f.enter("GenerateKeyPair")()
	return 0, 0, errFakeNotSupported
}
func (f *fakeCtx) WrapKey(pkcs11.SessionHandle, []*pkcs11.Mechanism, pkcs11.ObjectHandle, pkcs11.ObjectHandle) ([]byte, error) {
	defer f.enter("WrapKey")()
	return nil, errFakeNotSupported
}
func (f *fakeCtx) UnwrapKey(pkcs11.SessionHandle, []*pkcs11.Mechanism, pkcs11.ObjectHandle, []byte, []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	defer f.enter("UnwrapKey")()
	return 0, errFakeNotSupported
}
func (f *fakeCtx) GenerateRandom(pkcs11.SessionHandle, int) ([]byte, error) {
	defer f.enter("GenerateRandom")()
	return nil, errFakeNotSupported
}

// --- fake helpers (all take f.mu) ---

func (f *fakeCtx) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fakeCtx) loginLog() []fakeLogin {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.logins)
}

func (f *fakeCtx) openSessions() map[pkcs11.SessionHandle]uint {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[pkcs11.SessionHandle]uint, len(f.open))
	for h, s := range f.open {
		out[h] = s
	}
	return out
}

func (f *fakeCtx) closedHandles() []pkcs11.SessionHandle {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.closeCalls)
}

func (f *fakeCtx) set(fn func(f *fakeCtx)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// removeToken unplugs every token: the module stops seeing it at once.
func (f *fakeCtx) removeToken() {
	f.set(func(f *fakeCtx) {
		for _, t := range f.tokens {
			t.present, t.visible = false, false
		}
	})
}

// insertToken plugs the first token back in, in slot. With needsReinit the
// module sees it only after the next C_Initialize.
func (f *fakeCtx) insertToken(slot uint, needsReinit bool) {
	f.set(func(f *fakeCtx) {
		t := f.tokens[0]
		t.slot, t.present, t.visible = slot, true, !needsReinit
	})
}

// fakeAuth is an Authenticator that counts its calls. With err set it fails
// without calling login (as the PIN guard does when it refuses).
type fakeAuth struct {
	mu    sync.Mutex
	calls int
	pin   string
	err   error
}

func (a *fakeAuth) authenticate(_ context.Context, login LoginFunc) error {
	a.mu.Lock()
	a.calls++
	pin, err := a.pin, a.err
	a.mu.Unlock()
	if err != nil {
		return err
	}
	return login([]byte(pin))
}

func (a *fakeAuth) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

func (a *fakeAuth) set(pin string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pin, a.err = pin, err
}

func newFakeModule(t *testing.T, f *fakeCtx, minReinit time.Duration) *Module {
	t.Helper()
	m, err := newModule("/fake/libfake.so", f)
	if err != nil {
		t.Fatalf("newModule: %v", err)
	}
	m.MinReinitInterval = minReinit
	return m
}

func newFakePool(t *testing.T, m *Module, cfg PoolConfig) *Pool {
	t.Helper()
	if cfg.Selector == (Selector{}) {
		cfg.Selector = Selector{Label: "bank"}
	}
	p, err := NewPool(context.Background(), m, cfg)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// breakPool makes one closure fail with CKR_TOKEN_NOT_PRESENT (running
// before, if given, inside the closure) and checks the pool noticed.
func breakPool(t *testing.T, p *Pool, before func()) {
	t.Helper()
	calls := 0
	err := p.WithSession(context.Background(), func(s *Session) error {
		calls++
		if before != nil {
			before()
		}
		return wrapErr("C_SignInit", pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT))
	})
	if !errors.Is(err, ErrTokenNotPresent) {
		t.Fatalf("WithSession = %v, want ErrTokenNotPresent", err)
	}
	if calls != 1 {
		t.Fatalf("a token-not-present closure ran %d times, want 1 (never retried)", calls)
	}
	if p.Stats().Healthy {
		t.Fatal("pool still healthy after CKR_TOKEN_NOT_PRESENT")
	}
}

func noop(*Session) error { return nil }

// warmIdle runs n closures at once, so n sessions end up idle.
func warmIdle(t *testing.T, p *Pool, n int) {
	t.Helper()
	var entered sync.WaitGroup
	entered.Add(n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := p.WithSession(context.Background(), func(*Session) error {
				entered.Done()
				entered.Wait()
				return nil
			}); err != nil {
				t.Errorf("warmIdle: %v", err)
			}
		})
	}
	wg.Wait()
	if st := p.Stats(); st.Idle != n {
		t.Fatalf("%d idle sessions after warm-up, want %d", st.Idle, n)
	}
}

// (1) NewPool authenticates exactly once, with exactly one C_Login.
func TestPoolNewAuthenticatesOnce(t *testing.T) {
	tests := []struct {
		name     string
		pin      string
		loginErr error
		wantErr  error // nil: NewPool succeeds
	}{
		{"correct PIN", fakePIN, nil, nil},
		{"already logged in counts as success", fakePIN, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN), nil},
		{"wrong PIN", "0000", nil, ErrPINIncorrect},
		{"PIN locked", fakePIN, pkcs11.Error(pkcs11.CKR_PIN_LOCKED), ErrPINLocked},
		{"PIN expired", fakePIN, pkcs11.Error(pkcs11.CKR_PIN_EXPIRED), ErrPINInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeCtx()
			f.loginErr = tt.loginErr
			m := newFakeModule(t, f, time.Hour)
			auth := &fakeAuth{pin: tt.pin}
			p, err := NewPool(context.Background(), m, PoolConfig{Selector: Selector{Label: "bank"}, Authenticate: auth.authenticate})
			if p != nil {
				t.Cleanup(func() { _ = p.Close() })
			}
			if got := auth.count(); got != 1 {
				t.Errorf("Authenticator called %d times, want 1", got)
			}
			logins := f.loginLog()
			if len(logins) != 1 {
				t.Fatalf("C_Login called %d times, want exactly 1", len(logins))
			}
			if l := logins[0]; l.userType != pkcs11.CKU_USER || l.pin != tt.pin || !l.open || l.slot != 0 {
				t.Errorf("C_Login(%+v), want CKU_USER with the Authenticator's PIN on an open session of slot 0", l)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("NewPool: %v", err)
				}
				if _, open := f.openSessions()[logins[0].h]; !open {
					t.Error("the anchor session the login ran on was closed: the login would be lost")
				}
				if err := p.WithSession(context.Background(), noop); err != nil {
					t.Fatalf("WithSession: %v", err)
				}
				if auth.count() != 1 || f.count("Login") != 1 {
					t.Errorf("WithSession logged in again: %d authenticator calls, %d C_Login", auth.count(), f.count("Login"))
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("NewPool = %v, want %v", err, tt.wantErr)
			}
			if p != nil {
				t.Fatal("NewPool returned a pool with an error")
			}
			if open := f.openSessions(); len(open) != 0 {
				t.Errorf("failed NewPool left sessions open: %v", open)
			}
		})
	}

	t.Run("no authenticator: no login", func(t *testing.T) {
		f := newFakeCtx()
		p := newFakePool(t, newFakeModule(t, f, time.Hour), PoolConfig{})
		if err := p.WithSession(context.Background(), noop); err != nil {
			t.Fatal(err)
		}
		if n := f.count("Login"); n != 0 {
			t.Fatalf("C_Login called %d times without an Authenticator", n)
		}
	})

	t.Run("uninitialised token with the same label is skipped", func(t *testing.T) {
		f := newFakeCtx(
			&fakeToken{slot: 0, label: "bank", serial: "0001", present: true, blank: true},
			&fakeToken{slot: 5, label: "bank", serial: "0005", present: true},
		)
		p := newFakePool(t, newFakeModule(t, f, time.Hour), PoolConfig{})
		var slot uint
		if err := p.WithSession(context.Background(), func(s *Session) error { slot = s.slot; return nil }); err != nil {
			t.Fatal(err)
		}
		if slot != 5 || p.Info().Serial != "0005" {
			t.Fatalf("pool on slot %d serial %q, want the initialised token in slot 5", slot, p.Info().Serial)
		}
	})

	t.Run("two tokens with the label are ambiguous; serial chooses", func(t *testing.T) {
		f := newFakeCtx(
			&fakeToken{slot: 1, label: "bank", serial: "0001", present: true},
			&fakeToken{slot: 2, label: "bank", serial: "0002", present: true},
		)
		m := newFakeModule(t, f, time.Hour)
		if _, err := NewPool(context.Background(), m, PoolConfig{Selector: Selector{Label: "bank"}}); !errors.Is(err, ErrTokenAmbiguous) {
			t.Fatalf("NewPool = %v, want ErrTokenAmbiguous", err)
		}
		if n := f.count("OpenSession"); n != 0 {
			t.Fatalf("%d sessions opened on an ambiguous selector", n)
		}
		p := newFakePool(t, m, PoolConfig{Selector: Selector{Label: "bank", Serial: "0002"}})
		if p.Info().SlotID != 2 {
			t.Fatalf("pool on slot %d, want 2", p.Info().SlotID)
		}
	})

	t.Run("token not found", func(t *testing.T) {
		f := newFakeCtx()
		auth := &fakeAuth{pin: fakePIN}
		_, err := NewPool(context.Background(), newFakeModule(t, f, time.Hour), PoolConfig{Selector: Selector{Label: "other"}, Authenticate: auth.authenticate})
		if !errors.Is(err, ErrTokenNotFound) || !errors.Is(err, ErrTokenNotPresent) {
			t.Fatalf("NewPool = %v, want ErrTokenNotPresent wrapping ErrTokenNotFound", err)
		}
		if auth.count() != 0 || f.count("Login") != 0 || f.count("OpenSession") != 0 {
			t.Fatalf("auth %d, C_Login %d, C_OpenSession %d; want none", auth.count(), f.count("Login"), f.count("OpenSession"))
		}
	})
}

// (2) A PIN error from the Authenticator is latched; only Reauthenticate
// tries again.
func TestPoolPINErrorLatched(t *testing.T) {
	tests := []struct {
		name      string
		fail      func(f *fakeCtx, a *fakeAuth) // makes the next login fail
		fix       func(f *fakeCtx, a *fakeAuth)
		want      error
		viaCLogin bool // the failure comes from C_Login (counts a login)
		wantLatch bool
	}{
		{
			name: "C_Login says PIN incorrect",
			fail: func(f *fakeCtx, _ *fakeAuth) { f.set(func(f *fakeCtx) { f.pin = "changed" }) },
			fix:  func(_ *fakeCtx, a *fakeAuth) { a.set("changed", nil) },
			want: ErrPINIncorrect, viaCLogin: true, wantLatch: true,
		},
		{
			name: "C_Login says PIN locked",
			fail: func(f *fakeCtx, _ *fakeAuth) {
				f.set(func(f *fakeCtx) { f.loginErr = pkcs11.Error(pkcs11.CKR_PIN_LOCKED) })
			},
			fix:  func(f *fakeCtx, _ *fakeAuth) { f.set(func(f *fakeCtx) { f.loginErr = nil }) },
			want: ErrPINLocked, viaCLogin: true, wantLatch: true,
		},
		{
			name: "PIN guard refuses before any C_Login",
			fail: func(_ *fakeCtx, a *fakeAuth) { a.set(fakePIN, fmt.Errorf("guard: %w", ErrPINLocked)) },
			fix:  func(_ *fakeCtx, a *fakeAuth) { a.set(fakePIN, nil) },
			want: ErrPINLocked, viaCLogin: false, wantLatch: true,
		},
		{
			name: "non-PIN failure is not latched",
			fail: func(_ *fakeCtx, a *fakeAuth) { a.set(fakePIN, errPINSourceDown) },
			fix:  func(_ *fakeCtx, a *fakeAuth) { a.set(fakePIN, nil) },
			want: errPINSourceDown, viaCLogin: false, wantLatch: false,
		},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeCtx()
			auth := &fakeAuth{pin: fakePIN}
			p := newFakePool(t, newFakeModule(t, f, time.Hour), PoolConfig{Authenticate: auth.authenticate, WaitTimeout: time.Second})
			if auth.count() != 1 || f.count("Login") != 1 {
				t.Fatalf("after NewPool: %d authentications, %d C_Login", auth.count(), f.count("Login"))
			}
			tt.fail(f, auth)
			breakPool(t, p, nil) // the token stays present: recovery only needs a new login

			perAttempt := 0
			if tt.viaCLogin {
				perAttempt = 1
			}
			fnCalls := 0
			fn := func(*Session) error { fnCalls++; return nil }
			err := p.WithSession(ctx, fn)
			if !errors.Is(err, tt.want) {
				t.Fatalf("WithSession after the failed login = %v, want %v", err, tt.want)
			}
			auths, logins := 2, 1+perAttempt
			check := func(when string) {
				t.Helper()
				if got := auth.count(); got != auths {
					t.Errorf("%s: Authenticator called %d times, want %d", when, got, auths)
				}
				if got := f.count("Login"); got != logins {
					t.Errorf("%s: C_Login called %d times, want %d", when, got, logins)
				}
				if fnCalls != 0 {
					t.Errorf("%s: closure ran %d times without a login", when, fnCalls)
				}
			}
			check("first failure")

			for i := range 3 {
				err := p.WithSession(ctx, fn)
				if !errors.Is(err, tt.want) {
					t.Fatalf("WithSession #%d = %v, want %v", i, err, tt.want)
				}
				if !tt.wantLatch {
					auths++ // not latched: every call tries the Authenticator again
					logins += perAttempt
				}
				check(fmt.Sprintf("call %d", i))
			}
			if p.Stats().Healthy {
				t.Error("Stats says healthy while logins fail")
			}
			if !tt.wantLatch {
				tt.fix(f, auth)
				if err := p.WithSession(ctx, fn); err != nil || fnCalls != 1 {
					t.Fatalf("after fixing a non-PIN failure: %v, closure ran %d times", err, fnCalls)
				}
				return
			}

			// Reauthenticate tries exactly once more, even while still wrong.
			err = p.Reauthenticate(ctx)
			auths, logins = auths+1, logins+perAttempt
			if !errors.Is(err, tt.want) {
				t.Fatalf("Reauthenticate with the PIN still wrong = %v, want %v", err, tt.want)
			}
			check("Reauthenticate, still wrong")
			if err := p.WithSession(ctx, fn); !errors.Is(err, tt.want) {
				t.Fatalf("WithSession after a failed Reauthenticate = %v, want %v (still latched)", err, tt.want)
			}
			check("after failed Reauthenticate")

			tt.fix(f, auth)
			if err := p.Reauthenticate(ctx); err != nil {
				t.Fatalf("Reauthenticate after the fix: %v", err)
			}
			auths, logins = auths+1, logins+1
			check("Reauthenticate, fixed")
			if err := p.WithSession(ctx, fn); err != nil || fnCalls != 1 {
				t.Fatalf("WithSession after Reauthenticate: %v, closure ran %d times", err, fnCalls)
			}
			if !p.Stats().Healthy {
				t.Error("pool not healthy after Reauthenticate")
			}
		})
	}
}

var errPINSourceDown = errors.New("pin source unavailable")

// (3) WithSession lends at most MaxSessions sessions at once.
func TestPoolBoundsConcurrency(t *testing.T) {
	const maxSessions = 3
	f := newFakeCtx()
	p := newFakePool(t, newFakeModule(t, f, time.Hour), PoolConfig{MaxSessions: maxSessions, WaitTimeout: 5 * time.Second})

	var cur, peak atomic.Int32
	var mu sync.Mutex
	lent := map[pkcs11.SessionHandle]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 16 {
		wg.Go(func() {
			for range 3 {
				errs <- p.WithSession(context.Background(), func(s *Session) error {
					mu.Lock()
					if lent[s.h] {
						mu.Unlock()
						return fmt.Errorf("session %d lent twice at once", s.h)
					}
					lent[s.h] = true
					mu.Unlock()
					n := cur.Add(1)
					for old := peak.Load(); n > old && !peak.CompareAndSwap(old, n); old = peak.Load() {
					}
					time.Sleep(2 * time.Millisecond)
					cur.Add(-1)
					mu.Lock()
					delete(lent, s.h)
					mu.Unlock()
					return nil
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("WithSession: %v", err)
		}
	}
	if got := peak.Load(); got != maxSessions {
		t.Errorf("peak concurrency %d, want exactly MaxSessions=%d", got, maxSessions)
	}
	// Sessions are reused: the anchor plus at most MaxSessions were opened.
	if n := f.count("OpenSession"); n > maxSessions+1 {
		t.Errorf("%d sessions opened for %d lendable ones (+anchor): sessions are not reused", n, maxSessions)
	}
	if st := p.Stats(); st.Lent != 0 || st.Idle > maxSessions || st.MaxSessions != maxSessions {
		t.Errorf("Stats after the run: %+v", st)
	}
}

// (3) When every session is busy beyond WaitTimeout, WithSession gives up.
// wait is long enough that a loaded CI machine cannot blur "gave up at
// WaitTimeout" with "gave up at the context's 5 ms deadline".
func TestPoolTimeout(t *testing.T) {
	const maxSessions = 2
	const wait = time.Second
	f := newFakeCtx()
	p := newFakePool(t, newFakeModule(t, f, time.Hour), PoolConfig{MaxSessions: maxSessions, WaitTimeout: wait})

	entered := make(chan struct{})
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range maxSessions {
		wg.Go(func() {
			if err := p.WithSession(context.Background(), func(*Session) error {
				entered <- struct{}{}
				<-release
				return nil
			}); err != nil {
				t.Errorf("blocking WithSession: %v", err)
			}
		})
	}
	for range maxSessions {
		<-entered
	}
	if st := p.Stats(); st.Lent != maxSessions {
		t.Errorf("Stats().Lent = %d, want %d", st.Lent, maxSessions)
	}

	ran := false
	start := time.Now()
	err := p.WithSession(context.Background(), func(*Session) error { ran = true; return nil })
	if !errors.Is(err, ErrPoolTimeout) {
		t.Fatalf("WithSession with all sessions busy = %v, want ErrPoolTimeout", err)
	}
	if el := time.Since(start); el < wait || el > 5*wait {
		t.Errorf("gave up after %v, want about WaitTimeout %v", el, wait)
	}
	if ran {
		t.Error("closure ran although no session was free")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = p.WithSession(ctx, func(*Session) error { ran = true; return nil })
	if !errors.Is(err, ErrPoolTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WithSession with a short context = %v, want ErrPoolTimeout and DeadlineExceeded", err)
	}
	if el := time.Since(start); el >= wait {
		t.Errorf("context deadline ignored: waited %v", el)
	}

	close(release)
	wg.Wait()
	if err := p.WithSession(context.Background(), func(*Session) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("after release: %v, ran=%v", err, ran)
	}
}

// (4) A closure failing with a dead session evicts that session and runs
// once more on another one.
func TestPoolSessionInvalidRetriedOnce(t *testing.T) {
	codes := []uint{pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED}
	for _, code := range codes {
		t.Run(pkcs11.Error(code).Error(), func(t *testing.T) {
			f := newFakeCtx()
			auth := &fakeAuth{pin: fakePIN}
			m := newFakeModule(t, f, time.Hour)
			p := newFakePool(t, m, PoolConfig{MaxSessions: 4, Authenticate: auth.authenticate})
			// Put a few sessions in the idle list first.
			for range 3 {
				if err := p.WithSession(context.Background(), noop); err != nil {
					t.Fatal(err)
				}
			}

			var handles []pkcs11.SessionHandle
			err := p.WithSession(context.Background(), func(s *Session) error {
				handles = append(handles, s.h)
				if len(handles) == 1 {
					return fmt.Errorf("sign: %w", wrapErr("C_SignInit", pkcs11.Error(code)))
				}
				return nil
			})
			if err != nil {
				t.Fatalf("WithSession = %v, want success on the retry", err)
			}
			if len(handles) != 2 {
				t.Fatalf("closure ran %d times, want 2", len(handles))
			}
			dead := handles[0]
			if handles[1] == dead {
				t.Fatalf("retry ran on the dead session %d", dead)
			}
			if !slices.Contains(f.closedHandles(), dead) {
				t.Errorf("dead session %d was not closed (closed: %v)", dead, f.closedHandles())
			}
			if _, open := f.openSessions()[handles[1]]; !open {
				t.Errorf("healthy session %d was closed", handles[1])
			}
			// Only the session died: no recovery, no new login.
			if auth.count() != 1 || f.count("Finalize") != 0 || !p.Stats().Healthy {
				t.Errorf("a dead session triggered recovery: %d authentications, %d C_Finalize, healthy=%v", auth.count(), f.count("Finalize"), p.Stats().Healthy)
			}
			// The dead session is never lent again.
			for range 10 {
				if err := p.WithSession(context.Background(), func(s *Session) error {
					if s.h == dead {
						return fmt.Errorf("dead session %d lent again", s.h)
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}

			// A closure that keeps failing runs exactly twice.
			handles = nil
			err = p.WithSession(context.Background(), func(s *Session) error {
				handles = append(handles, s.h)
				return wrapErr("C_Sign", pkcs11.Error(code))
			})
			if !errors.Is(err, ErrSessionClosed) {
				t.Fatalf("WithSession = %v, want ErrSessionClosed", err)
			}
			if len(handles) != 2 || handles[0] == handles[1] {
				t.Fatalf("closure ran on %v, want two different sessions", handles)
			}
			for _, h := range handles {
				if !slices.Contains(f.closedHandles(), h) {
					t.Errorf("dead session %d was not closed", h)
				}
			}
		})
	}

	t.Run("other errors neither evict nor retry", func(t *testing.T) {
		f := newFakeCtx()
		p := newFakePool(t, newFakeModule(t, f, time.Hour), PoolConfig{MaxSessions: 1})
		var handles []pkcs11.SessionHandle
		for _, e := range []error{
			wrapErr("C_Sign", pkcs11.Error(pkcs11.CKR_GENERAL_ERROR)),
			wrapErr("C_Sign", pkcs11.Error(pkcs11.CKR_KEY_HANDLE_INVALID)),
			errors.New("plain"),
			nil,
		} {
			calls := 0
			err := p.WithSession(context.Background(), func(s *Session) error {
				calls++
				handles = append(handles, s.h)
				return e
			})
			if err != e || calls != 1 {
				t.Fatalf("WithSession = %v after %d calls, want %v after 1", err, calls, e)
			}
		}
		for _, h := range handles[1:] {
			if h != handles[0] {
				t.Fatalf("session replaced after non-fatal errors: %v", handles)
			}
		}
		if closed := f.closedHandles(); slices.Contains(closed, handles[0]) {
			t.Fatalf("healthy session %d closed", handles[0])
		}
	})
}

// (5) CKR_TOKEN_NOT_PRESENT breaks the pool; recovery re-finds the token,
// re-initialises the module at most once per MinReinitInterval and logs in
// again.
func TestPoolRecoversFromTokenNotPresent(t *testing.T) {
	const interval = 250 * time.Millisecond
	ctx := context.Background()
	f := newFakeCtx()
	auth := &fakeAuth{pin: fakePIN}
	m := newFakeModule(t, f, interval)
	// The rate limit runs on a clock the test moves, so a slow machine
	// cannot make the window pass early.
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC).UnixNano())
	m.now = func() time.Time { return time.Unix(0, clock.Load()) }
	p := newFakePool(t, m, PoolConfig{Authenticate: auth.authenticate, WaitTimeout: time.Second})
	oldAnchor := f.loginLog()[0].h
	if f.count("Initialize") != 1 || f.count("Finalize") != 0 || m.Generation() != 1 {
		t.Fatalf("setup: %d C_Initialize, %d C_Finalize, generation %d", f.count("Initialize"), f.count("Finalize"), m.Generation())
	}

	breakPool(t, p, f.removeToken)

	fnCalls := 0
	fn := func(*Session) error { fnCalls++; return nil }
	// First try: the token is not seen, so the module is re-initialised once.
	if err := p.WithSession(ctx, fn); !errors.Is(err, ErrTokenNotPresent) {
		t.Fatalf("WithSession with the token gone = %v, want ErrTokenNotPresent", err)
	}
	if f.count("Finalize") != 1 || f.count("Initialize") != 2 {
		t.Fatalf("first recovery: %d C_Finalize, %d C_Initialize; want 1 and 2", f.count("Finalize"), f.count("Initialize"))
	}
	// Immediate second failure: rate-limited, no re-initialisation.
	if err := p.WithSession(ctx, fn); !errors.Is(err, ErrTokenNotPresent) {
		t.Fatalf("second WithSession = %v, want ErrTokenNotPresent", err)
	}
	// The token is back, but the module only sees it after C_Initialize,
	// and the rate limit still holds.
	f.insertToken(7, true)
	if err := p.WithSession(ctx, fn); !errors.Is(err, ErrTokenNotPresent) {
		t.Fatalf("third WithSession = %v, want ErrTokenNotPresent", err)
	}
	if f.count("Finalize") != 1 || f.count("Initialize") != 2 {
		t.Fatalf("within MinReinitInterval: %d C_Finalize, %d C_Initialize; want still 1 and 2", f.count("Finalize"), f.count("Initialize"))
	}
	if fnCalls != 0 || auth.count() != 1 || f.count("Login") != 1 {
		t.Fatalf("while broken: closure %d, authentications %d, C_Login %d; want 0, 1, 1", fnCalls, auth.count(), f.count("Login"))
	}

	clock.Add(int64(interval + 20*time.Millisecond))
	var slot uint
	var gen uint64
	err := p.WithSession(ctx, func(s *Session) error { slot, gen = s.slot, s.gen; return fn(s) })
	if err != nil {
		t.Fatalf("WithSession after the token came back: %v", err)
	}
	if fnCalls != 1 {
		t.Fatalf("closure ran %d times, want 1", fnCalls)
	}
	if f.count("Finalize") != 2 || f.count("Initialize") != 3 {
		t.Errorf("recovery: %d C_Finalize, %d C_Initialize; want 2 and 3", f.count("Finalize"), f.count("Initialize"))
	}
	if slot != 7 || p.Info().SlotID != 7 {
		t.Errorf("session on slot %d, Info().SlotID %d; the token moved to slot 7", slot, p.Info().SlotID)
	}
	if gen != m.Generation() || gen != 3 {
		t.Errorf("session generation %d, module generation %d, want 3", gen, m.Generation())
	}
	if auth.count() != 2 {
		t.Errorf("Authenticator called %d times, want 2 (once more after recovery)", auth.count())
	}
	logins := f.loginLog()
	if len(logins) != 2 {
		t.Fatalf("%d C_Login calls, want 2", len(logins))
	}
	if l := logins[1]; !l.open || l.slot != 7 || l.h == oldAnchor || l.pin != fakePIN {
		t.Errorf("re-login %+v: want the PIN on a new anchor in slot 7", l)
	}
	if !p.Stats().Healthy {
		t.Error("pool not healthy after recovery")
	}
	// Healthy again: no further recovery work.
	for range 3 {
		if err := p.WithSession(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	if auth.count() != 2 || f.count("Finalize") != 2 {
		t.Errorf("recovery repeated: %d authentications, %d C_Finalize", auth.count(), f.count("Finalize"))
	}
}

// (5) A token that comes back where the module already sees it is picked up
// without re-initialising the module.
func TestPoolRecoversWithoutReinit(t *testing.T) {
	ctx := context.Background()
	f := newFakeCtx()
	auth := &fakeAuth{pin: fakePIN}
	p := newFakePool(t, newFakeModule(t, f, time.Hour), PoolConfig{Authenticate: auth.authenticate})
	breakPool(t, p, func() { f.removeToken(); f.insertToken(3, false) })
	var slot uint
	if err := p.WithSession(ctx, func(s *Session) error { slot = s.slot; return nil }); err != nil {
		t.Fatalf("WithSession: %v", err)
	}
	if slot != 3 {
		t.Errorf("session on slot %d, want the token's new slot 3", slot)
	}
	if f.count("Finalize") != 0 || auth.count() != 2 || f.count("Login") != 2 {
		t.Errorf("%d C_Finalize, %d authentications, %d C_Login; want 0, 2, 2", f.count("Finalize"), auth.count(), f.count("Login"))
	}
}

// (6) Close waits for lent sessions and closes every session.
func TestPoolCloseWaitsForLentSessions(t *testing.T) {
	f := newFakeCtx()
	auth := &fakeAuth{pin: fakePIN}
	p := newFakePool(t, newFakeModule(t, f, time.Hour), PoolConfig{MaxSessions: 3, Authenticate: auth.authenticate})
	warmIdle(t, p, 3)
	entered, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	lentDone := make(chan error, 1)
	go func() {
		lentDone <- p.WithSession(context.Background(), func(*Session) error {
			close(entered)
			<-release
			finished.Store(true)
			return nil
		})
	}()
	<-entered
	closeDone := make(chan error, 1)
	go func() { closeDone <- p.Close() }()
	select {
	case err := <-closeDone:
		t.Fatalf("Close returned (%v) while a session was lent", err)
	case <-time.After(50 * time.Millisecond):
	}
	if n := len(f.openSessions()); n == 0 {
		t.Fatal("Close closed sessions while one was lent")
	}
	close(release)
	select {
	case err := <-closeDone:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after the lent session came back")
	}
	if !finished.Load() {
		t.Fatal("Close returned before the closure finished")
	}
	if err := <-lentDone; err != nil {
		t.Fatalf("lent WithSession: %v", err)
	}
	if open := f.openSessions(); len(open) != 0 {
		t.Errorf("sessions left open after Close: %v", open)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// (6) After Close, WithSession fails at once with ErrPoolClosed. wait is
// only an upper bound (a wrong pool would wait it out), so it is long.
func TestPoolWithSessionAfterClose(t *testing.T) {
	const wait = 5 * time.Second
	f := newFakeCtx()
	auth := &fakeAuth{pin: fakePIN}
	p := newFakePool(t, newFakeModule(t, f, time.Hour), PoolConfig{MaxSessions: 2, WaitTimeout: wait, Authenticate: auth.authenticate})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	opened := f.count("OpenSession")
	for i := range 2 {
		ran := false
		start := time.Now()
		err := p.WithSession(context.Background(), func(*Session) error { ran = true; return nil })
		if !errors.Is(err, ErrPoolClosed) {
			t.Fatalf("WithSession #%d after Close = %v (after %v), want ErrPoolClosed", i, err, time.Since(start).Round(time.Millisecond))
		}
		if el := time.Since(start); el >= wait {
			t.Errorf("WithSession after Close took %v: it waited for a session instead of failing", el)
		}
		if ran {
			t.Fatal("closure ran on a closed pool")
		}
	}
	if f.count("OpenSession") != opened || auth.count() != 1 {
		t.Errorf("closed pool touched the token: %d new sessions, %d authentications", f.count("OpenSession")-opened, auth.count())
	}
}

// (6) Reauthenticate on a closed pool must not open and log in a new anchor
// that nothing would ever close.
func TestPoolReauthenticateAfterClose(t *testing.T) {
	f := newFakeCtx()
	auth := &fakeAuth{pin: fakePIN}
	p := newFakePool(t, newFakeModule(t, f, time.Hour), PoolConfig{Authenticate: auth.authenticate})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	opened := f.count("OpenSession")
	if err := p.Reauthenticate(context.Background()); !errors.Is(err, ErrPoolClosed) {
		t.Errorf("Reauthenticate after Close = %v, want ErrPoolClosed", err)
	}
	if n := f.count("OpenSession") - opened; n != 0 || auth.count() != 1 || f.count("Login") != 1 {
		t.Errorf("closed pool reconnected: %d new sessions, %d authentications, %d C_Login", n, auth.count(), f.count("Login"))
	}
	if open := f.openSessions(); len(open) != 0 {
		t.Errorf("sessions open after Close and Reauthenticate: %v", open)
	}
}

// A closure whose session is poisoned (an operation may still be active)
// by an error that means the token is gone must still mark the pool broken,
// exactly like the same error unpoisoned.
func TestPoolPoisonedTokenErrorMarksBroken(t *testing.T) {
	for _, poison := range []bool{false, true} {
		t.Run(fmt.Sprintf("poisoned=%v", poison), func(t *testing.T) {
			f := newFakeCtx()
			p := newFakePool(t, newFakeModule(t, f, time.Hour), PoolConfig{})
			var h pkcs11.SessionHandle
			err := p.WithSession(context.Background(), func(s *Session) error {
				h = s.h
				var e error = wrapErr("C_Sign", pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED))
				if poison {
					e = poisoned{e}
				}
				return e
			})
			if !errors.Is(err, ErrTokenNotPresent) {
				t.Fatalf("WithSession = %v, want ErrTokenNotPresent", err)
			}
			if !slices.Contains(f.closedHandles(), h) {
				t.Errorf("session %d not closed", h)
			}
			if st := p.Stats(); st.Healthy || st.LastFailure == "" {
				t.Errorf("Stats = %+v: the pool was not marked broken", st)
			}
		})
	}
}

// TestPoolLoginLostIsRecovered: the token drops the application's login
// (private objects then look missing); the pool notices, logs in again
// through the Authenticator once, and the closure succeeds on the retry.
func TestPoolLoginLostIsRecovered(t *testing.T) {
	f := newFakeCtx()
	auth := &fakeAuth{pin: fakePIN}
	p := newFakePool(t, newFakeModule(t, f, time.Hour), PoolConfig{Authenticate: auth.authenticate})
	f.set(func(f *fakeCtx) { f.loggedIn = false }) // the HSM forgot us
	calls := 0
	err := p.WithSession(context.Background(), func(s *Session) error {
		calls++
		f.mu.Lock()
		in := f.loggedIn
		f.mu.Unlock()
		if !in {
			return wrapErr("C_SignInit", pkcs11.Error(pkcs11.CKR_KEY_HANDLE_INVALID))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("WithSession = %v, want success after re-login", err)
	}
	if calls != 2 || auth.count() != 2 {
		t.Fatalf("closure ran %d times, Authenticator %d times; want 2 and 2", calls, auth.count())
	}
	// A key that is really missing (still logged in) stays ErrKeyNotFound.
	err = p.WithSession(context.Background(), func(*Session) error {
		return wrapErr("C_SignInit", pkcs11.Error(pkcs11.CKR_KEY_HANDLE_INVALID))
	})
	if !errors.Is(err, ErrKeyNotFound) || auth.count() != 2 {
		t.Fatalf("missing key while logged in: %v (auth calls %d)", err, auth.count())
	}
}
