package banking

import (
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/banking/ledger"
)

// The staff routes, under /staff/v1 behind the tellers' bearer token
// (ServerConfig.StaffTokenSHA256).

// POST /staff/v1/customers: enrolment → 201.
func (s *server) enrol(c *fiber.Ctx) error {
	var req bankwire.EnrolRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	res, err := s.bank.Enrol(c.UserContext(), req)
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(res)
}

// POST /staff/v1/deposits {account, amount, currency, idempotency_key}.
func (s *server) deposit(c *fiber.Ctx) error {
	var req struct {
		Account        string `json:"account"`
		Amount         string `json:"amount"`
		Currency       string `json:"currency"`
		IdempotencyKey string `json:"idempotency_key"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
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
func (s *server) verifyLedger(c *fiber.Ctx) error {
	rep, err := s.bank.Ledger.Verify(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(rep)
}
