package store

import (
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bolt wraps an open bbolt handle as a DB: View, Update and Batch map 1:1
// onto bbolt's (Batch may run fn twice, as bbolt documents), Ensure is
// CreateBucketIfNotExists for each name in one Update, SetBatchLimits sets
// db.MaxBatchSize and db.MaxBatchDelay. Backend is "bbolt", Shared false:
// bbolt's file lock lets one process own the store.
//
// A fault of bbolt itself (the commit's write or fsync failing, a closed
// handle) is returned wrapping ErrBackend; an error fn returns is returned
// as it is. Close closes the bbolt handle.
func Bolt(db *bolt.DB) DB { return boltDB{db} }

// OpenBolt opens (or creates, mode 0600) the bbolt file at path. bbolt
// locks the file: when another process holds it, OpenBolt waits timeout
// (0: 5 s) and fails with an error naming the file. The freelist is
// rebuilt at open instead of written by every commit (NoFreelistSync, map
// freelist: less I/O per group commit; bbolt documents it as safe).
func OpenBolt(path string, timeout time.Duration) (DB, error) {
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout,
		NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: open %s: locked by another process for %v (is banking already running on it?)", ErrBackend, path, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", ErrBackend, path, err)
	}
	return boltDB{db}, nil
}

// OpenBoltReadOnly opens an existing bbolt file for reading only (a
// shared lock: it waits, up to timeout, while a banking process holds the
// file). Update, Batch and Ensure fail; offline checks (`banking audit
// verify`) use it so that they can never write.
func OpenBoltReadOnly(path string, timeout time.Duration) (DB, error) {
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", ErrBackend, path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: true})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: open %s: locked by another process for %v (stop the banking process that holds it, or check a copy)", ErrBackend, path, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", ErrBackend, path, err)
	}
	return boltDB{db}, nil
}

type boltDB struct{ db *bolt.DB }

// run calls a bbolt transaction method with fn adapted, and marks as
// ErrBackend any error that is not the one fn returned (the commit's I/O,
// a closed database).
func (d boltDB) run(method func(func(*bolt.Tx) error) error, fn func(Tx) error) error {
	var fnErr error
	err := method(func(tx *bolt.Tx) error {
		fnErr = fn(boltTx{tx})
		return fnErr
	})
	if err == nil || (fnErr != nil && err == fnErr) {
		return err
	}
	return fmt.Errorf("%w: bbolt %s: %w", ErrBackend, d.db.Path(), err)
}

func (d boltDB) View(fn func(Tx) error) error   { return d.run(d.db.View, fn) }
func (d boltDB) Update(fn func(Tx) error) error { return d.run(d.db.Update, fn) }
func (d boltDB) Batch(fn func(Tx) error) error  { return d.run(d.db.Batch, fn) }

func (d boltDB) Ensure(names ...[]byte) error {
	return d.Update(func(tx Tx) error {
		btx := tx.(boltTx).tx
		for _, n := range names {
			if _, err := btx.CreateBucketIfNotExists(n); err != nil {
				return fmt.Errorf("bucket %s: %w", n, err)
			}
		}
		return nil
	})
}

func (d boltDB) SetBatchLimits(maxSize int, maxDelay time.Duration) {
	if maxSize > 0 {
		d.db.MaxBatchSize = maxSize
	}
	if maxDelay > 0 {
		d.db.MaxBatchDelay = maxDelay
	}
}

func (d boltDB) Backend() string { return "bbolt" }
func (d boltDB) Shared() bool    { return false }
func (d boltDB) Close() error    { return d.db.Close() }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) Bucket(name []byte) Bucket {
	b := t.tx.Bucket(name)
	if b == nil {
		return nil // an untyped nil, so callers' b == nil holds
	}
	return boltBucket{b}
}

func (t boltTx) Writable() bool { return t.tx.Writable() }

type boltBucket struct{ b *bolt.Bucket }

func (b boltBucket) Get(key []byte) []byte                    { return b.b.Get(key) }
func (b boltBucket) Put(key, value []byte) error              { return b.b.Put(key, value) }
func (b boltBucket) Delete(key []byte) error                  { return b.b.Delete(key) }
func (b boltBucket) Cursor() Cursor                           { return boltCursor{b.b.Cursor()} }
func (b boltBucket) ForEach(fn func(k, v []byte) error) error { return b.b.ForEach(fn) }
func (b boltBucket) NextSequence() (uint64, error)            { return b.b.NextSequence() }
func (b boltBucket) Sequence() uint64                         { return b.b.Sequence() }

// KeyN counts the keys. bbolt's Stats().KeyN reads the pages as committed
// and misses this transaction's own writes, so a writable transaction
// counts with a cursor (the contract: a transaction sees its own writes;
// storetest's KeyN test found it).
func (b boltBucket) KeyN() int {
	if !b.b.Tx().Writable() {
		return b.b.Stats().KeyN
	}
	n := 0
	c := b.b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

type boltCursor struct{ c *bolt.Cursor }

func (c boltCursor) First() ([]byte, []byte)        { return c.c.First() }
func (c boltCursor) Last() ([]byte, []byte)         { return c.c.Last() }
func (c boltCursor) Seek(s []byte) ([]byte, []byte) { return c.c.Seek(s) }
func (c boltCursor) Next() ([]byte, []byte)         { return c.c.Next() }
func (c boltCursor) Prev() ([]byte, []byte)         { return c.c.Prev() }
func (c boltCursor) Delete() error                  { return c.c.Delete() }

// AppendOnly is an optional ability of a Bucket (bbolt's): the caller
// promises its writes in this transaction go at the bucket's end, so
// pages are packed full instead of split half empty (bbolt's FillPercent
// = 1). Backends without pages do not offer it; callers check with a type
// assertion and carry on without it.
type AppendOnly interface {
	AppendOnly()
}

var _ AppendOnly = boltBucket{}

func (b boltBucket) AppendOnly() { b.b.FillPercent = 1.0 }
