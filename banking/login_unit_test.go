package banking_test

import (
	"maps"
	"reflect"
	"testing"

	"github.com/keyward/keyward/banking"
	"github.com/keyward/keyward/banking/internal/captchahook"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token/smcrypto"
)

// TestUnitLogin: the right password opens a session that shows the
// anti-phishing phrase and works; a wrong password and an unknown login get
// the same 401 login_failed after the same keysvc work (one decrypt, one
// mac-verify: the unknown login is checked against a decoy), so nothing
// tells whether a login exists (R-AUTH-1, R-AUTH-4).
func TestUnitLogin(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	sess := ub.login(t, ana, "ana-phone")
	if st, me := ub.call(t, sess, "ana-phone", "GET", "/v1/me", nil); st != 200 || me["id"] != ana.id || me["anti_phishing"] != "蓝色海豚" {
		t.Fatalf("/v1/me after login: %d %v", st, me)
	}
	if st, out := ub.call(t, sess, "other-phone", "GET", "/v1/me", nil); st != 401 {
		t.Errorf("the session from another device: %d %v, want 401", st, out)
	}

	ub.kms.Calls()
	st, wrong := ub.loginTry(t, ana.login, wrongPassword, "ana-phone")
	wrongCalls := ub.kms.Calls()
	st2, unknown := ub.loginTry(t, "nobody.here", wrongPassword, "ana-phone")
	unknownCalls := ub.kms.Calls()
	if st != 401 || errCode(wrong) != "login_failed" || st2 != 401 || errCode(unknown) != "login_failed" {
		t.Fatalf("wrong password %d %v; unknown login %d %v; want 401 login_failed for both", st, wrong, st2, unknown)
	}
	if !reflect.DeepEqual(wrong, unknown) {
		t.Errorf("a wrong password and an unknown login are told apart: %v ≠ %v", wrong, unknown)
	}
	want := map[string]int{"decrypt": 1, "mac-verify": 1}
	if !maps.Equal(wrongCalls, want) || !maps.Equal(unknownCalls, want) {
		t.Errorf("keysvc calls: wrong password %v, unknown login %v; want %v for both", wrongCalls, unknownCalls, want)
	}
	// The right password: the same two calls, then one MAC (the re-MAC
	// under the primary that upgradePasswordMAC compares).
	if st, out := ub.loginTry(t, ana.login, password, "ana-phone"); st != 200 || out["step_up"] != false {
		t.Fatalf("login from a known device: %d %v", st, out)
	}
	if got := ub.kms.Calls(); got["decrypt"] != 1 || got["mac-verify"] != 1 {
		t.Errorf("keysvc calls of a right login %v", got)
	}
}

// TestUnitLoginSealing: a login challenge is single use; a password sealed
// to a key that is not the bank's is refused as challenge_mismatch (keysvc
// cannot open it); a malformed Sealed is invalid_request. None of them
// costs a guard failure.
func TestUnitLoginSealing(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	sealed := ub.seal(t, password)
	body := map[string]any{"login": ana.login, "password": sealed, "device": "d1", "os": "Android 14"}
	if st, out := ub.call(t, "", "", "POST", "/v1/login", body); st != 200 {
		t.Fatalf("first use of the challenge: %d %v", st, out)
	}
	if st, out := ub.call(t, "", "", "POST", "/v1/login", body); st != 400 || errCode(out) != "challenge_used" {
		t.Errorf("replayed challenge: %d %v, want 400 challenge_used", st, out)
	}
	stranger, err := smcrypto.GenerateSM2()
	if err != nil {
		t.Fatal(err)
	}
	for range 6 { // more than the guard's five: none of these is a failed password
		body["password"] = ub.sealTo(t, &stranger.PublicKey, 1, password)
		if st, out := ub.call(t, "", "", "POST", "/v1/login", body); st != 400 || errCode(out) != "challenge_mismatch" {
			t.Fatalf("sealed to another key: %d %v, want 400 challenge_mismatch", st, out)
		}
	}
	body["password"] = map[string]any{"challenge": "x", "ciphertext": "", "key_version": 1}
	if st, out := ub.call(t, "", "", "POST", "/v1/login", body); st != 400 || errCode(out) != "invalid_request" {
		t.Errorf("empty ciphertext: %d %v, want 400 invalid_request", st, out)
	}
	if st, out := ub.loginTry(t, ana.login, password, "d1"); st != 200 {
		t.Errorf("the right password after refused seals: %d %v (the guard counted them)", st, out)
	}
}

// TestUnitLoginLockout: five wrong passwords lock the account (R-AUTH-3):
// the sixth attempt, even with the right password, is 429
// temporarily_locked and costs keysvc nothing; one lock alert is raised
// for the account; another customer still logs in. From the fourth
// attempt each needs a captcha (issue 18): solving it does not lift the
// bound of five.
func TestUnitLoginLockout(t *testing.T) {
	defer captchahook.Record()()
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	ben := ub.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	for i := range 5 {
		st, out := ub.loginTry(t, ana.login, wrongPassword, "ana-phone")
		if i >= banking.DefaultCaptchaAfter {
			if st != 401 || errCode(out) != "captcha_required" {
				t.Fatalf("wrong password %d without captcha: %d %v, want captcha_required", i+1, st, out)
			}
			id, ans := fetchCaptcha(t, ub)
			st, out = ub.loginCaptcha(t, ana.login, wrongPassword, "ana-phone", id, ans)
		}
		if st != 401 || errCode(out) != "login_failed" {
			t.Fatalf("wrong password %d: %d %v", i+1, st, out)
		}
	}
	ub.kms.Calls()
	if st, out := ub.loginTry(t, ana.login, password, "ana-phone"); st != 429 || errCode(out) != "temporarily_locked" {
		t.Fatalf("right password after five wrong ones: %d %v, want 429 temporarily_locked", st, out)
	}
	if got := ub.kms.Calls(); got["decrypt"] != 0 || got["mac-verify"] != 0 {
		t.Errorf("a locked login reached keysvc: %v", got)
	}
	if locks := ub.lockAlerts(); len(locks) != 1 || locks[0].Account != ana.login {
		t.Errorf("lock alerts %+v, want one for %s", locks, ana.login)
	}
	// Ben shares the source (loopback), which has five failures: he needs
	// a captcha too.
	if st, out := ub.loginTry(t, ben.login, password, "ben-phone"); st != 401 || errCode(out) != "captcha_required" {
		t.Fatalf("ben from the failing source: %d %v, want captcha_required", st, out)
	}
	id, ans := fetchCaptcha(t, ub)
	if st, out := ub.loginCaptcha(t, ben.login, password, "ben-phone", id, ans); st != 200 {
		t.Fatalf("ben with a captcha: %d %v", st, out)
	}
}

// TestUnitStepUpOTP: a login from a new device must complete an SMS
// step-up before anything else (R-AUTH-9); a wrong code is otp_invalid, a
// used code otp_used, and after five wrong codes the code is dead
// (otp_locked) even when right. The device is then known: no step-up.
func TestUnitStepUpOTP(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	st, out := ub.loginTry(t, ana.login, password, "phone-1")
	if st != 200 || out["step_up"] != true {
		t.Fatalf("first login from a new device: %d %v", st, out)
	}
	sess := out["session"].(string)
	if st, out := ub.call(t, sess, "phone-1", "GET", "/v1/accounts", nil); st != 403 || errCode(out) != "step_up_required" {
		t.Fatalf("before the step-up: %d %v, want 403 step_up_required", st, out)
	}
	code := ub.code(t, ana.phone)
	if st, out := ub.call(t, sess, "phone-1", "POST", "/v1/stepup", map[string]any{"code": wrongCode(code), "os": "Android 14"}); st != 403 || errCode(out) != "otp_invalid" {
		t.Fatalf("wrong code: %d %v, want 403 otp_invalid", st, out)
	}
	if st, out := ub.call(t, sess, "phone-1", "POST", "/v1/stepup", map[string]any{"code": code, "os": "Android 14"}); st != 200 {
		t.Fatalf("right code: %d %v", st, out)
	}
	if st, out := ub.call(t, sess, "phone-1", "GET", "/v1/accounts", nil); st != 200 {
		t.Fatalf("after the step-up: %d %v", st, out)
	}
	// The login's code was for "login" (its SMS says 登录确认); once the
	// login's step-up is done a step-up is for a sensitive change, whose
	// code has not been sent (issue 18: each SMS names its purpose).
	if st, out := ub.call(t, sess, "phone-1", "POST", "/v1/stepup", map[string]any{"code": code, "os": "Android 14"}); st != 403 || errCode(out) != "otp_not_found" {
		t.Errorf("a used code again: %d %v, want 403 otp_not_found", st, out)
	}
	if st, out := ub.loginTry(t, ana.login, password, "phone-1"); st != 200 || out["step_up"] != false {
		t.Errorf("second login from the known device: %d %v, want no step-up", st, out)
	}

	// Five wrong codes kill the code.
	if st, out := ub.call(t, sess, "phone-1", "POST", "/v1/stepup/request", nil); st != 200 {
		t.Fatalf("step-up request: %d %v", st, out)
	}
	good := ub.code(t, ana.phone)
	var last string
	for range 6 {
		_, out := ub.call(t, sess, "phone-1", "POST", "/v1/stepup", map[string]any{"code": wrongCode(good)})
		last = errCode(out)
	}
	if last != "otp_locked" {
		t.Errorf("sixth wrong code: %s, want otp_locked", last)
	}
	if st, out := ub.call(t, sess, "phone-1", "POST", "/v1/stepup", map[string]any{"code": good}); st != 403 {
		t.Errorf("the right code after the lock: %d %v, want 403", st, out)
	}
}

// wrongCode is a six-digit code that is not code.
func wrongCode(code string) string {
	if code == "000000" {
		return "111111"
	}
	return "000000"
}

// TestUnitKeysvcDown: keysvc unavailable — at the decrypt or at the
// mac-verify — is 503 unavailable for the customer, not a failed login:
// the guard takes the attempt back, so more outages than the guard's limit
// lock no one out.
func TestUnitKeysvcDown(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	for _, ops := range [][]string{nil, {"mac-verify"}} {
		for range 6 {
			sealed := ub.seal(t, password) // the login key is fetched while keysvc is up
			ub.kms.SetDown(wire.ErrTokenUnavailable, ops...)
			st, out := ub.call(t, "", "", "POST", "/v1/login", map[string]any{"login": ana.login, "password": sealed, "device": "d1", "os": "Android 14"})
			ub.kms.SetDown(nil)
			if st != 503 || errCode(out) != "unavailable" {
				t.Fatalf("login while keysvc (%v) is unavailable: %d %v, want 503 unavailable", ops, st, out)
			}
		}
	}
	if len(ub.lockAlerts()) != 0 {
		t.Error("outages raised a lock")
	}
	ub.login(t, ana, "d1")
}
