package keysvc

import (
	"sync"

	"github.com/keyward/keyward/keysvc/audit"
)

// keyCache holds the keys the hot path (sign, verify, encrypt, decrypt)
// reads, so a request costs no store read and no JSON decoding. Cached keys
// are shared and never mutated: every change through the Service replaces
// the entry with the key the store committed.
//
// The cache never goes backwards. Every store update of a key increments
// its Revision inside the update's transaction (updateKey), and an entry
// is replaced only by a key of a higher revision (put). A cache miss that
// read an older snapshot while a disable, min_version change or
// destruction committed therefore cannot reinstate the older snapshot: the
// update's put has installed the newer one, or will, and the older one
// loses either way (R-TOK-7, R-TOK-8). Failed or refused updates leave the
// cache alone: they changed nothing, and a caller must not be able to
// evict entries (and force store reads) on demand.
//
// With bbolt this Service is the store's only writer (its file lock
// guarantees it), so its own updates keep the cache true. With a shared
// store (R-AV-4) other nodes write too: the store's KeyFeed delivers every
// committed key record, and put installs it by the same revision rule
// (clusternode.go); a feed reset empties the cache (clear). Until the feed
// delivers another node's change, this node uses what it cached.
//
// Two rules keep a shared store's cache from holding a record the feed
// will never correct:
//   - Nothing is cached before the feed watches (waitFeed is set until its
//     first reset, which a KeyFeed sends once its watch has started): a
//     record read earlier could predate a change the watch starts after.
//     Until then every use reads the store.
//   - A record read from the store (a miss, or an update's own result) is
//     installed only if no reset happened since the read began (gen): a
//     reset means the feed restarts after a gap, and a record read before
//     the gap could be older than a change inside it.
type keyCache struct {
	mu  sync.RWMutex
	m   map[string]*Key
	gen uint64 // incremented by clear
	// waitFeed: a KeyFeed's watch has not started yet, install nothing
	// (set by startFeed, ended by the feed's first reset).
	waitFeed bool
}

// at returns the cache's generation: what a store read about to begin
// must present to putAt.
func (c *keyCache) at() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

func (s *Service) cachedKey(name string) (*Key, error) {
	s.cache.mu.RLock()
	k, ok := s.cache.m[name]
	gen := s.cache.gen
	s.cache.mu.RUnlock()
	if ok {
		return k, nil
	}
	k, err := s.store.GetKey(name)
	if err != nil {
		return nil, err
	}
	return s.cache.putAt(k, gen), nil
}

// put installs k (a record the feed delivers, current when delivered)
// unless the cache holds the same or a newer revision of the key, and
// returns the entry the cache holds afterwards: k, or the newer key that
// beat it. While waitFeed it installs nothing.
func (c *keyCache) put(k *Key) *Key {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.installLocked(k)
}

// putAt is put for a record read from the store when the cache was at
// generation gen: after a reset since then it installs nothing.
func (c *keyCache) putAt(k *Key, gen uint64) *Key {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return k
	}
	return c.installLocked(k)
}

func (c *keyCache) installLocked(k *Key) *Key {
	if c.waitFeed {
		return k
	}
	if c.m == nil {
		c.m = map[string]*Key{}
	}
	if cur, ok := c.m[k.Name]; ok && cur.Revision >= k.Revision {
		return cur
	}
	c.m[k.Name] = k
	return k
}

// clear forgets every entry (the next use of each key reads the store),
// starts a new generation and ends waitFeed: a KeyFeed resets once its
// watch has started, and after each gap.
func (c *keyCache) clear() {
	c.mu.Lock()
	c.m = nil
	c.gen++
	c.waitFeed = false
	c.mu.Unlock()
}

// updateKey is store.UpdateKey that keeps the cache true: it increments
// the key's Revision in the same transaction as fn's change and installs
// the committed key in the cache.
func (s *Service) updateKey(name string, fn func(k *Key) error, rec *audit.Record) (*Key, error) {
	gen := s.cache.at()
	k, err := s.store.UpdateKey(name, func(k *Key) error {
		if err := fn(k); err != nil {
			return err
		}
		k.Revision++
		return nil
	}, rec)
	if err != nil {
		return nil, err // nothing was stored: the cached entry is still true
	}
	s.cache.putAt(k.Clone(), gen)
	return k, nil
}

// createKeyRecord is store.CreateKey that keeps the cache true.
func (s *Service) createKeyRecord(k *Key, rec *audit.Record) error {
	k.Revision = 1
	gen := s.cache.at()
	if err := s.store.CreateKey(k, rec); err != nil {
		return err
	}
	s.cache.putAt(k.Clone(), gen)
	return nil
}

// sharedStore reports whether other keysvc nodes write to the store too
// (it has a KeyFeed): what this node cached may lag their changes.
func (s *Service) sharedStore() bool {
	_, ok := s.store.(KeyFeed)
	return ok
}

// freshKey reads k's record from the store and returns the newer of it
// and what the cache holds (installing it by the cache's rules); on a
// store error it returns k.
func (s *Service) freshKey(k *Key) *Key {
	gen := s.cache.at()
	f, err := s.store.GetKey(k.Name)
	if err != nil {
		return k
	}
	if f = s.cache.putAt(f, gen); f.Revision > k.Revision {
		return f
	}
	return k
}
