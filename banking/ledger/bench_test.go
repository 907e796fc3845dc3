package ledger_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/ledger"
)

// BenchmarkTransferParallel measures durable transfers per second between
// random pairs of 1,000 accounts, with G concurrent callers sharing group
// commits (db.Batch, MaxBatchSize=batch, MaxBatchDelay 2 ms; batch=0 is
// the default, 64). Idempotency
// keys look like the HTTP layer's (payer prefix, random part), so their
// records land on random pages as real ones do. batch=1 turns group commit
// off for comparison. Each sub-benchmark ends with Verify (not timed).
func BenchmarkTransferParallel(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	cases := []struct {
		goroutines, batch int
		delay             time.Duration
	}{
		{1, 0, 0},
		{64, 64, 2 * time.Millisecond},
		{256, 0, 0}, // the defaults: MaxBatchSize 64, 2 ms
		{256, 256, 2 * time.Millisecond},
		{1024, 1024, 2 * time.Millisecond},
		{64, 1, 0},
	}
	for _, c := range cases {
		name := fmt.Sprintf("G=%d/batch=%d", c.goroutines, c.batch)
		b.Run(name, func(b *testing.B) {
			l, _ := newLedger(b, ledger.Options{MaxBatchSize: c.batch, MaxBatchDelay: c.delay})
			const nAcc = 1000
			lim := &ledger.Limits{PerTransaction: 1_000_000_00, Daily: 5_000_000_00}
			ids := make([]string, nAcc)
			var wg sync.WaitGroup
			for w := range 64 {
				wg.Go(func() {
					for i := w; i < nAcc; i += 64 {
						ids[i] = mustAccount(b, l, fmt.Sprintf("bench-%d", i), 1_000_000_00, lim)
					}
				})
			}
			wg.Wait()
			ctx := context.Background()
			var n, seed atomic.Uint64
			run := func(r uint64) {
				i := n.Add(1)
				r = r*6364136223846793005 + i
				from := ids[r%nAcc]
				to := ids[(r>>32)%nAcc]
				if from == to {
					to = ids[(r%nAcc+1)%nAcc]
				}
				_, err := l.Transfer(ctx, ledger.TransferRequest{IdempotencyKey: fmt.Sprintf("%s/%016x", from, i*0x9E3779B97F4A7C15), From: from, To: to,
					Amount: int64(1 + i%500), Currency: "CNY", Memo: "bench"})
				if err != nil {
					b.Error(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			if c.goroutines == 1 {
				for b.Loop() {
					run(seed.Add(1))
				}
			} else {
				b.SetParallelism((c.goroutines + procs - 1) / procs)
				b.RunParallel(func(pb *testing.PB) {
					r := seed.Add(1)
					for pb.Next() {
						r++
						run(r)
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "transfers/s")
			b.StopTimer()
			rep, err := l.Verify(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if rep.ByKind[ledger.KindTransfer] != n.Load() {
				b.Fatalf("%d transfers made, journal holds %d", n.Load(), rep.ByKind[ledger.KindTransfer])
			}
		})
	}
}
