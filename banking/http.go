package banking

import (
	"crypto/sha256"
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
	"github.com/keyward/keyward/banking/staff"
	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

// ServerConfig configures the HTTP API.
type ServerConfig struct {
	// Staff is who may use /staff/v1, each person with a personal token
	// and roles (banking/staff). nil: no staff API.
	Staff *staff.Registry
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
//	GET  /v1/login/captcha             an image captcha {id, image, expires} (2 min, single-use)
//	POST /v1/login                     {login, password: Sealed, device, os[, captcha_id, captcha]}
//	POST /v1/stepup/request            send an SMS code            (session)
//	POST /v1/stepup                    {code, os}                  (session)
//	POST /v1/logout                                                (session)
//	GET  /v1/me, /v1/accounts                                      (session)
//	GET  /v1/accounts/{account}/transactions?limit=20&before=      (the account's owner; a company's: its operators)
//	GET  /v1/payees, POST /v1/payees {account, name, bank?, nickname?} (adding: recent step-up)
//	DELETE /v1/payees/{id}
//	GET  /v1/devices, DELETE /v1/devices/{ref}                     (forgetting one ends its sessions)
//	POST /v1/anti-phishing             {message}                   (recent step-up)
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
//	GET  /staff/v1/whoami              {id, name, roles}           (any staff member)
//	POST /staff/v1/customers           enrolment                   (role enrol)
//	POST /staff/v1/deposits            {account, amount, currency, idempotency_key} (deposit)
//	GET  /staff/v1/ledger/verify                                   (ledger-verify)
//	POST /staff/v1/customers/{id}/unlock                           (unlock)
//	POST /staff/v1/customers/{id}/phone  {phone, identity_checked} (phone-change)
//	POST /staff/v1/limits              {account, per_transaction, daily, reason} (limit-override)
//
// Staff routes take "Authorization: Bearer kwst_…", a person's own token
// (ServerConfig.Staff); a route the person has no role for is 403
// staff_role_required. Every staff request, accepted or refused, is one
// record of banking's audit trail naming the person ("staff:<id>", or
// "staff:?" for a token no one holds).
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
		Localize:    localize,
	})
	app.Use(b.metrics.middleware(app), withLanguage, withSource) // requests by route template, method and status (metrics.go)
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
	v1.Get("/login/captcha", loginLimit, s.loginCaptcha)
	v1.Post("/login", loginLimit, s.login)

	// Session routes. The step-up routes and logout accept a session whose
	// step-up is still open (s.session); the rest need a ready one (s.ready).
	v1.Post("/stepup/request", loginLimit, s.session(s.requestStepUp))
	v1.Post("/stepup", loginLimit, s.session(s.stepUp))
	v1.Post("/logout", s.session(s.logout))
	sv := v1.Group("", sessLimit)
	sv.Get("/me", s.ready(s.me))
	sv.Get("/accounts", s.ready(s.accounts))
	sv.Get("/accounts/:account/transactions", s.ready(s.transactions))
	sv.Get("/payees", s.ready(s.listPayees))
	sv.Post("/payees", s.ready(s.addPayee))
	sv.Delete("/payees/:id", s.ready(s.removePayee))
	sv.Get("/devices", s.ready(s.listDevices))
	sv.Delete("/devices/:ref", s.ready(s.forgetDevice))
	sv.Post("/anti-phishing", s.ready(s.setAntiPhishing))
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

	if cfg.Staff != nil {
		s.staff = cfg.Staff
		st := app.Group("/staff/v1")
		st.Get("/whoami", s.staffAct("whoami", "", s.whoami))
		st.Post("/customers", s.staffAct("enrol", staff.RoleEnrol, s.enrol))
		st.Post("/deposits", s.staffAct("deposit", staff.RoleDeposit, s.deposit))
		st.Get("/ledger/verify", s.staffAct("ledger-verify", staff.RoleLedgerVerify, s.verifyLedger))
		st.Post("/customers/:id/unlock", s.staffAct("unlock", staff.RoleUnlock, s.unlockCustomer))
		st.Post("/customers/:id/phone", s.staffAct("phone-change", staff.RolePhoneChange, s.changePhone))
		st.Post("/limits", s.staffAct("limit-override", staff.RoleLimitOverride, s.overrideLimits))
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
	bank  *Bank
	staff *staff.Registry // nil: no staff routes
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
