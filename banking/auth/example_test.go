package auth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/netip"
	"testing"

	"github.com/keyward/keyward/banking/auth"
	"github.com/keyward/keyward/banking/auth/bruteforce"
	"github.com/keyward/keyward/banking/auth/device"
	"github.com/keyward/keyward/banking/auth/internal/authtest"
	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/auth/password"
	"github.com/keyward/keyward/banking/auth/session"
)

// bank wires the packages the way the banking app does, with an HMAC key
// standing in for keysvc (decryption is skipped: the test hands over the
// "decrypted" blob).
type bank struct {
	challenges *password.Challenges
	guard      *bruteforce.Guard
	sessions   *session.Manager
	otps       *otp.Service
	devices    *device.Registry
	outbox     *otp.DevOutbox
	alerts     *authtest.Alerts
	macKey     []byte
	stored     map[string][]byte // login → keyed hash of the password
}

const customerPhone = "13900001111"

func newBank(t *testing.T) *bank {
	t.Helper()
	db := authtest.MustOpenDB(t)
	clk := authtest.NewClock()
	b := &bank{outbox: otp.NewDevOutbox(), alerts: &authtest.Alerts{},
		macKey: []byte("keysvc stands in: 32 byte key..."), stored: map[string][]byte{}}
	var err error
	must := func(e error) {
		t.Helper()
		if e != nil {
			t.Fatal(e)
		}
	}
	b.challenges, err = password.NewChallenges(password.ChallengeConfig{DB: db, Now: clk.Now})
	must(err)
	b.guard, err = bruteforce.New(bruteforce.Config{DB: db, Alerts: b.alerts, Now: clk.Now})
	must(err)
	b.sessions, err = session.Open(session.Config{DB: db, Now: clk.Now})
	must(err)
	t.Cleanup(func() { b.sessions.Close() })
	h, err := otp.NewHMACSHA256(b.macKey)
	must(err)
	b.otps, err = otp.New(otp.Config{DB: db, Hasher: h, Gateway: b.outbox, Alerts: b.alerts, Now: clk.Now,
		Phone: func(context.Context, string) (string, error) { return customerPhone, nil }})
	must(err)
	b.devices, err = device.New(device.Config{DB: db, Now: clk.Now})
	must(err)
	return b
}

func (b *bank) mac(pw []byte) []byte {
	m := hmac.New(sha256.New, b.macKey)
	m.Write(pw)
	return m.Sum(nil)
}

func (b *bank) enrol(t *testing.T, login string, pw string) {
	if err := password.Check([]byte(pw), login, customerPhone); err != nil {
		t.Fatal(err)
	}
	b.stored[login] = b.mac([]byte(pw))
}

// login is the POST /login handler's logic. It returns the session id and
// whether step-up is needed.
func (b *bank) login(ctx context.Context, login string, plain []byte, challenge, dev, os string, ip netip.Addr) (string, bool, error) {
	att, err := b.guard.Begin(ctx, login, ip)
	if err != nil {
		return "", false, err
	}
	pw, err := b.challenges.Redeem(ctx, plain, challenge)
	if err != nil {
		att.Abandon(ctx) // the password was not compared
		return "", false, err
	}
	ok := hmac.Equal(b.mac(pw), b.stored[login])
	clear(pw)
	if !ok {
		att.Failed(ctx)
		return "", false, errors.New("wrong login or password")
	}
	if err := att.Succeeded(ctx); err != nil {
		return "", false, err
	}
	a, err := b.devices.Assess(ctx, login, dev, os, ip)
	if err != nil {
		return "", false, err
	}
	id, _, err := b.sessions.Create(ctx, session.Params{Customer: login, Device: dev, IP: ip, Level: session.LevelPassword})
	if err != nil {
		return "", false, err
	}
	if a.StepUp {
		_, err = b.otps.Issue(ctx, login, "login")
		return id, true, err
	}
	return id, false, b.devices.Remember(ctx, login, dev, os, ip)
}

func blob(pw, challenge string) []byte {
	raw, _ := base64.RawURLEncoding.DecodeString(challenge)
	return append(append([]byte(pw), 0), raw...)
}

func TestLoginFlow(t *testing.T) {
	ctx := context.Background()
	b := newBank(t)
	b.enrol(t, "c42", "Gl4cier-Walk")
	home := netip.MustParseAddr("192.0.2.20")

	// First login from a new device: step-up by SMS.
	ch, _ := b.challenges.New(ctx)
	id, stepUp, err := b.login(ctx, "c42", blob("Gl4cier-Walk", ch.Value), ch.Value, "phone-1", "iOS 17", home)
	if err != nil || !stepUp {
		t.Fatalf("first login: stepUp=%v err=%v", stepUp, err)
	}
	// The recorded ciphertext is worthless: its challenge is used.
	if _, _, err := b.login(ctx, "c42", blob("Gl4cier-Walk", ch.Value), ch.Value, "phone-1", "iOS 17", home); !errors.Is(err, password.ErrChallengeUsed) {
		t.Fatalf("replay: %v", err)
	}
	s, _ := b.sessions.Touch(ctx, id)
	if b.sessions.RequireStepUp(s, session.LevelOTP, 0) == nil {
		t.Fatal("session usable before the step-up")
	}
	code, _ := b.outbox.LastCode(customerPhone)
	if err := b.otps.Verify(ctx, "c42", "login", code); err != nil {
		t.Fatal(err)
	}
	if s, err = b.sessions.StepUp(ctx, id, session.LevelOTP); err != nil {
		t.Fatal(err)
	}
	b.devices.Remember(ctx, "c42", "phone-1", "iOS 17", home)
	if err := b.sessions.RequireStepUp(s, session.LevelOTP, 0); err != nil {
		t.Fatal(err)
	}
	b.sessions.Logout(ctx, id)
	if _, err := b.sessions.Touch(ctx, id); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("after logout: %v", err)
	}

	// Same device, same network: no step-up.
	ch, _ = b.challenges.New(ctx)
	if _, stepUp, err := b.login(ctx, "c42", blob("Gl4cier-Walk", ch.Value), ch.Value, "phone-1", "iOS 17", netip.MustParseAddr("192.0.2.77")); err != nil || stepUp {
		t.Fatalf("known device: stepUp=%v err=%v", stepUp, err)
	}

	// Five wrong passwords lock the account; the sixth is refused before
	// any password is looked at, and one alert names the source.
	attacker := netip.MustParseAddr("203.0.113.66")
	for range 5 {
		ch, _ = b.challenges.New(ctx)
		b.login(ctx, "c42", blob("guess", ch.Value), ch.Value, "x", "Linux", attacker)
	}
	ch, _ = b.challenges.New(ctx)
	if _, _, err := b.login(ctx, "c42", blob("Gl4cier-Walk", ch.Value), ch.Value, "phone-1", "iOS 17", home); !errors.Is(err, bruteforce.ErrAccountLocked) {
		t.Fatalf("sixth: %v", err)
	}
	evs := b.alerts.Events()
	if len(evs) != 1 || evs[0].Kind != auth.KindAccountLocked || evs[0].IP != attacker.String() {
		t.Fatalf("alerts %+v", evs)
	}
}
