package pkcs11shim

import (
	"context"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// Token administration for key ceremonies (R-CER-1). PINs are []byte so the
// caller can wipe them; they are never logged or put in errors.

// InitToken initialises a token (C_InitToken), erasing it, and returns the
// new token's information. target selects the slot by the token's current
// serial; when empty, the module must have exactly one uninitialised token
// (SoftHSM always offers one). Slot ids move afterwards (SoftHSM), so the
// token is found again by its serial.
func (m *Module) InitToken(targetSerial string, soPIN []byte, label string) (TokenInfo, error) {
	if label == "" || len(label) > 32 {
		return TokenInfo{}, fmt.Errorf("%w: token label must be 1 to 32 characters", ErrInputInvalid)
	}
	all, err := m.Tokens()
	if err != nil {
		return TokenInfo{}, err
	}
	var target *TokenInfo
	for i, ti := range all {
		if ti.Flags.Initialized && ti.Label == label && (targetSerial == "" || ti.Serial != targetSerial) { // re-initialising a token under its own label is allowed (zeroize)
			return TokenInfo{}, fmt.Errorf("%w: a token labelled %q already exists (serial %s)", ErrDuplicateLabel, label, ti.Serial)
		}
		if (targetSerial != "" && ti.Serial == targetSerial) || (targetSerial == "" && !ti.Flags.Initialized) {
			if target != nil {
				return TokenInfo{}, fmt.Errorf("%w: more than one uninitialised token; give the target serial", ErrTokenAmbiguous)
			}
			target = &all[i]
		}
	}
	if target == nil {
		return TokenInfo{}, fmt.Errorf("%w: no uninitialised token (or serial %q) in %s", ErrTokenNotFound, targetSerial, m.path)
	}
	serial := target.Serial
	if err := m.call(func(c PKCtx) error { return wrapErr("C_InitToken", c.InitToken(target.SlotID, string(soPIN), label)) }); err != nil {
		return TokenInfo{}, err
	}
	sel := Selector{Label: label}
	if serial != "" {
		sel.Serial = serial
	}
	ti, err := m.findToken(sel)
	if errors.Is(err, ErrTokenNotFound) && serial != "" { // some modules assign a new serial
		ti, err = m.findToken(Selector{Label: label})
	}
	return ti, err
}

// withLogin opens a fresh session on the token, logs in as ut with pin
// (exactly once), runs fn, logs out and closes the session. It is for
// administration, outside any pool.
func (m *Module) withLogin(sel Selector, ut UserType, pin []byte, fn func(c PKCtx, h pkcs11.SessionHandle) error) error {
	ti, err := m.FindToken(sel)
	if err != nil {
		return err
	}
	return m.call(func(c PKCtx) error {
		h, err := c.OpenSession(ti.SlotID, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return wrapErr("C_OpenSession", err)
		}
		defer c.CloseSession(h)
		err = c.Login(h, uint(ut), string(pin))
		switch {
		case err == nil:
			// Log out only a login made here: login state belongs to the
			// application, and a pool may be relying on it.
			defer c.Logout(h)
		case errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)):
		default:
			return wrapErr("C_Login", err)
		}
		return fn(c, h)
	})
}

// InitPIN logs in as the security officer and sets a new user PIN
// (C_InitPIN): the way to unlock a locked user PIN.
func (m *Module) InitPIN(sel Selector, soPIN, newUserPIN []byte) error {
	return m.withLogin(sel, UserSO, soPIN, func(c PKCtx, h pkcs11.SessionHandle) error {
		return wrapErr("C_InitPIN", c.InitPIN(h, string(newUserPIN)))
	})
}

// SetPIN changes the PIN of ut (user or SO) from oldPIN to newPIN.
func (m *Module) SetPIN(sel Selector, ut UserType, oldPIN, newPIN []byte) error {
	return m.withLogin(sel, ut, oldPIN, func(c PKCtx, h pkcs11.SessionHandle) error {
		return wrapErr("C_SetPIN", c.SetPIN(h, string(oldPIN), string(newPIN)))
	})
}

// CheckLogin logs in as ut once, to verify a PIN, and logs out again.
func (m *Module) CheckLogin(sel Selector, ut UserType, pin []byte) error {
	return m.withLogin(sel, ut, pin, func(PKCtx, pkcs11.SessionHandle) error { return nil })
}

// Login performs one login of ut on the pool's anchor session. The pool's
// Authenticator normally does this; it is exported for callers that log in
// as the SO on a pool for administration.
func (p *Pool) Login(_ context.Context, ut UserType, pin []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.login(ut, pin)
}
