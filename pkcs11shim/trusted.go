package pkcs11shim

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// Backing keys up under a trusted KEK (issue 13, R-AV-3, R-TOK-2).
//
// A backup-able key is CKA_EXTRACTABLE with CKA_WRAP_WITH_TRUSTED (see
// KeySpec.templates): the token wraps it only under a key with CKA_TRUSTED,
// and only the SO can set CKA_TRUSTED (SoftHSM2 2.6.1: P11AttrTrusted). An
// SO session can create public objects only, and C_Logout keeps public
// session objects, so one session does it all:
//
//	SO login → create the KEK: session, public, trusted, wrap-only, not
//	modifiable nor copyable → C_Logout → user login → C_WrapKey each key →
//	destroy the KEK → C_Logout → close.
//
// The KEK may wrap and nothing else: a user-PIN holder can wrap a key under
// it (which only gives another copy of the backup) but cannot unwrap that
// blob back into the token as an extractable, non-sensitive key, nor turn
// CKA_UNWRAP on (not modifiable), nor copy the KEK into one that unwraps
// (not copyable).

// ErrNotTrustedOnly: the key is extractable without CKA_WRAP_WITH_TRUSTED,
// so any user-PIN holder can wrap it under a key they know and read it in
// clear. It was made before issue 13; it must be replaced, not backed up.
var ErrNotTrustedOnly = errors.New("pkcs11shim: key is extractable without CKA_WRAP_WITH_TRUSTED")

// ErrLoggedIn: a session of this application is logged in to the token,
// so the SO cannot log in (login state belongs to the application).
var ErrLoggedIn = errors.New("pkcs11shim: the application is already logged in to the token")

// WrappedKey is one key wrapped under the trusted KEK.
type WrappedKey struct {
	Label string
	ID    []byte // CKA_ID
	Blob  []byte // CKM_AES_KEY_WRAP_PAD
}

// TrustedKEKLabel is the CKA_LABEL of the SO's session KEK.
const TrustedKEKLabel = "ceremony-backup-kek"

// WrapUnderTrustedKEK wraps the token keys labelled labels under a trusted
// AES-256 KEK made from kek (32 bytes), in one session of its own:
// soLogin and userLogin are each handed a LoginFunc that performs exactly
// one C_Login (as the SO, then as the user); they decide about the PIN
// (package token's guard counts it). No other session of the application
// may be logged in to the token (ErrLoggedIn, before any PIN is tried).
// Each key must be extractable with CKA_WRAP_WITH_TRUSTED (else
// ErrKeyUnextractable or ErrNotTrustedOnly, naming it); nothing is wrapped
// unless all are. The KEK is destroyed before it returns.
func (m *Module) WrapUnderTrustedKEK(sel Selector, kek []byte, labels []string, soLogin, userLogin func(LoginFunc) error) ([]WrappedKey, error) {
	if len(kek) != 32 {
		return nil, fmt.Errorf("%w: an AES-256 KEK is 32 bytes, got %d", ErrInputInvalid, len(kek))
	}
	ti, err := m.FindToken(sel)
	if err != nil {
		return nil, err
	}
	var out []WrappedKey
	err = m.call(func(c PKCtx) error {
		h, err := openForSO(c, ti)
		if err != nil {
			return err
		}
		defer c.CloseSession(h)
		s := &Session{ctx: c, h: h, slot: ti.SlotID, gen: m.Generation(), epoch: ^uint64(0)}
		login := func(ut UserType) LoginFunc {
			return func(pin []byte) error { return wrapErr("C_Login", c.Login(h, uint(ut), string(pin))) }
		}
		if err := soLogin(login(UserSO)); err != nil {
			return fmt.Errorf("SO login: %w", err)
		}
		loggedIn := true
		defer func() {
			if loggedIn {
				_ = c.Logout(h)
			}
		}()
		w, err := s.createTrustedKEK(kek)
		if err != nil {
			return err
		}
		defer c.DestroyObject(h, w) // also dies with the session; destroyed on every path
		if err := wrapErr("C_Logout", c.Logout(h)); err != nil {
			return err
		}
		loggedIn = false
		err = userLogin(func(pin []byte) error {
			err := c.Login(h, uint(UserNormal), string(pin))
			if errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
				return nil
			}
			return wrapErr("C_Login", err)
		})
		if err != nil {
			return fmt.Errorf("user login: %w", err)
		}
		loggedIn = true
		type found struct {
			k    *Key
			priv pkcs11.ObjectHandle
		}
		var keys []found
		for _, label := range labels {
			k := &Key{Label: label, Token: true}
			if err := s.refind(k, true); err != nil {
				return fmt.Errorf("key %s: %w", label, err)
			}
			wp, err := s.wrapPolicy(k.priv)
			switch {
			case err != nil:
				return fmt.Errorf("key %s: %w", label, err)
			case !wp.Extractable:
				return fmt.Errorf("key %s: %w", label, &CKRError{Op: "C_WrapKey", Code: pkcs11.CKR_KEY_UNEXTRACTABLE})
			case !wp.WrapWithTrusted:
				return fmt.Errorf("key %s: %w", label, ErrNotTrustedOnly)
			}
			keys = append(keys, found{k, k.priv})
		}
		mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}
		for _, f := range keys {
			blob, err := c.WrapKey(h, mech, w, f.priv)
			if err != nil {
				return fmt.Errorf("wrap %s: %w", f.k.Label, wrapErr("C_WrapKey", err))
			}
			out = append(out, WrappedKey{Label: f.k.Label, ID: f.k.ID, Blob: blob})
		}
		if err := wrapErr("C_DestroyObject", c.DestroyObject(h, w)); err != nil {
			return fmt.Errorf("destroy the trusted KEK: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// openForSO opens a read-write session of its own on ti for an SO login,
// refusing (ErrLoggedIn, before any PIN is tried) when the application is
// logged in already: login state belongs to the application, so the SO
// could not log in. The caller closes the session.
func openForSO(c PKCtx, ti TokenInfo) (pkcs11.SessionHandle, error) {
	h, err := c.OpenSession(ti.SlotID, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return 0, wrapErr("C_OpenSession", err)
	}
	si, err := c.GetSessionInfo(h)
	if err != nil {
		c.CloseSession(h)
		return 0, wrapErr("C_GetSessionInfo", err)
	}
	if si.State != pkcs11.CKS_RW_PUBLIC_SESSION {
		c.CloseSession(h)
		return 0, fmt.Errorf("%w (session state %d): close every pool on token %s before the SO logs in", ErrLoggedIn, si.State, ti.Label)
	}
	return h, nil
}

// createTrustedKEK creates the backup KEK from kek in this session, which
// must be logged in as the SO: a public session object, CKA_TRUSTED,
// wrap-only, not modifiable, not copyable, sensitive, not extractable.
func (s *Session) createTrustedKEK(kek []byte) (pkcs11.ObjectHandle, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return 0, err
	}
	w, err := s.createObject(append(kekTemplate(TrustedKEKLabel, id, kek),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false), // an SO session can make public objects only; C_Logout keeps them
		pkcs11.NewAttribute(pkcs11.CKA_TRUSTED, true),  // may wrap CKA_WRAP_WITH_TRUSTED keys; only the SO can set it
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),     // backup side: wrap only
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),  // a wrapped blob never comes back in under it
	))
	if err != nil {
		return 0, fmt.Errorf("create the trusted KEK as the SO: %w", err)
	}
	return w, nil
}
