package boltstore

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
)

// The KEK epoch record sits in the service-keys bucket beside the
// service-key record, so a rotation's step and the record of the keys it
// added or retired commit together.
var kekEpochsRecord = []byte("kek-epochs")

// KEKEpochs returns the KEK epoch record, or nil when none is stored
// (keysvc.Store).
func (s *Store) KEKEpochs() (*keysvc.KEKEpochs, error) {
	return readServiceRecord[keysvc.KEKEpochs](s, kekEpochsRecord, "the KEK epoch record")
}

// SetKEKEpochs stores e, and sk as the service-key record when not nil,
// and appends rec when not nil, in one transaction (keysvc.Store).
func (s *Store) SetKEKEpochs(e *keysvc.KEKEpochs, sk *keysvc.ServiceKeyRecord, rec *audit.Record) error {
	ev, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("%w: encode the KEK epoch record: %w", wire.ErrStore, err)
	}
	var skv []byte
	if sk != nil {
		if skv, err = json.Marshal(sk); err != nil {
			return fmt.Errorf("%w: encode the service-key record: %w", wire.ErrStore, err)
		}
	}
	var sealed audit.Record
	if rec != nil {
		sealed = *rec
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketServiceKeys)
		if err != nil {
			return err
		}
		if err := b.Put(kekEpochsRecord, ev); err != nil {
			return err
		}
		if skv != nil {
			if err := b.Put(serviceKeysRecord, skv); err != nil {
				return err
			}
		}
		if rec == nil {
			return nil
		}
		return appendRecord(tx, &sealed)
	})
	if err != nil {
		return fmt.Errorf("%w: store the KEK epoch record: %w", wire.ErrStore, err)
	}
	if rec != nil {
		*rec = sealed
	}
	return nil
}
