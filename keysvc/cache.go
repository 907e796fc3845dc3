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
// It assumes this Service is the store's only writer, which bbolt's file
// lock guarantees. A clustered store (R-AV-4) must invalidate it from the
// store's change feed.
type keyCache struct {
	mu sync.RWMutex
	m  map[string]*Key
}

func (s *Service) cachedKey(name string) (*Key, error) {
	s.cache.mu.RLock()
	k, ok := s.cache.m[name]
	s.cache.mu.RUnlock()
	if ok {
		return k, nil
	}
	k, err := s.store.GetKey(name)
	if err != nil {
		return nil, err
	}
	s.cache.put(k)
	return k, nil
}

func (c *keyCache) put(k *Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*Key{}
	}
	c.m[k.Name] = k
}

func (c *keyCache) drop(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, name)
}

// updateKey is store.UpdateKey that keeps the cache true.
func (s *Service) updateKey(name string, fn func(k *Key) error, rec *audit.Record) (*Key, error) {
	k, err := s.store.UpdateKey(name, fn, rec)
	if err != nil {
		s.cache.drop(name) // whatever happened, read it afresh next time
		return nil, err
	}
	s.cache.put(k.Clone())
	return k, nil
}

// createKeyRecord is store.CreateKey that keeps the cache true.
func (s *Service) createKeyRecord(k *Key, rec *audit.Record) error {
	if err := s.store.CreateKey(k, rec); err != nil {
		return err
	}
	s.cache.put(k.Clone())
	return nil
}
