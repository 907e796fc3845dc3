package token_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/memtoken"
)

// flaky is a memtoken member whose import or use can be made to fail.
type flaky struct {
	*memtoken.Token
	importErr   atomic.Pointer[error]
	useFailures atomic.Int32 // the next n Use calls fail with ErrSessionClosed
	useErr      atomic.Pointer[error]
}

func (f *flaky) ImportReplica(ctx context.Context, r token.Replica) (token.KeyRef, error) {
	if p := f.importErr.Load(); p != nil {
		return nil, *p
	}
	return f.Token.ImportReplica(ctx, r)
}

func (f *flaky) Use(ctx context.Context, m token.Material, fn func(token.KeyUse) error) error {
	if f.useFailures.Add(-1) >= 0 {
		return fmt.Errorf("%w: module re-initialised", token.ErrSessionClosed)
	}
	if p := f.useErr.Load(); p != nil {
		return *p
	}
	return f.Token.Use(ctx, m, fn)
}

type managedList struct {
	mu     sync.Mutex
	labels []string
}

func (l *managedList) set(labels ...string) {
	l.mu.Lock()
	l.labels = labels
	l.mu.Unlock()
}

func (l *managedList) get(context.Context) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.labels), nil
}

type setEnv struct {
	set     *token.Set
	a, b    *flaky
	managed *managedList
}

var errGone = fmt.Errorf("%w: the test took it away", token.ErrTokenNotPresent)

func newSetEnv(t *testing.T) *setEnv {
	t.Helper()
	repl := make([]byte, 32)
	rand.Read(repl)
	e := &setEnv{a: &flaky{Token: memtoken.New("hsm-a", "A1")}, b: &flaky{Token: memtoken.New("hsm-b", "B1")}, managed: &managedList{}}
	e.a.InstallReplicationKey(repl)
	e.b.InstallReplicationKey(repl)
	var err error
	e.set, err = token.NewSet(context.Background(), token.SetConfig{
		Members:       []token.SetMember{{Name: "a", Store: e.a}, {Name: "b", Store: e.b}},
		ProbeInterval: time.Hour, // tests probe with Probe
		Managed:       e.managed.get,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.set.Close)
	return e
}

func (e *setEnv) state(name string) token.MemberState {
	for _, m := range e.set.Stats().Members {
		if m.Name == name {
			return m.State
		}
	}
	return 0
}

func (e *setEnv) generate(t *testing.T, label string) (token.KeyRef, *ecdsa.PublicKey) {
	t.Helper()
	ctx := context.Background()
	k, err := e.set.GenerateKey(ctx, token.KeySpec{Type: token.KeyECP256, Label: label, Usage: token.UsageSign})
	if err != nil {
		t.Fatalf("GenerateKey %s: %v", label, err)
	}
	var pub crypto.PublicKey
	if err := e.set.Use(ctx, token.Material{Key: k}, func(u token.KeyUse) error { pub, err = u.PublicKey(); return err }); err != nil {
		t.Fatal(err)
	}
	return k, pub.(*ecdsa.PublicKey)
}

func sign(ctx context.Context, s *token.Set, k token.KeyRef, msg string) ([]byte, error) {
	d := sha256.Sum256([]byte(msg))
	var sig []byte
	err := s.Use(ctx, token.Material{Key: k}, func(u token.KeyUse) error {
		var err error
		sig, err = u.Sign(d[:], crypto.SHA256)
		return err
	})
	return sig, err
}

func verify(pub *ecdsa.PublicKey, msg string, sig []byte) bool {
	d := sha256.Sum256([]byte(msg))
	return ecdsa.VerifyASN1(pub, d[:], sig)
}

// A generated key is on both members before GenerateKey returns, with the
// same key material (one public key, one check value).
func TestSetGenerateCopiesToEveryMember(t *testing.T) {
	e := newSetEnv(t)
	ctx := context.Background()
	k, pub := e.generate(t, "kw/pay/v1")
	for _, m := range []*flaky{e.a, e.b} {
		mk, err := m.FindKey(ctx, "kw/pay/v1")
		if err != nil {
			t.Fatalf("%s lacks the key: %v", m.Labels(), err)
		}
		var got crypto.PublicKey
		m.Use(ctx, token.Material{Key: mk}, func(u token.KeyUse) error { got, _ = u.PublicKey(); return nil })
		if !pub.Equal(got) {
			t.Fatal("a member holds another key under the same label")
		}
	}
	sig, err := sign(ctx, e.set, k, "m")
	if err != nil || !verify(pub, "m", sig) {
		t.Fatalf("sign through the set: %v", err)
	}
}

// A member that goes away is taken out on the first failed operation,
// which is retried on the other member: the caller sees no error.
func TestSetFailoverRetriesOnAnotherMember(t *testing.T) {
	e := newSetEnv(t)
	ctx := context.Background()
	k, pub := e.generate(t, "kw/pay/v1")
	e.b.SetDown(errGone)
	for i := 0; i < 20; i++ {
		msg := fmt.Sprint("m", i)
		sig, err := sign(ctx, e.set, k, msg)
		if err != nil {
			t.Fatalf("sign %d with b gone: %v", i, err)
		}
		if !verify(pub, msg, sig) {
			t.Fatal("bad signature")
		}
	}
	if e.state("b") != token.MemberDown || e.state("a") != token.MemberUp {
		t.Fatalf("states a=%v b=%v, want up, down", e.state("a"), e.state("b"))
	}
	if err := e.set.Health(ctx); err != nil {
		t.Fatalf("Health with one member up: %v", err)
	}
	e.a.SetDown(errGone)
	if _, err := sign(ctx, e.set, k, "x"); !errors.Is(err, token.ErrTokenNotPresent) {
		t.Fatalf("sign with both gone: %v, want ErrTokenNotPresent", err)
	}
	if err := e.set.Health(ctx); !errors.Is(err, token.ErrNoMemberUp) {
		t.Fatalf("Health with none up: %v", err)
	}
}

// An operation's own error is returned as it is, from one member, and
// marks nothing down.
func TestSetOwnErrorNotRetried(t *testing.T) {
	e := newSetEnv(t)
	ctx := context.Background()
	k, _ := e.generate(t, "kw/pay/v1")
	before := e.a.Uses() + e.b.Uses()
	calls := 0
	err := e.set.Use(ctx, token.Material{Key: k}, func(token.KeyUse) error { calls++; return token.ErrDecrypt })
	if !errors.Is(err, token.ErrDecrypt) {
		t.Fatalf("got %v, want ErrDecrypt", err)
	}
	if calls != 1 || e.a.Uses()+e.b.Uses()-before != 1 {
		t.Fatalf("the operation ran %d times on %d members, want once", calls, e.a.Uses()+e.b.Uses()-before)
	}
	if e.state("a") != token.MemberUp || e.state("b") != token.MemberUp {
		t.Fatal("an operation's own error marked a member down")
	}
}

// ErrDecrypt from a member that no longer answers Health (SoftHSM2's
// CKR_GENERAL_ERROR from C_UnwrapKey as its token vanishes) is the
// member's failure: retried elsewhere. From a healthy member it stands.
func TestSetDecryptErrorOfVanishingMember(t *testing.T) {
	e := newSetEnv(t)
	ctx := context.Background()
	k, pub := e.generate(t, "kw/pay/v1")
	dec := fmt.Errorf("%w: C_UnwrapKey: CKR_GENERAL_ERROR", token.ErrDecrypt)
	e.a.useErr.Store(&dec)
	e.b.useErr.Store(&dec)
	if _, err := sign(ctx, e.set, k, "m"); !errors.Is(err, token.ErrDecrypt) {
		t.Fatalf("ErrDecrypt from healthy members: %v", err)
	}
	if e.state("a") != token.MemberUp || e.state("b") != token.MemberUp {
		t.Fatal("a healthy member's ErrDecrypt took it out")
	}
	e.a.useErr.Store(nil)
	e.b.SetDown(errGone)
	for i := 0; i < 4; i++ { // whichever member is picked first
		sig, err := sign(ctx, e.set, k, "m")
		if err != nil || !verify(pub, "m", sig) {
			t.Fatalf("sign %d with b failing ErrDecrypt as it vanishes: %v", i, err)
		}
	}
	if e.state("b") != token.MemberDown {
		t.Fatal("b not taken out")
	}
}

// A session error on a member that still answers Health (the shared
// module re-initialised for another token) is retried, and the member
// stays up.
func TestSetTransientErrorKeepsMemberUp(t *testing.T) {
	e := newSetEnv(t)
	ctx := context.Background()
	k, _ := e.generate(t, "kw/pay/v1")
	e.a.useFailures.Store(1)
	e.b.useFailures.Store(1)
	if _, err := sign(ctx, e.set, k, "m"); err != nil {
		t.Fatalf("sign after transient errors on both: %v", err)
	}
	if e.state("a") != token.MemberUp || e.state("b") != token.MemberUp {
		t.Fatalf("a transient session error marked a healthy member down: a=%v b=%v", e.state("a"), e.state("b"))
	}
}

// While b is away a key is made and another destroyed; the prober catches
// b up before re-admitting it: it gains the new key (which then signs on
// b alone) and loses the destroyed one.
func TestSetCatchUpBeforeReadmission(t *testing.T) {
	e := newSetEnv(t)
	ctx := context.Background()
	old, _ := e.generate(t, "kw/old/v1")
	e.generate(t, "kw/keep/v1")
	e.b.SetDown(errGone)
	e.set.Probe(ctx)
	if e.state("b") != token.MemberDown {
		t.Fatalf("b = %v after a probe with it gone", e.state("b"))
	}
	k, pub := e.generate(t, "kw/new/v1")
	if err := e.set.DestroyKey(ctx, old); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(e.b.Labels(), "kw/new/v1") {
		t.Fatal("a down member got a key")
	}
	e.managed.set("kw/keep/v1", "kw/new/v1")
	e.b.SetDown(nil)
	e.set.Probe(ctx)
	if e.state("b") != token.MemberUp {
		t.Fatalf("b = %v after a probe with it back", e.state("b"))
	}
	if got := e.b.Labels(); !slices.Equal(got, []string{"kw/keep/v1", "kw/new/v1"}) {
		t.Fatalf("b holds %v after catch-up", got)
	}
	for _, m := range e.set.Stats().Members {
		if m.Name == "b" && m.Readmissions != 1 {
			t.Fatalf("b readmissions = %d", m.Readmissions)
		}
	}
	e.a.SetDown(errGone)
	sig, err := sign(ctx, e.set, k, "on b")
	if err != nil || !verify(pub, "on b", sig) {
		t.Fatalf("the key made while b was away does not sign on b: %v", err)
	}
}

// Catch-up destroys only "kw/" keys: service keys and the like are the
// officers' business.
func TestSetCatchUpKeepsNonKeysvcKeys(t *testing.T) {
	e := newSetEnv(t)
	ctx := context.Background()
	e.b.SetDown(errGone)
	e.set.Probe(ctx)
	e.b.SetDown(nil)
	if _, err := e.b.GenerateKey(ctx, token.KeySpec{Type: token.KeyAES256, Label: "keysvc-kek", Usage: token.UsageWrap}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.GenerateKey(ctx, token.KeySpec{Type: token.KeyECP256, Label: "kw/orphan/v1", Usage: token.UsageSign}); err != nil {
		t.Fatal(err)
	}
	e.set.Probe(ctx)
	if got := e.b.Labels(); !slices.Equal(got, []string{"keysvc-kek"}) {
		t.Fatalf("b holds %v, want only keysvc-kek", got)
	}
}

// No re-admission while Managed cannot answer: keysvc is the only one who
// knows which keys must exist.
func TestSetNoReadmissionWithoutManaged(t *testing.T) {
	e := newSetEnv(t)
	ctx := context.Background()
	fail := errors.New("store not open yet")
	set, err := token.NewSet(ctx, token.SetConfig{Members: []token.SetMember{{Name: "a", Store: e.a}, {Name: "b", Store: e.b}},
		ProbeInterval: time.Hour, Managed: func(context.Context) ([]string, error) { return nil, fail },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	e.b.SetDown(errGone)
	set.Probe(ctx)
	e.b.SetDown(nil)
	set.Probe(ctx)
	for _, m := range set.Stats().Members {
		if m.Name == "b" && (m.State != token.MemberDown || !strings.Contains(m.Cause, fail.Error())) {
			t.Fatalf("b = %v (%s), want down naming the cause", m.State, m.Cause)
		}
	}
}

// A member that fails during the copy of a new key is marked down and the
// key is made; any other copy failure removes the key everywhere.
func TestSetGenerateCopyFailures(t *testing.T) {
	e := newSetEnv(t)
	ctx := context.Background()
	bad := fmt.Errorf("%w: bad template", token.ErrInputInvalid)
	e.a.importErr.Store(&bad) // whichever member generates, the copy fails
	e.b.importErr.Store(&bad)
	_, err := e.set.GenerateKey(ctx, token.KeySpec{Type: token.KeyECP256, Label: "kw/x/v1", Usage: token.UsageSign})
	if !errors.Is(err, token.ErrInputInvalid) {
		t.Fatalf("got %v, want the copy's error", err)
	}
	if len(e.a.Labels())+len(e.b.Labels()) != 0 {
		t.Fatalf("a failed copy left keys: a %v b %v", e.a.Labels(), e.b.Labels())
	}
	if e.state("b") != token.MemberUp {
		t.Fatal("an operation's own error marked b down")
	}
	e.a.importErr.Store(nil)
	e.b.importErr.Store(&errGone)
	e.b.SetDown(errGone) // Health fails too: b really went away
	k, err := e.set.GenerateKey(ctx, token.KeySpec{Type: token.KeyECP256, Label: "kw/y/v1", Usage: token.UsageSign})
	if err != nil {
		t.Fatalf("generate with b failing during the copy: %v", err)
	}
	if e.state("b") != token.MemberDown {
		t.Fatal("b not marked down")
	}
	e.b.importErr.Store(nil)
	e.b.SetDown(nil)
	e.managed.set("kw/y/v1")
	e.set.Probe(ctx)
	if !slices.Equal(e.b.Labels(), []string{"kw/y/v1"}) {
		t.Fatalf("catch-up did not copy the key b missed: %v", e.b.Labels())
	}
	e.a.SetDown(errGone)
	if _, err := sign(ctx, e.set, k, "m"); err != nil {
		t.Fatal(err)
	}
}

// Wrapped keys: generated and used on any member under the replicated KEK.
func TestSetWrappedKeysFailOver(t *testing.T) {
	e := newSetEnv(t)
	ctx := context.Background()
	kek, err := e.set.GenerateKey(ctx, token.KeySpec{Type: token.KeyAES256, Label: "keysvc-kek", Usage: token.UsageWrap})
	if err != nil {
		t.Fatal(err)
	}
	spec := token.KeySpec{Type: token.KeyECP256, Label: "kw/w/v1", Usage: token.UsageSign}
	blob, pub, err := e.set.GenerateWrapped(ctx, kek, spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, down := range []*flaky{e.a, e.b} {
		down.SetDown(errGone)
		d := sha256.Sum256([]byte("w"))
		var sig []byte
		err := e.set.Use(ctx, token.Material{KEK: kek, Wrapped: blob, Spec: spec}, func(u token.KeyUse) error {
			sig, err = u.Sign(d[:], crypto.SHA256)
			return err
		})
		if err != nil || !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig) {
			t.Fatalf("wrapped sign with one member down: %v", err)
		}
		down.SetDown(nil)
		e.set.Probe(ctx)
	}
}

// More than one member without the replication key is refused, naming the
// member and the ceremony.
func TestNewSetRefusesMemberWithoutReplicationKey(t *testing.T) {
	a, b := memtoken.New("hsm-a", "A1"), memtoken.New("hsm-b", "B1")
	a.InstallReplicationKey(make([]byte, 32))
	_, err := token.NewSet(context.Background(), token.SetConfig{Members: []token.SetMember{{Name: "a", Store: a}, {Name: "b", Store: b}}})
	if err == nil || !strings.Contains(err.Error(), `"b"`) || !strings.Contains(err.Error(), "ceremony replication-key") {
		t.Fatalf("got %v, want a refusal naming b and the ceremony", err)
	}
}

// Members whose replication keys differ are refused, naming both and the
// ceremony: a copy made under one would not unwrap under the other.
func TestNewSetRefusesDifferentReplicationKeys(t *testing.T) {
	a, b := memtoken.New("hsm-a", "A1"), memtoken.New("hsm-b", "B1")
	ka, kb := make([]byte, 32), make([]byte, 32)
	rand.Read(ka)
	rand.Read(kb)
	a.InstallReplicationKey(ka)
	b.InstallReplicationKey(kb)
	_, err := token.NewSet(context.Background(), token.SetConfig{Members: []token.SetMember{{Name: "a", Store: a}, {Name: "b", Store: b}}})
	if err == nil || !strings.Contains(err.Error(), "different replication keys") || !strings.Contains(err.Error(), `"hsm-b"`) || !strings.Contains(err.Error(), "ceremony replication-key") {
		t.Fatalf("got %v, want a refusal naming both tokens and the ceremony", err)
	}
}

// One member: the set is that store (no replication key needed, keys not
// made extractable).
func TestSetOfOneIsTheStore(t *testing.T) {
	a := memtoken.New("hsm-a", "A1")
	set, err := token.NewSet(context.Background(), token.SetConfig{Members: []token.SetMember{{Name: "a", Store: a}}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	ctx := context.Background()
	if _, err := set.GenerateKey(ctx, token.KeySpec{Type: token.KeyECP256, Label: "kw/one/v1", Usage: token.UsageSign}); err != nil {
		t.Fatal(err)
	}
	a.InstallReplicationKey(make([]byte, 32))
	mk, _ := a.FindKey(ctx, "kw/one/v1")
	if _, err := a.ExportReplica(ctx, mk); !errors.Is(err, token.ErrKeyUnextractable) {
		t.Fatalf("a one-member set made an extractable key: %v", err)
	}
	if l, s := set.Identity(); l != "hsm-a" || s != "A1" {
		t.Fatal(l, s)
	}
}

// Many goroutines sign while b goes away and comes back, probed all the
// while: no operation fails (run under -race).
func TestSetConcurrentUseDuringFailover(t *testing.T) {
	e := newSetEnv(t)
	ctx := context.Background()
	k, pub := e.generate(t, "kw/pay/v1")
	e.managed.set("kw/pay/v1")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ops, fails atomic.Int64
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := fmt.Sprint(i)
				sig, err := sign(ctx, e.set, k, msg)
				ops.Add(1)
				if err != nil || !verify(pub, msg, sig) {
					fails.Add(1)
				}
			}
		}()
	}
	for i := 0; i < 10; i++ {
		e.b.SetDown(errGone)
		e.set.Probe(ctx)
		time.Sleep(5 * time.Millisecond)
		e.b.SetDown(nil)
		e.set.Probe(ctx)
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if fails.Load() != 0 || ops.Load() == 0 {
		t.Fatalf("%d of %d signatures failed", fails.Load(), ops.Load())
	}
	if e.state("b") != token.MemberUp {
		t.Fatalf("b = %v at the end", e.state("b"))
	}
	t.Logf("%d signatures, none failed, across 10 losses of b", ops.Load())
}

// Admit (keysvc: the member's service keys) is asked before a re-admission;
// its error keeps the member out, named in its state.
func TestSetAdmitKeepsMemberOut(t *testing.T) {
	repl := make([]byte, 32)
	rand.Read(repl)
	a, b := memtoken.New("hsm-a", "A1"), memtoken.New("hsm-b", "B1")
	a.InstallReplicationKey(repl)
	b.InstallReplicationKey(repl)
	var refuse atomic.Bool
	var asked atomic.Int32
	set, err := token.NewSet(context.Background(), token.SetConfig{Members: []token.SetMember{{Name: "a", Store: a}, {Name: "b", Store: b}},
		ProbeInterval: time.Hour, Managed: func(context.Context) ([]string, error) { return nil, nil },
		Admit: func(_ context.Context, m token.Member) error {
			asked.Add(1)
			if l, _ := m.Identity(); refuse.Load() && l == "hsm-b" {
				return errors.New("service key keysvc-kek differs")
			}
			return nil
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	ctx := context.Background()
	b.SetDown(errGone)
	set.Probe(ctx)
	b.SetDown(nil)
	refuse.Store(true)
	set.Probe(ctx)
	st := set.Stats().Members[1]
	if st.State != token.MemberDown || !strings.Contains(st.Cause, "keysvc-kek differs") || asked.Load() != 1 {
		t.Fatalf("b = %v (%s), Admit asked %d times; want down naming Admit's reason", st.State, st.Cause, asked.Load())
	}
	refuse.Store(false)
	set.Probe(ctx)
	if st := set.Stats().Members[1]; st.State != token.MemberUp {
		t.Fatalf("b = %v after Admit agreed", st.State)
	}
}
