package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/token"
)

// rawBench measures the token's raw C_SignInit+C_Sign rate for an EC key,
// on dedicated sessions, without keysvc in the way: the baseline that
// `make bench` compares the HTTP API against. Diagnostic; dev mode only.
//
//	keysvc rawbench -dev [-data-dir var] -label kw/bench/v1 [-goroutines 2] [-duration 5s]
//
// It opens (or creates) the dev token, so it needs -dev like serve.
func rawBench(args []string) error {
	fs := flag.NewFlagSet("rawbench", flag.ContinueOnError)
	devMode := fs.Bool("dev", false, "required: rawbench works on the dev-mode token only")
	dataDir := fs.String("data-dir", envOr("KEYWARD_DATA_DIR", "var"), "dev-mode data directory")
	label := fs.String("label", "", "CKA_LABEL of an EC private key in the dev token, e.g. kw/bench/v1")
	goroutines := fs.Int("goroutines", 2, "concurrent sessions")
	dur := fs.Duration("duration", 5*time.Second, "how long to sign")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*devMode {
		return errors.New("rawbench works on the dev-mode token only: run keysvc rawbench -dev -label …")
	}
	if *label == "" {
		return errors.New("rawbench: -label is required")
	}
	module, err := token.FindSoftHSM()
	if err != nil {
		return err
	}
	cfg, err := token.EnsureDevToken(*dataDir, module)
	if err != nil {
		return err
	}
	st, err := token.OpenBoltStore(filepath.Join(*dataDir, "rawbench-guard.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	cfg.PINGuard = token.GuardConfig{Store: st}
	ctx := context.Background()
	tok, err := token.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer tok.Close()
	k, err := tok.Pool().FindKey(ctx, *label)
	if err != nil {
		return err
	}
	digest := sha256.Sum256([]byte("rawbench"))
	var n atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	stop := time.Now().Add(*dur)
	start := time.Now()
	for i := 0; i < *goroutines; i++ {
		sign, closeFn, err := tok.Pool().RawSigner(k)
		if err != nil {
			return err
		}
		defer closeFn()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if _, err := sign(digest[:]); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	fmt.Printf("raw C_Sign: %d goroutines, %.0f ops/s\n", *goroutines, float64(n.Load())/time.Since(start).Seconds())
	return nil
}
