package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/api"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
)

// scrape reads /metrics from the server's own metrics listener.
func (e *env) scrape() string {
	e.t.Helper()
	ms := httptest.NewServer(e.srv.MetricsHandler())
	defer ms.Close()
	resp, err := http.Get(ms.URL + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		e.t.Fatalf("metrics = %d %s", resp.StatusCode, b)
	}
	return string(b)
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.be.mu.Lock()
	e.be.stats = keysvc.Stats{PoolInUse: 3, PoolMax: 8, TokenHealthy: true, PINFailures: 2}
	e.be.mu.Unlock()

	e.req("POST", "/v1/keys/k1/sign", aliceToken, `{"digest":"AAAA"}`).expect(t, 200, "")
	e.req("POST", "/v1/keys/k1/sign", aliceToken, `{"digest":"AAAA"}`).expect(t, 200, "")
	e.req("POST", "/v1/keys/k1/sign", aliceToken, `{"digest":"AAAA","x":1}`).expect(t, 400, "unknown_field")
	e.be.setErr("GetKey", wire.ErrKeyNotFound)
	e.req("GET", "/v1/keys/ghost", aliceToken, "").expect(t, 404, "key_not_found")
	e.req("GET", "/v1/keys", aliceToken, "").expect(t, 200, "")

	text := e.scrape()
	for _, want := range []string{
		`keyward_operations_total{op="sign",result="ok"} 2`,
		`keyward_operations_total{op="sign",result="unknown_field"} 1`,
		`keyward_operations_total{op="get",result="key_not_found"} 1`,
		`keyward_operations_total{op="list",result="ok"} 1`,
		`keyward_operation_duration_seconds_bucket{op="sign",le="0.0001"}`,
		`keyward_operation_duration_seconds_bucket{op="sign",le="1"}`,
		`keyward_operation_duration_seconds_count{op="sign"} 3`,
		"keyward_pool_sessions_in_use 3",
		"keyward_pool_sessions_max 8",
		"keyward_token_healthy 1",
		"keyward_pin_failures 2",
		"keyward_pin_locked 0",
		"keyward_scheduler_leader 0",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// Gauges are read at scrape time.
	e.be.mu.Lock()
	e.be.stats.PINLocked, e.be.stats.TokenHealthy, e.be.stats.SchedulerLeader = true, false, true
	e.be.mu.Unlock()
	text = e.scrape()
	if !strings.Contains(text, "keyward_pin_locked 1") || !strings.Contains(text, "keyward_token_healthy 0") || !strings.Contains(text, "keyward_scheduler_leader 1") {
		t.Error("gauges not refreshed at scrape time")
	}
}

// TestMetricsNameNoKeys (issue 12 item 8): keys are customer ids; no key
// name the API was asked about appears in the metrics, and the API
// listener does not serve /metrics at all (with or without a token).
func TestMetricsNameNoKeys(t *testing.T) {
	e := newEnv(t)
	names := []string{"cust-6222020200112233", "k1", "usb-alice"}
	for _, n := range names {
		e.req("GET", "/v1/keys/"+n, aliceToken, "").expect(t, 200, "")
		e.req("POST", "/v1/keys/"+n+"/sign", aliceToken, `{"digest":"AAAA"}`).expect(t, 200, "")
	}
	text := e.scrape()
	for _, n := range names {
		if strings.Contains(text, n) {
			t.Errorf("metrics name key %q", n)
		}
	}
	if strings.Contains(text, `key="`) {
		t.Error("metrics carry a key label")
	}
	for _, tok := range []string{"", aliceToken} {
		if r := e.req("GET", "/metrics", tok, ""); r.status == 200 || strings.Contains(string(r.body), "keyward_") {
			t.Errorf("the API listener serves /metrics (token %q): %d", tok, r.status)
		}
	}
}

func TestMetricsRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	be := newFakeBackend()
	if _, err := api.New(api.Config{Backend: be, Registry: reg}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"keyward_pool_sessions_in_use", "keyward_pool_sessions_max", "keyward_token_healthy", "keyward_pin_failures", "keyward_pin_locked"} {
		if !names[n] {
			t.Errorf("registry lacks %s", n)
		}
	}
	// A second server on the same registry is a configuration error.
	if _, err := api.New(api.Config{Backend: be, Registry: reg}); err == nil {
		t.Error("duplicate registration accepted")
	}
	// Without a registry, a new one with the runtime collectors is used.
	e := newEnv(t, func(c *api.Config) { c.Registry = nil })
	if text := e.scrape(); !strings.Contains(text, "go_goroutines") {
		t.Error("default registry lacks the Go collector")
	}
}

// TestTokenSetInReadyzAndMetrics (issue 15 item 3): each token of a set in
// /readyz's body and in /metrics, named by the operator's name.
func TestTokenSetInReadyzAndMetrics(t *testing.T) {
	e := newEnv(t)
	since := time.Now().Add(-90 * time.Second)
	e.be.mu.Lock()
	e.be.stats = keysvc.Stats{TokenHealthy: true, Tokens: []token.MemberStats{
		{Name: "hsm-a", TokenLabel: "bank-a", Serial: "11", State: token.MemberUp, Since: since},
		{Name: "hsm-b", TokenLabel: "bank-b", Serial: "22", State: token.MemberDown, Since: since, Readmissions: 3},
	}}
	e.be.mu.Unlock()
	r := e.req("GET", "/readyz", "", "")
	var body struct {
		Status string `json:"status"`
		Tokens []struct {
			Name, Label, Serial, State string
			Readmissions               int
		} `json:"tokens"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || r.status != 200 || body.Status != "ready" || len(body.Tokens) != 2 {
		t.Fatalf("readyz = %d %s (%v)", r.status, r.body, err)
	}
	if b := body.Tokens[1]; b.Name != "hsm-b" || b.Label != "bank-b" || b.Serial != "22" || b.State != "down" || b.Readmissions != 3 {
		t.Fatalf("token b in readyz: %+v", b)
	}
	text := e.scrape()
	for _, want := range []string{
		`keyward_token_member_up{token="hsm-a"} 1`,
		`keyward_token_member_up{token="hsm-b"} 0`,
		`keyward_token_member_readmissions_total{token="hsm-b"} 3`,
		`keyward_token_member_state_seconds{token="hsm-a"} 90`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	e.be.mu.Lock()
	e.be.ready = fmt.Errorf("pool: %w", wire.ErrTokenUnavailable)
	e.be.mu.Unlock()
	r = e.req("GET", "/readyz", "", "")
	r.expect(t, 503, "token_unavailable")
	if !strings.Contains(string(r.body), `"tokens"`) {
		t.Fatalf("503 readyz lacks the tokens: %s", r.body)
	}
}
