package banking

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/limiter"

	"github.com/keyward/keyward/banking/auth"
	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/banking/ledger"
)

// ServerConfig configures the HTTP API.
type ServerConfig struct {
	// StaffTokenSHA256 is the hex SHA-256 of the tellers' bearer token for
	// /staff/v1 (enrolment, deposits, ledger check). Empty: no staff API.
	StaffTokenSHA256 string
	// LoginPerMinute bounds challenge, login and step-up requests per
	// source address (default 120); RequestsPerMinute bounds every other
	// request per session (default 6000); KeyPerMinute bounds the public
	// key routes (/v1/login/key, /v1/receipt-key) per source address
	// (default LoginPerMinute: a client fetches the key once per login).
	// Past a limit the answer is 429 "rate_limited".
	LoginPerMinute, RequestsPerMinute, KeyPerMinute int
	// BodyLimit in bytes (default 256 KiB: a pain.001 order fits).
	BodyLimit int
}

// NewServer returns the fiber app serving the bank's API:
//
//	GET  /v1/login/key                 the SM2 login public key and its version
//	POST /v1/login/challenge           a single-use challenge (2 min)
//	POST /v1/login                     {login, password: Sealed, device, os}
//	POST /v1/stepup/request            send an SMS code            (session)
//	POST /v1/stepup                    {code, os}                  (session)
//	POST /v1/logout                                                (session)
//	GET  /v1/me, /v1/accounts                                      (session)
//	POST /v1/limits                    {account, per_transaction, daily} (recent step-up; a company's: its admin)
//	POST /v1/password                  {password: Sealed}          (recent step-up)
//	POST /v1/transfers/usb             {order, signature}          (personal customers)
//	POST /v1/transfers/cloud           {order}  → 202              (personal customers)
//	GET  /v1/transfers/cloud/{id}?wait=25s                         (session)
//	GET  /v1/receipts/{transfer id}                                (session)
//	GET  /v1/receipt-key               the bank's receipt public key (PEM)
//	POST /v1/corporate/orders          {order}                     (maker; the only way a company's money moves)
//	GET  /v1/corporate/orders                                      (operators)
//	POST /v1/corporate/orders/{id}/review     {approve}            (reviewer)
//	POST /v1/corporate/orders/{id}/authorise  {approve, signature} (authoriser)
//	POST /staff/v1/customers           enrolment                   (staff token)
//	POST /staff/v1/deposits            {account, amount, currency, idempotency_key}
//	GET  /staff/v1/ledger/verify
//
// Sessions are "Authorization: Bearer <session>" with the device id in
// "X-Device-Id". Errors are {"error":{"code","message"}} with stable codes.
func (b *Bank) NewServer(cfg ServerConfig) *fiber.App {
	if cfg.LoginPerMinute == 0 {
		cfg.LoginPerMinute = 120
	}
	if cfg.RequestsPerMinute == 0 {
		cfg.RequestsPerMinute = 6000
	}
	if cfg.KeyPerMinute == 0 {
		cfg.KeyPerMinute = cfg.LoginPerMinute
	}
	if cfg.BodyLimit == 0 {
		cfg.BodyLimit = 256 << 10
	}
	app := fiber.New(fiber.Config{
		DisableStartupMessage: true,
		BodyLimit:             cfg.BodyLimit,
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          10 * time.Second,
		IdleTimeout:           60 * time.Second,
		ErrorHandler:          b.errorHandler,
		Immutable:             true,
	})
	app.Use(b.recoverPanic, securityHeaders, func(c *fiber.Ctx) error {
		// The source address travels with the context, so alerts raised
		// deep inside (OTP locks, guard locks) name it (R-AUTH-3).
		c.SetUserContext(auth.WithSource(c.UserContext(), clientIP(c)))
		return c.Next()
	})
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	loginLimit := limiter.New(limiter.Config{Max: cfg.LoginPerMinute, Expiration: time.Minute, LimitReached: tooMany})
	sessLimit := limiter.New(limiter.Config{Max: cfg.RequestsPerMinute, Expiration: time.Minute, LimitReached: tooMany,
		KeyGenerator: func(c *fiber.Ctx) string { return "s:" + bearerHash(c) }})

	keyLimit := limiter.New(limiter.Config{Max: cfg.KeyPerMinute, Expiration: time.Minute, LimitReached: tooMany})

	v1 := app.Group("/v1")
	// The public keys come from a cache (Config.PublicKeyTTL): a flood of
	// these requests costs keysvc nothing.
	v1.Get("/login/key", keyLimit, func(c *fiber.Ctx) error {
		k, err := b.LoginKey(c.UserContext())
		if err != nil {
			return err
		}
		return c.JSON(k)
	})
	v1.Get("/receipt-key", keyLimit, func(c *fiber.Ctx) error {
		pk, err := b.ReceiptKey(c.UserContext())
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"pem": pk.PEM, "version": pk.Version})
	})
	v1.Post("/login/challenge", loginLimit, func(c *fiber.Ctx) error {
		ch, err := b.Challenge(c.UserContext())
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"challenge": ch.Value, "expires_at": ch.ExpiresAt})
	})
	v1.Post("/login", loginLimit, func(c *fiber.Ctx) error {
		var req bankwire.LoginRequest
		if err := decode(c, &req); err != nil {
			return err
		}
		res, err := b.Login(c.UserContext(), req, clientIP(c))
		if err != nil {
			return err
		}
		return c.JSON(res)
	})

	// Session routes. stepup routes accept a session whose step-up is open.
	v1.Post("/stepup/request", loginLimit, b.withSession(false, func(c *fiber.Ctx, sid string, s session.Session) error {
		if err := b.RequestStepUp(c.UserContext(), s); err != nil {
			return err
		}
		return c.JSON(fiber.Map{"sent": true})
	}))
	v1.Post("/stepup", loginLimit, b.withSession(false, func(c *fiber.Ctx, sid string, s session.Session) error {
		var req struct {
			Code string `json:"code"`
			OS   string `json:"os"`
		}
		if err := decode(c, &req); err != nil {
			return err
		}
		if err := b.StepUp(c.UserContext(), sid, s, req.Code, req.OS); err != nil {
			return err
		}
		return c.JSON(fiber.Map{"stepped_up": true})
	}))
	v1.Post("/logout", b.withSession(false, func(c *fiber.Ctx, sid string, _ session.Session) error {
		if err := b.Logout(c.UserContext(), sid); err != nil {
			return err
		}
		return c.JSON(fiber.Map{"logged_out": true})
	}))
	s := v1.Group("", sessLimit)
	s.Get("/me", b.withSession(true, func(c *fiber.Ctx, _ string, s session.Session) error {
		cu, err := b.Customer(s.Customer)
		if err != nil {
			return err
		}
		return c.JSON(cu.View())
	}))
	s.Get("/accounts", b.withSession(true, func(c *fiber.Ctx, _ string, s session.Session) error {
		cu, err := b.Customer(s.Customer)
		if err != nil {
			return err
		}
		as, err := b.Ledger.AccountsByOwner(c.UserContext(), owner(cu))
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
	}))
	s.Post("/limits", b.withSession(true, func(c *fiber.Ctx, _ string, s session.Session) error {
		var req struct {
			Account        string `json:"account"`
			PerTransaction string `json:"per_transaction"`
			Daily          string `json:"daily"`
		}
		if err := decode(c, &req); err != nil {
			return err
		}
		a, err := b.SetLimits(c.UserContext(), s, req.Account, req.PerTransaction, req.Daily)
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"account": a.ID, "per_transaction": ledger.FormatAmount(a.Limits.PerTransaction, a.Currency), "daily": ledger.FormatAmount(a.Limits.Daily, a.Currency)})
	}))
	s.Post("/password", b.withSession(true, func(c *fiber.Ctx, sid string, s session.Session) error {
		var req struct {
			Password bankwire.Sealed `json:"password"`
		}
		if err := decode(c, &req); err != nil {
			return err
		}
		if err := b.ChangePassword(c.UserContext(), sid, s, req.Password); err != nil {
			return err
		}
		return c.JSON(fiber.Map{"changed": true})
	}))
	s.Post("/transfers/usb", b.withSession(true, func(c *fiber.Ctx, _ string, s session.Session) error {
		var req bankwire.SignedOrder
		if err := decode(c, &req); err != nil {
			return err
		}
		res, err := b.TransferUSB(c.UserContext(), s, req)
		if err != nil {
			return err
		}
		return c.JSON(res)
	}))
	s.Post("/transfers/cloud", b.withSession(true, func(c *fiber.Ctx, _ string, s session.Session) error {
		var req struct {
			Order []byte `json:"order"`
		}
		if err := decode(c, &req); err != nil {
			return err
		}
		p, err := b.TransferCloud(c.UserContext(), s, req.Order)
		if err != nil {
			return err
		}
		return c.Status(http.StatusAccepted).JSON(p)
	}))
	s.Get("/transfers/cloud/:id", b.withSession(true, func(c *fiber.Ctx, _ string, s session.Session) error {
		var wait time.Duration
		if w := c.Query("wait"); w != "" {
			d, err := time.ParseDuration(w)
			if err != nil || d < 0 || d > 30*time.Second {
				return invalid(`"wait" must be a duration from 0s to 30s`)
			}
			wait = d
		}
		p, err := b.PollCloud(c.UserContext(), s, c.Params("id"), wait)
		if err != nil {
			return err
		}
		return c.JSON(p)
	}))
	s.Get("/receipts/:id", b.withSession(true, func(c *fiber.Ctx, _ string, s session.Session) error {
		r, err := b.ReceiptOf(c.UserContext(), s, c.Params("id"))
		if err != nil {
			return err
		}
		return c.JSON(r)
	}))
	s.Post("/corporate/orders", b.withSession(true, func(c *fiber.Ctx, _ string, s session.Session) error {
		var req struct {
			Order []byte `json:"order"`
		}
		if err := decode(c, &req); err != nil {
			return err
		}
		o, err := b.EnterCorpOrder(c.UserContext(), s, req.Order)
		if err != nil {
			return err
		}
		return c.Status(http.StatusCreated).JSON(o)
	}))
	s.Get("/corporate/orders", b.withSession(true, func(c *fiber.Ctx, _ string, s session.Session) error {
		os, err := b.CorpOrders(s)
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"orders": os})
	}))
	s.Post("/corporate/orders/:id/review", b.withSession(true, func(c *fiber.Ctx, _ string, s session.Session) error {
		var req struct {
			Approve bool `json:"approve"`
		}
		if err := decode(c, &req); err != nil {
			return err
		}
		o, err := b.ReviewCorpOrder(c.UserContext(), s, c.Params("id"), req.Approve)
		if err != nil {
			return err
		}
		return c.JSON(o)
	}))
	s.Post("/corporate/orders/:id/authorise", b.withSession(true, func(c *fiber.Ctx, _ string, s session.Session) error {
		var req struct {
			Approve   bool   `json:"approve"`
			Signature string `json:"signature"`
		}
		if err := decode(c, &req); err != nil {
			return err
		}
		o, err := b.AuthoriseCorpOrder(c.UserContext(), s, c.Params("id"), req.Signature, req.Approve)
		if err != nil {
			return err
		}
		return c.JSON(o)
	}))

	if cfg.StaffTokenSHA256 != "" {
		staff := app.Group("/staff/v1", staffAuth(cfg.StaffTokenSHA256))
		staff.Post("/customers", func(c *fiber.Ctx) error {
			var req bankwire.EnrolRequest
			if err := decode(c, &req); err != nil {
				return err
			}
			res, err := b.Enrol(c.UserContext(), req)
			if err != nil {
				return err
			}
			return c.Status(http.StatusCreated).JSON(res)
		})
		staff.Post("/deposits", func(c *fiber.Ctx) error {
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
			rc, err := b.Ledger.Deposit(c.UserContext(), ledger.CashRequest{IdempotencyKey: "staff:" + req.IdempotencyKey, Account: req.Account, Amount: amt, Currency: req.Currency, Memo: "deposit"})
			if err != nil {
				return err
			}
			return c.JSON(rc)
		})
		staff.Get("/ledger/verify", func(c *fiber.Ctx) error {
			rep, err := b.Ledger.Verify(c.UserContext())
			if err != nil {
				return err
			}
			return c.JSON(rep)
		})
	}
	return app
}

// SetLimits changes an account's limits after a recent SMS step-up
// (R-AUTH-6); a corporate account's only by its administrator (R-AUTH-10).
func (b *Bank) SetLimits(ctx context.Context, s session.Session, account, perTx, daily string) (ledger.Account, error) {
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

// withSession authenticates the bearer session; with ready, a session
// whose step-up is still open is refused.
func (b *Bank) withSession(ready bool, h func(c *fiber.Ctx, sid string, s session.Session) error) fiber.Handler {
	return func(c *fiber.Ctx) error {
		sid, ok := bearer(c)
		if !ok {
			return fmt.Errorf("%w: send Authorization: Bearer <session>", ErrUnauthenticated)
		}
		s, err := b.Authenticate(c.UserContext(), sid, c.Get("X-Device-Id"))
		if err != nil {
			return err
		}
		if ready {
			if err := b.ready(s); err != nil {
				return err
			}
		}
		return h(c, sid, s)
	}
}

func bearer(c *fiber.Ctx) (string, bool) {
	a := c.Get(fiber.HeaderAuthorization)
	if !strings.HasPrefix(a, "Bearer ") || len(a) < 8 || len(a) > 200 {
		return "", false
	}
	return a[7:], true
}

func bearerHash(c *fiber.Ctx) string {
	t, _ := bearer(c)
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:8])
}

func staffAuth(wantHex string) fiber.Handler {
	want, _ := hex.DecodeString(wantHex)
	return func(c *fiber.Ctx) error {
		t, ok := bearer(c)
		sum := sha256.Sum256([]byte(t))
		if !ok || len(want) != len(sum) || subtle.ConstantTimeCompare(sum[:], want) != 1 {
			return fmt.Errorf("%w: staff token required", ErrUnauthenticated)
		}
		return c.Next()
	}
}

func clientIP(c *fiber.Ctx) netip.Addr {
	a, err := netip.ParseAddr(c.IP())
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return a.Unmap()
}

func tooMany(c *fiber.Ctx) error {
	return c.Status(http.StatusTooManyRequests).JSON(errBody("rate_limited", "too many requests; slow down and try again in a minute"))
}

// decode reads a strict JSON body: one object, no unknown fields.
func decode(c *fiber.Ctx, v any) error {
	return decodeBody(c.Get(fiber.HeaderContentType), c.Body(), v)
}

// decodeBody is decode on a request's content type and body; every
// refusal is ErrInvalid with a message naming what to fix.
func decodeBody(contentType string, raw []byte, v any) error {
	if !strings.HasPrefix(contentType, fiber.MIMEApplicationJSON) {
		return invalid("send Content-Type: application/json")
	}
	body := bytes.TrimSpace(raw)
	if len(body) == 0 || body[0] != '{' {
		return invalid("the body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return invalid("malformed JSON at byte %d", se.Offset)
		case errors.As(err, &te):
			return invalid("field %q has the wrong type", te.Field)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return invalid("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return invalid("malformed JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("data after the JSON object")
	}
	return nil
}

func errBody(code, msg string) fiber.Map {
	return fiber.Map{"error": fiber.Map{"code": code, "message": msg}}
}

func (b *Bank) errorHandler(c *fiber.Ctx, err error) error {
	var fe *fiber.Error
	if errors.As(err, &fe) {
		code := "bad_request"
		switch fe.Code {
		case http.StatusNotFound:
			code = "not_found"
		case http.StatusMethodNotAllowed:
			code = "method_not_allowed"
		case http.StatusRequestEntityTooLarge:
			code = "body_too_large"
		}
		return c.Status(fe.Code).JSON(errBody(code, http.StatusText(fe.Code)))
	}
	status, code, msg, internal := classify(err)
	if internal {
		b.log.Error("request failed", "method", c.Method(), "route", c.Route().Path, "err", err)
	}
	if status == http.StatusUnauthorized {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="keyward-bank"`)
	}
	return c.Status(status).JSON(errBody(code, msg))
}

func (b *Bank) recoverPanic(c *fiber.Ctx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			b.log.Error("panic serving request", "route", c.Route().Path, "panic", fmt.Sprint(r))
			err = errors.New("panic")
		}
	}()
	return c.Next()
}

// securityHeaders: an API that browsers must not frame, sniff, cache or
// run scripts from; HSTS for a year (R-SRV-5).
func securityHeaders(c *fiber.Ctx) error {
	c.Set(fiber.HeaderStrictTransportSecurity, "max-age=31536000; includeSubDomains")
	c.Set(fiber.HeaderContentSecurityPolicy, "default-src 'none'; frame-ancestors 'none'; base-uri 'none'")
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set("Referrer-Policy", "no-referrer")
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Next()
}
