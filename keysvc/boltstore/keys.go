package boltstore

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
)

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

func decodeKey(v []byte) (*keysvc.Key, error) {
	k := new(keysvc.Key)
	if err := json.Unmarshal(v, k); err != nil {
		return nil, fmt.Errorf("decode key: %w", err)
	}
	return k, nil
}
