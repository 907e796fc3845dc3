// Package dbtest gives banking's test suites their store, so the same
// suites run on bbolt and on PostgreSQL (issue 17: one test suite, both
// backends, not two copies).
//
//	h := dbtest.New(t)
//	db := h.Open()  // the test's store
//	db.Close()      // a crash or restart test closes it ...
//	db = h.Open()   // ... and opens the same store again
//
// The backend is chosen by the environment variable KEYWARD_BANKING_STORE:
//
//   - unset or "bbolt": a bbolt file in t.TempDir(), opened with NoSync
//     unless Handle.Sync (a test's temporary file need not survive power
//     loss; a killed process loses nothing bbolt wrote, fsync or not);
//   - "postgres": Postgres(t) gives the open function of a fresh store for
//     the test. Postgres is a variable the PostgreSQL backend's test wiring
//     sets (it lives beside pgstore, so this package does not link
//     PostgreSQL); unset under "postgres", New fails the test saying so.
//
// Any other value fails the test. Tests that need bbolt itself (damaging
// the file, its lock timeout) open it with store.OpenBolt and say so.
//
// The last store Open returned is closed by t.Cleanup.
package dbtest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/banking/store"
)

// EnvBackend names the environment variable that picks the backend.
const EnvBackend = "KEYWARD_BANKING_STORE"

// Postgres, when set, returns how to open (and re-open) a fresh
// PostgreSQL store for t, dropped when t ends. The PostgreSQL test wiring
// sets it; see the package doc.
var Postgres func(t testing.TB) (open func() (store.DB, error))

// Handle is one test's store: the same records every time it is opened.
type Handle struct {
	t    testing.TB
	open func() (store.DB, error)
	last store.DB
	// Path is the bbolt file, "" on PostgreSQL.
	Path string
	// Sync, set before Open, makes a bbolt store fsync every commit as in
	// production (benchmarks); PostgreSQL stores always commit durably.
	Sync bool
}

// New picks the test's store from KEYWARD_BANKING_STORE (see the package
// doc); nothing is opened until Open.
func New(t testing.TB) *Handle {
	t.Helper()
	h := &Handle{t: t}
	switch b := os.Getenv(EnvBackend); b {
	case "", "bbolt":
		h.Path = filepath.Join(t.TempDir(), "bank.db")
		h.open = func() (store.DB, error) {
			db, err := bolt.Open(h.Path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: !h.Sync,
				NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
			if err != nil {
				return nil, err
			}
			return store.Bolt(db), nil
		}
	case "postgres":
		if Postgres == nil {
			t.Fatalf("%s=postgres but dbtest.Postgres is not set: link the PostgreSQL test wiring (banking/store/pgstore's) into this test binary, or unset %s to run on bbolt", EnvBackend, EnvBackend)
		}
		h.open = Postgres(t)
	default:
		t.Fatalf("%s=%q: want bbolt (the default) or postgres", EnvBackend, b)
	}
	t.Cleanup(func() {
		if h.last != nil {
			h.last.Close()
		}
	})
	return h
}

// Open opens the test's store, failing the test if it cannot. A test that
// re-opens closes the previous store first (bbolt's file lock).
func (h *Handle) Open() store.DB {
	h.t.Helper()
	db, err := h.open()
	if err != nil {
		h.t.Fatalf("open the test's store: %v", err)
	}
	h.last = db
	return db
}

// Nodes opens n handles on the test's store, as n banking nodes sharing
// it would hold (issue 17, stateless nodes). On PostgreSQL each is a store
// of its own (its own connections), closed by t.Cleanup. On bbolt, which
// one process owns, they are the one open file, each reporting Shared()
// true so that the code takes its shared-store paths (read-through caches,
// records another node may change): a test of that logic in one process,
// not of two processes; their Close does nothing (t.Cleanup closes the
// file).
func (h *Handle) Nodes(n int) []store.DB {
	h.t.Helper()
	out := make([]store.DB, n)
	if h.Path == "" {
		for i := range out {
			db, err := h.open()
			if err != nil {
				h.t.Fatalf("open node %d's store: %v", i, err)
			}
			h.t.Cleanup(func() { db.Close() })
			out[i] = db
		}
		return out
	}
	db := h.Open()
	for i := range out {
		out[i] = sharedNode{db}
	}
	return out
}

// sharedNode is one node's view of a bbolt store posing as shared.
type sharedNode struct{ store.DB }

func (sharedNode) Shared() bool { return true }
func (sharedNode) Close() error { return nil }

// Backend is the backend this test runs on: "bbolt" or "postgres".
func Backend() string {
	if os.Getenv(EnvBackend) == "postgres" {
		return "postgres"
	}
	return "bbolt"
}
