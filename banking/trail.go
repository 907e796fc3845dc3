package banking

import (
	"context"

	"github.com/keyward/keyward/banking/auth"
)

// Event is one entry of banking's own audit trail (issue 18, R-SRV-3):
// who did what to whom, from where, with what result. It never holds a
// password, SMS code, session id, card or ID-card number, nor any unkeyed
// function of one.
type Event struct {
	// Op names what happened, dotted by area: "login", "stepup",
	// "otp.send", "password.change", "limits.change", "staff.enrol",
	// "corporate.review", ... (the list is in the trail's package doc).
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
// a trail that cannot be written is logged at ERROR (and counted), the
// way keysvc treats its own trail's faults as the operator's alarm.
func (b *Bank) audit(ctx context.Context, ev Event) {
	if ev.Source == "" {
		ev.Source = auth.Source(ctx)
	}
	b.log.InfoContext(ctx, "audit", "op", ev.Op, "actor", ev.Actor, "subject", ev.Subject, "result", ev.Result, "detail", ev.Detail, "source", ev.Source)
	if b.cfg.OnAudit != nil {
		b.cfg.OnAudit(ctx, ev)
	}
}
