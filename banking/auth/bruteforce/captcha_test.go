package bruteforce_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/keyward/keyward/banking/auth/bruteforce"
	"github.com/keyward/keyward/banking/auth/internal/authtest"
)

// TestCaptchaAfter: from the third counted failure of an account, or of a
// source, BeginHuman without a captcha is refused with ErrCaptchaRequired
// and counts nothing; with one it is admitted; a lock still comes first;
// Begin (no captcha policy) is unchanged.
func TestCaptchaAfter(t *testing.T) {
	ctx := context.Background()
	clk := authtest.NewClock()
	g, err := bruteforce.New(bruteforce.Config{DB: authtest.MustOpenDB(t), Now: clk.Now, CaptchaAfter: 3})
	if err != nil {
		t.Fatal(err)
	}
	fail := func(account, addr string, human bool) error {
		att, err := g.BeginHuman(ctx, account, ip(addr), human)
		if err != nil {
			return err
		}
		return att.Failed(ctx)
	}
	for i := range 3 {
		if err := fail("alice", fmt.Sprintf("198.51.100.%d", i), false); err != nil {
			t.Fatalf("failure %d without captcha: %v", i+1, err)
		}
	}
	for range 4 { // refused without counting: never reaches the lock
		if err := fail("alice", "198.51.100.50", false); !errors.Is(err, bruteforce.ErrCaptchaRequired) {
			t.Fatalf("4th attempt without captcha: %v, want ErrCaptchaRequired", err)
		}
	}
	if st, _ := g.AccountStatus("alice"); st.Failures != 3 {
		t.Fatalf("failures %d after refusals, want 3 (a refusal counts nothing)", st.Failures)
	}
	att, err := g.BeginHuman(ctx, "alice", ip("198.51.100.50"), true)
	if err != nil {
		t.Fatalf("with a captcha: %v", err)
	}
	if err := att.Succeeded(ctx); err != nil {
		t.Fatal(err)
	}
	if att, err := g.BeginHuman(ctx, "alice", ip("198.51.100.51"), false); err != nil {
		t.Fatalf("after a success the count is reset: %v", err)
	} else {
		_ = att.Abandon(ctx)
	}

	// the source's count alone asks for it too (three accounts, one address)
	for i := range 3 {
		if err := fail(fmt.Sprintf("user%d", i), "203.0.113.7", false); err != nil {
			t.Fatal(err)
		}
	}
	if err := fail("bob", "203.0.113.7", false); !errors.Is(err, bruteforce.ErrCaptchaRequired) {
		t.Fatalf("new account from a failing source: %v", err)
	}

	// a lock is reported before the captcha
	for i := range 2 {
		if err := fail("carol", fmt.Sprintf("192.0.2.%d", i), true); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if err := fail("carol", fmt.Sprintf("192.0.2.%d", 10+i), true); err != nil {
			t.Fatal(err)
		}
	}
	if err := fail("carol", "192.0.2.99", false); !errors.Is(err, bruteforce.ErrLocked) {
		t.Fatalf("locked account without captcha: %v, want the lock", err)
	}

	// Begin never asks
	for i := range 4 {
		if err := func() error {
			att, err := g.Begin(ctx, "dave", ip(fmt.Sprintf("10.9.0.%d", i)))
			if err != nil {
				return err
			}
			return att.Failed(ctx)
		}(); err != nil {
			t.Fatalf("Begin %d: %v", i, err)
		}
	}
}

// TestCaptchaNotForLoginsInFlight: many customers behind one address
// logging in at once (attempts begun, not yet settled) are not failures:
// the captcha waits for settled failures, while the in-flight attempts
// still count towards the source's lock (found by make bench-banking,
// whose 1,000 customers log in from 127.0.0.1 with 64 workers).
func TestCaptchaNotForLoginsInFlight(t *testing.T) {
	ctx := context.Background()
	clk := authtest.NewClock()
	g, err := bruteforce.New(bruteforce.Config{DB: authtest.MustOpenDB(t), Now: clk.Now, CaptchaAfter: 3, IPLimit: 20})
	if err != nil {
		t.Fatal(err)
	}
	var inFlight []*bruteforce.Attempt
	for i := range 10 {
		att, err := g.BeginHuman(ctx, fmt.Sprintf("cust%d", i), ip("192.0.2.80"), false)
		if err != nil {
			t.Fatalf("login %d in flight from one address: %v", i+1, err)
		}
		inFlight = append(inFlight, att)
	}
	for _, att := range inFlight[:7] {
		if err := att.Succeeded(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, att := range inFlight[7:] { // three wrong passwords among them
		if err := att.Failed(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := g.BeginHuman(ctx, "cust99", ip("192.0.2.80"), false); !errors.Is(err, bruteforce.ErrCaptchaRequired) {
		t.Fatalf("after three settled failures from the address: %v, want ErrCaptchaRequired", err)
	}
	// In-flight attempts still bound concurrent guesses: the lock counts them.
	for i := range 20 {
		if _, err := g.BeginHuman(ctx, fmt.Sprintf("x%d", i), ip("198.51.100.90"), false); err != nil {
			t.Fatalf("attempt %d in flight: %v", i+1, err)
		}
	}
	if _, err := g.BeginHuman(ctx, "x99", ip("198.51.100.90"), true); !errors.Is(err, bruteforce.ErrLocked) {
		t.Fatalf("21st attempt with 20 in flight: %v, want the source locked", err)
	}
}
