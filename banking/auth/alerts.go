package auth

import (
	"context"
	"log/slog"
	"net/netip"
	"time"
)

// Event kinds raised by the auth packages.
const (
	// KindAccountLocked: an account reached its failure limit and is locked
	// for a while (bruteforce, R-AUTH-3).
	KindAccountLocked = "account-locked"
	// KindIPLocked: a source address (an IPv6 /64) reached its failure limit
	// (bruteforce, R-AUTH-3).
	KindIPLocked = "ip-locked"
	// KindOTPLocked: an SMS code took its last wrong guess and is dead
	// (otp, R-AUTH-8).
	KindOTPLocked = "otp-locked"
	// KindOTPRateLimited: a customer asked for more codes in an hour than
	// allowed (otp); a hint of SMS bombing.
	KindOTPRateLimited = "otp-rate-limited"
)

// Event is a security event worth a person's attention (R-AUTH-3). It holds
// who and from where, never a password, code or session id.
type Event struct {
	Kind    string    // one of the Kind constants
	Account string    // account or customer id; empty for an address-only event
	IP      string    // source address of the attempt that raised it ("" if unknown)
	Time    time.Time // when it happened (the component's clock)
	Count   int       // failures counted when it happened
	Until   time.Time // end of the lock, zero when the event is not a lock
}

// Alerts receives events. Alert is called after the state change has been
// committed, on the request's goroutine: an implementation must not block
// for long (queue and return) and must not fail the caller; it has no error
// to return on purpose.
type Alerts interface {
	Alert(ctx context.Context, ev Event)
}

// AlertsFunc adapts a function to Alerts.
type AlertsFunc func(ctx context.Context, ev Event)

// Alert calls f.
func (f AlertsFunc) Alert(ctx context.Context, ev Event) { f(ctx, ev) }

// LogAlerts writes every event to a structured logger at WARN, with the
// source address, as R-AUTH-3 asks. A nil Logger means slog.Default().
type LogAlerts struct{ Logger *slog.Logger }

// Alert logs ev.
func (l LogAlerts) Alert(ctx context.Context, ev Event) {
	lg := l.Logger
	if lg == nil {
		lg = slog.Default()
	}
	attrs := []any{"kind", ev.Kind, "account", ev.Account, "source", ev.IP,
		"count", ev.Count, "at", ev.Time}
	if !ev.Until.IsZero() {
		attrs = append(attrs, "until", ev.Until)
	}
	lg.WarnContext(ctx, "security alert", attrs...)
}

// NopAlerts drops every event. It is what a nil Alerts in a Config becomes.
type NopAlerts struct{}

// Alert does nothing.
func (NopAlerts) Alert(context.Context, Event) {}

type sourceKey struct{}

// WithSource returns ctx carrying the request's source address, so that
// components whose methods take no address (otp.Service.Verify) can still
// put it in their events.
func WithSource(ctx context.Context, ip netip.Addr) context.Context {
	return context.WithValue(ctx, sourceKey{}, ip)
}

// Source returns the address WithSource stored, as text ("" when none).
func Source(ctx context.Context) string {
	if ip, ok := ctx.Value(sourceKey{}).(netip.Addr); ok && ip.IsValid() {
		return ip.String()
	}
	return ""
}

// MultiAlerts hands every event to each of its Alerts in turn (the log
// and a webhook, say).
type MultiAlerts []Alerts

// Alert calls each Alerts.
func (m MultiAlerts) Alert(ctx context.Context, ev Event) {
	for _, a := range m {
		a.Alert(ctx, ev)
	}
}
