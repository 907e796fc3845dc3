package boltstore

import (
	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
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
	records := []serviceRecord{{kekEpochsRecord, e, "the KEK epoch record"}}
	if sk != nil {
		records = append(records, serviceRecord{serviceKeysRecord, sk, "the service-key record"})
	}
	return s.putServiceRecords("the KEK epoch record", rec, records...)
}
