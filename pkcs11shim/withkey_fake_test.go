package pkcs11shim

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

// TestWithKeyRetriesStaleHandle: the token says a token key's handle is
// invalid (the object was re-created under a new handle); WithKey forgets
// the cached handle, so the second run re-finds it by label and CKA_ID,
// and the operation succeeds. Proven on SoftHSM2 end to end in
// softhsm-tests (TestKeysvcStaleHandleRetried).
func TestWithKeyRetriesStaleHandle(t *testing.T) {
	f := newFakeCtx()
	p := newFakePool(t, newFakeModule(t, f, time.Hour), PoolConfig{Authenticate: (&fakeAuth{pin: fakePIN}).authenticate})
	for _, code := range []uint{pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID} {
		k := &Key{Type: KeyECP256, Label: "kw/receipt/v1", ID: []byte{1}, Token: true, epoch: p.epoch.Load(), priv: 7, pub: 8}
		var epochs []uint64
		err := p.WithKey(context.Background(), k, func(s *Session) error {
			k.mu.Lock()
			epochs = append(epochs, k.epoch)
			k.mu.Unlock()
			if len(epochs) == 1 {
				return wrapErr("C_SignInit", pkcs11.Error(code))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: WithKey = %v, want success on the second run", pkcs11.Error(code), err)
		}
		if len(epochs) != 2 {
			t.Fatalf("%s: closure ran %d times, want 2", pkcs11.Error(code), len(epochs))
		}
		if epochs[0] == 0 || epochs[1] != 0 {
			t.Fatalf("%s: key epochs at each run %v: want the cached handles first, then a forced re-find (0)", pkcs11.Error(code), epochs)
		}
	}
}

// TestWithKeyGivesUp: a key still missing on the second run is
// ErrKeyNotFound (two runs, no more); a session key is never re-found (it
// died with its session: one run); other errors are not retried.
func TestWithKeyGivesUp(t *testing.T) {
	f := newFakeCtx()
	p := newFakePool(t, newFakeModule(t, f, time.Hour), PoolConfig{Authenticate: (&fakeAuth{pin: fakePIN}).authenticate})
	stale := func(calls *int) func(*Session) error {
		return func(*Session) error {
			*calls++
			return wrapErr("C_SignInit", pkcs11.Error(pkcs11.CKR_KEY_HANDLE_INVALID))
		}
	}
	tests := []struct {
		name  string
		key   *Key
		fn    func(calls *int) func(*Session) error
		want  error
		calls int
	}{
		{"token key really gone", &Key{Label: "gone", Token: true}, stale, ErrKeyNotFound, 2},
		{"session key", &Key{Label: "unwrapped", Token: false}, stale, ErrKeyNotFound, 1},
		{"bad signature is not stale", &Key{Label: "k", Token: true}, func(calls *int) func(*Session) error {
			return func(*Session) error {
				*calls++
				return wrapErr("C_Verify", pkcs11.Error(pkcs11.CKR_SIGNATURE_INVALID))
			}
		}, ErrSignatureInvalid, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := p.WithKey(context.Background(), tt.key, tt.fn(&calls))
			if !errors.Is(err, tt.want) || calls != tt.calls {
				t.Fatalf("WithKey = %v after %d runs; want %v after %d", err, calls, tt.want, tt.calls)
			}
		})
	}
}
