package banking_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emmansun/gmsm/sm3"

	"github.com/keyward/keyward/banking"
	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/bankaudit"
	"github.com/keyward/keyward/banking/internal/captchahook"
	"github.com/keyward/keyward/banking/internal/fakekms"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/dbtest"
	"github.com/keyward/keyward/keysvc/audit"
)

// trail returns every record of the bank's audit trail.
func (ub *unitBank) trail(t *testing.T) []audit.Record {
	t.Helper()
	var out []audit.Record
	if err := bankaudit.Records(ub.db, 0, func(r audit.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// find returns the records with op, actor and result ("" matches any).
func find(recs []audit.Record, op, actor, result string) []audit.Record {
	var out []audit.Record
	for _, r := range recs {
		if r.Op == op && (actor == "" || r.Client == actor) && (result == "" || r.Result == result) {
			out = append(out, r)
		}
	}
	return out
}

// checkTrailSecrets fails the test if any stored record of the trail
// holds a password, a code, a session id (or an unkeyed SHA-256 or SM3 of
// one), the phone, ID-card or card number: the stored bytes are scanned,
// not the decoded fields.
func (ub *unitBank) checkTrailSecrets(t *testing.T, extra ...string) {
	t.Helper()
	ub.mu.Lock()
	secrets := append([]string{password, wrongPassword, "6222020200112233446"}, ub.secrets...)
	ub.mu.Unlock()
	secrets = append(append(secrets, idCards...), extra...)
	var raw [][]byte
	if err := ub.db.View(func(tx store.Tx) error {
		return tx.Bucket([]byte("bank-audit-records")).ForEach(func(_, v []byte) error {
			raw = append(raw, bytes.Clone(v))
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 {
		t.Fatal("the trail is empty")
	}
	for _, s := range secrets {
		sh := sha256.Sum256([]byte(s))
		sm := sm3.Sum([]byte(s))
		for _, form := range []string{s, hex.EncodeToString(sh[:]), hex.EncodeToString(sm[:])} {
			for _, v := range raw {
				if containsToken(string(v), form) {
					t.Errorf("an audit record holds a secret or its unkeyed hash (%d characters): %s", len(s), v)
				}
			}
		}
	}
}

// verifyTrail checkpoints the trail through the fake keysvc's bank-audit
// key and verifies it with that key's public half.
func (ub *unitBank) verifyTrail(t *testing.T) bankaudit.Report {
	t.Helper()
	if _, err := ub.bank.Trail().Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	pk, err := ub.kms.PublicKey(context.Background(), banking.KeyAudit, 0)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := bankaudit.ParsePublicKeyPEM([]byte(pk.PEM))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := bankaudit.Verify(ub.db, pub)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// loginHuman tries a login and, when the bank asks for a captcha (the
// source has failed before), solves one and tries again.
func (ub *unitBank) loginHuman(t *testing.T, login, pw, dev string) (int, map[string]any) {
	t.Helper()
	st, out := ub.loginTry(t, login, pw, dev)
	if errCode(out) == "captcha_required" {
		id, ans := fetchCaptcha(t, ub)
		st, out = ub.loginCaptcha(t, login, pw, dev, id, ans)
	}
	return st, out
}

func one(t *testing.T, recs []audit.Record, what string) audit.Record {
	t.Helper()
	if len(recs) != 1 {
		t.Fatalf("%s: %d records, want 1: %+v", what, len(recs), recs)
	}
	return recs[0]
}

// TestUnitAuditTrail (issue 18 item 3): enrolment, a failed login (an
// unknown login and a wrong password recorded alike), a login with its
// step-up, a password change, a limit change, a logout and a lock each
// appear in banking's trail with the right actor, op and result, from
// the request's source, and no record holds a secret; the trail verifies
// with the bank-audit key's checkpoint.
func TestUnitAuditTrail(t *testing.T) {
	defer captchahook.Record()()
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	ben := ub.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	recs := ub.trail(t)
	if n := len(find(recs, "staff.enrol", "staff:teller1", "ok")); n != 2 {
		t.Fatalf("%d enrolment records, want 2", n)
	}
	enrol := find(recs, "staff.enrol", "staff:teller1", "ok")[0]
	if enrol.Key != ana.id || !strings.Contains(enrol.Detail, "login=ana.li") || strings.Contains(enrol.Detail, ana.phone) {
		t.Errorf("enrolment record %+v", enrol)
	}

	// Unknown login and wrong password: the same result, told apart only
	// by the name tried.
	ub.loginTry(t, ana.login, wrongPassword, "ana-phone")
	ub.loginTry(t, "nobody.here", wrongPassword, "ana-phone")
	recs = ub.trail(t)
	wrong := one(t, find(recs, "login", "login:ana.li", ""), "wrong password")
	unknown := one(t, find(recs, "login", "login:nobody.here", ""), "unknown login")
	if wrong.Result != "login_failed" || unknown.Result != "login_failed" || wrong.Key != unknown.Key || wrong.Detail != unknown.Detail {
		t.Errorf("wrong password %+v and unknown login %+v are recorded differently", wrong, unknown)
	}
	if !strings.Contains(wrong.Detail, "source=127.0.0.1") {
		t.Errorf("no source address in %q", wrong.Detail)
	}

	// A login from a new device: login ok (step-up asked), the SMS sent,
	// the step-up (a wrong code first).
	st, out := ub.loginTry(t, ana.login, password, "ana-phone")
	if st != 200 || out["step_up"] != true {
		t.Fatalf("login: %d %v", st, out)
	}
	sess := out["session"].(string)
	code := ub.code(t, ana.phone)
	if st, _ := ub.call(t, sess, "ana-phone", "POST", "/v1/stepup", map[string]any{"code": wrongCode(code)}); st != 403 {
		t.Fatalf("wrong code: %d", st)
	}
	if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/stepup", map[string]any{"code": code, "os": "Android 14"}); st != 200 {
		t.Fatalf("step-up: %d %v", st, out)
	}
	const newPassword = "N3w-Harbour-Light-5"
	if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/password", map[string]any{"password": ub.seal(t, newPassword)}); st != 200 {
		t.Fatalf("password change: %d %v", st, out)
	}
	limits := map[string]any{"account": ana.account, "per_transaction": "800.00", "daily": "2000.00"}
	if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/limits", limits); st != 200 {
		t.Fatalf("limits: %d %v", st, out)
	}
	if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/logout", nil); st != 200 {
		t.Fatalf("logout: %d %v", st, out)
	}
	// Five wrong passwords lock Ben; the sixth attempt is refused as locked.
	for range 6 {
		ub.loginHuman(t, ben.login, wrongPassword, "ben-phone")
	}

	recs = ub.trail(t)
	cust := "customer:" + ana.id
	login := one(t, find(recs, "login", cust, "ok"), "login")
	if login.Detail != "device=ana-phone stepup=true source=127.0.0.1" {
		t.Errorf("login detail %q", login.Detail)
	}
	one(t, find(recs, "otp.send", cust, "ok"), "SMS code sent")
	one(t, find(recs, "stepup", cust, "otp_invalid"), "wrong code")
	one(t, find(recs, "stepup", cust, "ok"), "step-up")
	one(t, find(recs, "password.change", cust, "ok"), "password change")
	lim := one(t, find(recs, "limits.change", cust, "ok"), "limit change")
	if lim.Key != ana.account || !strings.Contains(lim.Detail, `per_transaction="800.00"`) {
		t.Errorf("limit record %+v", lim)
	}
	one(t, find(recs, "logout", cust, "ok"), "logout")
	if n := len(find(recs, "login", "login:ben.wu", "login_failed")); n != 5 {
		t.Errorf("%d failed logins of ben, want 5", n)
	}
	lock := one(t, find(recs, "alert.account-locked", "system", "temporarily_locked"), "lock")
	if lock.Key != "login:ben.wu" || !strings.Contains(lock.Detail, "count=5") || !strings.Contains(lock.Detail, "until=") {
		t.Errorf("lock record %+v", lock)
	}
	one(t, find(recs, "login", "login:ben.wu", "temporarily_locked"), "login while locked")

	ub.checkTrailSecrets(t, newPassword, sess)
	rep := ub.verifyTrail(t)
	if rep.Records != uint64(len(recs)) || rep.Unsigned != 0 {
		t.Errorf("verify report %+v for %d records", rep.Report, len(recs))
	}
}

// TestUnitAuditTrailCorporate: the maker's entry, the reviewer's approval
// and rejection and the authoriser's approval each appear with the
// operator as actor and the order as subject.
func TestUnitAuditTrailCorporate(t *testing.T) {
	ub := newUnitBank(t)
	admin := ub.enrol(t, enrolment{login: "acme-admin", name: "Acme Admin", phone: "13900000001", corp: "acme", role: "admin"})
	maker := ub.enrol(t, enrolment{login: "acme-maker", name: "Acme Maker", phone: "13900000002", corp: "acme", role: "maker"})
	rev := ub.enrol(t, enrolment{login: "acme-rev", name: "Acme Reviewer", phone: "13900000003", corp: "acme", role: "reviewer"})
	auth := ub.enrol(t, enrolment{login: "acme-auth", name: "Acme Authoriser", phone: "13900000004", corp: "acme", role: "authoriser", usb: true})
	ben := ub.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	ub.deposit(t, admin.account, "5000.00")
	sm, sr, sa := ub.login(t, maker, "d-m"), ub.login(t, rev, "d-r"), ub.login(t, auth, "d-a")
	enter := func(nonce string) (string, []byte) {
		ord := order(t, admin.account, ben.account, "Ben Wu", "100.00", nonce)
		st, out := ub.call(t, sm, "d-m", "POST", "/v1/corporate/orders", map[string]any{"order": ord})
		if st != 201 {
			t.Fatalf("entry: %d %v", st, out)
		}
		return out["id"].(string), ord
	}
	id1, ord1 := enter("audit-1")
	id2, _ := enter("audit-2")
	for _, r := range []struct {
		id      string
		approve bool
	}{{id1, true}, {id2, false}} {
		if st, out := ub.call(t, sr, "d-r", "POST", "/v1/corporate/orders/"+r.id+"/review", map[string]any{"approve": r.approve}); st != 200 {
			t.Fatalf("review: %d %v", st, out)
		}
	}
	// The maker may not review: refused, and recorded as refused.
	if st, _ := ub.call(t, sm, "d-m", "POST", "/v1/corporate/orders/"+id1+"/review", map[string]any{"approve": true}); st != 403 {
		t.Fatalf("the maker reviewed: %d", st)
	}
	if st, out := ub.call(t, sa, "d-a", "POST", "/v1/corporate/orders/"+id1+"/authorise", map[string]any{"approve": true, "signature": usbSign(t, auth, ord1)}); st != 200 || out["state"] != "executed" {
		t.Fatalf("authorise: %d %v", st, out)
	}
	recs := ub.trail(t)
	for _, w := range []struct{ op, actor, subject, result, detail string }{
		{"corporate.enter", "customer:" + maker.id, id1, "ok", ""},
		{"corporate.enter", "customer:" + maker.id, id2, "ok", ""},
		{"corporate.review", "customer:" + rev.id, id1, "ok", "decision=approve"},
		{"corporate.review", "customer:" + rev.id, id2, "ok", "decision=reject"},
		{"corporate.review", "customer:" + maker.id, id1, "forbidden", "decision=approve"},
		{"corporate.authorise", "customer:" + auth.id, id1, "ok", "decision=approve"},
	} {
		n := 0
		for _, r := range find(recs, w.op, w.actor, w.result) {
			if r.Key == w.subject && strings.HasPrefix(r.Detail, w.detail) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d records of %+v", n, w)
		}
	}
	ub.checkTrailSecrets(t, sm, sr, sa)
	ub.verifyTrail(t)
}

// TestUnitAuditTrailTwoNodes: two banks on one store (two PostgreSQL
// stores on one database under KEYWARD_BANKING_STORE=postgres) record
// into one chain: logins on both nodes at once, one verification, every
// record once.
func TestUnitAuditTrailTwoNodes(t *testing.T) {
	a, b := newUnitNodes(t)
	ana := a.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	ben := b.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	a.login(t, ana, "dev-ana") // login, SMS, step-up: the device becomes known
	b.login(t, ben, "dev-ben")
	var wg sync.WaitGroup
	// One goroutine per node: the guard counts an attempt in flight as a
	// failure until it succeeds, and three at once from one address would
	// ask for a captcha.
	for _, n := range []*unitBank{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 6 {
				login, dev := ana.login, "dev-ana"
				if i%2 == 1 {
					login, dev = ben.login, "dev-ben"
				}
				if st, out := n.loginTry(t, login, password, dev); st != 200 {
					t.Errorf("login %s: %d %v", login, st, out)
				}
			}
		}()
	}
	wg.Wait()
	a.loginTry(t, ana.login, wrongPassword, "dev-ana")
	b.loginTry(t, ben.login, wrongPassword, "dev-ben")
	if _, err := b.bank.Trail().Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.login(t, ana, "dev-ana")
	rep := a.verifyTrail(t) // a's checkpoint follows b's
	recs := a.trail(t)
	if len(recs) != 2+6+12+2+1 || rep.Records != uint64(len(recs)) || rep.Checkpoints != 2 {
		t.Fatalf("%d records, report %+v", len(recs), rep.Report)
	}
	if ok, failed := len(find(recs, "login", "", "ok")), len(find(recs, "login", "", "login_failed")); ok != 15 || failed != 2 {
		t.Errorf("%d logins and %d failures recorded, want 15 and 2", ok, failed)
	}
}

// trailBreaker is a store whose audit-trail appends fail while broken is
// set (its Batch transactions hide the trail's head bucket); everything
// else works.
type trailBreaker struct {
	store.DB
	broken atomic.Bool
}

func (d *trailBreaker) Batch(fn func(store.Tx) error) error {
	return d.DB.Batch(func(tx store.Tx) error { return fn(breakTx{tx, d.broken.Load()}) })
}

type breakTx struct {
	store.Tx
	broken bool
}

func (t breakTx) Bucket(name []byte) store.Bucket {
	if t.broken && string(name) == "bank-audit-meta" {
		return nil
	}
	return t.Tx.Bucket(name)
}

// TestUnitAuditTrailFailureLogged: when the trail cannot be written the
// request still gets its answer, the event is logged at ERROR with every
// field, and Bank.TrailHealthy and TrailFailures say so until the trail
// takes records again.
func TestUnitAuditTrailFailureLogged(t *testing.T) {
	db := &trailBreaker{DB: dbtest.New(t).Open()}
	ub := &unitBank{kms: fakekms.New(kmsClient, "usb-", "cust-"), outbox: otp.NewDevOutbox(), log: &syncBuffer{}}
	provision(t, ub.kms)
	ub.start(t, db)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	if ub.bank.TrailHealthy() != nil {
		t.Fatal(ub.bank.TrailHealthy())
	}
	db.broken.Store(true)
	if st, out := ub.loginTry(t, ana.login, wrongPassword, "ana-phone"); st != 401 || errCode(out) != "login_failed" {
		t.Fatalf("a login while the trail fails: %d %v", st, out)
	}
	if ub.bank.TrailHealthy() == nil || ub.bank.TrailFailures() != 1 {
		t.Fatalf("healthy %v, failures %d", ub.bank.TrailHealthy(), ub.bank.TrailFailures())
	}
	ub.wantMetric(t, 1, "keyward_bank_audit_trail_failures_total")
	ub.wantMetric(t, 0, "keyward_bank_audit_trail_healthy")
	logs := ub.log.String()
	i := strings.Index(logs, "audit record NOT written")
	if i < 0 {
		t.Fatalf("no ERROR for the lost record:\n%s", logs)
	}
	line := logs[strings.LastIndex(logs[:i], "\n")+1:]
	line = line[:strings.Index(line, "\n")]
	for _, want := range []string{"level=ERROR", "op=login", "actor=login:ana.li", "result=login_failed", "source=127.0.0.1", "err="} {
		if !strings.Contains(line, want) {
			t.Errorf("the ERROR line lacks %q: %s", want, line)
		}
	}
	db.broken.Store(false)
	ub.loginTry(t, ana.login, wrongPassword, "ana-phone")
	if ub.bank.TrailHealthy() != nil || ub.bank.TrailFailures() != 1 {
		t.Fatalf("after the trail recovered: healthy %v, failures %d", ub.bank.TrailHealthy(), ub.bank.TrailFailures())
	}
	ub.wantMetric(t, 1, "keyward_bank_audit_trail_healthy")
}
