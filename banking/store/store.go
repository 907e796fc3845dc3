// Package store is what every banking package keeps its records in: a
// transactional, ordered key-value store with named buckets, shaped after
// bbolt's API so that the ledger, the auth stores and banking's own records
// run unchanged on either backend:
//
//   - bbolt (Bolt): the embedded default, one file on one machine
//     (make run-banking, tests, a branch with no database);
//   - PostgreSQL (banking/store/pgstore): the bank's deployment, shared by
//     several stateless banking nodes, with a synchronous standby.
//
// # The contract
//
// View runs fn in a read-only transaction that sees one consistent
// snapshot. Update runs fn in a read-write transaction that is serialisable
// with every other Update and Batch, on every node sharing the store: fn
// behaves as if it were the only writer, exactly as under bbolt's single
// writer lock. Batch is Update with group commit: concurrent callers may
// share one transaction, and fn may be run more than once (when a
// neighbour in its batch fails, or when a backend must retry a
// serialisation conflict), so fn must read everything it needs inside the
// transaction and have no effect outside it other than assigning its
// results. Update's fn may also be re-run by a backend that retries
// serialisation conflicts (PostgreSQL); the same rule applies.
//
// A transaction that returns an error stores nothing. Writes made in a
// transaction are visible to its own later reads and cursors. Keys sort
// bytewise. Values returned by Get and cursors are valid only until the
// transaction ends; copy them to keep them.
//
// A backend fault seen inside fn (a lost connection, a timeout) is sticky:
// reads return nil from then on and the transaction returns the fault (an
// error wrapping ErrBackend), even when fn returned an error of its own
// that the nil read made it believe — so "not found" is never reported
// for "the database is down".
package store

import (
	"errors"
	"time"
)

// ErrBackend marks a fault of the storage backend itself (I/O, a lost
// database connection, a timeout, too many serialisation retries): a server
// fault, never the caller's.
var ErrBackend = errors.New("store: backend failure")

// ErrBucketMissing is returned when a transaction names a bucket that was
// never created with Ensure.
var ErrBucketMissing = errors.New("store: bucket does not exist")

// DB is a banking store: bbolt (Bolt) or PostgreSQL (pgstore.Open).
type DB interface {
	// View runs fn in a read-only transaction.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write, serialisable transaction.
	Update(fn func(Tx) error) error
	// Batch is Update with group commit; fn may run more than once.
	Batch(fn func(Tx) error) error
	// Ensure creates the named buckets if missing (idempotent).
	Ensure(names ...[]byte) error
	// SetBatchLimits sets the most functions one Batch transaction holds
	// and how long the first waits for company (0 leaves a value as is).
	SetBatchLimits(maxSize int, maxDelay time.Duration)
	// Backend names the backend: "bbolt" or "postgres".
	Backend() string
	// Shared reports whether other processes may write the same store
	// (PostgreSQL): in-memory caches of stored records must then not be
	// trusted across requests.
	Shared() bool
	// Close releases the store.
	Close() error
}

// Tx is one transaction.
type Tx interface {
	// Bucket returns the named bucket, or nil when it does not exist.
	Bucket(name []byte) Bucket
	// Writable reports whether this is an Update or Batch transaction.
	Writable() bool
}

// Bucket is an ordered set of key/value pairs inside a transaction.
type Bucket interface {
	// Get returns the value at key, nil when absent.
	Get(key []byte) []byte
	// Put stores value at key (key non-empty); only in a writable transaction.
	Put(key, value []byte) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(key []byte) error
	// Cursor walks the bucket in key order.
	Cursor() Cursor
	// ForEach calls fn for every pair in key order; an error stops it.
	ForEach(fn func(k, v []byte) error) error
	// NextSequence increments and returns the bucket's sequence (first
	// call: 1); only in a writable transaction.
	NextSequence() (uint64, error)
	// Sequence returns the bucket's sequence without changing it.
	Sequence() uint64
	// KeyN counts the keys in the bucket.
	KeyN() int
}

// Cursor walks a bucket; every method returns nil, nil past either end.
type Cursor interface {
	First() (k, v []byte)
	Last() (k, v []byte)
	// Seek moves to the first key ≥ seek.
	Seek(seek []byte) (k, v []byte)
	Next() (k, v []byte)
	Prev() (k, v []byte)
	// Delete removes the pair the cursor is on.
	Delete() error
}

// Keys names keys of one bucket (Prefetcher).
type Keys struct {
	Bucket []byte
	Keys   [][]byte
}

// Prefetcher is implemented by transactions whose reads each cost a round
// trip to a server (PostgreSQL): Prefetch reads the named keys of one or
// more buckets in one round trip, and the Gets that follow are answered
// from the transaction. It is a hint and changes no result: a Get of a key
// not prefetched still reads it, a key the transaction wrote keeps its
// written value, and a backend without it (bbolt, whose reads are memory
// reads) is simply not asked. A fault is sticky as for Get.
type Prefetcher interface {
	Prefetch(keys ...Keys)
}
