// Package memtoken is an in-memory key store for unit tests: it
// implements keysvc.KeyStore (token's key-store vocabulary: token.KeyRef,
// token.Material, token.KeyUse) with real cryptography from Go's standard
// library — ECDSA P-256/P-384, RSA-2048/3072 (PKCS#1 v1.5, PSS, OAEP),
// AES-256-GCM, AES key wrap with padding (RFC 5649) for wrapped keys, and
// HMAC-SHA256 — so keysvc.Service can be tested without SoftHSM.
//
// It is test-only: keys live in process memory in clear, nothing is
// non-extractable, and there is no PIN. No command may link it
// (cmd/internal/layering's TestCommandsLinkNoMemtoken). SoftHSM2, in
// softhsm-tests, stays the proof of real token behaviour.
//
// # Concurrency
//
// A Token is safe for concurrent use.
package memtoken

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/keyward/keyward/token"
)

// Token is an in-memory key store.
type Token struct {
	label, serial string

	mu      sync.Mutex
	keys    map[string]*key // by label
	down    error           // when set, every operation fails with it
	repl    []byte          // the replication key (InstallReplicationKey)
	uses    int             // Use calls, for tests
	destroy int             // keys destroyed
}

// New returns an empty in-memory token.
func New(label, serial string) *Token {
	return &Token{label: label, serial: serial, keys: map[string]*key{}}
}

// key is a key held by a Token; it is its own token.KeyRef.
type key struct {
	label string
	typ   token.KeyType
	id    []byte
	usage token.Usage
	ec    *ecdsa.PrivateKey
	rsa   *rsa.PrivateKey
	sec   []byte // AES or generic secret
	// extractable: it may leave wrapped under the replication key
	// (KeySpec.Extractable, the token's CKA_WRAP_WITH_TRUSTED).
	extractable bool
}

func (k *key) Label() string          { return k.label }
func (k *key) KeyType() token.KeyType { return k.typ }
func (k *key) ID() []byte             { return slices.Clone(k.id) }

// SetDown makes every operation fail with err (nil: up again), as a token
// that went away: err should wrap token.ErrTokenNotPresent.
func (t *Token) SetDown(err error) {
	t.mu.Lock()
	t.down = err
	t.mu.Unlock()
}

// Labels returns the labels of the keys held, sorted.
func (t *Token) Labels() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.keys))
	for l := range t.keys {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

// Remove drops a key as if destroyed outside keysvc; it reports whether
// there was one.
func (t *Token) Remove(label string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.keys[label]
	delete(t.keys, label)
	return ok
}

func (t *Token) up() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.down
}

// held returns ref's key if this token holds it now.
func (t *Token) held(ref token.KeyRef) (*key, error) {
	k, ok := ref.(*key)
	if !ok || k == nil {
		return nil, fmt.Errorf("%w: %T is not a reference made by this token", token.ErrKeyMismatch, ref)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down != nil {
		return nil, t.down
	}
	if t.keys[k.label] != k {
		return nil, fmt.Errorf("%w: no key labelled %q", token.ErrKeyNotFound, k.label)
	}
	return k, nil
}

// Identity is the token's label and serial.
func (t *Token) Identity() (label, serial string) { return t.label, t.serial }

// FindKey finds a key by label.
func (t *Token) FindKey(_ context.Context, label string) (token.KeyRef, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down != nil {
		return nil, t.down
	}
	k, ok := t.keys[label]
	if !ok {
		return nil, fmt.Errorf("%w: no key labelled %q", token.ErrKeyNotFound, label)
	}
	return k, nil
}

// GenerateKey makes a key; a label in use is token.ErrDuplicateLabel.
func (t *Token) GenerateKey(_ context.Context, ks token.KeySpec) (token.KeyRef, error) {
	if err := t.up(); err != nil {
		return nil, err
	}
	if ks.Label == "" || ks.Session {
		return nil, fmt.Errorf("%w: a token key needs a label and is not a session key", token.ErrInputInvalid)
	}
	k, err := newKey(ks)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.keys[ks.Label]; ok {
		return nil, fmt.Errorf("%w: %q", token.ErrDuplicateLabel, ks.Label)
	}
	t.keys[ks.Label] = k
	return k, nil
}

func newKey(ks token.KeySpec) (*key, error) {
	k := &key{label: ks.Label, typ: ks.Type, id: slices.Clone(ks.ID), usage: ks.Usage, extractable: ks.Extractable}
	if len(k.id) == 0 {
		k.id = make([]byte, 16)
		rand.Read(k.id)
	}
	var err error
	switch ks.Type {
	case token.KeyECP256:
		k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case token.KeyECP384:
		k.ec, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case token.KeyRSA2048:
		k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	case token.KeyRSA3072:
		k.rsa, err = rsa.GenerateKey(rand.Reader, 3072)
	case token.KeyAES256, token.KeyGenericSecret:
		k.sec = make([]byte, 32)
		_, err = rand.Read(k.sec)
	default:
		return nil, fmt.Errorf("%w: memtoken does not make %v keys", token.ErrMechanismInvalid, ks.Type)
	}
	return k, err
}

// GenerateWrapped makes a key and returns it wrapped under kek (AES key
// wrap with padding over its PKCS#8 or raw form) and its public key.
func (t *Token) GenerateWrapped(_ context.Context, kek token.KeyRef, ks token.KeySpec) ([]byte, crypto.PublicKey, error) {
	w, err := t.held(kek)
	if err != nil {
		return nil, nil, err
	}
	if w.typ != token.KeyAES256 || !w.usage.Has(token.UsageWrap) {
		return nil, nil, fmt.Errorf("%w: %q is not a wrapping key", token.ErrKeyMismatch, w.label)
	}
	k, err := newKey(ks)
	if err != nil {
		return nil, nil, err
	}
	raw, err := k.marshal()
	if err != nil {
		return nil, nil, err
	}
	blob, err := wrapKWP(w.sec, raw)
	if err != nil {
		return nil, nil, err
	}
	pub, _ := k.public()
	return blob, pub, nil
}

func (k *key) marshal() ([]byte, error) {
	switch {
	case k.ec != nil:
		return x509.MarshalPKCS8PrivateKey(k.ec)
	case k.rsa != nil:
		return x509.MarshalPKCS8PrivateKey(k.rsa)
	}
	return slices.Clone(k.sec), nil
}

func unmarshalKey(raw []byte, ks token.KeySpec) (*key, error) {
	k := &key{label: ks.Label, typ: ks.Type, usage: ks.Usage}
	if ks.Type == token.KeyAES256 || ks.Type == token.KeyGenericSecret {
		if len(raw) != 32 {
			return nil, token.ErrDecrypt
		}
		k.sec = raw
		return k, nil
	}
	priv, err := x509.ParsePKCS8PrivateKey(raw)
	if err != nil {
		return nil, token.ErrDecrypt
	}
	switch p := priv.(type) {
	case *ecdsa.PrivateKey:
		k.ec = p
	case *rsa.PrivateKey:
		k.rsa = p
	}
	if pub, _ := k.public(); pub == nil || (k.ec != nil) != ks.Type.IsEC() {
		return nil, fmt.Errorf("%w: the unwrapped key is not a %v key", token.ErrKeyMismatch, ks.Type)
	}
	return k, nil
}

// Use runs fn with the material's key: a held key, or a blob unwrapped
// under its KEK for the call.
func (t *Token) Use(_ context.Context, m token.Material, fn func(token.KeyUse) error) error {
	t.mu.Lock()
	t.uses++
	t.mu.Unlock()
	if m.Key != nil {
		k, err := t.held(m.Key)
		if err != nil {
			return err
		}
		return fn(use{k})
	}
	if m.KEK == nil || len(m.Wrapped) == 0 {
		return errors.New("memtoken: material names neither a key nor a wrapped blob and its KEK")
	}
	w, err := t.held(m.KEK)
	if err != nil {
		return err
	}
	if w.typ != token.KeyAES256 || !w.usage.Has(token.UsageWrap) {
		return fmt.Errorf("%w: %q is not a wrapping key", token.ErrKeyMismatch, w.label)
	}
	raw, err := unwrapKWP(w.sec, m.Wrapped)
	if err != nil {
		return err
	}
	k, err := unmarshalKey(raw, m.Spec)
	if err != nil {
		return err
	}
	return fn(use{k})
}

// Rewrap unwraps blob under from and wraps the key under to (AES key
// wrap with padding both ways), as token.Store.Rewrap does in a token.
func (t *Token) Rewrap(_ context.Context, from, to token.KeyRef, blob []byte, ks token.KeySpec) ([]byte, error) {
	f, err := t.held(from)
	if err != nil {
		return nil, err
	}
	w, err := t.held(to)
	if err != nil {
		return nil, err
	}
	for _, k := range []*key{f, w} {
		if k.typ != token.KeyAES256 || !k.usage.Has(token.UsageWrap) {
			return nil, fmt.Errorf("%w: %q is not a wrapping key", token.ErrKeyMismatch, k.label)
		}
	}
	raw, err := unwrapKWP(f.sec, blob)
	if err != nil {
		return nil, err
	}
	if _, err := unmarshalKey(raw, ks); err != nil {
		return nil, err
	}
	return wrapKWP(w.sec, raw)
}

// Uses counts Use calls (a test can check that an operation reached the store).
func (t *Token) Uses() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.uses
}

// use is a KeyUse of one key.
type use struct{ k *key }

func (u use) can(want token.Usage) error {
	if u.k.usage != 0 && !u.k.usage.Has(want) {
		return fmt.Errorf("%w: %q may not do this", token.ErrKeyMismatch, u.k.label)
	}
	return nil
}

func (u use) Sign(digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := u.can(token.UsageSign); err != nil {
		return nil, err
	}
	if opts == nil || len(digest) != opts.HashFunc().Size() {
		return nil, fmt.Errorf("%w: digest length does not match the hash", token.ErrInputInvalid)
	}
	switch {
	case u.k.ec != nil:
		return ecdsa.SignASN1(rand.Reader, u.k.ec, digest)
	case u.k.rsa != nil:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			return rsa.SignPSS(rand.Reader, u.k.rsa, opts.HashFunc(), digest, pss)
		}
		return rsa.SignPKCS1v15(rand.Reader, u.k.rsa, opts.HashFunc(), digest)
	}
	return nil, fmt.Errorf("%w: %q is not a signing key", token.ErrKeyMismatch, u.k.label)
}

func (u use) gcm() (cipher.AEAD, error) {
	if u.k.typ != token.KeyAES256 {
		return nil, fmt.Errorf("%w: %q is not an AES key", token.ErrKeyMismatch, u.k.label)
	}
	if err := u.can(token.UsageEncrypt); err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(u.k.sec)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (u use) EncryptGCM(plaintext, aad []byte) ([]byte, error) {
	g, err := u.gcm()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return g.Seal(nonce, nonce, plaintext, aad), nil
}

func (u use) DecryptGCM(sealed, aad []byte) ([]byte, error) {
	g, err := u.gcm()
	if err != nil {
		return nil, err
	}
	if len(sealed) < g.NonceSize()+g.Overhead() {
		return nil, token.ErrDecrypt
	}
	pt, err := g.Open(nil, sealed[:g.NonceSize()], sealed[g.NonceSize():], aad)
	if err != nil {
		return nil, token.ErrDecrypt
	}
	return pt, nil
}

func (u use) DecryptOAEP(hash crypto.Hash, ciphertext []byte) ([]byte, error) {
	if u.k.rsa == nil {
		return nil, fmt.Errorf("%w: %q is not an RSA key", token.ErrKeyMismatch, u.k.label)
	}
	if err := u.can(token.UsageEncrypt); err != nil {
		return nil, err
	}
	pt, err := rsa.DecryptOAEP(hash.New(), nil, u.k.rsa, ciphertext, nil)
	if err != nil {
		return nil, token.ErrDecrypt
	}
	return pt, nil
}

func (u use) HMAC(data []byte) ([]byte, error) {
	if u.k.typ != token.KeyGenericSecret {
		return nil, fmt.Errorf("%w: HMAC needs a generic secret key, %q is %v", token.ErrKeyMismatch, u.k.label, u.k.typ)
	}
	m := hmac.New(sha256.New, u.k.sec)
	m.Write(data)
	return m.Sum(nil), nil
}

func (u use) PublicKey() (crypto.PublicKey, error) { return u.k.public() }

func (k *key) public() (crypto.PublicKey, error) {
	switch {
	case k.ec != nil:
		return &k.ec.PublicKey, nil
	case k.rsa != nil:
		return &k.rsa.PublicKey, nil
	}
	return nil, fmt.Errorf("%w: %q has no public key", token.ErrKeyMismatch, k.label)
}

// Check-value methods, named as pkcs11shim names its own.
const (
	checkSPKI = "spki-sha256"
	checkHMAC = "hmac-sha256"
	checkAES  = "aes-ecb-zero"
)

// CheckValue identifies a key: the SHA-256 of a pair's public key, an
// HMAC of a fixed message, or AES of a zero block.
func (t *Token) CheckValue(_ context.Context, ref token.KeyRef) (string, []byte, error) {
	k, err := t.held(ref)
	if err != nil {
		return "", nil, err
	}
	if pub, err := k.public(); err == nil {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", nil, err
		}
		sum := sha256.Sum256(der)
		return checkSPKI, sum[:], nil
	}
	if k.typ == token.KeyGenericSecret {
		v, err := use{k}.HMAC([]byte("keyward key check value v1"))
		return checkHMAC, v, err
	}
	b, err := aes.NewCipher(k.sec)
	if err != nil {
		return "", nil, err
	}
	out := make([]byte, aes.BlockSize)
	b.Encrypt(out, out)
	return checkAES, out, nil
}

// KeyLabels lists the labels of the keys held.
func (t *Token) KeyLabels(context.Context) ([]string, error) {
	if err := t.up(); err != nil {
		return nil, err
	}
	return t.Labels(), nil
}

// DestroyKey destroys a held key.
func (t *Token) DestroyKey(_ context.Context, ref token.KeyRef) error {
	k, err := t.held(ref)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.keys, k.label)
	t.destroy++
	return nil
}

// Random returns n random bytes.
func (t *Token) Random(_ context.Context, n int) ([]byte, error) {
	if err := t.up(); err != nil {
		return nil, err
	}
	b := make([]byte, n)
	_, err := rand.Read(b)
	return b, err
}

// Health fails while the token is down (SetDown).
func (t *Token) Health(context.Context) error { return t.up() }

// Stats reports one session, healthy unless down.
func (t *Token) Stats() token.StoreStats {
	return token.StoreStats{MaxSessions: 1, Healthy: t.up() == nil}
}
