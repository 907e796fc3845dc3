package api_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/api"
	"github.com/keyward/keyward/keysvc/wire"
)

// TestBadRequests: each request is refused with the exact status and
// code, and the backend is never called.
func TestBadRequests(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.BodyLimit = 64 << 10 })
	ct := "Content-Type"
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code, msgHas             string
	}{
		{"malformed JSON", "POST", "/v1/keys/k1/sign", `{"message":`, nil, 400, "invalid_json", ""},
		{"syntax error", "POST", "/v1/keys/k1/sign", `{"message" "aGk="}`, nil, 400, "invalid_json", "byte"},
		{"empty body", "POST", "/v1/keys/k1/sign", ``, []string{ct, "application/json"}, 400, "invalid_json", "empty"},
		{"null body", "POST", "/v1/keys/k1/sign", `null`, nil, 400, "invalid_json", "object"},
		{"array body", "POST", "/v1/keys/k1/encrypt", `[1]`, nil, 400, "invalid_json", "object"},
		{"trailing garbage", "POST", "/v1/keys/k1/sign", `{"digest":"AAAA"} x`, nil, 400, "invalid_json", "after"},
		{"two objects", "POST", "/v1/keys/k1/sign", `{"digest":"AAAA"}{}`, nil, 400, "invalid_json", "after"},
		{"duplicate name", "POST", "/v1/keys/k1/sign", `{"digest":"AAAA","digest":"BBBB"}`, nil, 400, "invalid_json", `"digest" (at /digest) appears twice`},
		{"case-mismatched name", "POST", "/v1/keys/k1/sign", `{"Digest":"AAAA"}`, nil, 400, "unknown_field", `did you mean "digest"?`},
		{"nested case mismatch", "POST", "/v1/keys", `{"name":"k","policy":{"grants":[{"Client":"a","ops":[]}]}}`, nil, 400, "unknown_field", "/policy/grants/0/Client"},
		{"bad UTF-8", "POST", "/v1/keys/k1/sign", "{\"digest\":\"AAAA\",\"scheme\":\"\xff\"}", nil, 400, "invalid_json", "UTF-8"},
		{"unknown field", "POST", "/v1/keys/k1/sign", `{"digest":"AAAA","hash":"sha1"}`, nil, 400, "unknown_field", `"hash"`},
		{"nested unknown field", "POST", "/v1/keys", `{"name":"k","policy":{"grants":[{"client":"a","ops":[],"admin":true}]}}`, nil, 400, "unknown_field", `"admin"`},
		{"wrong type", "POST", "/v1/keys/k1/sign", `{"digest":"AAAA","scheme":5}`, nil, 400, "invalid_argument", `"scheme"`},
		{"bad base64", "POST", "/v1/keys/k1/sign", `{"message":"!!not base64!!"}`, nil, 400, "invalid_argument", `"message"`},
		{"url-safe base64", "POST", "/v1/keys/k1/encrypt", `{"plaintext":"_-8="}`, nil, 400, "invalid_argument", `"plaintext"`},
		{"base64 as number", "POST", "/v1/keys/k1/encrypt", `{"plaintext":12}`, nil, 400, "invalid_argument", `"plaintext"`},
		{"bad base64 in batch", "POST", "/v1/keys/k1/sign-batch", `{"items":[{"digest":"AAAA"},{"digest":"%%"}]}`, nil, 400, "invalid_argument", `digest`},
		{"bad duration", "POST", "/v1/keys", `{"name":"k","rotation_period":"soon"}`, nil, 400, "invalid_argument", "720h"},
		{"bad aad", "POST", "/v1/keys/k1/decrypt", `{"ciphertext":"kw:v1:AA==","aad":"*"}`, nil, 400, "invalid_argument", `"aad"`},
		{"bad datakey size", "POST", "/v1/keys/k1/datakey", `{"size":20}`, nil, 400, "invalid_argument", "16, 24 or 32"},
		{"datakey size 0", "POST", "/v1/keys/k1/datakey", `{"size":0}`, nil, 400, "invalid_argument", "16, 24 or 32"},
		{"fractional size", "POST", "/v1/keys/k1/datakey", `{"size":16.5}`, nil, 400, "invalid_argument", `"size"`},
		{"empty batch", "POST", "/v1/keys/k1/sign-batch", `{"items":[]}`, nil, 400, "invalid_argument", "at least one"},
		{"bad create name", "POST", "/v1/keys", `{"name":"Bad Name"}`, nil, 400, "invalid_argument", "key name"},
		{"rotate with fields", "POST", "/v1/keys/k1/rotate", `{"version":2}`, nil, 400, "unknown_field", `"version"`},
		{"disable with delay", "POST", "/v1/keys/k1/versions/1/disable", `{"delay":"1h"}`, nil, 400, "unknown_field", `"delay"`},
		{"bad delay", "POST", "/v1/keys/k1/versions/1/schedule-destroy", `{"delay":-5}`, nil, 400, "invalid_argument", ""},
		{"text/plain", "POST", "/v1/keys/k1/sign", `{"digest":"AAAA"}`, []string{ct, "text/plain"}, 415, "unsupported_media_type", ""},
		{"no content type", "POST", "/v1/keys/k1/sign", `{"digest":"AAAA"}`, []string{ct, ""}, 415, "unsupported_media_type", ""},
		{"form", "POST", "/v1/keys/k1/sign", `digest=AAAA`, []string{ct, "application/x-www-form-urlencoded"}, 415, "unsupported_media_type", ""},
		{"latin-1", "POST", "/v1/keys/k1/sign", `{"digest":"AAAA"}`, []string{ct, "application/json; charset=latin1"}, 415, "unsupported_media_type", ""},
		{"gzip", "POST", "/v1/keys/k1/sign", `{"digest":"AAAA"}`, []string{"Content-Encoding", "gzip"}, 415, "unsupported_media_type", "compressed"},
		{"oversize", "POST", "/v1/keys/k1/encrypt", `{"plaintext":"` + strings.Repeat("A", 64<<10) + `"}`, nil, 413, "body_too_large", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.be.Calls())
			r := e.req(tc.method, tc.path, rootToken, tc.body, tc.headers...)
			r.expect(t, tc.status, tc.code)
			if !strings.Contains(r.msg, tc.msgHas) {
				t.Errorf("message %q does not contain %q", r.msg, tc.msgHas)
			}
			if calls := e.be.Calls()[before:]; len(calls) != 0 {
				t.Errorf("backend called: %+v", calls)
			}
		})
	}
	// Charset utf-8 is fine.
	e.req("POST", "/v1/keys/k1/sign", aliceToken, `{"digest":"AAAA"}`, ct, "application/json; charset=UTF-8").expect(t, 200, "")
}

func TestSignBatchLimit(t *testing.T) {
	e := newEnv(t)
	batch := func(n int) string {
		return `{"items":[` + strings.TrimSuffix(strings.Repeat(`{"digest":"AAAA"},`, n), ",") + `]}`
	}
	r := e.req("POST", "/v1/keys/k1/sign-batch", aliceToken, batch(1001))
	r.expect(t, 400, "invalid_argument")
	if len(e.be.Calls()) != 0 {
		t.Fatal("backend called for 1001 items")
	}
	r = e.req("POST", "/v1/keys/k1/sign-batch", aliceToken, batch(1000))
	r.expect(t, 200, "")
	var out struct{ Signatures []struct{ Signature string } }
	r.json(t, &out)
	if len(out.Signatures) != 1000 {
		t.Fatalf("got %d signatures", len(out.Signatures))
	}
	if got := e.be.last(t).Args[0].([]wire.SignRequest); len(got) != 1000 || len(got[999].Digest) != 3 {
		t.Fatalf("backend got %d requests", len(got))
	}
}

func TestKeyNames(t *testing.T) {
	e := newEnv(t)
	for _, name := range []string{"Upper", "-lead", ".lead", "_lead", "a%20b", "a%2Fb", strings.Repeat("a", 65), "caf%C3%A9"} {
		t.Run(name, func(t *testing.T) {
			for _, p := range []string{"/v1/keys/" + name, "/v1/keys/" + name + "/public"} {
				e.req("GET", p, aliceToken, "").expect(t, 400, "invalid_argument")
			}
			e.req("POST", "/v1/keys/"+name+"/sign", aliceToken, `{"digest":"AAAA"}`).expect(t, 400, "invalid_argument")
		})
	}
	if n := len(e.be.Calls()); n != 0 {
		t.Fatalf("backend called %d times for invalid names", n)
	}
	for _, name := range []string{"a", "0", "ok.name_1-2", strings.Repeat("z", 64)} {
		e.req("GET", "/v1/keys/"+name, aliceToken, "").expect(t, 200, "")
		if got := e.be.last(t).Name; got != name {
			t.Errorf("backend got %q, want %q", got, name)
		}
	}
}

func TestVersionParams(t *testing.T) {
	e := newEnv(t)
	for _, v := range []string{"0", "-1", "+1", "abc", "1.5", "1e3", "99999999999", "%201"} {
		e.req("POST", "/v1/keys/k1/versions/"+v+"/disable", rootToken, "").expect(t, 400, "invalid_argument")
		e.req("GET", "/v1/keys/k1/public?version="+v, aliceToken, "").expect(t, 400, "invalid_argument")
	}
	e.req("POST", "/v1/keys/k1/versions/1/explode", rootToken, "").expect(t, 400, "invalid_argument")
	if n := len(e.be.Calls()); n != 0 {
		t.Fatalf("backend called %d times", n)
	}

	tests := []struct {
		path, body string
		version    int
		action     string
		delay      time.Duration
	}{
		{"/v1/keys/k1/versions/3/disable", "", 3, "disable", 0},
		{"/v1/keys/k1/versions/2/enable", "{}", 2, "enable", 0},
		{"/v1/keys/k1/versions/1/schedule-destroy", "", 1, "schedule-destroy", 0},
		{"/v1/keys/k1/versions/1/schedule-destroy", `{"delay":"48h"}`, 1, "schedule-destroy", 48 * time.Hour},
		{"/v1/keys/k1/versions/12/cancel-destroy", "", 12, "cancel-destroy", 0},
	}
	for _, tc := range tests {
		e.req("POST", tc.path, rootToken, tc.body).expect(t, 200, "")
		c := e.be.last(t)
		if got := fmt.Sprint(c.Args...); got != fmt.Sprint(tc.version, tc.action, tc.delay) {
			t.Errorf("%s: backend got %s", tc.path, got)
		}
	}
	for q, want := range map[string]int{"": 0, "?version=1": 1, "?version=7": 7} {
		e.req("GET", "/v1/keys/k1/public"+q, aliceToken, "").expect(t, 200, "")
		if got := e.be.last(t).Args[0]; got != want {
			t.Errorf("public%s: backend got version %v, want %d", q, got, want)
		}
	}
}
