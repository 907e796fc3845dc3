package bruteforce_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/auth"
	"github.com/keyward/keyward/banking/auth/bruteforce"
	"github.com/keyward/keyward/banking/auth/internal/authtest"
)

type env struct {
	g      *bruteforce.Guard
	clk    *authtest.Clock
	alerts *authtest.Alerts
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{clk: authtest.NewClock(), alerts: &authtest.Alerts{}}
	g, err := bruteforce.New(bruteforce.Config{DB: authtest.MustOpenDB(t), Alerts: e.alerts, Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.g = g
	return e
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// login runs one attempt the way the banking app does; checked tells
// whether the password was looked at.
func (e *env) login(t *testing.T, account, addr string, right bool) (checked bool, err error) {
	t.Helper()
	ctx := context.Background()
	att, err := e.g.Begin(ctx, account, ip(addr))
	if err != nil {
		return false, err
	}
	if right {
		return true, att.Succeeded(ctx)
	}
	return true, att.Failed(ctx)
}

func TestAccountLock(t *testing.T) {
	e := newEnv(t)
	for i := range 5 {
		if checked, err := e.login(t, "alice", fmt.Sprintf("198.51.100.%d", i), false); !checked || err != nil {
			t.Fatalf("failure %d: checked=%v err=%v", i+1, checked, err)
		}
	}
	checked, err := e.login(t, "alice", "198.51.100.99", true)
	var le *bruteforce.LockedError
	if checked || !errors.As(err, &le) || !errors.Is(err, bruteforce.ErrAccountLocked) || !errors.Is(err, bruteforce.ErrLocked) {
		t.Fatalf("6th attempt (right password): checked=%v err=%v", checked, err)
	}
	if want := e.clk.Now().Add(15 * time.Minute); !le.Until.Equal(want) {
		t.Fatalf("until %v, want %v", le.Until, want)
	}
	evs := e.alerts.Events()
	if len(evs) != 1 || evs[0].Kind != auth.KindAccountLocked || evs[0].Account != "alice" ||
		evs[0].IP != "198.51.100.4" || evs[0].Count != 5 || !evs[0].Until.Equal(le.Until) {
		t.Fatalf("alerts %+v", evs)
	}
	// Other accounts are not affected.
	if _, err := e.login(t, "bob", "198.51.100.99", true); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(15*time.Minute - time.Nanosecond)
	if _, err := e.login(t, "alice", "198.51.100.99", true); !errors.Is(err, bruteforce.ErrAccountLocked) {
		t.Fatalf("just before the end: %v", err)
	}
	e.clk.Advance(time.Nanosecond)
	for i := range 4 { // starts from zero after the lock
		if _, err := e.login(t, "alice", "198.51.100.99", false); err != nil {
			t.Fatalf("after lock, failure %d: %v", i+1, err)
		}
	}
	if st, _ := e.g.AccountStatus("alice"); st.Failures != 4 || !st.LockedUntil.IsZero() {
		t.Fatalf("status %+v", st)
	}
}

func TestSuccessResetsAccount(t *testing.T) {
	e := newEnv(t)
	for range 4 {
		e.login(t, "alice", "192.0.2.1", false)
	}
	if _, err := e.login(t, "alice", "192.0.2.1", true); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := e.login(t, "alice", "192.0.2.1", false); err != nil {
			t.Fatalf("after success, failure %d: %v", i+1, err)
		}
	}
	if _, err := e.login(t, "alice", "192.0.2.1", true); !errors.Is(err, bruteforce.ErrAccountLocked) {
		t.Fatalf("want locked: %v", err)
	}
}

func TestAccountWindow(t *testing.T) {
	e := newEnv(t)
	for range 4 {
		e.login(t, "alice", "192.0.2.1", false)
	}
	e.clk.Advance(24 * time.Hour)
	for i := range 4 {
		if _, err := e.login(t, "alice", "192.0.2.1", false); err != nil {
			t.Fatalf("failure %d after a day: %v", i+1, err)
		}
	}
}

func TestSourceLock(t *testing.T) {
	e := newEnv(t)
	// Password spraying: one failure each on 20 accounts from one address.
	for i := range 20 {
		if _, err := e.login(t, fmt.Sprintf("user%d", i), "203.0.113.9", false); err != nil {
			t.Fatalf("failure %d: %v", i+1, err)
		}
		e.clk.Advance(20 * time.Second)
	}
	checked, err := e.login(t, "user99", "203.0.113.9", true)
	if checked || !errors.Is(err, bruteforce.ErrIPLocked) {
		t.Fatalf("21st: checked=%v err=%v", checked, err)
	}
	evs := e.alerts.Events()
	if len(evs) != 1 || evs[0].Kind != auth.KindIPLocked || evs[0].IP != "203.0.113.9" || evs[0].Count != 20 {
		t.Fatalf("alerts %+v", evs)
	}
	if _, err := e.login(t, "user99", "203.0.113.10", true); err != nil {
		t.Fatalf("other address: %v", err)
	}
	e.clk.Advance(15 * time.Minute)
	if _, err := e.login(t, "user99", "203.0.113.9", true); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
}

func TestSourceWindowSlides(t *testing.T) {
	e := newEnv(t)
	for i := range 19 {
		e.login(t, fmt.Sprintf("u%d", i), "203.0.113.9", false)
	}
	e.clk.Advance(10 * time.Minute) // all 19 leave the window
	for i := range 19 {
		if _, err := e.login(t, fmt.Sprintf("v%d", i), "203.0.113.9", false); err != nil {
			t.Fatalf("failure %d in the new window: %v", i+1, err)
		}
	}
}

func TestSuccessNotCountedAgainstSource(t *testing.T) {
	e := newEnv(t)
	for i := range 50 { // a busy NAT: many good logins
		if _, err := e.login(t, fmt.Sprintf("u%d", i), "192.0.2.7", true); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
}

func TestIPv6CountsPer64(t *testing.T) {
	e := newEnv(t)
	for i := range 20 {
		if _, err := e.login(t, fmt.Sprintf("u%d", i), fmt.Sprintf("2001:db8:1:2::%x", i+1), false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.login(t, "x", "2001:db8:1:2:ffff::1", true); !errors.Is(err, bruteforce.ErrIPLocked) {
		t.Fatalf("same /64: %v", err)
	}
	if _, err := e.login(t, "x", "2001:db8:1:3::1", true); err != nil {
		t.Fatalf("other /64: %v", err)
	}
	// IPv4-mapped IPv6 is the IPv4 address.
	k1, _ := bruteforce.SourceKey(ip("::ffff:192.0.2.1"))
	k2, _ := bruteforce.SourceKey(ip("192.0.2.1"))
	if k1 != k2 {
		t.Fatalf("%q != %q", k1, k2)
	}
}

func TestConcurrentAttemptsOneAccount(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var checked, refused atomic.Int32
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			att, err := e.g.Begin(ctx, "alice", ip(fmt.Sprintf("198.51.100.%d", i)))
			if err != nil {
				if !errors.Is(err, bruteforce.ErrAccountLocked) {
					t.Error(err)
				}
				refused.Add(1)
				return
			}
			checked.Add(1)
			time.Sleep(time.Millisecond) // the password check
			if err := att.Failed(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if checked.Load() != 5 || refused.Load() != 45 {
		t.Fatalf("checked=%d refused=%d, want 5 and 45", checked.Load(), refused.Load())
	}
	if n := len(e.alerts.Events()); n != 1 {
		t.Fatalf("%d alerts, want 1", n)
	}
}

func TestConcurrentAttemptsOneSource(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var checked atomic.Int32
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			att, err := e.g.Begin(ctx, fmt.Sprintf("u%d", i), ip("203.0.113.5"))
			if err != nil {
				if !errors.Is(err, bruteforce.ErrIPLocked) {
					t.Error(err)
				}
				return
			}
			checked.Add(1)
			att.Failed(ctx)
		}()
	}
	wg.Wait()
	if checked.Load() != 20 {
		t.Fatalf("%d password checks from one address, want 20", checked.Load())
	}
	if evs := e.alerts.Events(); len(evs) != 1 || evs[0].Kind != auth.KindIPLocked {
		t.Fatalf("alerts %+v", evs)
	}
}

func TestAbandonTakesBack(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for range 10 {
		att, err := e.g.Begin(ctx, "alice", ip("192.0.2.1"))
		if err != nil {
			t.Fatal(err)
		}
		if err := att.Abandon(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := e.g.AccountStatus("alice"); st.Failures != 0 {
		t.Fatalf("failures %d after abandons", st.Failures)
	}
}

func TestInFlightCountsAndSettleOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var atts []*bruteforce.Attempt
	for range 5 {
		att, err := e.g.Begin(ctx, "alice", ip("192.0.2.1"))
		if err != nil {
			t.Fatal(err)
		}
		atts = append(atts, att)
	}
	// Five in flight: a sixth is refused, and that locks the account.
	if _, err := e.g.Begin(ctx, "alice", ip("192.0.2.2")); !errors.Is(err, bruteforce.ErrAccountLocked) {
		t.Fatalf("sixth in flight: %v", err)
	}
	if err := atts[0].Failed(ctx); err != nil {
		t.Fatal(err)
	}
	if err := atts[0].Failed(ctx); !errors.Is(err, bruteforce.ErrAttemptSettled) {
		t.Fatalf("settled twice: %v", err)
	}
	if err := atts[1].Succeeded(ctx); err != nil { // the right password was in flight
		t.Fatal(err)
	}
	// The reset happened after the others began: their failures count again.
	for _, a := range atts[2:] {
		a.Failed(ctx)
	}
	if st, _ := e.g.AccountStatus("alice"); st.Failures != 3 || !st.LockedUntil.IsZero() {
		t.Fatalf("status %+v, want 3 failures, unlocked", st)
	}
	if n := len(e.alerts.Events()); n != 1 {
		t.Fatalf("%d alerts, want 1", n)
	}
}

func TestUnlockAndSweep(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for range 5 {
		e.login(t, "alice", "192.0.2.1", false)
	}
	if err := e.g.UnlockAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.login(t, "alice", "192.0.2.1", true); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	for range 20 {
		e.login(t, "x", "192.0.2.9", false)
		e.g.UnlockAccount(ctx, "x")
	}
	if err := e.g.UnlockSource(ctx, ip("192.0.2.9")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.login(t, "y", "192.0.2.9", true); err != nil {
		t.Fatalf("after source unlock: %v", err)
	}
	e.login(t, "carol", "192.0.2.3", false)
	e.clk.Advance(24 * time.Hour)
	n, err := e.g.Sweep(ctx)
	if err != nil || n < 5 { // alice, x, y, carol + sources
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	if n, _ := e.g.Sweep(ctx); n != 0 {
		t.Fatalf("second Sweep = %d", n)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.g.Begin(ctx, "", ip("192.0.2.1")); !errors.Is(err, bruteforce.ErrBadInput) {
		t.Fatal(err)
	}
	if _, err := e.g.Begin(ctx, "alice", netip.Addr{}); !errors.Is(err, bruteforce.ErrBadInput) {
		t.Fatal(err)
	}
	if _, err := bruteforce.New(bruteforce.Config{}); !errors.Is(err, bruteforce.ErrConfig) {
		t.Fatal(err)
	}
}
