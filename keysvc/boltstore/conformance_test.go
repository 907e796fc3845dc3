package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/storetest"
)

// TestStoreConformance runs the keysvc.Store conformance suite (the one the
// etcd store runs too) on a fresh bbolt file per subtest.
func TestStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) keysvc.Store {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "keyward.db"), boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
