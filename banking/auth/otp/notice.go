package otp

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoticeHasCode refuses a notice whose text holds a run of six digits:
// it would read as a one-time code to the customer, and to a DevOutbox's
// LastCode.
var ErrNoticeHasCode = errors.New("otp: a notice must not hold a six-digit run that reads as a code")

// Notify sends a security notice — a text with no code in it, such as
// "your registered phone number was changed" — to phone through the
// Service's Gateway (6.4.3; issue 18: the counter's phone change tells
// both the old and the new number). No code is created, nothing is
// stored, and the hourly code limit is not touched: notices are sent by
// the bank's own actions, never on a request a stranger can repeat. The
// phone is the caller's to choose (the old number is no longer the
// customer's record). The send has Config.SendTimeout; a failure is
// ErrSend wrapping the gateway's error.
func (s *Service) Notify(ctx context.Context, phone, text string) error {
	if phone == "" || text == "" {
		return fmt.Errorf("%w: a notice needs a phone and a text", ErrBadInput)
	}
	if codeRE.MatchString(text) {
		return ErrNoticeHasCode
	}
	sendCtx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	defer cancel()
	// A Keeper (DevOutbox) keeps a notice as long as a code's longest life:
	// it holds nothing secret, and it leaves with the next Sweep after.
	if err := s.send(sendCtx, phone, text, s.cfg.Now().Add(MaxTTL)); err != nil {
		return fmt.Errorf("%w: %w", ErrSend, err)
	}
	return nil
}
