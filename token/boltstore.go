package token

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketPINState  = []byte("pin-guard")
	bucketPINEvents = []byte("pin-guard-events")
)

// ErrStoreBusy says another process holds the PIN guard's bbolt file
// (keysvc keeps its keysvc.db open while it runs): the guard cannot count,
// so no PIN may be tried.
var ErrStoreBusy = errors.New("token: the PIN guard file is open in another process")

// BoltStore is the bbolt CounterStore. Every Update is one fsync'd
// transaction, so the count is on disk before C_Login runs.
type BoltStore struct{ db *bolt.DB }

var _ CounterStore = (*BoltStore)(nil)

// OpenBoltStore opens (or creates, mode 0600) the bbolt file at path. The
// file is locked: a second process opening it waits up to 5 s and fails,
// so two processes can never count the same PIN separately.
func OpenBoltStore(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (waited 5 s for its lock)", ErrStoreBusy, path)
	}
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

// FileStore is a CounterStore over the bbolt file at Path that opens the
// file for each operation and closes it again, for short-lived tools (the
// ceremony) that count in a long-lived service's file (keysvc's
// keysvc.db) when the service is stopped: the lock is held only while one
// count is written, so the tool never keeps the file from the service for
// longer, and a service that holds it makes every operation fail with
// ErrStoreBusy, which Guard.Attempt answers by trying no PIN (R-TOK-5).
type FileStore struct{ Path string }

var _ CounterStore = FileStore{}

func (f FileStore) with(fn func(*BoltStore) error) error {
	s, err := OpenBoltStore(f.Path)
	if err != nil {
		return err
	}
	return errors.Join(fn(s), s.Close())
}

// Get returns the state of id.
func (f FileStore) Get(id string) (st PINState, err error) {
	err = f.with(func(s *BoltStore) error { st, err = s.Get(id); return err })
	return st, err
}

// Update changes the state of id in one durable transaction.
func (f FileStore) Update(id string, fn func(st *PINState) error) error {
	return f.with(func(s *BoltStore) error { return s.Update(id, fn) })
}

// Record appends an event.
func (f FileStore) Record(ev Event) error {
	return f.with(func(s *BoltStore) error { return s.Record(ev) })
}

// Events lists the events recorded for id.
func (f FileStore) Events(id string) (evs []Event, err error) {
	err = f.with(func(s *BoltStore) error { evs, err = s.Events(id); return err })
	return evs, err
}
