package keysvc

import (
	"context"
	"slices"
	"sync"
	"time"
)

// memConfirmStore is the ConfirmStore keysvc uses when its Store keeps no
// confirmations (the embedded bbolt store): confirmations live in this
// process's memory and end with it. Timers free a key at its
// confirmation's ExpiresAt and forget the record keep after it.
//
// Update runs fn under the store's lock, so fn must not call the store.
type memConfirmStore struct {
	now      func() time.Time
	mu       sync.Mutex
	byID     map[string]*memConf
	byHolder map[string]*memConf
	byKey    map[string]*memConf // the pending confirmation holding each key
}

type memConf struct {
	rec    ConfirmRecord
	done   chan struct{} // closed when rec leaves pending or is forgotten
	closed bool
}

func (c *memConf) finish() {
	if !c.closed {
		c.closed = true
		close(c.done)
	}
}

var _ ConfirmStore = (*memConfirmStore)(nil)

func newMemConfirmStore(now func() time.Time) *memConfirmStore {
	if now == nil {
		now = time.Now
	}
	return &memConfirmStore{now: now, byID: map[string]*memConf{}, byHolder: map[string]*memConf{}, byKey: map[string]*memConf{}}
}

// copyRecord is a deep copy of r.
func copyRecord(r *ConfirmRecord) *ConfirmRecord {
	c := *r
	c.View.Display = slices.Clone(r.View.Display)
	c.View.DisplayZH = slices.Clone(r.View.DisplayZH)
	c.Sealed = slices.Clone(r.Sealed)
	c.Digest = slices.Clone(r.Digest)
	return &c
}

func (m *memConfirmStore) Open(_ context.Context, rec *ConfirmRecord, keep time.Duration) (*ConfirmRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := rec.View.Key
	if cur, ok := m.byKey[key]; ok {
		return copyRecord(&cur.rec), nil
	}
	c := &memConf{rec: *copyRecord(rec), done: make(chan struct{})}
	id := rec.View.ID
	m.byID[id], m.byHolder[rec.Holder], m.byKey[key] = c, c, c
	until := rec.View.ExpiresAt.Sub(m.now())
	time.AfterFunc(until, func() { // the key is free at ExpiresAt, ended or not
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.byKey[key] == c {
			delete(m.byKey, key)
		}
	})
	time.AfterFunc(until+keep, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.forget(c)
	})
	return nil, nil
}

// forget drops c; m.mu is held.
func (m *memConfirmStore) forget(c *memConf) {
	if m.byID[c.rec.View.ID] == c {
		delete(m.byID, c.rec.View.ID)
	}
	if m.byHolder[c.rec.Holder] == c {
		delete(m.byHolder, c.rec.Holder)
	}
	if m.byKey[c.rec.View.Key] == c {
		delete(m.byKey, c.rec.View.Key)
	}
	c.finish()
}

func (m *memConfirmStore) Get(_ context.Context, id string) (*ConfirmRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.byID[id]; ok {
		return copyRecord(&c.rec), nil
	}
	return nil, nil
}

func (m *memConfirmStore) ByHolder(_ context.Context, holder string) (*ConfirmRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.byHolder[holder]; ok {
		return copyRecord(&c.rec), nil
	}
	return nil, nil
}

func (m *memConfirmStore) Update(_ context.Context, id string, fn func(r *ConfirmRecord) error) (*ConfirmRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.byID[id]
	if !ok {
		return nil, nil
	}
	r := copyRecord(&c.rec)
	if err := fn(r); err != nil {
		return nil, err
	}
	// id, key and holder name the record; fn does not move it.
	r.View.ID, r.View.Key, r.Holder = c.rec.View.ID, c.rec.View.Key, c.rec.Holder
	c.rec = *copyRecord(r)
	if !r.Pending() {
		if m.byKey[r.View.Key] == c {
			delete(m.byKey, r.View.Key)
		}
		c.finish()
	}
	return r, nil
}

func (m *memConfirmStore) Wait(ctx context.Context, id string) error {
	m.mu.Lock()
	c, ok := m.byID[id]
	m.mu.Unlock()
	if !ok {
		return nil
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *memConfirmStore) Pending(context.Context) ([]*ConfirmRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*ConfirmRecord
	for _, c := range m.byID {
		if c.rec.Pending() {
			out = append(out, copyRecord(&c.rec))
		}
	}
	return out, nil
}
