package banking_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/internal/fakekms"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/dbtest"
)

// Stateless nodes (issue 17 item 2): two banks on one shared store serve
// any session. On bbolt the two nodes share one open file posing as
// shared (dbtest's Nodes), so these test the shared-store paths; under
// KEYWARD_BANKING_STORE=postgres they are two stores on one database.

// TestUnitNodesCloudTransferFinishesOnAnotherNode: a cloud transfer
// started on node A is polled and executed on node B (the pending
// transfer is in the store, not in A's memory); polling again on A gives
// the same transfer, executed once.
func TestUnitNodesCloudTransferFinishesOnAnotherNode(t *testing.T) {
	a, b := newUnitNodes(t)
	ana := a.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111", cloud: true})
	ben := a.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	a.deposit(t, ana.account, "500.00")
	sess := a.login(t, ana, "ana-phone")

	st, out := a.call(t, sess, "ana-phone", "POST", "/v1/transfers/cloud", map[string]any{"order": order(t, ana.account, ben.account, "Ben Wu", "100.00", "nodes-cloud-1")})
	if st != 202 || out["status"] != "pending" {
		t.Fatalf("cloud transfer on A: %d %v", st, out)
	}
	id := out["id"].(string)
	if err := a.kms.Approve(id); err != nil {
		t.Fatal(err)
	}
	st, out = b.call(t, sess, "ana-phone", "GET", "/v1/transfers/cloud/"+id+"?wait=1s", nil)
	if st != 200 || out["status"] != "approved" || out["result"] == nil {
		t.Fatalf("poll on B after approval: %d %v", st, out)
	}
	first := out["result"].(map[string]any)
	b.checkReceipt(t, first["receipt"].(map[string]any))
	st, out = a.call(t, sess, "ana-phone", "GET", "/v1/transfers/cloud/"+id, nil)
	if st != 200 || out["result"] == nil {
		t.Fatalf("poll again on A: %d %v", st, out)
	}
	again := out["result"].(map[string]any)
	if again["transfer_id"] != first["transfer_id"] || again["replayed"] != true {
		t.Fatalf("second poll executed again: %v then %v", first, again)
	}
	if got := b.balance(t, sess, "ana-phone"); got != "400.00" {
		t.Fatalf("balance %s on B, want 400.00 (one transfer of 100.00)", got)
	}
	// Another customer's session cannot poll it, on either node.
	bsess := b.login(t, ben, "ben-phone")
	if st, out := b.call(t, bsess, "ben-phone", "GET", "/v1/transfers/cloud/"+id, nil); st != 404 {
		t.Fatalf("Ben polls Ana's transfer: %d %v, want 404", st, out)
	}
}

// TestUnitNodesLogoutEndsSessionEverywhere: a session made on A works on
// B; logged out on B, A refuses it at once (A's session cache is not
// trusted on a shared store).
func TestUnitNodesLogoutEndsSessionEverywhere(t *testing.T) {
	a, b := newUnitNodes(t)
	ana := a.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	sess := a.login(t, ana, "ana-phone")
	if st, out := a.call(t, sess, "ana-phone", "GET", "/v1/accounts", nil); st != 200 {
		t.Fatalf("accounts on A: %d %v", st, out)
	}
	if st, out := b.call(t, sess, "ana-phone", "GET", "/v1/accounts", nil); st != 200 {
		t.Fatalf("A's session on B: %d %v", st, out)
	}
	if st, out := b.call(t, sess, "ana-phone", "POST", "/v1/logout", nil); st != 200 && st != 204 {
		t.Fatalf("logout on B: %d %v", st, out)
	}
	if st, out := a.call(t, sess, "ana-phone", "GET", "/v1/accounts", nil); st != 401 {
		t.Fatalf("the session logged out on B still works on A: %d %v", st, out)
	}
}

// TestUnitNodesPasswordChangeSeenByOtherNode: both nodes have read Ana's
// record; she changes her password on A; B takes the new password and
// refuses the old one (B's customer cache is not trusted on a shared
// store), and her other session, on B, has ended.
func TestUnitNodesPasswordChangeSeenByOtherNode(t *testing.T) {
	a, b := newUnitNodes(t)
	ana := a.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	other := b.login(t, ana, "ana-tablet")
	sess := a.login(t, ana, "ana-phone")
	if st, out := a.call(t, sess, "ana-phone", "POST", "/v1/stepup/request", nil); st != 200 {
		t.Fatalf("step-up request: %d %v", st, out)
	}
	if st, out := a.call(t, sess, "ana-phone", "POST", "/v1/stepup", map[string]any{"code": a.code(t, ana.phone)}); st != 200 {
		t.Fatalf("step-up: %d %v", st, out)
	}
	const newPassword = "N3w-Harbour-Lamp8"
	a.remember(newPassword)
	if st, out := a.call(t, sess, "ana-phone", "POST", "/v1/password", map[string]any{"password": a.seal(t, newPassword)}); st != 200 {
		t.Fatalf("password change on A: %d %v", st, out)
	}
	if st, out := b.call(t, other, "ana-tablet", "GET", "/v1/accounts", nil); st != 401 {
		t.Fatalf("Ana's other session, on B, after the change: %d %v, want 401", st, out)
	}
	if st, out := b.loginTry(t, ana.login, password, "ana-tablet"); st == 200 {
		t.Fatalf("the old password logs in on B: %v", out)
	}
	if st, out := b.loginTry(t, ana.login, newPassword, "ana-tablet"); st != 200 {
		t.Fatalf("the new password on B: %d %v", st, out)
	}
}

// TestUnitPendingCloudTransferSwept: a pending cloud transfer is a record
// in the store (bucket bank-cloud-pending) until Sweep finds it past its
// 20 minutes.
func TestUnitPendingCloudTransferSwept(t *testing.T) {
	db := dbtest.New(t).Open()
	ub := &unitBank{kms: fakekms.New(kmsClient, "usb-", "cust-"), outbox: otp.NewDevOutbox(), log: &syncBuffer{}}
	provision(t, ub.kms)
	ub.start(t, db)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111", cloud: true})
	ben := ub.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	ub.deposit(t, ana.account, "500.00")
	sess := ub.login(t, ana, "ana-phone")
	if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/cloud", map[string]any{"order": order(t, ana.account, ben.account, "Ben Wu", "1.00", "sweep-1")}); st != 202 {
		t.Fatalf("cloud transfer: %d %v", st, out)
	}
	pending := func() int {
		n := -1
		if err := db.View(func(tx store.Tx) error { n = tx.Bucket([]byte("bank-cloud-pending")).KeyN(); return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	ctx := context.Background()
	if err := ub.bank.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n := pending(); n != 1 {
		t.Fatalf("%d pending records after a sweep within 20 minutes, want 1", n)
	}
	ub.advance(21 * time.Minute)
	if err := ub.bank.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n := pending(); n != 0 {
		t.Fatalf("%d pending records after the sweep past 20 minutes, want 0", n)
	}
}
