package otp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/auth"
	"github.com/keyward/keyward/banking/auth/internal/authtest"
	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/store"
)

const phone = "13812345678"

type env struct {
	svc    *otp.Service
	box    *otp.DevOutbox
	clk    *authtest.Clock
	alerts *authtest.Alerts
	db     store.DB
}

func newEnv(t *testing.T, mod func(*otp.Config)) *env {
	t.Helper()
	e := &env{box: otp.NewDevOutbox(), clk: authtest.NewClock(), alerts: &authtest.Alerts{}, db: authtest.MustOpenDB(t)}
	h, err := otp.NewHMACSHA256([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := otp.Config{
		DB: e.db, Hasher: h, Gateway: e.box, Alerts: e.alerts, Now: e.clk.Now,
		Phone: func(_ context.Context, id string) (string, error) {
			if id == "nophone" {
				return "", nil
			}
			return phone, nil
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	if e.svc, err = otp.New(cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) issue(t *testing.T, customer, purpose string) string {
	t.Helper()
	sent, err := e.svc.Issue(context.Background(), customer, purpose)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if sent.Phone != "138****5678" {
		t.Fatalf("Sent.Phone = %q", sent.Phone)
	}
	code, ok := e.box.LastCode(phone)
	if !ok {
		t.Fatal("no code in the outbox")
	}
	return code
}

// wrong returns a code different from c.
func wrong(c string, i int) string {
	w := fmt.Sprintf("%06d", i)
	if w == c {
		w = fmt.Sprintf("%06d", i+1)
	}
	return w
}

func TestConfig(t *testing.T) {
	for name, mod := range map[string]func(*otp.Config){
		"ttl too long":      func(c *otp.Config) { c.TTL = 7 * time.Minute },
		"too many guesses":  func(c *otp.Config) { c.MaxGuesses = 6 },
		"no hasher":         func(c *otp.Config) { c.Hasher = nil },
		"no gateway":        func(c *otp.Config) { c.Gateway = nil },
		"no phone":          func(c *otp.Config) { c.Phone = nil },
		"negative rate":     func(c *otp.Config) { c.IssuesPerHour = -1 },
		"negative deadline": func(c *otp.Config) { c.SendTimeout = -time.Second },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := otp.Config{DB: authtest.MustOpenDB(t), Gateway: otp.NewDevOutbox(),
				Hasher: otp.HasherFunc(func(context.Context, []byte) ([]byte, error) { return nil, nil }),
				Phone:  func(context.Context, string) (string, error) { return phone, nil }}
			mod(&cfg)
			if _, err := otp.New(cfg); !errors.Is(err, otp.ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
		})
	}
	if _, err := otp.NewHMACSHA256(make([]byte, 31)); !errors.Is(err, otp.ErrConfig) {
		t.Fatalf("short HMAC key: %v", err)
	}
}

func TestIssueVerifyOnce(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	code := e.issue(t, "c1", "login")
	if len(code) != 6 {
		t.Fatalf("code %q", code)
	}
	msg, _ := e.box.Last(phone)
	if !strings.Contains(msg.Text, "登录确认") || !strings.Contains(msg.Text, "5分钟内有效") {
		t.Errorf("text %q", msg.Text)
	}
	if err := e.svc.Verify(ctx, "c1", "transfer", code); !errors.Is(err, otp.ErrOTPNotFound) {
		t.Fatalf("other purpose: %v", err)
	}
	if err := e.svc.Verify(ctx, "c2", "login", code); !errors.Is(err, otp.ErrOTPNotFound) {
		t.Fatalf("other customer: %v", err)
	}
	if err := e.svc.Verify(ctx, "c1", "login", code); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if err := e.svc.Verify(ctx, "c1", "login", code); !errors.Is(err, otp.ErrOTPUsed) {
		t.Fatalf("second Verify: %v, want ErrOTPUsed", err)
	}
}

func TestSixWrongCodes(t *testing.T) {
	ctx := auth.WithSource(context.Background(), mustAddr("203.0.113.7"))
	e := newEnv(t, nil)
	code := e.issue(t, "c1", "login")
	for i := 1; i <= 4; i++ {
		err := e.svc.Verify(ctx, "c1", "login", wrong(code, i))
		var inv *otp.InvalidError
		if !errors.As(err, &inv) || !errors.Is(err, otp.ErrOTPInvalid) || inv.Remaining != 5-i {
			t.Fatalf("guess %d: %v, want InvalidError{%d}", i, err, 5-i)
		}
	}
	if err := e.svc.Verify(ctx, "c1", "login", wrong(code, 5)); !errors.Is(err, otp.ErrOTPLocked) {
		t.Fatalf("5th wrong: %v, want ErrOTPLocked", err)
	}
	// The sixth attempt — even with the right code — is refused.
	if err := e.svc.Verify(ctx, "c1", "login", code); !errors.Is(err, otp.ErrOTPLocked) {
		t.Fatalf("right code after lock: %v, want ErrOTPLocked", err)
	}
	evs := e.alerts.Events()
	if len(evs) != 1 || evs[0].Kind != auth.KindOTPLocked || evs[0].Account != "c1" || evs[0].IP != "203.0.113.7" || evs[0].Count != 5 {
		t.Fatalf("alerts %+v", evs)
	}
	// A new code works again.
	code = e.issue(t, "c1", "login")
	if err := e.svc.Verify(ctx, "c1", "login", code); err != nil {
		t.Fatalf("new code: %v", err)
	}
}

func TestFormatNotCounted(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(c *otp.Config) { c.MaxGuesses = 1 })
	code := e.issue(t, "c1", "login")
	for _, bad := range []string{"", "12345", "1234567", "12345a", "１２３４５６", " 12345"} {
		if err := e.svc.Verify(ctx, "c1", "login", bad); !errors.Is(err, otp.ErrOTPFormat) {
			t.Fatalf("Verify(%q) = %v", bad, err)
		}
	}
	if err := e.svc.Verify(ctx, "c1", "login", code); err != nil {
		t.Fatalf("malformed inputs were counted: %v", err)
	}
}

func TestExpiry(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	code := e.issue(t, "c1", "login")
	e.clk.Advance(5*time.Minute - time.Nanosecond)
	code2 := e.issue(t, "c2", "login")
	if err := e.svc.Verify(ctx, "c2", "login", code2); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Nanosecond)
	if err := e.svc.Verify(ctx, "c1", "login", code); !errors.Is(err, otp.ErrOTPExpired) {
		t.Fatalf("at expiry: %v", err)
	}
	if n, err := e.svc.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 (c2's code is used but still in time)", n, err)
	}
	if err := e.svc.Verify(ctx, "c1", "login", code); !errors.Is(err, otp.ErrOTPNotFound) {
		t.Fatalf("after sweep: %v", err)
	}
}

func TestIssueReplaces(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	old := e.issue(t, "c1", "login")
	var cur string
	for cur = e.issue(t, "c1", "login"); cur == old; cur = e.issue(t, "c1", "login") {
	}
	if err := e.svc.Verify(ctx, "c1", "login", old); !errors.Is(err, otp.ErrOTPInvalid) {
		t.Fatalf("old code: %v, want ErrOTPInvalid", err)
	}
	if err := e.svc.Verify(ctx, "c1", "login", cur); err != nil {
		t.Fatalf("current code: %v", err)
	}
}

func TestRateLimit(t *testing.T) {
	ctx := auth.WithSource(context.Background(), mustAddr("2001:db8::1"))
	e := newEnv(t, nil)
	for i := range 5 {
		e.issue(t, "c1", []string{"login", "transfer"}[i%2])
		e.clk.Advance(time.Minute)
	}
	for range 2 {
		_, err := e.svc.Issue(ctx, "c1", "login")
		var rl *otp.RateLimitedError
		if !errors.As(err, &rl) || !errors.Is(err, otp.ErrRateLimited) || rl.RetryAfter != 55*time.Minute {
			t.Fatalf("6th issue: %v", err)
		}
	}
	if got := len(e.box.Messages()); got != 5 {
		t.Fatalf("%d messages sent, want 5", got)
	}
	if evs := e.alerts.Events(); len(evs) != 1 || evs[0].Kind != auth.KindOTPRateLimited || evs[0].IP != "2001:db8::1" {
		t.Fatalf("alerts %+v, want one rate-limit alert", evs)
	}
	if _, err := e.svc.Issue(ctx, "c2", "login"); err != nil {
		t.Fatalf("other customer limited: %v", err)
	}
	e.clk.Advance(55 * time.Minute)
	if _, err := e.svc.Issue(ctx, "c1", "login"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestRateLimitConcurrent(t *testing.T) {
	e := newEnv(t, nil)
	var ok, limited atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch _, err := e.svc.Issue(context.Background(), "c1", "login"); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, otp.ErrRateLimited):
				limited.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 5 || limited.Load() != 45 || len(e.box.Messages()) != 5 {
		t.Fatalf("ok=%d limited=%d sent=%d, want 5/45/5", ok.Load(), limited.Load(), len(e.box.Messages()))
	}
}

func TestConcurrentGuesses(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	code := e.issue(t, "c1", "login")
	var invalid, locked atomic.Int32
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := e.svc.Verify(ctx, "c1", "login", wrong(code, i)); {
			case errors.Is(err, otp.ErrOTPInvalid):
				invalid.Add(1)
			case errors.Is(err, otp.ErrOTPLocked):
				locked.Add(1)
			default:
				t.Errorf("unexpected %v", err)
			}
		}()
	}
	wg.Wait()
	if invalid.Load() != 4 || locked.Load() != 46 {
		t.Fatalf("invalid=%d locked=%d, want 4 and 46", invalid.Load(), locked.Load())
	}
	if err := e.svc.Verify(ctx, "c1", "login", code); !errors.Is(err, otp.ErrOTPLocked) {
		t.Fatalf("right code after 50 wrong: %v", err)
	}
	if n := len(e.alerts.Events()); n != 1 {
		t.Fatalf("%d alerts, want 1", n)
	}
}

func TestConcurrentRightCode(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	code := e.issue(t, "c1", "login")
	var ok, used atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := e.svc.Verify(ctx, "c1", "login", code); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, otp.ErrOTPUsed):
				used.Add(1)
			default:
				t.Errorf("unexpected %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || used.Load() != 49 {
		t.Fatalf("ok=%d used=%d, want 1 and 49", ok.Load(), used.Load())
	}
}

func TestStoredOnlyAsKeyedHash(t *testing.T) {
	e := newEnv(t, nil)
	code := e.issue(t, "c1", "login")
	var raw []byte
	e.db.View(func(tx store.Tx) error {
		raw = append(raw, tx.Bucket([]byte("auth-otp")).Get([]byte("c1\x00login"))...)
		return nil
	})
	var rec map[string]any
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatalf("record %q: %v", raw, err)
	}
	for k, v := range rec {
		if s := fmt.Sprint(v); s == code || strings.Contains(k, "code") {
			t.Fatalf("field %s holds the code", k)
		}
	}
	if _, ok := rec["mac"]; !ok {
		t.Fatalf("no mac field in %v", rec)
	}
	// A different key cannot verify it: the hash is keyed.
	h2, _ := otp.NewHMACSHA256([]byte("another key, 32 bytes long......"))
	svc2, err := otp.New(otp.Config{DB: e.db, Hasher: h2, Gateway: e.box, Now: e.clk.Now,
		Phone: func(context.Context, string) (string, error) { return phone, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc2.Verify(context.Background(), "c1", "login", code); !errors.Is(err, otp.ErrOTPInvalid) {
		t.Fatalf("other key: %v", err)
	}
}

type failingGateway struct{ echo bool }

func (g failingGateway) Send(_ context.Context, _, text string) error {
	if g.echo {
		return fmt.Errorf("provider refused %q", text)
	}
	return errors.New("provider unavailable")
}

func TestGatewayFailure(t *testing.T) {
	for _, echo := range []bool{false, true} {
		e := newEnv(t, func(c *otp.Config) { c.Gateway = failingGateway{echo: echo} })
		_, err := e.svc.Issue(context.Background(), "c1", "login")
		if !errors.Is(err, otp.ErrSend) {
			t.Fatalf("echo=%v: %v", echo, err)
		}
		if echo && err.Error() != otp.ErrSend.Error() {
			t.Fatalf("echoed text leaked into the error: %v", err)
		}
		// The unsent code was cancelled.
		if err := e.svc.Verify(context.Background(), "c1", "login", "123456"); !errors.Is(err, otp.ErrOTPNotFound) {
			t.Fatalf("cancelled code: %v", err)
		}
	}
}

func TestSendDeadline(t *testing.T) {
	var left time.Duration
	gw := gatewayFunc(func(ctx context.Context, _, _ string) error {
		d, ok := ctx.Deadline()
		if !ok {
			return errors.New("no deadline")
		}
		left = time.Until(d)
		return nil
	})
	e := newEnv(t, func(c *otp.Config) { c.Gateway = gw; c.SendTimeout = 3 * time.Second })
	if _, err := e.svc.Issue(context.Background(), "c1", "login"); err != nil {
		t.Fatal(err)
	}
	if left <= 0 || left > 3*time.Second {
		t.Fatalf("deadline %v", left)
	}
}

type gatewayFunc func(ctx context.Context, phone, text string) error

func (f gatewayFunc) Send(ctx context.Context, phone, text string) error { return f(ctx, phone, text) }

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	for _, tc := range [][2]string{{"", "login"}, {"c\x001", "login"}, {"c1", ""}, {"c1", "Login"}, {"c1", "log in"}, {"c1", strings.Repeat("a", 33)}} {
		if _, err := e.svc.Issue(ctx, tc[0], tc[1]); !errors.Is(err, otp.ErrBadInput) {
			t.Errorf("Issue(%q, %q) = %v", tc[0], tc[1], err)
		}
		if err := e.svc.Verify(ctx, tc[0], tc[1], "123456"); !errors.Is(err, otp.ErrBadInput) {
			t.Errorf("Verify(%q, %q) = %v", tc[0], tc[1], err)
		}
	}
	if _, err := e.svc.Issue(ctx, "nophone", "login"); !errors.Is(err, otp.ErrBadInput) {
		t.Errorf("no phone: %v", err)
	}
}

func TestDevOutboxFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sms.jsonl")
	box, err := otp.OpenDevOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := box.Send(context.Background(), phone, "code 123456 for you"); err != nil {
		t.Fatal(err)
	}
	box.Close()
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	data, _ := os.ReadFile(path)
	var m otp.Message
	if err := json.Unmarshal(data, &m); err != nil || m.Phone != phone || m.Text != "code 123456 for you" {
		t.Fatalf("line %q: %v", data, err)
	}
	if c, ok := box.LastCode(phone); !ok || c != "123456" {
		t.Fatalf("LastCode = %q", c)
	}
	os.Chmod(path, 0o644)
	if _, err := otp.OpenDevOutbox(path); !errors.Is(err, otp.ErrOutboxMode) {
		t.Fatalf("0644 file: %v", err)
	}
}
