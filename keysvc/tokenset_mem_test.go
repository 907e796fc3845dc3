package keysvc_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/memtoken"
)

// memTokenPair is two in-memory tokens, hsm-a and hsm-b, holding one
// replication key, as a token set of two needs.
func memTokenPair() (a, b *memtoken.Token) {
	repl := make([]byte, 32)
	rand.Read(repl)
	a, b = memtoken.New("hsm-a", "A1"), memtoken.New("hsm-b", "B1")
	a.InstallReplicationKey(repl)
	b.InstallReplicationKey(repl)
	return a, b
}

// TestMemServiceOnTokenSet (issue 15 items 3 and 4): keysvc.Service on a
// token.Set of two in-memory tokens, wired as cmd/keysvc wires it
// (Managed = Service.ManagedLabels). hsm keys are on both tokens; with b
// away keysvc serves from a; a version destroyed and a key created while b
// is away are settled on b before it is re-admitted; then b serves alone.
func TestMemServiceOnTokenSet(t *testing.T) {
	ctx := context.Background()
	a, b := memTokenPair()
	var svcp atomic.Pointer[keysvc.Service]
	set, err := token.NewSet(ctx, token.SetConfig{
		Members:       []token.SetMember{{Name: "a", Store: a}, {Name: "b", Store: b}},
		ProbeInterval: time.Hour,
		Managed: func(ctx context.Context) ([]string, error) {
			if s := svcp.Load(); s != nil {
				return s.ManagedLabels(ctx)
			}
			return nil, fmt.Errorf("keysvc is not started yet")
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := &memClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	svc, err := keysvc.New(ctx, keysvc.Config{Keys: set, Store: st, MinDestroyDelay: time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	svcp.Store(svc)
	t.Cleanup(func() { svc.Close(); st.Close() })
	e := &memEnv{svc: svc, tok: a, clock: clock}

	e.create(t, "k", wire.PurposeSign, wire.AlgECP256, wire.ProtectionHSM, wire.OpSign, wire.OpVerify)
	if _, err := svc.Rotate(ctx, officer, "k"); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []*memtoken.Token{a, b} {
		if l := tok.Labels(); !slices.Contains(l, "kw/k/v1") || !slices.Contains(l, "kw/k/v2") {
			t.Fatalf("a token lacks a version: %v", l)
		}
	}
	if _, err := svc.SetVersionState(ctx, officer, "k", 1, wire.ActionScheduleDestroy, 2*time.Hour); err != nil {
		t.Fatal(err)
	}

	b.SetDown(fmt.Errorf("%w: test", token.ErrTokenNotPresent))
	sig := e.sign(t, "k", "while b is away")
	clock.Advance(2*time.Hour + time.Second)
	if err := svc.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	e.create(t, "n", wire.PurposeSign, wire.AlgECP256, wire.ProtectionHSM, wire.OpSign, wire.OpVerify)
	if st := svc.Stats(); len(st.Tokens) != 2 || st.Tokens[1].State != token.MemberDown || !st.TokenHealthy {
		t.Fatalf("stats with b away: %+v", st)
	}
	if err := svc.Ready(ctx); err != nil {
		t.Fatalf("not ready with one token up: %v", err)
	}

	b.SetDown(nil)
	set.Probe(ctx)
	if st := svc.Stats(); st.Tokens[1].State != token.MemberUp || st.Tokens[1].Readmissions != 1 {
		t.Fatalf("b after the probe: %+v", st.Tokens[1])
	}
	bl := b.Labels()
	if slices.Contains(bl, "kw/k/v1") || !slices.Contains(bl, "kw/k/v2") || !slices.Contains(bl, "kw/n/v1") {
		t.Fatalf("b after catch-up holds %v: want kw/k/v2 and kw/n/v1, not the destroyed kw/k/v1", bl)
	}
	managed, err := svc.ManagedLabels(ctx)
	if slices.Sort(managed); err != nil || !slices.Equal(managed, []string{"kw/k/v2", "kw/n/v1"}) {
		t.Fatalf("ManagedLabels = %v, %v", managed, err)
	}

	a.SetDown(fmt.Errorf("%w: test", token.ErrTokenNotPresent))
	for _, name := range []string{"k", "n"} {
		r := e.sign(t, name, "on b")
		if ok, err := e.verify(name, "on b", r.Signature); !ok || err != nil {
			t.Fatalf("%s signed on b does not verify: %v", name, err)
		}
	}
	if ok, err := e.verify("k", "while b is away", sig.Signature); !ok || err != nil {
		t.Fatal("the signature made on a does not verify", err)
	}
}
