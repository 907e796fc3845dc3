package softhsmtests

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

var (
	benchMu    sync.Mutex
	benchRates = map[string][2]float64{} // "g=2" → raw, pool ops/s of the last (largest) run
)

// printBenchSummary prints the pool/raw table when the benchmark ran.
func printBenchSummary() {
	benchMu.Lock()
	defer benchMu.Unlock()
	if len(benchRates) == 0 {
		return
	}
	var gs []string
	for g := range benchRates {
		gs = append(gs, g)
	}
	sort.Slice(gs, func(i, j int) bool { return len(gs[i]) < len(gs[j]) || len(gs[i]) == len(gs[j]) && gs[i] < gs[j] })
	fmt.Fprintln(os.Stderr, "\nECDSA P-256 sign on SoftHSM, same token, interleaved rounds in one run:")
	fmt.Fprintf(os.Stderr, "%-8s %12s %12s %10s\n", "", "raw ops/s", "pool ops/s", "pool/raw")
	for _, g := range gs {
		r := benchRates[g]
		fmt.Fprintf(os.Stderr, "%-8s %12.0f %12.0f %10.2f\n", g, r[0], r[1], r[1]/r[0])
	}
}

// BenchmarkSignECDSAP256 compares signing through the pool (the full path:
// session lending, handle check, C_SignInit, C_Sign, r‖s→DER) with a raw
// C_SignInit+C_Sign loop on dedicated sessions, at 1, 2 and 64 goroutines.
// The two alternate in ten rounds of b.N/10 operations each, so drift in the
// machine's speed (VM steal, frequency) hits both alike; the metrics are
// raw-ops/s, pool-ops/s and pool/raw.
func BenchmarkSignECDSAP256(b *testing.B) {
	env := mustNewToken(b, token.KindHSM)
	ctx := context.Background()
	k, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("benchmark"))
	for _, g := range []int{1, 2, 64} {
		name := fmt.Sprintf("g=%d", g)
		b.Run(name, func(b *testing.B) {
			raw := make([]func() error, g)
			for i := range raw {
				sign, closeFn, err := env.pool.RawSigner(k)
				if err != nil {
					b.Fatal(err)
				}
				defer closeFn()
				raw[i] = func() error { _, err := sign(digest[:]); return err }
			}
			pool := func() error { _, err := env.pool.Sign(ctx, k, digest[:], crypto.SHA256, nil); return err }
			const rounds = 10
			chunk := max(b.N/rounds, g)
			var tRaw, tPool time.Duration
			b.ResetTimer()
			for r := 0; r < rounds; r++ {
				tRaw += runParallel(b, chunk, g, func(i int) func() error { return raw[i] })
				tPool += runParallel(b, chunk, g, func(int) func() error { return pool })
			}
			b.StopTimer()
			rawRate := float64(rounds*chunk) / tRaw.Seconds()
			poolRate := float64(rounds*chunk) / tPool.Seconds()
			b.ReportMetric(rawRate, "raw-ops/s")
			b.ReportMetric(poolRate, "pool-ops/s")
			b.ReportMetric(poolRate/rawRate, "pool/raw")
			benchMu.Lock()
			benchRates[name] = [2]float64{rawRate, poolRate}
			benchMu.Unlock()
		})
	}
}

// runParallel runs n operations split over g goroutines (goroutine i uses
// op(i)) and returns the wall time they took.
func runParallel(b *testing.B, n, g int, op func(i int) func() error) time.Duration {
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	start := time.Now()
	for i := 0; i < g; i++ {
		m := n / g
		if i < n%g {
			m++
		}
		wg.Add(1)
		go func(f func() error, m int) {
			defer wg.Done()
			for j := 0; j < m; j++ {
				if err := f(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}(op(i), m)
	}
	wg.Wait()
	d := time.Since(start)
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return d
}
