package api

import (
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/limiter"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/keysvc/wire/httpedge"
	"github.com/keyward/keyward/token"
)

// ConfirmConfig configures a ConfirmServer.
type ConfirmConfig struct {
	Backend ConfirmBackend // required
	Logger  *slog.Logger   // default slog.Default()

	// EnrolPerMinute bounds enrolment attempts (JSON and web page
	// together) per source address (default 10; past it 429
	// rate_limited). keysvc locks a holder after six wrong setup codes;
	// this bounds how fast one address can try key names (customer ids).
	EnrolPerMinute int
}

// ConfirmServer is the holder's second channel (R-DC-1): its own listener,
// apart from the /v1 API, where the holder of a confirm-required key reads
// what a client asked to sign and approves it with the key's holder PIN,
// or rejects it. Its credential is the one-time holder token keysvc hands
// to the Notifier (never to the requesting client) plus the holder PIN;
// API clients' bearer tokens and certificates mean nothing here, and no
// /v1 route is served.
//
// JSON routes (for a banking app or a device):
//
//	GET  /confirm/v1/c/{holder-token}          what to confirm
//	POST /confirm/v1/c/{holder-token}/approve  {"key","digest","pin"}
//	POST /confirm/v1/c/{holder-token}/reject   {"key"}
//	POST /confirm/v1/enrol                     {"key","setup_code","pin"}
//
// and one web page for people, /c/{holder-token} (see confirmpage.go).
//
// Holder tokens travel in paths, so this server writes no access log and
// tells browsers not to send Referer headers or cache anything.
type ConfirmServer struct {
	serving    // App, Serve, ServeTLS, Shutdown
	backend    ConfirmBackend
	log        *slog.Logger
	enrolLimit fiber.Handler // per source address, on both enrol routes
}

// holderTokenRE matches the 43-character base64url holder tokens.
var holderTokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// NewConfirmServer builds the confirmation endpoint.
func NewConfirmServer(cfg ConfirmConfig) (*ConfirmServer, error) {
	if cfg.Backend == nil {
		return nil, errors.New("api: ConfirmConfig.Backend is required")
	}
	s := &ConfirmServer{backend: cfg.Backend, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	if cfg.EnrolPerMinute == 0 {
		cfg.EnrolPerMinute = 10
	}
	s.enrolLimit = limiter.New(limiter.Config{Max: cfg.EnrolPerMinute, Expiration: time.Minute, LimitReached: s.enrolLimited})
	// Holder tokens travel in paths: the edge logs route patterns
	// (/c/:token), never paths. The page is HTML: its CSP lets inline
	// styles and same-origin forms through, and nothing else.
	s.app = httpedge.New(httpedge.Config{
		Logger:       s.log,
		BodyLimit:    64 << 10,
		ReadTimeout:  DefaultReadTimeout,
		WriteTimeout: DefaultWriteTimeout,
		IdleTimeout:  DefaultIdleTimeout,
		Errors:       errorTable,
		CSP:          confirmCSP,
	})
	a := s.app
	a.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	j := a.Group("/confirm/v1")
	j.Get("/c/:token", s.jsonView)
	j.Post("/c/:token/approve", s.jsonApprove)
	j.Post("/c/:token/reject", s.jsonReject)
	j.Post("/enrol", s.enrolLimit, s.jsonEnrol)
	s.pageRoutes()
	return s, nil
}

// enrolLimited answers an address past EnrolPerMinute: JSON on the JSON
// route, the enrolment page with the reason on the web route.
func (s *ConfirmServer) enrolLimited(c *fiber.Ctx) error {
	const msg = "too many enrolment attempts from this address; wait a minute and try again"
	if strings.HasPrefix(c.Path(), "/confirm/v1/") {
		return newError(http.StatusTooManyRequests, "rate_limited", msg)
	}
	return s.render(c, http.StatusTooManyRequests, "enrol.html", enrolPage{pageBase: base(c, "Set your holder PIN"),
		Error: tr(c, "Too many enrolment attempts from this address; wait a minute and try again.")})
}

// confirmCSP: no scripts from anywhere, inline styles, forms to this
// origin only, no framing.
const confirmCSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// holderToken validates the :token parameter.
func holderToken(c *fiber.Ctx) (string, error) {
	t := c.Params("token")
	if !holderTokenRE.MatchString(t) {
		return "", newError(http.StatusNotFound, "confirmation_not_found", "no confirmation for this link; it may have expired")
	}
	return t, nil
}

func (s *ConfirmServer) jsonView(c *fiber.Ctx) error {
	t, err := holderToken(c)
	if err != nil {
		return err
	}
	v, err := s.backend.HolderConfirmation(c.UserContext(), t)
	if err != nil {
		return err
	}
	return c.JSON(v)
}

type approveBody struct {
	Key    string `json:"key"`
	Digest string `json:"digest"`
	PIN    string `json:"pin"`
}

func (s *ConfirmServer) jsonApprove(c *fiber.Ctx) error {
	t, err := holderToken(c)
	if err != nil {
		return err
	}
	if err := httpedge.CheckMediaType(c); err != nil {
		return err
	}
	var b approveBody
	if err := httpedge.Decode(c, &b); err != nil {
		return err
	}
	pin := []byte(b.PIN)
	defer token.Wipe(pin)
	if b.Key == "" || b.Digest == "" || b.PIN == "" {
		return invalidArgument(`"key", "digest" (the SHA-256 shown) and "pin" are required`)
	}
	v, err := s.backend.Approve(c.UserContext(), t, wire.ApproveRequest{Key: b.Key, Digest: b.Digest, PIN: pin})
	if err != nil {
		return err
	}
	return c.JSON(v)
}

type rejectBody struct {
	Key string `json:"key"`
}

func (s *ConfirmServer) jsonReject(c *fiber.Ctx) error {
	t, err := holderToken(c)
	if err != nil {
		return err
	}
	if err := httpedge.CheckMediaType(c); err != nil {
		return err
	}
	var b rejectBody
	if err := httpedge.Decode(c, &b); err != nil {
		return err
	}
	if b.Key == "" {
		return invalidArgument(`"key" is required`)
	}
	v, err := s.backend.Reject(c.UserContext(), t, b.Key)
	if err != nil {
		return err
	}
	return c.JSON(v)
}

type enrolBody struct {
	Key       string `json:"key"`
	SetupCode string `json:"setup_code"`
	PIN       string `json:"pin"`
}

func (s *ConfirmServer) jsonEnrol(c *fiber.Ctx) error {
	if err := httpedge.CheckMediaType(c); err != nil {
		return err
	}
	var b enrolBody
	if err := httpedge.Decode(c, &b); err != nil {
		return err
	}
	pin := []byte(b.PIN)
	defer token.Wipe(pin)
	if err := validKeyName(b.Key); err != nil {
		return err
	}
	if b.SetupCode == "" || b.PIN == "" {
		return invalidArgument(`"key", "setup_code" and "pin" are required`)
	}
	if err := s.backend.Enrol(c.UserContext(), b.Key, b.SetupCode, pin); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"key": b.Key, "enrolled": true})
}
