package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/auth/internal/authtest"
	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/dbtest"
)

// TestSharedStoreTwoManagers: two Managers on one shared store (two
// banking nodes). A session created on A is live on B; a step-up on B is
// seen by A; a Logout on B ends it on A at once, though A had it cached;
// A's unwritten last-seen is merged, not lost, and A's Flush writes it.
func TestSharedStoreTwoManagers(t *testing.T) {
	ctx := context.Background()
	clk := authtest.NewClock()
	dbs := dbtest.New(t).Nodes(2)
	open := func(i int) *session.Manager {
		m, err := session.Open(session.Config{DB: dbs[i], Now: clk.Now, FlushInterval: 5 * time.Minute, SweepInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	a, b := open(0), open(1)

	id, _, err := a.Create(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Touch(ctx, id); err != nil {
		t.Fatalf("A's session on B: %v", err)
	}
	clk.Advance(8 * time.Minute)
	if _, err := a.Touch(ctx, id); err != nil { // A caches last-seen = +8 min, not yet written
		t.Fatal(err)
	}
	if _, err := b.StepUp(ctx, id, session.LevelOTP); err != nil {
		t.Fatal(err)
	}
	s, err := a.Get(ctx, id)
	if err != nil || s.Level != session.LevelOTP {
		t.Fatalf("A after B's step-up: %+v, %v", s, err)
	}
	if !s.LastSeen.Equal(clk.Now()) {
		t.Fatalf("A's last-seen %v lost, want %v", s.LastSeen, clk.Now())
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(8 * time.Minute) // 16 min after Create: live only by A's touch
	if _, err := b.Get(ctx, id); err != nil {
		t.Fatalf("B after A's flush: %v (A's last-seen not written?)", err)
	}
	if err := b.Logout(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Touch(ctx, id); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("A after B's Logout: %v, want ErrNotFound", err)
	}
}

// TestTouchWith: also runs with the session's Ref and reads the caller's
// records in the store, on a store of its own (after the session checks
// out) and on a shared one (in the read of the session's record); a
// session that is gone answers ErrNotFound whatever also would have read.
func TestTouchWith(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(map[bool]string{false: "own store", true: "shared store"}[shared], func(t *testing.T) {
			ctx := context.Background()
			h := dbtest.New(t)
			var db store.DB
			if shared {
				db = h.Nodes(1)[0] // Shared() true on either backend
			} else {
				db = h.Open()
			}
			bkt := []byte("caller-records")
			if err := db.Ensure(bkt); err != nil {
				t.Fatal(err)
			}
			m, err := session.Open(session.Config{DB: db, Now: authtest.NewClock().Now, SweepInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			id, s0, err := m.Create(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx store.Tx) error { return tx.Bucket(bkt).Put([]byte(s0.Ref), []byte("pending")) }); err != nil {
				t.Fatal(err)
			}
			var got string
			var calls int
			also := func(tx store.Tx, ref string) {
				calls++
				got = string(tx.Bucket(bkt).Get([]byte(ref)))
			}
			s, err := m.TouchWith(ctx, id, also)
			if err != nil || s.Ref != s0.Ref || got != "pending" || calls < 1 {
				t.Fatalf("TouchWith: %+v, %v; also read %q in %d calls", s, err, got, calls)
			}
			if err := m.Logout(ctx, id); err != nil {
				t.Fatal(err)
			}
			if _, err := m.TouchWith(ctx, id, also); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("TouchWith after logout: %v", err)
			}
		})
	}
}
