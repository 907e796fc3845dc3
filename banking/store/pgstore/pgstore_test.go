package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/pgstore"
	"github.com/keyward/keyward/banking/store/pgstore/pgtest"
	"github.com/keyward/keyward/banking/store/storetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	stopBench()
	pgtest.Stop()
	os.Exit(code)
}

func open(t testing.TB, dsn string, mod ...func(*pgstore.Config)) *pgstore.DB {
	t.Helper()
	cfg := pgstore.Config{DSN: dsn}
	for _, f := range mod {
		f(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := pgstore.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func sqlConn(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.DB { return open(t, pgtest.Fresh(t)) })
}

// Nodes starting together on an empty database: golang-migrate's advisory
// lock lets one migrate; every Open succeeds and the schema is made once.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	dsn := pgtest.Fresh(t)
	const nodes = 6
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	dbs := make([]*pgstore.DB, nodes)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dbs[i], errs[i] = pgstore.Open(context.Background(), pgstore.Config{DSN: dsn})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: Open: %v", i, err)
		}
		defer dbs[i].Close()
	}
	c := sqlConn(t, dsn)
	var version int64
	var dirty bool
	if err := c.QueryRow(context.Background(), "SELECT version, dirty FROM "+pgstore.MigrationsTable).Scan(&version, &dirty); err != nil {
		t.Fatal(err)
	}
	if version != int64(pgstore.SchemaVersion()) || dirty {
		t.Fatalf("schema version %d dirty %v, want %d clean", version, dirty, pgstore.SchemaVersion())
	}
	// Every node works on the one schema.
	if err := dbs[0].Ensure([]byte("b")); err != nil {
		t.Fatal(err)
	}
	for i, db := range dbs {
		if err := db.Update(func(tx store.Tx) error { return tx.Bucket([]byte("b")).Put([]byte(fmt.Sprint(i)), []byte("x")) }); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM kw_kv").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != nodes {
		t.Fatalf("%d rows, want %d", n, nodes)
	}
}

func TestRefusesNewerOrDirtySchema(t *testing.T) {
	dsn := pgtest.Fresh(t)
	open(t, dsn).Close()
	c := sqlConn(t, dsn)
	ctx := context.Background()
	if _, err := c.Exec(ctx, "UPDATE "+pgstore.MigrationsTable+" SET version = 9999"); err != nil {
		t.Fatal(err)
	}
	_, err := pgstore.Open(ctx, pgstore.Config{DSN: dsn})
	if !errors.Is(err, pgstore.ErrSchemaTooNew) {
		t.Fatalf("Open on a newer schema: %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), "9999") || !strings.Contains(err.Error(), fmt.Sprint(pgstore.SchemaVersion())) {
		t.Fatalf("the message does not name both versions: %v", err)
	}
	if _, err := c.Exec(ctx, "UPDATE "+pgstore.MigrationsTable+" SET version = 1, dirty = true"); err != nil {
		t.Fatal(err)
	}
	if _, err := pgstore.Open(ctx, pgstore.Config{DSN: dsn}); !errors.Is(err, pgstore.ErrSchemaDirty) {
		t.Fatalf("Open on a dirty schema: %v, want ErrSchemaDirty", err)
	}
}

func TestOpenRefusesABadDSNWithoutEchoingIt(t *testing.T) {
	_, err := pgstore.Open(context.Background(), pgstore.Config{DSN: "postgres://u:s3cret@host:notaport/db"})
	if err == nil {
		t.Fatal("Open accepted a malformed DSN")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("the error shows the password: %v", err)
	}
}

// A connection lost inside fn: the read returns nil (sticky), fn's own
// "not found" is not what Update returns, and the transaction — nothing
// having been committed — runs again on a new connection.
func TestStickyFaultThenRetryOnNewConnection(t *testing.T) {
	dsn := pgtest.Fresh(t)
	db := open(t, dsn)
	admin := sqlConn(t, dsn)
	bkt := []byte("b")
	if err := db.Ensure(bkt); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx store.Tx) error { return tx.Bucket(bkt).Put([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	errNotFound := errors.New("not found")
	attempts := 0
	var firstRead []byte = []byte("unset")
	err := db.Update(func(tx store.Tx) error {
		attempts++
		b := tx.Bucket(bkt)
		b.Get([]byte("other")) // takes a connection
		if attempts == 1 {
			if _, err := admin.Exec(context.Background(),
				"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"); err != nil {
				t.Fatal(err)
			}
			firstRead = b.Get([]byte("k"))
			if err := b.Put([]byte("k2"), []byte("x")); !errors.Is(err, store.ErrBackend) {
				t.Errorf("Put after the fault = %v, want the sticky fault", err)
			}
		}
		if b.Get([]byte("k")) == nil {
			return errNotFound // what fn makes of the nil read
		}
		return b.Put([]byte("k3"), []byte("y"))
	})
	if err != nil {
		t.Fatalf("Update = %v, want success on the second attempt", err)
	}
	if firstRead != nil {
		t.Fatalf("the read after the fault returned %q, want nil", firstRead)
	}
	if attempts != 2 {
		t.Fatalf("fn ran %d times, want 2", attempts)
	}
	if s := db.Stats(); s.ConnLost == 0 || s.Retries == 0 {
		t.Fatalf("stats %+v: the lost connection was not counted", s)
	}
}

// A fault that is not retried (the attempt's time runs out while a DBA's
// lock blocks the read): Update returns the fault, not fn's error.
func TestStickyFaultBeatsFnError(t *testing.T) {
	dsn := pgtest.Fresh(t)
	db := open(t, dsn, func(c *pgstore.Config) { c.TxTimeout = 500 * time.Millisecond })
	bkt := []byte("b")
	if err := db.Ensure(bkt); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	admin := sqlConn(t, dsn)
	lock, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	if _, err := lock.Exec(ctx, "LOCK TABLE kw_kv IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	errNotFound := errors.New("account not found")
	attempts := 0
	err = db.Update(func(tx store.Tx) error {
		attempts++
		if tx.Bucket(bkt).Get([]byte("acct")) == nil {
			return errNotFound
		}
		return nil
	})
	if errors.Is(err, errNotFound) || !errors.Is(err, store.ErrBackend) {
		t.Fatalf("Update = %v, want the backend fault and not fn's error", err)
	}
	if attempts != 1 {
		t.Fatalf("fn ran %d times; a timed-out attempt is not retried", attempts)
	}
	lock.Rollback(ctx)
	// The store works again once the lock is gone.
	if err := db.View(func(tx store.Tx) error { tx.Bucket(bkt).Get([]byte("acct")); return nil }); err != nil {
		t.Fatalf("View after the lock: %v", err)
	}
}

// Two nodes incrementing one counter with Update and Batch: serialisable
// across processes' pools, no lost update.
func TestTwoNodesNoLostUpdate(t *testing.T) {
	dsn := pgtest.Fresh(t)
	nodes := []*pgstore.DB{open(t, dsn), open(t, dsn)}
	bkt, ctr := []byte("b"), []byte("ctr")
	if err := nodes[0].Ensure(bkt); err != nil {
		t.Fatal(err)
	}
	const workers, each = 16, 20
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db := nodes[w%2]
			run := db.Update
			if w%4 >= 2 {
				run = db.Batch
			}
			for range each {
				err := run(func(tx store.Tx) error {
					b := tx.Bucket(bkt)
					n := 0
					if v := b.Get(ctr); v != nil {
						fmt.Sscan(string(v), &n)
					}
					if _, err := b.NextSequence(); err != nil {
						return err
					}
					return b.Put(ctr, []byte(fmt.Sprint(n+1)))
				})
				if err != nil {
					t.Errorf("increment: %v", err)
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	var got string
	var seq uint64
	nodes[1].View(func(tx store.Tx) error {
		got = string(tx.Bucket(bkt).Get(ctr))
		seq = tx.Bucket(bkt).Sequence()
		return nil
	})
	want := fmt.Sprint(workers*each - int(failed.Load()))
	if got != want || fmt.Sprint(seq) != want {
		t.Fatalf("counter %s, sequence %d, want %s", got, seq, want)
	}
	s0, s1 := nodes[0].Stats(), nodes[1].Stats()
	t.Logf("conflicts retried: node0 %d, node1 %d", s0.Conflicts, s1.Conflicts)
}

func TestClosed(t *testing.T) {
	db := open(t, pgtest.Fresh(t))
	db.Close()
	for name, err := range map[string]error{
		"View":   db.View(func(store.Tx) error { return nil }),
		"Update": db.Update(func(store.Tx) error { return nil }),
		"Batch":  db.Batch(func(store.Tx) error { return nil }),
		"Ensure": db.Ensure([]byte("x")),
	} {
		if !errors.Is(err, pgstore.ErrClosed) || !errors.Is(err, store.ErrBackend) {
			t.Errorf("%s on a closed store = %v", name, err)
		}
	}
}

func TestKeyLimits(t *testing.T) {
	db := open(t, pgtest.Fresh(t))
	db.Ensure([]byte("b"))
	err := db.Update(func(tx store.Tx) error {
		return tx.Bucket([]byte("b")).Put(make([]byte, pgstore.MaxKeySize+1), []byte("v"))
	})
	if !errors.Is(err, pgstore.ErrKeyTooLarge) {
		t.Fatalf("Put of a %d-byte key = %v", pgstore.MaxKeySize+1, err)
	}
	err = db.Update(func(tx store.Tx) error {
		return tx.Bucket([]byte("b")).Put(make([]byte, pgstore.MaxKeySize), make([]byte, 1<<20))
	})
	if err != nil {
		t.Fatalf("Put of a %d-byte key and a 1 MiB value: %v", pgstore.MaxKeySize, err)
	}
}

// pgtest.Opener (dbtest's Postgres hook): re-opening finds the records.
func TestOpenerReopens(t *testing.T) {
	openFn := pgtest.Opener(t)
	db, err := openFn()
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Ensure([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx store.Tx) error { return tx.Bucket([]byte("b")).Put([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = openFn()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got string
	db.View(func(tx store.Tx) error { got = string(tx.Bucket([]byte("b")).Get([]byte("k"))); return nil })
	if got != "v" || db.Backend() != "postgres" || !db.Shared() {
		t.Fatalf("after reopen k=%q backend %q shared %v", got, db.Backend(), db.Shared())
	}
}

// What a DBA sees in pg_stat_activity: the store's sessions by name.
func TestSessionsNamedForTheDBA(t *testing.T) {
	dsn := pgtest.Fresh(t)
	db := open(t, dsn)
	db.Ensure([]byte("b"))
	if err := db.View(func(tx store.Tx) error { tx.Bucket([]byte("b")).Get([]byte("x")); return nil }); err != nil {
		t.Fatal(err)
	}
	var n int
	err := sqlConn(t, dsn).QueryRow(context.Background(),
		"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'keyward-banking'").Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no session named keyward-banking: the pool's idle connection should be one")
	}
}

// TestBatchesOfOneNodeDoNotRace: a node runs one batch at a time, so 200
// goroutines (batches of at most 16) incrementing one hot counter (as every ledger posting takes
// the journal's next sequence) through Batch never lose a serialisation
// race to each other: no conflict, no retry; and calls that arrive while a
// batch runs gather into the next one instead of queueing one by one.
func TestBatchesOfOneNodeDoNotRace(t *testing.T) {
	db := open(t, pgtest.Fresh(t))
	db.SetBatchLimits(16, time.Millisecond)
	bkt := []byte("hot")
	if err := db.Ensure(bkt); err != nil {
		t.Fatal(err)
	}
	const workers, each = 200, 5
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if err := db.Batch(func(tx store.Tx) error {
					_, err := tx.Bucket(bkt).NextSequence()
					return err
				}); err != nil {
					t.Errorf("batch: %v", err)
				}
			}
		})
	}
	wg.Wait()
	var seq uint64
	db.View(func(tx store.Tx) error { seq = tx.Bucket(bkt).Sequence(); return nil })
	s := db.Stats()
	if seq != workers*each || s.Conflicts != 0 || s.Retries != 0 {
		t.Fatalf("sequence %d (want %d), %d conflicts, %d retries: batches of one node raced", seq, workers*each, s.Conflicts, s.Retries)
	}
	if s.BatchedCalls != workers*each || s.Batches*4 > s.BatchedCalls {
		t.Fatalf("%d calls in %d batches: want every call batched, several per batch", s.BatchedCalls, s.Batches)
	}
	t.Logf("%d calls in %d batches (%.1f per batch), %v in batches", s.BatchedCalls, s.Batches, float64(s.BatchedCalls)/float64(s.Batches), s.BatchTime.Round(time.Millisecond))
}

// TestViewOutlivesTxTimeout: a View is bounded by ViewTimeout, not the
// request-sized TxTimeout, so a scan of the whole store (the ledger's
// verification) is not cut short; a write still is, and its fault is
// ErrBackend; a View past ViewTimeout is too.
func TestViewOutlivesTxTimeout(t *testing.T) {
	db := open(t, pgtest.Fresh(t), func(c *pgstore.Config) { c.TxTimeout, c.ViewTimeout = 300*time.Millisecond, 3*time.Second })
	bkt := []byte("b")
	if err := db.Ensure(bkt); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx store.Tx) error { return tx.Bucket(bkt).Put([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	slowRead := func(pause time.Duration) func(tx store.Tx) error {
		return func(tx store.Tx) error {
			if tx.Bucket(bkt).Get([]byte("k")) == nil {
				return errors.New("first read: nothing")
			}
			time.Sleep(pause)
			if tx.Bucket(bkt).Get([]byte("k2")) != nil || tx.Bucket(bkt).KeyN() != 1 {
				return errors.New("second read: wrong")
			}
			return nil
		}
	}
	if err := db.View(slowRead(time.Second)); err != nil {
		t.Fatalf("a View longer than TxTimeout: %v", err)
	}
	if err := db.Update(slowRead(time.Second)); !errors.Is(err, store.ErrBackend) {
		t.Fatalf("an Update longer than TxTimeout: %v, want ErrBackend", err)
	}
	if err := db.View(slowRead(3500 * time.Millisecond)); !errors.Is(err, store.ErrBackend) {
		t.Fatalf("a View longer than ViewTimeout: %v, want ErrBackend", err)
	}
}
