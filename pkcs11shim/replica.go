package pkcs11shim

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

// Replicating hsm keys between tokens (issue 15 items 4 and 5, R-AV-4).
//
// Security officers install the same AES-256 *replication key* in every
// token of keysvc's set, as the SO (InstallReplicationKey): a public token
// object with CKA_TRUSTED (only the SO can set it), wrap and unwrap only
// (CKA_ALLOWED_MECHANISMS: CKM_AES_KEY_WRAP_PAD), not modifiable, not
// copyable, not destroyable, never readable. Its CKA_UNWRAP_TEMPLATE pins
// what every key unwrapped under it must be (replicaPinned): a private,
// sensitive token key that again leaves only under a trusted key, may not
// derive, and cannot be changed or copied.
//
// A replicable key is what KeySpec{Extractable: true} makes of a token key
// (CKA_EXTRACTABLE with CKA_WRAP_WITH_TRUSTED). ExportReplica wraps it
// under token A's replication key; ImportReplica unwraps the blob under
// token B's. The key is never in clear outside a token: the blob is an
// RFC 5649 wrap under a key no one outside the HSMs holds whole (its value
// exists only as M-of-N shares with the custodians), the copy is as
// sensitive and as trusted-only as the original, and SoftHSM2 2.6.1
// enforces the template on every unwrap under the replication key (see
// replica_test.go for exactly what it enforces and what it does not).

// ReplicationKeyLabel is the CKA_LABEL of the replication key.
const ReplicationKeyLabel = "keysvc-replication"

// ErrUntrustedReplicationKey: a key labelled ReplicationKeyLabel is on the
// token but is not the officers' replication key (no CKA_TRUSTED, or it may
// not wrap and unwrap): a user-PIN holder may have made it. Replication
// refuses to use it; officers remove it and install the real one.
var ErrUntrustedReplicationKey = errors.New("pkcs11shim: the key labelled " + ReplicationKeyLabel + " is not a trusted wrap-and-unwrap key")

// Replica is one key wrapped under the replication key, with what the
// importing token needs to re-create it exactly.
type Replica struct {
	Label  string
	ID     []byte // CKA_ID, the same on every token
	Type   KeyType
	Usage  Usage            // exact (UsageExact set), as KeyUsage reads it
	Always bool             // CKA_ALWAYS_AUTHENTICATE on the private key
	Blob   []byte           // CKM_AES_KEY_WRAP_PAD of the private or secret key under the replication key
	Public crypto.PublicKey // pairs: the public half, which the wrap does not carry
}

// replicaPinned is the replication key's CKA_UNWRAP_TEMPLATE: SoftHSM2
// refuses C_UnwrapKey under it (CKR_TEMPLATE_INCONSISTENT) unless the
// caller's template has each of these attributes once, with these values.
// CKA_TOKEN and CKA_PRIVATE are taken from the caller's template by
// SoftHSM itself and put first; the others must be in it.
func replicaPinned() []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),             // a copy is a token key, like the original
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),           // only a logged-in user sees it
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),         // never readable in clear (the issue 13 attack)
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),       // may be replicated and backed up again…
		pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, true), // …but only under a trusted key
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),           // no C_DeriveKey into a readable key (AES_ECB_ENCRYPT_DATA, ECDH)
		pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),       // nobody turns the above off later
		pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false),         // nor in a copy
	}
}

// InstallReplicationKey creates the replication key from value (32 bytes)
// on the token sel names, as the SO, in one session of its own: soLogin is
// handed a LoginFunc that performs exactly one C_Login as the SO (package
// token's guard counts it). No other session of the application may be
// logged in (ErrLoggedIn, before any PIN is tried). A public object labelled
// ReplicationKeyLabel already on the token is ErrDuplicateLabel (the SO
// sees public objects only). It returns the key's check value
// (CheckAESKWPFixed, the same value Pool.CheckValue gives for it), which
// is the same on every token given the same value and reveals nothing of it.
func (m *Module) InstallReplicationKey(sel Selector, value []byte, soLogin func(LoginFunc) error) (check []byte, err error) {
	if len(value) != 32 {
		return nil, fmt.Errorf("%w: the replication key is AES-256, 32 bytes, got %d", ErrInputInvalid, len(value))
	}
	ti, err := m.FindToken(sel)
	if err != nil {
		return nil, err
	}
	err = m.call(func(c PKCtx) error {
		h, err := openForSO(c, ti)
		if err != nil {
			return err
		}
		defer c.CloseSession(h)
		s := &Session{ctx: c, h: h, slot: ti.SlotID, gen: m.Generation(), epoch: ^uint64(0)}
		if err := soLogin(func(pin []byte) error { return wrapErr("C_Login", c.Login(h, uint(UserSO), string(pin))) }); err != nil {
			return fmt.Errorf("SO login: %w", err)
		}
		defer c.Logout(h) //nolint:errcheck // the session closes right after
		n, err := s.countObjects([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, ReplicationKeyLabel)})
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: %q is already on token %s: a token holds one replication key", ErrDuplicateLabel, ReplicationKeyLabel, ti.Label)
		}
		id := make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return err
		}
		tmpl, free := nestedTemplate(replicaPinned())
		defer free()
		r, err := s.createObject([]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),                                           // lives in the token until zeroize
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),                                        // an SO session makes public objects only; the user finds and uses it
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, ReplicationKeyLabel),                            // how ReplicationKey finds it
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),                                                // every key has one
			pkcs11.NewAttribute(pkcs11.CKA_TRUSTED, true),                                         // may wrap CKA_WRAP_WITH_TRUSTED keys; only the SO can set it
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),                                            // export side
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),                                          // import side, under the template below
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP_TEMPLATE, tmpl),                                 // what every copy must be (replicaPinned)
			pkcs11.NewAttribute(pkcs11.CKA_ALLOWED_MECHANISMS, uint(pkcs11.CKM_AES_KEY_WRAP_PAD)), // RFC 5649 only: no CBC or ECB "unwrap" into chosen bytes
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),                                        // no encryption oracle under it
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),                                        // nor decryption of a blob
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
			pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),    // never readable
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false), // never wrapped out
			pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false),    // no C_CopyObject into a key with other attributes
			pkcs11.NewAttribute(pkcs11.CKA_DESTROYABLE, false), // only zeroize (C_InitToken with the SO PIN) removes it
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, value),
			pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false), // last: nobody flips CKA_UNWRAP_TEMPLATE or a usage later
		})
		if err != nil {
			return fmt.Errorf("create the replication key as the SO: %w", err)
		}
		check, err = s.kwpCheckValue(r)
		if err != nil {
			return fmt.Errorf("check value of the new replication key: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return check, nil
}

// ReplicationKey finds the token's replication key (a public token object:
// the user's search sees it) and checks it is the officers' one: CKA_TRUSTED,
// CKA_WRAP and CKA_UNWRAP (else ErrUntrustedReplicationKey). A token without
// one is ErrKeyNotFound.
func (p *Pool) ReplicationKey(ctx context.Context) (*Key, error) {
	k, err := p.FindKey(ctx, ReplicationKeyLabel)
	if err != nil {
		return nil, err
	}
	if k.Type != KeyAES256 {
		return nil, fmt.Errorf("%w: it is %v", ErrUntrustedReplicationKey, k.Type)
	}
	err = p.WithKey(ctx, k, func(s *Session) error {
		r, _, err := s.handles(k)
		if err != nil {
			return err
		}
		if !s.boolAttr(r, pkcs11.CKA_TRUSTED) || !s.boolAttr(r, pkcs11.CKA_WRAP) || !s.boolAttr(r, pkcs11.CKA_UNWRAP) {
			return ErrUntrustedReplicationKey
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// ExportReplica wraps k under the token's replication key (ReplicationKey)
// with CKM_AES_KEY_WRAP_PAD and reads what ImportReplica needs: k's exact
// usage and, for a pair, its public key. k must be extractable
// (ErrKeyUnextractable, a CKR_KEY_UNEXTRACTABLE *CKRError) with
// CKA_WRAP_WITH_TRUSTED (ErrNotTrustedOnly): the token would wrap a key
// without it under the replication key too, and a replica must stay
// trusted-only, so such a key is refused here.
func (p *Pool) ExportReplica(ctx context.Context, k *Key) (Replica, error) {
	rk, err := p.ReplicationKey(ctx)
	if err != nil {
		return Replica{}, fmt.Errorf("replication key: %w", err)
	}
	var out Replica
	err = p.WithKey(ctx, k, func(s *Session) error {
		out = Replica{}
		r, _, err := s.handles(rk)
		if err != nil {
			return err
		}
		priv, _, err := s.handles(k)
		if err != nil {
			return err
		}
		wp, err := s.wrapPolicy(priv)
		switch {
		case err != nil:
			return err
		case !wp.Extractable:
			return fmt.Errorf("key %s: %w", k.Label, &CKRError{Op: "C_WrapKey", Code: pkcs11.CKR_KEY_UNEXTRACTABLE})
		case !wp.WrapWithTrusted:
			return fmt.Errorf("key %s: %w", k.Label, ErrNotTrustedOnly)
		}
		u, err := s.keyUsage(k)
		if err != nil {
			return err
		}
		blob, err := s.ctx.WrapKey(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, r, priv)
		if err != nil {
			return fmt.Errorf("wrap %s under the replication key: %w", k.Label, wrapErr("C_WrapKey", err))
		}
		out = Replica{Label: k.Label, ID: append([]byte(nil), k.ID...), Type: k.Type, Usage: u, Always: k.Always, Blob: blob}
		if k.Type.IsPair() {
			out.Public, err = s.PublicKey(k)
		}
		return err
	})
	if err != nil {
		return Replica{}, err
	}
	return out, nil
}

// ImportReplica re-creates r in this token: C_UnwrapKey of r.Blob under the
// token's replication key into a token key with r's label, CKA_ID, type and
// usage, every attribute as KeySpec.templates sets it for an extractable
// (backup-able) key of that usage (which includes every attribute the
// replication key's CKA_UNWRAP_TEMPLATE pins); for a pair, also the public
// key object (ImportPublicKey). A label already on the token is
// ErrDuplicateLabel; a blob that does not unwrap is ErrDecrypt. If the public
// half cannot be made, the private key is destroyed again.
func (p *Pool) ImportReplica(ctx context.Context, r Replica) (*Key, error) {
	ks := KeySpec{Type: r.Type, Label: r.Label, ID: r.ID, Usage: r.Usage, Extractable: true, AlwaysAuthenticate: r.Always}
	if err := ks.validate(); err != nil {
		return nil, err
	}
	if len(r.ID) == 0 || len(r.Blob) == 0 {
		return nil, fmt.Errorf("%w: a replica needs its CKA_ID and its blob", ErrInputInvalid)
	}
	if r.Type.IsPair() != (r.Public != nil) {
		return nil, fmt.Errorf("%w: a replica of a %v key %s a public key", ErrInputInvalid, r.Type, map[bool]string{true: "needs", false: "has no"}[r.Type.IsPair()])
	}
	rk, err := p.ReplicationKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("replication key: %w", err)
	}
	var k *Key
	err = p.WithKey(ctx, rk, func(s *Session) error {
		k = nil
		n, err := s.countObjects([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, r.Label)})
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: %q", ErrDuplicateLabel, r.Label)
		}
		w, _, err := s.handles(rk)
		if err != nil {
			return err
		}
		h, err := s.ctx.UnwrapKey(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, w, r.Blob, replicaTemplate(ks))
		if err != nil {
			err = wrapErr("C_UnwrapKey", err)
			if code, _ := ckrCode(err); code == pkcs11.CKR_GENERAL_ERROR || errors.Is(err, ErrDecrypt) {
				// RFC 5649's integrity check failed (SoftHSM2 2.6.1 says
				// CKR_GENERAL_ERROR): another replication key, or a damaged blob.
				return fmt.Errorf("%w: %s does not unwrap under this token's replication key (installed from other shares? compare the check values) or the blob is damaged: %w", ErrDecrypt, r.Label, err)
			}
			return fmt.Errorf("unwrap %s under the replication key: %w", r.Label, err)
		}
		nk := &Key{Type: r.Type, Label: r.Label, ID: append([]byte(nil), r.ID...), Token: true, Always: r.Always, epoch: s.epoch, priv: h}
		if r.Type.IsPair() {
			if err := s.ImportPublicKey(nk, r.Public, r.Usage, false); err != nil {
				_ = s.ctx.DestroyObject(s.h, h)
				return fmt.Errorf("public half of %s: %w", r.Label, err)
			}
			if err := s.pairMatches(nk, r.Public, r.Usage); err != nil {
				_ = s.DestroyKey(nk)
				return fmt.Errorf("replica %s: %w", r.Label, err)
			}
		}
		k = nk
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.keys[keyCacheID{k.Label}] = k
	p.mu.Unlock()
	return k, nil
}

// replicaTemplate is the private or secret key template of ImportReplica:
// KeySpec.templates for ks without CKA_VALUE_LEN (the blob fixes the
// length), CKA_MODIFIABLE moved last (SoftHSM2 applies a C_UnwrapKey
// template in order and refuses every attribute after CKA_MODIFIABLE=false
// with CKR_ATTRIBUTE_READ_ONLY).
func replicaTemplate(ks KeySpec) []*pkcs11.Attribute {
	_, privT, _ := ks.templates(ks.ID)
	var tmpl []*pkcs11.Attribute
	var modifiable *pkcs11.Attribute
	for _, a := range privT {
		switch a.Type {
		case pkcs11.CKA_VALUE_LEN:
		case pkcs11.CKA_MODIFIABLE:
			modifiable = a
		default:
			tmpl = append(tmpl, a)
		}
	}
	return append(tmpl, modifiable)
}

// kwpCheckValue is the CheckAESKWPFixed check value of the AES key w: the
// RFC 5649 wrap of checkWrapValue under it, made in this session (a public
// session object holds the published constant for the call, so an SO
// session can make it too).
func (s *Session) kwpCheckValue(w pkcs11.ObjectHandle) ([]byte, error) {
	known, err := s.createObject([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),      // dies with the session
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),    // a published constant; an SO session can make public objects only
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),  // a published constant, not a secret
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true), // wrapped to make the check value
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "keyward-check-value"),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, checkWrapValue[:]),
	})
	if err != nil {
		return nil, err
	}
	defer s.ctx.DestroyObject(s.h, known) //nolint:errcheck // a session object: it dies with the session anyway
	v, err := s.ctx.WrapKey(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, w, known)
	return v, wrapErr("C_WrapKey", err)
}

// pairMatches checks that the unwrapped private key k belongs to pub, so a
// replica never pairs a private key with another key's public half: an RSA
// key's CKA_MODULUS (public, on the private object too) must be pub's; an
// EC key that may sign signs a random digest that must verify under pub.
// An EC key that may not sign is not checked (the token keeps no public
// point on the private object).
func (s *Session) pairMatches(k *Key, pub crypto.PublicKey, u Usage) error {
	mismatch := fmt.Errorf("%w: the private key does not belong to the replica's public key", ErrKeyMismatch)
	switch p := pub.(type) {
	case *rsa.PublicKey:
		a, err := s.ctx.GetAttributeValue(s.h, k.priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil)})
		if err != nil {
			return wrapErr("C_GetAttributeValue", err)
		}
		if new(big.Int).SetBytes(a[0].Value).Cmp(p.N) != 0 {
			return mismatch
		}
	case *ecdsa.PublicKey:
		if !u.Has(UsageSign) {
			return nil
		}
		d := make([]byte, 32)
		if _, err := rand.Read(d); err != nil {
			return err
		}
		sig, err := s.Sign(k, d, crypto.SHA256, nil)
		if err != nil {
			return err
		}
		if !ecdsa.VerifyASN1(p, d, sig) {
			return mismatch
		}
	}
	return nil
}
