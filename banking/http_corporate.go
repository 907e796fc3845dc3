package banking

import (
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/keyward/keyward/banking/auth/session"
)

// POST /v1/corporate/orders {order} → 201 (maker; the only way a
// company's money moves).
func (s *server) enterCorpOrder(c *fiber.Ctx, _ string, sess session.Session) error {
	var req struct {
		Order []byte `json:"order"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	o, err := s.bank.EnterCorpOrder(c.UserContext(), sess, req.Order)
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(o)
}

// GET /v1/corporate/orders (operators).
func (s *server) corpOrders(c *fiber.Ctx, _ string, sess session.Session) error {
	os, err := s.bank.CorpOrders(sess)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"orders": os})
}

// POST /v1/corporate/orders/{id}/review {approve} (reviewer).
func (s *server) reviewCorpOrder(c *fiber.Ctx, _ string, sess session.Session) error {
	var req struct {
		Approve bool `json:"approve"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	o, err := s.bank.ReviewCorpOrder(c.UserContext(), sess, c.Params("id"), req.Approve)
	if err != nil {
		return err
	}
	return c.JSON(o)
}

// POST /v1/corporate/orders/{id}/authorise {approve, signature} (authoriser).
func (s *server) authoriseCorpOrder(c *fiber.Ctx, _ string, sess session.Session) error {
	var req struct {
		Approve   bool   `json:"approve"`
		Signature string `json:"signature"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	o, err := s.bank.AuthoriseCorpOrder(c.UserContext(), sess, c.Params("id"), req.Signature, req.Approve)
	if err != nil {
		return err
	}
	return c.JSON(o)
}
