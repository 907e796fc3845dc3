package banking

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

// TestServerEdge: banking's routes run on the shared edge (issue 14 item
// 3). Requests refused before the Bank is asked anything — bad bodies,
// no session, no route, a panic — answer in the envelope with banking's
// codes, and every answer carries the edge's headers and a request id.
func TestServerEdge(t *testing.T) {
	var logs bytes.Buffer
	b := &Bank{log: slog.New(slog.NewJSONHandler(&logs, nil))}
	app := b.NewServer(ServerConfig{})
	app.Get("/panic/:id", func(*fiber.Ctx) error { panic("bug") })
	const pw = "Kw-7391-safe"
	tests := []struct {
		name, method, path, ct, body string
		status                       int
		code, msgHas                 string
	}{
		{"health", "GET", "/healthz", "", "", 200, "", ""},
		{"unknown field", "POST", "/v1/login", "application/json", `{"login":"a","extra":"` + pw + `"}`, 400, "invalid_request", `unknown field "extra"`},
		{"case-mismatched name", "POST", "/v1/login", "application/json", `{"Login":"a"}`, 400, "invalid_request", `did you mean "login"?`},
		{"duplicate name", "POST", "/v1/login", "application/json", `{"login":"a","login":"b"}`, 400, "invalid_request", "twice"},
		{"wrong type", "POST", "/v1/login", "application/json", `{"login":7391}`, 400, "invalid_request", `"login" (at /login) must be a string`},
		{"nested", "POST", "/v1/login", "application/json", `{"password":{"ciphertext":"` + pw + `","nonce":1}}`, 400, "invalid_request", "/password/nonce"},
		{"trailing data", "POST", "/v1/login", "application/json", `{"login":"a"} {}`, 400, "invalid_request", "after"},
		{"text/plain", "POST", "/v1/login", "text/plain", `{"login":"a"}`, 415, "unsupported_media_type", "application/json"},
		{"latin-1", "POST", "/v1/login", "application/json; charset=iso-8859-1", `{"login":"a"}`, 415, "unsupported_media_type", "UTF-8"},
		{"no session", "GET", "/v1/me", "", "", 401, "unauthenticated", "Bearer"},
		{"no route", "GET", "/v2/nothing", "", "", 404, "not_found", ""},
		{"panic", "GET", "/panic/x", "", "", 500, "internal", "内部错误"}, // Chinese by default (issue 18)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			resp, err := app.Test(req, -1)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			var env httpedge.Envelope
			if tc.status >= 400 {
				if err := json.Unmarshal(raw, &env); err != nil {
					t.Fatalf("body %q: %v", raw, err)
				}
			}
			if resp.StatusCode != tc.status || env.Error.Code != tc.code || !strings.Contains(env.Error.Message, tc.msgHas) {
				t.Fatalf("got %d %s %q, want %d %s containing %q", resp.StatusCode, env.Error.Code, env.Error.Message, tc.status, tc.code, tc.msgHas)
			}
			if strings.Contains(string(raw), pw) || strings.Contains(string(raw), "7391") {
				t.Fatalf("the answer quotes a value: %s", raw)
			}
			h := resp.Header
			if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" ||
				h.Get("Content-Security-Policy") != httpedge.StrictCSP || len(h.Get(httpedge.HeaderRequestID)) != 32 {
				t.Fatalf("headers: %v", h)
			}
			if h.Get("Content-Language") != "zh-CN" {
				t.Fatalf("Content-Language %q, want zh-CN by default", h.Get("Content-Language"))
			}
			if tc.status == 401 && h.Get("WWW-Authenticate") != `Bearer realm="keyward-bank"` {
				t.Fatalf("WWW-Authenticate %q", h.Get("WWW-Authenticate"))
			}
		})
	}
	req := httptest.NewRequest("GET", "/panic/y", nil)
	req.Header.Set("Accept-Language", "en-GB,en;q=0.9")
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	var env httpedge.Envelope
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &env); err != nil || env.Error.Message != httpedge.MsgInternal || resp.Header.Get("Content-Language") != "en" {
		t.Fatalf("English asked: %s, Content-Language %q", raw, resp.Header.Get("Content-Language"))
	}
	if !strings.Contains(logs.String(), `"route":"/panic/:id"`) || !strings.Contains(logs.String(), `"stack"`) {
		t.Fatalf("panic not logged with route and stack: %s", logs.String())
	}
}
