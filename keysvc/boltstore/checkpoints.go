package boltstore

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
)

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
		var raw []byte
		if c.Seq != 0 && c.Seq <= last {
			raw = tx.Bucket(bucketAudit).Get(seqKey(c.Seq))
		}
		if no, err := c.NamesRecord(last, raw); no != nil || err != nil {
			if no != nil {
				refused = fmt.Errorf("%w: %w", wire.ErrInvalidArgument, no)
				return refused
			}
			return err
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
	audit.SortCheckpoints(out)
	return out, nil
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
