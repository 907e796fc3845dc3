package storetest_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/storetest"
)

// TestBolt runs the conformance suite on bbolt (store.OpenBolt), a fresh
// file per test; pgstore runs it on PostgreSQL in its own tests.
func TestBolt(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.DB {
		db, err := store.OpenBolt(filepath.Join(t.TempDir(), "store.db"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

// BenchmarkBoltLedger: BenchLedger on bbolt with fsync on every commit (as
// production), beside pgstore's BenchmarkLedgerTxn.
func BenchmarkBoltLedger(b *testing.B) {
	storetest.BenchLedger(b, func(b *testing.B) store.DB {
		db, err := store.OpenBolt(filepath.Join(b.TempDir(), "store.db"), time.Second)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		return db
	})
}
