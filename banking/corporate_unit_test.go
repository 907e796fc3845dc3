package banking_test

import (
	"testing"
	"time"
)

// actor is one person trying a route: a logged-in customer and its device.
type actor struct {
	c        customer
	sess, dv string
}

// corpBank is a bank with Acme's four operators (each with a USB key and a
// cloud key), Zeta's four, a retail customer Carol (USB and cloud) and a
// payee Ben, everyone logged in; Acme's account holds 50000.00.
func corpBank(t *testing.T) (ub *unitBank, as map[string]actor, acme, ben customer) {
	ub = newUnitBank(t)
	op := func(login, name, phone, corp, role string) customer {
		return ub.enrol(t, enrolment{login: login, name: name, phone: phone, usb: true, cloud: true, corp: corp, role: role})
	}
	acme = op("acme-admin", "Acme Admin", "13900000001", "acme", "admin")
	ben = ub.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	ub.deposit(t, acme.account, "50000.00")
	people := map[string]customer{
		"admin":            acme,
		"maker":            op("acme-maker", "Acme Maker", "13900000002", "acme", "maker"),
		"reviewer":         op("acme-rev", "Acme Reviewer", "13900000003", "acme", "reviewer"),
		"authoriser":       op("acme-auth", "Acme Authoriser", "13900000004", "acme", "authoriser"),
		"retail":           ub.enrol(t, enrolment{login: "carol", name: "Carol Wu", phone: "13800003333", usb: true, cloud: true}),
		"other admin":      op("zeta-admin", "Zeta Admin", "13700000001", "zeta", "admin"),
		"other maker":      op("zeta-maker", "Zeta Maker", "13700000002", "zeta", "maker"),
		"other reviewer":   op("zeta-rev", "Zeta Reviewer", "13700000003", "zeta", "reviewer"),
		"other authoriser": op("zeta-auth", "Zeta Authoriser", "13700000004", "zeta", "authoriser"),
	}
	as = map[string]actor{}
	for who, c := range people {
		dv := "dev-" + c.login
		as[who] = actor{c: c, sess: ub.login(t, c, dv), dv: dv}
	}
	return ub, as, acme, ben
}

// TestUnitCorpEveryRoleEveryRoute (R-AUTH-10): a corporate account's money
// moves only by entry (maker), review (reviewer) and authorisation
// (authoriser); every role is tried on every money-moving and
// limit-changing route, the permitted one last: the direct transfer routes
// refuse every corporate operator, admin included, with
// maker_checker_required; only the maker enters, only the reviewer
// reviews, only the authoriser authorises; another company's operators get
// not_found; only the corporate admin changes the limits.
func TestUnitCorpEveryRoleEveryRoute(t *testing.T) {
	ub, as, acme, ben := corpBank(t)
	corpAcct := acme.account
	direct := func(nonce string) []byte { return order(t, corpAcct, ben.account, "Ben Wu", "1000.00", nonce) }
	flow := order(t, corpAcct, ben.account, "Ben Wu", "2000.00", "corp-flow-1")
	var flowID string
	orderPath := func(step string) func() string {
		return func() string { return "/v1/corporate/orders/" + flowID + "/" + step }
	}
	type attempt struct {
		who  string
		st   int
		code string // "" for success
	}
	everyOperator := []attempt{{"admin", 403, "maker_checker_required"}, {"maker", 403, "maker_checker_required"},
		{"reviewer", 403, "maker_checker_required"}, {"authoriser", 403, "maker_checker_required"},
		{"other authoriser", 403, "maker_checker_required"}, {"other admin", 403, "maker_checker_required"},
		{"retail", 422, "order_mismatch"}}
	routes := []struct {
		name string
		path func() string
		body func(a actor) map[string]any
		want []attempt // in this order; the permitted one last
	}{
		{"POST /v1/transfers/usb from the corporate account", func() string { return "/v1/transfers/usb" },
			func(a actor) map[string]any { return signed(t, a.c, direct("usb-"+a.c.login)) }, everyOperator},
		{"POST /v1/transfers/cloud from the corporate account", func() string { return "/v1/transfers/cloud" },
			func(a actor) map[string]any { return map[string]any{"order": direct("cloud-" + a.c.login)} }, everyOperator},
		{"POST /v1/limits on the corporate account", func() string { return "/v1/limits" },
			func(actor) map[string]any {
				return map[string]any{"account": corpAcct, "per_transaction": "900000.00", "daily": "900000.00"}
			},
			[]attempt{{"maker", 403, "forbidden"}, {"reviewer", 403, "forbidden"}, {"authoriser", 403, "forbidden"},
				{"retail", 404, "not_found"}, {"other admin", 404, "not_found"}, {"other maker", 403, "forbidden"},
				{"admin", 200, ""}}},
		{"POST /v1/corporate/orders (entry)", func() string { return "/v1/corporate/orders" },
			func(actor) map[string]any { return map[string]any{"order": flow} },
			[]attempt{{"admin", 403, "forbidden"}, {"reviewer", 403, "forbidden"}, {"authoriser", 403, "forbidden"},
				{"retail", 403, "forbidden"}, {"other maker", 422, "order_mismatch"}, {"maker", 201, ""}}},
		{"POST /v1/corporate/orders/{id}/authorise before the review", orderPath("authorise"),
			func(a actor) map[string]any {
				return map[string]any{"approve": true, "signature": usbSign(t, a.c, flow)}
			},
			[]attempt{{"authoriser", 403, "forbidden"}}},
		{"POST /v1/corporate/orders/{id}/review", orderPath("review"),
			func(actor) map[string]any { return map[string]any{"approve": true} },
			[]attempt{{"admin", 403, "forbidden"}, {"maker", 403, "forbidden"}, {"authoriser", 403, "forbidden"},
				{"retail", 403, "forbidden"}, {"other reviewer", 404, "not_found"}, {"reviewer", 200, ""}}},
		{"POST /v1/corporate/orders/{id}/authorise", orderPath("authorise"),
			func(a actor) map[string]any {
				return map[string]any{"approve": true, "signature": usbSign(t, a.c, flow)}
			},
			[]attempt{{"admin", 403, "forbidden"}, {"maker", 403, "forbidden"}, {"reviewer", 403, "forbidden"},
				{"retail", 403, "forbidden"}, {"other authoriser", 404, "not_found"}, {"authoriser", 200, ""},
				{"authoriser", 403, "forbidden"}}}, // executed once: a second authorisation is refused
	}
	for _, r := range routes {
		for _, w := range r.want {
			a := as[w.who]
			st, out := ub.call(t, a.sess, a.dv, "POST", r.path(), r.body(a))
			if st != w.st || errCode(out) != w.code {
				t.Errorf("%s as %s: %d %v, want %d %q", r.name, w.who, st, out, w.st, w.code)
			}
			if id, ok := out["id"].(string); ok && w.code == "" && r.name == "POST /v1/corporate/orders (entry)" {
				flowID = id
			}
		}
	}
	if got := ub.balanceOf(t, corpAcct); got != "48000.00" {
		t.Errorf("corporate balance %s, want 48000.00 (only the authorised order)", got)
	}
	if got := ub.balanceOf(t, ben.account); got != "2000.00" {
		t.Errorf("payee balance %s, want 2000.00", got)
	}
	if st, out := ub.call(t, as["maker"].sess, as["maker"].dv, "GET", "/v1/corporate/orders", nil); st != 200 || len(out["orders"].([]any)) != 1 ||
		out["orders"].([]any)[0].(map[string]any)["state"] != "executed" {
		t.Errorf("the maker's list: %d %v, want the one executed order", st, out)
	}
	if st, out := ub.call(t, as["other maker"].sess, as["other maker"].dv, "GET", "/v1/corporate/orders", nil); st != 200 || out["orders"] != nil {
		t.Errorf("another company's list: %d %v, want no orders", st, out)
	}
}

// TestUnitCorpAuthorisation: the authoriser's USB signature must be over
// the entered order bytes (signature_invalid otherwise, nothing moves); a
// rejected review ends the order; an authoriser without a USB key needs a
// recent SMS step-up; the admin's limit change needs one too.
func TestUnitCorpAuthorisation(t *testing.T) {
	ub := newUnitBank(t)
	admin := ub.enrol(t, enrolment{login: "acme-admin", name: "Acme Admin", phone: "13900000001", corp: "acme", role: "admin"})
	maker := ub.enrol(t, enrolment{login: "acme-maker", name: "Acme Maker", phone: "13900000002", corp: "acme", role: "maker"})
	rev := ub.enrol(t, enrolment{login: "acme-rev", name: "Acme Reviewer", phone: "13900000003", corp: "acme", role: "reviewer"})
	usbAuth := ub.enrol(t, enrolment{login: "acme-auth", name: "Acme Authoriser", phone: "13900000004", corp: "acme", role: "authoriser", usb: true})
	smsAuth := ub.enrol(t, enrolment{login: "acme-auth2", name: "Acme Authoriser Two", phone: "13900000005", corp: "acme", role: "authoriser"})
	ben := ub.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	ub.deposit(t, admin.account, "50000.00")
	sm, sr := ub.login(t, maker, "d-m"), ub.login(t, rev, "d-r")
	sa, sa2, sadm := ub.login(t, usbAuth, "d-a"), ub.login(t, smsAuth, "d-a2"), ub.login(t, admin, "d-adm")

	enter := func(amount, nonce string) (string, []byte) {
		ord := order(t, admin.account, ben.account, "Ben Wu", amount, nonce)
		st, out := ub.call(t, sm, "d-m", "POST", "/v1/corporate/orders", map[string]any{"order": ord})
		if st != 201 || out["state"] != "entered" {
			t.Fatalf("entry: %d %v", st, out)
		}
		return out["id"].(string), ord
	}
	review := func(id string, approve bool, want string) {
		if st, out := ub.call(t, sr, "d-r", "POST", "/v1/corporate/orders/"+id+"/review", map[string]any{"approve": approve}); st != 200 || out["state"] != want {
			t.Fatalf("review %v: %d %v, want %s", approve, st, out, want)
		}
	}

	// USB authoriser: a signature over other bytes is refused.
	id, ord := enter("1000.00", "corp-a-1")
	review(id, true, "reviewed")
	path := "/v1/corporate/orders/" + id + "/authorise"
	for _, sig := range []string{usbSign(t, usbAuth, []byte("other bytes")), usbSign(t, usbAuth, order(t, admin.account, ben.account, "Ben Wu", "9000.00", "corp-a-1"))} {
		if st, out := ub.call(t, sa, "d-a", "POST", path, map[string]any{"approve": true, "signature": sig}); st != 422 || errCode(out) != "signature_invalid" {
			t.Errorf("authorise with a signature over other bytes: %d %v, want 422 signature_invalid", st, out)
		}
	}
	if got := ub.balanceOf(t, admin.account); got != "50000.00" {
		t.Fatalf("balance %s after refused authorisations", got)
	}
	if st, out := ub.call(t, sa, "d-a", "POST", path, map[string]any{"approve": true, "signature": usbSign(t, usbAuth, ord)}); st != 200 || out["state"] != "executed" {
		t.Fatalf("authorise: %d %v", st, out)
	} else {
		ub.checkReceipt(t, out["result"].(map[string]any)["receipt"].(map[string]any))
	}

	// A rejected review ends the order.
	id, _ = enter("10.00", "corp-a-2")
	review(id, false, "rejected")
	if st, out := ub.call(t, sa2, "d-a2", "POST", "/v1/corporate/orders/"+id+"/authorise", map[string]any{"approve": true}); st != 403 || errCode(out) != "forbidden" {
		t.Errorf("authorise a rejected order: %d %v, want 403 forbidden", st, out)
	}

	// An authoriser without a USB key: a recent SMS step-up (login's)
	// suffices; six minutes later it does not.
	id, _ = enter("20.00", "corp-a-3")
	review(id, true, "reviewed")
	ub.advance(6 * time.Minute)
	if st, out := ub.call(t, sa2, "d-a2", "POST", "/v1/corporate/orders/"+id+"/authorise", map[string]any{"approve": true}); st != 403 || errCode(out) != "step_up_required" {
		t.Errorf("authorise with an old step-up: %d %v, want 403 step_up_required", st, out)
	}
	limits := map[string]any{"account": admin.account, "per_transaction": "900000.00", "daily": "900000.00"}
	if st, out := ub.call(t, sadm, "d-adm", "POST", "/v1/limits", limits); st != 403 || errCode(out) != "step_up_required" {
		t.Errorf("admin limit change with an old step-up: %d %v, want 403 step_up_required", st, out)
	}
	for _, s := range []struct{ sess, dv, phone string }{{sa2, "d-a2", smsAuth.phone}, {sadm, "d-adm", admin.phone}} {
		if st, out := ub.call(t, s.sess, s.dv, "POST", "/v1/stepup/request", nil); st != 200 {
			t.Fatalf("step-up request: %d %v", st, out)
		}
		if st, out := ub.call(t, s.sess, s.dv, "POST", "/v1/stepup", map[string]any{"code": ub.code(t, s.phone)}); st != 200 {
			t.Fatalf("step-up: %d %v", st, out)
		}
	}
	if st, out := ub.call(t, sa2, "d-a2", "POST", "/v1/corporate/orders/"+id+"/authorise", map[string]any{"approve": true}); st != 200 || out["state"] != "executed" {
		t.Errorf("authorise after a fresh step-up: %d %v", st, out)
	}
	if st, out := ub.call(t, sadm, "d-adm", "POST", "/v1/limits", limits); st != 200 {
		t.Errorf("admin limit change after a fresh step-up: %d %v", st, out)
	}
	if got := ub.balanceOf(t, admin.account); got != "48980.00" {
		t.Errorf("corporate balance %s, want 48980.00 (1000.00 and 20.00 authorised)", got)
	}
}
