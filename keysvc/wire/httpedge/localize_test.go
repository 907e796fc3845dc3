package httpedge_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

// TestLocalize: with Config.Localize every error message (the table's,
// the edge's own decode and routing refusals, the internal one) is what
// the hook returns, the hook sees the request and the error, and the
// status and code never change; without it the English message stays.
func TestLocalize(t *testing.T) {
	var seen []error
	app, logs := newApp(t, func(cfg *httpedge.Config) {
		cfg.Localize = func(c *fiber.Ctx, err error, p httpedge.Problem) string {
			seen = append(seen, err)
			if !strings.HasPrefix(c.Get(fiber.HeaderAcceptLanguage), "zh") {
				return p.Message
			}
			c.Set(fiber.HeaderContentLanguage, "zh-CN")
			return "中文：" + p.Code
		}
	})
	zh := []string{"Accept-Language", "zh-CN,zh;q=0.9"}
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"table", "GET", "/missing", "", 404, "thing_not_found"},
		{"fixed message", "GET", "/screened", "", 403, "blocked"},
		{"decode", "POST", "/things/1", `{"x":1}`, 400, "unknown_field"},
		{"route", "GET", "/nowhere", "", 404, "not_found"},
		{"internal", "GET", "/internal", "", 500, "internal"},
		{"edge error", "GET", "/login", "", 401, "unauthenticated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, app, tc.method, tc.path, tc.body, zh...)
			if a.status != tc.status || a.code != tc.code || a.msg != "中文："+tc.code {
				t.Fatalf("zh: got %d %s %q, want %d %s %q", a.status, a.code, a.msg, tc.status, tc.code, "中文："+tc.code)
			}
			if a.header.Get("Content-Language") != "zh-CN" {
				t.Fatalf("Content-Language %q", a.header.Get("Content-Language"))
			}
			en := do(t, app, tc.method, tc.path, tc.body, "Accept-Language", "en")
			if en.status != tc.status || en.code != tc.code || strings.Contains(en.msg, "中文") || en.msg == "" {
				t.Fatalf("en: got %d %s %q", en.status, en.code, en.msg)
			}
		})
	}
	var found bool
	for _, err := range seen {
		found = found || strings.Contains(err.Error(), "no such thing") && errors.Unwrap(err) != nil
	}
	if !found {
		t.Fatalf("the hook never saw the handler's wrapped error: %v", seen)
	}
	if strings.Contains(logs.String(), "中文") {
		t.Fatalf("the log got the localized message: %s", logs.String())
	}

	plain, _ := newApp(t, nil)
	if a := do(t, plain, "GET", "/missing", "", zh...); a.msg != "looking: no such thing" || a.header.Get("Content-Language") != "" {
		t.Fatalf("without Localize: %q, Content-Language %q", a.msg, a.header.Get("Content-Language"))
	}
}
