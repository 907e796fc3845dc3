package pkcs11shim

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"

	"github.com/miekg/pkcs11"
)

// Check-value methods: how CheckValue identified a key. A record made with
// one method is compared only with a value made by the same method.
const (
	CheckSPKISHA256  = "spki-sha256"   // SHA-256 of the PKIX DER public key (pairs)
	CheckHMACSHA256  = "hmac-sha256"   // HMAC-SHA256 of checkMessage (generic secrets)
	CheckAESECBZero  = "aes-ecb-zero"  // AES-ECB of a zero block (AES keys with CKA_ENCRYPT); its first 3 bytes are the usual KCV
	CheckAESKWPFixed = "aes-kwp-fixed" // CKM_AES_KEY_WRAP_PAD of checkWrapValue (wrap-only AES keys)
)

// checkMessage is what generic-secret check values MAC.
const checkMessage = "keyward key check value v1"

// checkWrapValue is the known AES key a wrap-only key wraps for its check
// value (RFC 5649 wrapping is deterministic).
var checkWrapValue = sha256.Sum256([]byte("keyward key check value v1 (aes-kwp)"))

// CheckValue identifies k without its secret leaving the token: the same
// key always gives the same (method, value), another key a different
// value. Key pairs give the SHA-256 of their public key; secret keys a
// value computed inside the token with the key, by a mechanism its usage
// allows (see the Check… constants). keysvc records its service keys'
// check values and compares them at every start.
func (p *Pool) CheckValue(ctx context.Context, k *Key) (method string, value []byte, err error) {
	if k.Type.IsPair() {
		pub, err := p.PublicKey(ctx, k)
		if err != nil {
			return "", nil, err
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", nil, err
		}
		sum := sha256.Sum256(der)
		return CheckSPKISHA256, sum[:], nil
	}
	if k.Type == KeyGenericSecret {
		v, err := p.HMAC(ctx, k, []byte(checkMessage))
		return CheckHMACSHA256, v, err
	}
	if k.Type != KeyAES256 {
		return "", nil, fmt.Errorf("%w: no check value for %v keys", ErrKeyMismatch, k.Type)
	}
	err = p.WithKey(ctx, k, func(s *Session) error {
		priv, _, err := s.handles(k)
		if err != nil {
			return err
		}
		if s.boolAttr(priv, pkcs11.CKA_ENCRYPT) {
			method = CheckAESECBZero
			if err := wrapErr("C_EncryptInit", s.ctx.EncryptInit(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}, priv)); err != nil {
				return err
			}
			if value, err = s.ctx.Encrypt(s.h, make([]byte, 16)); err != nil {
				return poisoned{wrapErr("C_Encrypt", err)}
			}
			return nil
		}
		if !s.boolAttr(priv, pkcs11.CKA_WRAP) {
			return fmt.Errorf("%w: AES key %q may neither encrypt nor wrap: no check value", ErrKeyMismatch, k.Label)
		}
		method = CheckAESKWPFixed
		value, err = s.kwpCheckValue(priv)
		return err
	})
	if err != nil {
		return "", nil, err
	}
	return method, value, nil
}

// boolAttr reads a CK_BBOOL attribute; unreadable or absent is false.
func (s *Session) boolAttr(o pkcs11.ObjectHandle, attr uint) bool {
	a, err := s.ctx.GetAttributeValue(s.h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(attr, nil)})
	return err == nil && len(a[0].Value) == 1 && a[0].Value[0] == 1
}
