package banking

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/banking/store"
)

// ReadyTimeout bounds each readiness check, so a hung database or keysvc
// answers the probe 503 in time instead of hanging it.
const ReadyTimeout = 2 * time.Second

// Readiness checks, the names /readyz reports.
const (
	CheckStore  = "store"
	CheckKeysvc = "keysvc"
)

// bucketReady is the tiny bucket the store check reads (it stays empty).
var bucketReady = []byte("bank-readyz")

// NotReadyError says which readiness check failed and why. Its text holds
// no secret: the store's and keysvc client's errors name hosts and
// causes, never a password or token.
type NotReadyError struct {
	Check string // CheckStore or CheckKeysvc
	Err   error
}

func (e *NotReadyError) Error() string { return e.Check + ": " + e.Err.Error() }
func (e *NotReadyError) Unwrap() error { return e.Err }

// readiness is the state of the readiness checks.
type readiness struct {
	// storeBusy is set while a store check is still waiting for the
	// database: a hung database holds one goroutine, not one per probe.
	storeBusy atomic.Bool
}

// Ready reports whether this banking node can serve: the store answers a
// read (a View of a tiny bucket) and keysvc answers a call (the public key
// of bank-login-sm2, asked of keysvc itself, not of banking's cache), each
// within ReadyTimeout. The checks run concurrently; the error joins a
// *NotReadyError per failed check.
func (b *Bank) Ready(ctx context.Context) error {
	var wg sync.WaitGroup
	var storeErr, kmsErr error
	wg.Add(2)
	go func() { defer wg.Done(); storeErr = b.checkStore(ctx) }()
	go func() { defer wg.Done(); kmsErr = b.checkKeysvc(ctx) }()
	wg.Wait()
	var errs []error
	if storeErr != nil {
		errs = append(errs, &NotReadyError{Check: CheckStore, Err: storeErr})
	}
	if kmsErr != nil {
		errs = append(errs, &NotReadyError{Check: CheckKeysvc, Err: kmsErr})
	}
	return errors.Join(errs...)
}

func (b *Bank) checkStore(ctx context.Context) error {
	if !b.ready.storeBusy.CompareAndSwap(false, true) {
		return fmt.Errorf("the previous store check has not returned yet: the database is not answering")
	}
	done := make(chan error, 1)
	go func() {
		err := b.db.View(func(tx store.Tx) error {
			bk := tx.Bucket(bucketReady)
			if bk == nil {
				return store.ErrBucketMissing
			}
			bk.Get([]byte("probe")) // one read: a database that lost its connection fails the View
			return nil
		})
		// Free the slot before answering: freed after (a defer), a probe
		// right after this one could find it still taken and report a
		// store that answered as not answering (TestReadyz, 1 run in 6).
		b.ready.storeBusy.Store(false)
		done <- err
	}()
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	select {
	case err := <-done:
		if errors.Is(err, store.ErrBackend) {
			b.metrics.storeFaults.WithLabelValues("readyz").Inc()
		}
		return err
	case <-ctx.Done():
		return fmt.Errorf("the %s store did not answer a read within %v", b.db.Backend(), ReadyTimeout)
	}
}

func (b *Bank) checkKeysvc(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	if _, err := b.kms.PublicKey(ctx, KeyLogin, 0); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("keysvc did not answer within %v: %w", ReadyTimeout, err)
		}
		return err
	}
	return nil
}

// readyAnswer is /readyz's JSON body.
type readyAnswer struct {
	Status string                `json:"status"`           // ready or not_ready
	Failed []string              `json:"failed,omitempty"` // the checks that failed
	Checks map[string]readyCheck `json:"checks"`
}

type readyCheck struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// OpsHandler serves the operators' endpoints: GET /metrics (Prometheus)
// and GET /readyz (200 {"status":"ready",...}, or 503 naming each failed
// check and why). It is not part of the API: serve it on a listener of
// its own that only the monitoring system and the load balancer reach
// (cmd/banking's metrics.listen). /healthz stays on the API.
func (b *Bank) OpsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", scrapeHandler(b.registry, slogPrinter{b.log}))
	mux.HandleFunc("GET /readyz", b.serveReadyz)
	return mux
}

func (b *Bank) serveReadyz(w http.ResponseWriter, r *http.Request) {
	err := b.Ready(r.Context())
	ans := readyAnswer{Status: "ready", Checks: map[string]readyCheck{CheckStore: {OK: true}, CheckKeysvc: {OK: true}}}
	status := http.StatusOK
	if err != nil {
		ans.Status, status = "not_ready", http.StatusServiceUnavailable
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var nr *NotReadyError
			if errors.As(e, &nr) {
				ans.Failed = append(ans.Failed, nr.Check)
				ans.Checks[nr.Check] = readyCheck{Error: nr.Err.Error()}
			}
		}
		b.log.WarnContext(r.Context(), "readyz: not ready", "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(ans)
}

// slogPrinter adapts slog to promhttp's error logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Error("metrics exposition", "err", fmt.Sprint(v...)) }
