// Package boltsurgeon edits a keysvc bbolt store (keysvc/boltstore) behind
// the store's back, the way anyone with write access to keysvc.db can with
// any bbolt editor. It exists for tests of audit verification (R-SRV-3):
// each function bypasses the chain on purpose, and audit verification must
// catch the result. Only tests import it: no command's dependency graph may
// contain it (TestNoCommandImportsSurgeon checks every package under cmd/),
// and the production store type (boltstore.Store) has no method that edits
// the audit log behind its chain. It is not internal because the tests that
// use it live in three trees (keysvc/boltstore, cmd/keysvc, softhsm-tests)
// and the project's top-level folders are fixed.
package boltsurgeon

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc/audit"
)

// The store's buckets and head key (see keysvc/boltstore's layout).
var (
	bucketAudit       = []byte("audit")
	bucketAuditMeta   = []byte("audit-meta")
	bucketCheckpoints = []byte("checkpoints")
	metaLast          = []byte("last")
)

// ErrNoRecord is returned when a named record does not exist.
var ErrNoRecord = errors.New("boltsurgeon: no such audit record")

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func noRecord(seq uint64) error { return fmt.Errorf("%w: %d", ErrNoRecord, seq) }

// TamperAudit replaces the stored JSON of record seq with fn's result (fn
// gets a copy of the current bytes), leaving the chain head alone.
func TamperAudit(db *bolt.DB, seq uint64, fn func(raw []byte) []byte) error {
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		raw := b.Get(seqKey(seq))
		if raw == nil {
			return noRecord(seq)
		}
		return b.Put(seqKey(seq), fn(bytes.Clone(raw)))
	})
}

// DeleteAudit removes record seq, leaving the chain head alone.
func DeleteAudit(db *bolt.DB, seq uint64) error {
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		if b.Get(seqKey(seq)) == nil {
			return noRecord(seq)
		}
		return b.Delete(seqKey(seq))
	})
}

// SwapAudit exchanges the stored bytes of records a and b (a reordering).
func SwapAudit(db *bolt.DB, a, b uint64) error {
	return db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketAudit)
		ra, rb := bk.Get(seqKey(a)), bk.Get(seqKey(b))
		switch {
		case ra == nil:
			return noRecord(a)
		case rb == nil:
			return noRecord(b)
		}
		ra, rb = bytes.Clone(ra), bytes.Clone(rb)
		if err := bk.Put(seqKey(a), rb); err != nil {
			return err
		}
		return bk.Put(seqKey(b), ra)
	})
}

// DeleteCheckpointsAfter removes every checkpoint that names a record after
// seq and returns how many it removed.
func DeleteCheckpointsAfter(db *bolt.DB, seq uint64) (int, error) {
	n := 0
	err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCheckpoints)
		var doomed [][]byte
		c := b.Cursor()
		for k, _ := c.Seek(seqKey(seq + 1)); k != nil; k, _ = c.Next() {
			doomed = append(doomed, bytes.Clone(k))
		}
		for _, k := range doomed {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(doomed)
		return nil
	})
	return n, err
}

// RewriteAuditFrom passes every record from seq from on through edit and
// reseals the chain from there (new Prev and Hash for each), moving the
// chain head: a forged tail whose hashes all hold. Checkpoints are left
// alone.
func RewriteAuditFrom(db *bolt.DB, from uint64, edit func(r *audit.Record)) error {
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		prevSeq, prevHash := from-1, audit.Genesis
		if from > 1 {
			raw := b.Get(seqKey(from - 1))
			if raw == nil {
				return noRecord(from - 1)
			}
			r, err := audit.Unmarshal(raw)
			if err != nil {
				return err
			}
			prevHash = r.Hash
		}
		var recs []audit.Record
		c := b.Cursor()
		for k, v := c.Seek(seqKey(from)); k != nil; k, v = c.Next() {
			r, err := audit.Unmarshal(v)
			if err != nil {
				return err
			}
			recs = append(recs, r)
		}
		for _, r := range recs {
			edit(&r)
			r.Seal(prevSeq, prevHash)
			v, err := r.Marshal()
			if err != nil {
				return err
			}
			if err := b.Put(seqKey(r.Seq), v); err != nil {
				return err
			}
			prevSeq, prevHash = r.Seq, r.Hash
		}
		return tx.Bucket(bucketAuditMeta).Put(metaLast, append(seqKey(prevSeq), prevHash...))
	})
}
