package keysvc_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/memtoken"
)

// TestMemManagedKeysCheckedAfterSync: keysvc restarted on a token set
// with a token that lacks the hsm keys (one that has just joined) does not
// report them lost when started as cmd/keysvc starts it
// (LevelledAfterStart, then the set's Sync, then
// CheckManagedKeysAfterSync): Stats.MissingTokenKeys stays 0 and the key
// is copied. Without the deferral New counts it missing (what an operator
// saw in the log and keyward_token_keys_missing after a new HSM joined).
// A version on no token of the set is still counted after the Sync.
func TestMemManagedKeysCheckedAfterSync(t *testing.T) {
	ctx := context.Background()
	a, b := memTokenPair()
	path := filepath.Join(t.TempDir(), "keysvc.db")
	// start opens keysvc on the set {a, b} as cmd/keysvc does when
	// levelled, and returns it with the set and a stop function.
	start := func(levelled bool) (*keysvc.Service, *token.Set, func()) {
		t.Helper()
		var svc *keysvc.Service
		set, err := token.NewSet(ctx, token.SetConfig{
			Members:       []token.SetMember{{Name: "a", Store: a}, {Name: "b", Store: b}},
			ProbeInterval: time.Hour,
			Managed: func(ctx context.Context) ([]string, error) {
				if svc == nil {
					return nil, fmt.Errorf("keysvc is not started yet")
				}
				return svc.ManagedLabels(ctx)
			},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		st, err := boltstore.Open(path, boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		svc, err = keysvc.New(ctx, keysvc.Config{Keys: set, Store: st, MinDestroyDelay: time.Hour, LevelledAfterStart: levelled,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return svc, set, func() { svc.Close(); set.Close(); st.Close() }
	}
	destroy := func(tok *memtoken.Token, label string) {
		t.Helper()
		ref, err := tok.FindKey(ctx, label)
		if err != nil {
			t.Fatal(err)
		}
		if err := tok.DestroyKey(ctx, ref); err != nil {
			t.Fatal(err)
		}
	}

	svc, _, stop := start(true)
	e := &memEnv{svc: svc, tok: a}
	e.create(t, "k", wire.PurposeSign, wire.AlgECP256, wire.ProtectionHSM, wire.OpSign)
	stop()
	destroy(b, "kw/k/v1") // b now holds no hsm key, like a token that has just joined

	svc, _, stop = start(false)
	if n := svc.Stats().MissingTokenKeys; n != 1 {
		t.Fatalf("New without the deferral: MissingTokenKeys %d, want 1 (the check runs before the set copies)", n)
	}
	stop()

	svc, set, stop := start(true)
	if n := svc.Stats().MissingTokenKeys; n != 0 {
		t.Fatalf("after New with LevelledAfterStart: MissingTokenKeys %d, want 0", n)
	}
	if err := set.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := svc.CheckManagedKeysAfterSync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := svc.Stats().MissingTokenKeys; n != 0 {
		t.Fatalf("after the set's Sync: MissingTokenKeys %d, want 0", n)
	}
	if !slices.Contains(b.Labels(), "kw/k/v1") {
		t.Fatalf("the set did not copy kw/k/v1 into b: %v", b.Labels())
	}
	stop()

	destroy(a, "kw/k/v1")
	destroy(b, "kw/k/v1") // now on no token: lost for real
	svc, set, stop = start(true)
	defer stop()
	if err := set.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := svc.CheckManagedKeysAfterSync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := svc.Stats().MissingTokenKeys; n != 1 {
		t.Fatalf("a version on no token: MissingTokenKeys %d after the Sync, want 1", n)
	}
}
