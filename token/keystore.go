package token

import (
	"context"
	"crypto"
	"errors"
	"fmt"

	"github.com/keyward/keyward/pkcs11shim"
)

// The key vocabulary of a key store, under token's names so that packages
// above (keysvc) reach a token through token alone (issue 14 item 2).
type (
	// KeyType is what a key is (pkcs11shim.KeyType).
	KeyType = pkcs11shim.KeyType
	// KeySpec asks for a new key (pkcs11shim.KeySpec): type, label, usage.
	KeySpec = pkcs11shim.KeySpec
	// Usage says what a key may do (pkcs11shim.Usage).
	Usage = pkcs11shim.Usage
)

// Key types and usages (see pkcs11shim).
const (
	KeyECP256        = pkcs11shim.KeyECP256
	KeyECP384        = pkcs11shim.KeyECP384
	KeyRSA2048       = pkcs11shim.KeyRSA2048
	KeyRSA3072       = pkcs11shim.KeyRSA3072
	KeyAES256        = pkcs11shim.KeyAES256
	KeyGenericSecret = pkcs11shim.KeyGenericSecret

	UsageSign    = pkcs11shim.UsageSign
	UsageEncrypt = pkcs11shim.UsageEncrypt
	UsageWrap    = pkcs11shim.UsageWrap
	UsageDecrypt = pkcs11shim.UsageDecrypt
	UsageUnwrap  = pkcs11shim.UsageUnwrap
	// UsageExact makes each usage bit one attribute (pkcs11shim.Usage).
	UsageExact = pkcs11shim.UsageExact
)

// Errors a key store returns, the same sentinels pkcs11shim's (errors.Is
// works across both names); any KeyStore implementation returns these.
var (
	ErrKeyNotFound      = pkcs11shim.ErrKeyNotFound
	ErrDecrypt          = pkcs11shim.ErrDecrypt
	ErrMechanismInvalid = pkcs11shim.ErrMechanismInvalid
	ErrKeyMismatch      = pkcs11shim.ErrKeyMismatch
	ErrDuplicateLabel   = pkcs11shim.ErrDuplicateLabel
	ErrInputInvalid     = pkcs11shim.ErrInputInvalid
	ErrTokenNotPresent  = pkcs11shim.ErrTokenNotPresent
	ErrSessionClosed    = pkcs11shim.ErrSessionClosed
	ErrPoolTimeout      = pkcs11shim.ErrPoolTimeout
	ErrTokenBusy        = pkcs11shim.ErrTokenBusy
)

// KeyRef is an opaque reference to a key held by a key store: its label,
// type and CKA_ID are public, the rest (object handles, a software key) is
// the store's own. A store refuses references another store made.
type KeyRef interface {
	Label() string
	KeyType() KeyType
	ID() []byte
}

// Material says which key an operation uses: a key held by the store
// (Key), or a key kept outside it as a blob wrapped under a store-held KEK
// (KEK, Wrapped, Spec), which the store unwraps for the one use and
// destroys after (keysvc's protection "wrapped").
type Material struct {
	Key     KeyRef
	KEK     KeyRef
	Wrapped []byte
	Spec    KeySpec
}

// KeyUse is what may be done with a key for the length of one Use call. It
// must not escape the call.
type KeyUse interface {
	// Sign signs a digest made with opts.HashFunc() (ECDSA: DER; RSA:
	// PKCS#1 v1.5, or PSS with *rsa.PSSOptions).
	Sign(digest []byte, opts crypto.SignerOpts) ([]byte, error)
	// EncryptGCM is AES-GCM: nonce ‖ ciphertext ‖ tag.
	EncryptGCM(plaintext, aad []byte) ([]byte, error)
	// DecryptGCM reverses EncryptGCM; any failure is ErrDecrypt.
	DecryptGCM(sealed, aad []byte) ([]byte, error)
	// DecryptOAEP is RSA-OAEP with MGF1 over hash; any failure is ErrDecrypt.
	DecryptOAEP(hash crypto.Hash, ciphertext []byte) ([]byte, error)
	// HMAC is HMAC-SHA256 with a generic secret key.
	HMAC(data []byte) ([]byte, error)
	// PublicKey is a pair's public key (*ecdsa.PublicKey, *rsa.PublicKey).
	PublicKey() (crypto.PublicKey, error)
}

// StoreStats is a key store's state, for metrics.
type StoreStats struct {
	SessionsInUse, MaxSessions int
	Healthy                    bool
	PINFailures                int
	PINLocked                  bool
	// Members lists each token of a Set (nil for a single Store).
	Members []MemberStats
}

// Store is a Token as a key store: every operation borrows a session
// through pkcs11shim.Pool.WithKey, so a stale object handle
// (CKR_KEY_HANDLE_INVALID, CKR_OBJECT_HANDLE_INVALID) is found again by
// label and CKA_ID and the operation runs once more. It is keysvc's way to
// a token (keysvc.KeyStore).
//
// # Concurrency
//
// A Store is safe for concurrent use; a KeyUse is not.
type Store struct {
	tok  *Token
	pool *pkcs11shim.Pool
}

// NewStore returns t as a key store.
func NewStore(t *Token) *Store { return &Store{tok: t, pool: t.pool} }

// Store returns the token as a key store.
func (t *Token) Store() *Store { return NewStore(t) }

// p11Ref is a Store's KeyRef: a pkcs11shim key, whose handles it caches.
type p11Ref struct{ k *pkcs11shim.Key }

func (r p11Ref) Label() string    { return r.k.Label }
func (r p11Ref) KeyType() KeyType { return r.k.Type }
func (r p11Ref) ID() []byte       { return r.k.ID }
func (r p11Ref) String() string   { return r.k.Label }
func (s *Store) key(ref KeyRef) (*pkcs11shim.Key, error) {
	if r, ok := ref.(p11Ref); ok && r.k != nil {
		return r.k, nil
	}
	return nil, fmt.Errorf("%w: %T is not a reference made by this token", ErrKeyMismatch, ref)
}

// Identity is the token's label and serial.
func (s *Store) Identity() (label, serial string) {
	ti := s.pool.Info()
	return ti.Label, ti.Serial
}

// FindKey finds a token key by label (ErrKeyNotFound).
func (s *Store) FindKey(ctx context.Context, label string) (KeyRef, error) {
	k, err := s.pool.FindKey(ctx, label)
	if err != nil {
		return nil, err
	}
	return p11Ref{k}, nil
}

// GenerateKey makes a new token key (a label in use is ErrDuplicateLabel).
func (s *Store) GenerateKey(ctx context.Context, ks KeySpec) (KeyRef, error) {
	if ks.Session {
		return nil, fmt.Errorf("%w: a session key would die with its session; use GenerateWrapped", ErrInputInvalid)
	}
	k, err := s.pool.GenerateKey(ctx, ks)
	if err != nil {
		return nil, err
	}
	return p11Ref{k}, nil
}

// GenerateWrapped generates a key as an extractable session object,
// returns it wrapped under kek (CKM_AES_KEY_WRAP_PAD) and its public key
// (pairs only), and destroys it: only the blob remains.
func (s *Store) GenerateWrapped(ctx context.Context, kek KeyRef, ks KeySpec) (blob []byte, pub crypto.PublicKey, err error) {
	kk, err := s.key(kek)
	if err != nil {
		return nil, nil, err
	}
	ks.Session, ks.Extractable = true, true
	err = s.pool.WithKey(ctx, kk, func(ss *pkcs11shim.Session) error {
		blob, pub = nil, nil
		tk, err := ss.GenerateKey(ks)
		if err != nil {
			return err
		}
		defer ss.DestroyKey(tk)
		if blob, err = ss.WrapKey(kk, tk); err != nil {
			return err
		}
		if ks.Type.IsPair() {
			pub, err = ss.PublicKey(tk)
		}
		return err
	})
	return blob, pub, err
}

// Rewrap moves a wrapped blob from one KEK to another inside the token:
// C_UnwrapKey under from into an extractable, sensitive session object,
// C_WrapKey under to (CKM_AES_KEY_WRAP_PAD both ways), and the session
// object destroyed. The key is never in clear outside the token. spec is
// the blob's key (type, label, usage), as for Use. keysvc's KEK rotation
// (issue 15) re-wraps every live blob this way before the old KEK is
// destroyed.
func (s *Store) Rewrap(ctx context.Context, from, to KeyRef, blob []byte, ks KeySpec) ([]byte, error) {
	fk, err := s.key(from)
	if err != nil {
		return nil, err
	}
	tk, err := s.key(to)
	if err != nil {
		return nil, err
	}
	if len(blob) == 0 {
		return nil, fmt.Errorf("%w: no blob to re-wrap", ErrInputInvalid)
	}
	ks.Session, ks.Extractable = true, true
	var out []byte
	err = s.pool.WithKey(ctx, fk, func(ss *pkcs11shim.Session) error {
		out = nil
		k, err := ss.UnwrapKey(fk, blob, ks)
		if err != nil {
			return err
		}
		defer ss.DestroyKey(k)
		out, err = ss.WrapKey(tk, k)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Use runs fn with m's key usable: a token key as it is, a wrapped blob
// unwrapped into a session object that is destroyed right after fn. Both go
// through WithKey (the token key's, or the KEK's), so fn may run twice
// after a stale handle: it must only compute.
func (s *Store) Use(ctx context.Context, m Material, fn func(KeyUse) error) error {
	if m.Key != nil {
		k, err := s.key(m.Key)
		if err != nil {
			return err
		}
		return s.pool.WithKey(ctx, k, func(ss *pkcs11shim.Session) error { return fn(p11Use{ss, k}) })
	}
	if m.KEK == nil || len(m.Wrapped) == 0 {
		return errors.New("token: material names neither a key nor a wrapped blob and its KEK")
	}
	kek, err := s.key(m.KEK)
	if err != nil {
		return err
	}
	ks := m.Spec
	ks.Session = true
	return s.pool.WithKey(ctx, kek, func(ss *pkcs11shim.Session) error {
		tk, err := ss.UnwrapKey(kek, m.Wrapped, ks)
		if err != nil {
			return err
		}
		defer ss.DestroyKey(tk)
		return fn(p11Use{ss, tk})
	})
}

// p11Use is a KeyUse over one lent session.
type p11Use struct {
	ss *pkcs11shim.Session
	k  *pkcs11shim.Key
}

func (u p11Use) Sign(digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return u.ss.Sign(u.k, digest, opts, nil)
}
func (u p11Use) EncryptGCM(pt, aad []byte) ([]byte, error) { return u.ss.EncryptGCM(u.k, pt, aad) }
func (u p11Use) DecryptGCM(ct, aad []byte) ([]byte, error) { return u.ss.DecryptGCM(u.k, ct, aad) }
func (u p11Use) DecryptOAEP(h crypto.Hash, ct []byte) ([]byte, error) {
	return u.ss.DecryptOAEP(u.k, h, nil, ct, nil)
}
func (u p11Use) HMAC(data []byte) ([]byte, error)     { return u.ss.HMAC(u.k, data) }
func (u p11Use) PublicKey() (crypto.PublicKey, error) { return u.ss.PublicKey(u.k) }

// CheckValue identifies a key without revealing it (pkcs11shim.Pool.CheckValue).
func (s *Store) CheckValue(ctx context.Context, ref KeyRef) (method string, value []byte, err error) {
	k, err := s.key(ref)
	if err != nil {
		return "", nil, err
	}
	return s.pool.CheckValue(ctx, k)
}

// KeyUsage reads what the token lets the key do, as an exact Usage
// (UsageExact set; pkcs11shim.Pool.KeyUsage). keysvc checks its service
// keys' usages with it at start (an optional ability of a key store).
func (s *Store) KeyUsage(ctx context.Context, ref KeyRef) (Usage, error) {
	k, err := s.key(ref)
	if err != nil {
		return 0, err
	}
	return s.pool.KeyUsage(ctx, k)
}

// KeyLabels lists the labels of the private and secret keys on the token.
func (s *Store) KeyLabels(ctx context.Context) ([]string, error) {
	objs, err := s.pool.ListTokenObjects(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range objs {
		if o.IsKey() && o.ClassName() != "public-key" {
			out = append(out, o.Label)
		}
	}
	return out, nil
}

// DestroyKey destroys a token key (R-TOK-7), through WithKey.
func (s *Store) DestroyKey(ctx context.Context, ref KeyRef) error {
	k, err := s.key(ref)
	if err != nil {
		return err
	}
	return s.pool.DestroyKey(ctx, k)
}

// Random returns n bytes from the token's RNG.
func (s *Store) Random(ctx context.Context, n int) ([]byte, error) {
	return s.pool.GenerateRandom(ctx, n)
}

// Health reads the token's information now: an error means it does not answer.
func (s *Store) Health(ctx context.Context) error {
	_, err := s.pool.RefreshInfo(ctx)
	return err
}

// Stats reports the session pool and the guard's state of the user PIN.
func (s *Store) Stats() StoreStats {
	ps := s.pool.Stats()
	st := StoreStats{SessionsInUse: ps.Lent, MaxSessions: ps.MaxSessions, Healthy: ps.Healthy}
	if pin, err := s.tok.PINState(); err == nil {
		st.PINFailures, st.PINLocked = pin.Failures, pin.Locked
	}
	return st
}
