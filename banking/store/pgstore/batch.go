package pgstore

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keyward/keyward/banking/store"
)

// Batch is group commit, as bbolt's DB.Batch: concurrent callers share one
// serialisable transaction, started when MaxBatchSize functions have
// gathered or MaxBatchDelay after the first. When one function fails, the
// transaction is rolled back, that function is run again alone (in its own
// Update, so its error is its own and not a neighbour's doing) and the
// others re-run together. A serialisation conflict re-runs the whole batch.
//
// A node runs one batch at a time (batchRun), as bbolt's single writer does:
// every ledger posting takes the journal's next sequence number, so two
// batches of one node running side by side would always conflict on that
// row and one would be re-run (bench-banking saw about one serialisation
// failure per six transfers that way). While a batch runs, the next one
// gathers company instead, so commits carry more work each.
func (db *DB) Batch(fn func(store.Tx) error) error {
	if db.closed.Load() {
		return &Error{Op: "batch", Err: ErrClosed}
	}
	errCh := make(chan error, 1)
	db.batchMu.Lock()
	if db.batch == nil || len(db.batch.calls) >= db.maxBatchSize {
		db.batch = &batch{db: db}
		db.batch.timer = time.AfterFunc(db.maxBatchDelay, db.batch.trigger)
	}
	db.batch.calls = append(db.batch.calls, call{fn: fn, err: errCh})
	if len(db.batch.calls) >= db.maxBatchSize {
		go db.batch.trigger()
	}
	db.batchMu.Unlock()

	err := <-errCh
	if errors.Is(err, errTrySolo) {
		err = db.Update(fn)
	}
	return err
}

type call struct {
	fn  func(store.Tx) error
	err chan<- error
}

type batch struct {
	db    *DB
	timer *time.Timer
	start sync.Once
	calls []call
}

func (b *batch) trigger() { b.start.Do(b.run) }

// failed marks the function of a batch that returned an error.
type failed struct {
	idx int
	err error
}

func (f *failed) Error() string { return fmt.Sprintf("batch function %d failed: %v", f.idx, f.err) }

var errTrySolo = errors.New("pgstore: batch function failed; run it alone")

func (b *batch) run() {
	// Wait for the running batch first, then stop gathering: calls that
	// arrive meanwhile join this batch (up to MaxBatchSize) instead of
	// queueing as many small ones behind it.
	b.db.batchRun.Lock()
	defer b.db.batchRun.Unlock()
	b.db.batchMu.Lock()
	b.timer.Stop()
	if b.db.batch == b {
		b.db.batch = nil
	}
	b.db.batchMu.Unlock()
	t0 := time.Now()
	b.db.stats.batches.Add(1)
	b.db.stats.batchedCalls.Add(uint64(len(b.calls)))
	defer func() { b.db.stats.batchNanos.Add(uint64(time.Since(t0))) }()

	for len(b.calls) > 0 {
		err := b.db.run("batch", true, func(t *tx) error {
			for i, c := range b.calls {
				if err := safelyCall(c.fn, t); err != nil {
					return &failed{idx: i, err: err}
				}
			}
			return nil
		})
		var f *failed
		if errors.As(err, &f) {
			c := b.calls[f.idx]
			b.calls[f.idx], b.calls = b.calls[len(b.calls)-1], b.calls[:len(b.calls)-1]
			c.err <- errTrySolo
			continue
		}
		for _, c := range b.calls {
			c.err <- err
		}
		return
	}
}

// panicked is a panic of a batch function, returned to its caller as an
// error (the others' transaction goes on), as bbolt does.
type panicked struct{ reason any }

func (p panicked) Error() string {
	if err, ok := p.reason.(error); ok {
		return "pgstore: batch function panicked: " + err.Error()
	}
	return fmt.Sprintf("pgstore: batch function panicked: %v", p.reason)
}

func safelyCall(fn func(store.Tx) error, t *tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicked{p}
		}
	}()
	return fn(t)
}
