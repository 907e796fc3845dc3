package api_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
)

// TestRoutes calls every /v1 route with a valid request and checks what
// the backend received and what the client got back.
func TestRoutes(t *testing.T) {
	e := newEnv(t)
	sign := wire.SignRequest{Digest: []byte{0, 0, 0}, Scheme: "pss"}
	tests := []struct {
		method, path, body string
		status             int
		call               string
		name               string
		args               []any
		want               string // JSON the response must equal
	}{
		{"GET", "/v1/keys/k1/public", "", 200, "PublicKey", "k1", []any{0},
			`{"version":1,"pem":"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n","jwk":{"kty":"EC","crv":"P-256","x":"x","y":"y","kid":"k1-1"}}`},
		{"POST", "/v1/keys/k1/sign", `{"digest":"AAAA","scheme":"pss"}`, 200, "Sign", "k1", []any{sign},
			`{"signature":"kw:v1:c2ln","version":1}`},
		{"POST", "/v1/keys/k1/sign", `{"message":"aGVsbG8="}`, 200, "Sign", "k1", []any{wire.SignRequest{Message: []byte("hello")}},
			`{"signature":"kw:v1:c2ln","version":1}`},
		{"POST", "/v1/keys/k1/sign-batch", `{"items":[{"digest":"AAAA","scheme":"pss"},{"digest":"AAAA","scheme":"pss"}]}`, 200, "SignBatch", "k1",
			[]any{[]wire.SignRequest{sign, sign}}, `{"signatures":[{"signature":"kw:v1:c2ln","version":1},{"signature":"kw:v1:c2ln","version":1}]}`},
		{"POST", "/v1/keys/k1/verify", `{"message":"aGk=","signature":"kw:v1:c2ln"}`, 200, "Verify", "k1",
			[]any{wire.VerifyRequest{Message: []byte("hi"), Signature: "kw:v1:c2ln"}}, `{"valid":true}`},
		{"POST", "/v1/keys/k1/encrypt", `{"plaintext":"cGxhaW4=","aad":"YWFk"}`, 200, "Encrypt", "k1",
			[]any{[]byte("plain"), []byte("aad")}, `{"ciphertext":"kw:v1:Y3Q=","version":1}`},
		{"POST", "/v1/keys/k1/encrypt", `{"plaintext":""}`, 200, "Encrypt", "k1",
			[]any{[]byte{}, []byte(nil)}, `{"ciphertext":"kw:v1:Y3Q=","version":1}`},
		{"POST", "/v1/keys/k1/decrypt", `{"ciphertext":"kw:v1:Y3Q=","aad":"YWFk"}`, 200, "Decrypt", "k1",
			[]any{"kw:v1:Y3Q=", []byte("aad")}, `{"plaintext":"cGxhaW4="}`},
		{"POST", "/v1/keys/k1/datakey", ``, 200, "DataKey", "k1", []any{32, []byte(nil)},
			`{"plaintext":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","ciphertext":"kw:v1:ZGs=","version":1}`},
		{"POST", "/v1/keys/k1/datakey", `{"size":16,"aad":"YWFk"}`, 200, "DataKey", "k1", []any{16, []byte("aad")},
			`{"plaintext":"BwcHBwcHBwcHBwcHBwcHBw==","ciphertext":"kw:v1:ZGs=","version":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := e.req(tc.method, tc.path, aliceToken, tc.body)
			r.expect(t, tc.status, "")
			c := e.be.last(t)
			if c.Method != tc.call || c.Name != tc.name {
				t.Fatalf("backend got %s(%q)", c.Method, c.Name)
			}
			if !reflect.DeepEqual(c.Args, tc.args) {
				t.Errorf("args = %#v, want %#v", c.Args, tc.args)
			}
			if tc.want != "" && !jsonEqual(t, r.body, tc.want) {
				t.Errorf("body = %s, want %s", r.body, tc.want)
			}
		})
	}
}

func jsonEqual(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("response %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

// TestKeysAreViews: every route returning a key returns its View, so
// object labels and wrapped blobs never reach a client.
func TestKeysAreViews(t *testing.T) {
	e := newEnv(t)
	want, _ := json.Marshal(testKey("k1").View())
	calls := []struct{ method, path, body, call string }{
		{"POST", "/v1/keys", `{"name":"k1","purpose":"sign","algorithm":"ec-p256","protection":"wrapped","rotation_period":"720h","policy":{"grants":[{"client":"alice","ops":["sign"]}]}}`, "CreateKey"},
		{"GET", "/v1/keys/k1", "", "GetKey"},
		{"POST", "/v1/keys/k1/rotate", "", "Rotate"},
		{"POST", "/v1/keys/k1/rotate", "{}", "Rotate"},
		{"POST", "/v1/keys/k1/settings", `{"min_version":1}`, "UpdateSettings"},
		{"POST", "/v1/keys/k1/versions/1/disable", "", "SetVersionState"},
		{"GET", "/v1/keys", "", "ListKeys"},
	}
	for _, c := range calls {
		r := e.req(c.method, c.path, rootToken, c.body)
		wantStatus := 200
		if c.call == "CreateKey" {
			wantStatus = 201
		}
		r.expect(t, wantStatus, "")
		if got := e.be.last(t).Method; got != c.call {
			t.Errorf("%s %s called %s", c.method, c.path, got)
		}
		for _, leak := range []string{"object_label", "wrapped\":", "SECRET", "public_key"} {
			if strings.Contains(string(r.body), leak) {
				t.Errorf("%s %s leaks %q: %s", c.method, c.path, leak, r.body)
			}
		}
		if c.call == "ListKeys" {
			var l struct{ Keys []json.RawMessage }
			r.json(t, &l)
			if len(l.Keys) != 2 {
				t.Fatalf("list = %s", r.body)
			}
			continue
		}
		if !jsonEqual(t, r.body, string(want)) {
			t.Errorf("%s %s = %s, want %s", c.method, c.path, r.body, want)
		}
	}
	// The create request reached the backend whole.
	for _, c := range e.be.Calls() {
		if c.Method != "CreateKey" {
			continue
		}
		req := c.Args[0].(wire.CreateKeyRequest)
		if req.RotationPeriod != wire.Duration(720*time.Hour) || req.Protection != wire.ProtectionWrapped ||
			len(req.Policy.Grants) != 1 || fmt.Sprint(req.Policy.Grants[0].Ops) != "[sign]" {
			t.Errorf("create request = %+v", req)
		}
	}
}

// TestMACRoutes: mac and mac-verify decode their bodies strictly and pass
// them to the backend.
func TestMACRoutes(t *testing.T) {
	e := newEnv(t)
	r := e.req("POST", "/v1/keys/k1/mac", rootToken, `{"message":"eA=="}`)
	r.expect(t, 200, "")
	if got := e.be.last(t).Method; got != "MAC" || !strings.Contains(string(r.body), `"mac":"kw:v1:bWFj"`) {
		t.Fatalf("mac: %s %s", got, r.body)
	}
	r = e.req("POST", "/v1/keys/k1/mac-verify", rootToken, `{"message":"eA==","mac":"kw:v1:bWFj"}`)
	r.expect(t, 200, "")
	if !strings.Contains(string(r.body), `"valid":true`) {
		t.Fatalf("mac-verify: %s", r.body)
	}
	e.req("POST", "/v1/keys/k1/mac", rootToken, `{"message":"eA==","extra":1}`).expect(t, 400, "unknown_field")
}

// TestEdge: every answer of the API, success or error, carries the edge's
// headers and a request id; a client's well-formed id is kept and lands in
// the log lines written for the request, with the route pattern.
func TestEdge(t *testing.T) {
	e := newEnv(t)
	for _, r := range []response{
		e.req("GET", "/v1/keys/k1", aliceToken, ""),
		e.req("GET", "/v1/keys/k1", "", ""),
		e.req("POST", "/v1/keys/k1/sign", aliceToken, `{"x":1}`),
		e.req("GET", "/healthz", "", ""),
	} {
		for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "X-Frame-Options": "DENY",
			"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"} {
			if got := r.header.Get(k); got != v {
				t.Errorf("%d %s: %s = %q, want %q", r.status, r.code, k, got, v)
			}
		}
		if len(r.header.Get("X-Request-Id")) != 32 {
			t.Errorf("%d %s: X-Request-Id %q", r.status, r.code, r.header.Get("X-Request-Id"))
		}
	}
	r := e.req("GET", "/v1/keys/k1", "wrong-token", "", "X-Request-Id", "trace-4f1c9a77")
	r.expect(t, 401, "unauthenticated")
	if r.header.Get("X-Request-Id") != "trace-4f1c9a77" {
		t.Fatalf("client's request id not kept: %q", r.header.Get("X-Request-Id"))
	}
	logs := e.logs.String()
	var line string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "request_id=trace-4f1c9a77") {
			line = l
		}
	}
	// Admission runs as the /v1 group's middleware, before the route is
	// matched: its lines name the group's pattern.
	if !strings.Contains(line, "request refused") || !strings.Contains(line, "route=/v1 ") || strings.Contains(line, "/v1/keys/k1") {
		t.Fatalf("refusal log line %q: want the request id and the route pattern, not the path\n%s", line, logs)
	}
}
