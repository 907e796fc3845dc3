package banking_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"image/png"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/banking"
	"github.com/keyward/keyward/banking/captcha"
	"github.com/keyward/keyward/banking/internal/captchahook"
)

// fetchCaptcha is GET /v1/login/captcha; the answer comes from the test
// hook (as a person would read it off the image), never from the API.
func fetchCaptcha(t *testing.T, ub *unitBank) (id, answer string) {
	t.Helper()
	st, out := ub.call(t, "", "", "GET", "/v1/login/captcha", nil)
	if st != 200 {
		t.Fatalf("captcha: %d %v", st, out)
	}
	id, _ = out["id"].(string)
	img, _ := out["image"].(string)
	exp, _ := out["expires"].(string)
	raw, err := base64.StdEncoding.DecodeString(img)
	if err != nil {
		t.Fatalf("image is not base64: %v", err)
	}
	if _, err := png.Decode(bytes.NewReader(raw)); err != nil {
		t.Fatalf("image is not a PNG: %v", err)
	}
	if e, err := time.Parse(time.RFC3339Nano, exp); err != nil || e.Sub(time.Now().Add(time.Duration(ub.skew.Load()))) > captcha.MaxTTL+time.Second {
		t.Fatalf("expires %q", exp)
	}
	if len(out) != 3 {
		t.Fatalf("the answer carries more than id, image and expires: %v", out)
	}
	answer, ok := captchahook.Answer(id)
	if !ok {
		t.Fatal("the hook did not see the captcha")
	}
	ub.remember(answer)
	return id, answer
}

func (ub *unitBank) loginCaptcha(t *testing.T, login, pw, dev, id, answer string) (int, map[string]any) {
	t.Helper()
	st, out := ub.call(t, "", "", "POST", "/v1/login", map[string]any{"login": login, "password": ub.seal(t, pw), "device": dev, "os": "Android 14",
		"captcha_id": id, "captcha": answer})
	if s, ok := out["session"].(string); ok {
		ub.remember(s)
	}
	return st, out
}

// TestUnitCaptchaAfterFailures (seed 6.2.3.2 captcha a–d): three failed
// logins make the fourth need a captcha — refused with captcha_required
// without a password check (the right password is refused too); a right
// captcha with the right password logs in; a captcha is spent by one
// check, right or wrong; an expired one is refused; one issued on node A
// is checked on node B; every step is in the audit trail.
func TestUnitCaptchaAfterFailures(t *testing.T) {
	defer captchahook.Record()()
	a, b := newUnitNodes(t)
	ana := a.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	a.login(t, ana, "phone-1") // the device becomes known: no step-up below

	for i := range banking.DefaultCaptchaAfter {
		if st, out := a.loginTry(t, ana.login, wrongPassword, "phone-1"); st != 401 || errCode(out) != "login_failed" {
			t.Fatalf("failure %d: %d %v", i+1, st, out)
		}
	}
	sealed := b.seal(t, password) // fetches key and challenge: not part of the count
	a.kms.Calls()                 // reset the count
	st, out := b.call(t, "", "", "POST", "/v1/login", map[string]any{"login": ana.login, "password": sealed, "device": "phone-1", "os": "Android 14"})
	if st != 401 || errCode(out) != "captcha_required" {
		t.Fatalf("4th login without captcha: %d %v, want 401 captcha_required", st, out)
	}
	if msg := out["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "图片验证码") {
		t.Fatalf("message %q is not the Chinese one", msg)
	}
	if got := a.kms.Calls(); got["decrypt"] != 0 || got["mac-verify"] != 0 || got["mac"] != 0 {
		t.Fatalf("a refused login called keysvc: %v", got)
	}

	id, ans := fetchCaptcha(t, a)
	wrong := strings.Map(func(r rune) rune { return '0' + (r-'0'+1)%10 }, ans)
	if st, out := b.loginCaptcha(t, ana.login, password, "phone-1", id, wrong); st != 401 || errCode(out) != "captcha_invalid" {
		t.Fatalf("wrong captcha: %d %v, want captcha_invalid", st, out)
	}
	if st, out := b.loginCaptcha(t, ana.login, password, "phone-1", id, ans); st != 401 || errCode(out) != "captcha_invalid" {
		t.Fatalf("the right answer after a wrong one: %d %v, want captcha_invalid (single use)", st, out)
	}

	id, ans = fetchCaptcha(t, a)
	a.advance(captcha.MaxTTL)
	b.advance(captcha.MaxTTL)
	if st, out := b.loginCaptcha(t, ana.login, password, "phone-1", id, ans); st != 401 || errCode(out) != "captcha_invalid" {
		t.Fatalf("expired captcha: %d %v, want captcha_invalid", st, out)
	}

	id, ans = fetchCaptcha(t, a) // issued on A, checked on B
	if st, out := b.loginCaptcha(t, ana.login, password, "phone-1", id, ans); st != 200 || out["session"] == nil {
		t.Fatalf("right captcha and password on the other node: %d %v", st, out)
	}
	if st, out := a.loginCaptcha(t, ana.login, password, "phone-1", id, ans); st != 401 || errCode(out) != "captcha_invalid" {
		t.Fatalf("reused captcha: %d %v", st, out)
	}
	// The success reset the login's count, but this source's three
	// failures stay counted for the guard's window (10 min): a captcha is
	// still asked from here, then no more once the window has passed.
	if st, out := a.loginTry(t, ana.login, password, "phone-1"); st != 401 || errCode(out) != "captcha_required" {
		t.Fatalf("after a success, same source: %d %v, want captcha_required", st, out)
	}
	a.advance(10 * time.Minute)
	if st, out := a.loginTry(t, ana.login, password, "phone-1"); st != 200 {
		t.Fatalf("after the source's window: %d %v", st, out)
	}
}

// TestUnitCaptchaAudited: each captcha step is in banking's audit trail
// as login.captcha, attributed to the login, never with the answer.
func TestUnitCaptchaAudited(t *testing.T) {
	defer captchahook.Record()()
	var mu sync.Mutex
	var evs []banking.Event
	ub := newUnitBankWith(t, func(c *banking.Config) {
		c.OnAudit = func(_ context.Context, ev banking.Event) {
			if ev.Op == "login.captcha" {
				mu.Lock()
				evs = append(evs, ev)
				mu.Unlock()
			}
		}
	})
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	for range banking.DefaultCaptchaAfter {
		ub.loginTry(t, ana.login, wrongPassword, "phone-1")
	}
	ub.loginTry(t, ana.login, password, "phone-1")
	id, ans := fetchCaptcha(t, ub)
	ub.loginCaptcha(t, ana.login, password, "phone-1", id, strings.Map(func(r rune) rune { return '0' + (r-'0'+1)%10 }, ans))
	id, ans = fetchCaptcha(t, ub)
	ub.loginCaptcha(t, ana.login, password, "phone-1", id, ans)
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, ev := range evs {
		if ev.Actor != "login:ana.li" || ev.Source == "" || strings.Contains(ev.Detail, ans) {
			t.Errorf("event %+v", ev)
		}
		got = append(got, ev.Result)
	}
	if strings.Join(got, ",") != "captcha_required,captcha_invalid,ok" {
		t.Fatalf("audited %v, want captcha_required, captcha_invalid, ok", got)
	}
}
