// Package pgtest gives tests an empty PostgreSQL database of their own on a
// real server (banking/store/pglocal), without starting a server per test:
//
//	func TestSomething(t *testing.T) {
//		db, err := pgstore.Open(ctx, pgstore.Config{DSN: pgtest.Fresh(t)})
//		…
//	}
//
// # The server
//
// One pglocal primary (no standby) per test binary, started by the first
// Fresh, in a temporary directory (/tmp/kwpg…, short enough for the unix
// socket). It is stopped and its directory removed by Stop; a package whose
// tests use pgtest should call it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// Without that, the server still dies with the test process (pglocal starts
// it with a parent-death signal), and only its temporary directory is left
// behind. The server runs as the unprivileged postgres user (or nobody)
// when the tests run as root, as pglocal does.
//
// # Databases
//
// Each Fresh creates a database from template0 (so nothing another test
// put in template1 leaks in) and drops it WITH (FORCE) in t.Cleanup, after
// the test's own cleanups registered later (a store closed in t.Cleanup
// is closed first).
//
// # When PostgreSQL is missing
//
// Fresh skips the test when the server programs are not installed
// (pglocal.ErrNotInstalled), except under CI=true, where that is a
// failure: CI installs them (scripts/deps.sh).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/pglocal"
	"github.com/keyward/keyward/banking/store/pgstore"
)

var (
	mu       sync.Mutex
	cluster  *pglocal.Cluster
	dir      string
	startErr error
	seq      atomic.Int64
)

// Main runs the tests and then Stop, and exits with their code.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops the shared server and removes its directory; a later Fresh
// starts a new one. Safe to call when none was started.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	if cluster != nil {
		cluster.Stop()
		cluster = nil
	}
	if dir != "" {
		os.RemoveAll(dir)
		dir = ""
	}
	startErr = nil
}

// Require skips t when PostgreSQL's server programs are missing (fails it
// under CI=true).
func Require(t testing.TB) {
	t.Helper()
	for _, name := range []string{"initdb", "postgres", "pg_basebackup"} {
		if _, err := pglocal.Bin(name); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("CI=true and PostgreSQL is missing (scripts/deps.sh installs it): %v", err)
			}
			t.Skipf("PostgreSQL not installed: %v", err)
		}
	}
}

// Server returns the shared server, starting it on first use.
func Server(t testing.TB) *pglocal.Server {
	t.Helper()
	Require(t)
	mu.Lock()
	defer mu.Unlock()
	if cluster == nil && startErr == nil {
		d, err := os.MkdirTemp("", "kwpg")
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c, err := pglocal.Start(ctx, pglocal.Options{Dir: d})
		if err != nil {
			os.RemoveAll(d)
			startErr = err
		} else {
			cluster, dir = c, d
		}
	}
	if startErr != nil {
		if errors.Is(startErr, pglocal.ErrNotInstalled) && os.Getenv("CI") != "true" {
			t.Skipf("PostgreSQL not installed: %v", startErr)
		}
		t.Fatalf("pgtest: starting PostgreSQL: %v", startErr)
	}
	return cluster.Primary
}

// Opener matches banking/store/dbtest's Postgres hook: it makes a fresh
// database for t and returns how to open (and re-open) a pgstore on it.
// Wire it with `dbtest.Postgres = pgtest.Opener` in a test file.
func Opener(t testing.TB) func() (store.DB, error) {
	t.Helper()
	dsn := Fresh(t)
	return func() (store.DB, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		db, err := pgstore.Open(ctx, pgstore.Config{DSN: dsn})
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return db, nil
	}
}

// Fresh returns the DSN (a libpq URL) of a new, empty database on the
// shared server, dropped when t ends.
func Fresh(t testing.TB) string {
	t.Helper()
	srv := Server(t)
	name := fmt.Sprintf("kwtest_%d_%d", os.Getpid(), seq.Add(1))
	admin := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, srv.DSN("postgres"))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	ident := pgx.Identifier{name}.Sanitize()
	if err := admin("CREATE DATABASE " + ident + " TEMPLATE template0"); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := admin("DROP DATABASE " + ident + " WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return srv.DSN(name)
}
