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
// once. Stand-alone appends (Audit) are group-committed with db.Batch: one
// fsync covers many records.
package boltstore

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
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

// auditChunk is how many records AuditRecords reads per read transaction,
// so walking a long log never pins one transaction (and the pages it
// holds) for the whole walk.
const auditChunk = 1000

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

type auditAppend struct {
	rec  *audit.Record
	done chan error
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

// CreateKey stores a new key and appends rec (when not nil) in the same
// transaction. A taken name is refused with wire.ErrKeyExists. On
// success rec holds its committed Seq, Prev and Hash.
func (s *Store) CreateKey(k *keysvc.Key, rec *audit.Record) error {
	if k == nil || k.Name == "" {
		return fmt.Errorf("%w: a key needs a name", wire.ErrInvalidArgument)
	}
	v, err := json.Marshal(k)
	if err != nil {
		return fmt.Errorf("%w: encode key %q: %w", wire.ErrStore, k.Name, err)
	}
	var sealed audit.Record
	if rec != nil {
		sealed = *rec
	}
	var refused error
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		if b.Get([]byte(k.Name)) != nil {
			refused = fmt.Errorf("%w: %q", wire.ErrKeyExists, k.Name)
			return refused
		}
		if err := b.Put([]byte(k.Name), v); err != nil {
			return err
		}
		if rec == nil {
			return nil
		}
		return appendRecord(tx, &sealed)
	})
	switch {
	case refused != nil:
		return refused
	case err != nil:
		return fmt.Errorf("%w: create key %q: %w", wire.ErrStore, k.Name, err)
	}
	if rec != nil {
		*rec = sealed
	}
	return nil
}

// GetKey returns a fresh copy of the key; wire.ErrKeyNotFound if absent.
func (s *Store) GetKey(name string) (*keysvc.Key, error) {
	var k *keysvc.Key
	var missing error
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketKeys).Get([]byte(name))
		if v == nil {
			missing = fmt.Errorf("%w: %q", wire.ErrKeyNotFound, name)
			return missing
		}
		var err error
		k, err = decodeKey(v)
		return err
	})
	switch {
	case missing != nil:
		return nil, missing
	case err != nil:
		return nil, fmt.Errorf("%w: read key %q: %w", wire.ErrStore, name, err)
	}
	return k, nil
}

// ListKeys returns fresh copies of the keys named after after, by name,
// at most limit (0: all).
func (s *Store) ListKeys(after string, limit int) ([]*keysvc.Key, error) {
	var out []*keysvc.Key
	err := s.db.View(func(tx *bolt.Tx) error {
		// bbolt iterates in byte order of the names, which is Go's string
		// order.
		c := tx.Bucket(bucketKeys).Cursor()
		name, v := c.First()
		if after != "" {
			name, v = c.Seek([]byte(after))
			if name != nil && string(name) == after {
				name, v = c.Next()
			}
		}
		for ; name != nil && (limit <= 0 || len(out) < limit); name, v = c.Next() {
			k, err := decodeKey(v)
			if err != nil {
				return fmt.Errorf("key %q: %w", name, err)
			}
			out = append(out, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: list keys: %w", wire.ErrStore, err)
	}
	return out, nil
}

// UpdateKey runs fn on a fresh copy of the key inside one write
// transaction, stores the result and appends rec (when not nil). An error
// from fn aborts the transaction — nothing is stored, no record appended —
// and is returned as is. fn must not rename the key. UpdateKey returns a
// fresh copy of the stored key; on success rec holds its committed Seq,
// Prev and Hash.
func (s *Store) UpdateKey(name string, fn func(k *keysvc.Key) error, rec *audit.Record) (*keysvc.Key, error) {
	var (
		sealed audit.Record
		stored []byte
		appErr error // fn's error, or a refusal: returned without ErrStore
	)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		v := b.Get([]byte(name))
		if v == nil {
			appErr = fmt.Errorf("%w: %q", wire.ErrKeyNotFound, name)
			return appErr
		}
		k, err := decodeKey(v)
		if err != nil {
			return err
		}
		if err := fn(k); err != nil {
			appErr = err
			return err
		}
		if k.Name != name {
			appErr = fmt.Errorf("%w: an update of key %q must not rename it (to %q)", wire.ErrInvalidArgument, name, k.Name)
			return appErr
		}
		nv, err := json.Marshal(k)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		if err := b.Put([]byte(name), nv); err != nil {
			return err
		}
		stored = nv
		if rec == nil {
			return nil
		}
		sealed = *rec // after fn, which may fill in the record's result
		return appendRecord(tx, &sealed)
	})
	switch {
	case appErr != nil:
		return nil, appErr
	case err != nil:
		return nil, fmt.Errorf("%w: update key %q: %w", wire.ErrStore, name, err)
	}
	if rec != nil {
		*rec = sealed
	}
	k, err := decodeKey(stored)
	if err != nil {
		return nil, fmt.Errorf("%w: update key %q: %w", wire.ErrStore, name, err)
	}
	return k, nil
}

// Audit appends rec durably. Concurrent appends are group-committed by one
// writer goroutine: one transaction (and its fsyncs) for everything queued,
// up to MaxBatchSize.
// On success rec holds its committed Seq, Prev and Hash; on failure rec is
// untouched and the caller must fail its operation.
func (s *Store) Audit(rec *audit.Record) error {
	if rec == nil {
		return fmt.Errorf("%w: nil audit record", wire.ErrInvalidArgument)
	}
	if s.appends == nil {
		return fmt.Errorf("%w: %w", wire.ErrStore, bolt.ErrDatabaseReadOnly)
	}
	closed := fmt.Errorf("%w: %w", wire.ErrStore, bolt.ErrDatabaseNotOpen)
	select {
	case <-s.closing:
		return closed
	default:
	}
	req := auditAppend{rec: rec, done: make(chan error, 1)}
	select {
	case <-s.closing:
		return closed
	case s.appends <- req:
	}
	select {
	case err := <-req.done:
		return err
	case <-s.writerOut: // queued just as the writer left: it may have answered
		select {
		case err := <-req.done:
			return err
		default:
			return closed
		}
	}
}

// auditWriter commits queued audit records in groups until Close, then
// fails whatever is still queued.
func (s *Store) auditWriter() {
	defer close(s.writerOut)
	for {
		var first auditAppend
		select {
		case first = <-s.appends:
		case <-s.closing:
			for {
				select {
				case req := <-s.appends:
					req.done <- fmt.Errorf("%w: %w", wire.ErrStore, bolt.ErrDatabaseNotOpen)
				default:
					return
				}
			}
		}
		group := []auditAppend{first}
	drain:
		for len(group) < s.maxGroup {
			select {
			case req := <-s.appends:
				group = append(group, req)
			default:
				break drain
			}
		}
		s.commitGroup(group)
	}
}

// commitGroup appends a group in one transaction. Records are sealed on
// copies and handed back only after the commit, so a failed transaction
// leaves every caller's record untouched; the whole group then fails.
func (s *Store) commitGroup(group []auditAppend) {
	sealed := make([]audit.Record, len(group))
	err := s.db.Update(func(tx *bolt.Tx) error {
		for i, req := range group {
			sealed[i] = *req.rec
			if err := appendRecord(tx, &sealed[i]); err != nil {
				return err
			}
		}
		return nil
	})
	for i, req := range group {
		if err != nil {
			req.done <- fmt.Errorf("%w: append audit record: %w", wire.ErrStore, err)
			continue
		}
		*req.rec = sealed[i]
		req.done <- nil
	}
}

// AuditRecords calls fn for each record in order of its storage key,
// starting at seq from (0 and 1 both mean the whole log). Records are read
// auditChunk at a time, each chunk in its own read transaction, and fn runs
// outside any transaction (it may write to the store); records appended
// during the walk are included. An error from fn stops the walk and is
// returned as is. A record that does not decode is reported as
// wire.ErrStore and audit.ErrTampered.
func (s *Store) AuditRecords(from uint64, fn func(audit.Record) error) error {
	next := max(from, 1)
	for {
		var (
			chunk []audit.Record
			done  bool
		)
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketAudit).Cursor()
			for k, v := c.Seek(seqKey(next)); ; k, v = c.Next() {
				if k == nil {
					done = true
					return nil
				}
				if len(chunk) == auditChunk {
					return nil
				}
				if len(k) != 8 {
					return fmt.Errorf("%w: malformed audit key %x", audit.ErrTampered, k)
				}
				seq := binary.BigEndian.Uint64(k)
				r, err := audit.Unmarshal(v)
				if err != nil {
					return fmt.Errorf("%w: audit record stored under %d does not decode: %w", audit.ErrTampered, seq, err)
				}
				chunk = append(chunk, r)
				if seq == math.MaxUint64 {
					done = true
					return nil
				}
				next = seq + 1
			}
		})
		if err != nil {
			return fmt.Errorf("%w: read audit log: %w", wire.ErrStore, err)
		}
		for _, r := range chunk {
			if err := fn(r); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}

// LastAudit returns the sequence number and hash of the newest record (0
// and audit.Genesis when the log is empty).
func (s *Store) LastAudit() (uint64, []byte, error) {
	var (
		seq  uint64
		hash []byte
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		seq, hash, err = chainHead(tx)
		hash = bytes.Clone(hash) // bbolt's memory is valid only inside the transaction
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("%w: read audit head: %w", wire.ErrStore, err)
	}
	return seq, hash, nil
}

// AddCheckpoint stores a signed checkpoint. A checkpoint that does not name
// a record of the log (Seq 0, beyond the newest record, or a hash other
// than the record's) or does not follow the newest stored checkpoint
// (audit.Checkpoint.Follows) is refused with wire.ErrInvalidArgument:
// stored, it would make every later verification report tampering. The
// signature is not checked here (the store does not know the audit key).
func (s *Store) AddCheckpoint(c audit.Checkpoint) error {
	v, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("%w: encode checkpoint %d: %w", wire.ErrStore, c.Seq, err)
	}
	var refused error
	err = s.db.Update(func(tx *bolt.Tx) error {
		last, _, err := chainHead(tx)
		if err != nil {
			return err
		}
		if c.Seq == 0 || c.Seq > last {
			refused = fmt.Errorf("%w: checkpoint names audit record %d but the log ends at %d", wire.ErrInvalidArgument, c.Seq, last)
			return refused
		}
		raw := tx.Bucket(bucketAudit).Get(seqKey(c.Seq))
		if raw == nil {
			refused = fmt.Errorf("%w: checkpoint names audit record %d, which is missing", wire.ErrInvalidArgument, c.Seq)
			return refused
		}
		r, err := audit.Unmarshal(raw)
		if err != nil {
			return fmt.Errorf("audit record %d: %w", c.Seq, err)
		}
		if !bytes.Equal(r.Hash, c.Hash) {
			refused = fmt.Errorf("%w: checkpoint hash differs from that of audit record %d", wire.ErrInvalidArgument, c.Seq)
			return refused
		}
		prev, err := newestCheckpoint(tx)
		if err != nil {
			return err
		}
		if err := c.Follows(prev); err != nil {
			refused = fmt.Errorf("%w: the checkpoint does not chain to the newest stored one: %w", wire.ErrInvalidArgument, err)
			return refused
		}
		return tx.Bucket(bucketCheckpoints).Put(seqKey(c.Seq), v)
	})
	switch {
	case refused != nil:
		return refused
	case err != nil:
		return fmt.Errorf("%w: add checkpoint %d: %w", wire.ErrStore, c.Seq, err)
	}
	return nil
}

// Checkpoints lists the stored checkpoints by Seq.
func (s *Store) Checkpoints() ([]audit.Checkpoint, error) {
	var out []audit.Checkpoint
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCheckpoints).ForEach(func(k, v []byte) error {
			c, err := audit.UnmarshalCheckpoint(v)
			if err != nil {
				return fmt.Errorf("%w: checkpoint %x: %w", audit.ErrTampered, k, err)
			}
			out = append(out, c)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("%w: list checkpoints: %w", wire.ErrStore, err)
	}
	// Stored under their Seq already; sort by the decoded Seq in case the
	// file was edited, as Verify expects that order.
	slices.SortStableFunc(out, func(a, b audit.Checkpoint) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return out, nil
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

// newestCheckpoint returns the checkpoint stored under the highest Seq
// (nil when there is none).
func newestCheckpoint(tx *bolt.Tx) (*audit.Checkpoint, error) {
	k, v := tx.Bucket(bucketCheckpoints).Cursor().Last()
	if k == nil {
		return nil, nil
	}
	c, err := audit.UnmarshalCheckpoint(v)
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint %x: %w", audit.ErrTampered, k, err)
	}
	return &c, nil
}

// AuditFormat reports the log's format (keysvc.Store).
func (s *Store) AuditFormat() (int, error) {
	var f int
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		f, err = auditFormat(tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("%w: read audit format: %w", wire.ErrStore, err)
	}
	return f, nil
}

func auditFormat(tx *bolt.Tx) (int, error) {
	v := tx.Bucket(bucketAuditMeta).Get(metaFormat)
	if v == nil {
		return 1, nil
	}
	f, err := strconv.Atoi(string(v))
	if err != nil || f < 1 {
		return 0, fmt.Errorf("audit-meta holds a malformed format %q", v)
	}
	return f, nil
}

// MigrateAudit moves a format-1 log to keysvc.AuditFormat in one write
// transaction (keysvc.AuditMigration has the steps). It holds the whole
// log in memory once: a one-time cost at the first start of a new keysvc.
// On any error nothing changes.
func (s *Store) MigrateAudit(m keysvc.AuditMigration) error {
	if m.Final == nil || m.Rekey == nil || m.Sign == nil {
		return fmt.Errorf("%w: an audit migration needs Rekey, Final and Sign", wire.ErrInvalidArgument)
	}
	final := *m.Final
	err := s.db.Update(func(tx *bolt.Tx) error {
		if f, err := auditFormat(tx); err != nil || f != 1 {
			return cmp.Or(err, fmt.Errorf("the log is already in format %d", f))
		}
		last, lastHash, err := chainHead(tx)
		if err != nil {
			return err
		}
		if last != m.Last || !bytes.Equal(lastHash, m.LastHash) {
			return fmt.Errorf("the log ends at record %d, not at the verified record %d", last, m.Last)
		}
		recs, rekeyed, err := rekeyChain(tx, m.Rekey)
		if err != nil {
			return err
		}
		if err := putRecords(tx, recs); err != nil {
			return err
		}
		dropped := tx.Bucket(bucketCheckpoints).Stats().KeyN
		if err := tx.DeleteBucket(bucketCheckpoints); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketCheckpoints); err != nil {
			return err
		}
		final.Detail = fmt.Sprintf("records=%d digests_rekeyed=%d checkpoints_dropped=%d", len(recs), rekeyed, dropped)
		if err := appendRecord(tx, &final); err != nil {
			return err
		}
		cp, err := m.Sign(final.Seq, final.Hash)
		if err != nil {
			return err
		}
		v, err := json.Marshal(cp)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketCheckpoints).Put(seqKey(cp.Seq), v); err != nil {
			return err
		}
		return tx.Bucket(bucketAuditMeta).Put(metaFormat, []byte(strconv.Itoa(keysvc.AuditFormat)))
	})
	if err != nil {
		return fmt.Errorf("%w: migrate audit log: %w", wire.ErrStore, err)
	}
	*m.Final = final
	return nil
}

// rekeyChain reads the whole log, checking the old chain as it goes, and
// returns it with each digest rekeyed and the chain resealed.
func rekeyChain(tx *bolt.Tx, rekey func(string) (string, error)) ([]audit.Record, int, error) {
	var (
		recs    []audit.Record
		rekeyed int
		ck      = audit.NewChecker()
	)
	prevSeq, prevHash := uint64(0), audit.Genesis
	err := tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
		r, err := audit.Unmarshal(v)
		if err != nil {
			return fmt.Errorf("%w: audit record %x does not decode: %w", audit.ErrTampered, k, err)
		}
		if err := ck.Next(r); err != nil {
			return err
		}
		nd, err := rekey(r.RequestDigest)
		if err != nil {
			return fmt.Errorf("record %d: %w", r.Seq, err)
		}
		if nd != r.RequestDigest {
			rekeyed++
		}
		r.RequestDigest = nd
		r.Seal(prevSeq, prevHash)
		prevSeq, prevHash = r.Seq, r.Hash
		recs = append(recs, r)
		return nil
	})
	return recs, rekeyed, err
}

// putRecords stores recs over their old versions and moves the head.
func putRecords(tx *bolt.Tx, recs []audit.Record) error {
	b := tx.Bucket(bucketAudit)
	for i := range recs {
		v, err := recs[i].Marshal()
		if err != nil {
			return err
		}
		if err := b.Put(seqKey(recs[i].Seq), v); err != nil {
			return err
		}
	}
	if len(recs) == 0 {
		return nil
	}
	r := recs[len(recs)-1]
	return tx.Bucket(bucketAuditMeta).Put(metaLast, append(seqKey(r.Seq), r.Hash...))
}

// appendRecord seals r after the chain head of tx, stores it and moves the
// head. It reads everything from tx, so it is safe to run again in a
// retried batch.
func appendRecord(tx *bolt.Tx, r *audit.Record) error {
	seq, hash, err := chainHead(tx)
	if err != nil {
		return err
	}
	r.Seal(seq, hash) // copies hash
	key := seqKey(r.Seq)
	b := tx.Bucket(bucketAudit)
	if b.Get(key) != nil {
		// Never overwrite a record: the head in audit-meta is behind the log.
		return fmt.Errorf("audit record %d already exists but audit-meta says the log ends at %d", r.Seq, seq)
	}
	v, err := r.Marshal()
	if err != nil {
		return fmt.Errorf("encode audit record: %w", err)
	}
	if err := b.Put(key, v); err != nil {
		return err
	}
	return tx.Bucket(bucketAuditMeta).Put(metaLast, append(seqKey(r.Seq), r.Hash...))
}

// chainHead reads the newest seq and hash from audit-meta (0 and
// audit.Genesis when empty). The hash points into bbolt's memory unless
// it is Genesis.
func chainHead(tx *bolt.Tx) (uint64, []byte, error) {
	v := tx.Bucket(bucketAuditMeta).Get(metaLast)
	if v == nil {
		return 0, audit.Genesis, nil
	}
	if len(v) <= 8 {
		return 0, nil, fmt.Errorf("audit-meta holds a malformed head (%d bytes)", len(v))
	}
	return binary.BigEndian.Uint64(v[:8]), v[8:], nil
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func decodeKey(v []byte) (*keysvc.Key, error) {
	k := new(keysvc.Key)
	if err := json.Unmarshal(v, k); err != nil {
		return nil, fmt.Errorf("decode key: %w", err)
	}
	return k, nil
}
