package client

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
)

// Long-poll bounds of GET /v1/confirmations/{id}?wait=...
const (
	// MaxConfirmationWait is the longest wait the server accepts.
	MaxConfirmationWait = 30 * time.Second
	// DefaultConfirmationWait is SignConfirmed's wait per poll: under
	// MaxConfirmationWait, and under the 30 s idle timeouts of common
	// proxies.
	DefaultConfirmationWait = 25 * time.Second
)

// cancelTimeout bounds SignConfirmed's cancellation of a confirmation its
// caller stopped waiting for.
const cancelTimeout = 5 * time.Second

// ErrNotConfirmed is wrapped by SignConfirmed's error when the
// confirmation ended without a signature: rejected by the holder,
// expired, cancelled, or failed (approved, but the key could not sign).
var ErrNotConfirmed = errors.New("keysvc: not confirmed")

// NotConfirmedError is SignConfirmed's error for a confirmation that ended
// without a signature; errors.Is(err, ErrNotConfirmed) holds, and
// errors.As gives the final confirmation (its Status and Reason).
type NotConfirmedError struct {
	Confirmation wire.ConfirmationView
}

func (e *NotConfirmedError) Error() string {
	v := e.Confirmation
	msg := fmt.Sprintf("%v: confirmation %s of key %q ended with status %s", ErrNotConfirmed, v.ID, v.Key, v.Status)
	if v.Reason != "" {
		msg += ": " + v.Reason
	}
	return msg
}

// Unwrap returns ErrNotConfirmed.
func (e *NotConfirmedError) Unwrap() error { return ErrNotConfirmed }

func confirmationPath(id string) string { return "/v1/confirmations/" + url.PathEscape(id) }

// Confirmation reads a confirmation this client asked for. With wait > 0
// (at most MaxConfirmationWait) the server answers when the confirmation
// ends or wait has passed, whichever is first; status pending means ask
// again. Once approved it holds the signature and version. Repeated on
// failure like every read, on any endpoint (see "Retries"); the HTTP timeout is extended by wait (see
// "Timeouts").
func (c *Client) Confirmation(ctx context.Context, id string, wait time.Duration) (wire.ConfirmationView, error) {
	if wait < 0 || wait > MaxConfirmationWait {
		return wire.ConfirmationView{}, fmt.Errorf("keysvc client: %w: wait %v must be from 0s to %v", wire.ErrInvalidArgument, wait, MaxConfirmationWait)
	}
	path := confirmationPath(id)
	if wait > 0 {
		path += "?wait=" + url.QueryEscape(wait.String())
	}
	var v wire.ConfirmationView
	return v, c.do(ctx, call{method: "GET", path: path, out: &v, repeat: true, hold: wait})
}

// CancelConfirmation withdraws a pending confirmation this client asked
// for: nothing is signed and the key is free for the next request. One
// that has ended answers wire.ErrConfirmationClosed. Not retried.
func (c *Client) CancelConfirmation(ctx context.Context, id string) (wire.ConfirmationView, error) {
	var v wire.ConfirmationView
	return v, c.do(ctx, call{method: "DELETE", path: confirmationPath(id), out: &v})
}

// UnlockHolder clears the lock a confirm-required key's holder gets after
// six wrong holder PINs; the holder keeps their PIN. Security officers
// (admin clients) only. Not retried.
func (c *Client) UnlockHolder(ctx context.Context, name string) (wire.KeyView, error) {
	var v wire.KeyView
	return v, c.do(ctx, call{method: "POST", path: keyPath(name, "/holder/unlock"), out: &v})
}

// ResetHolder forgets a key's holder PIN and returns the key with a new
// one-time HolderSetupCode, shown only in this answer. Security officers
// (admin clients) only. Never retried: a second reset would issue another
// code and void this one.
func (c *Client) ResetHolder(ctx context.Context, name string) (wire.KeyView, error) {
	var v wire.KeyView
	return v, c.do(ctx, call{method: "POST", path: keyPath(name, "/holder/reset"), out: &v})
}

// SignConfirmed signs like Sign and, when the key needs its holder's
// confirmation, waits for the holder: it long-polls the confirmation, poll
// per request (0 means DefaultConfirmationWait; at most
// MaxConfirmationWait), until it ends.
//
//   - Approved: the result holds the signature, its version and the final
//     Confirmation.
//   - Rejected, expired, cancelled or failed: a *NotConfirmedError, which
//     wraps ErrNotConfirmed and says the status and the reason.
//   - A poll that fails (after its retries) returns that error, naming the
//     confirmation id so the caller may poll it again with Confirmation.
//   - If ctx ends first, the pending confirmation is cancelled (best
//     effort, within 5 s) so that nobody approves a signature nobody will
//     collect, and the key is free for the next request; ctx's error is
//     returned.
//
// The sign request is repeated as Sign is: a repeat after a lost 202
// gets wire.ErrConfirmationPending (see "Retries"). Keys without
// confirmation answer at once, as with Sign.
func (c *Client) SignConfirmed(ctx context.Context, name string, req wire.SignRequest, poll time.Duration) (wire.SignResult, error) {
	if poll == 0 {
		poll = DefaultConfirmationWait
	}
	if poll < 0 || poll > MaxConfirmationWait {
		return wire.SignResult{}, fmt.Errorf("keysvc client: %w: poll %v must be from 0s to %v", wire.ErrInvalidArgument, poll, MaxConfirmationWait)
	}
	res, err := c.Sign(ctx, name, req)
	if err != nil || res.Confirmation == nil {
		return res, err
	}
	v := *res.Confirmation
	for v.Status == wire.ConfirmPending {
		start := time.Now()
		next, err := c.Confirmation(ctx, v.ID, poll)
		if err == nil && next.Status == wire.ConfirmPending {
			// A server (or proxy) that answers before the wait is not
			// asked again at once.
			err = sleep(ctx, min(poll, time.Second)-time.Since(start))
		}
		if err != nil {
			if ctx.Err() != nil {
				c.abandon(ctx, v.ID)
			}
			return wire.SignResult{}, fmt.Errorf("keysvc client: waiting for confirmation %s of key %q: %w", v.ID, name, err)
		}
		v = next
	}
	if v.Status != wire.ConfirmApproved {
		return wire.SignResult{}, &NotConfirmedError{Confirmation: v}
	}
	if v.Signature == "" {
		return wire.SignResult{}, fmt.Errorf("keysvc client: confirmation %s of key %q is approved but holds no signature", v.ID, name)
	}
	return wire.SignResult{Signature: v.Signature, Version: v.Version, Confirmation: &v}, nil
}

// abandon cancels confirmation id after its waiter's ctx ended; a
// confirmation that has ended meanwhile stays as it is.
func (c *Client) abandon(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
	defer cancel()
	_, _ = c.CancelConfirmation(ctx, id)
}
