package otp_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/banking/auth/otp"
)

// outboxHolds reports whether the outbox file holds s in any line.
func outboxHolds(t *testing.T, path, s string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte(s))
}

// Issue 12 item 8: a code leaves the dev outbox, memory and file, once it
// is used or has expired.
func TestDevOutboxDropsUsedAndExpiredCodes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sms-outbox.jsonl")
	box, err := otp.OpenDevOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	e := newEnv(t, func(c *otp.Config) { c.Gateway = box })
	e.box = box
	login := e.issue(t, "c1", "login")
	if !outboxHolds(t, path, login) {
		t.Fatal("the dev outbox file lacks the code it was sent: the test cannot see removal")
	}
	if err := e.svc.Verify(ctx, "c1", "login", login); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if outboxHolds(t, path, login) {
		t.Error("a used code is still in the outbox file")
	}
	if c, ok := box.LastCode(phone); ok && c == login {
		t.Error("a used code is still in the outbox's memory")
	}

	transfer := e.issue(t, "c1", "transfer")
	e.clk.Advance(otp.DefaultTTL - 1)
	if _, err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if !outboxHolds(t, path, transfer) {
		t.Error("a live code left the outbox before it expired")
	}
	e.clk.Advance(1)
	if _, err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if outboxHolds(t, path, transfer) || outboxHolds(t, path, phone) {
		t.Error("an expired code, or its phone number, is still in the outbox file")
	}
	if n := len(box.Messages()); n != 0 {
		t.Errorf("the outbox keeps %d messages after every code died", n)
	}
}

// An outbox file written before outboxes expired their codes (lines with
// no expiry) loses those lines when it is opened.
func TestDevOutboxDropsOldFormatLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sms-outbox.jsonl")
	old := `{"at":"2026-11-01T09:00:00Z","phone":"13812345678","text":"[Keyward Bank] Your verification code for login is 482913."}` + "\n"
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	box, err := otp.OpenDevOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	if outboxHolds(t, path, "482913") || outboxHolds(t, path, phone) {
		t.Error("an old outbox file still holds its codes and phone numbers after it was opened")
	}
}
