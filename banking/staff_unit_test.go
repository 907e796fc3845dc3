package banking_test

import (
	"fmt"
	"github.com/keyward/keyward/token/l10n"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/banking"
)

// auditsOf returns the events recorded with op, in order.
func (ub *unitBank) auditsOf(op string) []banking.Event {
	ub.mu.Lock()
	defer ub.mu.Unlock()
	var out []banking.Event
	for _, ev := range ub.audits {
		if ev.Op == op {
			out = append(out, ev)
		}
	}
	return out
}

// lastAudit is the newest event recorded with op; the test fails without one.
func (ub *unitBank) lastAudit(t *testing.T, op string) banking.Event {
	t.Helper()
	evs := ub.auditsOf(op)
	if len(evs) == 0 {
		t.Fatalf("no audit record of %s", op)
	}
	return evs[len(evs)-1]
}

// wantAudit checks the newest record of op names actor, subject and result.
func (ub *unitBank) wantAudit(t *testing.T, op, actor, subject, result string) banking.Event {
	t.Helper()
	ev := ub.lastAudit(t, op)
	if ev.Actor != actor || ev.Subject != subject || ev.Result != result {
		t.Fatalf("audit %s: actor %q subject %q result %q; want %q %q %q (detail %q)", op, ev.Actor, ev.Subject, ev.Result, actor, subject, result, ev.Detail)
	}
	if ev.Source == "" {
		t.Errorf("audit %s has no source address", op)
	}
	return ev
}

// lockOut fails five logins of c, so its login is locked.
func (ub *unitBank) lockOut(t *testing.T, c customer) {
	t.Helper()
	for i := 0; i < 5; i++ {
		if st, out := ub.loginTry(t, c.login, wrongPassword, "x-phone"); st != 401 {
			t.Fatalf("wrong password %d: %d %v", i+1, st, out)
		}
	}
}

// TestUnitStaffRoles: a teller cannot do a supervisor's acts (unlock,
// limit override, ledger check): 403 staff_role_required naming the role
// and not who has it; the supervisor can. Every request — refused or
// done — is one audit record naming the person, the act, its subject and
// its result; a token no one holds is 401 and recorded as "staff:?"
// without the token.
func TestUnitStaffRoles(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	ub.wantAudit(t, "staff.enrol", "staff:teller1", ana.id, "ok")
	ub.deposit(t, ana.account, "100.00")
	ub.wantAudit(t, "staff.deposit", "staff:teller1", ana.account, "ok")

	st, me := ub.call(t, tellerToken, "", "GET", "/staff/v1/whoami", nil)
	if st != 200 || me["id"] != "teller1" || me["name"] != "Teller One" || fmt.Sprint(me["roles"]) != "[enrol deposit phone-change]" {
		t.Fatalf("whoami teller: %d %v", st, me)
	}
	ub.wantAudit(t, "staff.whoami", "staff:teller1", "", "ok")

	refusals := []struct {
		method, path, op, role, subject string
		body                            any
	}{
		{"POST", "/staff/v1/customers/" + ana.id + "/unlock", "staff.unlock", "unlock", ana.id, nil},
		{"POST", "/staff/v1/limits", "staff.limit-override", "limit-override", ana.account, map[string]any{"account": ana.account, "per_transaction": "2000000.00", "daily": "6000000.00", "reason": "house purchase"}},
		{"GET", "/staff/v1/ledger/verify", "staff.ledger-verify", "ledger-verify", "", nil},
	}
	for _, r := range refusals {
		st, out := ub.call(t, tellerToken, "", r.method, r.path, r.body)
		msg := fmt.Sprint(out["error"].(map[string]any)["message"])
		if st != 403 || errCode(out) != "staff_role_required" || !strings.Contains(msg, `"`+r.role+`"`) || strings.Contains(msg, "supervisor1") {
			t.Fatalf("teller %s %s: %d %v; want 403 staff_role_required naming %q", r.method, r.path, st, out, r.role)
		}
		ub.wantAudit(t, r.op, "staff:teller1", r.subject, "staff_role_required")
	}
	// The supervisor's own acts; the supervisor cannot enrol or deposit.
	if st, out := ub.call(t, supervisorToken, "", "POST", "/staff/v1/customers/"+ana.id+"/unlock", nil); st != 200 || out["was_locked"] != false {
		t.Fatalf("supervisor unlock: %d %v", st, out)
	}
	ub.wantAudit(t, "staff.unlock", "staff:supervisor1", ana.id, "ok")
	if st, out := ub.call(t, supervisorToken, "", "GET", "/staff/v1/ledger/verify", nil); st != 200 {
		t.Fatalf("supervisor ledger verify: %d %v", st, out)
	}
	ub.wantAudit(t, "staff.ledger-verify", "staff:supervisor1", "", "ok")
	if st, out := ub.call(t, supervisorToken, "", "POST", "/staff/v1/deposits", map[string]any{"account": ana.account, "amount": "1.00", "currency": "CNY", "idempotency_key": "sup-1"}); st != 403 || errCode(out) != "staff_role_required" {
		t.Fatalf("supervisor deposit: %d %v", st, out)
	}
	ub.wantAudit(t, "staff.deposit", "staff:supervisor1", ana.account, "staff_role_required")

	// Tokens no one holds: the old shared token's shape, a well-formed
	// stranger, none at all, and a customer's session.
	stranger, _ := mustStaffToken()
	anaSess := ub.login(t, ana, "ana-phone")
	for name, tok := range map[string]string{"old shared": "staff-token-unit", "stranger": stranger, "session": anaSess} {
		n := len(ub.auditsOf("staff.unlock"))
		st, out := ub.call(t, tok, "", "POST", "/staff/v1/customers/"+ana.id+"/unlock", nil)
		if st != 401 || errCode(out) != "unauthenticated" {
			t.Fatalf("%s token: %d %v", name, st, out)
		}
		if len(ub.auditsOf("staff.unlock")) != n+1 {
			t.Fatalf("%s token: the refusal was not recorded", name)
		}
		ev := ub.wantAudit(t, "staff.unlock", "staff:?", ana.id, "unauthenticated")
		if strings.Contains(fmt.Sprintf("%+v", ev), tok) {
			t.Fatalf("%s token: the audit record holds the token", name)
		}
	}
	// An expired credential is refused by name: the person learns why.
	st, out := ub.call(t, retiredToken, "", "POST", "/staff/v1/deposits", map[string]any{"account": ana.account, "amount": "1.00", "currency": "CNY", "idempotency_key": "ret-1"})
	if st != 401 || errCode(out) != "staff_credential_expired" || !strings.Contains(fmt.Sprint(out), "expired on 2026-01-31") {
		t.Fatalf("expired credential: %d %v", st, out)
	}
	ub.wantAudit(t, "staff.deposit", "staff:retired1", "", "staff_credential_expired")
	if st, out := ub.call(t, "", "", "GET", "/staff/v1/whoami", nil); st != 401 {
		t.Fatalf("no token: %d %v", st, out)
	}
	ub.wantAudit(t, "staff.whoami", "staff:?", "", "unauthenticated")
	ub.remember(stranger)
}

// TestUnitStaffUnlock: a locked login's message says until when in China
// time and UTC and that a teller can lift it; the supervisor's unlock lets
// the customer log in at once, and the record says what was lifted.
func TestUnitStaffUnlock(t *testing.T) {
	// No captcha: this test is about the lock and who lifts it.
	ub := newUnitBankWith(t, func(c *banking.Config) { c.CaptchaAfter = -1 })
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	ub.lockOut(t, ana)
	before := time.Now()
	st, out := ub.loginTry(t, ana.login, password, "ana-phone")
	if st != 429 || errCode(out) != "temporarily_locked" {
		t.Fatalf("locked login: %d %v", st, out)
	}
	msg := out["error"].(map[string]any)["message"].(string)
	// The lock is 15 minutes from the fifth failure: within a minute of now+15m.
	var found bool
	for d := -time.Minute; d <= time.Minute; d += time.Minute {
		until := before.Add(15*time.Minute + d)
		// The bank's customers read Chinese by default (no Accept-Language).
		if strings.Contains(msg, "至 "+l10n.Clock(until, l10n.Chinese)) {
			found = true
		}
	}
	if !found || !strings.Contains(msg, "柜员核实身份后解除锁定") {
		t.Fatalf("lock message %q: want the time in China and UTC and who can lift it", msg)
	}

	if st, out := ub.call(t, supervisorToken, "", "POST", "/staff/v1/customers/"+ana.id+"/unlock", nil); st != 200 || out["was_locked"] != true || out["failures"] != float64(5) {
		t.Fatalf("unlock: %d %v", st, out)
	}
	ev := ub.wantAudit(t, "staff.unlock", "staff:supervisor1", ana.id, "ok")
	if !strings.Contains(ev.Detail, "was_locked=true failures=5 locked_until=") {
		t.Fatalf("unlock detail %q", ev.Detail)
	}
	ub.login(t, ana, "ana-phone")

	// Unknown and malformed customers.
	if st, out := ub.call(t, supervisorToken, "", "POST", "/staff/v1/customers/c000000000000/unlock", nil); st != 404 {
		t.Fatalf("unknown customer: %d %v", st, out)
	}
	ub.wantAudit(t, "staff.unlock", "staff:supervisor1", "c000000000000", "not_found")
	if st, out := ub.call(t, supervisorToken, "", "POST", "/staff/v1/customers/ana.li/unlock", nil); st != 400 || errCode(out) != "invalid_request" {
		t.Fatalf("a login name for a customer id: %d %v", st, out)
	}
}

// TestUnitStaffPhoneChange: the teller states how identity was checked
// (refused when missing, too long or holding a whole ID number); the new
// number is registered, a notice without a code goes to the old and the
// new number, every open session ends, the trusted device stays trusted,
// and the next step-up code goes to the new number.
func TestUnitStaffPhoneChange(t *testing.T) {
	ub := newUnitBank(t)
	ub.lang = "en" // the assertions read the English details
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	s1 := ub.login(t, ana, "ana-phone")
	s2 := ub.login(t, ana, "ana-tablet")
	path := "/staff/v1/customers/" + ana.id + "/phone"
	const newPhone = "13900002222"

	for _, bad := range []struct{ id, why string }{
		{"", "required"},
		{"   ", "required"},
		{strings.Repeat("x", 65), "at most 64"},
		{"resident ID 11010519491231002X", "must not hold the document's number"},
		{"passport 123456789012345", "must not hold the document's number"},
		{"line\nbreak", "one line"},
	} {
		st, out := ub.call(t, tellerToken, "", "POST", path, map[string]any{"phone": newPhone, "identity_checked": bad.id})
		if st != 400 || !strings.Contains(fmt.Sprint(out), bad.why) {
			t.Fatalf("identity_checked %q: %d %v", bad.id, st, out)
		}
		ev := ub.wantAudit(t, "staff.phone-change", "staff:teller1", ana.id, "invalid_request")
		if strings.Contains(ev.Detail, "11010519491231002X") || strings.Contains(ev.Detail, "123456789012345") {
			t.Fatalf("an ID number reached the audit trail: %q", ev.Detail)
		}
	}
	if st, out := ub.call(t, tellerToken, "", "POST", path, map[string]any{"phone": "12345", "identity_checked": "resident ID card ending 002X"}); st != 400 {
		t.Fatalf("bad phone: %d %v", st, out)
	}
	if st, out := ub.call(t, tellerToken, "", "POST", path, map[string]any{"phone": ana.phone, "identity_checked": "resident ID card ending 002X"}); st != 400 || !strings.Contains(fmt.Sprint(out), "already") {
		t.Fatalf("same phone: %d %v", st, out)
	}
	if st, out := ub.call(t, supervisorToken, "", "POST", path, map[string]any{"phone": newPhone, "identity_checked": "resident ID card ending 002X"}); st != 403 || errCode(out) != "staff_role_required" {
		t.Fatalf("supervisor without phone-change: %d %v", st, out)
	}

	st, out := ub.call(t, tellerToken, "", "POST", path, map[string]any{"phone": newPhone, "identity_checked": "resident ID card ending 002X"})
	if st != 200 || out["old_phone"] != "138****1111" || out["new_phone"] != "139****2222" || out["sessions_ended"] != float64(2) ||
		fmt.Sprint(out["notified"]) != "[138****1111 139****2222]" {
		t.Fatalf("phone change: %d %v", st, out)
	}
	ev := ub.wantAudit(t, "staff.phone-change", "staff:teller1", ana.id, "ok")
	if !strings.Contains(ev.Detail, `identity_checked="resident ID card ending 002X"`) || !strings.Contains(ev.Detail, "old=138****1111 new=139****2222 sessions_ended=2") {
		t.Fatalf("phone change detail %q", ev.Detail)
	}
	if strings.Contains(ev.Detail, ana.phone) || strings.Contains(ev.Detail, newPhone) {
		t.Fatalf("a whole phone number in the audit record: %q", ev.Detail)
	}
	// A notice, not a code, on both numbers.
	for _, p := range []string{ana.phone, newPhone} {
		m, ok := ub.outbox.Last(p)
		if !ok || !strings.Contains(m.Text, "安全提醒") || !strings.Contains(m.Text, "变更为") && !strings.Contains(m.Text, "成为您网上银行的预留手机号码") {
			t.Fatalf("notice to %s: %+v %v", p, m, ok)
		}
		if _, ok := ub.outbox.LastCode(p); ok {
			t.Fatalf("the notice to %s holds a code: %q", p, m.Text)
		}
	}
	// Every session ended.
	for dev, s := range map[string]string{"ana-phone": s1, "ana-tablet": s2} {
		if st, out := ub.call(t, s, dev, "GET", "/v1/me", nil); st != 401 {
			t.Fatalf("session on %s after the phone change: %d %v", dev, st, out)
		}
	}
	// The trusted device stays trusted: no step-up from it.
	if st, out := ub.loginTry(t, ana.login, password, "ana-phone"); st != 200 || out["step_up"] != false {
		t.Fatalf("login from the trusted device: %d %v", st, out)
	}
	// A new device's step-up code goes to the new number.
	ana.phone = newPhone
	sess := ub.login(t, ana, "ana-laptop")
	if st, me := ub.call(t, sess, "ana-laptop", "GET", "/v1/me", nil); st != 200 || me["phone"] != "139****2222" {
		t.Fatalf("me after the change: %d %v", st, me)
	}
}

// TestUnitStaffLimitOverride: the supervisor sets limits above the
// customer's own ceiling with a reason (required), the customer sees and
// can use them, and the record names the reason.
func TestUnitStaffLimitOverride(t *testing.T) {
	ub := newUnitBank(t)
	ub.lang = "en" // the assertions read the English details
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	body := map[string]any{"account": ana.account, "per_transaction": "2000000.00", "daily": "6000000.00", "reason": "house purchase, contract seen"}
	noReason := map[string]any{"account": ana.account, "per_transaction": "2000000.00", "daily": "6000000.00", "reason": " "}
	if st, out := ub.call(t, supervisorToken, "", "POST", "/staff/v1/limits", noReason); st != 400 || !strings.Contains(fmt.Sprint(out), "reason is required") {
		t.Fatalf("no reason: %d %v", st, out)
	}
	ub.wantAudit(t, "staff.limit-override", "staff:supervisor1", ana.account, "invalid_request")
	if st, out := ub.call(t, supervisorToken, "", "POST", "/staff/v1/limits", body); st != 200 || out["per_transaction"] != "2000000.00" || out["daily"] != "6000000.00" {
		t.Fatalf("override: %d %v", st, out)
	}
	ev := ub.wantAudit(t, "staff.limit-override", "staff:supervisor1", ana.account, "ok")
	if !strings.Contains(ev.Detail, `reason="house purchase, contract seen"`) || !strings.Contains(ev.Detail, "per_transaction=2000000.00 daily=6000000.00") {
		t.Fatalf("override detail %q", ev.Detail)
	}
	sess := ub.login(t, ana, "ana-phone")
	st, out := ub.call(t, sess, "ana-phone", "GET", "/v1/accounts", nil)
	lim := out["accounts"].([]any)[0].(map[string]any)["limits"].(map[string]any)
	if st != 200 || lim["per_transaction"] != "2000000.00" || lim["daily"] != "6000000.00" {
		t.Fatalf("the customer's view: %d %v", st, out)
	}
	if st, out := ub.call(t, supervisorToken, "", "POST", "/staff/v1/limits", map[string]any{"account": "6299900000000000000", "per_transaction": "1.00", "daily": "1.00", "reason": "x"}); st != 404 && st != 400 {
		t.Fatalf("unknown account: %d %v", st, out)
	}
}
