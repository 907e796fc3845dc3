package banking

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyward/keyward/banking/ledger"
)

// BenchmarkTransferInstrumentation is what the metrics add to one USB
// transfer: the request's count and latency, two keysvc calls timed (the
// signature check and the receipt's signature), one ledger commit timed
// and the transfer's count, with the clock reads they take. Compare with
// a transfer's CPU in cmd/banking (docs/PERFORMANCE.md, "Metrics on banking's transfer path").
func BenchmarkTransferInstrumentation(b *testing.B) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			start := time.Now()
			for _, op := range []string{opVerify, opSignBatch} {
				t := time.Now()
				m.kmsLatency.WithLabelValues(op).Observe(time.Since(t).Seconds())
			}
			t := time.Now()
			m.ledgerPost(ledger.KindTransfer, time.Since(t), nil)
			m.transfer(transferUSB, nil)
			m.requests.WithLabelValues("/v1/transfers/usb", "POST", "200").Inc()
			m.latency.WithLabelValues("/v1/transfers/usb").Observe(time.Since(start).Seconds())
		}
	})
}
