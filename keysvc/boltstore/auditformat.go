package boltstore

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
)

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
