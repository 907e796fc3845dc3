package softhsmtests

// Issue 12 item 4: the key cache must not undo a revocation, and refused
// calls must not evict it.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
)

// hookedStore is the real bbolt store with two test levers: a read of a
// named key can be held between the store read and its return (the
// cache-miss window), and audit appends can be made to fail.
type hookedStore struct {
	keysvc.Store
	reads atomic.Int64 // GetKey calls

	mu        sync.Mutex
	holdName  string        // the next GetKey of this name is held
	reached   chan struct{} // closed when that read has read the store
	release   chan struct{} // the held read returns once this is closed
	failAudit func(*audit.Record) bool
}

func (s *hookedStore) GetKey(name string) (*keysvc.Key, error) {
	s.reads.Add(1)
	k, err := s.Store.GetKey(name)
	s.mu.Lock()
	var reached, release chan struct{}
	if name == s.holdName {
		reached, release, s.holdName = s.reached, s.release, ""
	}
	s.mu.Unlock()
	if reached != nil {
		close(reached)
		<-release
	}
	return k, err
}

// hold arms the next read of name; it returns the reached and release
// channels.
func (s *hookedStore) hold(name string) (reached, release chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holdName, s.reached, s.release = name, make(chan struct{}), make(chan struct{})
	return s.reached, s.release
}

func (s *hookedStore) Audit(rec *audit.Record) error {
	s.mu.Lock()
	fail := s.failAudit
	s.mu.Unlock()
	if fail != nil && fail(rec) {
		return errors.New("test: audit append refused")
	}
	return s.Store.Audit(rec)
}

func (s *hookedStore) setFailAudit(f func(*audit.Record) bool) {
	s.mu.Lock()
	s.failAudit = f
	s.mu.Unlock()
}

// revocationEnv is two services on one SoftHSM token and one bbolt file:
// admin creates keys (so svc has never cached them), svc signs and
// disables through the hooked store.
type revocationEnv struct {
	tok   *token.Token
	store *hookedStore
	admin *keysvc.Service
	svc   *keysvc.Service
}

var (
	officerCaller = keysvc.Caller{Name: "officer", Admin: true}
	appCaller     = keysvc.Caller{Name: "app"}
)

func newRevocationEnv(t *testing.T) *revocationEnv {
	t.Helper()
	tok := mustNewToken(t, token.KindHSM)
	bs, err := boltstore.Open(filepath.Join(t.TempDir(), "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	e := &revocationEnv{tok: tok.tok, store: &hookedStore{Store: bs}}
	for _, s := range []**keysvc.Service{&e.admin, &e.svc} {
		if *s, err = keysvc.New(context.Background(), keysvc.Config{Token: tok.tok, Store: e.store, MinDestroyDelay: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *revocationEnv) createKey(t *testing.T, name string) {
	t.Helper()
	_, err := e.admin.CreateKey(context.Background(), officerCaller, wire.CreateKeyRequest{Name: name, Purpose: wire.PurposeSign,
		Algorithm: wire.AlgECP256, Protection: wire.ProtectionWrapped,
		Policy: wire.Policy{Grants: []wire.Grant{{Client: appCaller.Name, Ops: []wire.Op{wire.OpSign}}}}})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDisableRacingSigners (issue 12 item 4, R-TOK-7): 64 goroutines sign
// with a key while an officer disables its primary version. One signer's
// cache miss is held between its store read (the key still enabled) and
// its cache fill until Disable has returned: the window in which an old
// snapshot could overwrite the disabled one. Every sign call that starts
// after Disable returned must be refused with version_not_usable; not one
// signature may be made. Repeated over many keys.
func TestDisableRacingSigners(t *testing.T) {
	e := newRevocationEnv(t)
	ctx := context.Background()
	iterations := 20
	if testing.Short() {
		iterations = 5
	}
	digest := sha256.Sum256([]byte("race"))
	for it := range iterations {
		name := fmt.Sprintf("race-%d", it)
		e.createKey(t, name)
		reached, release := e.store.hold(name)
		var disabled atomic.Bool
		var after, refused, violations atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < 64; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for seen := 0; seen < 4; {
					late := disabled.Load() // read before the call starts
					_, err := e.svc.Sign(ctx, appCaller, name, wire.SignRequest{Digest: digest[:]})
					switch {
					case late && err == nil:
						violations.Add(1)
					case late && errors.Is(err, wire.ErrVersionNotUsable):
						refused.Add(1)
					case err != nil && !errors.Is(err, wire.ErrVersionNotUsable):
						t.Errorf("%s: sign: %v", name, err)
						return
					}
					if late {
						seen++
						after.Add(1)
					}
				}
			}()
		}
		<-reached // a cache miss has read the enabled key and waits
		if _, err := e.svc.SetVersionState(ctx, officerCaller, name, 1, wire.ActionDisable, 0); err != nil {
			t.Fatal(err)
		}
		disabled.Store(true)
		close(release)
		wg.Wait()
		if v := violations.Load(); v > 0 {
			t.Fatalf("%s: %d of %d sign calls started after Disable returned made a signature with the disabled version", name, v, after.Load())
		}
		if refused.Load() != after.Load() || after.Load() < 64*4 {
			t.Fatalf("%s: %d calls after the disable, %d refused", name, after.Load(), refused.Load())
		}
	}
}

// TestRefusedCallsKeepCache (issue 12 item 4): a client without manage
// rights calling disable or settings is refused and must not evict the
// key from the cache (which would force store reads, and reopen the
// cache-miss window, on demand).
func TestRefusedCallsKeepCache(t *testing.T) {
	e := newRevocationEnv(t)
	ctx := context.Background()
	const name = "cached"
	e.createKey(t, name)
	digest := sha256.Sum256([]byte("warm"))
	if _, err := e.svc.Sign(ctx, appCaller, name, wire.SignRequest{Digest: digest[:]}); err != nil {
		t.Fatal(err)
	}
	before := e.store.reads.Load()
	one := 1
	for range 3 {
		if _, err := e.svc.SetVersionState(ctx, appCaller, name, 1, wire.ActionDisable, 0); !errors.Is(err, wire.ErrForbidden) {
			t.Fatalf("disable by a signer: %v, want forbidden", err)
		}
		if _, err := e.svc.UpdateSettings(ctx, appCaller, name, wire.KeySettingsRequest{MinVersion: &one}); !errors.Is(err, wire.ErrForbidden) {
			t.Fatalf("settings by a signer: %v, want forbidden", err)
		}
		if _, err := e.svc.Sign(ctx, appCaller, name, wire.SignRequest{Digest: digest[:]}); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.store.reads.Load() - before; n != 0 {
		t.Fatalf("refused calls evicted the cached key: %d store reads after them", n)
	}
}

// TestPreRevisionKeyRecord (issue 12 item 4, migration): a key record
// written before revisions existed (no "revision" field, as today's store
// holds them) loads, signs, and its first update stores revision 1; the
// cache then refuses the old snapshot.
func TestPreRevisionKeyRecord(t *testing.T) {
	e := newRevocationEnv(t)
	ctx := context.Background()
	const name = "legacy"
	e.createKey(t, name)
	db := e.store.Store.(*boltstore.Store).DB()
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("keys"))
		var rec map[string]any
		if err := json.Unmarshal(b.Get([]byte(name)), &rec); err != nil {
			return err
		}
		delete(rec, "revision")
		raw, _ := json.Marshal(rec)
		return b.Put([]byte(name), raw)
	}); err != nil {
		t.Fatal(err)
	}
	svc, err := keysvc.New(ctx, keysvc.Config{Token: e.tok, Store: e.store, MinDestroyDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("legacy"))
	if _, err := svc.Sign(ctx, appCaller, name, wire.SignRequest{Digest: digest[:]}); err != nil {
		t.Fatalf("sign with a pre-revision record: %v", err)
	}
	k, err := svc.SetVersionState(ctx, officerCaller, name, 1, wire.ActionDisable, 0)
	if err != nil {
		t.Fatal(err)
	}
	if k.Revision != 1 {
		t.Fatalf("revision after the first update = %d, want 1", k.Revision)
	}
	if stored, _ := e.store.Store.GetKey(name); stored.Revision != 1 || stored.Versions[0].State != wire.StateDisabled {
		t.Fatalf("stored record: revision %d, state %s", stored.Revision, stored.Versions[0].State)
	}
	if _, err := svc.Sign(ctx, appCaller, name, wire.SignRequest{Digest: digest[:]}); !errors.Is(err, wire.ErrVersionNotUsable) {
		t.Fatalf("sign after disable: %v", err)
	}
}
