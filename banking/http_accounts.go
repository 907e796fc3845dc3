package banking

import (
	"context"
	"fmt"

	"github.com/gofiber/fiber/v2"

	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/banking/ledger"
)

// GET /v1/me.
func (s *server) me(c *fiber.Ctx, _ string, sess session.Session) error {
	cu, err := s.bank.Customer(sess.Customer)
	if err != nil {
		return err
	}
	return c.JSON(cu.View())
}

// GET /v1/accounts.
func (s *server) accounts(c *fiber.Ctx, _ string, sess session.Session) error {
	cu, err := s.bank.Customer(sess.Customer)
	if err != nil {
		return err
	}
	as, err := s.bank.Ledger.AccountsByOwner(c.UserContext(), owner(cu))
	if err != nil {
		return err
	}
	type view struct {
		ID       string         `json:"id"`
		Currency string         `json:"currency"`
		Balance  string         `json:"balance"`
		State    ledger.State   `json:"state"`
		Limits   map[string]any `json:"limits"`
	}
	out := make([]view, 0, len(as))
	for _, a := range as {
		out = append(out, view{ID: a.ID, Currency: a.Currency, Balance: ledger.FormatAmount(a.Balance, a.Currency), State: a.State,
			Limits: map[string]any{"per_transaction": ledger.FormatAmount(a.Limits.PerTransaction, a.Currency), "daily": ledger.FormatAmount(a.Limits.Daily, a.Currency)}})
	}
	return c.JSON(fiber.Map{"accounts": out})
}

// POST /v1/limits {account, per_transaction, daily} (recent step-up; a
// company's: its admin).
func (s *server) setLimits(c *fiber.Ctx, _ string, sess session.Session) error {
	var req struct {
		Account        string `json:"account"`
		PerTransaction string `json:"per_transaction"`
		Daily          string `json:"daily"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	a, err := s.bank.SetLimits(c.UserContext(), sess, req.Account, req.PerTransaction, req.Daily)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"account": a.ID, "per_transaction": ledger.FormatAmount(a.Limits.PerTransaction, a.Currency), "daily": ledger.FormatAmount(a.Limits.Daily, a.Currency)})
}

// SetLimits changes an account's limits after a recent SMS step-up
// (R-AUTH-6); a corporate account's only by its administrator (R-AUTH-10).
func (b *Bank) SetLimits(ctx context.Context, s session.Session, account, perTx, daily string) (_ ledger.Account, err error) {
	defer func() {
		b.audit(ctx, Event{Op: "limits.change", Actor: "customer:" + s.Customer, Subject: account, Result: resultOf(err),
			Detail: fmt.Sprintf("per_transaction=%.32q daily=%.32q", perTx, daily)})
	}()
	c, err := b.Customer(s.Customer)
	if err != nil {
		return ledger.Account{}, err
	}
	if c.Corporate != "" && c.Role != bankwire.RoleAdmin {
		return ledger.Account{}, fmt.Errorf("%w: only the corporate administrator changes the company's limits", ErrForbidden)
	}
	if err := b.sessions.RequireStepUp(s, session.LevelOTP, b.cfg.StepUpFor); err != nil {
		return ledger.Account{}, err
	}
	a, err := b.Ledger.Account(ctx, account)
	if err != nil || a.Owner != owner(c) {
		return ledger.Account{}, fmt.Errorf("%w: account %s", ErrNotFound, account)
	}
	var lim ledger.Limits
	if lim.PerTransaction, err = ledger.ParseAmount(perTx, a.Currency); err != nil {
		return ledger.Account{}, err
	}
	if lim.Daily, err = ledger.ParseAmount(daily, a.Currency); err != nil {
		return ledger.Account{}, err
	}
	return b.Ledger.SetLimits(ctx, account, lim)
}
