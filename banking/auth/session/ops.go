package session

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keyward/keyward/banking/auth/device"
	"github.com/keyward/keyward/banking/internal/kv"
	"github.com/keyward/keyward/banking/store"
)

// Get checks the session without extending it: ErrNotFound (never existed,
// logged out, malformed id) or ErrExpired (idle or absolute timeout).
func (m *Manager) Get(ctx context.Context, id string) (Session, error) {
	return m.lookup(ctx, id, false, nil)
}

// Touch checks the session and, when it is live, records activity: the
// idle timeout starts again from now (never beyond the absolute timeout).
// The new last-seen time is kept in memory and written within
// FlushInterval (see "Write-behind" in the package documentation).
func (m *Manager) Touch(ctx context.Context, id string) (Session, error) {
	return m.lookup(ctx, id, true, nil)
}

// TouchWith is Touch that also runs also(tx, ref) — reads of the caller's
// own records about this session, by its Ref — in a read transaction of
// the store: on a shared store the same one that reads the session's
// record (one transaction per request instead of two; banking reads the
// login's step-up state this way), else a View of its own once the
// session checks out. also must only read and assign; a store fault in
// it fails TouchWith like one reading the session.
func (m *Manager) TouchWith(ctx context.Context, id string, also func(tx store.Tx, ref string)) (Session, error) {
	return m.lookup(ctx, id, true, also)
}

func (m *Manager) lookup(ctx context.Context, id string, touch bool, also func(tx store.Tx, ref string)) (Session, error) {
	h, err := parseID(id)
	if err != nil {
		return Session{}, err
	}
	if err := ctx.Err(); err != nil {
		return Session{}, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return Session{}, ErrClosed
	}
	e := m.cache[h]
	g := m.gen
	m.mu.Unlock()

	if m.cfg.DB.Shared() {
		return m.lookupShared(h, touch, also)
	}
	if also != nil {
		s, err := m.lookup(ctx, id, touch, nil)
		if err != nil {
			return s, err
		}
		if err := m.cfg.DB.View(func(tx store.Tx) error { also(tx, s.Ref); return nil }); err != nil {
			return Session{}, fmt.Errorf("session: %w", err)
		}
		return s, nil
	}
	if e == nil {
		// Cache miss (after a restart): one Get. The result is cached
		// only if no change to an existing session was committed meanwhile
		// (gen unchanged), so a Logout racing this read cannot be undone.
		var rec record
		var found bool
		err := m.cfg.DB.View(func(tx store.Tx) (err error) {
			found, err = kv.Get(tx.Bucket(bucketSessions), h[:], &rec)
			return err
		})
		if err != nil {
			return Session{}, fmt.Errorf("session: %w", err)
		}
		if !found {
			return Session{}, ErrNotFound
		}
		m.mu.Lock()
		if m.gen == g && m.cache[h] == nil {
			m.cache[h] = &entry{rec: rec}
		}
		if e = m.cache[h]; e == nil {
			m.mu.Unlock()
			return m.check(h, rec, m.cfg.Now()) // not cached; answer from what was read
		}
		m.mu.Unlock()
	}

	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur := m.cache[h]; cur != e {
		if cur == nil {
			return Session{}, ErrNotFound // ended while we looked
		}
		e = cur
	}
	if s, err := m.check(h, e.rec, now); err != nil {
		delete(m.cache, h) // expired: the sweeper deletes the record
		return s, err
	}
	if touch && now.After(e.rec.LastSeen) {
		e.rec.LastSeen = now
		e.dirty = true
	}
	return m.view(h, e.rec), nil
}

// lookupShared is lookup on a store other banking nodes share: the record
// is read on every call, since another node may have ended the session or
// stepped it up; the cache only keeps this node's newer last-seen time
// (written behind, as on a store of its own) and merges it in. A session
// another node ended is ErrNotFound here as soon as its deletion commits.
func (m *Manager) lookupShared(h hash, touch bool, also func(tx store.Tx, ref string)) (Session, error) {
	var rec record
	var found bool
	err := m.cfg.DB.View(func(tx store.Tx) (err error) {
		rec = record{}
		if found, err = kv.Get(tx.Bucket(bucketSessions), h[:], &rec); err == nil && found && also != nil {
			also(tx, m.view(h, rec).Ref)
		}
		return err
	})
	if err != nil {
		return Session{}, fmt.Errorf("session: %w", err)
	}
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !found {
		delete(m.cache, h)
		return Session{}, ErrNotFound
	}
	e := m.cache[h]
	if e == nil {
		e = &entry{rec: rec}
		m.cache[h] = e
	} else {
		seen := e.rec.LastSeen
		e.rec = rec
		if seen.After(rec.LastSeen) {
			e.rec.LastSeen = seen
		}
	}
	if s, err := m.check(h, e.rec, now); err != nil {
		delete(m.cache, h)
		return s, err
	}
	if touch && now.After(e.rec.LastSeen) {
		e.rec.LastSeen = now
		e.dirty = true
	}
	return m.view(h, e.rec), nil
}

func (m *Manager) check(h hash, rec record, now time.Time) (Session, error) {
	if !now.Before(m.expiry(&rec)) {
		return Session{}, ErrExpired
	}
	return m.view(h, rec), nil
}

// StepUp records that the customer has just passed a stronger check (an
// SMS code): the level becomes at least level and SteppedUpAt now. It is
// committed before StepUp returns. The session must be live.
func (m *Manager) StepUp(ctx context.Context, id string, level Level) (Session, error) {
	if !level.valid() {
		return Session{}, ErrBadInput
	}
	s, err := m.Get(ctx, id)
	if err != nil {
		return Session{}, err
	}
	h, _ := parseID(id)
	now := m.cfg.Now()
	var rec record
	err = m.mutate(func(tx store.Tx) error {
		b := tx.Bucket(bucketSessions)
		found, err := kv.Get(b, h[:], &rec)
		if err != nil || !found {
			return orNotFound(err)
		}
		if rec.LastSeen.Before(s.LastSeen) {
			rec.LastSeen = s.LastSeen // the in-memory one is newer
		}
		rec.Level = max(rec.Level, level)
		rec.SteppedUpAt = now
		return kv.Put(b, h[:], &rec)
	}, func() {
		if e := m.cache[h]; e != nil {
			e.rec.Level, e.rec.SteppedUpAt = rec.Level, rec.SteppedUpAt
		}
	})
	if err != nil {
		return Session{}, err
	}
	return m.view(h, rec), nil
}

func orNotFound(err error) error {
	if err != nil {
		return err
	}
	return ErrNotFound
}

// RequireStepUp returns nil when the session reached level and did so
// within the last `within` (R-AUTH-6: changing the password or a transfer
// limit re-authenticates the customer, whatever the session's level);
// otherwise ErrStepUpRequired. within ≤ 0 only checks the level.
func (m *Manager) RequireStepUp(s Session, level Level, within time.Duration) error {
	if s.Level < level {
		return ErrStepUpRequired
	}
	if within > 0 && (s.SteppedUpAt.IsZero() || m.cfg.Now().Sub(s.SteppedUpAt) > within) {
		return ErrStepUpRequired
	}
	return nil
}

// mutate runs fn in a committed (fsync'd) transaction, then, under the
// cache lock, bumps the generation and runs after. Every change to an
// existing session goes through here.
func (m *Manager) mutate(fn func(tx store.Tx) error, after func()) error {
	if err := m.cfg.DB.Batch(fn); err != nil {
		if err == ErrNotFound {
			return err
		}
		return fmt.Errorf("session: %w", err)
	}
	m.mu.Lock()
	m.gen++
	after()
	m.mu.Unlock()
	return nil
}

// Logout ends the session at once (R-AUTH-5): the record is deleted and
// the deletion committed to disk before Logout returns; no Get or Touch
// succeeds after that. Logging out an unknown or already ended session is
// not an error.
func (m *Manager) Logout(ctx context.Context, id string) error {
	h, err := parseID(id)
	if err != nil {
		return nil
	}
	if err := m.open(ctx); err != nil {
		return err
	}
	return m.mutate(func(tx store.Tx) error {
		return deleteSession(tx, h)
	}, func() { delete(m.cache, h) })
}

func deleteSession(tx store.Tx, h hash) error {
	b := tx.Bucket(bucketSessions)
	var rec record
	found, err := kv.Get(b, h[:], &rec)
	if !found {
		return nil
	}
	if err == nil {
		if err := tx.Bucket(bucketByCustomer).Delete(indexKey(rec.Customer, h)); err != nil {
			return err
		}
	}
	return b.Delete(h[:]) // an unreadable record is deleted too
}

// LogoutAll ends every session of the customer (after a password change,
// or at the customer's or an officer's request) and returns how many.
func (m *Manager) LogoutAll(ctx context.Context, customer string) (int, error) {
	return m.logoutCustomer(ctx, customer, nil)
}

// LogoutOthers ends every session of the customer except keepID (the one
// making the request).
func (m *Manager) LogoutOthers(ctx context.Context, customer, keepID string) (int, error) {
	keep, err := parseID(keepID)
	if err != nil {
		return 0, err
	}
	return m.logoutCustomer(ctx, customer, &keep)
}

func (m *Manager) logoutCustomer(ctx context.Context, customer string, keep *hash) (int, error) {
	if err := kv.CheckID("customer", customer); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if err := m.open(ctx); err != nil {
		return 0, err
	}
	var ended []hash
	err := m.mutate(func(tx store.Tx) error {
		ended = ended[:0]
		prefix := kv.Prefix(customer)
		c := tx.Bucket(bucketByCustomer).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			var h hash
			if copy(h[:], k[len(prefix):]) != len(h) || (keep != nil && h == *keep) {
				continue
			}
			ended = append(ended, h)
		}
		for _, h := range ended {
			if err := tx.Bucket(bucketSessions).Delete(h[:]); err != nil {
				return err
			}
			if err := tx.Bucket(bucketByCustomer).Delete(indexKey(customer, h)); err != nil {
				return err
			}
		}
		return nil
	}, func() {
		for _, h := range ended {
			delete(m.cache, h)
		}
	})
	return len(ended), err
}

// List returns the customer's live sessions (for a "where you are logged
// in" page; end one with its Ref through LogoutRef).
func (m *Manager) List(ctx context.Context, customer string) ([]Session, error) {
	if err := kv.CheckID("customer", customer); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if err := m.open(ctx); err != nil {
		return nil, err
	}
	type item struct {
		h   hash
		rec record
	}
	var items []item
	err := m.cfg.DB.View(func(tx store.Tx) error {
		items = items[:0]
		prefix := kv.Prefix(customer)
		c := tx.Bucket(bucketByCustomer).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			var it item
			copy(it.h[:], k[len(prefix):])
			if found, err := kv.Get(tx.Bucket(bucketSessions), it.h[:], &it.rec); err == nil && found {
				items = append(items, it)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	now := m.cfg.Now()
	var out []Session
	m.mu.Lock()
	defer m.mu.Unlock()
	shared := m.cfg.DB.Shared()
	for _, it := range items {
		if e := m.cache[it.h]; e != nil {
			if !shared {
				it.rec = e.rec // this Manager is the only writer: its cache is the truth
			} else if e.rec.LastSeen.After(it.rec.LastSeen) {
				it.rec.LastSeen = e.rec.LastSeen // only this node's unwritten last-seen
			}
		}
		if s, err := m.check(it.h, it.rec, now); err == nil {
			out = append(out, s)
		}
	}
	return out, nil
}

// LogoutDevice ends every session of the customer opened from the device
// whose Ref (device.RefOf of the device id, as the device registry lists
// it) is deviceRef, and returns how many. It is what "forget this
// device" does besides forgetting it: a revoked phone's session is
// refused at once (ErrNotFound), on every node of a shared store once
// LogoutDevice has returned. No such session is not an error (0).
func (m *Manager) LogoutDevice(ctx context.Context, customer, deviceRef string) (int, error) {
	if err := kv.CheckID("customer", customer); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if len(deviceRef) != 16 {
		return 0, fmt.Errorf("%w: a device ref is 16 hex digits", ErrBadInput)
	}
	if err := m.open(ctx); err != nil {
		return 0, err
	}
	var ended []hash
	err := m.mutate(func(tx store.Tx) error {
		ended = ended[:0]
		prefix := kv.Prefix(customer)
		sessions := tx.Bucket(bucketSessions)
		c := tx.Bucket(bucketByCustomer).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			var h hash
			if copy(h[:], k[len(prefix):]) != len(h) {
				continue
			}
			var rec record
			found, err := kv.Get(sessions, h[:], &rec)
			if err != nil {
				return err // unreadable: fail rather than leave a session of that device alive
			}
			if found && device.RefOf(rec.Device) == deviceRef {
				ended = append(ended, h)
			}
		}
		for _, h := range ended {
			if err := deleteSession(tx, h); err != nil {
				return err
			}
		}
		return nil
	}, func() {
		for _, h := range ended {
			delete(m.cache, h)
		}
	})
	return len(ended), err
}

// LogoutRef ends the customer's session whose Ref is ref (from List). It
// returns ErrNotFound when the customer has no such session.
func (m *Manager) LogoutRef(ctx context.Context, customer, ref string) error {
	if err := kv.CheckID("customer", customer); err != nil {
		return fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if err := m.open(ctx); err != nil {
		return err
	}
	var h hash
	var found bool
	return m.mutate(func(tx store.Tx) error {
		found = false
		prefix := kv.Prefix(customer)
		c := tx.Bucket(bucketByCustomer).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			copy(h[:], k[len(prefix):])
			if fmt.Sprintf("%x", h[:8]) == ref {
				found = true
				return deleteSession(tx, h)
			}
		}
		return ErrNotFound
	}, func() {
		if found {
			delete(m.cache, h)
		}
	})
}

// Flush writes the last-seen times kept in memory. The background
// goroutine calls it every FlushInterval, and Close once more.
func (m *Manager) Flush(ctx context.Context) error {
	if err := m.open(ctx); err != nil {
		return err
	}
	return m.flush()
}

func (m *Manager) flush() error {
	type item struct {
		h    hash
		seen time.Time
	}
	var items []item
	m.mu.Lock()
	for h, e := range m.cache {
		if e.dirty {
			items = append(items, item{h, e.rec.LastSeen})
			e.dirty = false
		}
	}
	m.mu.Unlock()
	if len(items) == 0 {
		return nil
	}
	// One transaction, one fsync, for all of them. A record deleted
	// meanwhile (logout) is skipped, never re-created.
	err := m.cfg.DB.Update(func(tx store.Tx) error {
		b := tx.Bucket(bucketSessions)
		for _, it := range items {
			var rec record
			found, err := kv.Get(b, it.h[:], &rec)
			if err != nil || !found || !rec.LastSeen.Before(it.seen) {
				continue
			}
			rec.LastSeen = it.seen
			if err := kv.Put(b, it.h[:], &rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		m.mu.Lock()
		for _, it := range items {
			if e := m.cache[it.h]; e != nil {
				e.dirty = true
			}
		}
		m.mu.Unlock()
		return fmt.Errorf("session: flush last-seen: %w", err)
	}
	return nil
}

// Sweep deletes expired sessions from the database and the cache and
// returns how many records it deleted. The background goroutine calls it
// every SweepInterval.
func (m *Manager) Sweep(ctx context.Context) (int, error) {
	if err := m.open(ctx); err != nil {
		return 0, err
	}
	now := m.cfg.Now()
	// Drop expired cache entries (their dirty last-seen no longer matters).
	m.mu.Lock()
	for h, e := range m.cache {
		if !now.Before(m.expiry(&e.rec)) {
			delete(m.cache, h)
		}
	}
	m.mu.Unlock()
	// Find candidates without holding the write lock, then delete each
	// after checking again inside the write transaction, against the
	// newest last-seen (the cache's, if it has one).
	var cands []hash
	err := m.cfg.DB.View(func(tx store.Tx) error {
		return tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
			var rec record
			if json.Unmarshal(v, &rec) != nil || !now.Before(m.expiry(&rec)) {
				var h hash
				copy(h[:], k)
				cands = append(cands, h)
			}
			return nil
		})
	})
	if err != nil || len(cands) == 0 {
		return 0, err
	}
	n := 0
	err = m.mutate(func(tx store.Tx) error {
		n = 0
		b := tx.Bucket(bucketSessions)
		for _, h := range cands {
			var rec record
			found, err := kv.Get(b, h[:], &rec)
			if !found {
				continue
			}
			if err == nil {
				m.mu.Lock()
				if e := m.cache[h]; e != nil && e.rec.LastSeen.After(rec.LastSeen) {
					rec.LastSeen = e.rec.LastSeen
				}
				m.mu.Unlock()
				if now.Before(m.expiry(&rec)) {
					continue
				}
			}
			if err := deleteSession(tx, h); err != nil {
				return err
			}
			n++
		}
		return nil
	}, func() {
		for _, h := range cands {
			if e := m.cache[h]; e != nil && !now.Before(m.expiry(&e.rec)) {
				delete(m.cache, h)
			}
		}
	})
	return n, err
}
