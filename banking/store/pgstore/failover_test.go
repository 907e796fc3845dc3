package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/pglocal"
	"github.com/keyward/keyward/banking/store/pgstore"
	"github.com/keyward/keyward/banking/store/pgstore/pgtest"
)

// startPair starts a primary and its synchronous standby of this test's own
// and creates database kw on them.
func startPair(t *testing.T) *pglocal.Cluster {
	t.Helper()
	pgtest.Require(t)
	dir, err := os.MkdirTemp("", "kwfo")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := pglocal.Start(ctx, pglocal.Options{Dir: dir, Standby: true, Logf: t.Logf})
	if err != nil {
		t.Fatalf("pglocal.Start: %v", err)
	}
	t.Cleanup(c.Stop)
	if err := c.CreateDatabase(ctx, "kw"); err != nil {
		t.Fatal(err)
	}
	return c
}

// A COMMIT whose answer never comes (the synchronous standby is down, so
// the primary waits; the attempt's time runs out) is reported as
// ErrCommitUnknown, and fn is not run again — rightly, since the primary
// had in fact committed it locally.
func TestCommitOutcomeUnknownIsNotRerun(t *testing.T) {
	c := startPair(t)
	db := open(t, c.Primary.DSN("kw"), func(cfg *pgstore.Config) { cfg.TxTimeout = time.Second })
	bkt := []byte("t")
	if err := db.Ensure(bkt); err != nil {
		t.Fatal(err)
	}
	c.Standby.Kill() // every commit now waits for a standby that is gone
	calls := 0
	err := db.Update(func(tx store.Tx) error {
		calls++
		return tx.Bucket(bkt).Put([]byte("k"), []byte("v"))
	})
	if !errors.Is(err, pgstore.ErrCommitUnknown) || !errors.Is(err, store.ErrBackend) {
		t.Fatalf("Update while COMMIT hangs = %v, want ErrCommitUnknown and ErrBackend", err)
	}
	if calls != 1 {
		t.Fatalf("fn ran %d times; a commit of unknown outcome must not be re-run", calls)
	}
	t.Logf("reported: %v", err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Standby.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := db.View(func(tx store.Tx) error { got = tx.Bucket(bkt).Get([]byte("k")); return nil }); err != nil {
		t.Fatal(err)
	}
	if string(got) != "v" {
		t.Fatalf("k = %q: the primary had committed it, which is why re-running it blindly would have been wrong", got)
	}
	if s := db.Stats(); s.CommitUnknown != 1 {
		t.Fatalf("stats %+v, want CommitUnknown 1", s)
	}
}

// Failover: writers run through the multi-host DSN; the primary is killed
// (SIGKILL) with a transaction open and writers running; the standby is
// promoted as an operator would. The open transaction and the writes in
// the gap fail with ErrBackend; new transactions reach the promoted
// standby; every acknowledged write is there (synchronous replication:
// RPO 0), no refused one is.
func TestFailoverToPromotedStandby(t *testing.T) {
	c := startPair(t)
	db := open(t, c.DSN("kw"), func(cfg *pgstore.Config) { cfg.TxTimeout = 2 * time.Second })
	bkt, ctr := []byte("t"), []byte("counter")
	if err := db.Ensure(bkt); err != nil {
		t.Fatal(err)
	}

	// A transaction open at the kill: it has read (so holds a connection
	// to the primary) and commits after the primary is gone.
	ready, proceed := make(chan struct{}), make(chan struct{})
	inflight := make(chan error, 1)
	var once sync.Once
	go func() {
		inflight <- db.Update(func(tx store.Tx) error {
			b := tx.Bucket(bkt)
			b.Get([]byte("inflight"))
			once.Do(func() { close(ready); <-proceed })
			return b.Put([]byte("inflight"), []byte("x"))
		})
	}()
	<-ready

	const writers = 8
	type result struct {
		key        string
		err        error
		start, end time.Time
	}
	results := make(chan result, 100000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("w%d-%06d", w, i)
				start := time.Now()
				err := db.Update(func(tx store.Tx) error {
					b := tx.Bucket(bkt)
					n := 0
					if v := b.Get(ctr); v != nil {
						fmt.Sscan(string(v), &n)
					}
					if err := b.Put(ctr, []byte(fmt.Sprint(n+1))); err != nil {
						return err
					}
					return b.Put([]byte(k), []byte("x"))
				})
				results <- result{key: k, err: err, start: start, end: time.Now()}
				if err != nil {
					time.Sleep(20 * time.Millisecond) // a client backing off
				}
			}
		}()
	}

	time.Sleep(700 * time.Millisecond)
	killed := time.Now()
	c.Primary.Kill()
	close(proceed)
	errInflight := <-inflight
	if !errors.Is(errInflight, store.ErrBackend) {
		t.Errorf("the transaction open at the kill = %v, want ErrBackend", errInflight)
	}

	time.Sleep(300 * time.Millisecond) // the operator notices
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	// A new transaction after the promotion reaches the new primary.
	if err := db.Update(func(tx store.Tx) error { return tx.Bucket(bkt).Put([]byte("after"), []byte("y")) }); err != nil {
		t.Fatalf("a new transaction after promotion: %v", err)
	}
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(results)

	var acked, refused, unknown []string
	var firstOKAfter time.Time
	for r := range results {
		switch {
		case r.err == nil:
			acked = append(acked, r.key)
			// RTO: from the kill to the first success of a transaction
			// begun after it.
			if r.start.After(killed) && (firstOKAfter.IsZero() || r.end.Before(firstOKAfter)) {
				firstOKAfter = r.end
			}
		case errors.Is(r.err, pgstore.ErrCommitUnknown):
			unknown = append(unknown, r.key)
		case errors.Is(r.err, store.ErrBackend):
			refused = append(refused, r.key)
		default:
			t.Errorf("%s: %v is not a backend fault", r.key, r.err)
		}
	}
	if firstOKAfter.IsZero() {
		t.Fatal("no writer succeeded after the kill")
	}
	t.Logf("acknowledged %d, refused %d, unknown %d; kill→promoted %v, kill→first writer success %v",
		len(acked), len(refused), len(unknown), promoted.Sub(killed).Round(time.Millisecond), firstOKAfter.Sub(killed).Round(time.Millisecond))

	// On the promoted standby: every acknowledged key, no refused one, and
	// the counter between acknowledged and acknowledged+unknown.
	var counter int
	present := map[string]bool{}
	err := db.View(func(tx store.Tx) error {
		b := tx.Bucket(bkt)
		fmt.Sscan(string(b.Get(ctr)), &counter)
		return b.ForEach(func(k, v []byte) error { present[string(k)] = true; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range acked {
		if !present[k] {
			t.Errorf("acknowledged %s is missing after failover (RPO must be 0)", k)
		}
	}
	for _, k := range refused {
		if present[k] {
			t.Errorf("refused %s is present", k)
		}
	}
	if present["inflight"] {
		t.Error("the transaction open at the kill was stored")
	}
	if counter < len(acked) || counter > len(acked)+len(unknown) {
		t.Errorf("counter %d outside [%d, %d]", counter, len(acked), len(acked)+len(unknown))
	}
	if !present["after"] {
		t.Error("the write after promotion is missing")
	}
	t.Logf("pgstore stats %+v; %d keys on the promoted server", db.Stats(), len(present))
}
