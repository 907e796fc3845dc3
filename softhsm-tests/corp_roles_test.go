package softhsmtests

// Issue 12 item 2 (R-AUTH-10): a corporate account's money moves only by
// entry, review and authorisation by three different operators, and only
// the corporate administrator changes its limits. Every role against
// every money-moving and limit-changing route, through the bank's HTTP API
// on a real keysvc (SoftHSM).

import (
	"testing"
)

// corpActor is one person trying a route: a logged-in customer and device.
type corpActor struct {
	c        customer
	sess, dv string
}

func TestCorpEveryRoleEveryRoute(t *testing.T) {
	be := newBankEnv(t)
	enrolAs := func(login, name, phone, idCard, corp, role string) customer {
		c := be.enrol(t, login, name, phone, idCard, true, true, corp, role) // every one holds a USB and a cloud key
		if corp != "" {                                                      // an enrolled cloud key: today's code would sign for it
			if st, out := callAt(t, be.ks.confirmURL, "", "POST", "/confirm/v1/enrol", map[string]any{"key": "cust-" + c.id, "setup_code": c.setupCode, "pin": holderPIN}); st != 200 {
				t.Fatalf("holder enrol %s: %d %v", login, st, out)
			}
		}
		return c
	}
	admin := enrolAs("acme-admin", "Acme Admin", "13900000001", "11010519491231002X", "acme", "admin")
	bob := be.enrol(t, "bobli", "Bob Li", "13800002222", "110101199003070011", false, false, "", "")
	be.deposit(t, admin.account, "50000.00")
	people := map[string]customer{
		"admin":      admin,
		"maker":      enrolAs("acme-maker", "Acme Maker", "13900000002", "110101199003070011", "acme", "maker"),
		"reviewer":   enrolAs("acme-rev", "Acme Reviewer", "13900000003", "110101198001010010", "acme", "reviewer"),
		"authoriser": enrolAs("acme-auth", "Acme Authoriser", "13900000004", "11010519491231002X", "acme", "authoriser"),
		"retail":     be.enrol(t, "carol", "Carol Wu", "13800003333", "110101198001010010", true, true, "", ""),
		// Another company's operators: the one holding the route's role tries it.
		"other admin":      enrolAs("zeta-admin", "Zeta Admin", "13700000001", "11010519491231002X", "zeta", "admin"),
		"other maker":      enrolAs("zeta-maker", "Zeta Maker", "13700000002", "110101199003070011", "zeta", "maker"),
		"other reviewer":   enrolAs("zeta-rev", "Zeta Reviewer", "13700000003", "110101198001010010", "zeta", "reviewer"),
		"other authoriser": enrolAs("zeta-auth", "Zeta Authoriser", "13700000004", "11010519491231002X", "zeta", "authoriser"),
	}
	as := map[string]corpActor{}
	for who, c := range people {
		dv := "dev-" + c.login
		as[who] = corpActor{c: c, sess: be.login(t, c, dv), dv: dv}
	}
	corpAcct := admin.account
	direct := func(nonce string) []byte { return order(t, corpAcct, bob.account, "Bob Li", "1000.00", nonce) }

	// The order that goes through the three roles, entered by the maker
	// at the end of the entry rows.
	flow := order(t, corpAcct, bob.account, "Bob Li", "2000.00", "corp-flow-1")
	var flowID string
	orderPath := func(step string) func() string {
		return func() string { return "/v1/corporate/orders/" + flowID + "/" + step }
	}

	type attempt struct {
		who  string
		st   int
		code string // "" for success
	}
	routes := []struct {
		name string
		path func() string
		body func(a corpActor) map[string]any
		want []attempt // in this order; the permitted one last
	}{
		{"POST /v1/transfers/usb from the corporate account", func() string { return "/v1/transfers/usb" },
			func(a corpActor) map[string]any { return signed(a.c, direct("usb-"+a.c.login)) },
			[]attempt{{"admin", 403, "maker_checker_required"}, {"maker", 403, "maker_checker_required"},
				{"reviewer", 403, "maker_checker_required"}, {"authoriser", 403, "maker_checker_required"},
				{"other authoriser", 403, "maker_checker_required"}, {"other admin", 403, "maker_checker_required"},
				{"retail", 422, "order_mismatch"}}},
		{"POST /v1/transfers/cloud from the corporate account", func() string { return "/v1/transfers/cloud" },
			func(a corpActor) map[string]any { return map[string]any{"order": direct("cloud-" + a.c.login)} },
			[]attempt{{"admin", 403, "maker_checker_required"}, {"maker", 403, "maker_checker_required"},
				{"reviewer", 403, "maker_checker_required"}, {"authoriser", 403, "maker_checker_required"},
				{"other authoriser", 403, "maker_checker_required"}, {"other admin", 403, "maker_checker_required"},
				{"retail", 422, "order_mismatch"}}},
		{"POST /v1/limits on the corporate account", func() string { return "/v1/limits" },
			func(a corpActor) map[string]any {
				return map[string]any{"account": corpAcct, "per_transaction": "900000.00", "daily": "900000.00"}
			},
			[]attempt{{"maker", 403, "forbidden"}, {"reviewer", 403, "forbidden"}, {"authoriser", 403, "forbidden"},
				{"retail", 404, "not_found"}, {"other admin", 404, "not_found"}, {"other maker", 403, "forbidden"},
				{"admin", 200, ""}}},
		{"POST /v1/corporate/orders (entry)", func() string { return "/v1/corporate/orders" },
			func(a corpActor) map[string]any { return map[string]any{"order": flow} },
			[]attempt{{"admin", 403, "forbidden"}, {"reviewer", 403, "forbidden"}, {"authoriser", 403, "forbidden"},
				{"retail", 403, "forbidden"}, {"other maker", 422, "order_mismatch"}, {"maker", 201, ""}}},
		{"POST /v1/corporate/orders/{id}/review", orderPath("review"),
			func(a corpActor) map[string]any { return map[string]any{"approve": true} },
			[]attempt{{"admin", 403, "forbidden"}, {"maker", 403, "forbidden"}, {"authoriser", 403, "forbidden"},
				{"retail", 403, "forbidden"}, {"other reviewer", 404, "not_found"}, {"reviewer", 200, ""}}},
		{"POST /v1/corporate/orders/{id}/authorise", orderPath("authorise"),
			func(a corpActor) map[string]any {
				return map[string]any{"approve": true, "signature": usbSign(a.c, flow)}
			},
			[]attempt{{"admin", 403, "forbidden"}, {"maker", 403, "forbidden"}, {"reviewer", 403, "forbidden"},
				{"retail", 403, "forbidden"}, {"other authoriser", 404, "not_found"}, {"authoriser", 200, ""}}},
	}
	for _, r := range routes {
		for _, w := range r.want {
			a := as[w.who]
			st, out := be.call(t, a.sess, a.dv, "POST", r.path(), r.body(a))
			if st != w.st || errCodeOf(out) != w.code {
				t.Errorf("%s as %s: %d %v, want %d %q", r.name, w.who, st, out, w.st, w.code)
			}
			if id, ok := out["id"].(string); ok && w.code == "" && r.name == "POST /v1/corporate/orders (entry)" {
				flowID = id
			}
		}
	}
	// Only the authorised order moved money: 50000 − 2000.
	if got := be.balance(t, as["maker"].sess, as["maker"].dv); got != "48000.00" {
		t.Fatalf("corporate balance %s, want 48000.00 (only the authorised order)", got)
	}
	if got := be.balance(t, as["retail"].sess, as["retail"].dv); got != "0.00" {
		t.Fatalf("retail balance %s", got)
	}
}
