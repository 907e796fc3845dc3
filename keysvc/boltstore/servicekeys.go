package boltstore

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
)

var (
	bucketServiceKeys = []byte("service-keys")
	serviceKeysRecord = []byte("record")
)

// ServiceKeys returns the recorded identities of keysvc's service keys,
// or nil when none are recorded yet (keysvc.Store).
func (s *Store) ServiceKeys() (*keysvc.ServiceKeyRecord, error) {
	return readServiceRecord[keysvc.ServiceKeyRecord](s, serviceKeysRecord, "the service-key record")
}

// readServiceRecord reads one JSON record of the service-keys bucket (nil
// when it is not there); what names it in errors.
func readServiceRecord[T any](s *Store, key []byte, what string) (*T, error) {
	var r *T
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketServiceKeys)
		if b == nil {
			return nil
		}
		v := b.Get(key)
		if v == nil {
			return nil
		}
		r = new(T)
		return json.Unmarshal(v, r)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", wire.ErrStore, what, err)
	}
	return r, nil
}

// SetServiceKeys stores r as the service-key record and appends rec (when
// not nil) in the same transaction (keysvc.Store).
func (s *Store) SetServiceKeys(r *keysvc.ServiceKeyRecord, rec *audit.Record) error {
	return s.putServiceRecords("the service-key record", rec, serviceRecord{serviceKeysRecord, r, "the service-key record"})
}

// serviceRecord is one JSON record of the service-keys bucket to store;
// what names it in errors.
type serviceRecord struct {
	key   []byte
	value any
	what  string
}

// putServiceRecords stores records in the service-keys bucket and appends
// rec (when not nil) in one transaction; what names the write in errors.
func (s *Store) putServiceRecords(what string, rec *audit.Record, records ...serviceRecord) error {
	vals := make([][]byte, len(records))
	for i, r := range records {
		v, err := json.Marshal(r.value)
		if err != nil {
			return fmt.Errorf("%w: encode %s: %w", wire.ErrStore, r.what, err)
		}
		vals[i] = v
	}
	var sealed audit.Record
	if rec != nil {
		sealed = *rec
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketServiceKeys)
		if err != nil {
			return err
		}
		for i, r := range records {
			if err := b.Put(r.key, vals[i]); err != nil {
				return err
			}
		}
		if rec == nil {
			return nil
		}
		return appendRecord(tx, &sealed)
	})
	if err != nil {
		return fmt.Errorf("%w: store %s: %w", wire.ErrStore, what, err)
	}
	if rec != nil {
		*rec = sealed
	}
	return nil
}
