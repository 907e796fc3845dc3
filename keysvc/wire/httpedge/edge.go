package httpedge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"time"

	"github.com/gofiber/fiber/v2"
)

type fiberError = fiber.Error

// Defaults for the zero values of Config.
const (
	DefaultBodyLimit    = 1 << 20 // 1 MiB
	DefaultReadTimeout  = 10 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultIdleTimeout  = 60 * time.Second

	// StrictCSP is the Content-Security-Policy of a service that serves
	// no HTML: nothing may load, nothing may frame it.
	StrictCSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"

	// HeaderRequestID carries the request id both ways.
	HeaderRequestID = "X-Request-Id"
)

// Config configures the edge of one service.
type Config struct {
	// Logger receives internal errors, panics (with their stack) and
	// fasthttp's connection errors; default slog.Default(). Every line
	// written for a request carries its request_id, method and route
	// pattern (never the raw path: paths can hold tokens).
	Logger *slog.Logger
	// BodyLimit in bytes (default 1 MiB); larger bodies get 413
	// body_too_large.
	BodyLimit int
	// Timeouts of the HTTP server; defaults 10 s, 10 s and 60 s.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// Errors is the service's error table (sentinels → status and code).
	Errors Table
	// Realm, when set, is sent on every 401 as
	// WWW-Authenticate: Bearer realm="<Realm>".
	Realm string
	// CSP is the Content-Security-Policy header; default StrictCSP. Set
	// it only for a service that serves HTML.
	CSP string
	// InvalidCode, when set, replaces the codes of 400 decode refusals
	// (invalid_json, unknown_field, invalid_argument) with this one code,
	// for a service that has always published a single code for a bad
	// request (banking: invalid_request).
	InvalidCode string
	// Localize, when set, writes the message of every error response in
	// the reader's language: it gets the request (its Accept-Language),
	// the error and what Classify made of it, and returns the message
	// to send (p.Message to keep it). The code and status never change
	// with the language. It may set response headers (Content-Language).
	// nil: the classifier's English message, as keysvc sends.
	Localize func(c *fiber.Ctx, err error, p Problem) string
}

func (cfg Config) withDefaults() Config {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BodyLimit == 0 {
		cfg.BodyLimit = DefaultBodyLimit
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.CSP == "" {
		cfg.CSP = StrictCSP
	}
	return cfg
}

// New returns a fiber app with the edge in place: the body limit and
// timeouts, strings copied out of fasthttp's buffers (Immutable), no
// Server header, the error handler (every error leaves as an Envelope,
// classified by cfg.Classify), and, in this order, the request id, panic
// recovery and the security headers in front of every route. The
// service adds its routes.
func New(cfg Config) *fiber.App {
	cfg = cfg.withDefaults()
	app := fiber.New(fiber.Config{
		DisableStartupMessage: true,
		BodyLimit:             cfg.BodyLimit,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		ErrorHandler:          cfg.handleError,
		Immutable:             true,
		ServerHeader:          "",
	})
	// fasthttp logs connection-level errors (failed TLS handshakes) through
	// its own logger; send them to slog.
	app.Server().Logger = fasthttpLogger{cfg.Logger}
	app.Use(cfg.requestID, cfg.recoverPanic, cfg.securityHeaders)
	return app
}

// handleError is fiber's ErrorHandler: every error a handler returns, and
// every error fiber or fasthttp raise, ends here.
func (cfg Config) handleError(c *fiber.Ctx, err error) error {
	p := cfg.Classify(err)
	switch {
	case p.Internal:
		Logger(c).Error("request failed", "err", err)
	case p.Status >= 500:
		// A server-side refusal the client is told to retry (503: a
		// database or key service away): the operator needs the cause.
		Logger(c).Warn("request refused", "status", p.Status, "code", p.Code, "err", err)
	}
	if cfg.Localize != nil {
		p.Message = cfg.Localize(c, err, p)
	}
	return cfg.write(c, p)
}

func (cfg Config) write(c *fiber.Ctx, p Problem) error {
	// Errors fiber raises before any middleware ran (an oversize body,
	// a malformed request) get the headers here.
	if len(c.Response().Header.Peek(HeaderRequestID)) == 0 {
		c.Set(HeaderRequestID, newRequestID())
	}
	cfg.setHeaders(c)
	if p.Status == http.StatusUnauthorized && cfg.Realm != "" {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="`+cfg.Realm+`"`)
	}
	return c.Status(p.Status).JSON(Envelope{Error: Detail{Code: p.Code, Message: p.Message}})
}

// recoverPanic turns a panic in a handler into a logged 500 internal (the
// stack goes to the log, never to the client), so one bad request cannot
// stop the service.
func (cfg Config) recoverPanic(c *fiber.Ctx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			Logger(c).Error("panic serving request", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = NewError(http.StatusInternalServerError, CodeInternal, MsgInternal)
		}
	}()
	return c.Next()
}

// securityHeaders: an API that browsers must not sniff, cache, frame or
// run scripts from; HSTS for a year on TLS (R-SRV-5).
func (cfg Config) securityHeaders(c *fiber.Ctx) error {
	cfg.setHeaders(c)
	return c.Next()
}

func (cfg Config) setHeaders(c *fiber.Ctx) {
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	c.Set(fiber.HeaderContentSecurityPolicy, cfg.CSP)
	if c.Protocol() == "https" {
		c.Set(fiber.HeaderStrictTransportSecurity, "max-age=31536000; includeSubDomains")
	}
}

// requestIDPattern is a well-formed client request id: 8 to 64 letters,
// digits, '-', '_' or '.'. Anything else is replaced, so an id can go
// into a log line unquoted and cannot forge one.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{8,64}$`)

type ctxKey struct{}

const loggerKey = "httpedge.logger"

// requestID accepts a well-formed X-Request-Id or makes one (128 random
// bits, hex), echoes it in the response and puts it in the request's
// context (RequestID) and logger (Logger).
func (cfg Config) requestID(c *fiber.Ctx) error {
	id := c.Get(HeaderRequestID)
	if !requestIDPattern.MatchString(id) {
		id = newRequestID()
	}
	c.Set(HeaderRequestID, id)
	c.SetUserContext(context.WithValue(c.UserContext(), ctxKey{}, id))
	c.Locals(loggerKey, cfg.Logger)
	return c.Next()
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (Go 1.24)
	return hex.EncodeToString(b[:])
}

// RequestID returns the request id the edge put in ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// Logger returns the edge's logger for this request: its lines carry
// request_id, method and route (the pattern, such as /v1/keys/:name,
// never the raw path, which can hold tokens).
func Logger(c *fiber.Ctx) *slog.Logger {
	log, _ := c.Locals(loggerKey).(*slog.Logger)
	if log == nil {
		log = slog.Default()
	}
	return log.With("request_id", RequestID(c.UserContext()), "method", c.Method(), "route", c.Route().Path)
}

// fasthttpLogger adapts slog to fasthttp's Printf logger.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Warn("http server", "detail", fmt.Sprintf(format, args...))
}

// ContextHandler wraps h so that a line logged with a request's context
// (log.InfoContext(ctx, …), ctx from c.UserContext()) carries its
// request_id, wherever in the service it is written.
func ContextHandler(h slog.Handler) slog.Handler { return ctxHandler{h} }

type ctxHandler struct{ slog.Handler }

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h ctxHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ctxHandler{h.Handler.WithAttrs(as)}
}

func (h ctxHandler) WithGroup(name string) slog.Handler { return ctxHandler{h.Handler.WithGroup(name)} }
