package banking

import (
	"net/http"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/banking/bankwire"
)

// The customer functions of issue 18 item 5 (Bank methods in
// selfservice.go).

// GET /v1/accounts/{account}/transactions?limit=20&before=<cursor>.
func (s *server) transactions(c *fiber.Ctx, _ string, sess session.Session) error {
	limit := 0
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return invalid("limit must be a number from 1 to %d", MaxHistoryLimit)
		}
		limit = n
	}
	h, err := s.bank.History(c.UserContext(), sess, c.Params("account"), limit, c.Query("before"))
	if err != nil {
		return err
	}
	return c.JSON(h)
}

// GET /v1/payees.
func (s *server) listPayees(c *fiber.Ctx, _ string, sess session.Session) error {
	ps, err := s.bank.Payees(c.UserContext(), sess)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"payees": ps})
}

// POST /v1/payees {account, name, bank?, nickname?} (recent step-up) → 201.
func (s *server) addPayee(c *fiber.Ctx, _ string, sess session.Session) error {
	var req bankwire.Payee
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.ID != "" || !req.Created.IsZero() {
		return invalid("id and created are set by the bank")
	}
	p, err := s.bank.AddPayee(c.UserContext(), sess, req)
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(p)
}

// DELETE /v1/payees/{id}.
func (s *server) removePayee(c *fiber.Ctx, _ string, sess session.Session) error {
	id := c.Params("id")
	if err := s.bank.RemovePayee(c.UserContext(), sess, id); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"removed": id})
}

// GET /v1/devices.
func (s *server) listDevices(c *fiber.Ctx, _ string, sess session.Session) error {
	ds, err := s.bank.Devices(c.UserContext(), sess)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"devices": ds})
}

// DELETE /v1/devices/{ref}: forget the device and end its sessions.
func (s *server) forgetDevice(c *fiber.Ctx, _ string, sess session.Session) error {
	res, err := s.bank.ForgetDevice(c.UserContext(), sess, c.Params("ref"))
	if err != nil {
		return err
	}
	return c.JSON(res)
}

// POST /v1/anti-phishing {message} (recent step-up).
func (s *server) setAntiPhishing(c *fiber.Ctx, _ string, sess session.Session) error {
	var req bankwire.AntiPhishingRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if err := s.bank.SetAntiPhishing(c.UserContext(), sess, req.Message); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"changed": true})
}
