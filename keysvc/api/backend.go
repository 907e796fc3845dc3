package api

import (
	"context"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/wire"
)

// Backend is what the HTTP layer calls; *keysvc.Service implements it.
// Every method that takes a keysvc.Caller enforces the key's policy itself
// and returns wire.ErrForbidden when it refuses (R-SRV-2): the HTTP layer
// only authenticates. Errors wrap the keysvc sentinels; their messages are
// shown to clients as they are, so they must never hold key material,
// plaintext, PINs or internal detail (R-SRV-4).
type Backend interface {
	CreateKey(ctx context.Context, c keysvc.Caller, req wire.CreateKeyRequest) (*keysvc.Key, error)
	GetKey(ctx context.Context, c keysvc.Caller, name string) (*keysvc.Key, error)
	ListKeys(ctx context.Context, c keysvc.Caller, after string, limit int) (keys []*keysvc.Key, next string, err error)
	Rotate(ctx context.Context, c keysvc.Caller, name string) (*keysvc.Key, error)
	UpdateSettings(ctx context.Context, c keysvc.Caller, name string, req wire.KeySettingsRequest) (*keysvc.Key, error)
	SetVersionState(ctx context.Context, c keysvc.Caller, name string, version int, action wire.VersionAction, delay time.Duration) (*keysvc.Key, error)
	Sign(ctx context.Context, c keysvc.Caller, name string, req wire.SignRequest) (wire.SignResult, error)
	SignBatch(ctx context.Context, c keysvc.Caller, name string, reqs []wire.SignRequest) ([]wire.SignResult, error)
	Verify(ctx context.Context, c keysvc.Caller, name string, req wire.VerifyRequest) (bool, error)
	MAC(ctx context.Context, c keysvc.Caller, name string, message []byte) (mac string, version int, err error)
	VerifyMAC(ctx context.Context, c keysvc.Caller, name string, message []byte, mac string) (bool, error)
	Encrypt(ctx context.Context, c keysvc.Caller, name string, plaintext, aad []byte) (ciphertext string, version int, err error)
	Decrypt(ctx context.Context, c keysvc.Caller, name string, ciphertext string, aad []byte) ([]byte, error)
	DataKey(ctx context.Context, c keysvc.Caller, name string, size int, aad []byte) (wire.DataKey, error)
	PublicKey(ctx context.Context, c keysvc.Caller, name string, version int) (wire.PublicKeyResult, error) // version 0 = primary
	// Display and confirm: the requester's side (R-DC-1..4) and the
	// security officer's holder actions.
	Confirmation(ctx context.Context, c keysvc.Caller, id string, wait time.Duration) (wire.ConfirmationView, error)
	CancelConfirmation(ctx context.Context, c keysvc.Caller, id string) (wire.ConfirmationView, error)
	UnlockHolder(ctx context.Context, c keysvc.Caller, name string) (*keysvc.Key, error)
	ResetHolder(ctx context.Context, c keysvc.Caller, name string) (*keysvc.Key, error)
	Ready(ctx context.Context) error // token reachable and store writable
	Stats() keysvc.Stats
}

// ConfirmBackend is what the confirmation endpoint (the holder's second
// channel) calls; *keysvc.Service implements it. The holder token in each
// call is the holder's credential for one confirmation.
type ConfirmBackend interface {
	HolderConfirmation(ctx context.Context, holderToken string) (wire.ConfirmationView, error)
	Approve(ctx context.Context, holderToken string, req wire.ApproveRequest) (wire.ConfirmationView, error)
	Reject(ctx context.Context, holderToken, key string) (wire.ConfirmationView, error)
	Enrol(ctx context.Context, key, setupCode string, pin []byte) error
}
