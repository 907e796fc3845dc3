package banking_test

// The customer functions of issue 18 item 5 through the HTTP API:
// history with paging, saved payees, devices, the anti-phishing message.

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/auth/device"
	"github.com/keyward/keyward/banking/internal/luhn"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/token/txformat"
)

// audited reports whether the bank's log holds an audit record of op by
// actor with result (Bank.audit logs every record it makes).
func (ub *unitBank) audited(op, actor, result string) bool {
	re := regexp.MustCompile(`msg=audit op=` + regexp.QuoteMeta(op) + ` actor=` + regexp.QuoteMeta(actor) + ` .*result=` + regexp.QuoteMeta(result) + `( |$)`)
	for _, line := range strings.Split(ub.log.String(), "\n") {
		if re.MatchString(line) {
			return true
		}
	}
	return false
}

// stepUpNow asks for an SMS code and steps the session up again.
func (ub *unitBank) stepUpNow(t *testing.T, c customer, sess, dev string) {
	t.Helper()
	if st, out := ub.call(t, sess, dev, "POST", "/v1/stepup/request", nil); st != 200 {
		t.Fatalf("step-up request: %d %v", st, out)
	}
	if st, out := ub.call(t, sess, dev, "POST", "/v1/stepup", map[string]any{"code": ub.code(t, c.phone)}); st != 200 {
		t.Fatalf("step-up: %d %v", st, out)
	}
}

// history is one page of GET /v1/accounts/{account}/transactions.
type history struct {
	status  int
	code    string
	entries []map[string]any
	next    string
}

func (ub *unitBank) history(t *testing.T, sess, dev, account, query string) history {
	t.Helper()
	st, out := ub.call(t, sess, dev, "GET", "/v1/accounts/"+account+"/transactions"+query, nil)
	h := history{status: st, code: errCode(out)}
	if st == 200 {
		if out["account"] != account {
			t.Fatalf("history of %s answered for %v", account, out["account"])
		}
		for _, e := range out["entries"].([]any) {
			h.entries = append(h.entries, e.(map[string]any))
		}
		h.next, _ = out["next"].(string)
	}
	return h
}

// TestUnitHistoryPagingWhileNewPostingsArrive: walking an account's
// history with limit=7 returns every entry that existed when the walk
// began exactly once, newest first, each balance following from the
// one before it, although deposits keep arriving during the walk; the
// last page has no next.
func TestUnitHistoryPagingWhileNewPostingsArrive(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	const n = 40
	for i := 1; i <= n; i++ {
		ub.deposit(t, ana.account, fmt.Sprintf("%d.%02d", i, i))
	}
	sess := ub.login(t, ana, "ana-phone")

	first := ub.history(t, sess, "ana-phone", ana.account, "")
	if first.status != 200 || len(first.entries) != 20 || first.next == "" {
		t.Fatalf("default page: %d %s, %d entries, next %q; want 20 and a next", first.status, first.code, len(first.entries), first.next)
	}
	seen := map[string]int{}
	var walked []map[string]any
	before, pages := "", 0
	for extra := 0; ; extra++ {
		// A new posting lands before each page is read.
		ub.deposit(t, ana.account, fmt.Sprintf("%d.00", 1000+extra))
		q := "?limit=7"
		if before != "" {
			q += "&before=" + url.QueryEscape(before)
		}
		h := ub.history(t, sess, "ana-phone", ana.account, q)
		if h.status != 200 || len(h.entries) == 0 || len(h.entries) > 7 {
			t.Fatalf("page %d: %d %s, %d entries", pages, h.status, h.code, len(h.entries))
		}
		pages++
		for _, e := range h.entries {
			seen[e["transfer_id"].(string)]++
			walked = append(walked, e)
		}
		if before = h.next; before == "" {
			break
		}
		if pages > 20 {
			t.Fatal("the walk does not end")
		}
	}
	// The walk began after the first extra deposit: n deposits, that
	// one, and nothing that arrived later.
	if len(walked) != n+1 || pages != 6 {
		t.Fatalf("walked %d entries in %d pages; want %d in 6", len(walked), pages, n+1)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("%s seen %d times", id, k)
		}
	}
	if got := walked[0]["amount"]; got != "1000.00" {
		t.Errorf("the walk's newest entry is %v, want the deposit of 1000.00 made just before it", got)
	}
	if got := walked[len(walked)-1]; got["amount"] != "1.01" || got["balance_after"] != "1.01" || got["kind"] != "deposit" || got["counterparty"] != nil {
		t.Errorf("oldest entry %v, want the first deposit of 1.01 without a counterparty", got)
	}
	for i := 0; i+1 < len(walked); i++ { // balance_after(newer) = balance_after(older) + amount(newer)
		var nb, na, ob float64
		fmt.Sscan(walked[i]["balance_after"].(string), &nb)
		fmt.Sscan(walked[i]["amount"].(string), &na)
		fmt.Sscan(walked[i+1]["balance_after"].(string), &ob)
		if d := nb - na - ob; d > 0.001 || d < -0.001 {
			t.Fatalf("entry %d: balance %v after %v does not follow from %v", i, nb, na, ob)
		}
	}
}

// TestUnitHistoryChineseAndOwnership: a transfer with a Chinese purpose
// between customers with Chinese names shows on both statements with
// the purpose and the other side's name intact and the other side's
// account masked; another customer's account and an unknown one are the
// same 404; bad limits and cursors are 400; a company's account is seen
// by each of its operators.
func TestUnitHistoryChineseAndOwnership(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "李安娜", phone: "13800001111", usb: true})
	ben := ub.enrol(t, enrolment{login: "ben.wu", name: "吴本", phone: "13800002222"})
	ub.deposit(t, ana.account, "500.00")
	sess := ub.login(t, ana, "ana-phone")
	const purpose = "十二月房租 · 含水电费"
	ord, err := txformat.CanonicalJSON(txformat.Transfer{PayerAccount: ana.account, PayeeAccount: ben.account, PayeeName: "吴本", PayeeBank: "Keyward Bank",
		Amount: "123.45", Currency: "CNY", Purpose: purpose}, "2026-12-07T10:00:00+08:00", "history-zh-000001")
	if err != nil {
		t.Fatal(err)
	}
	st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/usb", signed(t, ana, ord))
	if st != 200 {
		t.Fatalf("transfer: %d %v", st, out)
	}
	tid := out["transfer_id"].(string)

	h := ub.history(t, sess, "ana-phone", ana.account, "")
	if h.status != 200 || len(h.entries) != 2 || h.next != "" {
		t.Fatalf("ana's history: %+v", h)
	}
	e := h.entries[0]
	cp, _ := e["counterparty"].(map[string]any)
	maskedBen := ben.account[:4] + " **** **** " + ben.account[len(ben.account)-4:]
	if e["transfer_id"] != tid || e["amount"] != "-123.45" || e["balance_after"] != "376.55" || e["memo"] != purpose || e["kind"] != "transfer" ||
		e["currency"] != "CNY" || cp["name"] != "吴本" || cp["account"] != maskedBen {
		t.Fatalf("ana's transfer entry: %v (want memo %q, counterparty 吴本 %s)", e, purpose, maskedBen)
	}
	if ts, err := time.Parse(time.RFC3339Nano, e["time"].(string)); err != nil || time.Since(ts) > time.Minute {
		t.Fatalf("entry time %v: %v", e["time"], err)
	}
	bsess := ub.login(t, ben, "ben-phone")
	bh := ub.history(t, bsess, "ben-phone", ben.account, "")
	if bh.status != 200 || len(bh.entries) != 1 || bh.entries[0]["memo"] != purpose || bh.entries[0]["amount"] != "123.45" ||
		bh.entries[0]["counterparty"].(map[string]any)["name"] != "李安娜" {
		t.Fatalf("ben's history: %+v", bh)
	}

	// Ownership: Ben asks for Ana's account, and for an account that does
	// not exist: the same 404.
	body := "629999000000000000"
	nobody := body + string(luhn.CheckDigit(body))
	for _, acct := range []string{ana.account, nobody} {
		if h := ub.history(t, bsess, "ben-phone", acct, ""); h.status != 404 || h.code != "not_found" {
			t.Errorf("ben reads %s: %d %s, want 404 not_found", acct, h.status, h.code)
		}
	}
	// Limits and cursors.
	for _, q := range []string{"?limit=0", "?limit=101", "?limit=x", "?limit=-1", "?before=%21%21", "?before=" + url.QueryEscape("bm90LWEtY3Vyc29y")} {
		if h := ub.history(t, sess, "ana-phone", ana.account, q); h.status != 400 || h.code != "invalid_request" {
			t.Errorf("%s: %d %s, want 400 invalid_request", q, h.status, h.code)
		}
	}
	if h := ub.history(t, sess, "ana-phone", ana.account, "?limit=100"); h.status != 200 || len(h.entries) != 2 {
		t.Errorf("limit=100: %+v", h)
	}
	// A cursor of Ana's account is refused on Ben's, and one naming a
	// posting that is not Ben's.
	page := ub.history(t, sess, "ana-phone", ana.account, "?limit=1")
	if page.next == "" {
		t.Fatal("ana's first page of one has no next")
	}
	if h := ub.history(t, bsess, "ben-phone", ben.account, "?before="+url.QueryEscape(page.next)); h.status != 400 {
		t.Errorf("ana's cursor on ben's account: %d %s, want 400", h.status, h.code)
	}
	if h := ub.history(t, sess, "ana-phone", ana.account, "?before="+url.QueryEscape(page.next)); h.status != 200 || len(h.entries) != 1 || h.entries[0]["amount"] != "500.00" {
		t.Errorf("ana's second page: %+v", h)
	}

	// A company's account: its admin and its maker both read it; Ana
	// does not.
	adm := ub.enrol(t, enrolment{login: "acme.adm", name: "Acme Admin", phone: "13800003333", corp: "acme", role: "admin"})
	mk := ub.enrol(t, enrolment{login: "acme.mk", name: "Acme Maker", phone: "13800004444", corp: "acme", role: "maker"})
	for _, c := range []customer{adm, mk} {
		s := ub.login(t, c, c.login+"-pc")
		if h := ub.history(t, s, c.login+"-pc", adm.account, ""); h.status != 200 {
			t.Errorf("%s reads the company's account: %d %s", c.login, h.status, h.code)
		}
	}
	if h := ub.history(t, sess, "ana-phone", adm.account, ""); h.status != 404 {
		t.Errorf("ana reads acme's account: %d", h.status)
	}
}

// TestUnitPayees: adding a payee needs a recent step-up (403
// step_up_required, then 201 after one); payees keep Chinese text, are
// checked (Luhn) and unique per account; removing needs no step-up and
// only the owner can; every change, refusals included, is audited.
func TestUnitPayees(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	ben := ub.enrol(t, enrolment{login: "ben.wu", name: "吴本", phone: "13800002222"})
	sess := ub.login(t, ana, "ana-phone") // a new device: stepped up just now
	ub.advance(6 * time.Minute)           // older than StepUpFor (5 min)

	add := map[string]any{"account": ben.account, "name": "吴本", "bank": "Keyward Bank", "nickname": "表哥"}
	if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/payees", add); st != 403 || errCode(out) != "step_up_required" {
		t.Fatalf("add with an old step-up: %d %v, want 403 step_up_required", st, out)
	}
	if !ub.audited("payee.add", "customer:"+ana.id, "step_up_required") {
		t.Error("the refused add is not in the audit trail")
	}
	ub.stepUpNow(t, ana, sess, "ana-phone")
	st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/payees", add)
	if st != 201 || out["name"] != "吴本" || out["nickname"] != "表哥" || out["account"] != ben.account || out["id"] == nil {
		t.Fatalf("add after the step-up: %d %v", st, out)
	}
	id := out["id"].(string)
	if !ub.audited("payee.add", "customer:"+ana.id, "ok") {
		t.Error("the add is not in the audit trail")
	}
	// The payee's records name the account masked (a teller's deposit to
	// it, earlier, names it in full: that is the deposit's subject).
	for _, line := range strings.Split(ub.log.String(), "\n") {
		if strings.Contains(line, "payee") && strings.Contains(line, ben.account) {
			t.Errorf("a payee log line holds the payee's full account number: %s", line)
		}
	}
	for name, body := range map[string]map[string]any{
		"same account":  {"account": ben.account, "name": "吴本"},
		"check digit":   {"account": ben.account[:18] + string('0'+(ben.account[18]-'0'+1)%10), "name": "吴本"},
		"no name":       {"account": ana.account, "name": ""},
		"unknown field": {"account": ana.account, "name": "Ana", "iban": "x"},
		"id given":      {"account": ana.account, "name": "Ana", "id": "p0000000000000000"},
	} {
		want, code := 400, "invalid_request"
		if name == "same account" {
			want, code = 409, "exists"
		}
		if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/payees", body); st != want || errCode(out) != code {
			t.Errorf("%s: %d %v, want %d %s", name, st, out, want, code)
		}
	}
	st, out = ub.call(t, sess, "ana-phone", "GET", "/v1/payees", nil)
	if ps, _ := out["payees"].([]any); st != 200 || len(ps) != 1 || ps[0].(map[string]any)["id"] != id {
		t.Fatalf("list: %d %v", st, out)
	}
	// Ben cannot see or remove Ana's payee.
	bsess := ub.login(t, ben, "ben-phone")
	if st, out := ub.call(t, bsess, "ben-phone", "GET", "/v1/payees", nil); st != 200 || len(out["payees"].([]any)) != 0 {
		t.Fatalf("ben's list: %d %v", st, out)
	}
	if st, out := ub.call(t, bsess, "ben-phone", "DELETE", "/v1/payees/"+id, nil); st != 404 {
		t.Fatalf("ben removes ana's payee: %d %v, want 404", st, out)
	}
	ub.advance(6 * time.Minute) // removing needs no fresh step-up
	if st, out := ub.call(t, sess, "ana-phone", "DELETE", "/v1/payees/"+id, nil); st != 200 || out["removed"] != id {
		t.Fatalf("remove: %d %v", st, out)
	}
	if !ub.audited("payee.remove", "customer:"+ana.id, "ok") || !ub.audited("payee.remove", "customer:"+ben.id, "not_found") {
		t.Error("the removals are not in the audit trail")
	}
	if st, out := ub.call(t, sess, "ana-phone", "GET", "/v1/payees", nil); st != 200 || len(out["payees"].([]any)) != 0 {
		t.Fatalf("list after remove: %d %v", st, out)
	}
}

// TestUnitAntiPhishing: the message changes after a recent step-up, shows
// in /v1/me and at the next login; 20 Chinese characters are allowed, 21
// are not, nor control or formatting characters, nor an empty message;
// the message is never logged.
func TestUnitAntiPhishing(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	sess := ub.login(t, ana, "ana-phone")
	twenty := strings.Repeat("海", 19) + "豚"
	for _, bad := range []string{"", "   ", twenty + "鱼", "line\nbreak", "tab\there", "a\u202eb", "zero\u200bwidth", "<b>", "a\x00b"} {
		if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/anti-phishing", map[string]any{"message": bad}); st != 400 || errCode(out) != "invalid_request" {
			t.Errorf("message %q: %d %v, want 400 invalid_request", bad, st, out)
		}
	}
	if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/anti-phishing", map[string]any{"message": twenty}); st != 200 {
		t.Fatalf("20 characters: %d %v", st, out)
	}
	const msg = "绿茶 🐬 Tea"
	if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/anti-phishing", map[string]any{"message": msg}); st != 200 {
		t.Fatalf("change: %d %v", st, out)
	}
	if st, out := ub.call(t, sess, "ana-phone", "GET", "/v1/me", nil); st != 200 || out["anti_phishing"] != msg {
		t.Fatalf("/v1/me: %d %v", st, out)
	}
	if st, out := ub.loginTry(t, ana.login, password, "ana-phone"); st != 200 || out["anti_phishing"] != msg {
		t.Fatalf("next login: %d %v", st, out)
	}
	ub.advance(6 * time.Minute)
	if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/anti-phishing", map[string]any{"message": "again"}); st != 403 || errCode(out) != "step_up_required" {
		t.Fatalf("change with an old step-up: %d %v", st, out)
	}
	if !ub.audited("antiphishing.change", "customer:"+ana.id, "ok") || !ub.audited("antiphishing.change", "customer:"+ana.id, "step_up_required") {
		t.Error("changes are not in the audit trail")
	}
	if logs := ub.log.String(); strings.Contains(logs, msg) || strings.Contains(logs, twenty) {
		t.Error("the anti-phishing message is in the log")
	}
}

// TestUnitDevicesRevokeAcrossNodes: two banking nodes on one store. Ana
// is logged in on her phone (node A) and laptop (node B); the list shows
// both, with the names given at login and the asking device marked;
// forgetting the phone on B ends the phone's session on A at once and
// not the laptop's; the phone's next login asks for an SMS code again;
// Ben cannot forget Ana's device.
func TestUnitDevicesRevokeAcrossNodes(t *testing.T) {
	a, b := newUnitNodes(t)
	ana := a.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	ben := a.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	namedLogin := func(ub *unitBank, dev, name string) string {
		t.Helper()
		st, out := ub.call(t, "", "", "POST", "/v1/login", map[string]any{"login": ana.login, "password": ub.seal(t, password), "device": dev, "os": "Android 14", "device_name": name})
		if st != 200 || out["step_up"] != true {
			t.Fatalf("login on %s: %d %v", dev, st, out)
		}
		sess := out["session"].(string)
		ub.remember(sess)
		if st, out := ub.call(t, sess, dev, "POST", "/v1/stepup", map[string]any{"code": ub.code(t, ana.phone), "os": "Android 14"}); st != 200 {
			t.Fatalf("step-up on %s: %d %v", dev, st, out)
		}
		return sess
	}
	phone := namedLogin(a, "ana-phone", "小王的手机")
	laptop := namedLogin(b, "ana-laptop", "办公室电脑")

	st, out := b.call(t, laptop, "ana-laptop", "GET", "/v1/devices", nil)
	ds, _ := out["devices"].([]any)
	if st != 200 || len(ds) != 2 {
		t.Fatalf("devices: %d %v", st, out)
	}
	byName := map[string]map[string]any{}
	for _, d := range ds {
		m := d.(map[string]any)
		byName[m["name"].(string)] = m
	}
	ph, lp := byName["小王的手机"], byName["办公室电脑"]
	if ph == nil || lp == nil || ph["ref"] != device.RefOf("ana-phone") || ph["current"] != false || lp["current"] != true || ph["os"] != "Android 14" {
		t.Fatalf("devices as the laptop sees them: %v", ds)
	}
	// Ben cannot forget it (and his sessions stay).
	bsess := a.login(t, ben, "ben-phone")
	if st, out := a.call(t, bsess, "ben-phone", "DELETE", "/v1/devices/"+ph["ref"].(string), nil); st != 404 {
		t.Fatalf("ben forgets ana's phone: %d %v, want 404", st, out)
	}
	if st, _ := a.call(t, phone, "ana-phone", "GET", "/v1/accounts", nil); st != 200 {
		t.Fatalf("ana's phone after ben's attempt: %d", st)
	}
	// The phone's session is in use on A while the laptop forgets it on B.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				a.call(t, phone, "ana-phone", "GET", "/v1/accounts", nil)
			}
		}
	}()
	st, out = b.call(t, laptop, "ana-laptop", "DELETE", "/v1/devices/"+ph["ref"].(string), nil)
	close(stop)
	wg.Wait()
	if st != 200 || out["sessions_ended"] != float64(1) {
		t.Fatalf("forget the phone: %d %v", st, out)
	}
	if st, out := a.call(t, phone, "ana-phone", "GET", "/v1/accounts", nil); st != 401 {
		t.Fatalf("the forgotten phone's session on A: %d %v, want 401", st, out)
	}
	if st, out := b.call(t, phone, "ana-phone", "GET", "/v1/accounts", nil); st != 401 {
		t.Fatalf("the forgotten phone's session on B: %d %v, want 401", st, out)
	}
	for _, n := range []*unitBank{a, b} {
		if st, out := n.call(t, laptop, "ana-laptop", "GET", "/v1/accounts", nil); st != 200 {
			t.Fatalf("the laptop's session: %d %v", st, out)
		}
	}
	if !a.audited("device.forget", "customer:"+ana.id, "ok") || !a.audited("device.forget", "customer:"+ben.id, "not_found") {
		t.Error("device.forget not audited")
	}
	if st, out := b.call(t, laptop, "ana-laptop", "GET", "/v1/devices", nil); st != 200 || len(out["devices"].([]any)) != 1 {
		t.Fatalf("devices after forgetting the phone: %d %v", st, out)
	}
	if st, out := a.loginTry(t, ana.login, password, "ana-phone"); st != 200 || out["step_up"] != true || out["step_up_reason"] != "new-device" {
		t.Fatalf("the phone's next login: %d %v, want a new-device step-up", st, out)
	}
	for _, bad := range []string{"zz", "0123456789abcdeg", strings.Repeat("a", 40)} {
		if st, out := b.call(t, laptop, "ana-laptop", "DELETE", "/v1/devices/"+bad, nil); st != 404 {
			t.Errorf("forget %q: %d %v, want 404", bad, st, out)
		}
	}
	// A bad device name is refused at login.
	if st, out := a.call(t, "", "", "POST", "/v1/login", map[string]any{"login": ana.login, "password": a.seal(t, password), "device": "x-1", "os": "iOS 17",
		"device_name": strings.Repeat("机", 33)}); st != 400 {
		t.Fatalf("33-character device name: %d %v", st, out)
	}
}

// TestUnitAccountsListsEveryAccount: GET /v1/accounts lists every account
// the customer owns with its balance (a second account opened later
// included, none of another customer's), and each one's history is the
// customer's to read.
func TestUnitAccountsListsEveryAccount(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	ub.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	second, err := ub.bank.Ledger.OpenAccount(context.Background(), ledger.OpenAccountRequest{Owner: ana.id, Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	ub.deposit(t, ana.account, "10.00")
	ub.deposit(t, second.ID, "1234567.80")
	sess := ub.login(t, ana, "ana-phone")
	st, out := ub.call(t, sess, "ana-phone", "GET", "/v1/accounts", nil)
	got := map[string]string{}
	for _, a := range out["accounts"].([]any) {
		m := a.(map[string]any)
		got[m["id"].(string)] = m["balance"].(string)
	}
	if st != 200 || len(got) != 2 || got[ana.account] != "10.00" || got[second.ID] != "1234567.80" {
		t.Fatalf("accounts: %d %v", st, out)
	}
	if h := ub.history(t, sess, "ana-phone", second.ID, ""); h.status != 200 || len(h.entries) != 1 || h.entries[0]["balance_after"] != "1234567.80" {
		t.Fatalf("second account's history: %+v", h)
	}
}
