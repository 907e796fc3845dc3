package etcdstore_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/etcdstore"
	"github.com/keyward/keyward/keysvc/etcdstore/etcdlocal"
	"github.com/keyward/keyward/keysvc/storetest"
)

// BenchmarkAuditAppend measures the etcd audit append (Audit: the record
// group-committed into the node's inbox by each Store's flusher) on a real
// 3-member etcdlocal cluster with mutual TLS on loopback: 1, 16 and 64
// concurrent appenders spread over 1 Store or 3 Stores (three keysvc
// nodes; one of them, elected, chains every node's inbox). It reports
// appends/s (acknowledged: durable in etcd), chained/s (b.N over the time
// until SyncAudit saw all of them chained) and the chaining lag of the
// first Store's appends (inbox commit → chained, ChainLag) in ms. Run with
//
//	go test -run '^$' -bench AuditAppend -benchtime 2000x ./keysvc/etcdstore
func BenchmarkAuditAppend(b *testing.B) {
	c := cluster(b)
	for _, stores := range []int{1, 3} {
		for _, appenders := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("stores=%d/appenders=%d", stores, appenders), func(b *testing.B) {
				benchAppend(b, c, stores, appenders, 0)
			})
		}
	}
}

// BenchmarkAuditAppendCleanup is BenchmarkAuditAppend's 3 Stores with 64
// appenders while the sequencer deletes chained inbox entries as it goes
// (keep 100 ms instead of a minute): the steady state's clean-up cost.
// Run it long enough for several clean-up rounds (one a second):
//
//	go test -run '^$' -bench AuditAppendCleanup -benchtime 20000x ./keysvc/etcdstore
func BenchmarkAuditAppendCleanup(b *testing.B) {
	c := cluster(b)
	for _, keep := range []time.Duration{0, 100 * time.Millisecond} {
		b.Run(fmt.Sprintf("stores=3/appenders=64/keep=%v", keep), func(b *testing.B) {
			benchAppend(b, c, 3, 64, keep)
		})
	}
}

// benchAppend runs b.N appends from appenders goroutines over stores
// Stores; keep > 0 shortens the inbox clean-up's keep time.
func benchAppend(b *testing.B, c *etcdlocal.Cluster, stores, appenders int, keep time.Duration) {
	st := nodes(b, c, stores, 0)
	if keep > 0 {
		for _, s := range st {
			etcdstore.SetInboxKeep(s, keep)
		}
	}
	if err := st[0].Audit(storetest.Rec("sign", "warm-up")); err != nil {
		b.Fatal(err)
	}
	storetest.Sync(b, st[0])
	for _, s := range st {
		s.ResetChainLag()
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for a := range appenders {
		s := st[a%len(st)]
		wg.Add(1)
		go func(s *etcdstore.Store) {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if err := s.Audit(storetest.Rec("sign", "k")); err != nil {
					b.Error(err)
					return
				}
			}
		}(s)
	}
	wg.Wait()
	acked := time.Since(start)
	storetest.Sync(b, st[0])
	chained := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/acked.Seconds(), "appends/s")
	b.ReportMetric(float64(b.N)/chained.Seconds(), "chained/s")
	if n, p50, p99, _ := st[0].ChainLag(); n > 0 {
		b.ReportMetric(float64(p50.Microseconds())/1000, "lag-p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "lag-p99-ms")
	}
	if keep > 0 {
		var deleted int64
		for _, s := range st {
			deleted += etcdstore.InboxDeleted(s)
		}
		b.ReportMetric(float64(deleted), "inbox-deleted")
	}
}
