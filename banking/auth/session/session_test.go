package session_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/auth/internal/authtest"
	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/banking/store"
)

type env struct {
	m   *session.Manager
	db  store.DB
	clk *authtest.Clock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{db: authtest.MustOpenDB(t), clk: authtest.NewClock()}
	e.m = e.open(t)
	return e
}

// open starts a Manager on e's database; flushing and sweeping happen only
// when a test asks.
func (e *env) open(t *testing.T) *session.Manager {
	t.Helper()
	m, err := session.Open(session.Config{DB: e.db, Now: e.clk.Now, FlushInterval: 5 * time.Minute, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

var params = session.Params{Customer: "c1", Device: "dev-1", IP: netip.MustParseAddr("192.0.2.10"), Level: session.LevelPassword}

func (e *env) create(t *testing.T, p session.Params) (string, session.Session) {
	t.Helper()
	id, s, err := e.m.Create(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return id, s
}

func TestCreateGet(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	id, s := e.create(t, params)
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(raw) != 32 || len(id) != 43 {
		t.Fatalf("id %q: %d bytes, %v", id, len(raw), err)
	}
	id2, _ := e.create(t, params)
	if id2 == id {
		t.Fatal("two sessions, one id")
	}
	if s.Customer != "c1" || s.Device != "dev-1" || s.IP != "192.0.2.10" || s.Level != session.LevelPassword ||
		len(s.Ref) != 16 || !s.ExpiresAt.Equal(e.clk.Now().Add(10*time.Minute)) {
		t.Fatalf("session %+v", s)
	}
	got, err := e.m.Get(ctx, id)
	if err != nil || got != s {
		t.Fatalf("Get = %+v, %v", got, err)
	}
}

func TestOnlyTheHashIsStored(t *testing.T) {
	e := newEnv(t)
	id, _ := e.create(t, params)
	raw, _ := base64.RawURLEncoding.DecodeString(id)
	want := sha256.Sum256(raw)
	var keys int
	e.db.View(func(tx store.Tx) error {
		for _, name := range [][]byte{[]byte("auth-sessions"), []byte("auth-sessions-by-customer")} {
			err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				if strings.Contains(string(k)+string(v), id) || strings.Contains(string(k)+string(v), string(raw)) {
					t.Errorf("bucket %s holds the id", name)
				}
				if string(name) == "auth-sessions" && string(k) == string(want[:]) {
					keys++
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if keys != 1 {
		t.Fatalf("no record under SHA-256(id)")
	}
}

func TestMalformedIDs(t *testing.T) {
	e := newEnv(t)
	id, _ := e.create(t, params)
	for _, bad := range []string{"", "x", id + "A", id[:42], id[:42] + "=", strings.Repeat("!", 43), id[:42] + "+"} {
		if _, err := e.m.Touch(context.Background(), bad); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("Touch(%q) = %v", bad, err)
		}
	}
}

func TestIdleTimeout(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	id, _ := e.create(t, params)
	e.clk.Advance(9 * time.Minute)
	if _, err := e.m.Touch(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(9 * time.Minute) // 18 min after creation, 9 after the touch
	s, err := e.m.Get(ctx, id)
	if err != nil {
		t.Fatalf("after touch: %v", err)
	}
	if !s.ExpiresAt.Equal(e.clk.Now().Add(time.Minute)) {
		t.Fatalf("ExpiresAt %v", s.ExpiresAt)
	}
	e.clk.Advance(time.Minute) // Get did not extend it
	if _, err := e.m.Touch(ctx, id); !errors.Is(err, session.ErrExpired) {
		t.Fatalf("idle 10 min: %v, want ErrExpired", err)
	}
}

func TestAbsoluteTimeout(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	id, _ := e.create(t, params)
	for i := 0; i < 12*12-1; i++ { // a touch every 5 minutes for 11 h 55 min
		e.clk.Advance(5 * time.Minute)
		if _, err := e.m.Touch(ctx, id); err != nil {
			t.Fatalf("touch %d: %v", i, err)
		}
	}
	s, _ := e.m.Get(ctx, id)
	if !s.ExpiresAt.Equal(s.Created.Add(12 * time.Hour)) {
		t.Fatalf("ExpiresAt %v, want creation + 12 h", s.ExpiresAt)
	}
	e.clk.Advance(5 * time.Minute)
	if _, err := e.m.Touch(ctx, id); !errors.Is(err, session.ErrExpired) {
		t.Fatalf("12 h: %v", err)
	}
}

func TestDurability(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	id, _ := e.create(t, params)
	gone, _ := e.create(t, params)
	if err := e.m.Logout(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.StepUp(ctx, id, session.LevelOTP); err != nil {
		t.Fatal(err)
	}
	// A second manager has an empty cache: it sees only the database.
	m2 := e.open(t)
	s, err := m2.Get(ctx, id)
	if err != nil || s.Level != session.LevelOTP {
		t.Fatalf("created/stepped-up session after restart: %+v, %v", s, err)
	}
	if _, err := m2.Get(ctx, gone); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("logged-out session after restart: %v", err)
	}
	if err := e.m.Logout(ctx, gone); err != nil {
		t.Fatalf("second logout: %v", err)
	}
}

func TestWriteBehind(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	id, s0 := e.create(t, params)
	e.clk.Advance(4 * time.Minute)
	s1, _ := e.m.Touch(ctx, id)
	// Not yet on disk: a manager reading the database sees creation time.
	if s, _ := e.open(t).Get(ctx, id); !s.LastSeen.Equal(s0.LastSeen) {
		t.Fatalf("last-seen written before the flush: %v", s.LastSeen)
	}
	if err := e.m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := e.open(t).Get(ctx, id); !s.LastSeen.Equal(s1.LastSeen) {
		t.Fatalf("after flush: %v, want %v", s.LastSeen, s1.LastSeen)
	}
	// A flush after a logout does not bring the session back.
	e.clk.Advance(time.Minute)
	e.m.Touch(ctx, id)
	e.m.Logout(ctx, id)
	e.m.Flush(ctx)
	if _, err := e.open(t).Get(ctx, id); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("flush resurrected a session: %v", err)
	}
}

func TestCloseFlushes(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	id, _ := e.create(t, params)
	e.clk.Advance(3 * time.Minute)
	s1, _ := e.m.Touch(ctx, id)
	if err := e.m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Touch(ctx, id); !errors.Is(err, session.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if s, _ := e.open(t).Get(ctx, id); !s.LastSeen.Equal(s1.LastSeen) {
		t.Fatalf("Close did not flush")
	}
}

func TestLogoutAllOthersRef(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	var ids []string
	for range 3 {
		id, _ := e.create(t, params)
		ids = append(ids, id)
	}
	p2 := params
	p2.Customer = "c10" // shares a prefix with c1: must not be touched
	other, _ := e.create(t, p2)

	n, err := e.m.LogoutOthers(ctx, "c1", ids[0])
	if err != nil || n != 2 {
		t.Fatalf("LogoutOthers = %d, %v", n, err)
	}
	for i, id := range ids {
		_, err := e.m.Touch(ctx, id)
		if (i == 0) != (err == nil) {
			t.Fatalf("session %d after LogoutOthers: %v", i, err)
		}
	}
	list, err := e.m.List(ctx, "c1")
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v", list, err)
	}
	if err := e.m.LogoutRef(ctx, "c10", list[0].Ref); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("someone else's ref: %v", err)
	}
	if err := e.m.LogoutRef(ctx, "c1", list[0].Ref); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Touch(ctx, ids[0]); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("after LogoutRef: %v", err)
	}
	e.create(t, params)
	e.create(t, params)
	if n, err := e.m.LogoutAll(ctx, "c1"); err != nil || n != 2 {
		t.Fatalf("LogoutAll = %d, %v", n, err)
	}
	if _, err := e.m.Touch(ctx, other); err != nil {
		t.Fatalf("c10's session: %v", err)
	}
}

func TestStepUp(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	id, s := e.create(t, params)
	if err := e.m.RequireStepUp(s, session.LevelOTP, 0); !errors.Is(err, session.ErrStepUpRequired) {
		t.Fatalf("password-only session: %v", err)
	}
	s, err := e.m.StepUp(ctx, id, session.LevelOTP)
	if err != nil || s.Level != session.LevelOTP || !s.SteppedUpAt.Equal(e.clk.Now()) {
		t.Fatalf("StepUp = %+v, %v", s, err)
	}
	if err := e.m.RequireStepUp(s, session.LevelOTP, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(6 * time.Minute)
	s, _ = e.m.Touch(ctx, id)
	if err := e.m.RequireStepUp(s, session.LevelOTP, 5*time.Minute); !errors.Is(err, session.ErrStepUpRequired) {
		t.Fatalf("stale step-up for a sensitive change: %v", err)
	}
	if err := e.m.RequireStepUp(s, session.LevelOTP, 0); err != nil {
		t.Fatalf("level only: %v", err)
	}
	// A weaker step-up never lowers the level.
	if s, _ = e.m.StepUp(ctx, id, session.LevelPassword); s.Level != session.LevelOTP {
		t.Fatalf("level lowered to %v", s.Level)
	}
	e.m.Logout(ctx, id)
	if _, err := e.m.StepUp(ctx, id, session.LevelOTP); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("StepUp after logout: %v", err)
	}
}

func TestSweep(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	stale, _ := e.create(t, params)
	active, _ := e.create(t, params)
	e.clk.Advance(9 * time.Minute)
	e.m.Touch(ctx, active) // in memory only: the database says idle 9 min
	e.clk.Advance(2 * time.Minute)
	n, err := e.m.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	if _, err := e.m.Touch(ctx, active); err != nil {
		t.Fatalf("active session swept: %v", err)
	}
	if _, err := e.m.Get(ctx, stale); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("stale session: %v", err)
	}
	if l, _ := e.m.List(ctx, "c1"); len(l) != 1 {
		t.Fatalf("index not cleaned: %d", len(l))
	}
}

// TestLogoutIsImmediate races Touch (with and without a warm cache)
// against Logout: once Logout has returned, no Touch may succeed.
func TestLogoutIsImmediate(t *testing.T) {
	ctx := context.Background()
	for round := range 10 {
		e := newEnv(t)
		id, _ := e.create(t, params)
		m := e.m
		if round%2 == 1 {
			m = e.open(t) // cold cache: lookups read the database
		}
		var loggedOut atomic.Bool
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 100 {
					after := loggedOut.Load()
					_, err := m.Touch(ctx, id)
					if after && err == nil {
						t.Error("Touch succeeded after Logout returned")
						return
					}
					if err != nil && !errors.Is(err, session.ErrNotFound) {
						t.Error(err)
						return
					}
				}
			}()
		}
		if err := m.Logout(ctx, id); err != nil {
			t.Fatal(err)
		}
		loggedOut.Store(true)
		wg.Wait()
	}
}

func TestCreateConcurrent(t *testing.T) {
	e := newEnv(t)
	ids := make(chan string, 100)
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, _, err := e.m.Create(context.Background(), params)
			if err != nil {
				t.Error(err)
			}
			ids <- id
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	if len(seen) != 100 {
		t.Fatalf("%d distinct ids", len(seen))
	}
	if l, _ := e.open(t).List(context.Background(), "c1"); len(l) != 100 {
		t.Fatalf("%d on disk", len(l))
	}
}

func TestBadInputAndConfig(t *testing.T) {
	e := newEnv(t)
	for _, p := range []session.Params{
		{Device: "d", IP: params.IP, Level: session.LevelPassword},
		{Customer: "c", IP: params.IP, Level: session.LevelPassword},
		{Customer: "c", Device: "d", Level: session.LevelPassword},
		{Customer: "c", Device: "d", IP: params.IP},
		{Customer: "c", Device: "d", IP: params.IP, Level: 7},
	} {
		if _, _, err := e.m.Create(context.Background(), p); !errors.Is(err, session.ErrBadInput) {
			t.Errorf("Create(%+v) = %v", p, err)
		}
	}
	for _, cfg := range []session.Config{
		{},
		{DB: e.db, IdleTimeout: time.Second},
		{DB: e.db, IdleTimeout: time.Hour, AbsoluteTimeout: time.Minute},
		{DB: e.db, FlushInterval: time.Hour},
	} {
		if _, err := session.Open(cfg); !errors.Is(err, session.ErrConfig) {
			t.Errorf("Open(%+v) = %v", cfg, err)
		}
	}
}

func TestBackgroundFlush(t *testing.T) {
	ctx := context.Background()
	db := authtest.MustOpenDB(t)
	clk := authtest.NewClock()
	m, err := session.Open(session.Config{DB: db, Now: clk.Now, FlushInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	id, _, _ := m.Create(ctx, params)
	clk.Advance(time.Minute)
	s1, _ := m.Touch(ctx, id)
	m2, _ := session.Open(session.Config{DB: db, Now: clk.Now, SweepInterval: -1})
	defer m2.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s, _ := m2.Get(ctx, id); s.LastSeen.Equal(s1.LastSeen) {
			// m2 caches what it read: re-open to read the disk again.
			return
		}
		m2.Close()
		m2, _ = session.Open(session.Config{DB: db, Now: clk.Now, SweepInterval: -1})
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("last-seen never flushed in the background")
}
