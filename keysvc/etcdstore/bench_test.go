package etcdstore_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keyward/keyward/keysvc/etcdstore"
	"github.com/keyward/keyward/keysvc/storetest"
)

// BenchmarkAuditAppend measures the etcd audit append (Audit, group-
// committed by each Store's flusher) on a real 3-member etcdlocal cluster
// with mutual TLS on loopback: 1, 16 and 64 concurrent appenders spread
// over 1 Store or 3 Stores (three keysvc nodes, whose batches conflict on
// the shared head and are resealed). Run with
//
//	go test -run '^$' -bench AuditAppend -benchtime 2000x ./keysvc/etcdstore
func BenchmarkAuditAppend(b *testing.B) {
	c := cluster(b)
	for _, stores := range []int{1, 3} {
		for _, appenders := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("stores=%d/appenders=%d", stores, appenders), func(b *testing.B) {
				st := nodes(b, c, stores, 0)
				if err := st[0].Audit(storetest.Rec("sign", "warm-up")); err != nil {
					b.Fatal(err)
				}
				var left atomic.Int64
				left.Store(int64(b.N))
				b.ResetTimer()
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
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
			})
		}
	}
}
