package keysvc

// Holder PINs (R-DC-1, R-TOK-4, R-TOK-5): the credential with which a
// confirm-required key's holder approves a confirmation (confirm.go).
//
// A key created with confirm "required" gets a Holder with a one-time setup
// code; the holder enrols with it on the confirmation endpoint (Enrol),
// choosing a PIN that the PIN rules accept. The PIN is kept only as a keyed
// hash, HMAC-SHA256 in the token under PINMACLabel of the key name and the
// PIN (pinHash). Each approval checks the PIN (checkHolderPIN), counting a
// wrong one in the same store transaction that audits it; HolderPINLimit
// consecutive wrong PINs (or setup codes) lock the holder, persistently, in
// the key record. Only a security officer (admin client) unlocks the holder
// (UnlockHolder) or resets it to a new setup code (ResetHolder).

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
)

// Holder PIN constants.
const (
	// HolderPINLimit is the number of consecutive wrong holder PINs that
	// locks a key's holder (R-TOK-5: at most six).
	HolderPINLimit = 6
	// PINMACLabel is the token's HMAC key that turns holder PINs into keyed
	// hashes; PINs are never stored.
	PINMACLabel = "keysvc-pin-mac"
)

// Holder is a confirm-required key's holder credential, stored in the key
// record (so the lock survives restarts).
type Holder struct {
	// PINHash is HMAC-SHA256 under the token key PINMACLabel of the key
	// name and the PIN; empty until the holder has enrolled.
	PINHash []byte `json:"pin_hash,omitempty"`
	// SetupHash is SHA-256 of the one-time setup code, until enrolment.
	SetupHash []byte     `json:"setup_hash,omitempty"`
	Failures  int        `json:"failures"`
	Locked    bool       `json:"locked"`
	LockedAt  *time.Time `json:"locked_at,omitempty"`
}

// pinHash is the keyed hash of a holder PIN, computed in the token.
func (s *Service) pinHash(ctx context.Context, key string, pin []byte) ([]byte, error) {
	in := make([]byte, 0, 32+len(key)+len(pin))
	in = append(append(append(append(in, "keyward-holder-pin-v1\x00"...), key...), 0), pin...)
	defer token.Wipe(in)
	mac, err := s.hmac(ctx, s.pinMAC, in)
	return mac, tokenErr(err)
}

// errNoChange aborts a store update that has nothing to write.
var errNoChange = errors.New("no change")

// checkHolderPIN checks pin against the key's holder PIN, counting a wrong
// one in the same transaction that records it (R-TOK-5). It audits the
// outcome.
func (s *Service) checkHolderPIN(ctx context.Context, key string, pin []byte, p *ConfirmRecord) error {
	mac, err := s.pinHash(ctx, key, pin)
	if err != nil {
		return s.audit2(s.confirmRecord(key, "holder-pin", err, p, ""), err)
	}
	var verdict error
	rec := s.confirmRecord(key, "holder-pin", nil, p, "")
	_, err = s.updateKey(key, func(k *Key) error {
		h := k.Holder
		switch {
		case h == nil || len(h.PINHash) == 0:
			return fmt.Errorf("%w: the holder of %q has not set a PIN", wire.ErrHolderNotEnrolled, key)
		case h.Locked:
			return fmt.Errorf("%w: the holder of %q is locked; a security officer must unlock it", wire.ErrHolderLocked, key)
		case hmac.Equal(mac, h.PINHash):
			if h.Failures == 0 {
				return errNoChange
			}
			h.Failures = 0
			return nil
		}
		h.Failures++
		if h.Failures >= HolderPINLimit {
			now := s.now()
			h.Locked, h.LockedAt = true, &now
			verdict = fmt.Errorf("%w: %d wrong PINs; the holder of %q is now locked and a security officer must unlock it", wire.ErrHolderLocked, h.Failures, key)
		} else {
			verdict = fmt.Errorf("%w: %w before the holder is locked", wire.ErrHolderPIN, &wire.TriesLeft{Left: HolderPINLimit - h.Failures, Limit: HolderPINLimit})
		}
		rec.Result = ResultCode(verdict)
		return nil
	}, rec)
	switch {
	case errors.Is(err, errNoChange):
		return s.audit2(rec, nil)
	case err != nil:
		return s.audit2(s.confirmRecord(key, "holder-pin", err, p, ""), err)
	}
	return verdict
}

// newHolder returns a fresh holder with a one-time setup code.
func newHolder() (*Holder, string, error) {
	b := make([]byte, 10) // 80 bits, 16 base32 characters
	if _, err := rand.Read(b); err != nil {
		return nil, "", err
	}
	code := base32.StdEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(code))
	return &Holder{SetupHash: sum[:]}, code, nil
}

// Enrol sets the holder PIN of key with its one-time setup code, on the
// confirmation endpoint over TLS (R-TOK-4: PIN rules apply; the PIN is kept
// only as a keyed hash). A wrong setup code counts like a wrong PIN.
func (s *Service) Enrol(ctx context.Context, key, setupCode string, pin []byte) error {
	defer token.Wipe(pin)
	audited, err := s.enrol(ctx, key, setupCode, pin)
	if audited { // recorded with the holder update, in its transaction
		return err
	}
	return s.audit2(s.confirmRecord(key, "holder-enrol", err, nil, ""), err)
}

// enrol reports whether its outcome was audited with the store update.
func (s *Service) enrol(ctx context.Context, key, setupCode string, pin []byte) (audited bool, _ error) {
	if err := token.CheckPIN(pin, nil); err != nil {
		return false, fmt.Errorf("%w: %w", wire.ErrInvalidArgument, err) // the token rule stays in the chain: the enrolment page names it in the reader's language
	}
	mac, err := s.pinHash(ctx, key, pin)
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256([]byte(setupCode))
	defer s.lock(key)()
	var verdict error
	rec := s.confirmRecord(key, "holder-enrol", nil, nil, "")
	_, err = s.updateKey(key, func(k *Key) error {
		h := k.Holder
		switch {
		case k.Confirm != wire.ConfirmRequired || h == nil:
			return fmt.Errorf("%w: key %q has no holder", wire.ErrHolderNotEnrolled, key)
		case h.Locked:
			return fmt.Errorf("%w: the holder of %q is locked; a security officer must reset it", wire.ErrHolderLocked, key)
		case len(h.SetupHash) == 0:
			return fmt.Errorf("%w: the holder of %q has enrolled already; a security officer can reset it", wire.ErrConfirmationClosed, key)
		case hmac.Equal(sum[:], h.SetupHash):
			h.PINHash, h.SetupHash, h.Failures = mac, nil, 0
			return nil
		}
		h.Failures++
		verdict = fmt.Errorf("%w: wrong setup code; %w", wire.ErrHolderPIN, &wire.TriesLeft{Left: HolderPINLimit - h.Failures, Limit: HolderPINLimit})
		if h.Failures >= HolderPINLimit {
			now := s.now()
			h.Locked, h.LockedAt = true, &now
			verdict = fmt.Errorf("%w: %d wrong setup codes; a security officer must reset the holder", wire.ErrHolderLocked, h.Failures)
		}
		rec.Result = ResultCode(verdict)
		return nil
	}, rec)
	if err != nil {
		return false, err
	}
	return true, verdict
}

// UnlockHolder clears a locked holder's counter (the security officer's
// path; admin clients only). The holder keeps their PIN.
func (s *Service) UnlockHolder(_ context.Context, c Caller, key string) (*Key, error) {
	return s.officerHolder(c, key, "holder-unlock", func(h *Holder) (*Holder, string, error) {
		h.Failures, h.Locked, h.LockedAt = 0, false, nil
		return h, "", nil
	})
}

// ResetHolder forgets the holder PIN and issues a new setup code (the
// holder forgot their PIN, or lost a device); admin clients only.
func (s *Service) ResetHolder(_ context.Context, c Caller, key string) (*Key, error) {
	return s.officerHolder(c, key, "holder-reset", func(*Holder) (*Holder, string, error) {
		return newHolder()
	})
}

func (s *Service) officerHolder(c Caller, key, op string, fn func(h *Holder) (*Holder, string, error)) (*Key, error) {
	if !c.Admin {
		return nil, s.finish(c, key, 0, op, fmt.Errorf("%w: only a security officer (admin client) may %s", wire.ErrForbidden, op))
	}
	defer s.lock(key)()
	var code string
	k, err := s.updateKey(key, func(k *Key) error {
		if k.Confirm != wire.ConfirmRequired || k.Holder == nil {
			return fmt.Errorf("%w: key %q has no holder", wire.ErrInvalidArgument, key)
		}
		h, cd, err := fn(k.Holder)
		if err != nil {
			return err
		}
		k.Holder, code = h, cd
		return nil
	}, s.record(c, key, 0, op, nil))
	if err != nil {
		return nil, s.finish(c, key, 0, op, err)
	}
	k.setupCode = code
	return k, nil
}

// ensurePINMAC finds or makes the token's HMAC key for holder PINs.
func (s *Service) ensurePINMAC(ctx context.Context) (token.KeyRef, error) {
	return s.ensureKey(ctx, token.KeySpec{Type: token.KeyGenericSecret, Label: PINMACLabel})
}
