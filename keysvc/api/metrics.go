package api

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keyward/keyward/keysvc"
)

// The metrics name no keys. Key names are customer ids (one wrapped key
// per customer), and per-key activity is who banks when: operations are
// counted by operation and result only. Per-key detail lives in the audit
// log, which needs the audit key's trust, not a scrape. The metrics are
// served on their own listener (Server.MetricsHandler), never on the API's.

// metrics are the Prometheus collectors of one Server (R-AV-2).
type metrics struct {
	ops      *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer, b Backend) (*metrics, error) {
	m := &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_operations_total",
			Help: "API operations by operation and result (\"ok\" or the error code).",
		}, []string{"op", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keyward_operation_duration_seconds",
			Help: "API operation latency, from admission to response.",
			// 0.1 ms (a cached verify) to 1 s (an RSA-3072 key generation
			// on a slow token); slower is counted in +Inf.
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"op"}),
	}
	// Gauges read Backend.Stats at scrape time, so they are never stale.
	gauge := func(name, help string, f func(keysvc.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(b.Stats()) })
	}
	cs := []prometheus.Collector{
		m.ops, m.duration,
		gauge("keyward_pool_sessions_in_use", "PKCS#11 sessions lent right now.",
			func(s keysvc.Stats) float64 { return float64(s.PoolInUse) }),
		gauge("keyward_pool_sessions_max", "PKCS#11 session pool bound.",
			func(s keysvc.Stats) float64 { return float64(s.PoolMax) }),
		gauge("keyward_token_healthy", "1 when the token is connected and logged in.",
			func(s keysvc.Stats) float64 { return boolFloat(s.TokenHealthy) }),
		gauge("keyward_pin_failures", "Consecutive failed user-PIN attempts (PIN guard).",
			func(s keysvc.Stats) float64 { return float64(s.PINFailures) }),
		gauge("keyward_pin_locked", "1 when the PIN guard has locked the token.",
			func(s keysvc.Stats) float64 { return boolFloat(s.PINLocked) }),
		gauge("keyward_token_keys_missing", "Key versions kept in the token (protection hsm) whose token object was missing at start.",
			func(s keysvc.Stats) float64 { return float64(s.MissingTokenKeys) }),
		newTokenSetCollector(b),
		gauge("keyward_kek_epoch", "The key-encryption-key epoch in service (issue 15).",
			func(s keysvc.Stats) float64 { return float64(s.KEKEpoch) }),
		gauge("keyward_kek_rotation_active", "1 while a KEK rotation re-wraps blobs or destroys the old KEKs.",
			func(s keysvc.Stats) float64 { return boolFloat(s.KEKRotating) }),
		gauge("keyward_kek_rotation_done", "Keys re-wrapped by this process in the running (or last) KEK rotation.",
			func(s keysvc.Stats) float64 { return float64(s.KEKRotationDone) }),
		gauge("keyward_scheduler_leader", "1 while this node runs the scheduler (rotation, destruction, checkpoints, the confirmation sweep): the elected node of a cluster, or a single node running it.",
			func(s keysvc.Stats) float64 { return boolFloat(s.SchedulerLeader) }),
		gauge("keyward_kek_rotation_total", "Keys the running (or last) KEK rotation has to re-wrap: done plus those left at its last pass.",
			func(s keysvc.Stats) float64 { return float64(s.KEKRotationTotal) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// observe records one finished operation.
func (m *metrics) observe(op, result string, seconds float64) {
	m.ops.WithLabelValues(op, result).Inc()
	m.duration.WithLabelValues(op).Observe(seconds)
}

// defaultRegistry is a fresh registry with the Go runtime and process
// collectors, used when Config.Registry is nil.
func defaultRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}
