// Package authtest has helpers for the banking/auth tests: a throwaway
// bbolt file, a settable clock and an alert recorder.
package authtest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/banking/auth"
)

// MustOpenDB opens a bbolt file in t.TempDir, closed by t.Cleanup.
func MustOpenDB(t testing.TB) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "auth.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Keep batched tests fast; the default 10 ms delay only adds latency.
	db.MaxBatchDelay = time.Millisecond
	t.Cleanup(func() { db.Close() })
	return db
}

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts at a fixed instant.
func NewClock() *Clock {
	return &Clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
}

// Now returns the current fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Alerts records events.
type Alerts struct {
	mu     sync.Mutex
	events []auth.Event
}

// Alert records ev.
func (a *Alerts) Alert(_ context.Context, ev auth.Event) {
	a.mu.Lock()
	a.events = append(a.events, ev)
	a.mu.Unlock()
}

// Events returns a copy of what was recorded.
func (a *Alerts) Events() []auth.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]auth.Event(nil), a.events...)
}
