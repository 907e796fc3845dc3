package banking

import (
	"context"
	"sync"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
)

// DefaultPublicKeyTTL is how long banking serves a public key (login,
// receipt) from memory before asking keysvc again.
const DefaultPublicKeyTTL = time.Minute

// pubKeyCache keeps the bank's public keys for Config.PublicKeyTTL, so the
// public routes that hand them out (GET /v1/login/key, /v1/receipt-key)
// cost no keysvc call, and no keysvc audit record, per request; callers
// missing together share one fetch. A version newer than the cached one,
// seen in use (a receipt signature, a password sealed by a client served
// by another banking instance), drops the entry at once, as does keysvc
// refusing the cached version: a rotation is picked up without waiting
// for the TTL.
type pubKeyCache struct {
	kms     KMS
	ttl     time.Duration
	now     func() time.Time
	mu      sync.Mutex // guards entries (the map, not the entries' fields)
	entries map[string]*pubKeyEntry
}

type pubKeyEntry struct {
	mu      sync.Mutex // held across a fetch: concurrent misses wait for it
	pk      wire.PublicKeyResult
	expires time.Time
	valid   bool
}

func newPubKeyCache(kms KMS, ttl time.Duration, now func() time.Time) *pubKeyCache {
	return &pubKeyCache{kms: kms, ttl: ttl, now: now, entries: map[string]*pubKeyEntry{}}
}

func (p *pubKeyCache) entry(name string) *pubKeyEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[name]
	if !ok {
		e = &pubKeyEntry{}
		p.entries[name] = e
	}
	return e
}

// get returns the primary public key of name, from memory while fresh.
func (p *pubKeyCache) get(ctx context.Context, name string) (wire.PublicKeyResult, error) {
	e := p.entry(name)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.valid && p.now().Before(e.expires) {
		return e.pk, nil
	}
	pk, err := p.kms.PublicKey(ctx, name, 0)
	if err != nil {
		return wire.PublicKeyResult{}, kmsErr(err)
	}
	e.pk, e.expires, e.valid = pk, p.now().Add(p.ttl), true
	return pk, nil
}

// seen drops the cached key of name if version is newer: the key was
// rotated since it was fetched.
func (p *pubKeyCache) seen(name string, version int) {
	p.drop(name, func(cached int) bool { return version > cached })
}

// retired drops the cached key of name if it is version, which keysvc no
// longer uses (disabled, or below the key's min_version).
func (p *pubKeyCache) retired(name string, version int) {
	p.drop(name, func(cached int) bool { return version == cached })
}

func (p *pubKeyCache) drop(name string, stale func(cached int) bool) {
	e := p.entry(name)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.valid && stale(e.pk.Version) {
		e.valid = false
	}
}
