package banking

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyward/keyward/banking/auth"
	"github.com/keyward/keyward/banking/bankaudit"
)

// KeyAudit is the bank's key in keysvc that signs the checkpoints of
// banking's own audit trail (purpose sign, ec-p256, hsm; grants banking:
// sign, public).
const KeyAudit = "bank-audit"

// TrailConfig configures banking's audit trail (banking/bankaudit).
type TrailConfig struct {
	// CheckpointEvery and CheckpointInterval: a checkpoint signed by
	// bank-audit after this many records appended by this node, or this
	// often (defaults 1000 and 1 min).
	CheckpointEvery    int
	CheckpointInterval time.Duration
}

// Event is one entry of banking's own audit trail (issue 18, R-SRV-3):
// who did what to whom, from where, with what result. It never holds a
// password, SMS code, session id, card or ID-card number, nor any unkeyed
// function of one.
//
// Ops recorded today (Actor; Subject; Detail):
//
//	login                  customer:<id> on success, login:<name> otherwise (unknown login and wrong password both "login_failed"); device, stepup
//	otp.send               customer:<id>; purpose (stepup)
//	stepup                 customer:<id>; the code's result (otp_invalid, otp_locked, otp_expired, ...)
//	logout                 customer:<id>
//	password.change        customer:<id>
//	limits.change          customer:<id>; account; per_transaction, daily
//	payee.add, payee.remove, device.forget, antiphishing.change
//	                       customer:<id>; the payee, device or nothing (selfservice.go)
//	staff.<act>            staff:<id> ("staff:?" for a token no one holds); whoami, enrol, deposit,
//	                       ledger-verify, unlock, phone-change, limit-override (http_staff.go)
//	corporate.enter        customer:<id>; order id; corporate
//	corporate.review       customer:<id>; order id; decision approve|reject
//	corporate.authorise    customer:<id>; order id; decision approve|reject
//	transfer.cloud.confirm customer:<id>; confirmation id; status (approved, rejected, expired)
//	alert.account-locked, alert.ip-locked, alert.otp-locked, alert.otp-rate-limited
//	                       system; login:<name>, ip:<addr> or customer:<id>; count, until
type Event struct {
	// Op names what happened, dotted by area (the list above).
	Op string
	// Actor is who acted: "customer:<id>", "staff:<staff id>", "system",
	// or "login:<login name>" for an unknown or not yet authenticated
	// login.
	Actor string
	// Subject is what the action was about: a customer id, an account,
	// a corporate order id; empty when the actor is the subject.
	Subject string
	// Result is "ok" or the stable error code clients see.
	Result string
	// Detail is non-secret context ("device=laptop-1 os=Debian", "count=5").
	Detail string
	// Source is the request's source address; empty: taken from ctx
	// (auth.Source).
	Source string
}

// audit records ev in banking's audit trail. It never fails the caller:
// a trail that cannot be written is logged at ERROR with every field of
// the event (so the log keeps what the trail lost) and counted
// (TrailHealthy, TrailFailures), the way keysvc treats its own trail's
// faults as the operator's alarm.
func (b *Bank) audit(ctx context.Context, ev Event) {
	if ev.Source == "" {
		ev.Source = auth.Source(ctx)
	}
	attrs := []any{"op", ev.Op, "actor", ev.Actor, "subject", ev.Subject, "result", ev.Result, "detail", ev.Detail, "source", ev.Source}
	if _, err := b.trail.Append(bankaudit.Event{Actor: ev.Actor, Subject: ev.Subject, Op: ev.Op, Result: ev.Result, Detail: ev.Detail, Source: ev.Source}); err != nil {
		b.log.ErrorContext(ctx, "audit record NOT written to banking's trail", append(attrs, "err", err)...)
	} else {
		b.log.InfoContext(ctx, "audit", attrs...)
	}
	if b.cfg.OnAudit != nil {
		b.cfg.OnAudit(ctx, ev)
	}
}

// TrailHealthy is nil while banking's audit trail takes records: the
// error of the last append when it failed (the metrics and readiness
// checks read it).
func (b *Bank) TrailHealthy() error { return b.trail.Healthy() }

// TrailFailures counts the audit records this node failed to write.
func (b *Bank) TrailFailures() uint64 { return b.trail.Failures() }

// registerTrailMetrics exposes the trail's health beside banking's other
// metrics: keyward_bank_audit_trail_failures_total (appends this node
// could not write) and keyward_bank_audit_trail_healthy (1 while the last
// append succeeded, 0 after a failure until one succeeds) — the series to
// alert on, as a request never fails for the trail.
func registerTrailMetrics(reg prometheus.Registerer, t *bankaudit.Trail) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keyward_bank_audit_trail_failures_total",
			Help: "Audit records this node could not write to banking's trail (each logged at ERROR with the event).",
		}, func() float64 { return float64(t.Failures()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keyward_bank_audit_trail_healthy",
			Help: "1 while banking's audit trail takes records; 0 after a failed append, until one succeeds.",
		}, func() float64 {
			if t.Healthy() != nil {
				return 0
			}
			return 1
		}),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Trail is banking's audit trail on this node (checkpoints on demand, for
// shutdown and tests).
func (b *Bank) Trail() *bankaudit.Trail { return b.trail }

// auditAlert records a security event of the auth packages (a lock, a
// dead code, SMS bombing) in the trail; the configured Alerts (log,
// webhook) get it as well.
func (b *Bank) auditAlert(ctx context.Context, ev auth.Event) {
	subject := "customer:" + ev.Account
	switch ev.Kind {
	case auth.KindAccountLocked:
		subject = "login:" + ev.Account // the guard counts by login name
	case auth.KindIPLocked:
		subject = "ip:" + ev.IP
	}
	detail := fmt.Sprintf("count=%d", ev.Count)
	if !ev.Until.IsZero() {
		detail += " until=" + ev.Until.UTC().Format(time.RFC3339)
	}
	result := map[string]string{auth.KindAccountLocked: "temporarily_locked", auth.KindIPLocked: "temporarily_locked",
		auth.KindOTPLocked: "otp_locked", auth.KindOTPRateLimited: "otp_rate_limited"}[ev.Kind]
	if result == "" {
		result = ev.Kind
	}
	b.audit(ctx, Event{Op: "alert." + ev.Kind, Actor: "system", Subject: subject, Result: result, Detail: detail, Source: ev.IP})
}
