package otp

import (
	"context"
	"time"
)

// Keeper is an optional Gateway ability, for a gateway that keeps the texts
// it sent where someone can read them again (DevOutbox). The Service tells
// it when each code dies, so a code is kept no longer than it can be used:
// Issue calls SendUntil (instead of Send) with the code's expiry, Verify
// calls Spent once the code is used, and Sweep calls Expire.
type Keeper interface {
	Gateway
	// SendUntil is Send of a text whose code dies at expires.
	SendUntil(ctx context.Context, phone, text string, expires time.Time) error
	// Spent drops what was sent to phone with code in it.
	Spent(phone, code string) error
	// Expire drops every text whose code died at or before now.
	Expire(now time.Time) error
}

// send hands text to the gateway; a Keeper learns when the code dies.
func (s *Service) send(ctx context.Context, phone, text string, expires time.Time) error {
	if k, ok := s.cfg.Gateway.(Keeper); ok {
		return k.SendUntil(ctx, phone, text, expires)
	}
	return s.cfg.Gateway.Send(ctx, phone, text)
}

// spent tells a Keeper that the customer's code is used. Best effort: the
// code no longer verifies whatever the gateway keeps, and a failure here
// must not undo the customer's verification.
func (s *Service) spent(ctx context.Context, customerID, code string) {
	k, ok := s.cfg.Gateway.(Keeper)
	if !ok {
		return
	}
	if phone, err := s.cfg.Phone(ctx, customerID); err == nil && phone != "" {
		_ = k.Spent(phone, code)
	}
}

// expireKept tells a Keeper which codes have expired by now.
func (s *Service) expireKept(now time.Time) error {
	if k, ok := s.cfg.Gateway.(Keeper); ok {
		return k.Expire(now)
	}
	return nil
}
