package banking_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/keyward/keyward/banking"
)

// TestUnitMACRotationLoggedInPopulation (R-TOK-8, issue 12 item 3):
// bank-pw-mac rotates twice while customers are logged in, mid step-up
// and away: every customer keeps logging in, a wrong password still fails,
// sessions opened before a rotation keep working, an SMS code hashed
// before a rotation verifies after it, and each stored password MAC moves
// to the primary at its owner's next login — not before. Raising
// min_version past a value nobody re-MACed makes it fail like a wrong
// password (with a warning), and concurrent logins all end on the primary.
func TestUnitMACRotationLoggedInPopulation(t *testing.T) {
	// Its wrong passwords all come from one loopback address, which would
	// ask every later login for a captcha: this test is about MACs, so
	// the captcha is off (TestUnitCaptchaAfterFailures covers it).
	ub := newUnitBankWith(t, func(c *banking.Config) { c.CaptchaAfter = -1 })
	ana := ub.enrol(t, enrolment{login: "ana.rot", name: "Ana Rot", phone: "13800001111"})
	ben := ub.enrol(t, enrolment{login: "ben.rot", name: "Ben Rot", phone: "13800002222"})
	cai := ub.enrol(t, enrolment{login: "cai.rot", name: "Cai Rot", phone: "13800003333"})
	dai := ub.enrol(t, enrolment{login: "dai.rot", name: "Dai Rot", phone: "13800004444"})
	eve := ub.enrol(t, enrolment{login: "eve.rot", name: "Eve Rot", phone: "13800005555"})
	fay := ub.enrol(t, enrolment{login: "fay.rot", name: "Fay Rot", phone: "13800006666"})

	// The stored form: keysvc's MAC of "password-v1" ‖ 0 ‖ id ‖ 0 ‖ password
	// under v1, as "kw:v1:…" bytes.
	want, err := ub.kms.MACWith(banking.KeyPwMAC, 1, []byte("password-v1\x00"+dai.id+"\x00"+password))
	if err != nil {
		t.Fatal(err)
	}
	if cu, _ := ub.bank.Customer(dai.id); string(cu.PasswordMAC) != want || !strings.HasPrefix(want, "kw:v1:") {
		t.Fatalf("stored password MAC is not keysvc's v1 MAC of the domain-separated password")
	}

	sessAna, sessBen := ub.login(t, ana, "ana-phone"), ub.login(t, ben, "ben-phone")
	st, out := ub.loginTry(t, eve.login, password, "eve-phone") // Eve is mid step-up: her code is hashed under v1
	if st != 200 || out["step_up"] != true {
		t.Fatalf("eve's first login: %d %v", st, out)
	}
	sessEve, code := out["session"].(string), ub.code(t, eve.phone)

	if n, err := ub.kms.Rotate(banking.KeyPwMAC); err != nil || n != 2 {
		t.Fatalf("rotate: v%d %v", n, err)
	}
	if st, out := ub.call(t, sessEve, "eve-phone", "POST", "/v1/stepup", map[string]any{"code": code, "os": "Android 14"}); st != 200 {
		t.Fatalf("SMS code issued before the rotation: %d %v", st, out)
	}
	for _, s := range []struct{ sess, dev string }{{sessAna, "ana-phone"}, {sessBen, "ben-phone"}} {
		if st, out := ub.call(t, s.sess, s.dev, "GET", "/v1/me", nil); st != 200 {
			t.Fatalf("session opened before the rotation: %d %v", st, out)
		}
	}
	if st, out := ub.loginTry(t, cai.login, wrongPassword, "cai-phone"); st != 401 || errCode(out) != "login_failed" {
		t.Fatalf("wrong password after the rotation: %d %v", st, out)
	}
	ub.login(t, ana, "ana-phone") // logged in before, again after
	ub.login(t, cai, "cai-phone") // first login after
	for c, v := range map[customer]int{ana: 2, cai: 2, ben: 1, dai: 1, eve: 1, fay: 1} {
		if got := ub.storedVersion(t, c); got != v {
			t.Errorf("%s: stored under v%d after the first rotation, want v%d", c.login, got, v)
		}
	}

	// A second rotation while Dai waits for his code (hashed under v2).
	st, out = ub.loginTry(t, dai.login, password, "dai-phone")
	if st != 200 || out["step_up"] != true {
		t.Fatalf("dai's first login: %d %v", st, out)
	}
	sessDai, code := out["session"].(string), ub.code(t, dai.phone)
	if n, err := ub.kms.Rotate(banking.KeyPwMAC); err != nil || n != 3 {
		t.Fatalf("second rotate: v%d %v", n, err)
	}
	if st, out := ub.call(t, sessDai, "dai-phone", "POST", "/v1/stepup", map[string]any{"code": code, "os": "Android 14"}); st != 200 {
		t.Fatalf("SMS code issued before the second rotation: %d %v", st, out)
	}
	if st, out := ub.loginTry(t, ben.login, wrongPassword, "ben-phone"); st != 401 || errCode(out) != "login_failed" {
		t.Fatalf("wrong password for a v1 value under v3: %d %v", st, out)
	}
	ub.login(t, ben, "ben-phone") // v1 → v3
	ub.login(t, eve, "eve-phone") // v1 → v3
	if got := ub.storedVersion(t, cai); got != 2 {
		t.Errorf("cai's value moved without a login: v%d", got)
	}

	// Ana, Ben, Dai and Eve log in together, three times each: every login
	// succeeds and each value ends on v3.
	type try struct {
		c    customer
		seal map[string]any
	}
	var tries []try
	for _, c := range []customer{ana, ben, dai, eve} {
		for range 3 {
			tries = append(tries, try{c, ub.seal(t, password)})
		}
	}
	errs := make(chan string, len(tries))
	var wg sync.WaitGroup
	for _, tr := range tries {
		wg.Go(func() {
			j, _ := json.Marshal(map[string]any{"login": tr.c.login, "password": tr.seal, "device": strings.Split(tr.c.login, ".")[0] + "-phone", "os": "Android 14"})
			resp, err := http.Post(ub.url+"/v1/login", "application/json", bytes.NewReader(j))
			if err != nil {
				errs <- err.Error()
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Sprintf("%s: %d", tr.c.login, resp.StatusCode)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error("concurrent login after the second rotation:", e)
	}
	for _, c := range []customer{ana, ben, dai, eve} {
		if got := ub.storedVersion(t, c); got != 3 {
			t.Errorf("%s: stored under v%d after logging in under v3", c.login, got)
		}
	}

	// Retiring v1 and v2: Fay, who never logged in (v1), and Cai, away
	// since the second rotation (v2), now fail like a wrong password, and the
	// bank warns; the others, on v3, still log in.
	if err := ub.kms.SetMinVersion(banking.KeyPwMAC, 3); err != nil {
		t.Fatal(err)
	}
	for _, c := range []customer{fay, cai} {
		if st, out := ub.loginTry(t, c.login, password, "x-phone"); st != 401 || errCode(out) != "login_failed" {
			t.Errorf("%s under a retired version: %d %v, want 401 login_failed", c.login, st, out)
		}
	}
	if !strings.Contains(ub.log.String(), "cannot be verified") {
		t.Error("no warning logged for a stored value under a retired version")
	}
	ub.login(t, ana, "ana-phone")
}
