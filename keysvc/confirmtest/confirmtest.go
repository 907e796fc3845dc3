// Package confirmtest is the conformance suite of the keysvc.ConfirmStore
// contract (keysvc/cluster.go): every ConfirmStore — keysvc's in-memory
// one, the etcd one (keysvc/etcdstore) — runs it from its own tests:
//
//	func TestConfirmStore(t *testing.T) {
//		confirmtest.Run(t, func(t *testing.T) keysvc.ConfirmStore { return newStore(t) })
//	}
//
// newStore is called once per subtest and must return an empty store (or
// one whose confirmations no other subtest sees); it registers its own
// cleanup with t.Cleanup.
//
// # What it checks
//
//   - Open refuses a second pending confirmation of the same key, returning
//     the first (other) and storing nothing; it frees the key when the first
//     ends (Update to a non-pending status) and when its ExpiresAt passes
//     with nobody ending it.
//   - Get and ByHolder find a record, return copies, and return (nil, nil)
//     for an unknown id or holder.
//   - Update is compare-and-retry: 16 concurrent updaters that each add one
//     to a counter (kept in View.Reason) lose no increment; an error from fn
//     stores nothing and is returned as is; Update on a record that is gone
//     returns (nil, nil) without calling fn.
//   - Wait returns nil when the record ends, and ctx.Err() when ctx ends
//     first.
//   - Pending lists the pending records only, including one whose ExpiresAt
//     passed that no node has ended yet (the scheduler's sweep finds those).
//   - Records stay readable until keep after ExpiresAt, and are gone after.
//
// # Timing
//
// The suite uses ExpiresAt = now+1s and keep = 1s. A clustered store may
// free keys and drop records a little late (etcd rounds lease TTLs up to
// whole seconds and to its minimum TTL, and checks expiry periodically), so
// "freed" and "gone" are polled for up to Slack past the instant the
// contract names; "still there" is checked well before it.
package confirmtest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/wire"
)

// Slack is how long after the instant the contract names the suite waits
// for a key to be freed or a record to be gone.
var Slack = 4 * time.Second

// Durations the suite uses.
const (
	expiresIn = time.Second
	keep      = time.Second
	poll      = 50 * time.Millisecond
)

var seq struct {
	sync.Mutex
	n int
}

// record returns a fresh pending record of key, expiring in expiresIn.
func record(key string) *keysvc.ConfirmRecord {
	seq.Lock()
	seq.n++
	n := seq.n
	seq.Unlock()
	now := time.Now().UTC()
	id := fmt.Sprintf("cf_test%d_%d", now.UnixNano(), n)
	return &keysvc.ConfirmRecord{
		View: wire.ConfirmationView{ID: id, Key: key, Status: wire.ConfirmPending, Format: "test",
			Display: []string{"amount: 1.00 EUR"}, Digest: "00ff", CreatedAt: now, ExpiresAt: now.Add(expiresIn)},
		Requester: "requester-" + key,
		Holder:    fmt.Sprintf("holder-%s-%d", key, n),
		Scheme:    "ecdsa",
		Sealed:    []byte{1, 2, 3, 4},
		Digest:    []byte{0x00, 0xff},
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustOpen(t *testing.T, s keysvc.ConfirmStore, r *keysvc.ConfirmRecord) {
	t.Helper()
	other, err := s.Open(ctxT(t), r, keep)
	if err != nil {
		t.Fatalf("Open(%s): %v", r.View.ID, err)
	}
	if other != nil {
		t.Fatalf("Open(%s) on free key %q: refused, other = %s", r.View.ID, r.View.Key, other.View.ID)
	}
}

// end sets id's status to st (non-pending).
func end(t *testing.T, s keysvc.ConfirmStore, id string, st wire.ConfirmationStatus) *keysvc.ConfirmRecord {
	t.Helper()
	r, err := s.Update(ctxT(t), id, func(r *keysvc.ConfirmRecord) error {
		r.View.Status, r.View.Reason, r.Sealed = st, "ended by the test", nil
		return nil
	})
	if err != nil || r == nil {
		t.Fatalf("Update(%s → %s) = %v, %v", id, st, r, err)
	}
	if r.View.Status != st || r.Pending() {
		t.Fatalf("Update returned status %s, want %s", r.View.Status, st)
	}
	return r
}

// eventually polls cond until it holds or deadline passes.
func eventually(deadline time.Time, cond func() bool) bool {
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(poll)
	}
}

// Run runs the suite; newStore returns a fresh store per subtest.
func Run(t *testing.T, newStore func(t *testing.T) keysvc.ConfirmStore) {
	t.Run("OpenRefusesSecondPending", func(t *testing.T) { testOpenRefuses(t, newStore(t)) })
	t.Run("EndFreesKey", func(t *testing.T) { testEndFreesKey(t, newStore(t)) })
	t.Run("ExpiryFreesKey", func(t *testing.T) { t.Parallel(); testExpiryFreesKey(t, newStore(t)) })
	t.Run("GetByHolder", func(t *testing.T) { testGetByHolder(t, newStore(t)) })
	t.Run("UpdateConcurrent", func(t *testing.T) { testUpdateConcurrent(t, newStore(t)) })
	t.Run("UpdateErrorStoresNothing", func(t *testing.T) { testUpdateError(t, newStore(t)) })
	t.Run("UpdateGone", func(t *testing.T) { t.Parallel(); testUpdateGone(t, newStore(t)) })
	t.Run("Wait", func(t *testing.T) { testWait(t, newStore(t)) })
	t.Run("Pending", func(t *testing.T) { t.Parallel(); testPending(t, newStore(t)) })
	t.Run("KeepThenGone", func(t *testing.T) { t.Parallel(); testKeepThenGone(t, newStore(t)) })
}

func testOpenRefuses(t *testing.T, s keysvc.ConfirmStore) {
	ctx := ctxT(t)
	first := record("k1")
	mustOpen(t, s, first)
	second := record("k1")
	other, err := s.Open(ctx, second, keep)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	if other == nil || other.View.ID != first.View.ID || !other.Pending() {
		t.Fatalf("second Open of key k1: other = %+v, want the pending %s", other, first.View.ID)
	}
	if got, err := s.Get(ctx, second.View.ID); err != nil || got != nil {
		t.Fatalf("Get(refused %s) = %+v, %v; want nil, nil (nothing stored)", second.View.ID, got, err)
	}
	// Another key is not disturbed.
	mustOpen(t, s, record("k2"))
}

func testEndFreesKey(t *testing.T, s keysvc.ConfirmStore) {
	ctx := ctxT(t)
	for _, st := range []wire.ConfirmationStatus{wire.ConfirmApproved, wire.ConfirmRejected, wire.ConfirmExpired, wire.ConfirmCancelled, wire.ConfirmFailed} {
		first := record("k")
		mustOpen(t, s, first)
		end(t, s, first.View.ID, st)
		next := record("k")
		other, err := s.Open(ctx, next, keep)
		if err != nil || other != nil {
			t.Fatalf("Open after the first ended %s: other = %+v, err = %v; want the key free", st, other, err)
		}
		end(t, s, next.View.ID, wire.ConfirmCancelled)
		if got, err := s.Get(ctx, first.View.ID); err != nil || got == nil || got.View.Status != st {
			t.Fatalf("Get(ended %s) = %+v, %v; want it readable, %s", first.View.ID, got, err, st)
		}
	}
}

func testExpiryFreesKey(t *testing.T, s keysvc.ConfirmStore) {
	ctx := ctxT(t)
	first := record("k")
	// A long keep: the key must be freed at ExpiresAt, not only when the
	// record is forgotten.
	if other, err := s.Open(ctx, first, time.Minute); err != nil || other != nil {
		t.Fatalf("Open = %v, %v", other, err)
	}
	if other, err := s.Open(ctx, record("k"), keep); err != nil || other == nil {
		t.Fatalf("Open before ExpiresAt: other = %v, err = %v; want refused", other, err)
	}
	var other *keysvc.ConfirmRecord
	var next *keysvc.ConfirmRecord
	var err error
	ok := eventually(first.View.ExpiresAt.Add(Slack), func() bool {
		next = record("k")
		other, err = s.Open(ctx, next, keep)
		return err != nil || other == nil
	})
	if err != nil {
		t.Fatalf("Open after ExpiresAt: %v", err)
	}
	if !ok {
		t.Fatalf("key still held by %s %v after its ExpiresAt (nobody ended it)", other.View.ID, Slack)
	}
	if time.Now().Before(first.View.ExpiresAt) {
		t.Fatalf("key freed before ExpiresAt %s", first.View.ExpiresAt)
	}
	got, err := s.Get(ctx, next.View.ID)
	if err != nil || got == nil || !got.Pending() {
		t.Fatalf("Get(new %s) = %+v, %v; want it pending", next.View.ID, got, err)
	}
	// The expired one, which nobody ended, is still readable (keep).
	if got, err := s.Get(ctx, first.View.ID); err != nil || got == nil {
		t.Fatalf("Get(expired %s) = %v, %v; want it readable until keep after ExpiresAt", first.View.ID, got, err)
	}
}

func testGetByHolder(t *testing.T, s keysvc.ConfirmStore) {
	ctx := ctxT(t)
	r := record("k")
	r.BusyUntil, r.BusyNode = time.Now().UTC().Add(time.Minute).Truncate(time.Millisecond), "node-a"
	mustOpen(t, s, r)
	for name, get := range map[string]func() (*keysvc.ConfirmRecord, error){
		"Get":      func() (*keysvc.ConfirmRecord, error) { return s.Get(ctx, r.View.ID) },
		"ByHolder": func() (*keysvc.ConfirmRecord, error) { return s.ByHolder(ctx, r.Holder) },
	} {
		got, err := get()
		if err != nil || got == nil {
			t.Fatalf("%s = %v, %v", name, got, err)
		}
		if got.View.ID != r.View.ID || got.View.Key != "k" || got.Requester != r.Requester || got.Holder != r.Holder ||
			got.Scheme != r.Scheme || string(got.Sealed) != string(r.Sealed) || string(got.Digest) != string(r.Digest) ||
			!got.View.ExpiresAt.Equal(r.View.ExpiresAt) || !got.BusyUntil.Equal(r.BusyUntil) || got.BusyNode != "node-a" ||
			len(got.View.Display) != 1 || got.View.Display[0] != r.View.Display[0] || !got.Pending() {
			t.Fatalf("%s = %+v, want %+v", name, got, r)
		}
		got.View.Status, got.Sealed[0] = wire.ConfirmApproved, 9 // a copy: the store must not see this
	}
	if got, _ := s.Get(ctx, r.View.ID); got == nil || !got.Pending() || got.Sealed[0] != 1 {
		t.Fatalf("changing a returned record changed the stored one: %+v", got)
	}
	if got, err := s.Get(ctx, "cf_nosuch"); got != nil || err != nil {
		t.Fatalf("Get(unknown) = %v, %v; want nil, nil", got, err)
	}
	if got, err := s.ByHolder(ctx, "nosuch"); got != nil || err != nil {
		t.Fatalf("ByHolder(unknown) = %v, %v; want nil, nil", got, err)
	}
}

func testUpdateConcurrent(t *testing.T, s keysvc.ConfirmStore) {
	ctx := ctxT(t)
	r := record("k")
	r.View.Reason = "0"
	mustOpen(t, s, r)
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.Update(ctx, r.View.ID, func(r *keysvc.ConfirmRecord) error {
				c, err := strconv.Atoi(r.View.Reason)
				if err != nil {
					return err
				}
				r.View.Reason = strconv.Itoa(c + 1)
				return nil
			})
			if err == nil && got == nil {
				err = errors.New("Update of a live record returned nil")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Update: %v", err)
		}
	}
	got, err := s.Get(ctx, r.View.ID)
	if err != nil || got == nil {
		t.Fatalf("Get = %v, %v", got, err)
	}
	if got.View.Reason != strconv.Itoa(n) {
		t.Fatalf("counter after %d concurrent increments = %s; increments were lost or doubled", n, got.View.Reason)
	}
	if !got.Pending() {
		t.Fatalf("status %s after updates that did not end it", got.View.Status)
	}
}

func testUpdateError(t *testing.T, s keysvc.ConfirmStore) {
	ctx := ctxT(t)
	r := record("k")
	mustOpen(t, s, r)
	boom := errors.New("boom")
	got, err := s.Update(ctx, r.View.ID, func(r *keysvc.ConfirmRecord) error {
		r.View.Status, r.View.Reason = wire.ConfirmApproved, "must not be stored"
		return boom
	})
	if err != boom || got != nil { //nolint:errorlint // "returned as is"
		t.Fatalf("Update with failing fn = %v, %v; want nil, the error as is", got, err)
	}
	if got, _ := s.Get(ctx, r.View.ID); got == nil || !got.Pending() || got.View.Reason != "" {
		t.Fatalf("failing fn stored something: %+v", got)
	}
	// The key is still held.
	if other, err := s.Open(ctx, record("k"), keep); err != nil || other == nil {
		t.Fatalf("Open after a failed Update: other = %v, err = %v; want refused", other, err)
	}
}

func testUpdateGone(t *testing.T, s keysvc.ConfirmStore) {
	ctx := ctxT(t)
	called := false
	got, err := s.Update(ctx, "cf_nosuch", func(*keysvc.ConfirmRecord) error { called = true; return nil })
	if got != nil || err != nil || called {
		t.Fatalf("Update(unknown) = %v, %v, fn called %v; want nil, nil, not called", got, err, called)
	}
	r := record("k")
	mustOpen(t, s, r)
	end(t, s, r.View.ID, wire.ConfirmApproved)
	if !eventually(r.View.ExpiresAt.Add(keep+Slack), func() bool { g, _ := s.Get(ctx, r.View.ID); return g == nil }) {
		t.Fatalf("record %s still readable %v after ExpiresAt+keep", r.View.ID, Slack)
	}
	got, err = s.Update(ctx, r.View.ID, func(*keysvc.ConfirmRecord) error { called = true; return nil })
	if got != nil || err != nil || called {
		t.Fatalf("Update(gone) = %v, %v, fn called %v; want nil, nil, not called", got, err, called)
	}
}

func testWait(t *testing.T, s keysvc.ConfirmStore) {
	ctx := ctxT(t)
	r := record("k")
	mustOpen(t, s, r)

	// ctx ends first.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := s.Wait(short, r.View.ID)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a pending record until ctx ends = %v, want context.DeadlineExceeded", err)
	}

	// The record ends while Wait waits.
	done := make(chan error, 1)
	go func() { done <- s.Wait(ctx, r.View.ID) }()
	select {
	case err := <-done:
		t.Fatalf("Wait returned before the record ended: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	end(t, s, r.View.ID, wire.ConfirmApproved)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait after the record ended = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return 10 s after the record ended")
	}

	// Already ended, and gone: return at once.
	if err := s.Wait(ctx, r.View.ID); err != nil {
		t.Fatalf("Wait on an ended record = %v", err)
	}
	if err := s.Wait(ctx, "cf_nosuch"); err != nil {
		t.Fatalf("Wait on an unknown record = %v", err)
	}
}

func testPending(t *testing.T, s keysvc.ConfirmStore) {
	ctx := ctxT(t)
	a, b, c := record("a"), record("b"), record("c")
	for _, r := range []*keysvc.ConfirmRecord{a, b, c} {
		mustOpen(t, s, r)
	}
	end(t, s, b.View.ID, wire.ConfirmRejected)
	ids := func() map[string]bool {
		t.Helper()
		list, err := s.Pending(ctx)
		if err != nil {
			t.Fatalf("Pending: %v", err)
		}
		m := map[string]bool{}
		for _, r := range list {
			if !r.Pending() {
				t.Fatalf("Pending listed %s, status %s", r.View.ID, r.View.Status)
			}
			m[r.View.ID] = true
		}
		return m
	}
	if got := ids(); len(got) != 2 || !got[a.View.ID] || !got[c.View.ID] {
		t.Fatalf("Pending = %v, want exactly %s and %s", got, a.View.ID, c.View.ID)
	}
	// Past ExpiresAt, nobody ended a: the sweep must still find it.
	time.Sleep(time.Until(a.View.ExpiresAt.Add(keep / 4)))
	if got := ids(); !got[a.View.ID] {
		t.Fatalf("Pending after ExpiresAt (before keep) = %v; it must list %s, which nobody ended, for the sweep", got, a.View.ID)
	}
}

func testKeepThenGone(t *testing.T, s keysvc.ConfirmStore) {
	ctx := ctxT(t)
	ended, left := record("a"), record("b")
	mustOpen(t, s, ended)
	mustOpen(t, s, left)
	end(t, s, ended.View.ID, wire.ConfirmCancelled)
	// Until keep after ExpiresAt both stay readable (checked at half of keep).
	time.Sleep(time.Until(ended.View.ExpiresAt.Add(keep / 2)))
	for _, r := range []*keysvc.ConfirmRecord{ended, left} {
		if got, err := s.Get(ctx, r.View.ID); err != nil || got == nil {
			t.Fatalf("Get(%s) before ExpiresAt+keep = %v, %v; want it readable", r.View.ID, got, err)
		}
		if got, err := s.ByHolder(ctx, r.Holder); err != nil || got == nil {
			t.Fatalf("ByHolder(%s) before ExpiresAt+keep = %v, %v; want it readable", r.View.ID, got, err)
		}
	}
	for _, r := range []*keysvc.ConfirmRecord{ended, left} {
		if !eventually(r.View.ExpiresAt.Add(keep+Slack), func() bool {
			g, err := s.Get(ctx, r.View.ID)
			h, err2 := s.ByHolder(ctx, r.Holder)
			return err == nil && err2 == nil && g == nil && h == nil
		}) {
			t.Fatalf("record %s still readable %v after ExpiresAt+keep", r.View.ID, Slack)
		}
	}
	if list, err := s.Pending(ctx); err != nil || len(list) != 0 {
		t.Fatalf("Pending after every record is gone = %d records, %v", len(list), err)
	}
}
