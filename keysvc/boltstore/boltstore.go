// Package boltstore is keysvc's embedded Store: keys and the audit log in
// one bbolt file (R-TOK-8 lifecycle, R-SRV-3 tamper-evident audit).
//
// Layout:
//
//	keys         name → JSON of keysvc.Key
//	audit        8-byte big-endian seq → JSON of audit.Record
//	audit-meta   "last" → 8-byte big-endian seq of the newest record, then its hash
//	             "format" → the log format in decimal ("2" = keysvc.AuditFormat);
//	             absent in a log written before keyed request digests (format 1)
//	checkpoints  8-byte big-endian seq → JSON of audit.Checkpoint (chained)
//	service-keys "record" → JSON of keysvc.ServiceKeyRecord (created with it;
//	             absent in a store written before service keys were recorded)
//	probe        scratch bucket for Writable
//
// The file may be shared with the PIN guard (token.NewBoltStore), whose
// buckets ("pin-guard", "pin-guard-events") this package never touches.
//
// Every change to a key and its audit record are written in one
// transaction. Audit records are sealed (Seq, Prev, Hash) inside the
// transaction that stores them, from the chain head read in that same
// transaction, so the chain cannot fork however many callers append at
// once. Stand-alone appends (Audit) are group-committed by one writer
// goroutine: one transaction, so one fsync, covers many records.
//
// Files, one concern each: boltstore.go (open, layout, buckets, close,
// readiness), keys.go (the keys bucket), auditlog.go (the audit chain: group
// commit, reading, the head), checkpoints.go (signed checkpoints),
// auditformat.go (the log format and its one-time migration), servicekeys.go
// (the service-keys record).
package boltstore

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/wire"
)

var (
	bucketKeys        = []byte("keys")
	bucketAudit       = []byte("audit")
	bucketAuditMeta   = []byte("audit-meta")
	bucketCheckpoints = []byte("checkpoints")
	bucketProbe       = []byte("probe")

	metaLast   = []byte("last")   // in audit-meta: seq (8 bytes) then hash
	metaFormat = []byte("format") // in audit-meta: the log format, decimal
	probeKey   = []byte("probe")
)

// DefaultMaxBatchSize is the default of Options.MaxBatchSize.
const DefaultMaxBatchSize = 1024

// Options tune the store. Zero values take the defaults.
type Options struct {
	// MaxBatchSize is the most audit appends committed by one transaction
	// (default 1024). There is no delay to wait for: appends queue while
	// the previous group commits, so groups grow with the load.
	MaxBatchSize int
	// ReadOnly opens an existing store for reading only (`keysvc audit
	// verify`); every write fails with wire.ErrStore. bbolt takes a
	// shared lock, so this too waits for a running service and gives up
	// after 5 s.
	ReadOnly bool
}

// Store is the bbolt keysvc.Store.
type Store struct {
	db *bolt.DB

	// The audit writer: Audit queues a record and waits; one goroutine
	// commits whatever has queued in one transaction (group commit), with
	// no timer: an idle store commits a lone record at once, a busy one
	// commits everything that queued during the previous commit.
	appends   chan auditAppend
	closeOnce sync.Once
	closing   chan struct{}
	writerOut chan struct{} // closed when the writer has exited
	maxGroup  int
}

var _ keysvc.Store = (*Store)(nil)

// Open opens (or creates, mode 0600) the bbolt file at path. The file is
// locked: a second process opening it waits up to 5 s and fails, so two
// services can never write the same audit chain.
func Open(path string, opts Options) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: opts.ReadOnly,
		// The freelist is rebuilt at open instead of written by every commit:
		// less I/O per audited operation (bbolt documents it as safe).
		NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", wire.ErrStore, path, err)
	}
	if opts.ReadOnly {
		// Nothing can be created: the buckets must be there already.
		err := db.View(func(tx *bolt.Tx) error {
			for _, name := range [][]byte{bucketKeys, bucketAudit, bucketAuditMeta, bucketCheckpoints} {
				if tx.Bucket(name) == nil {
					return fmt.Errorf("no bucket %q: not a keysvc store", name)
				}
			}
			return nil
		})
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("%w: open %s: %w", wire.ErrStore, path, err)
		}
		return &Store{db: db, closing: make(chan struct{})}, nil
	}
	s, err := New(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	if opts.MaxBatchSize > 0 {
		s.maxGroup = opts.MaxBatchSize
	}
	return s, nil
}

// New uses an already open database, creating the store's buckets.
func New(db *bolt.DB) (*Store, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketKeys, bucketAudit, bucketAuditMeta, bucketCheckpoints, bucketProbe} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("bucket %s: %w", name, err)
			}
		}
		// A log with no record yet starts in the current format; one
		// written by an older keysvc stays format 1 until keysvc migrates
		// it (keysvc.AuditMigration).
		meta := tx.Bucket(bucketAuditMeta)
		if meta.Get(metaFormat) == nil && meta.Get(metaLast) == nil {
			return meta.Put(metaFormat, []byte(strconv.Itoa(keysvc.AuditFormat)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: prepare store: %w", wire.ErrStore, err)
	}
	s := &Store{db: db, appends: make(chan auditAppend, 4096), closing: make(chan struct{}), writerOut: make(chan struct{}), maxGroup: DefaultMaxBatchSize}
	go s.auditWriter()
	return s, nil
}

// DB returns the underlying database, to share it (token.NewBoltStore).
func (s *Store) DB() *bolt.DB { return s.db }

// Close closes the database (also for the other users of a shared one).
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	if s.writerOut != nil {
		<-s.writerOut
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("%w: close: %w", wire.ErrStore, err)
	}
	return nil
}

// Writable checks that a write transaction commits (readiness): it writes
// and deletes a probe key.
func (s *Store) Writable() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketProbe)
		if err != nil {
			return err
		}
		if err := b.Put(probeKey, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
			return err
		}
		return b.Delete(probeKey)
	})
	if err != nil {
		return fmt.Errorf("%w: not writable: %w", wire.ErrStore, err)
	}
	return nil
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }
