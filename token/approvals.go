package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/pkcs11shim"
)

// Ceremony approvals are one-use (issue 13 defect 2): the ceremony records
// each approval's nonce in the PIN guard's bbolt file (keysvc's keysvc.db,
// which every ceremony already counts its logins in) when it accepts the
// approval, and refuses a nonce found there.

var bucketApprovals = []byte("ceremony-approvals")

// ErrApprovalUsed says an approval's nonce was already consumed by an
// earlier ceremony run.
var ErrApprovalUsed = errors.New("token: approval already used")

// ApprovalUse is what is kept for a consumed approval nonce.
type ApprovalUse struct {
	Nonce        string    `json:"nonce"`
	Officer      string    `json:"officer"`
	Ceremony     string    `json:"ceremony"`
	ConfigSHA256 string    `json:"config_sha256"`
	UsedAt       time.Time `json:"used_at"`
}

// UsedApproval returns the record of nonce if it was consumed.
func (s *BoltStore) UsedApproval(nonce string) (*ApprovalUse, error) {
	var u *ApprovalUse
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketApprovals)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(nonce))
		if v == nil {
			return nil
		}
		u = new(ApprovalUse)
		return json.Unmarshal(v, u)
	})
	return u, err
}

// ConsumeApprovals records every use in one durable transaction, or none:
// when any nonce was consumed before it returns ErrApprovalUsed naming it.
func (s *BoltStore) ConsumeApprovals(uses []ApprovalUse) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketApprovals)
		if err != nil {
			return err
		}
		for _, u := range uses {
			if u.Nonce == "" {
				return errors.New("token: approval without a nonce")
			}
			if v := b.Get([]byte(u.Nonce)); v != nil {
				var prev ApprovalUse
				_ = json.Unmarshal(v, &prev)
				return fmt.Errorf("%w: %s's approval (nonce %s) was used by a %s ceremony at %s", ErrApprovalUsed, u.Officer, u.Nonce, prev.Ceremony, prev.UsedAt.Format(time.RFC3339))
			}
			v, err := json.Marshal(u)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(u.Nonce), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// UsedApproval returns the record of nonce if it was consumed.
func (f FileStore) UsedApproval(nonce string) (u *ApprovalUse, err error) {
	err = f.with(func(s *BoltStore) error { u, err = s.UsedApproval(nonce); return err })
	return u, err
}

// ConsumeApprovals records every use in one durable transaction, or none.
func (f FileStore) ConsumeApprovals(uses []ApprovalUse) error {
	return f.with(func(s *BoltStore) error { return s.ConsumeApprovals(uses) })
}

// EnrolOfficers adds officers to the token's trusted roster as the security
// officer (pkcs11shim.Module.EnrolOfficers): the SO login is a guarded
// attempt like Unlock's, counted and refused without C_Login when the SO
// PIN is locked (R-TOK-5).
func (t *Admin) EnrolOfficers(soPIN []byte, officers []pkcs11shim.Officer, by string) error {
	err := t.guard.Attempt(t.soID(), func() error { return t.mod.EnrolOfficers(t.sel, soPIN, officers) })
	if err != nil {
		return err
	}
	for _, o := range officers {
		_ = t.guard.store.Record(Event{At: time.Now(), Token: t.soID(), Kind: "officer-enrolled", Detail: o.Name + " (by " + by + ")"})
	}
	t.log.Info("officers enrolled by the security officer", "count", len(officers), "by", by)
	return nil
}

// TrustedOfficers reads the token's trusted officer roster without a login.
func (t *Admin) TrustedOfficers() ([]pkcs11shim.Officer, error) { return t.mod.TrustedOfficers(t.sel) }

// RetireOfficers removes officers from the token's trusted roster as the
// security officer, a guarded SO login like EnrolOfficers'.
func (t *Admin) RetireOfficers(soPIN []byte, names []string, by string) error {
	err := t.guard.Attempt(t.soID(), func() error { return t.mod.RetireOfficers(t.sel, soPIN, names) })
	if err != nil {
		return err
	}
	for _, n := range names {
		_ = t.guard.store.Record(Event{At: time.Now(), Token: t.soID(), Kind: "officer-retired", Detail: n + " (by " + by + ")"})
	}
	t.log.Info("officers retired by the security officer", "count", len(names), "by", by)
	return nil
}
