package storetest

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/store"
)

// BenchAccounts is how many accounts BenchLedger's transfers pick from.
const BenchAccounts = 10000

var (
	bAccounts   = []byte("accounts")
	bPostings   = []byte("postings")
	bIdem       = []byte("idempotency")
	bLimits     = []byte("limits")
	bStatements = []byte("statements")
)

func acctKey(i int) []byte { return []byte(fmt.Sprintf("acct-%06d", i)) }

// BenchLedger measures a transfer-shaped transaction on stores made by
// open (each sub-benchmark gets its own): 4 gets (both accounts, the
// idempotency key, a limit), one NextSequence (the posting number) and 6
// puts (both balances, the posting, the idempotency record, two statement
// lines), through Update and Batch, from 1 and 64 goroutines. It reports
// txn/s, failed transactions, and checks that the sum of balances is
// unchanged. The same function on every backend gives figures side by
// side.
func BenchLedger(b *testing.B, open func(b *testing.B) store.DB) {
	for _, bc := range []struct {
		name  string
		batch bool
		conc  int
	}{{"Update/1", false, 1}, {"Update/64", false, 64}, {"Batch/1", true, 1}, {"Batch/64", true, 64}} {
		b.Run(bc.name, func(b *testing.B) {
			db := open(b)
			setupLedger(b, db)
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
			var sum uint64
			err := db.View(func(tx store.Tx) error {
				return tx.Bucket(bAccounts).ForEach(func(k, v []byte) error { sum += binary.BigEndian.Uint64(v); return nil })
			})
			if err != nil || sum != BenchAccounts*1_000_000 {
				b.Fatalf("sum of balances %d (%v), want %d", sum, err, BenchAccounts*1_000_000)
			}
		})
	}
}

func setupLedger(b *testing.B, db store.DB) {
	if err := db.Ensure(bAccounts, bPostings, bIdem, bLimits, bStatements); err != nil {
		b.Fatal(err)
	}
	for lo := 0; lo < BenchAccounts; lo += 1000 {
		err := db.Update(func(tx store.Tx) error {
			a, l := tx.Bucket(bAccounts), tx.Bucket(bLimits)
			for i := lo; i < lo+1000; i++ {
				if err := a.Put(acctKey(i), binary.BigEndian.AppendUint64(nil, 1_000_000)); err != nil {
					return err
				}
				if err := l.Put(acctKey(i), []byte(`{"daily":100000}`)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

var idemSeq atomic.Int64

func ledgerTxn(tx store.Tx) error {
	from, to := rand.IntN(BenchAccounts), rand.IntN(BenchAccounts)
	for to == from {
		to = rand.IntN(BenchAccounts)
	}
	idem := []byte(fmt.Sprintf("idem-%012d", idemSeq.Add(1)))
	acc, post, id, lim, st := tx.Bucket(bAccounts), tx.Bucket(bPostings), tx.Bucket(bIdem), tx.Bucket(bLimits), tx.Bucket(bStatements)
	if acc == nil || post == nil || id == nil || lim == nil || st == nil {
		return store.ErrBucketMissing
	}
	if id.Get(idem) != nil {
		return nil
	}
	_ = lim.Get(acctKey(from))
	fb, tb := acc.Get(acctKey(from)), acc.Get(acctKey(to))
	if len(fb) != 8 || len(tb) != 8 {
		return fmt.Errorf("storetest: account record missing")
	}
	f, t := binary.BigEndian.Uint64(fb), binary.BigEndian.Uint64(tb)
	seq, err := post.NextSequence()
	if err != nil {
		return err
	}
	sk := binary.BigEndian.AppendUint64(nil, seq)
	for _, w := range []struct {
		b    store.Bucket
		k, v []byte
	}{
		{acc, acctKey(from), binary.BigEndian.AppendUint64(nil, f-1)},
		{acc, acctKey(to), binary.BigEndian.AppendUint64(nil, t+1)},
		{post, sk, []byte(fmt.Sprintf(`{"from":%d,"to":%d,"amount":1}`, from, to))},
		{id, idem, sk},
		{st, append(acctKey(from), sk...), []byte(`{"amount":-1}`)},
		{st, append(acctKey(to), sk...), []byte(`{"amount":1}`)},
	} {
		if err := w.b.Put(w.k, w.v); err != nil {
			return err
		}
	}
	return nil
}
