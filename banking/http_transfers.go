package banking

import (
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/banking/bankwire"
)

// POST /v1/transfers/usb {order, signature} (personal customers).
func (s *server) transferUSB(c *fiber.Ctx, _ string, sess session.Session) error {
	var req bankwire.SignedOrder
	if err := decode(c, &req); err != nil {
		return err
	}
	res, err := s.bank.TransferUSB(c.UserContext(), sess, req)
	if err != nil {
		return err
	}
	return c.JSON(res)
}

// POST /v1/transfers/cloud {order} → 202 (personal customers).
func (s *server) transferCloud(c *fiber.Ctx, _ string, sess session.Session) error {
	var req struct {
		Order []byte `json:"order"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	p, err := s.bank.TransferCloud(c.UserContext(), sess, req.Order)
	if err != nil {
		return err
	}
	return c.Status(http.StatusAccepted).JSON(p)
}

// GET /v1/transfers/cloud/{id}?wait=25s.
func (s *server) pollCloud(c *fiber.Ctx, _ string, sess session.Session) error {
	var wait time.Duration
	if w := c.Query("wait"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < 0 || d > 30*time.Second {
			return invalid(`"wait" must be a duration from 0s to 30s`)
		}
		wait = d
	}
	p, err := s.bank.PollCloud(c.UserContext(), sess, c.Params("id"), wait)
	if err != nil {
		return err
	}
	return c.JSON(p)
}

// GET /v1/receipts/{transfer id}.
func (s *server) receipt(c *fiber.Ctx, _ string, sess session.Session) error {
	r, err := s.bank.ReceiptOf(c.UserContext(), sess, c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(r)
}

// GET /v1/receipt-key: the bank's receipt public key (PEM).
func (s *server) receiptKey(c *fiber.Ctx) error {
	pk, err := s.bank.ReceiptKey(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"pem": pk.PEM, "version": pk.Version})
}
