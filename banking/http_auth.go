package banking

import (
	"github.com/gofiber/fiber/v2"

	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/banking/bankwire"
)

// GET /v1/login/key: the SM2 login public key and its version.
func (s *server) loginKey(c *fiber.Ctx) error {
	k, err := s.bank.LoginKey(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(k)
}

// GET /v1/login/captcha: {id, image: base64 PNG, expires} (2 min, single-use).
func (s *server) loginCaptcha(c *fiber.Ctx) error {
	k, err := s.bank.NewCaptcha(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(k)
}

// POST /v1/login/challenge: a single-use challenge (2 min).
func (s *server) challenge(c *fiber.Ctx) error {
	ch, err := s.bank.Challenge(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"challenge": ch.Value, "expires_at": ch.ExpiresAt})
}

// POST /v1/login {login, password: Sealed, device, os[, captcha_id, captcha]}.
func (s *server) login(c *fiber.Ctx) error {
	var req bankwire.LoginRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	res, err := s.bank.Login(c.UserContext(), req, clientIP(c))
	if err != nil {
		return err
	}
	return c.JSON(res)
}

// POST /v1/stepup/request: send an SMS code.
func (s *server) requestStepUp(c *fiber.Ctx, _ string, sess session.Session) error {
	if err := s.bank.RequestStepUp(c.UserContext(), sess); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"sent": true})
}

// POST /v1/stepup {code, os}.
func (s *server) stepUp(c *fiber.Ctx, sid string, sess session.Session) error {
	var req struct {
		Code string `json:"code"`
		OS   string `json:"os"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	if err := s.bank.StepUp(c.UserContext(), sid, sess, req.Code, req.OS); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"stepped_up": true})
}

// POST /v1/logout.
func (s *server) logout(c *fiber.Ctx, sid string, sess session.Session) error {
	err := s.bank.Logout(c.UserContext(), sid)
	s.bank.audit(c.UserContext(), Event{Op: "logout", Actor: "customer:" + sess.Customer, Result: resultOf(err)})
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"logged_out": true})
}

// POST /v1/password {password: Sealed} (recent step-up).
func (s *server) changePassword(c *fiber.Ctx, sid string, sess session.Session) error {
	var req struct {
		Password bankwire.Sealed `json:"password"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	if err := s.bank.ChangePassword(c.UserContext(), sid, sess, req.Password); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"changed": true})
}
