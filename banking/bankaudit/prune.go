package bankaudit

import (
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/keysvc/audit"
)

// MinRetention is the shortest retention banking accepts: six months
// (R-SRV-3 asks that audit records be kept at least six months).
const MinRetention = 180 * 24 * time.Hour

// ErrTooYoung: a prune asked to delete records younger than the retention.
var ErrTooYoung = errors.New("bankaudit: records younger than the retention cannot be pruned")

// PruneResult says what Prune did.
type PruneResult struct {
	Deleted int              // records deleted
	Base    audit.Checkpoint // the checkpoint the log now starts from
}

// Prune deletes the records (and checkpoints) before the newest signed
// checkpoint whose record is older than before, keeping that checkpoint
// and its record as the base the remaining log is verified from. It
// refuses a before later than now minus retention (itself at least
// MinRetention), and verifies the whole trail with pub first: a broken
// chain is never pruned (the evidence would go with it). Nothing to prune
// (no checkpoint old enough) is not an error: Deleted is 0.
//
// The deletion is one write transaction; run it when the bank is quiet if
// years of records go at once.
func Prune(db store.DB, pub *ecdsa.PublicKey, before time.Time, retention time.Duration, now time.Time) (PruneResult, error) {
	if retention < MinRetention {
		return PruneResult{}, fmt.Errorf("bankaudit: retention %v is shorter than the 180 days R-SRV-3 requires", retention)
	}
	if limit := now.Add(-retention); before.After(limit) {
		return PruneResult{}, fmt.Errorf("%w: -before %s is after %s (now minus the retention of %d days)", ErrTooYoung,
			before.UTC().Format(time.DateOnly), limit.UTC().Format(time.DateOnly), int(retention/(24*time.Hour)))
	}
	if _, err := Verify(db, pub); err != nil {
		return PruneResult{}, fmt.Errorf("bankaudit: the trail does not verify, nothing pruned: %w", err)
	}
	cps, err := Checkpoints(db)
	if err != nil {
		return PruneResult{}, err
	}
	var res PruneResult
	err = db.Update(func(tx store.Tx) error {
		res = PruneResult{}
		recs := tx.Bucket(bucketRecords)
		var base *audit.Checkpoint
		for i := len(cps) - 1; i >= 0 && base == nil; i-- {
			raw := recs.Get(seqKey(cps[i].Seq))
			if raw == nil {
				continue
			}
			r, err := audit.Unmarshal(raw)
			if err != nil {
				return err
			}
			if r.Time.Before(before) {
				base = &cps[i]
			}
		}
		if base == nil {
			return nil
		}
		res.Base = *base
		c := recs.Cursor()
		for k, _ := c.First(); k != nil && string(k) < string(seqKey(base.Seq)); k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			res.Deleted++
		}
		cc := tx.Bucket(bucketCheckpoints).Cursor()
		for k, _ := cc.First(); k != nil && string(k) < string(seqKey(base.Seq)); k, _ = cc.First() {
			if err := cc.Delete(); err != nil {
				return err
			}
		}
		v, err := json.Marshal(base)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyBase, v)
	})
	if err != nil {
		return PruneResult{}, fmt.Errorf("%w: prune: %w", ErrStore, err)
	}
	return res, nil
}
