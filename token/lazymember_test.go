package token_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/memtoken"
)

// opener opens its memtoken once back is set, counting the tries.
type opener struct {
	tok   *memtoken.Token
	back  atomic.Bool
	err   error // returned while !back
	tries atomic.Int32
}

func (o *opener) open(context.Context) (token.Member, error) {
	o.tries.Add(1)
	if !o.back.Load() {
		return nil, o.err
	}
	return o.tok, nil
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Before it is opened a lazy member answers ErrTokenNotPresent naming the
// token, and tells the configured identity; each Health tries one opening;
// once open, everything (the optional abilities too) is the opened token's.
func TestLazyMemberOpensOnHealth(t *testing.T) {
	ctx := context.Background()
	o := &opener{tok: memtoken.New("hsm-b", "B1"), err: fmt.Errorf("%w: no initialised token with token=hsm-b", pkcs11shim.ErrTokenNotFound)}
	repl := make([]byte, 32)
	rand.Read(repl)
	o.tok.InstallReplicationKey(repl)
	m := token.LaterForTest("hsm-b", "", o.open, quiet)

	if l, s := m.Identity(); l != "hsm-b" || s != "" {
		t.Fatalf("identity before opening = %q %q, want the configured label", l, s)
	}
	if _, err := m.FindKey(ctx, "x"); !errors.Is(err, token.ErrTokenNotPresent) || !strings.Contains(err.Error(), `"hsm-b"`) {
		t.Fatalf("FindKey before opening = %v, want ErrTokenNotPresent naming hsm-b", err)
	}
	if _, err := m.(interface {
		Replicable(context.Context) (bool, error)
	}).Replicable(ctx); !errors.Is(err, token.ErrTokenNotPresent) {
		t.Fatalf("Replicable before opening = %v", err)
	}
	if st := m.Stats(); st.Healthy || st.MaxSessions != 0 {
		t.Fatalf("stats before opening = %+v", st)
	}
	for i := 1; i <= 2; i++ {
		err := m.Health(ctx)
		if !errors.Is(err, token.ErrTokenNotPresent) && !errors.Is(err, pkcs11shim.ErrTokenNotFound) || !token.IsAway(err) {
			t.Fatalf("Health while away = %v, want an away error", err)
		}
		if got := o.tries.Load(); got != int32(i) {
			t.Fatalf("%d Health calls made %d openings, want one each", i, got)
		}
	}

	o.back.Store(true)
	if err := m.Health(ctx); err != nil {
		t.Fatalf("Health once the token is back = %v", err)
	}
	if err := m.Health(ctx); err != nil || o.tries.Load() != 3 {
		t.Fatalf("Health of the open member = %v after %d openings, want nil after 3", err, o.tries.Load())
	}
	if l, s := m.Identity(); l != "hsm-b" || s != "B1" {
		t.Fatalf("identity once open = %q %q, want the token's", l, s)
	}
	k, err := m.GenerateKey(ctx, token.KeySpec{Type: token.KeyECP256, Label: "kw/k/v1", Usage: token.UsageSign, Extractable: true})
	if err != nil {
		t.Fatal(err)
	}
	if l := o.tok.Labels(); !slices.Contains(l, "kw/k/v1") {
		t.Fatalf("the key is not on the opened token: %v", l)
	}
	type abilities interface {
		ExportReplica(context.Context, token.KeyRef) (token.Replica, error)
		Replicable(context.Context) (bool, error)
		ReplicationCheckValue(context.Context) ([]byte, error)
		KeyUsage(context.Context, token.KeyRef) (token.Usage, error)
	}
	ab := m.(abilities)
	if ok, err := ab.Replicable(ctx); !ok || err != nil {
		t.Fatalf("Replicable once open = %v %v", ok, err)
	}
	want, _ := o.tok.ReplicationCheckValue(ctx)
	if got, err := ab.ReplicationCheckValue(ctx); err != nil || string(got) != string(want) {
		t.Fatalf("ReplicationCheckValue = %x %v, want the token's %x", got, err, want)
	}
	if _, err := ab.ExportReplica(ctx, k); err != nil {
		t.Fatalf("ExportReplica once open: %v", err)
	}
	// memtoken cannot read usages: the lazy member says so as the set does.
	if _, err := ab.KeyUsage(ctx, k); !errors.Is(err, token.ErrMechanismInvalid) {
		t.Fatalf("KeyUsage over a memtoken = %v, want ErrMechanismInvalid", err)
	}
}

// A PIN the token refuses is a configuration mistake: the member stays
// down and is not tried again (each try would be one more guess).
func TestLazyMemberPINErrorNotRetried(t *testing.T) {
	ctx := context.Background()
	o := &opener{tok: memtoken.New("hsm-b", "B1"), err: fmt.Errorf("login: %w", pkcs11shim.ErrPINIncorrect)}
	m := token.LaterForTest("hsm-b", "B1", o.open, quiet)
	for range 3 {
		err := m.Health(ctx)
		if !errors.Is(err, pkcs11shim.ErrPINIncorrect) || token.IsAway(err) || !strings.Contains(err.Error(), "restart keysvc") {
			t.Fatalf("Health = %v, want the PIN error, final", err)
		}
	}
	o.back.Store(true)
	if err := m.Health(ctx); err == nil || o.tries.Load() != 1 {
		t.Fatalf("after a PIN error: Health = %v, %d openings; want still refused after 1", err, o.tries.Load())
	}
}

// A member away at start joins the set down; when it opens, the set asks
// Admit, catches it up (the key made meanwhile) and re-admits it, and it
// then serves alone.
func TestSetOpensMemberAwayAtStart(t *testing.T) {
	ctx := context.Background()
	repl := make([]byte, 32)
	rand.Read(repl)
	a := &flaky{Token: memtoken.New("hsm-a", "A1")}
	a.InstallReplicationKey(repl)
	o := &opener{tok: memtoken.New("hsm-b", "B1"), err: fmt.Errorf("%w: token hsm-b", token.ErrTokenNotPresent)}
	o.tok.InstallReplicationKey(repl)
	b := token.LaterForTest("hsm-b", "", o.open, quiet)
	managed := &managedList{}
	var admitted atomic.Int32
	set, err := token.NewSet(ctx, token.SetConfig{Members: []token.SetMember{{Name: "a", Store: a}, {Name: "b", Store: b}},
		ProbeInterval: time.Hour, Managed: managed.get, Logger: quiet,
		Admit: func(_ context.Context, m token.Member) error {
			if l, s := m.Identity(); l == "hsm-b" && s == "B1" {
				admitted.Add(1)
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	e := &setEnv{set: set, a: a, managed: managed}
	if e.state("b") != token.MemberDown || e.state("a") != token.MemberUp {
		t.Fatalf("at start a = %v, b = %v; want a up, b down", e.state("a"), e.state("b"))
	}
	k, pub := e.generate(t, "kw/made-while-away/v1")
	managed.set("kw/made-while-away/v1")
	set.Probe(ctx)
	if e.state("b") != token.MemberDown || o.tries.Load() < 2 {
		t.Fatalf("b = %v after %d openings while away", e.state("b"), o.tries.Load())
	}
	o.back.Store(true)
	set.Probe(ctx)
	if e.state("b") != token.MemberUp || admitted.Load() != 1 {
		t.Fatalf("b = %v, Admit asked %d times with the opened token, after it came back", e.state("b"), admitted.Load())
	}
	if l := o.tok.Labels(); !slices.Contains(l, "kw/made-while-away/v1") {
		t.Fatalf("b was not caught up: %v", l)
	}
	a.SetDown(errGone)
	set.Probe(ctx)
	if e.state("a") != token.MemberDown {
		t.Fatalf("a = %v after it went away", e.state("a"))
	}
	sig, err := sign(ctx, set, k, "on b")
	if err != nil || !verify(pub, "on b", sig) {
		t.Fatalf("the key made while b was away does not sign on b alone: %v", err)
	}
}

// A set none of whose members opens does not start.
func TestSetRefusesOnlyLazyMembers(t *testing.T) {
	o := &opener{err: fmt.Errorf("%w: token hsm-b", token.ErrTokenNotPresent)}
	_, err := token.NewSet(context.Background(), token.SetConfig{Members: []token.SetMember{{Name: "b", Store: token.LaterForTest("hsm-b", "", o.open, quiet)}},
		Logger: quiet})
	if !errors.Is(err, token.ErrNoMemberUp) {
		t.Fatalf("NewSet with no member open = %v, want ErrNoMemberUp", err)
	}
}
