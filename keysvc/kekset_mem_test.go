package keysvc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/memtoken"
)

// KEK rotation on a token set (keysvc/kekmembers.go), on two in-memory
// tokens wired as cmd/keysvc wires them (Admit = AdmitMember, OnEvent =
// RecordTokenSetEvent). softhsm-tests/kekset_test.go runs the real
// process on SoftHSM2.

type kekSetEnv struct {
	t    *testing.T
	a, b *memtoken.Token
	set  *token.Set
	path string
	st   *boltstore.Store
	svc  *keysvc.Service
	svcp atomic.Pointer[keysvc.Service]
}

func newKEKSetEnv(t *testing.T) *kekSetEnv {
	ctx := context.Background()
	e := &kekSetEnv{t: t, path: filepath.Join(t.TempDir(), "keysvc.db")}
	e.a, e.b = memTokenPair()
	var err error
	e.set, err = token.NewSet(ctx, token.SetConfig{
		Members:       []token.SetMember{{Name: "a", Store: e.a}, {Name: "b", Store: e.b}},
		ProbeInterval: time.Hour, // the test probes
		Managed: func(ctx context.Context) ([]string, error) {
			if s := e.svcp.Load(); s != nil {
				return s.ManagedLabels(ctx)
			}
			return nil, errors.New("keysvc is not started")
		},
		Admit: func(ctx context.Context, m token.Member) error {
			s := e.svcp.Load()
			if s == nil {
				return errors.New("keysvc is not started")
			}
			return s.AdmitMember(ctx, m.(keysvc.KeyStore))
		},
		OnEvent: func(ev token.SetEvent) {
			if s := e.svcp.Load(); s != nil {
				if err := s.RecordTokenSetEvent(ev); err != nil {
					t.Errorf("audit %v: %v", ev.Kind, err)
				}
			}
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.set.Close)
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *kekSetEnv) start() {
	e.t.Helper()
	var err error
	if e.st, err = boltstore.Open(e.path, boltstore.Options{}); err != nil {
		e.t.Fatal(err)
	}
	e.svc, err = keysvc.New(context.Background(), keysvc.Config{Keys: e.set, Store: e.st, MinDestroyDelay: time.Hour})
	if err != nil {
		e.st.Close()
		e.t.Fatal(err)
	}
	e.svcp.Store(e.svc)
}

func (e *kekSetEnv) stop() {
	e.svcp.Store(nil)
	if e.svc != nil {
		e.svc.Close()
		e.svc = nil
	}
	if e.st != nil {
		e.st.Close()
		e.st = nil
	}
}

// kekOn generates epoch n's KEKs in tok, replicable, as officers' keygen
// with backup: true and destroyable: true makes them.
func kekOn(t *testing.T, tok *memtoken.Token, n int) {
	t.Helper()
	for _, ks := range []token.KeySpec{
		{Type: token.KeyAES256, Label: keysvc.KEKLabelFor(n), Usage: token.UsageWrap, Extractable: true},
		{Type: token.KeyAES256, Label: keysvc.SMKEKLabelFor(n), Usage: token.UsageEncrypt, Extractable: true},
	} {
		if _, err := tok.GenerateKey(context.Background(), ks); err != nil {
			t.Fatal(err)
		}
	}
}

// copyKEKs copies epoch n's KEKs from one token to another (the officers'
// backup and restore).
func copyKEKs(t *testing.T, from, to *memtoken.Token, n int) {
	t.Helper()
	ctx := context.Background()
	for _, l := range []string{keysvc.KEKLabelFor(n), keysvc.SMKEKLabelFor(n)} {
		k, err := from.FindKey(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		r, err := from.ExportReplica(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := to.ImportReplica(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *kekSetEnv) rotate(to int) {
	e.t.Helper()
	if _, err := e.svc.StartKEKRotation(context.Background(), officer); err != nil {
		e.t.Fatalf("start the rotation to epoch %d: %v", to, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := e.svc.KEKRotation(context.Background(), officer)
		if err != nil {
			e.t.Fatal(err)
		}
		if st.State == wire.KEKIdle && st.Current == to {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("rotation to epoch %d not finished: %+v", to, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *kekSetEnv) up(name string) bool {
	for _, m := range e.set.UpMembers() {
		if l, _ := m.Identity(); l == "hsm-"+name {
			return true
		}
	}
	return false
}

func (e *kekSetEnv) audits(op string) []string {
	e.t.Helper()
	var out []string
	if err := e.st.AuditRecords(0, func(r audit.Record) error {
		if r.Op == op {
			out = append(out, r.Detail)
		}
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func hasLabels(tok *memtoken.Token, labels ...string) []string {
	var held []string
	for _, l := range labels {
		if slices.Contains(tok.Labels(), l) {
			held = append(held, l)
		}
	}
	return held
}

func someContain(details []string, subs ...string) bool {
	for _, d := range details {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(d, s)
		}
		if all {
			return true
		}
	}
	return false
}

func TestMemKEKRotationOnTokenSet(t *testing.T) {
	ctx := context.Background()
	e := newKEKSetEnv(t)
	if _, err := e.svc.CreateKey(ctx, officer, wire.CreateKeyRequest{Name: "w", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionWrapped,
		Policy: wire.Policy{Grants: []wire.Grant{{Client: bank.Name, Ops: []wire.Op{wire.OpSign}}}}}); err != nil {
		t.Fatal(err)
	}
	sign := func(what string) {
		t.Helper()
		if _, err := e.svc.Sign(ctx, bank, "w", wire.SignRequest{Message: wire.Base64(what)}); err != nil {
			t.Fatalf("sign %s: %v", what, err)
		}
	}

	// (a) The next epoch's KEKs must agree on every member that is up.
	kekOn(t, e.a, 2)
	_, err := e.svc.StartKEKRotation(ctx, officer)
	if !errors.Is(err, wire.ErrIllegalTransition) || !errors.Is(err, keysvc.ErrServiceKeysDiffer) ||
		!strings.Contains(err.Error(), `keysvc-kek-e2: missing from token "hsm-b" (serial B1)`) || !strings.Contains(err.Error(), "ceremony restore") {
		t.Fatalf("start with epoch 2's KEKs on a only: %v", err)
	}
	kekOn(t, e.b, 2) // other keys under the same labels
	_, err = e.svc.StartKEKRotation(ctx, officer)
	if !errors.Is(err, keysvc.ErrServiceKeysDiffer) || !strings.Contains(err.Error(), `keysvc-kek-e2 on token "hsm-b" (serial B1): differs from token "hsm-a"`) ||
		!strings.Contains(err.Error(), `keysvc-sm-kek-e2 on token "hsm-b"`) {
		t.Fatalf("start with different epoch 2 KEKs on b: %v", err)
	}
	if st, _ := e.svc.KEKRotation(ctx, officer); st.State != wire.KEKIdle || st.Current != 1 {
		t.Fatalf("a refused start changed the epochs: %+v", st)
	}
	e.b.Remove(keysvc.KEKLabelFor(2))
	e.b.Remove(keysvc.SMKEKLabelFor(2))
	copyKEKs(t, e.a, e.b, 2)

	// (b) Both up: the old KEKs are destroyed on both.
	e.rotate(2)
	for _, tok := range []*memtoken.Token{e.a, e.b} {
		if held := hasLabels(tok, "keysvc-kek", "keysvc-sm-kek"); len(held) > 0 {
			t.Fatalf("%v still holds epoch 1's %v after the rotation", tok.Labels(), held)
		}
	}
	sign("epoch 2")

	// (b) b down during the rotation to 3 (it holds epoch 3's KEKs): it
	// loses epoch 2's at its re-admission, before it serves again.
	kekOn(t, e.a, 3)
	copyKEKs(t, e.a, e.b, 3)
	e.b.SetDown(fmt.Errorf("%w: test", token.ErrTokenNotPresent))
	e.set.Probe(ctx)
	if e.up("b") {
		t.Fatal("b is still up after it went away")
	}
	if _, err := e.svc.CreateKey(ctx, officer, wire.CreateKeyRequest{Name: "h", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionHSM}); err != nil {
		t.Fatal(err)
	}
	e.rotate(3)
	if held := hasLabels(e.a, "keysvc-kek-e2", "keysvc-sm-kek-e2"); len(held) > 0 {
		t.Fatalf("a still holds %v", held)
	}
	if held := hasLabels(e.b, "keysvc-kek-e2", "keysvc-sm-kek-e2"); len(held) != 2 {
		t.Fatalf("b (away) should still hold epoch 2's KEKs: %v", e.b.Labels())
	}
	e.b.SetDown(nil)
	e.set.Probe(ctx)
	if !e.up("b") {
		t.Fatal("b not re-admitted")
	}
	if held := hasLabels(e.b, "keysvc-kek-e2", "keysvc-sm-kek-e2"); len(held) > 0 {
		t.Fatalf("b re-admitted still holding the retired %v", held)
	}
	if d := e.audits("kek_destroy"); !someContain(d, "keysvc-kek-e2 (epoch 2, retired) destroyed on token \"hsm-b\"", "before its re-admission") ||
		!someContain(d, "keysvc-sm-kek-e2 (epoch 2, retired) destroyed on token \"hsm-b\"") {
		t.Fatalf("kek_destroy records: %q", d)
	}
	if d := e.audits("token_member_down"); !someContain(d, "member b", `"hsm-b" (serial B1)`, "test") {
		t.Fatalf("token_member_down records: %q", d)
	}
	if d := e.audits("token_member_readmitted"); !someContain(d, "member b", "copied 1 keys") {
		t.Fatalf("token_member_readmitted records: %q", d)
	}
	e.a.SetDown(fmt.Errorf("%w: test", token.ErrTokenNotPresent))
	sign("on b alone, epoch 3")
	e.a.SetDown(nil)
	e.set.Probe(ctx)
	if !e.up("a") {
		t.Fatal("a not re-admitted")
	}

	// b away for a whole rotation (3 to 4): it comes back with epoch 3's
	// KEKs only; they are destroyed and it is refused, saying why, until
	// the officers restore epoch 4's.
	kekOn(t, e.a, 4)
	e.b.SetDown(fmt.Errorf("%w: test", token.ErrTokenNotPresent))
	e.set.Probe(ctx)
	e.rotate(4)
	e.b.SetDown(nil)
	e.set.Probe(ctx)
	if e.up("b") {
		t.Fatal("b, away for a whole rotation, was re-admitted without epoch 4's KEKs")
	}
	if held := hasLabels(e.b, "keysvc-kek-e3", "keysvc-sm-kek-e3"); len(held) > 0 {
		t.Fatalf("b still holds the retired %v", held)
	}
	err = e.svc.AdmitMember(ctx, e.b)
	if !errors.Is(err, keysvc.ErrRetiredKEKs) || !errors.Is(err, keysvc.ErrServiceKeysDiffer) ||
		!strings.Contains(err.Error(), "retired epoch 3") || !strings.Contains(err.Error(), "lacks keysvc-kek-e4 and keysvc-sm-kek-e4 of epoch 4") ||
		!strings.Contains(err.Error(), "ceremony restore") {
		t.Fatalf("b's refusal: %v", err)
	}
	copyKEKs(t, e.a, e.b, 4)
	e.set.Probe(ctx)
	if !e.up("b") {
		t.Fatal("b not re-admitted once it holds epoch 4's KEKs")
	}

	// Sync at start: a key b lacks is copied, and recorded.
	e.b.Remove("kw/h/v1")
	if err := e.set.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if d := e.audits("token_member_synced"); !someContain(d, "member b", "copied 1 keys") {
		t.Fatalf("token_member_synced records: %q", d)
	}

	// (c) At start: a retired epoch's KEK on a member is destroyed.
	e.stop()
	if _, err := e.a.GenerateKey(ctx, token.KeySpec{Type: token.KeyAES256, Label: keysvc.KEKLabelFor(2), Usage: token.UsageWrap}); err != nil {
		t.Fatal(err)
	}
	e.start()
	if held := hasLabels(e.a, "keysvc-kek-e2"); len(held) > 0 {
		t.Fatal("keysvc started without destroying a retired epoch's KEK on a")
	}
	if d := e.audits("kek_destroy"); !someContain(d, "keysvc-kek-e2 (epoch 2, retired) destroyed on token \"hsm-a\"", "at keysvc's start") {
		t.Fatalf("kek_destroy records after the start: %q", d)
	}
	sign("after the restart")
}
