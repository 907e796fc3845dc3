package pgstore_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/pglocal"
	"github.com/keyward/keyward/banking/store/pgstore"
	"github.com/keyward/keyward/banking/store/pgstore/pgtest"
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

const benchAccounts = 10000

var (
	bAccounts   = []byte("accounts")
	bPostings   = []byte("postings")
	bIdem       = []byte("idempotency")
	bLimits     = []byte("limits")
	bStatements = []byte("statements")
)

func acctKey(i int) []byte { return []byte(fmt.Sprintf("acct-%06d", i)) }

func setupLedger(b *testing.B) *pgstore.DB {
	db := open(b, benchDSN(b), func(c *pgstore.Config) { c.MaxConns = 32 })
	if err := db.Ensure(bAccounts, bPostings, bIdem, bLimits, bStatements); err != nil {
		b.Fatal(err)
	}
	for lo := 0; lo < benchAccounts; lo += 1000 {
		err := db.Update(func(tx store.Tx) error {
			a, l := tx.Bucket(bAccounts), tx.Bucket(bLimits)
			for i := lo; i < lo+1000; i++ {
				a.Put(acctKey(i), binary.BigEndian.AppendUint64(nil, 1_000_000))
				l.Put(acctKey(i), []byte(`{"daily":100000}`))
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return db
}

var idemSeq atomic.Int64

// ledgerTxn is shaped like a transfer: 4 gets (both accounts, the
// idempotency key, a limit), one NextSequence (the posting number), 6 puts
// (both balances, the posting, the idempotency record, two statement
// lines).
func ledgerTxn(tx store.Tx) error {
	from, to := rand.IntN(benchAccounts), rand.IntN(benchAccounts)
	for to == from {
		to = rand.IntN(benchAccounts)
	}
	idem := []byte(fmt.Sprintf("idem-%012d", idemSeq.Add(1)))
	acc, post, id, lim, st := tx.Bucket(bAccounts), tx.Bucket(bPostings), tx.Bucket(bIdem), tx.Bucket(bLimits), tx.Bucket(bStatements)
	if id.Get(idem) != nil {
		return nil
	}
	_ = lim.Get(acctKey(from))
	fb, tb := acc.Get(acctKey(from)), acc.Get(acctKey(to))
	f, t := binary.BigEndian.Uint64(fb), binary.BigEndian.Uint64(tb)
	seq, err := post.NextSequence()
	if err != nil {
		return err
	}
	sk := binary.BigEndian.AppendUint64(nil, seq)
	acc.Put(acctKey(from), binary.BigEndian.AppendUint64(nil, f-1))
	acc.Put(acctKey(to), binary.BigEndian.AppendUint64(nil, t+1))
	post.Put(sk, []byte(fmt.Sprintf(`{"from":%d,"to":%d,"amount":1}`, from, to)))
	id.Put(idem, sk)
	st.Put(append(acctKey(from), sk...), []byte(`{"amount":-1}`))
	return st.Put(append(acctKey(to), sk...), []byte(`{"amount":1}`))
}

func BenchmarkLedgerTxn(b *testing.B) {
	for _, bc := range []struct {
		name  string
		batch bool
		conc  int
	}{{"Update/1", false, 1}, {"Update/64", false, 64}, {"Batch/1", true, 1}, {"Batch/64", true, 64}} {
		b.Run(bc.name, func(b *testing.B) {
			db := setupLedger(b)
			run := db.Update
			if bc.batch {
				run = db.Batch
			}
			var failed atomic.Int64
			b.SetParallelism(max(1, bc.conc/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			start := time.Now()
			if bc.conc == 1 {
				for range b.N {
					if err := run(ledgerTxn); err != nil {
						failed.Add(1)
					}
				}
			} else {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := run(ledgerTxn); err != nil {
							failed.Add(1)
						}
					}
				})
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "txn/s")
			b.ReportMetric(float64(failed.Load()), "failed")
			s := db.Stats()
			b.ReportMetric(float64(s.Retries)/float64(b.N), "retries/txn")
			// Money is conserved: the sum of balances is unchanged.
			var sum uint64
			db.View(func(tx store.Tx) error {
				return tx.Bucket(bAccounts).ForEach(func(k, v []byte) error { sum += binary.BigEndian.Uint64(v); return nil })
			})
			if sum != benchAccounts*1_000_000 {
				b.Fatalf("sum of balances %d, want %d", sum, benchAccounts*1_000_000)
			}
		})
	}
}
