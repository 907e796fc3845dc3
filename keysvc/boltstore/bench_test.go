package boltstore_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
)

func benchRecord() *audit.Record {
	return &audit.Record{Time: time.Now(), Client: "payments", Key: "payments-sign", Version: 3, Op: "sign",
		Result: "ok", RequestDigest: audit.DigestScheme + ":9f86d081884c7d659a2feb1b6e8e4c4a2b3f5a0b9e0c7a1f3e2d4c5b6a798877"}
}

// BenchmarkAuditAppend measures group-committed appends (Audit) from many
// concurrent signers. signers=1 is one caller appending in a loop: each
// append waits for MaxBatchDelay. batch=1 turns group commit off (one
// fsync per record) for comparison.
func BenchmarkAuditAppend(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	cases := []struct {
		name    string
		opts    boltstore.Options
		signers int // 1: a plain loop; otherwise goroutines of RunParallel (rounded up to GOMAXPROCS)
	}{
		{"signers=1", boltstore.Options{}, 1},
		{"signers=64", boltstore.Options{}, 64},
		{"signers=256", boltstore.Options{}, 256},
		{"signers=1024", boltstore.Options{}, 1024},
		{"batch=1/signers=256", boltstore.Options{MaxBatchSize: 1}, 256},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s, _ := openStore(b, c.opts)
			b.ReportAllocs()
			b.ResetTimer()
			if c.signers == 1 {
				for b.Loop() {
					if err := s.Audit(benchRecord()); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism((c.signers + procs - 1) / procs)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := s.Audit(benchRecord()); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

// BenchmarkUpdateKey measures a key change with its audit record: one
// write transaction and one fsync each (no group commit).
func BenchmarkUpdateKey(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		s, _ := openStore(b, boltstore.Options{})
		if err := s.CreateKey(testKey("k"), nil); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			_, err := s.UpdateKey("k", func(k *keysvc.Key) error {
				k.Primary = k.Primary%2 + 1
				return nil
			}, benchRecord())
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
	})
	b.Run("parallel/keys=64", func(b *testing.B) {
		s, _ := openStore(b, boltstore.Options{})
		for i := range 64 {
			if err := s.CreateKey(testKey(fmt.Sprint("k", i)), nil); err != nil {
				b.Fatal(err)
			}
		}
		b.SetParallelism(8)
		b.ReportAllocs()
		b.ResetTimer()
		var next = make(chan int, 64)
		for i := range 64 {
			next <- i
		}
		b.RunParallel(func(pb *testing.PB) {
			i := <-next
			name := fmt.Sprint("k", i)
			for pb.Next() {
				_, err := s.UpdateKey(name, func(k *keysvc.Key) error {
					k.Primary = k.Primary%2 + 1
					return nil
				}, benchRecord())
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
	})
}
