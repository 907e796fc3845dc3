package softhsmtests

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

var (
	benchMu    sync.Mutex
	benchRates = map[string]float64{} // "pool/g=2" → ops/s of the last (largest) run
)

func recordRate(b *testing.B, name string) {
	if s := b.Elapsed().Seconds(); s > 0 {
		benchMu.Lock()
		benchRates[name] = float64(b.N) / s
		benchMu.Unlock()
		b.ReportMetric(float64(b.N)/s, "ops/s")
	}
}

// printBenchSummary prints pool/raw ratios when both halves ran.
func printBenchSummary() {
	benchMu.Lock()
	defer benchMu.Unlock()
	var gs []string
	for name := range benchRates {
		if g, ok := strings.CutPrefix(name, "pool/"); ok {
			if _, ok := benchRates["raw/"+g]; ok {
				gs = append(gs, g)
			}
		}
	}
	if len(gs) == 0 {
		return
	}
	sort.Slice(gs, func(i, j int) bool { return len(gs[i]) < len(gs[j]) || len(gs[i]) == len(gs[j]) && gs[i] < gs[j] })
	fmt.Fprintln(os.Stderr, "\nECDSA P-256 sign on SoftHSM, same token, same run:")
	fmt.Fprintf(os.Stderr, "%-8s %12s %12s %10s\n", "", "raw ops/s", "pool ops/s", "pool/raw")
	for _, g := range gs {
		raw, pool := benchRates["raw/"+g], benchRates["pool/"+g]
		fmt.Fprintf(os.Stderr, "%-8s %12.0f %12.0f %10.2f\n", g, raw, pool, pool/raw)
	}
}

// BenchmarkSignECDSAP256 compares signing through the pool (the full path:
// session lending, handle check, C_SignInit, C_Sign, r‖s→DER) with a raw
// C_SignInit+C_Sign loop on dedicated sessions, at 1, 2 and 64 goroutines.
func BenchmarkSignECDSAP256(b *testing.B) {
	env := mustNewToken(b, token.KindHSM)
	ctx := context.Background()
	k, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("benchmark"))
	for _, g := range []int{1, 2, 64} {
		b.Run(fmt.Sprintf("raw/g=%d", g), func(b *testing.B) {
			runParallel(b, g, func() (func() error, func()) {
				sign, closeFn, err := env.pool.RawSigner(k)
				if err != nil {
					b.Fatal(err)
				}
				return func() error { _, err := sign(digest[:]); return err }, closeFn
			})
			recordRate(b, fmt.Sprintf("raw/g=%d", g))
		})
		b.Run(fmt.Sprintf("pool/g=%d", g), func(b *testing.B) {
			runParallel(b, g, func() (func() error, func()) {
				return func() error { _, err := env.pool.Sign(ctx, k, digest[:], crypto.SHA256, nil); return err }, func() {}
			})
			recordRate(b, fmt.Sprintf("pool/g=%d", g))
		})
	}
}

// runParallel runs b.N operations split over g goroutines; setup makes each
// goroutine's operation (and its cleanup) before the timer starts.
func runParallel(b *testing.B, g int, setup func() (op func() error, done func())) {
	ops := make([]func() error, g)
	dones := make([]func(), g)
	for i := range ops {
		ops[i], dones[i] = setup()
	}
	defer func() {
		for _, d := range dones {
			d()
		}
	}()
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	b.ResetTimer()
	for i := 0; i < g; i++ {
		n := b.N / g
		if i < b.N%g {
			n++
		}
		wg.Add(1)
		go func(op func() error, n int) {
			defer wg.Done()
			for j := 0; j < n; j++ {
				if err := op(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}(ops[i], n)
	}
	wg.Wait()
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
}
