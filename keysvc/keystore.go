package keysvc

import (
	"context"
	"crypto"
	"io"

	"github.com/keyward/keyward/token"
)

// KeyStore is what keysvc needs of whatever holds its keys (issue 14 item
// 2): find and generate keys, use one (sign, decrypt, HMAC, unwrap-and-use)
// through token.KeyUse, destroy, random bytes, health. Keys are opaque
// token.KeyRefs. *token.Store implements it over a PKCS#11 token, where
// every operation carries the stale-handle retry (pkcs11shim.Pool.WithKey);
// token/memtoken implements it in memory for unit tests. keysvc reaches a
// token only through it: no file of package keysvc imports pkcs11shim
// (cmd/internal/layering's TestKeysvcReachesTokensOnlyThroughToken).
//
// Errors are token's sentinels (token.ErrKeyNotFound, token.ErrDecrypt,
// token.ErrPINLocked, …), which tokenErr maps to keysvc's.
type KeyStore interface {
	// Identity is the label and serial of the token (the service-key record).
	Identity() (label, serial string)
	// FindKey finds a key by label (token.ErrKeyNotFound).
	FindKey(ctx context.Context, label string) (token.KeyRef, error)
	// GenerateKey makes a key held by the store (token.ErrDuplicateLabel
	// when the label is in use).
	GenerateKey(ctx context.Context, spec token.KeySpec) (token.KeyRef, error)
	// GenerateWrapped makes a key that only leaves the store wrapped under
	// kek, and its public key for pairs; nothing of it stays in the store.
	GenerateWrapped(ctx context.Context, kek token.KeyRef, spec token.KeySpec) (blob []byte, pub crypto.PublicKey, err error)
	// Use runs fn with the material's key usable (a wrapped blob unwrapped
	// for the call). fn may run twice (a stale handle re-found), so it must
	// only compute.
	Use(ctx context.Context, m token.Material, fn func(token.KeyUse) error) error
	// Rewrap moves a wrapped blob from KEK from to KEK to without the key
	// leaving the store in clear (the KEK rotation, kekrotation.go).
	Rewrap(ctx context.Context, from, to token.KeyRef, blob []byte, spec token.KeySpec) ([]byte, error)
	// CheckValue identifies a key without revealing it.
	CheckValue(ctx context.Context, ref token.KeyRef) (method string, value []byte, err error)
	// KeyLabels lists the labels of the private and secret keys held.
	KeyLabels(ctx context.Context) ([]string, error)
	// DestroyKey destroys a held key (R-TOK-7).
	DestroyKey(ctx context.Context, ref token.KeyRef) error
	// Random returns n bytes from the store's RNG.
	Random(ctx context.Context, n int) ([]byte, error)
	// Health says whether the store answers now.
	Health(ctx context.Context) error
	// Stats reports sessions and the PIN's state, for metrics.
	Stats() token.StoreStats
}

var _ KeyStore = (*token.Store)(nil)

// refSigner is a store-held key as a crypto.Signer (the audit key).
type refSigner struct {
	keys KeyStore
	ref  token.KeyRef
	pub  crypto.PublicKey
}

func newRefSigner(ctx context.Context, keys KeyStore, ref token.KeyRef) (*refSigner, error) {
	var pub crypto.PublicKey
	err := keys.Use(ctx, token.Material{Key: ref}, func(u token.KeyUse) error {
		var err error
		pub, err = u.PublicKey()
		return err
	})
	if err != nil {
		return nil, err
	}
	return &refSigner{keys: keys, ref: ref, pub: pub}, nil
}

func (s *refSigner) Public() crypto.PublicKey { return s.pub }

func (s *refSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var sig []byte
	err := s.keys.Use(context.Background(), token.Material{Key: s.ref}, func(u token.KeyUse) error {
		var err error
		sig, err = u.Sign(digest, opts)
		return err
	})
	return sig, err
}

// hmac, sealGCM and openGCM use a service key held by the store.
func (s *Service) hmac(ctx context.Context, ref token.KeyRef, data []byte) ([]byte, error) {
	var out []byte
	err := s.keys.Use(ctx, token.Material{Key: ref}, func(u token.KeyUse) error {
		var err error
		out, err = u.HMAC(data)
		return err
	})
	return out, err
}

func (s *Service) sealGCM(ctx context.Context, ref token.KeyRef, plaintext, aad []byte) ([]byte, error) {
	var out []byte
	err := s.keys.Use(ctx, token.Material{Key: ref}, func(u token.KeyUse) error {
		var err error
		out, err = u.EncryptGCM(plaintext, aad)
		return err
	})
	return out, err
}

func (s *Service) openGCM(ctx context.Context, ref token.KeyRef, sealed, aad []byte) ([]byte, error) {
	var out []byte
	err := s.keys.Use(ctx, token.Material{Key: ref}, func(u token.KeyUse) error {
		var err error
		out, err = u.DecryptGCM(sealed, aad)
		return err
	})
	return out, err
}
