package bankaudit_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/bankaudit"
	"github.com/keyward/keyward/banking/store/dbtest"
	"github.com/keyward/keyward/banking/store/pgstore"
)

// BenchmarkAppendTwoNodes: two Trails on one store (two banking nodes on
// one PostgreSQL under KEYWARD_BANKING_STORE=postgres; on bbolt one file
// in one process), appending from parallel goroutines spread over both.
// Reports appends/s; every append is durable (bbolt with fsync).
func BenchmarkAppendTwoNodes(b *testing.B) {
	h := dbtest.New(b)
	h.Sync = true
	dbs := h.Nodes(2)
	trails := []*bankaudit.Trail{openTrail(b, dbs[0], nil), openTrail(b, dbs[1], nil)}
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	t0 := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		tr := trails[n.Add(1)%2]
		for pb.Next() {
			if _, err := tr.Append(bankaudit.Event{Actor: "customer:c1", Op: "login", Result: "ok", Source: "192.0.2.1"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "appends/s")
	var conflicts, batches uint64
	for _, db := range dbs {
		if pg, ok := db.(*pgstore.DB); ok {
			s := pg.Stats()
			conflicts, batches = conflicts+s.Conflicts, batches+s.Batches
		}
	}
	if batches > 0 { // PostgreSQL: serialisation conflicts between the two nodes, re-run by the store
		b.ReportMetric(float64(conflicts)/float64(b.N), "conflicts/append")
		b.ReportMetric(float64(b.N)/float64(batches), "appends/commit")
	}
}
