package otp_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/auth/otp"
)

// TestNotify: a notice reaches the phone given, creates no code (nothing
// verifies afterwards, the hourly code limit is untouched) and a text that
// reads as a code is refused.
func TestNotify(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(c *otp.Config) { c.IssuesPerHour = 1 })
	other := "13900002222"
	text := "[Keyward Bank] Your registered mobile number was changed at a branch."
	if err := e.svc.Notify(ctx, other, text); err != nil {
		t.Fatal(err)
	}
	m, ok := e.box.Last(other)
	if !ok || m.Text != text {
		t.Fatalf("outbox for %s: %+v %v", other, m, ok)
	}
	if _, ok := e.box.LastCode(other); ok {
		t.Fatal("a notice reads as a code")
	}
	if err := e.svc.Verify(ctx, "c1", "notice", "123456"); !errors.Is(err, otp.ErrOTPNotFound) {
		t.Fatalf("a notice created a code: %v", err)
	}
	// The one code of the hour is still there to issue.
	for i := 0; i < 3; i++ {
		if err := e.svc.Notify(ctx, phone, text); err != nil {
			t.Fatal(err)
		}
	}
	e.issue(t, "c1", "login")

	if err := e.svc.Notify(ctx, other, "your code is 123456"); !errors.Is(err, otp.ErrNoticeHasCode) {
		t.Fatalf("code-like notice: %v", err)
	}
	if err := e.svc.Notify(ctx, "", text); !errors.Is(err, otp.ErrBadInput) {
		t.Fatalf("no phone: %v", err)
	}
	// The outbox drops the notice at the sweep after a code's longest life.
	e.clk.Advance(otp.MaxTTL + time.Second)
	if _, err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.box.Last(other); ok {
		t.Fatal("the notice outlived the sweep")
	}
}

func TestNotifyGatewayFailure(t *testing.T) {
	e := newEnv(t, func(c *otp.Config) { c.Gateway = failingGateway{} })
	if err := e.svc.Notify(context.Background(), phone, "[Keyward Bank] notice"); !errors.Is(err, otp.ErrSend) {
		t.Fatalf("failing gateway: %v", err)
	}
}
