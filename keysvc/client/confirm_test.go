package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/client"
	"github.com/keyward/keyward/keysvc/wire"
)

// confID is a well-formed confirmation id (cf_ and 22 characters).
const confID = "cf_AbCdEfGhIjKlMnOpQrStUv"

func pendingView() *wire.ConfirmationView {
	return &wire.ConfirmationView{ID: confID, Key: "k1", Status: wire.ConfirmPending, Format: "keyward.transfer.v1",
		Display: []string{"Pay 10.00 EUR to Alice"}, Digest: strings.Repeat("ab", 32)}
}

func ended(status wire.ConfirmationStatus, reason string) wire.ConfirmationView {
	v := *pendingView()
	v.Status, v.Reason = status, reason
	return v
}

func approved() wire.ConfirmationView {
	v := ended(wire.ConfirmApproved, "")
	v.Signature, v.Version = "kw:v2:Y29uZmlybWVk", 2
	return v
}

var transfer = wire.SignRequest{Message: []byte(`{"type":"keyward.transfer.v1"}`)}

func TestSignPending(t *testing.T) {
	b := newFake()
	c := newClient(t, serve(t, b))
	b.confirmations(pendingView())
	res, err := c.Sign(context.Background(), "k1", transfer)
	if err != nil {
		t.Fatalf("Sign answered 202: %v", err)
	}
	if res.Signature != "" || res.Version != 0 || res.Confirmation == nil {
		t.Fatalf("Sign = %+v, want a pending confirmation and no signature", res)
	}
	if got := *res.Confirmation; got.ID != confID || got.Status != wire.ConfirmPending || got.Display[0] != "Pay 10.00 EUR to Alice" {
		t.Errorf("Confirmation = %+v", got)
	}
}

func TestSignConfirmedApproved(t *testing.T) {
	b := newFake()
	c := newClient(t, serve(t, b), client.WithRetries(2))
	ctx := context.Background()
	const poll = 50 * time.Millisecond

	// Not confirm-required: the signature comes at once, no polls.
	res, err := c.SignConfirmed(ctx, "k1", transfer, poll)
	if err != nil || res.Signature != "kw:v2:c2ln" || res.Confirmation != nil || b.count("Confirmation") != 0 {
		t.Fatalf("SignConfirmed without confirmation = %+v, %v (%d polls)", res, err, b.count("Confirmation"))
	}

	// Pending twice, then approved; the first poll fails with a 503 and is
	// retried.
	b.confirmations(pendingView(), *pendingView(), *pendingView(), approved())
	b.fail("Confirmation", fmt.Errorf("audit: %w", wire.ErrAuditUnavailable))
	start := time.Now()
	res, err = c.SignConfirmed(ctx, "k1", transfer, poll)
	if err != nil {
		t.Fatal(err)
	}
	if res.Signature != "kw:v2:Y29uZmlybWVk" || res.Version != 2 || res.Confirmation == nil || res.Confirmation.Status != wire.ConfirmApproved {
		t.Errorf("SignConfirmed = %+v", res)
	}
	if n := b.count("Confirmation"); n != 4 {
		t.Errorf("polls = %d, want 4 (a failed one, retried, then pending, pending, approved)", n)
	}
	if got := b.args("Confirmation"); len(got) != 2 || got[0] != confID || got[1] != poll {
		t.Errorf("last poll asked %v, want [%s %v]", got, confID, poll)
	}
	if d := time.Since(start); d < 2*poll {
		t.Errorf("SignConfirmed took %v: the pending polls were not long polls", d)
	}
	if n := b.count("Sign"); n != 2 {
		t.Errorf("Sign calls = %d, want 2", n)
	}

	// The sign request is repeated after a 503, as Sign is; a 409
	// confirmation_pending (what a repeat after a lost 202 meets) is not.
	b.confirmations(nil)
	b.fail("Sign", fmt.Errorf("pool: %w", wire.ErrTokenUnavailable))
	if res, err := c.SignConfirmed(ctx, "k1", transfer, poll); err != nil || res.Signature != "kw:v2:c2ln" {
		t.Errorf("SignConfirmed after a 503 = %+v, %v", res, err)
	}
	if n := b.count("Sign"); n != 4 {
		t.Errorf("Sign calls = %d after a 503, want 4 (one retry)", n)
	}
	b.fail("Sign", fmt.Errorf("k1: %w", wire.ErrConfirmationPending))
	if _, err := c.SignConfirmed(ctx, "k1", transfer, poll); !errors.Is(err, wire.ErrConfirmationPending) {
		t.Errorf("SignConfirmed on a 409 = %v", err)
	}
	if n := b.count("Sign"); n != 5 {
		t.Errorf("Sign calls = %d after a 409, want 5 (no retry)", n)
	}
}

func TestSignConfirmedNotConfirmed(t *testing.T) {
	b := newFake()
	c := newClient(t, serve(t, b))
	for _, tc := range []struct {
		status wire.ConfirmationStatus
		reason string
	}{
		{wire.ConfirmRejected, "the holder rejected it"},
		{wire.ConfirmExpired, "the holder did not answer in time; nothing was signed"},
		{wire.ConfirmCancelled, "the requester cancelled it"},
		{wire.ConfirmFailed, "the key could not sign: token_unavailable"},
	} {
		b.confirmations(pendingView(), *pendingView(), ended(tc.status, tc.reason))
		res, err := c.SignConfirmed(context.Background(), "k1", transfer, 20*time.Millisecond)
		if !errors.Is(err, client.ErrNotConfirmed) {
			t.Errorf("%s: SignConfirmed = %+v, %v; want ErrNotConfirmed", tc.status, res, err)
			continue
		}
		var nc *client.NotConfirmedError
		if !errors.As(err, &nc) || nc.Confirmation.Status != tc.status || nc.Confirmation.ID != confID {
			t.Errorf("%s: %#v", tc.status, nc)
		}
		if msg := err.Error(); !strings.Contains(msg, string(tc.status)) || !strings.Contains(msg, tc.reason) || !strings.Contains(msg, confID) {
			t.Errorf("%s: message %q lacks the status, reason or id", tc.status, msg)
		}
		if res.Signature != "" {
			t.Errorf("%s: signature %q", tc.status, res.Signature)
		}
	}
}

func TestConfirmationErrorCodes(t *testing.T) {
	b := newFake()
	c := newClient(t, serve(t, b))
	ctx := context.Background()

	// A second request while one is pending: 409 confirmation_pending,
	// which is wire.ErrConfirmationPending and not ErrNotConfirmed.
	b.confirmations(pendingView(), *pendingView())
	b.fail("Sign", fmt.Errorf(`%w: key "k1" already has a confirmation waiting`, wire.ErrConfirmationPending))
	_, err := c.SignConfirmed(ctx, "k1", transfer, 20*time.Millisecond)
	var ce *client.Error
	if !errors.Is(err, wire.ErrConfirmationPending) || !errors.As(err, &ce) || ce.Status != http.StatusConflict || ce.Code != "confirmation_pending" {
		t.Fatalf("SignConfirmed while pending = %v (%#v)", err, ce)
	}
	if errors.Is(err, client.ErrNotConfirmed) || errors.Is(err, wire.ErrConfirmationClosed) {
		t.Errorf("%v matches another sentinel", err)
	}
	if n := b.count("Confirmation"); n != 0 {
		t.Errorf("%d polls after a refused sign", n)
	}

	// Unknown and ended confirmations.
	b.confirmations(nil)
	if _, err := c.Confirmation(ctx, confID, 0); !errors.Is(err, wire.ErrConfirmationNotFound) {
		t.Errorf("Confirmation of an unknown id = %v", err)
	}
	b.fail("CancelConfirmation", fmt.Errorf("%w: this confirmation is approved", wire.ErrConfirmationClosed))
	if _, err := c.CancelConfirmation(ctx, confID); !errors.Is(err, wire.ErrConfirmationClosed) {
		t.Errorf("CancelConfirmation of an ended one = %v", err)
	}
	b.fail("Sign", fmt.Errorf("%w: holder", wire.ErrHolderLocked))
	if _, err := c.Sign(ctx, "k1", transfer); !errors.Is(err, wire.ErrHolderLocked) || !errors.As(err, &ce) || ce.Status != http.StatusLocked {
		t.Errorf("Sign with a locked holder = %v", err)
	}
}

func TestConfirmationAndCancel(t *testing.T) {
	b := newFake()
	c := newClient(t, serve(t, b))
	ctx := context.Background()
	b.confirmations(nil, approved())
	v, err := c.Confirmation(ctx, confID, 1500*time.Millisecond)
	if err != nil || v.Status != wire.ConfirmApproved || v.Signature != "kw:v2:Y29uZmlybWVk" {
		t.Fatalf("Confirmation = %+v, %v", v, err)
	}
	if got := b.args("Confirmation"); got[0] != confID || got[1] != 1500*time.Millisecond {
		t.Errorf("Confirmation asked %v", got)
	}
	if _, err := c.Confirmation(ctx, confID, 0); err != nil || b.args("Confirmation")[1] != time.Duration(0) {
		t.Errorf("Confirmation without wait: %v, asked %v", err, b.args("Confirmation"))
	}
	for _, w := range []time.Duration{-time.Second, client.MaxConfirmationWait + time.Millisecond} {
		if _, err := c.Confirmation(ctx, confID, w); !errors.Is(err, wire.ErrInvalidArgument) {
			t.Errorf("Confirmation(wait %v) = %v", w, err)
		}
		if _, err := c.SignConfirmed(ctx, "k1", transfer, w); !errors.Is(err, wire.ErrInvalidArgument) {
			t.Errorf("SignConfirmed(poll %v) = %v", w, err)
		}
	}
	if n, s := b.count("Confirmation"), b.count("Sign"); n != 2 || s != 0 {
		t.Errorf("out-of-range waits reached the server: %d polls, %d signs", n, s)
	}

	v, err = c.CancelConfirmation(ctx, confID)
	if err != nil || v.Status != wire.ConfirmCancelled || v.ID != confID {
		t.Errorf("CancelConfirmation = %+v, %v", v, err)
	}
}

// TestSignConfirmedCancelsOnContextEnd: a caller that stops waiting
// withdraws its request, so nobody approves a signature nobody collects.
func TestSignConfirmedCancelsOnContextEnd(t *testing.T) {
	b := newFake()
	c := newClient(t, serve(t, b))
	b.confirmations(pendingView(), *pendingView())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.SignConfirmed(ctx, "k1", transfer, 100*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), confID) {
		t.Fatalf("SignConfirmed past its deadline = %v", err)
	}
	if n := b.count("CancelConfirmation"); n != 1 {
		t.Errorf("CancelConfirmation calls = %d, want 1", n)
	}
	if got := b.args("CancelConfirmation"); len(got) != 1 || got[0] != confID {
		t.Errorf("cancelled %v", got)
	}
}

// TestLongPollOutlivesHTTPTimeout: a caller's HTTP client with a Timeout
// shorter than the wait still gets its long poll's answer, and its
// Timeout is left as it was for other requests. The server answers after
// three times the HTTP Timeout (a status change ends a long poll early),
// far inside the 10 s wait, so the client's deadline (wait + Timeout) is
// never what the test measures: only the Timeout that must not apply.
func TestLongPollOutlivesHTTPTimeout(t *testing.T) {
	b := newFake()
	const httpTimeout = 300 * time.Millisecond
	b.hold = 3 * httpTimeout
	hc := &http.Client{Timeout: httpTimeout}
	c := newClient(t, serve(t, b), client.WithHTTPClient(hc), client.WithRetries(0))
	b.confirmations(nil, *pendingView())
	start := time.Now()
	v, err := c.Confirmation(context.Background(), confID, 10*time.Second)
	if err != nil || v.Status != wire.ConfirmPending {
		t.Fatalf("long poll held %v over a %v HTTP timeout = %+v, %v", b.hold, httpTimeout, v, err)
	}
	if d := time.Since(start); d < b.hold {
		t.Errorf("long poll answered after %v, before the server's %v hold", d, b.hold)
	}
	if hc.Timeout != httpTimeout {
		t.Errorf("the caller's HTTP client Timeout became %v", hc.Timeout)
	}
	// The caller's ctx still bounds it.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.Confirmation(ctx, confID, time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("long poll past the caller's deadline = %v", err)
	}
}

func TestHolderOfficer(t *testing.T) {
	b := newFake()
	c := newClient(t, serve(t, b))
	ctx := context.Background()
	v, err := c.UnlockHolder(ctx, "k1")
	if err != nil || v.Name != "k1" || v.Confirm != wire.ConfirmRequired || v.Holder == nil || !v.Holder.Enrolled || v.Holder.Locked {
		t.Fatalf("UnlockHolder = %+v, %v", v, err)
	}
	if got := b.args("UnlockHolder"); len(got) != 1 || got[0] != "k1" {
		t.Errorf("UnlockHolder got %v", got)
	}
	if v, err = c.ResetHolder(ctx, "k1"); err != nil || v.Holder == nil || v.Holder.Enrolled {
		t.Fatalf("ResetHolder = %+v, %v", v, err)
	}
	b.fail("ResetHolder", fmt.Errorf("%w: admin only", wire.ErrForbidden))
	if _, err := c.ResetHolder(ctx, "k1"); !errors.Is(err, wire.ErrForbidden) {
		t.Errorf("ResetHolder by a non-admin = %v", err)
	}

	// The one-time setup code is decoded (keysvc.Key cannot carry one
	// from outside package keysvc, so a canned answer stands in).
	body := `{"name":"k1","purpose":"sign","algorithm":"ec-p256","protection":"hsm","primary":1,"min_version":1,"last_rotated":"2025-01-01T00:00:00Z","policy":{"grants":null},"versions":[],"created_at":"2025-01-01T00:00:00Z","confirm":"required","holder":{"enrolled":false,"failures":0,"locked":false},"holder_setup_code":"ABCDEFGHIJKLMNOP"}`
	f := newFlaky(t, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	fc, _ := client.New("http://" + f.ln.Addr().String())
	if v, err := fc.ResetHolder(ctx, "k1"); err != nil || v.HolderSetupCode != "ABCDEFGHIJKLMNOP" || v.Holder == nil || v.Holder.Enrolled {
		t.Errorf("ResetHolder = %+v, %v", v, err)
	}
}
