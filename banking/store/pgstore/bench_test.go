package pgstore_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/pglocal"
	"github.com/keyward/keyward/banking/store/pgstore"
	"github.com/keyward/keyward/banking/store/pgstore/pgtest"
	"github.com/keyward/keyward/banking/store/storetest"
)

// The benchmarks run on a primary with a synchronous standby (what the
// bank runs; every COMMIT waits for the standby's flush), started once per
// test binary and stopped by TestMain.
var bench struct {
	once sync.Once
	c    *pglocal.Cluster
	dir  string
	err  error
	n    atomic.Int64
}

func stopBench() {
	if bench.c != nil {
		bench.c.Stop()
		os.RemoveAll(bench.dir)
	}
}

func benchDSN(b *testing.B) string {
	pgtest.Require(b)
	bench.once.Do(func() {
		if bench.dir, bench.err = os.MkdirTemp("", "kwbn"); bench.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		bench.c, bench.err = pglocal.Start(ctx, pglocal.Options{Dir: bench.dir, Standby: true})
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	name := fmt.Sprintf("bench%d", bench.n.Add(1))
	if err := bench.c.CreateDatabase(context.Background(), name); err != nil {
		b.Fatal(err)
	}
	return bench.c.DSN(name)
}

// BenchmarkLedgerTxn: storetest.BenchLedger (a transfer-shaped
// transaction through Update and Batch, 1 and 64 goroutines) on a primary
// with a synchronous standby; storetest's BenchmarkBoltLedger is the same on
// bbolt.
func BenchmarkLedgerTxn(b *testing.B) {
	storetest.BenchLedger(b, func(b *testing.B) store.DB {
		return open(b, benchDSN(b), func(c *pgstore.Config) { c.MaxConns = 32 })
	})
}
