package store_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/store"
)

func openBolt(t *testing.T) (store.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := store.OpenBolt(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func TestBoltBucketsCursorsSequences(t *testing.T) {
	db, _ := openBolt(t)
	if db.Backend() != "bbolt" || db.Shared() {
		t.Fatalf("backend %q shared %v", db.Backend(), db.Shared())
	}
	if err := db.Ensure([]byte("a"), []byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := db.Ensure([]byte("a")); err != nil { // idempotent
		t.Fatal(err)
	}
	err := db.Update(func(tx store.Tx) error {
		if !tx.Writable() {
			t.Error("Update tx not writable")
		}
		if tx.Bucket([]byte("missing")) != nil {
			t.Error("missing bucket is not nil")
		}
		b := tx.Bucket([]byte("a"))
		for _, k := range []string{"k3", "k1", "k2"} {
			if err := b.Put([]byte(k), []byte("v"+k)); err != nil {
				return err
			}
		}
		if got := b.Get([]byte("k2")); string(got) != "vk2" {
			t.Errorf("own write read back as %q", got)
		}
		for want := uint64(1); want <= 3; want++ {
			n, err := b.NextSequence()
			if err != nil || n != want {
				t.Errorf("NextSequence = %d, %v; want %d", n, err, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx store.Tx) error {
		if tx.Writable() {
			t.Error("View tx writable")
		}
		b := tx.Bucket([]byte("a"))
		if b.Sequence() != 3 || b.KeyN() != 3 {
			t.Errorf("Sequence %d KeyN %d", b.Sequence(), b.KeyN())
		}
		var keys []string
		b.ForEach(func(k, _ []byte) error { keys = append(keys, string(k)); return nil })
		if strings.Join(keys, ",") != "k1,k2,k3" {
			t.Errorf("ForEach order %v", keys)
		}
		c := b.Cursor()
		if k, _ := c.Seek([]byte("k15")); string(k) != "k2" {
			t.Errorf("Seek k15 -> %q", k)
		}
		if k, _ := c.Prev(); string(k) != "k1" {
			t.Errorf("Prev -> %q", k)
		}
		if k, v := c.Prev(); k != nil || v != nil {
			t.Errorf("Prev past start -> %q %q", k, v)
		}
		if k, _ := c.Last(); string(k) != "k3" {
			t.Errorf("Last -> %q", k)
		}
		if k, _ := c.Next(); k != nil {
			t.Errorf("Next past end -> %q", k)
		}
		if err := b.Put([]byte("x"), []byte("y")); err == nil {
			t.Error("Put in a View succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Cursor.Delete and Delete of an absent key.
	err = db.Update(func(tx store.Tx) error {
		b := tx.Bucket([]byte("a"))
		c := b.Cursor()
		c.First()
		if err := c.Delete(); err != nil {
			return err
		}
		return b.Delete([]byte("absent"))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx store.Tx) error {
		if n := tx.Bucket([]byte("a")).KeyN(); n != 2 {
			t.Errorf("KeyN after cursor delete %d", n)
		}
		return nil
	})
}

func TestBoltFailedUpdateStoresNothingAndKeepsFnError(t *testing.T) {
	db, _ := openBolt(t)
	db.Ensure([]byte("a"))
	mine := errors.New("refused")
	err := db.Update(func(tx store.Tx) error {
		tx.Bucket([]byte("a")).Put([]byte("k"), []byte("v"))
		return mine
	})
	if err != mine {
		t.Fatalf("Update returned %v, want fn's error unchanged", err)
	}
	if errors.Is(err, store.ErrBackend) {
		t.Fatal("fn's error marked ErrBackend")
	}
	db.View(func(tx store.Tx) error {
		if v := tx.Bucket([]byte("a")).Get([]byte("k")); v != nil {
			t.Errorf("rolled back write visible: %q", v)
		}
		return nil
	})
}

func TestBoltBatchGroupCommits(t *testing.T) {
	db, _ := openBolt(t)
	db.Ensure([]byte("a"))
	db.SetBatchLimits(8, 5*time.Millisecond)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- db.Batch(func(tx store.Tx) error {
				_, err := tx.Bucket([]byte("a")).NextSequence()
				return err
			})
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	db.View(func(tx store.Tx) error {
		if s := tx.Bucket([]byte("a")).Sequence(); s != 32 {
			t.Errorf("sequence after 32 batched increments: %d", s)
		}
		return nil
	})
}

// bbolt-specific: the file lock. A second OpenBolt of a held file fails
// after its timeout with an error naming the file.
func TestOpenBoltLockTimeoutNamesFile(t *testing.T) {
	_, path := openBolt(t)
	_, err := store.OpenBolt(path, 50*time.Millisecond)
	if err == nil {
		t.Fatal("second open of a locked file succeeded")
	}
	if !errors.Is(err, store.ErrBackend) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("lock error %v: want ErrBackend naming %s", err, path)
	}
}

func TestBoltClosedHandleIsBackendFault(t *testing.T) {
	db, _ := openBolt(t)
	db.Close()
	err := db.View(func(store.Tx) error { return nil })
	if !errors.Is(err, store.ErrBackend) {
		t.Fatalf("View on a closed handle: %v, want ErrBackend", err)
	}
}

func TestBoltReopenKeepsData(t *testing.T) {
	db, path := openBolt(t)
	db.Ensure([]byte("a"))
	db.Update(func(tx store.Tx) error { return tx.Bucket([]byte("a")).Put([]byte("k"), []byte("v")) })
	db.Close()
	db2, err := store.OpenBolt(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	db2.View(func(tx store.Tx) error {
		if v := tx.Bucket([]byte("a")).Get([]byte("k")); !bytes.Equal(v, []byte("v")) {
			t.Errorf("after reopen: %q", v)
		}
		return nil
	})
}

// TestOpenBoltReadOnly: an existing file opens for reading and refuses
// writes; a missing file is not created; a file a writer holds is
// reported as locked after the timeout.
func TestOpenBoltReadOnly(t *testing.T) {
	db, path := openBolt(t)
	if err := db.Ensure([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx store.Tx) error { return tx.Bucket([]byte("b")).Put([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenBoltReadOnly(path, 100*time.Millisecond); !errors.Is(err, store.ErrBackend) || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("a file a writer holds: %v", err)
	}
	db.Close()
	ro, err := store.OpenBoltReadOnly(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	var got []byte
	if err := ro.View(func(tx store.Tx) error { got = bytes.Clone(tx.Bucket([]byte("b")).Get([]byte("k"))); return nil }); err != nil || string(got) != "v" {
		t.Fatalf("read %q %v", got, err)
	}
	if err := ro.Update(func(tx store.Tx) error { return tx.Bucket([]byte("b")).Put([]byte("k"), []byte("w")) }); err == nil {
		t.Fatal("a write through a read-only store succeeded")
	}
	missing := filepath.Join(t.TempDir(), "none.db")
	if _, err := store.OpenBoltReadOnly(missing, time.Second); err == nil {
		t.Fatal("a missing file opened")
	}
}
