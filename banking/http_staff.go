package banking

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/keyward/keyward/banking/auth/mask"
	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/staff"
)

// The staff routes, under /staff/v1, each behind s.staffAct: a person's
// own token (ServerConfig.Staff), the route's role, and one audit record
// per request (issue 18 item 2; seed 6.2.3.2).

// staffHandler serves a staff route for m. It fills ev's Subject (what
// the act was about, when the route's :id does not say it) and Detail
// (non-secret context); staffAct fills the rest and records it.
type staffHandler func(c *fiber.Ctx, m staff.Member, ev *Event) error

type staffKey struct{}

// withStaff puts the authenticated staff member in ctx.
func withStaff(ctx context.Context, m staff.Member) context.Context {
	return context.WithValue(ctx, staffKey{}, m)
}

// staffFrom returns the staff member a request was authenticated as.
func staffFrom(ctx context.Context) (staff.Member, bool) {
	m, ok := ctx.Value(staffKey{}).(staff.Member)
	return m, ok
}

// staffAct authenticates the bearer token against the staff registry,
// refuses a person without role (403 staff_role_required; role "" admits
// any member), runs h, and records the request in banking's audit trail —
// whatever its outcome — as Op "staff.<act>", Actor "staff:<id>" (or
// "staff:?" when the token is no one's: the token itself is never
// recorded), Result "ok" or the error code the client got.
func (s *server) staffAct(act string, role staff.Role, h staffHandler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		ev := Event{Op: "staff." + act, Actor: "staff:?", Subject: strings.Clone(c.Params("id"))}
		err := s.runStaff(c, role, h, &ev)
		ev.Result = "ok"
		if err != nil {
			_, ev.Result, _, _ = classify(err)
		}
		s.bank.audit(c.UserContext(), ev)
		return err
	}
}

func (s *server) runStaff(c *fiber.Ctx, role staff.Role, h staffHandler, ev *Event) error {
	tok, ok := bearer(c)
	if !ok {
		return fmt.Errorf("%w: send Authorization: Bearer <your personal staff token>", ErrUnauthenticated)
	}
	m, err := s.staff.Authenticate(tok)
	if err != nil {
		var ee *staff.ExpiredError
		if errors.As(err, &ee) { // the token is someone's: name them
			ev.Actor = "staff:" + ee.ID
		}
		return err
	}
	ev.Actor = "staff:" + m.ID
	if role != "" {
		if err := m.Require(role); err != nil {
			noteRefused(c, ev)
			return err
		}
	}
	c.SetUserContext(withStaff(c.UserContext(), m))
	return h(c, m, ev)
}

// GET /staff/v1/whoami → {id, name, roles}: lets a person check the token
// they were given before they need it.
func (s *server) whoami(c *fiber.Ctx, m staff.Member, _ *Event) error {
	roles := make([]string, len(m.Roles))
	for i, r := range m.Roles {
		roles[i] = string(r)
	}
	out := fiber.Map{"id": m.ID, "name": m.Name, "roles": roles}
	if !m.Expires.IsZero() {
		out["expires"] = m.Expires.UTC()
	}
	return c.JSON(out)
}

// POST /staff/v1/customers: enrolment → 201.
func (s *server) enrol(c *fiber.Ctx, _ staff.Member, ev *Event) error {
	var req bankwire.EnrolRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	ev.Detail = "login=" + req.Login
	res, err := s.bank.Enrol(c.UserContext(), req)
	if err != nil {
		return err
	}
	ev.Subject = res.Customer.ID
	if res.Account != "" {
		ev.Detail += " account=" + res.Account
	}
	return c.Status(http.StatusCreated).JSON(res)
}

// POST /staff/v1/deposits {account, amount, currency, idempotency_key}.
func (s *server) deposit(c *fiber.Ctx, _ staff.Member, ev *Event) error {
	var req struct {
		Account        string `json:"account"`
		Amount         string `json:"amount"`
		Currency       string `json:"currency"`
		IdempotencyKey string `json:"idempotency_key"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	ev.Subject = req.Account
	ev.Detail = fmt.Sprintf("amount=%s currency=%s idempotency_key=%s", req.Amount, req.Currency, req.IdempotencyKey)
	amt, err := ledger.ParseAmount(req.Amount, req.Currency)
	if err != nil {
		return err
	}
	rc, err := s.bank.Ledger.Deposit(c.UserContext(), ledger.CashRequest{IdempotencyKey: "staff:" + req.IdempotencyKey, Account: req.Account, Amount: amt, Currency: req.Currency, Memo: "deposit"})
	if err != nil {
		return err
	}
	return c.JSON(rc)
}

// GET /staff/v1/ledger/verify.
func (s *server) verifyLedger(c *fiber.Ctx, _ staff.Member, _ *Event) error {
	rep, err := s.bank.Ledger.Verify(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(rep)
}

// POST /staff/v1/customers/{id}/unlock: lift the customer's login lock
// after checking their identity.
func (s *server) unlockCustomer(c *fiber.Ctx, _ staff.Member, ev *Event) error {
	u, err := s.bank.UnlockLogin(c.UserContext(), ev.Subject)
	if err != nil {
		return err
	}
	ev.Detail = fmt.Sprintf("was_locked=%v failures=%d", u.WasLocked, u.Failures)
	if u.WasLocked {
		ev.Detail += " locked_until=" + u.LockedUntil.UTC().Format("2006-01-02T15:04:05Z")
	}
	return c.JSON(u)
}

// POST /staff/v1/customers/{id}/phone {phone, identity_checked}: change
// the registered mobile number at the counter.
func (s *server) changePhone(c *fiber.Ctx, _ staff.Member, ev *Event) error {
	var req struct {
		Phone           string `json:"phone"`
		IdentityChecked string `json:"identity_checked"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	if checkIdentityStatement(req.IdentityChecked) == nil {
		ev.Detail = fmt.Sprintf("identity_checked=%q", req.IdentityChecked)
	}
	res, err := s.bank.ChangePhone(c.UserContext(), ev.Subject, req.Phone, req.IdentityChecked)
	if res.NewPhone != "" {
		ev.Detail += fmt.Sprintf(" old=%s new=%s sessions_ended=%d notified=%s", res.OldPhone, res.NewPhone, res.SessionsEnded, strings.Join(res.Notified, ","))
		if len(res.NoticeFailed) > 0 {
			ev.Detail += " notice_failed=" + strings.Join(res.NoticeFailed, ",")
		}
	} else if phoneRE.MatchString(req.Phone) {
		ev.Detail += " new=" + mask.Phone(req.Phone)
	}
	if err != nil {
		return err
	}
	return c.JSON(res)
}

// POST /staff/v1/limits {account, per_transaction, daily, reason}: set an
// account's limits beyond what its customer may set.
func (s *server) overrideLimits(c *fiber.Ctx, _ staff.Member, ev *Event) error {
	var req struct {
		Account        string `json:"account"`
		PerTransaction string `json:"per_transaction"`
		Daily          string `json:"daily"`
		Reason         string `json:"reason"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	ev.Subject = req.Account
	ev.Detail = fmt.Sprintf("per_transaction=%s daily=%s reason=%q", req.PerTransaction, req.Daily, req.Reason)
	a, err := s.bank.OverrideLimits(c.UserContext(), req.Account, req.PerTransaction, req.Daily, req.Reason)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"account": a.ID, "per_transaction": ledger.FormatAmount(a.Limits.PerTransaction, a.Currency), "daily": ledger.FormatAmount(a.Limits.Daily, a.Currency)})
}

// noteRefused fills the record of a request refused before its handler
// ran with what its body was about (its "account", or the "login" an
// enrolment would have made), so a refusal names its subject as a success
// does. The body is read leniently here: it is not acted on.
func noteRefused(c *fiber.Ctx, ev *Event) {
	var body struct {
		Account string `json:"account"`
		Login   string `json:"login"`
	}
	if json.Unmarshal(c.Body(), &body) != nil {
		return
	}
	if ev.Subject == "" && ledger.ValidateAccountID(body.Account) == nil {
		ev.Subject = body.Account
	}
	if body.Login != "" && loginRE.MatchString(body.Login) {
		ev.Detail = "login=" + body.Login
	}
}
