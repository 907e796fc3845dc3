package pkcs11shim

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

// Functions for the key ceremony tool (cmd/ceremony, R-CER-1): importing a
// backup KEK and a restored key's public half, and zeroizing a token.

// objectCreator is the optional C_CreateObject ability. It is not part of
// PKCtx so the fakes that implement PKCtx stay as they are; *pkcs11.Ctx has it.
type objectCreator interface {
	CreateObject(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
}

var _ objectCreator = (*pkcs11.Ctx)(nil)

func (s *Session) createObject(tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	c, ok := s.ctx.(objectCreator)
	if !ok {
		return 0, fmt.Errorf("%w: the module binding offers no C_CreateObject", ErrMechanismInvalid)
	}
	h, err := c.CreateObject(s.h, tmpl)
	return h, wrapErr("C_CreateObject", err)
}

// ImportUnwrapKEK creates, from value (32 bytes), the AES-256 session key
// the restore ceremony unwraps a backup with: it may unwrap and do nothing
// else (no wrap, encrypt, decrypt, sign), its attributes cannot be changed
// and it cannot be copied into a key that could; it dies with this
// session. It is sensitive and not extractable. (The backup side's KEK is
// made by the SO, wrap-only: see WrapUnderTrustedKEK.)
func (s *Session) ImportUnwrapKEK(value []byte, label string) (*Key, error) {
	if len(value) != 32 {
		return nil, fmt.Errorf("%w: an AES-256 key is 32 bytes, got %d", ErrInputInvalid, len(value))
	}
	if label == "" {
		return nil, fmt.Errorf("%w: a key label is required", ErrInputInvalid)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	h, err := s.createObject(append(kekTemplate(label, id, value),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true), // only a logged-in user sees it
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),   // restore side: unwrap only
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
	))
	if err != nil {
		return nil, err
	}
	return &Key{Type: KeyAES256, Label: label, ID: id, Token: false, epoch: s.epoch, priv: h}, nil
}

// kekTemplate is the part every ceremony KEK shares: an AES-256 session
// key from value that is sensitive, not extractable, not modifiable, not
// copyable, may not encrypt, decrypt, sign or derive, and may be used with
// CKM_AES_KEY_WRAP_PAD only (CKA_ALLOWED_MECHANISMS). The caller adds
// CKA_PRIVATE, CKA_WRAP and CKA_UNWRAP.
func kekTemplate(label string, id, value []byte) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),       // a backup KEK never persists in the token
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),       // the name operators and URIs use
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),             // every key has one
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),    // never readable in clear again
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false), // cannot be wrapped out
		pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),  // nobody turns CKA_UNWRAP (or CKA_WRAP) on later
		pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false),    // nor in a copy
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ALLOWED_MECHANISMS, uint(pkcs11.CKM_AES_KEY_WRAP_PAD)), // one CK_MECHANISM_TYPE: the backup's mechanism only
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, value),
	}
}

// ImportPublicKey creates the public-key object of a restored key pair (an
// unwrapped private key has no public half in the token): same label and
// CKA_ID as k, so FindKey, PublicKey and Verify work on the restored key.
// pub must be an *ecdsa.PublicKey on k's curve or an *rsa.PublicKey. u is
// the key's usage (see Usage): the public object gets the public half of
// it, every other usage attribute false, and like a generated one it is
// not modifiable nor copyable (and not destroyable with undestroyable).
func (s *Session) ImportPublicKey(k *Key, pub crypto.PublicKey, u Usage, undestroyable bool) error {
	u = u.attrs()
	common := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, k.Token),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.Label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, k.ID),
		pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, u&UsageSign != 0),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY_RECOVER, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, u&UsageEncrypt != 0),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, u&UsageWrap != 0),
	}
	if undestroyable {
		common = append(common, pkcs11.NewAttribute(pkcs11.CKA_DESTROYABLE, false))
	}
	var tmpl []*pkcs11.Attribute
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		curve, oid := k.Type.curve()
		if curve == nil || p.Curve != curve {
			return fmt.Errorf("%w: public key curve does not match %v", ErrKeyMismatch, k.Type)
		}
		params, _ := asn1.Marshal(oid)
		//nolint:staticcheck // elliptic.Marshal is the uncompressed SEC 1 point CKA_EC_POINT wants
		point, err := asn1.Marshal(elliptic.Marshal(p.Curve, p.X, p.Y))
		if err != nil {
			return err
		}
		tmpl = append(common,
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
			pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, point), // DER OCTET STRING, as C_GenerateKeyPair makes it
		)
	case *rsa.PublicKey:
		if !k.Type.IsPair() || k.Type.IsEC() || p.N.BitLen() != k.Type.rsaBits() {
			return fmt.Errorf("%w: RSA public key does not match %v", ErrKeyMismatch, k.Type)
		}
		tmpl = append(common,
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, p.N.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(p.E)).Bytes()),
		)
	default:
		return fmt.Errorf("%w: unsupported public key %T", ErrKeyMismatch, pub)
	}
	h, err := s.createObject(tmpl)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.pub = h
	k.mu.Unlock()
	return nil
}

// ObjectInfo describes one object on a token, for inventories and zeroize.
type ObjectInfo struct {
	Class uint // CKO_*
	Label string
	ID    []byte
}

// ClassName is the object's class in words.
func (o ObjectInfo) ClassName() string {
	switch o.Class {
	case pkcs11.CKO_PRIVATE_KEY:
		return "private-key"
	case pkcs11.CKO_PUBLIC_KEY:
		return "public-key"
	case pkcs11.CKO_SECRET_KEY:
		return "secret-key"
	case pkcs11.CKO_CERTIFICATE:
		return "certificate"
	case pkcs11.CKO_DATA:
		return "data"
	}
	return fmt.Sprintf("class-0x%x", o.Class)
}

// IsKey reports whether the object is a private, public or secret key.
func (o ObjectInfo) IsKey() bool {
	return o.Class == pkcs11.CKO_PRIVATE_KEY || o.Class == pkcs11.CKO_PUBLIC_KEY || o.Class == pkcs11.CKO_SECRET_KEY
}

// maxObjects bounds one inventory.
const maxObjects = 100000

// ListTokenObjects lists the token objects (CKA_TOKEN true) the logged-in
// user can see.
func (p *Pool) ListTokenObjects(ctx context.Context) ([]ObjectInfo, error) {
	var out []ObjectInfo
	err := p.WithSession(ctx, func(s *Session) error {
		out = nil
		objs, err := s.findObjects([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)}, maxObjects)
		if err != nil {
			return err
		}
		for _, o := range objs {
			a, err := s.ctx.GetAttributeValue(s.h, o, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil), pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil), pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
			if err != nil {
				return wrapErr("C_GetAttributeValue", err)
			}
			out = append(out, ObjectInfo{Class: bytesToUint(a[0].Value), Label: string(a[1].Value), ID: a[2].Value})
		}
		return nil
	})
	return out, err
}

// DestroyAllObjects destroys every token object the logged-in user can see
// (emergency zeroize, R-TOK-8) and returns how many were destroyed. It
// searches again until nothing is left, so objects are not missed when the
// module returns them in batches. Cached keys of the pool are forgotten.
func (p *Pool) DestroyAllObjects(ctx context.Context) (int, error) {
	n := 0
	err := p.WithSession(ctx, func(s *Session) error {
		for {
			objs, err := s.findObjects([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)}, 1024)
			if err != nil {
				return err
			}
			if len(objs) == 0 {
				return nil
			}
			for _, o := range objs {
				if err := wrapErr("C_DestroyObject", s.ctx.DestroyObject(s.h, o)); err != nil {
					return err
				}
				n++
			}
		}
	})
	p.mu.Lock()
	clear(p.keys)
	p.mu.Unlock()
	return n, err
}

// KeyUsage reads what the token lets k do, as an exact Usage (UsageExact
// set): CKA_SIGN, CKA_DECRYPT, CKA_UNWRAP of the private or secret object,
// CKA_ENCRYPT and CKA_WRAP of the secret object or of the public one. The
// backup ceremony records it so a restored key gets the same uses.
func (p *Pool) KeyUsage(ctx context.Context, k *Key) (Usage, error) {
	var u Usage
	err := p.WithKey(ctx, k, func(s *Session) error {
		var err error
		u, err = s.keyUsage(k)
		return err
	})
	return u, err
}

// keyUsage reads k's exact usage in this session (see Pool.KeyUsage).
func (s *Session) keyUsage(k *Key) (Usage, error) {
	priv, pub, err := s.handles(k)
	if err != nil {
		return 0, err
	}
	u := UsageExact
	type flag struct {
		attr uint
		u    Usage
	}
	read := func(o pkcs11.ObjectHandle, flags []flag) {
		for _, x := range flags {
			a, err := s.ctx.GetAttributeValue(s.h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(x.attr, nil)})
			if err != nil {
				continue // attribute not defined for this object class
			}
			if len(a[0].Value) == 1 && a[0].Value[0] == 1 {
				u |= x.u
			}
		}
	}
	read(priv, []flag{{pkcs11.CKA_SIGN, UsageSign}, {pkcs11.CKA_DECRYPT, UsageDecrypt}, {pkcs11.CKA_UNWRAP, UsageUnwrap}})
	pubFlags := []flag{{pkcs11.CKA_ENCRYPT, UsageEncrypt}, {pkcs11.CKA_WRAP, UsageWrap}}
	switch {
	case !k.Type.IsPair():
		read(priv, pubFlags)
	case pub != 0:
		read(pub, pubFlags)
	}
	return u, nil
}

// WrapPolicy is what a key's attributes say about wrapping it out.
type WrapPolicy struct {
	Extractable     bool // CKA_EXTRACTABLE
	WrapWithTrusted bool // CKA_WRAP_WITH_TRUSTED: only a CKA_TRUSTED key may wrap it
	Destroyable     bool // CKA_DESTROYABLE: C_DestroyObject is allowed (the backup records it, restore keeps it)
}

// KeyWrapPolicy reads k's CKA_EXTRACTABLE, CKA_WRAP_WITH_TRUSTED and
// CKA_DESTROYABLE (a module that does not know CKA_DESTROYABLE, a v2.40
// attribute, gives Destroyable false: the backup then restores the key
// undestroyable, as every restore did before the backup recorded it). The
// backup ceremony refuses a key that is extractable without
// CKA_WRAP_WITH_TRUSTED: any user-PIN holder can wrap it under a key they
// know and so read it in clear.
func (p *Pool) KeyWrapPolicy(ctx context.Context, k *Key) (WrapPolicy, error) {
	var wp WrapPolicy
	err := p.WithKey(ctx, k, func(s *Session) error {
		priv, _, err := s.handles(k)
		if err != nil {
			return err
		}
		wp, err = s.wrapPolicy(priv)
		return err
	})
	return wp, err
}

func (s *Session) wrapPolicy(o pkcs11.ObjectHandle) (WrapPolicy, error) {
	a, err := s.ctx.GetAttributeValue(s.h, o, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil), pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, nil)})
	if err != nil {
		return WrapPolicy{}, wrapErr("C_GetAttributeValue", err)
	}
	isTrue := func(v []byte) bool { return len(v) == 1 && v[0] == 1 }
	wp := WrapPolicy{Extractable: isTrue(a[0].Value), WrapWithTrusted: isTrue(a[1].Value)}
	// Asked on its own: a module without CKA_DESTROYABLE answers
	// CKR_ATTRIBUTE_TYPE_INVALID, which must not hide the two above.
	if d, err := s.ctx.GetAttributeValue(s.h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_DESTROYABLE, nil)}); err == nil && len(d) == 1 {
		wp.Destroyable = isTrue(d[0].Value)
	}
	return wp, nil
}
