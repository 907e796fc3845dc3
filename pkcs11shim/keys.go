package pkcs11shim

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"errors"
	"fmt"
	"sync"

	"github.com/miekg/pkcs11"
)

// KeyType is what a key is. The zero value is invalid.
type KeyType int

// Key types Keyward generates.
const (
	KeyECP256 KeyType = iota + 1
	KeyECP384
	KeyRSA2048
	KeyRSA3072
	KeyRSA4096
	KeyAES256
	KeyGenericSecret // 256-bit CKK_GENERIC_SECRET, for HMAC
)

func (t KeyType) String() string {
	switch t {
	case KeyECP256:
		return "ec-p256"
	case KeyECP384:
		return "ec-p384"
	case KeyRSA2048:
		return "rsa-2048"
	case KeyRSA3072:
		return "rsa-3072"
	case KeyRSA4096:
		return "rsa-4096"
	case KeyAES256:
		return "aes-256"
	case KeyGenericSecret:
		return "generic-secret"
	}
	return fmt.Sprintf("KeyType(%d)", int(t))
}

// IsPair reports whether the key type is an asymmetric key pair.
func (t KeyType) IsPair() bool { return t >= KeyECP256 && t <= KeyRSA4096 }

// IsEC reports whether the key type is an elliptic-curve key pair.
func (t KeyType) IsEC() bool { return t == KeyECP256 || t == KeyECP384 }

func (t KeyType) curve() (elliptic.Curve, asn1.ObjectIdentifier) {
	switch t {
	case KeyECP256:
		return elliptic.P256(), oidP256
	case KeyECP384:
		return elliptic.P384(), oidP384
	}
	return nil, nil
}

func (t KeyType) rsaBits() int {
	switch t {
	case KeyRSA2048:
		return 2048
	case KeyRSA3072:
		return 3072
	case KeyRSA4096:
		return 4096
	}
	return 0
}

// Usage says what a key may do; it becomes CKA_SIGN/CKA_DECRYPT/... so the
// token itself refuses other uses. Zero means the type's natural uses.
// Every usage attribute a key could have and was not asked for is set
// false explicitly: SoftHSM2 defaults CKA_DECRYPT, CKA_UNWRAP,
// CKA_SIGN_RECOVER on a private key and CKA_SIGN, CKA_VERIFY on an AES key
// to true.
//
// Without UsageExact a bit names a use, as keysvc asks for it: UsageEncrypt
// is CKA_ENCRYPT and CKA_DECRYPT, UsageWrap is CKA_WRAP and CKA_UNWRAP.
// With UsageExact each bit is one attribute, as the ceremony's usage list
// asks for it: UsageEncrypt is CKA_ENCRYPT only (on a pair: the public
// key's), UsageDecrypt CKA_DECRYPT only (the private key's), UsageWrap
// CKA_WRAP, UsageUnwrap CKA_UNWRAP. UsageSign is always signing and its
// verification (CKA_SIGN and CKA_VERIFY: a pair's two halves, or HMAC).
type Usage uint

// Usages.
const (
	UsageSign Usage = 1 << iota
	UsageEncrypt
	UsageWrap
	UsageDecrypt
	UsageUnwrap

	// UsageExact makes each bit mean exactly one attribute (see Usage).
	UsageExact Usage = 1 << 15
)

// attrs expands u into the attributes it grants: without UsageExact,
// encrypt brings decrypt and wrap brings unwrap.
func (u Usage) attrs() Usage {
	if u&UsageExact != 0 {
		return u &^ UsageExact
	}
	if u&UsageEncrypt != 0 {
		u |= UsageDecrypt
	}
	if u&UsageWrap != 0 {
		u |= UsageUnwrap
	}
	return u
}

// Has reports whether u grants every attribute of want (both read with
// u's and want's meaning, see Usage).
func (u Usage) Has(want Usage) bool { return u.attrs()&want.attrs() == want.attrs() }

// KeySpec asks for a new key.
type KeySpec struct {
	Type  KeyType
	Label string // CKA_LABEL; required and unique on the token
	ID    []byte // CKA_ID; random 16 bytes when empty
	Usage Usage
	// Session makes a session object (CKA_TOKEN=false) that dies with its
	// session: the wrapped-key model unwraps or generates keys this way.
	Session bool
	// Extractable allows wrapping the key out (still never in clear:
	// CKA_SENSITIVE stays true). Only for keys meant to be backed up or
	// stored wrapped.
	Extractable bool
	// AlwaysAuthenticate demands a PIN (CKU_CONTEXT_SPECIFIC) for each use of
	// the private key, as on a personal USB key.
	AlwaysAuthenticate bool
	// Undestroyable sets CKA_DESTROYABLE false: C_DestroyObject is refused
	// to every user-PIN holder, and only re-initialising the token with the
	// SO PIN (zeroize) removes the key. For ceremony keys.
	Undestroyable bool
}

func (ks KeySpec) validate() error {
	switch {
	case ks.Type < KeyECP256 || ks.Type > KeyGenericSecret:
		return fmt.Errorf("%w: unknown key type %d", ErrInputInvalid, ks.Type)
	case ks.Label == "":
		return fmt.Errorf("%w: a key label is required", ErrInputInvalid)
	case len(ks.Label) > 128:
		return fmt.Errorf("%w: key label longer than 128 bytes", ErrInputInvalid)
	case ks.AlwaysAuthenticate && !ks.Type.IsPair():
		return fmt.Errorf("%w: always-authenticate applies to private keys only", ErrInputInvalid)
	}
	return nil
}

func (ks KeySpec) usage() Usage {
	if ks.Usage != 0 {
		return ks.Usage
	}
	switch {
	case ks.Type.IsEC():
		return UsageSign
	case ks.Type.IsPair():
		return UsageSign | UsageEncrypt
	case ks.Type == KeyAES256:
		return UsageEncrypt | UsageWrap
	}
	return UsageSign // generic secret: HMAC
}

// templates is the one place where key attributes are chosen (R-TOK-1,
// R-TOK-2). Every private and secret key is sensitive and, unless asked
// otherwise, not extractable; every key has CKA_ID and CKA_LABEL; every
// usage attribute the object class has is set, true only when asked for.
func (ks KeySpec) templates(id []byte) (pub, priv []*pkcs11.Attribute, mech *pkcs11.Mechanism) {
	u := ks.usage().attrs()
	has := func(w Usage) bool { return u&w != 0 }
	common := func(class uint) []*pkcs11.Attribute {
		a := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, !ks.Session), // persist unless a session key was asked for
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, ks.Label),    // the name operators and URIs use
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),             // links the halves of a pair; URI id=
			pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),  // nobody flips CKA_EXTRACTABLE or a usage later
			pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false),    // no C_CopyObject into a copy with other attributes
			pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),      // no key derivation (ECDH) from any key we make
		}
		if ks.Undestroyable {
			a = append(a, pkcs11.NewAttribute(pkcs11.CKA_DESTROYABLE, false)) // only zeroize (C_InitToken) removes it
		}
		return a
	}
	secret := func(class uint) []*pkcs11.Attribute {
		a := append(common(class),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),               // only a logged-in user sees it
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),             // never readable in clear (R-TOK-1)
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, ks.Extractable), // false by default: cannot be wrapped out (R-TOK-2)
		)
		if ks.Extractable && !ks.Session {
			// A token key that may be backed up leaves only under a
			// CKA_TRUSTED key, which only the SO can make: a user-PIN
			// holder cannot wrap it under a key they know (issue 13).
			// Session keys of keysvc's wrapped model are wrapped under
			// keysvc-kek instead and die with their session.
			a = append(a, pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, true))
		}
		return a
	}
	switch {
	case ks.Type.IsPair():
		var keyType uint = pkcs11.CKK_RSA
		var pubSpecific []*pkcs11.Attribute
		if ks.Type.IsEC() {
			_, oid := ks.Type.curve()
			params, _ := asn1.Marshal(oid)
			keyType = pkcs11.CKK_EC
			pubSpecific = []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params)} // the named curve
			mech = pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)
		} else {
			pubSpecific = []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, ks.Type.rsaBits()),
				pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}), // 65537
			}
			mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)
		}
		pub = append(append(common(pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType)), pubSpecific...)
		pub = append(pub,
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, has(UsageSign)),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY_RECOVER, false),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, has(UsageEncrypt)),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, has(UsageWrap)),
		)
		priv = append(secret(pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, has(UsageSign)),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN_RECOVER, false),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, has(UsageDecrypt)),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, has(UsageUnwrap)),
		)
	case ks.Type == KeyAES256:
		priv = append(secret(pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32), // AES-256
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, has(UsageEncrypt)),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, has(UsageDecrypt)),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, has(UsageWrap)),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, has(UsageUnwrap)),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, false), // no CMAC/MAC with an encryption key
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		)
		mech = pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)
	default: // KeyGenericSecret
		priv = append(secret(pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), // HMAC
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		)
		mech = pkcs11.NewMechanism(pkcs11.CKM_GENERIC_SECRET_KEY_GEN, nil)
	}
	if ks.AlwaysAuthenticate {
		priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_AUTHENTICATE, true)) // PIN for every use
	}
	return pub, priv, mech
}

// Key is a key on a token: a private/public pair or a secret key. Its
// object handles are cached and re-found by label and CKA_ID after any
// reconnection of its pool (a stale handle could name a different object)
// or when the token says a handle is invalid.
type Key struct {
	Type   KeyType
	Label  string
	ID     []byte
	Token  bool // CKA_TOKEN: false for session keys
	Always bool // CKA_ALWAYS_AUTHENTICATE on the private key

	mu    sync.Mutex
	epoch uint64 // connection epoch of the handles (see Pool.epoch); 0 = re-find
	priv  pkcs11.ObjectHandle
	pub   pkcs11.ObjectHandle
}

type keyCacheID struct{ label string }

// GenerateKey makes a new key in the token. A key whose label already
// exists is refused with ErrDuplicateLabel.
func (p *Pool) GenerateKey(ctx context.Context, ks KeySpec) (*Key, error) {
	var k *Key
	err := p.WithSession(ctx, func(s *Session) error {
		var err error
		k, err = s.GenerateKey(ks)
		return err
	})
	if err != nil {
		return nil, err
	}
	if k.Token {
		p.mu.Lock()
		p.keys[keyCacheID{k.Label}] = k
		p.mu.Unlock()
	}
	return k, nil
}

// GenerateKey makes a key in this session (used directly for session keys,
// which die with the session).
func (s *Session) GenerateKey(ks KeySpec) (*Key, error) {
	if err := ks.validate(); err != nil {
		return nil, err
	}
	if !ks.Session {
		n, err := s.countObjects([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, ks.Label)})
		if err != nil {
			return nil, err
		}
		if n > 0 {
			return nil, fmt.Errorf("%w: %q", ErrDuplicateLabel, ks.Label)
		}
	}
	id := ks.ID
	if len(id) == 0 {
		id = make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return nil, err
		}
	}
	pubT, privT, mech := ks.templates(id)
	if ks.Type.IsEC() && s.derivesECUsage() {
		pubT, privT = withoutAttr(pubT, pkcs11.CKA_ENCRYPT), withoutAttr(privT, pkcs11.CKA_DECRYPT)
	}
	k := &Key{Type: ks.Type, Label: ks.Label, ID: id, Token: !ks.Session, Always: ks.AlwaysAuthenticate, epoch: s.epoch}
	var err error
	if ks.Type.IsPair() {
		k.pub, k.priv, err = s.ctx.GenerateKeyPair(s.h, []*pkcs11.Mechanism{mech}, pubT, privT)
		err = wrapErr("C_GenerateKeyPair", err)
	} else {
		k.priv, err = s.ctx.GenerateKey(s.h, []*pkcs11.Mechanism{mech}, privT)
		err = wrapErr("C_GenerateKey", err)
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}

// FindKey finds a token key by label. Results are cached per pool: finding
// objects costs milliseconds on a token with many objects.
func (p *Pool) FindKey(ctx context.Context, label string) (*Key, error) {
	p.mu.Lock()
	k, ok := p.keys[keyCacheID{label}]
	p.mu.Unlock()
	if ok {
		return k, nil
	}
	k = &Key{Label: label, Token: true}
	if err := p.WithSession(ctx, func(s *Session) error { return s.refind(k, true) }); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.keys[keyCacheID{label}] = k
	p.mu.Unlock()
	return k, nil
}

// forget drops a key from the cache (after destroy).
func (p *Pool) forget(k *Key) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keys[keyCacheID{k.Label}] == k {
		delete(p.keys, keyCacheID{k.Label})
	}
}

// handles returns the key's handles valid in s, re-finding them by label
// and CKA_ID when they belong to an older module generation.
func (s *Session) handles(k *Key) (priv, pub pkcs11.ObjectHandle, err error) {
	k.mu.Lock()
	fresh := k.epoch == s.epoch
	priv, pub = k.priv, k.pub
	k.mu.Unlock()
	if fresh {
		return priv, pub, nil
	}
	if !k.Token {
		return 0, 0, fmt.Errorf("%w: session key %q died with its session", ErrKeyNotFound, k.Label)
	}
	if err := s.refind(k, false); err != nil {
		return 0, 0, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.priv, k.pub, nil
}

// refind looks the key up by label (and CKA_ID once known) and stores fresh
// handles. first is true when the key's type is not known yet.
func (s *Session) refind(k *Key, first bool) error {
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.Label), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)}
	if len(k.ID) > 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, k.ID))
	}
	objs, err := s.findObjects(tmpl, 4)
	if err != nil {
		return err
	}
	var priv, pub pkcs11.ObjectHandle
	var class, ktype uint
	var id []byte
	for _, o := range objs {
		attrs, err := s.ctx.GetAttributeValue(s.h, o, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil), pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
		if err != nil {
			return wrapErr("C_GetAttributeValue", err)
		}
		c, t := bytesToUint(attrs[0].Value), bytesToUint(attrs[1].Value)
		switch c {
		case pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_SECRET_KEY:
			if priv != 0 {
				return fmt.Errorf("%w: two keys labelled %q; remove one with the ceremony tool", ErrDuplicateLabel, k.Label)
			}
			priv, class, ktype, id = o, c, t, attrs[2].Value
		case pkcs11.CKO_PUBLIC_KEY:
			pub = o
		}
	}
	if priv == 0 {
		return fmt.Errorf("%w: no private or secret key labelled %q on the token", ErrKeyNotFound, k.Label)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.priv, k.pub, k.epoch = priv, pub, s.epoch
	if first {
		k.ID = id
		kt, err := s.keyTypeOf(priv, class, ktype)
		if err != nil {
			return err
		}
		k.Type = kt
		if class == pkcs11.CKO_PRIVATE_KEY {
			a, err := s.ctx.GetAttributeValue(s.h, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_AUTHENTICATE, nil)})
			k.Always = err == nil && len(a[0].Value) == 1 && a[0].Value[0] == 1
		}
	}
	return nil
}

// keyTypeOf works out the KeyType of an object found on the token.
func (s *Session) keyTypeOf(o pkcs11.ObjectHandle, class, ktype uint) (KeyType, error) {
	get := func(t uint) ([]byte, error) {
		a, err := s.ctx.GetAttributeValue(s.h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(t, nil)})
		if err != nil {
			return nil, wrapErr("C_GetAttributeValue", err)
		}
		return a[0].Value, nil
	}
	switch ktype {
	case pkcs11.CKK_EC:
		params, err := get(pkcs11.CKA_EC_PARAMS)
		if err != nil {
			return 0, err
		}
		var oid asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(params, &oid); err == nil {
			switch {
			case oid.Equal(oidP256):
				return KeyECP256, nil
			case oid.Equal(oidP384):
				return KeyECP384, nil
			}
		}
		return 0, fmt.Errorf("%w: unsupported EC curve on key", ErrKeyMismatch)
	case pkcs11.CKK_RSA:
		mod, err := get(pkcs11.CKA_MODULUS)
		if err != nil {
			return 0, err
		}
		switch len(mod) * 8 {
		case 2048:
			return KeyRSA2048, nil
		case 3072:
			return KeyRSA3072, nil
		case 4096:
			return KeyRSA4096, nil
		}
		return 0, fmt.Errorf("%w: unsupported RSA size %d", ErrKeyMismatch, len(mod)*8)
	case pkcs11.CKK_AES:
		return KeyAES256, nil
	case pkcs11.CKK_GENERIC_SECRET:
		return KeyGenericSecret, nil
	}
	return 0, fmt.Errorf("%w: unsupported key type 0x%x (class 0x%x)", ErrKeyMismatch, ktype, class)
}

func (s *Session) findObjects(tmpl []*pkcs11.Attribute, max int) ([]pkcs11.ObjectHandle, error) {
	if err := s.ctx.FindObjectsInit(s.h, tmpl); err != nil {
		return nil, wrapErr("C_FindObjectsInit", err)
	}
	objs, _, err := s.ctx.FindObjects(s.h, max)
	ferr := s.ctx.FindObjectsFinal(s.h) // always reset the search state
	if err != nil {
		return nil, wrapErr("C_FindObjects", err)
	}
	return objs, wrapErr("C_FindObjectsFinal", ferr)
}

func (s *Session) countObjects(tmpl []*pkcs11.Attribute) (int, error) {
	objs, err := s.findObjects(tmpl, 1)
	return len(objs), err
}

// CountTokenObjects counts the objects stored on the token (CKA_TOKEN
// true) that the logged-in user can see, up to limit. Operators watch it to
// know the token is not filling up: keysvc keeps customer keys wrapped, so
// this count does not grow with customers.
func (p *Pool) CountTokenObjects(ctx context.Context, limit int) (int, error) {
	var n int
	err := p.WithSession(ctx, func(s *Session) error {
		objs, err := s.findObjects([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)}, limit)
		n = len(objs)
		return err
	})
	return n, err
}

// DestroyKey destroys the key's objects on the token (C_DestroyObject),
// private/secret first (R-TOK-7). A stale handle is re-found and the destroy
// tried once more (WithKey): a key that is there is never left behind
// because its handle changed.
func (p *Pool) DestroyKey(ctx context.Context, k *Key) error {
	err := p.WithKey(ctx, k, func(s *Session) error { return s.DestroyKey(k) })
	if err == nil || errors.Is(err, ErrKeyNotFound) {
		p.forget(k)
	}
	return err
}

// DestroyKey destroys the key's objects in this session's view.
func (s *Session) DestroyKey(k *Key) error {
	priv, pub, err := s.handles(k)
	if err != nil {
		return err
	}
	if err := wrapErr("C_DestroyObject", s.ctx.DestroyObject(s.h, priv)); err != nil {
		return err
	}
	if pub != 0 {
		if err := wrapErr("C_DestroyObject", s.ctx.DestroyObject(s.h, pub)); err != nil {
			return err
		}
	}
	k.mu.Lock()
	k.priv, k.pub, k.epoch = 0, 0, 0
	k.mu.Unlock()
	return nil
}

// bytesToUint decodes a CK_ULONG attribute (native byte order, 8 bytes on
// amd64/arm64).
func bytesToUint(b []byte) uint {
	var v uint
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint(b[i])
	}
	return v
}

// tpm2PKCS11Manufacturer is tpm2-pkcs11's CK_INFO.manufacturerID.
const tpm2PKCS11Manufacturer = "tpm2-software.github.io"

// derivesECUsage reports a module that sets CKA_ENCRYPT and CKA_DECRYPT of
// an EC key pair itself and refuses a template that says otherwise:
// tpm2-pkcs11 creates every TPM ECC key with both the sign and the decrypt
// object attribute and fails C_GenerateKeyPair with CKR_GENERAL_ERROR
// ("User specified and TPM specified attr mismatch") when the template sets
// either false. On such a module the two are left out of an EC template;
// every other usage attribute is still explicit.
func (s *Session) derivesECUsage() bool {
	info, err := s.ctx.GetInfo()
	return err == nil && trimManufacturer(info.ManufacturerID) == tpm2PKCS11Manufacturer
}

// withoutAttr returns tmpl without the attributes of type t.
func withoutAttr(tmpl []*pkcs11.Attribute, t uint) []*pkcs11.Attribute {
	out := make([]*pkcs11.Attribute, 0, len(tmpl))
	for _, a := range tmpl {
		if a.Type != t {
			out = append(out, a)
		}
	}
	return out
}
