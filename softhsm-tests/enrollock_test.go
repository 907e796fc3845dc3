package softhsmtests

import (
	"fmt"
	"testing"
)

// TestEnrolSetupCodeLock (issue 12 item 8, R-TOK-5): wrong setup codes on
// /confirm/v1/enrol are counted in the key record, like holder PINs; the
// sixth locks the holder, the seventh attempt is refused even with the
// right code, the lock survives a restart, and only a security officer's
// holder unlock lets the right code enrol.
func TestEnrolSetupCodeLock(t *testing.T) {
	e := newKeysvcEnv(t)
	out := e.must(t, 201, officerToken, "POST", "/v1/keys", map[string]any{"name": "cust-enrol", "purpose": "sign", "algorithm": "ec-p256", "protection": "wrapped",
		"confirm": "required", "policy": map[string]any{"grants": []any{map[string]any{"client": "banking", "ops": []string{"sign"}}}}})
	code, _ := out["holder_setup_code"].(string)
	if code == "" {
		t.Fatalf("no setup code: %v", out)
	}
	enrol := func(setup string) (int, map[string]any) {
		return callAt(t, e.confirmURL, "", "POST", "/confirm/v1/enrol", map[string]any{"key": "cust-enrol", "setup_code": setup, "pin": holderPIN})
	}
	for i := 1; i <= 6; i++ {
		st, out := enrol("AAAAAAAAAAAAAAA" + string(rune('0'+i)))
		want, wcode := 403, "holder_pin_incorrect"
		if i == 6 {
			want, wcode = 423, "holder_locked"
		}
		if st != want || errCode(out) != wcode {
			t.Fatalf("wrong setup code %d: %d %v, want %d %s", i, st, out, want, wcode)
		}
	}
	if st, out := enrol(code); st != 423 || errCode(out) != "holder_locked" {
		t.Fatalf("7th attempt with the right code: %d %v, want 423 holder_locked", st, out)
	}
	e.stop()
	e.start(t)
	if st, out := enrol(code); st != 423 || errCode(out) != "holder_locked" {
		t.Fatalf("right code after a restart: %d %v, want 423 holder_locked", st, out)
	}
	if st, out := e.call(t, bankingToken, "POST", "/v1/keys/cust-enrol/holder/unlock", nil); st != 403 {
		t.Fatalf("banking unlocks: %d %v", st, out)
	}
	e.must(t, 200, officerToken, "POST", "/v1/keys/cust-enrol/holder/unlock", nil)
	if st, out := enrol(code); st != 200 {
		t.Fatalf("right code after the officer's unlock: %d %v", st, out)
	}
	ops := e.auditOps(t)
	for _, want := range []string{"holder-enrol/holder_pin_incorrect cust-enrol", "holder-enrol/holder_locked cust-enrol", "holder-unlock/ok cust-enrol", "holder-enrol/ok cust-enrol"} {
		if !hasAudit(ops, want) {
			t.Errorf("audit lacks %q", want)
		}
	}
}

// TestEnrolRateLimited: the public enrolment route answers at most
// EnrolPerMinute attempts (default 10) per source address a minute, so an
// address cannot walk customer key names; past it 429 rate_limited, and
// keysvc is not asked.
func TestEnrolRateLimited(t *testing.T) {
	e := newKeysvcEnv(t)
	before := len(e.auditOps(t))
	for i := 1; i <= 11; i++ {
		st, out := callAt(t, e.confirmURL, "", "POST", "/confirm/v1/enrol", map[string]any{"key": fmt.Sprintf("cust-probe-%d", i), "setup_code": "AAAAAAAAAAAAAAAA", "pin": holderPIN})
		switch {
		case i <= 10 && (st == 429 || st < 400):
			t.Fatalf("attempt %d: %d %v, want a refusal other than 429", i, st, out)
		case i == 11 && (st != 429 || errCode(out) != "rate_limited"):
			t.Fatalf("attempt 11: %d %v, want 429 rate_limited", i, out)
		}
	}
	if n := len(e.auditOps(t)) - before; n != 10 {
		t.Errorf("keysvc recorded %d enrolment attempts, want 10 (the 11th must not reach it)", n)
	}
}
