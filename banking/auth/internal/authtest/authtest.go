// Package authtest has helpers for the banking/auth tests: a throwaway
// store (banking/store/dbtest), a settable clock and an alert recorder.
package authtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/dbtest"

	"github.com/keyward/keyward/banking/auth"
)

// MustOpenDB opens the test's store (dbtest: a bbolt file in t.TempDir,
// or PostgreSQL under KEYWARD_BANKING_STORE=postgres), closed by t.Cleanup.
func MustOpenDB(t testing.TB) store.DB {
	t.Helper()
	db := dbtest.New(t).Open()
	// Keep batched tests fast; the default 10 ms delay only adds latency.
	db.SetBatchLimits(0, time.Millisecond)
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
