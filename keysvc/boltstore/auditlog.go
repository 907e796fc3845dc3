package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
)

// auditChunk is how many records AuditRecords reads per read transaction,
// so walking a long log never pins one transaction (and the pages it
// holds) for the whole walk.
const auditChunk = 1000

type auditAppend struct {
	rec  *audit.Record
	done chan error
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
