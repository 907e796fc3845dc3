package banking

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/limiter"

	"github.com/keyward/keyward/banking/auth"
	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/keysvc/wire/httpedge"
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
	// Past a limit the answer is 429 "rate_limited". The counts are kept
	// in this process: behind a load balancer each banking node counts
	// alone, so N nodes let up to N times as much through. They are a
	// throttle; the bound on password guesses is the brute-force guard,
	// which counts in the store on every node alike.
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
// "X-Device-Id". The app is the shared edge's (keysvc/wire/httpedge):
// errors are {"error":{"code","message"}} with stable codes from
// errorTable (every bad body: 400 invalid_request), panics are 500
// internal, every answer carries X-Request-Id and the security headers.
func (b *Bank) NewServer(cfg ServerConfig) *fiber.App {
	cfg = cfg.withDefaults()
	s := &server{bank: b}
	app := httpedge.New(httpedge.Config{
		Logger:      b.log,
		BodyLimit:   cfg.BodyLimit,
		Errors:      errorTable,
		Realm:       "keyward-bank",
		InvalidCode: "invalid_request",
	})
	app.Use(b.metrics.middleware(app), withSource) // requests by route template, method and status (metrics.go)
	app.Get("/healthz", healthz)
	loginLimit := limiter.New(limiter.Config{Max: cfg.LoginPerMinute, Expiration: time.Minute, LimitReached: tooMany})
	sessLimit := limiter.New(limiter.Config{Max: cfg.RequestsPerMinute, Expiration: time.Minute, LimitReached: tooMany,
		KeyGenerator: func(c *fiber.Ctx) string { return "s:" + bearerHash(c) }})
	keyLimit := limiter.New(limiter.Config{Max: cfg.KeyPerMinute, Expiration: time.Minute, LimitReached: tooMany})

	v1 := app.Group("/v1")
	// The public keys come from a cache (Config.PublicKeyTTL): a flood of
	// these requests costs keysvc nothing.
	v1.Get("/login/key", keyLimit, s.loginKey)
	v1.Get("/receipt-key", keyLimit, s.receiptKey)
	v1.Post("/login/challenge", loginLimit, s.challenge)
	v1.Post("/login", loginLimit, s.login)

	// Session routes. The step-up routes and logout accept a session whose
	// step-up is still open (s.session); the rest need a ready one (s.ready).
	v1.Post("/stepup/request", loginLimit, s.session(s.requestStepUp))
	v1.Post("/stepup", loginLimit, s.session(s.stepUp))
	v1.Post("/logout", s.session(s.logout))
	sv := v1.Group("", sessLimit)
	sv.Get("/me", s.ready(s.me))
	sv.Get("/accounts", s.ready(s.accounts))
	sv.Post("/limits", s.ready(s.setLimits))
	sv.Post("/password", s.ready(s.changePassword))
	sv.Post("/transfers/usb", s.ready(s.transferUSB))
	sv.Post("/transfers/cloud", s.ready(s.transferCloud))
	sv.Get("/transfers/cloud/:id", s.ready(s.pollCloud))
	sv.Get("/receipts/:id", s.ready(s.receipt))
	sv.Post("/corporate/orders", s.ready(s.enterCorpOrder))
	sv.Get("/corporate/orders", s.ready(s.corpOrders))
	sv.Post("/corporate/orders/:id/review", s.ready(s.reviewCorpOrder))
	sv.Post("/corporate/orders/:id/authorise", s.ready(s.authoriseCorpOrder))

	if cfg.StaffTokenSHA256 != "" {
		staff := app.Group("/staff/v1", staffAuth(cfg.StaffTokenSHA256))
		staff.Post("/customers", s.enrol)
		staff.Post("/deposits", s.deposit)
		staff.Get("/ledger/verify", s.verifyLedger)
	}
	return app
}

// withDefaults fills the zero values of cfg.
func (cfg ServerConfig) withDefaults() ServerConfig {
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
	return cfg
}

// server holds the HTTP handlers: one method per route, in http_*.go by
// concern (auth, accounts, transfers, corporate, staff). Each decodes
// the request, calls one Bank method and writes the answer; errors go to
// errorHandler, which maps them with classify.
type server struct {
	bank *Bank
}

// sessionHandler is a handler behind session authentication: sid is the
// bearer session, sess the session it names.
type sessionHandler func(c *fiber.Ctx, sid string, sess session.Session) error

// session admits a request with a valid bearer session, even one whose
// step-up is still open.
func (s *server) session(h sessionHandler) fiber.Handler { return s.admit(false, h) }

// ready admits a request with a valid bearer session whose step-up is done.
func (s *server) ready(h sessionHandler) fiber.Handler { return s.admit(true, h) }

func healthz(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) }

// withSource puts the source address in the request's context, so alerts
// raised deep inside (OTP locks, guard locks) name it (R-AUTH-3).
func withSource(c *fiber.Ctx) error {
	c.SetUserContext(auth.WithSource(c.UserContext(), clientIP(c)))
	return c.Next()
}

// admit authenticates the bearer session; with ready, a session whose
// step-up is still open is refused.
func (s *server) admit(ready bool, h sessionHandler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		sid, ok := bearer(c)
		if !ok {
			return fmt.Errorf("%w: send Authorization: Bearer <session>", ErrUnauthenticated)
		}
		var sess session.Session
		var err error
		if ready {
			sess, err = s.bank.authenticateReady(c.UserContext(), sid, c.Get("X-Device-Id"))
		} else {
			sess, err = s.bank.Authenticate(c.UserContext(), sid, c.Get("X-Device-Id"))
		}
		if err != nil {
			return err
		}
		return h(c, sid, sess)
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

func tooMany(*fiber.Ctx) error {
	return httpedge.NewError(http.StatusTooManyRequests, "rate_limited", "too many requests; slow down and try again in a minute")
}

// decode reads a strict JSON body (httpedge.Decode): application/json in
// UTF-8, one object; unknown, repeated or case-mismatched names, bad
// UTF-8 and trailing data refused, with 400 invalid_request naming the
// JSON path.
func decode(c *fiber.Ctx, v any) error { return httpedge.Decode(c, v) }
