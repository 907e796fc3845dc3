package pkcs11shim

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// ContextAuth supplies the per-operation PIN for a key with
// CKA_ALWAYS_AUTHENTICATE: it calls login (one C_Login with
// CKU_CONTEXT_SPECIFIC) at most once. Package token passes its PIN guard here
// so every such login is counted against the lockout.
type ContextAuth func(login LoginFunc) error

// GCMNonceSize and GCMTagSize are the AES-GCM sizes Keyward uses.
const (
	GCMNonceSize = 12
	GCMTagSize   = 16
)

// WithKey lends a session to fn for an operation with k. If the token says
// k's handle is no longer valid (CKR_OBJECT_HANDLE_INVALID,
// CKR_KEY_HANDLE_INVALID: the object was re-created, a restored or failed-over
// HSM numbered it anew), k's handles are found again by label and CKA_ID and
// fn runs once more: fn must be safe to run twice (it is, when it only
// computes). A key that is really gone is ErrKeyNotFound after the second
// run. Session keys (CKA_TOKEN false) die with their session and are never
// re-found. Every key operation of this package and of package token goes
// through WithKey.
func (p *Pool) WithKey(ctx context.Context, k *Key, fn func(s *Session) error) error {
	err := p.WithSession(ctx, fn)
	if errors.Is(err, ErrKeyNotFound) && k.Token {
		k.mu.Lock()
		k.epoch = 0 // force handles() to re-find
		k.mu.Unlock()
		err = p.WithSession(ctx, fn)
	}
	return err
}

// Sign signs digest (already hashed with opts.HashFunc()) with k.
// ECDSA signatures are returned DER-encoded; RSA uses PKCS#1 v1.5, or PSS
// when opts is *rsa.PSSOptions. auth is needed for always-authenticate keys.
func (p *Pool) Sign(ctx context.Context, k *Key, digest []byte, opts crypto.SignerOpts, auth ContextAuth) ([]byte, error) {
	var sig []byte
	err := p.WithKey(ctx, k, func(s *Session) error {
		var err error
		sig, err = s.Sign(k, digest, opts, auth)
		return err
	})
	return sig, err
}

// Verify checks a signature made by Sign, inside the token with k's public
// key. A bad signature is ErrSignatureInvalid.
func (p *Pool) Verify(ctx context.Context, k *Key, digest, sig []byte, opts crypto.SignerOpts) error {
	return p.WithKey(ctx, k, func(s *Session) error { return s.Verify(k, digest, sig, opts) })
}

// EncryptGCM encrypts with an AES key: nonce ‖ ciphertext ‖ tag.
func (p *Pool) EncryptGCM(ctx context.Context, k *Key, plaintext, aad []byte) ([]byte, error) {
	var out []byte
	err := p.WithKey(ctx, k, func(s *Session) error {
		var err error
		out, err = s.EncryptGCM(k, plaintext, aad)
		return err
	})
	return out, err
}

// DecryptGCM reverses EncryptGCM. Any failure of authenticity is ErrDecrypt.
func (p *Pool) DecryptGCM(ctx context.Context, k *Key, sealed, aad []byte) ([]byte, error) {
	var out []byte
	err := p.WithKey(ctx, k, func(s *Session) error {
		var err error
		out, err = s.DecryptGCM(k, sealed, aad)
		return err
	})
	return out, err
}

// EncryptOAEP encrypts with an RSA key's public half (RSA-OAEP, MGF1 with
// the same hash).
func (p *Pool) EncryptOAEP(ctx context.Context, k *Key, hash crypto.Hash, label, plaintext []byte) ([]byte, error) {
	var out []byte
	err := p.WithKey(ctx, k, func(s *Session) error {
		var err error
		out, err = s.EncryptOAEP(k, hash, label, plaintext)
		return err
	})
	return out, err
}

// DecryptOAEP decrypts RSA-OAEP inside the token.
func (p *Pool) DecryptOAEP(ctx context.Context, k *Key, hash crypto.Hash, label, ciphertext []byte, auth ContextAuth) ([]byte, error) {
	var out []byte
	err := p.WithKey(ctx, k, func(s *Session) error {
		var err error
		out, err = s.DecryptOAEP(k, hash, label, ciphertext, auth)
		return err
	})
	return out, err
}

// WrapKey wraps target under the AES key kek with CKM_AES_KEY_WRAP_PAD
// (RFC 5649). The token refuses (ErrKeyUnextractable) when target is not
// extractable.
func (p *Pool) WrapKey(ctx context.Context, kek, target *Key) ([]byte, error) {
	var out []byte
	err := p.WithSession(ctx, func(s *Session) error {
		var err error
		out, err = s.WrapKey(kek, target)
		return err
	})
	return out, err
}

// PublicKey returns k's public key (*ecdsa.PublicKey or *rsa.PublicKey).
func (p *Pool) PublicKey(ctx context.Context, k *Key) (crypto.PublicKey, error) {
	var pub crypto.PublicKey
	err := p.WithKey(ctx, k, func(s *Session) error {
		var err error
		pub, err = s.PublicKey(k)
		return err
	})
	return pub, err
}

// GenerateRandom returns n random bytes from the token's RNG.
func (p *Pool) GenerateRandom(ctx context.Context, n int) ([]byte, error) {
	var out []byte
	err := p.WithSession(ctx, func(s *Session) error {
		var err error
		out, err = s.ctx.GenerateRandom(s.h, n)
		return wrapErr("C_GenerateRandom", err)
	})
	return out, err
}

// HMAC computes HMAC-SHA256 (CKM_SHA256_HMAC) of data with a generic
// secret key held in the token; the key never leaves it. keysvc uses it to
// keep PINs only as keyed hashes (R-TOK-4).
func (p *Pool) HMAC(ctx context.Context, k *Key, data []byte) ([]byte, error) {
	if k.Type != KeyGenericSecret {
		return nil, fmt.Errorf("%w: HMAC needs a generic secret key, %q is %v", ErrKeyMismatch, k.Label, k.Type)
	}
	var out []byte
	err := p.WithKey(ctx, k, func(s *Session) error {
		var err error
		out, err = s.HMAC(k, data)
		return err
	})
	return out, err
}

// HMAC computes HMAC-SHA256 of data with k in this session (see Pool.HMAC).
func (s *Session) HMAC(k *Key, data []byte) ([]byte, error) {
	if k.Type != KeyGenericSecret {
		return nil, fmt.Errorf("%w: HMAC needs a generic secret key, %q is %v", ErrKeyMismatch, k.Label, k.Type)
	}
	priv, _, err := s.handles(k)
	if err != nil {
		return nil, err
	}
	if err := wrapErr("C_SignInit", s.ctx.SignInit(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_HMAC, nil)}, priv)); err != nil {
		return nil, err
	}
	out, err := s.ctx.Sign(s.h, data)
	if err != nil {
		return nil, poisoned{wrapErr("C_Sign", err)}
	}
	return out, nil
}

// --- session-level operations ---------------------------------------------

// hashMechs maps a crypto.Hash to its CKM_ digest and CKG_MGF1 values.
var hashMechs = map[crypto.Hash][2]uint{
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

// digestInfoPrefix is the DER DigestInfo header PKCS#1 v1.5 signatures put
// before the hash (RFC 8017 §9.2 note 1), since CKM_RSA_PKCS signs raw.
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// signMechanism checks the digest against opts and picks the mechanism and
// the exact bytes to hand to C_Sign/C_Verify.
func signMechanism(t KeyType, digest []byte, opts crypto.SignerOpts) (*pkcs11.Mechanism, []byte, error) {
	h := opts.HashFunc()
	if _, ok := hashMechs[h]; !ok {
		return nil, nil, fmt.Errorf("%w: hash %v not supported; use SHA-256, SHA-384 or SHA-512", ErrInputInvalid, h)
	}
	if len(digest) != h.Size() {
		return nil, nil, fmt.Errorf("%w: digest is %d bytes, %v needs %d", ErrInputInvalid, len(digest), h, h.Size())
	}
	switch {
	case t.IsEC():
		return pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil), digest, nil
	case t.IsPair():
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			salt := pss.SaltLength
			switch salt {
			case rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto:
				salt = h.Size() // Auto means "maximum" to crypto/rsa; the hash length is what verifiers expect
			}
			if salt < 0 {
				return nil, nil, fmt.Errorf("%w: invalid PSS salt length %d", ErrInputInvalid, pss.SaltLength)
			}
			hm := hashMechs[h]
			return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(hm[0], hm[1], uint(salt))), digest, nil
		}
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil), append(append([]byte{}, digestInfoPrefix[h]...), digest...), nil
	}
	return nil, nil, fmt.Errorf("%w: %v keys do not sign", ErrKeyMismatch, t)
}

// poison marks the session as possibly holding an active operation; the
// pool closes it instead of lending it again (R-TOK-3: no half-open
// operation survives).
type poisoned struct{ error }

func (e poisoned) Unwrap() error { return e.error }

// Sign signs in this session. See Pool.Sign.
func (s *Session) Sign(k *Key, digest []byte, opts crypto.SignerOpts, auth ContextAuth) ([]byte, error) {
	mech, data, err := signMechanism(k.Type, digest, opts)
	if err != nil {
		return nil, err
	}
	priv, _, err := s.handles(k)
	if err != nil {
		return nil, err
	}
	if err := wrapErr("C_SignInit", s.ctx.SignInit(s.h, []*pkcs11.Mechanism{mech}, priv)); err != nil {
		return nil, err
	}
	if err := s.contextLogin(k, auth); err != nil {
		return nil, poisoned{err}
	}
	sig, err := s.ctx.Sign(s.h, data)
	if err != nil {
		return nil, poisoned{wrapErr("C_Sign", err)}
	}
	if k.Type.IsEC() {
		return ECDSARawToDER(sig)
	}
	return sig, nil
}

// contextLogin performs the CKU_CONTEXT_SPECIFIC login an always-
// authenticate key needs right after the operation's Init.
func (s *Session) contextLogin(k *Key, auth ContextAuth) error {
	if !k.Always {
		return nil
	}
	if auth == nil {
		return fmt.Errorf("%w: key %q needs a PIN for every use and none was supplied", ErrNotLoggedIn, k.Label)
	}
	return auth(func(pin []byte) error {
		return wrapErr("C_Login", s.ctx.Login(s.h, pkcs11.CKU_CONTEXT_SPECIFIC, string(pin)))
	})
}

// Verify verifies in this session. See Pool.Verify.
func (s *Session) Verify(k *Key, digest, sig []byte, opts crypto.SignerOpts) error {
	mech, data, err := signMechanism(k.Type, digest, opts)
	if err != nil {
		return err
	}
	if k.Type.IsEC() {
		curve, _ := k.Type.curve()
		if sig, err = ECDSADERToRaw(sig, (curve.Params().BitSize+7)/8); err != nil {
			return err
		}
	}
	_, pub, err := s.handles(k)
	if err != nil {
		return err
	}
	if pub == 0 {
		return fmt.Errorf("%w: no public key object for %q", ErrKeyNotFound, k.Label)
	}
	if err := wrapErr("C_VerifyInit", s.ctx.VerifyInit(s.h, []*pkcs11.Mechanism{mech}, pub)); err != nil {
		return err
	}
	if err := wrapErr("C_Verify", s.ctx.Verify(s.h, data, sig)); err != nil {
		if errors.Is(err, ErrSignatureInvalid) || errors.Is(err, ErrInputInvalid) {
			return fmt.Errorf("%w: key %q", ErrSignatureInvalid, k.Label)
		}
		return poisoned{err}
	}
	return nil
}

// EncryptGCM encrypts in this session. See Pool.EncryptGCM.
func (s *Session) EncryptGCM(k *Key, plaintext, aad []byte) ([]byte, error) {
	if k.Type != KeyAES256 {
		return nil, fmt.Errorf("%w: AES-GCM needs an AES key, %q is %v", ErrKeyMismatch, k.Label, k.Type)
	}
	priv, _, err := s.handles(k)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, GCMNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	params := pkcs11.NewGCMParams(nonce, aad, GCMTagSize*8)
	defer params.Free()
	if err := wrapErr("C_EncryptInit", s.ctx.EncryptInit(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, priv)); err != nil {
		return nil, err
	}
	ct, err := s.ctx.Encrypt(s.h, plaintext)
	if err != nil {
		return nil, poisoned{wrapErr("C_Encrypt", err)}
	}
	return append(nonce, ct...), nil
}

// DecryptGCM decrypts in this session. See Pool.DecryptGCM.
func (s *Session) DecryptGCM(k *Key, sealed, aad []byte) ([]byte, error) {
	if k.Type != KeyAES256 {
		return nil, fmt.Errorf("%w: AES-GCM needs an AES key, %q is %v", ErrKeyMismatch, k.Label, k.Type)
	}
	if len(sealed) < GCMNonceSize+GCMTagSize {
		return nil, ErrDecrypt
	}
	priv, _, err := s.handles(k)
	if err != nil {
		return nil, err
	}
	params := pkcs11.NewGCMParams(sealed[:GCMNonceSize], aad, GCMTagSize*8)
	defer params.Free()
	if err := wrapErr("C_DecryptInit", s.ctx.DecryptInit(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, priv)); err != nil {
		return nil, err
	}
	pt, err := s.ctx.Decrypt(s.h, sealed[GCMNonceSize:])
	if err != nil {
		// SoftHSM reports a bad tag as CKR_GENERAL_ERROR; whatever the code,
		// the caller only learns "decryption failed".
		return nil, decryptErr(wrapErr("C_Decrypt", err))
	}
	return pt, nil
}

// decryptErr hides why decryption failed unless the session or token died.
func decryptErr(err error) error {
	if sessionBroken(err) || errors.Is(err, ErrNotLoggedIn) {
		return err
	}
	return poisoned{ErrDecrypt}
}

func oaepMechanism(hash crypto.Hash, label []byte) (*pkcs11.Mechanism, error) {
	hm, ok := hashMechs[hash]
	// SHA-1 is accepted for OAEP only, where its collision weakness does not
	// matter and which is all SoftHSM 2.6.1 implements; signatures refuse it.
	if hash == crypto.SHA1 {
		hm, ok = [2]uint{pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1}, true
	}
	if !ok {
		return nil, fmt.Errorf("%w: OAEP hash %v not supported; use SHA-1, SHA-256, SHA-384 or SHA-512", ErrInputInvalid, hash)
	}
	if len(label) == 0 {
		label = nil
	}
	return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.NewOAEPParams(hm[0], hm[1], pkcs11.CKZ_DATA_SPECIFIED, label)), nil
}

// oaepInitErr explains the common refusal: modules reject OAEP parameters
// they don't implement with CKR_ARGUMENTS_BAD (SoftHSM 2.6.1 accepts only
// SHA-1 with MGF1-SHA1 and no label).
func oaepInitErr(op string, err error, hash crypto.Hash, label []byte) error {
	err = wrapErr(op, err)
	if errors.Is(err, pkcs11.Error(pkcs11.CKR_ARGUMENTS_BAD)) {
		return fmt.Errorf("%w: the token refuses RSA-OAEP with %v and a %d-byte label", ErrMechanismInvalid, hash, len(label))
	}
	return err
}

// EncryptOAEP encrypts in this session. See Pool.EncryptOAEP.
func (s *Session) EncryptOAEP(k *Key, hash crypto.Hash, label, plaintext []byte) ([]byte, error) {
	if !k.Type.IsPair() || k.Type.IsEC() {
		return nil, fmt.Errorf("%w: RSA-OAEP needs an RSA key, %q is %v", ErrKeyMismatch, k.Label, k.Type)
	}
	mech, err := oaepMechanism(hash, label)
	if err != nil {
		return nil, err
	}
	_, pub, err := s.handles(k)
	if err != nil {
		return nil, err
	}
	if err := s.ctx.EncryptInit(s.h, []*pkcs11.Mechanism{mech}, pub); err != nil {
		return nil, oaepInitErr("C_EncryptInit", err, hash, label)
	}
	ct, err := s.ctx.Encrypt(s.h, plaintext)
	if err != nil {
		return nil, poisoned{wrapErr("C_Encrypt", err)}
	}
	return ct, nil
}

// DecryptOAEP decrypts in this session. See Pool.DecryptOAEP.
func (s *Session) DecryptOAEP(k *Key, hash crypto.Hash, label, ciphertext []byte, auth ContextAuth) ([]byte, error) {
	if !k.Type.IsPair() || k.Type.IsEC() {
		return nil, fmt.Errorf("%w: RSA-OAEP needs an RSA key, %q is %v", ErrKeyMismatch, k.Label, k.Type)
	}
	mech, err := oaepMechanism(hash, label)
	if err != nil {
		return nil, err
	}
	priv, _, err := s.handles(k)
	if err != nil {
		return nil, err
	}
	if err := s.ctx.DecryptInit(s.h, []*pkcs11.Mechanism{mech}, priv); err != nil {
		return nil, oaepInitErr("C_DecryptInit", err, hash, label)
	}
	if err := s.contextLogin(k, auth); err != nil {
		return nil, poisoned{err}
	}
	pt, err := s.ctx.Decrypt(s.h, ciphertext)
	if err != nil {
		return nil, decryptErr(wrapErr("C_Decrypt", err))
	}
	return pt, nil
}

// WrapKey wraps in this session. See Pool.WrapKey.
func (s *Session) WrapKey(kek, target *Key) ([]byte, error) {
	if kek.Type != KeyAES256 {
		return nil, fmt.Errorf("%w: the wrapping key must be AES, %q is %v", ErrKeyMismatch, kek.Label, kek.Type)
	}
	w, _, err := s.handles(kek)
	if err != nil {
		return nil, err
	}
	t, _, err := s.handles(target)
	if err != nil {
		return nil, err
	}
	out, err := s.ctx.WrapKey(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, w, t)
	return out, wrapErr("C_WrapKey", err)
}

// UnwrapKey unwraps blob under kek into a new key described by ks (its
// Type, Label and Usage; ks.Session for a session key that dies with this
// session, the wrapped-key model). The new key gets the same safe
// attributes as a generated one.
func (s *Session) UnwrapKey(kek *Key, blob []byte, ks KeySpec) (*Key, error) {
	if err := ks.validate(); err != nil {
		return nil, err
	}
	w, _, err := s.handles(kek)
	if err != nil {
		return nil, err
	}
	id := ks.ID
	if len(id) == 0 {
		id = make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return nil, err
		}
	}
	_, privT, _ := ks.templates(id)
	tmpl := privT[:0:0]
	for _, a := range privT {
		switch a.Type {
		case pkcs11.CKA_VALUE_LEN: // the blob fixes the length
		case pkcs11.CKA_MODIFIABLE: // SoftHSM writes CKA_VALUE after the template: read-only would fail it
		default:
			tmpl = append(tmpl, a)
		}
	}
	h, err := s.ctx.UnwrapKey(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, w, blob, tmpl)
	if err != nil {
		err = wrapErr("C_UnwrapKey", err)
		if sessionBroken(err) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	return &Key{Type: ks.Type, Label: ks.Label, ID: id, Token: !ks.Session, epoch: s.epoch, priv: h}, nil
}

// PublicKey reads k's public key in this session.
func (s *Session) PublicKey(k *Key) (crypto.PublicKey, error) {
	if !k.Type.IsPair() {
		return nil, fmt.Errorf("%w: %v keys have no public key", ErrKeyMismatch, k.Type)
	}
	_, pub, err := s.handles(k)
	if err != nil {
		return nil, err
	}
	if pub == 0 {
		return nil, fmt.Errorf("%w: no public key object for %q", ErrKeyNotFound, k.Label)
	}
	if k.Type.IsEC() {
		a, err := s.ctx.GetAttributeValue(s.h, pub, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil), pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
		if err != nil {
			return nil, wrapErr("C_GetAttributeValue", err)
		}
		curve, want := k.Type.curve()
		var oid asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(a[0].Value, &oid); err != nil || !oid.Equal(want) {
			return nil, fmt.Errorf("%w: public key curve does not match %v", ErrKeyMismatch, k.Type)
		}
		return parseECPoint(curve, a[1].Value)
	}
	a, err := s.ctx.GetAttributeValue(s.h, pub, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil)})
	if err != nil {
		return nil, wrapErr("C_GetAttributeValue", err)
	}
	return rsaPublic(a[0].Value, a[1].Value), nil
}

// ReadValue asks the token for k's secret value (CKA_VALUE, or
// CKA_PRIVATE_EXPONENT for RSA). For
// every key Keyward makes this fails with ErrKeyUnextractable (R-TOK-2); it
// exists so tests and audits can prove exactly that.
func (s *Session) ReadValue(k *Key) ([]byte, error) {
	priv, _, err := s.handles(k)
	if err != nil {
		return nil, err
	}
	attr := uint(pkcs11.CKA_VALUE)
	if k.Type.IsPair() && !k.Type.IsEC() {
		attr = pkcs11.CKA_PRIVATE_EXPONENT
	}
	a, err := s.ctx.GetAttributeValue(s.h, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(attr, nil)})
	if err != nil {
		return nil, wrapErr("C_GetAttributeValue", err)
	}
	return a[0].Value, nil
}

// RawSigner opens a dedicated session outside the pool and returns a
// function that does nothing but C_SignInit + C_Sign (CKM_ECDSA, raw r‖s) on
// it. It is the baseline the benchmarks compare the pool against; close
// releases the session.
func (p *Pool) RawSigner(k *Key) (sign func(digest []byte) ([]byte, error), closeFn func(), err error) {
	if !k.Type.IsEC() {
		return nil, nil, fmt.Errorf("%w: RawSigner is for EC keys", ErrKeyMismatch)
	}
	var h pkcs11.SessionHandle
	var priv pkcs11.ObjectHandle
	err = p.mod.call(func(c PKCtx) error {
		var err error
		if h, err = c.OpenSession(p.slotID(), pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION); err != nil {
			return wrapErr("C_OpenSession", err)
		}
		s := Session{ctx: c, h: h, slot: p.slotID(), gen: p.mod.Generation(), epoch: p.epoch.Load(), pool: p}
		priv, _, err = s.handles(k)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}
	sign = func(digest []byte) ([]byte, error) {
		var sig []byte
		err := p.mod.call(func(c PKCtx) error {
			if err := c.SignInit(h, mech, priv); err != nil {
				return wrapErr("C_SignInit", err)
			}
			var err error
			sig, err = c.Sign(h, digest)
			return wrapErr("C_Sign", err)
		})
		return sig, err
	}
	closeFn = func() { _ = p.mod.call(func(c PKCtx) error { return c.CloseSession(h) }) }
	return sign, closeFn, nil
}
