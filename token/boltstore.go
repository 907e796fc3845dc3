package token

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketPINState  = []byte("pin-guard")
	bucketPINEvents = []byte("pin-guard-events")
)

// BoltStore is the bbolt CounterStore. Every Update is one fsync'd
// transaction, so the count is on disk before C_Login runs.
type BoltStore struct{ db *bolt.DB }

var _ CounterStore = (*BoltStore)(nil)

// OpenBoltStore opens (or creates, mode 0600) the bbolt file at path. The
// file is locked: a second process opening it waits up to 5 s and fails,
// so two processes can never count the same PIN separately.
func OpenBoltStore(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("token: open PIN guard store %s: %w", path, err)
	}
	s, err := NewBoltStore(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// NewBoltStore uses an already open database (keysvc shares its own).
func NewBoltStore(db *bolt.DB) (*BoltStore, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketPINState); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketPINEvents)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("token: prepare PIN guard store: %w", err)
	}
	return &BoltStore{db: db}, nil
}

// Close closes the database.
func (s *BoltStore) Close() error { return s.db.Close() }

// Get returns the state of id (zero when never seen).
func (s *BoltStore) Get(id string) (PINState, error) {
	var st PINState
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketPINState).Get([]byte(id))
		if v == nil {
			return nil
		}
		return json.Unmarshal(v, &st)
	})
	return st, err
}

// Update changes the state of id in one durable transaction.
func (s *BoltStore) Update(id string, fn func(st *PINState) error) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPINState)
		var st PINState
		if v := b.Get([]byte(id)); v != nil {
			if err := json.Unmarshal(v, &st); err != nil {
				return err
			}
		}
		if err := fn(&st); err != nil {
			return err
		}
		v, err := json.Marshal(st)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), v)
	})
}

// Record appends an event under its token, keyed by sequence number.
func (s *BoltStore) Record(ev Event) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketPINEvents).CreateBucketIfNotExists([]byte(ev.Token))
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		v, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		return b.Put(binary.BigEndian.AppendUint64(nil, seq), v)
	})
}

// Events lists the events recorded for id, oldest first.
func (s *BoltStore) Events(id string) ([]Event, error) {
	var out []Event
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPINEvents).Bucket([]byte(id))
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var ev Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return err
			}
			out = append(out, ev)
			return nil
		})
	})
	return out, err
}
