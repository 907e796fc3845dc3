package api_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/api"
)

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.be.mu.Lock()
	e.be.stats = keysvc.Stats{PoolInUse: 3, PoolMax: 8, TokenHealthy: true, PINFailures: 2}
	e.be.mu.Unlock()

	e.req("POST", "/v1/keys/k1/sign", aliceToken, `{"digest":"AAAA"}`).expect(t, 200, "")
	e.req("POST", "/v1/keys/k1/sign", aliceToken, `{"digest":"AAAA"}`).expect(t, 200, "")
	e.req("POST", "/v1/keys/k1/sign", aliceToken, `{"digest":"AAAA","x":1}`).expect(t, 400, "unknown_field")
	e.be.setErr("GetKey", keysvc.ErrKeyNotFound)
	e.req("GET", "/v1/keys/ghost", aliceToken, "").expect(t, 404, "key_not_found")
	e.req("GET", "/v1/keys", aliceToken, "").expect(t, 200, "")

	r := e.req("GET", "/metrics", "", "")
	if r.status != 200 {
		t.Fatalf("metrics = %d", r.status)
	}
	text := string(r.body)
	for _, want := range []string{
		`keyward_operations_total{key="k1",op="sign",result="ok"} 2`,
		`keyward_operations_total{key="k1",op="sign",result="unknown_field"} 1`,
		`keyward_operations_total{key="none",op="get",result="key_not_found"} 1`,
		`keyward_operations_total{key="none",op="list",result="ok"} 1`,
		`keyward_operation_duration_seconds_bucket{op="sign",le="0.0001"}`,
		`keyward_operation_duration_seconds_bucket{op="sign",le="1"}`,
		`keyward_operation_duration_seconds_count{op="sign"} 3`,
		"keyward_pool_sessions_in_use 3",
		"keyward_pool_sessions_max 8",
		"keyward_token_healthy 1",
		"keyward_pin_failures 2",
		"keyward_pin_locked 0",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(text, "ghost") {
		t.Error("a name that is not a key became a label")
	}

	// Gauges are read at scrape time.
	e.be.mu.Lock()
	e.be.stats.PINLocked, e.be.stats.TokenHealthy = true, false
	e.be.mu.Unlock()
	text = string(e.req("GET", "/metrics", "", "").body)
	if !strings.Contains(text, "keyward_pin_locked 1") || !strings.Contains(text, "keyward_token_healthy 0") {
		t.Error("gauges not refreshed at scrape time")
	}
}

func TestMetricsKeyLabelCap(t *testing.T) {
	e := newEnv(t)
	for i := range 1002 {
		e.req("GET", fmt.Sprintf("/v1/keys/k%d", i), aliceToken, "").expect(t, 200, "")
	}
	e.req("GET", "/v1/keys/k5", aliceToken, "").expect(t, 200, "")
	text := string(e.req("GET", "/metrics", "", "").body)
	for _, want := range []string{
		`keyward_operations_total{key="k999",op="get",result="ok"} 1`,
		`keyward_operations_total{key="k5",op="get",result="ok"} 2`,
		`keyward_operations_total{key="other",op="get",result="ok"} 2`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(text, `key="k1000"`) {
		t.Error("label beyond the cap")
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
	if text := string(e.req("GET", "/metrics", "", "").body); !strings.Contains(text, "go_goroutines") {
		t.Error("default registry lacks the Go collector")
	}
}
