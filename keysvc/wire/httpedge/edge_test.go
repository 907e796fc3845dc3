package httpedge_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

var (
	errMissing = errors.New("no such thing")
	errSecret  = errors.New("screened: list line 12 names Mallory")
)

// logBuf is a concurrency-safe buffer for a JSON slog handler.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// lines returns the log's JSON lines.
func (l *logBuf) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, ln := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if ln == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(ln), &m); err != nil {
			t.Fatalf("log line %q: %v", ln, err)
		}
		out = append(out, m)
	}
	return out
}

func newApp(t *testing.T, mod func(*httpedge.Config)) (*fiber.App, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	cfg := httpedge.Config{
		Logger:    slog.New(slog.NewJSONHandler(logs, nil)),
		BodyLimit: 1 << 10,
		Realm:     "test",
		Errors: httpedge.Table{
			{Err: errMissing, Status: http.StatusNotFound, Code: "thing_not_found"},
			{Err: errSecret, Status: http.StatusForbidden, Code: "blocked", Message: "refused by screening"},
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	app := httpedge.New(cfg)
	type body struct {
		Name string `json:"name"`
		PIN  string `json:"pin"`
	}
	app.Post("/things/:id", func(c *fiber.Ctx) error {
		var b body
		if err := httpedge.Decode(c, &b); err != nil {
			return err
		}
		return c.JSON(b)
	})
	app.Post("/optional", func(c *fiber.Ctx) error {
		var b body
		if err := httpedge.DecodeOptional(c, &b); err != nil {
			return err
		}
		return c.JSON(b)
	})
	app.Get("/missing", func(*fiber.Ctx) error { return fmt.Errorf("looking: %w", errMissing) })
	app.Get("/screened", func(*fiber.Ctx) error { return fmt.Errorf("ledger: %w", errSecret) })
	app.Get("/internal", func(*fiber.Ctx) error { return errors.New("disk on fire at /var/secret") })
	app.Get("/login", func(*fiber.Ctx) error { return httpedge.NewError(401, "unauthenticated", "log in first") })
	app.Get("/panic/:token", func(*fiber.Ctx) error { panic("handler bug") })
	app.Get("/id", func(c *fiber.Ctx) error {
		httpedge.Logger(c).Info("handled")
		return c.SendString(httpedge.RequestID(c.UserContext()))
	})
	return app, logs
}

type answer struct {
	status int
	header http.Header
	code   string
	msg    string
	raw    string
}

func do(t *testing.T, app *fiber.App, method, path, body string, headers ...string) answer {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	var env httpedge.Envelope
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(raw, &env); err != nil {
			t.Fatalf("%s %s: %d with a body that is not an envelope: %q", method, path, resp.StatusCode, raw)
		}
		a.code, a.msg = env.Error.Code, env.Error.Message
	}
	return a
}

// TestErrors: decode refusals, the service's table, fiber's own errors
// and internal errors all leave as the envelope with the right status
// and code; only internal errors are logged, and their text is not shown.
func TestErrors(t *testing.T) {
	app, logs := newApp(t, nil)
	ct := "Content-Type"
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code, msgHas             string
	}{
		{"decoded", "POST", "/things/1", `{"name":"a"}`, nil, 200, "", ""},
		{"unknown field", "POST", "/things/1", `{"name":"a","x":1}`, nil, 400, "unknown_field", `"x"`},
		{"empty", "POST", "/things/1", ``, nil, 400, "invalid_json", "empty"},
		{"optional empty", "POST", "/optional", ``, nil, 200, "", ""},
		{"text/plain", "POST", "/things/1", `{}`, []string{ct, "text/plain"}, 415, "unsupported_media_type", "application/json"},
		{"prefix is not enough", "POST", "/things/1", `{}`, []string{ct, "application/jsonx"}, 415, "unsupported_media_type", ""},
		{"latin-1", "POST", "/things/1", `{}`, []string{ct, "application/json; charset=latin1"}, 415, "unsupported_media_type", "UTF-8"},
		{"utf-8", "POST", "/things/1", `{}`, []string{ct, "application/json; charset=UTF-8"}, 200, "", ""},
		{"gzip", "POST", "/things/1", `{}`, []string{"Content-Encoding", "gzip"}, 415, "unsupported_media_type", "compressed"},
		{"table", "GET", "/missing", "", nil, 404, "thing_not_found", "no such thing"},
		{"table fixed message", "GET", "/screened", "", nil, 403, "blocked", "refused by screening"},
		{"no route", "GET", "/nowhere", "", nil, 404, "not_found", "no such route"},
		{"wrong method", "PUT", "/missing", "", nil, 405, "method_not_allowed", ""},
		{"internal", "GET", "/internal", "", nil, 500, "internal", httpedge.MsgInternal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, app, tc.method, tc.path, tc.body, tc.headers...)
			if a.status != tc.status || a.code != tc.code || !strings.Contains(a.msg, tc.msgHas) {
				t.Fatalf("got %d %s %q, want %d %s containing %q", a.status, a.code, a.msg, tc.status, tc.code, tc.msgHas)
			}
		})
	}
	if s := logs.String(); strings.Contains(s, "Mallory") || strings.Count(s, "request failed") != 1 || !strings.Contains(s, "disk on fire") {
		t.Fatalf("log should hold the internal error once and nothing else: %s", s)
	}
	if a := do(t, app, "GET", "/screened", ""); strings.Contains(a.raw, "Mallory") {
		t.Fatalf("fixed-message row leaked the error text: %s", a.raw)
	}
	a := do(t, app, "GET", "/login", "")
	if a.status != 401 || a.code != "unauthenticated" || a.header.Get("WWW-Authenticate") != `Bearer realm="test"` {
		t.Fatalf("401: %d %s, WWW-Authenticate %q", a.status, a.code, a.header.Get("WWW-Authenticate"))
	}
}

func TestInvalidCode(t *testing.T) {
	app, _ := newApp(t, func(c *httpedge.Config) { c.InvalidCode = "invalid_request" })
	for body, want := range map[string]string{`{"x":1}`: "invalid_request", `{`: "invalid_request", `{"name":1}`: "invalid_request"} {
		if a := do(t, app, "POST", "/things/1", body); a.status != 400 || a.code != want {
			t.Errorf("%s: %d %s, want 400 %s", body, a.status, a.code, want)
		}
	}
	// 413 and 415 keep their own codes.
	if a := do(t, app, "POST", "/things/1", `{}`, "Content-Type", "text/plain"); a.status != 415 || a.code != "unsupported_media_type" {
		t.Errorf("text/plain: %d %s", a.status, a.code)
	}
}

// TestPanic: a panicking handler answers 500 internal with the fixed
// message; the stack goes to the log with the request id and the route
// pattern (not the raw path, which holds a token).
func TestPanic(t *testing.T) {
	app, logs := newApp(t, nil)
	a := do(t, app, "GET", "/panic/tok-SECRET-123", "", httpedge.HeaderRequestID, "req-00000001")
	if a.status != 500 || a.code != "internal" || a.msg != httpedge.MsgInternal || strings.Contains(a.raw, "handler bug") || strings.Contains(a.raw, "goroutine") {
		t.Fatalf("panic answer: %d %s", a.status, a.raw)
	}
	var found bool
	for _, l := range logs.lines(t) {
		if l["msg"] != "panic serving request" {
			continue
		}
		found = true
		if l["request_id"] != "req-00000001" || l["route"] != "/panic/:token" || l["panic"] != "handler bug" || !strings.Contains(fmt.Sprint(l["stack"]), "recoverPanic") {
			t.Errorf("panic log line: %v", l)
		}
	}
	if !found {
		t.Fatalf("no panic log line: %s", logs.String())
	}
	if strings.Contains(logs.String(), "SECRET") {
		t.Fatalf("the raw path was logged: %s", logs.String())
	}
	// The app still serves.
	if a := do(t, app, "GET", "/missing", ""); a.status != 404 {
		t.Fatalf("after a panic: %d", a.status)
	}
}

// TestRequestID: a well-formed X-Request-Id is kept, anything else is
// replaced by a fresh 32-hex-digit id; either way it is echoed, put in
// the request's context and in its log lines.
func TestRequestID(t *testing.T) {
	app, logs := newApp(t, nil)
	for _, tc := range []struct{ sent, want string }{
		{"abcdEF12-_.x", "abcdEF12-_.x"},
		{"", ""},
		{"short", ""},
		{"has space in it", ""},
		{"new\nline-injected", ""},
		{strings.Repeat("a", 65), ""},
	} {
		var h []string
		if tc.sent != "" {
			h = []string{httpedge.HeaderRequestID, tc.sent}
		}
		a := do(t, app, "GET", "/id", "", h...)
		got := a.header.Get(httpedge.HeaderRequestID)
		if tc.want != "" && got != tc.want {
			t.Errorf("sent %q: id %q, want it kept", tc.sent, got)
		}
		if tc.want == "" && (len(got) != 32 || strings.Trim(got, "0123456789abcdef") != "" || got == tc.sent) {
			t.Errorf("sent %q: id %q, want a fresh 32-hex-digit id", tc.sent, got)
		}
		if a.raw != got {
			t.Errorf("context id %q, header %q", a.raw, got)
		}
	}
	lines := logs.lines(t)
	if len(lines) != 6 {
		t.Fatalf("%d log lines, want 6", len(lines))
	}
	for _, l := range lines {
		if id, _ := l["request_id"].(string); len(id) < 8 || l["route"] != "/id" || l["method"] != "GET" {
			t.Errorf("log line %v lacks request_id, route or method", l)
		}
	}
	a, b := do(t, app, "GET", "/id", ""), do(t, app, "GET", "/id", "")
	if a.raw == b.raw {
		t.Fatalf("two requests got the same id %q", a.raw)
	}
}

func TestSecurityHeaders(t *testing.T) {
	app, _ := newApp(t, nil)
	for _, path := range []string{"/id", "/missing", "/nowhere"} {
		h := do(t, app, "GET", path, "").header
		for k, v := range map[string]string{
			"X-Content-Type-Options":  "nosniff",
			"Cache-Control":           "no-store",
			"X-Frame-Options":         "DENY",
			"Referrer-Policy":         "no-referrer",
			"Content-Security-Policy": httpedge.StrictCSP,
		} {
			if got := h.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", path, k, got, v)
			}
		}
		if got := h.Get("Strict-Transport-Security"); got != "" {
			t.Errorf("%s: HSTS on plain HTTP: %q", path, got)
		}
	}
	// Behind a TLS-terminating proxy fiber reads X-Forwarded-Proto.
	if got := do(t, app, "GET", "/id", "", "X-Forwarded-Proto", "https").header.Get("Strict-Transport-Security"); got != "max-age=31536000; includeSubDomains" {
		t.Errorf("HSTS on TLS: %q", got)
	}
	html, _ := newApp(t, func(c *httpedge.Config) { c.CSP = "default-src 'none'; style-src 'unsafe-inline'" })
	if got := do(t, html, "GET", "/id", "").header.Get("Content-Security-Policy"); got != "default-src 'none'; style-src 'unsafe-inline'" {
		t.Errorf("CSP override: %q", got)
	}
}

// TestBodyTooLarge runs on a real loopback listener (app.Test cannot send
// a body over the limit): 413 body_too_large in the envelope.
func TestBodyTooLarge(t *testing.T) {
	app, _ := newApp(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.Shutdown() })
	body := `{"name":"` + strings.Repeat("a", 2<<10) + `"}`
	resp, err := http.Post("http://"+ln.Addr().String()+"/things/1", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env httpedge.Envelope
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || resp.StatusCode != 413 || env.Error.Code != "body_too_large" {
		t.Fatalf("oversize body: %d %+v (%v)", resp.StatusCode, env, err)
	}
	if resp.Header.Get(httpedge.HeaderRequestID) == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("413 without the edge's headers: %v", resp.Header)
	}
}

// TestContextHandler: a line logged deep inside a service with the
// request's context carries the request id; one without it does not.
func TestContextHandler(t *testing.T) {
	var buf bytes.Buffer
	deep := slog.New(httpedge.ContextHandler(slog.NewJSONHandler(&buf, nil))).With("part", "ledger")
	app := httpedge.New(httpedge.Config{})
	app.Get("/x", func(c *fiber.Ctx) error {
		deep.WarnContext(c.UserContext(), "inside")
		deep.Warn("outside")
		return nil
	})
	req := httptest.NewRequest("GET", "/x", nil)
	req.Header.Set(httpedge.HeaderRequestID, "deep-id-0001")
	if _, err := app.Test(req, -1); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"part":"ledger","request_id":"deep-id-0001"`) || strings.Contains(lines[1], "request_id") {
		t.Fatalf("log: %s", buf.String())
	}
}

// TestServerRefusalLogged: a 5xx the table maps (a 503: a database or a key
// service away) is not internal — the client gets its row's message — but
// the operator gets the cause in the log, at warning, once; a 4xx is not
// logged.
func TestServerRefusalLogged(t *testing.T) {
	errAway := errors.New("store away")
	app, logs := newApp(t, func(c *httpedge.Config) {
		c.Errors = append(c.Errors, httpedge.Row{Err: errAway, Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "try again shortly"})
	})
	app.Get("/away", func(*fiber.Ctx) error { return fmt.Errorf("ledger: %w: dial tcp 10.0.0.5:5432: refused", errAway) })
	a := do(t, app, "GET", "/away", "")
	if a.status != 503 || a.code != "unavailable" || a.msg != "try again shortly" {
		t.Fatalf("got %d %s %q", a.status, a.code, a.msg)
	}
	do(t, app, "GET", "/missing", "")
	var warned int
	for _, l := range logs.lines(t) {
		if l["msg"] == "request refused" {
			warned++
			if l["level"] != "WARN" || l["status"] != float64(503) || !strings.Contains(fmt.Sprint(l["err"]), "10.0.0.5:5432") {
				t.Fatalf("log line %v", l)
			}
		}
	}
	if warned != 1 || strings.Contains(logs.String(), "no such thing") {
		t.Fatalf("want the 503 logged once and the 404 not at all:\n%s", logs.String())
	}
}
