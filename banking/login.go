package banking

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/keyward/keyward/banking/auth/bruteforce"
	"github.com/keyward/keyward/banking/auth/device"
	"github.com/keyward/keyward/banking/auth/password"
	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/keysvc/wire"
)

// LoginKey is the bank's SM2 login public key (PEM) and its version: the
// client encrypts password ‖ 0x00 ‖ challenge to it.
type LoginKey struct {
	PEM     string `json:"pem"`
	Version int    `json:"version"`
}

// LoginKey returns the current login key (from keysvc, cached for
// Config.PublicKeyTTL).
func (b *Bank) LoginKey(ctx context.Context) (LoginKey, error) {
	pk, err := b.pubKeys.get(ctx, KeyLogin)
	if err != nil {
		return LoginKey{}, err
	}
	return LoginKey{PEM: pk.PEM, Version: pk.Version}, nil
}

// ReceiptKey returns the bank's receipt public key (cached like LoginKey).
func (b *Bank) ReceiptKey(ctx context.Context) (wire.PublicKeyResult, error) {
	return b.pubKeys.get(ctx, KeyReceipt)
}

// DefaultCaptchaAfter is how many recent failed logins of a login, or
// from a source, make the next login need an image captcha (seed
// 6.2.3.2; Config.CaptchaAfter).
const DefaultCaptchaAfter = 3

// NewCaptcha draws an image captcha for a login (GET /v1/login/captcha):
// 2 minutes, single-use, its answer never sent (banking/captcha).
func (b *Bank) NewCaptcha(ctx context.Context) (bankwire.Captcha, error) {
	c, err := b.captchas.New(ctx)
	if err != nil {
		return bankwire.Captcha{}, err
	}
	return bankwire.Captcha{ID: c.ID, Image: base64.StdEncoding.EncodeToString(c.PNG), Expires: c.ExpiresAt}, nil
}

// Challenge issues a single-use login challenge (≤ 2 min, R-AUTH-4).
func (b *Bank) Challenge(ctx context.Context) (password.Challenge, error) {
	return b.challenges.New(ctx)
}

// validateLogin checks the request's shape (the password is checked by Login).
func validateLogin(r *bankwire.LoginRequest) error {
	if !loginRE.MatchString(r.Login) || r.Device == "" || len(r.Device) > 64 || r.OS == "" || len(r.OS) > 64 {
		return invalid("login, device (≤64) and os (≤64) are required")
	}
	if device.CheckName(r.DeviceName) != nil {
		return invalid("device_name is at most %d characters, without control characters", device.MaxNameLen)
	}
	return nil
}

// Login checks the password through keysvc behind the brute-force guard
// (R-AUTH-3) and opens a session (R-AUTH-5); a new device, OS or network
// asks for SMS step-up (R-AUTH-9). A known and an unknown login cost
// keysvc the same calls until the password is found right (checkPassword).
//
// Every attempt is audited as "login": an unknown login and a wrong
// password alike as login:<name> with result login_failed, a success as
// customer:<id>.
func (b *Bank) Login(ctx context.Context, req bankwire.LoginRequest, ip netip.Addr) (res bankwire.LoginResult, err error) {
	defer func() {
		ev := Event{Op: "login", Actor: "login:" + req.Login, Result: resultOf(err), Source: ip.String()}
		if validateLogin(&req) != nil {
			ev.Actor = "login:?" // a malformed name is not repeated
		} else {
			ev.Detail = "device=" + req.Device
		}
		if res.Customer != "" { // the password was right (a later step may still have failed)
			ev.Actor = "customer:" + res.Customer
			ev.Detail += fmt.Sprintf(" stepup=%t", res.StepUp)
		}
		b.audit(ctx, ev)
	}()
	defer func() { b.metrics.logins.WithLabelValues(resultOf(err)).Inc() }()
	if err := validateLogin(&req); err != nil {
		return bankwire.LoginResult{}, err
	}
	human := false
	if req.CaptchaID != "" || req.Captcha != "" {
		// A captcha sent is checked (and spent) before anything else.
		if err := b.captchas.Check(ctx, req.CaptchaID, req.Captcha); err != nil {
			b.audit(ctx, Event{Op: "login.captcha", Actor: "login:" + req.Login, Result: edge.Classify(err).Code})
			return bankwire.LoginResult{}, err
		}
		b.audit(ctx, Event{Op: "login.captcha", Actor: "login:" + req.Login, Result: "ok"})
		human = true
	}
	att, err := b.guard.BeginHuman(ctx, req.Login, ip, human)
	if errors.Is(err, bruteforce.ErrCaptchaRequired) {
		b.audit(ctx, Event{Op: "login.captcha", Actor: "login:" + req.Login, Result: "captcha_required"})
		return bankwire.LoginResult{}, err
	}
	if err != nil {
		b.log.WarnContext(ctx, "login refused: locked", "login", req.Login, "source", ip.String())
		return bankwire.LoginResult{}, b.lockedErr(err)
	}
	pw, err := b.open(ctx, req.Password)
	if err != nil {
		att.Abandon(ctx) // the password was never compared
		return bankwire.LoginResult{}, err
	}
	defer clear(pw)
	c, err := b.checkPassword(ctx, req.Login, pw)
	if err != nil {
		att.Abandon(ctx)
		return bankwire.LoginResult{}, err
	}
	if c == nil {
		_ = att.Failed(ctx)
		b.log.InfoContext(ctx, "login failed", "login", req.Login, "source", ip.String())
		return bankwire.LoginResult{}, ErrLoginFailed
	}
	if err := att.Succeeded(ctx); err != nil {
		return bankwire.LoginResult{}, err
	}
	a, err := b.devices.Assess(ctx, c.ID, req.Device, req.OS, ip)
	if err != nil {
		return bankwire.LoginResult{}, err
	}
	id, sess, err := b.sessions.Create(ctx, session.Params{Customer: c.ID, Device: req.Device, DeviceName: req.DeviceName, IP: ip, Level: session.LevelPassword})
	if err != nil {
		return bankwire.LoginResult{}, err
	}
	sref := sess.Ref
	res = bankwire.LoginResult{Session: id, AntiPhishing: c.AntiPhishing, Customer: c.ID}
	if a.StepUp {
		if err := b.setStepUpPending(sref, true); err != nil {
			return bankwire.LoginResult{}, err
		}
		res.StepUp = true
		rs := make([]string, len(a.Reasons))
		for i, r := range a.Reasons {
			rs[i] = string(r)
		}
		res.StepUpReason = strings.Join(rs, ", ")
		_, err := b.otps.Issue(ctx, c.ID, purposeLogin)
		b.audit(ctx, Event{Op: "otp.send", Actor: "customer:" + c.ID, Result: resultOf(err), Detail: "purpose=" + purposeLogin})
		return res, err
	}
	return res, b.devices.RememberNamed(ctx, c.ID, req.Device, req.DeviceName, req.OS, ip)
}

// SMS purposes of the step-up (named in the text, otp.PurposeName): the
// login's own, while it is open, and a later one before a sensitive
// change.
const (
	purposeLogin  = "login"
	purposeStepUp = "stepup"
)

// stepUpPurpose is the purpose of the session's step-up code: the login's
// while its step-up is open, else the later one.
func (b *Bank) stepUpPurpose(ref string) (string, error) {
	purpose := purposeStepUp
	err := b.db.View(func(tx store.Tx) error {
		if tx.Bucket(bucketStepUp).Get([]byte(ref)) != nil {
			purpose = purposeLogin
		}
		return nil
	})
	return purpose, err
}

// RequestStepUp sends a fresh SMS code for the session's customer.
func (b *Bank) RequestStepUp(ctx context.Context, s session.Session) error {
	purpose, err := b.stepUpPurpose(s.Ref)
	if err != nil {
		return err
	}
	_, err = b.otps.Issue(ctx, s.Customer, purpose)
	b.audit(ctx, Event{Op: "otp.send", Actor: "customer:" + s.Customer, Result: resultOf(err), Detail: "purpose=" + purpose})
	return err
}

// StepUp verifies an SMS code and raises the session to LevelOTP; the
// device becomes known.
func (b *Bank) StepUp(ctx context.Context, sid string, s session.Session, code, os string) (err error) {
	defer func() { b.audit(ctx, Event{Op: "stepup", Actor: "customer:" + s.Customer, Result: resultOf(err)}) }()
	purpose, err := b.stepUpPurpose(s.Ref)
	if err != nil {
		return err
	}
	if err := b.otps.Verify(ctx, s.Customer, purpose, code); err != nil {
		return err
	}
	if _, err := b.sessions.StepUp(ctx, sid, session.LevelOTP); err != nil {
		return err
	}
	if err := b.setStepUpPending(s.Ref, false); err != nil {
		return err
	}
	ip, err := netip.ParseAddr(s.IP)
	if os == "" || err != nil {
		return nil
	}
	return b.devices.RememberNamed(ctx, s.Customer, s.Device, s.DeviceName, os, ip)
}

var bucketStepUp = []byte("bank-stepup-pending") // session ref → "1" while the login's step-up is open

func (b *Bank) setStepUpPending(ref string, pending bool) error {
	return b.db.Update(func(tx store.Tx) error {
		bk := tx.Bucket(bucketStepUp)
		if pending {
			return bk.Put([]byte(ref), []byte{1})
		}
		return bk.Delete([]byte(ref))
	})
}

// Logout ends the session at once.
func (b *Bank) Logout(ctx context.Context, sid string) error { return b.sessions.Logout(ctx, sid) }

// Authenticate returns the live session for sid, extending its idle
// timer. A session used from another device is refused.
func (b *Bank) Authenticate(ctx context.Context, sid, dev string) (session.Session, error) {
	s, err := b.sessions.Touch(ctx, sid)
	if err != nil {
		return session.Session{}, err
	}
	if dev != s.Device {
		return session.Session{}, fmt.Errorf("%w: this session belongs to another device", ErrUnauthenticated)
	}
	return s, nil
}

// authenticateReady is Authenticate for routes a session may use only
// once any step-up its login asked for is done (R-AUTH-9): the step-up
// state is read with the session's record (one store transaction).
func (b *Bank) authenticateReady(ctx context.Context, sid, dev string) (session.Session, error) {
	var pending bool
	s, err := b.sessions.TouchWith(ctx, sid, func(tx store.Tx, ref string) {
		pending = tx.Bucket(bucketStepUp).Get([]byte(ref)) != nil
	})
	if err != nil {
		return session.Session{}, err // a store fault fails closed: never "no step-up open"
	}
	if dev != s.Device {
		return session.Session{}, fmt.Errorf("%w: this session belongs to another device", ErrUnauthenticated)
	}
	if pending {
		return session.Session{}, fmt.Errorf("%w: this login is from a new device or network; enter the SMS code first", ErrStepUp)
	}
	return s, nil
}

// ChangePassword sets a new password; it needs a recent step-up
// (R-AUTH-6) and ends the customer's other sessions.
func (b *Bank) ChangePassword(ctx context.Context, sid string, s session.Session, newPW bankwire.Sealed) (err error) {
	defer func() {
		b.audit(ctx, Event{Op: "password.change", Actor: "customer:" + s.Customer, Result: resultOf(err)})
	}()
	if err := b.sessions.RequireStepUp(s, session.LevelOTP, b.cfg.StepUpFor); err != nil {
		return err
	}
	c, err := b.Customer(s.Customer)
	if err != nil {
		return err
	}
	pw, err := b.open(ctx, newPW)
	if err != nil {
		return err
	}
	defer clear(pw)
	if err := password.Check(pw, c.Login, c.Phone); err != nil {
		return err
	}
	mac, err := b.pwMAC(ctx, c.ID, pw)
	if err != nil {
		return err
	}
	// Only the MAC changes, read and written in one transaction: a change
	// another node made to the record meanwhile is kept.
	if err := b.updateCustomer(c.ID, func(cur *Customer) bool { cur.PasswordMAC = mac; return true }); err != nil {
		return err
	}
	_, err = b.sessions.LogoutOthers(ctx, c.ID, sid)
	return err
}
