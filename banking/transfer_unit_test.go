package banking_test

import (
	"context"
	"testing"
)

// TestUnitUSBTransfer: a personal customer's USB-signed order (EC P-256)
// moves the money once, with a receipt that verifies offline with the
// served receipt key; replaying the signed order returns the first receipt
// and moves nothing.
func TestUnitUSBTransfer(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111", usb: true})
	ben := ub.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	ub.deposit(t, ana.account, "10000.00")
	sess := ub.login(t, ana, "ana-phone")

	ord := order(t, ana.account, ben.account, "Ben Wu", "1234.50", "usb-order-1")
	st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/usb", signed(t, ana, ord))
	if st != 200 {
		t.Fatalf("USB transfer: %d %v", st, out)
	}
	tid := out["transfer_id"].(string)
	ub.checkReceipt(t, out["receipt"].(map[string]any))
	if got := ub.balance(t, sess, "ana-phone"); got != "8765.50" {
		t.Fatalf("payer balance %s after the transfer, want 8765.50", got)
	}
	if got := ub.balanceOf(t, ben.account); got != "1234.50" {
		t.Fatalf("payee balance %s, want 1234.50", got)
	}
	st, out = ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/usb", signed(t, ana, ord))
	if st != 200 || out["replayed"] != true || out["transfer_id"] != tid {
		t.Fatalf("replayed order: %d %v", st, out)
	}
	if got := ub.balance(t, sess, "ana-phone"); got != "8765.50" {
		t.Fatalf("payer balance %s after the replay, want 8765.50", got)
	}
	st, out = ub.call(t, sess, "ana-phone", "GET", "/v1/receipts/"+tid, nil)
	if st != 200 {
		t.Fatalf("receipt: %d %v", st, out)
	}
	ub.checkReceipt(t, out)
	if rep, err := ub.bank.Ledger.Verify(context.Background()); err != nil {
		t.Fatalf("ledger: %v %+v", err, rep)
	}
}

// TestUnitSM2USBTransfer: a USB key with an SM2 key pair (usb_algorithm
// sm2) signs orders that keysvc verifies with SM2 and the default ID.
func TestUnitSM2USBTransfer(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111", usbSM2: true})
	ben := ub.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	ub.deposit(t, ana.account, "100.00")
	sess := ub.login(t, ana, "ana-phone")
	ord := order(t, ana.account, ben.account, "Ben Wu", "40.00", "sm2-order-1")
	if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/usb", signed(t, ana, ord)); st != 200 {
		t.Fatalf("SM2-signed transfer: %d %v", st, out)
	}
	bad := order(t, ana.account, ben.account, "Ben Wu", "41.00", "sm2-order-2")
	if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/usb", map[string]any{"order": bad, "signature": usbSign(t, ana, ord)}); st != 422 || errCode(out) != "signature_invalid" {
		t.Fatalf("SM2 signature over another order: %d %v, want 422 signature_invalid", st, out)
	}
	if got := ub.balance(t, sess, "ana-phone"); got != "60.00" {
		t.Fatalf("balance %s, want 60.00", got)
	}
}

// TestUnitTransferRefusals: without a valid signature every order is
// signature_invalid, whatever it names (so an unsigned request learns
// nothing of the bank's records); with one, a payee account that does not
// exist and a payee name that is not its holder's get the very same
// answer; another customer's account, too much money, a customer without
// a USB key and a strict-JSON breach are refused with their codes; no
// refusal moves money.
func TestUnitTransferRefusals(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111", usb: true})
	ben := ub.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	ub.deposit(t, ana.account, "1000.00")
	sess := ub.login(t, ana, "ana-phone")
	bsess := ub.login(t, ben, "ben-phone")
	const nowhere = "6299900000000000777"

	good := order(t, ana.account, ben.account, "Ben Wu", "10.00", "refusal-0")
	for _, c := range []struct {
		name string
		body map[string]any
		st   int
		code string
	}{
		{"signature over another order", map[string]any{"order": order(t, ana.account, ben.account, "Ben Wu", "900.00", "refusal-1"), "signature": usbSign(t, ana, good)}, 422, "signature_invalid"},
		{"bad signature, unknown payee", map[string]any{"order": order(t, ana.account, nowhere, "Ben Wu", "1.00", "refusal-2"), "signature": usbSign(t, ana, good)}, 422, "signature_invalid"},
		{"bad signature, not my account", map[string]any{"order": order(t, ben.account, ana.account, "Ana Li", "1.00", "refusal-3"), "signature": usbSign(t, ana, good)}, 422, "signature_invalid"},
		{"signature not base64", map[string]any{"order": good, "signature": "!!"}, 422, "signature_invalid"},
		{"not my account", signed(t, ana, order(t, ben.account, ana.account, "Ana Li", "1.00", "refusal-4")), 422, "order_mismatch"},
		{"insufficient funds", signed(t, ana, order(t, ana.account, ben.account, "Ben Wu", "5000.00", "refusal-5")), 422, "insufficient_funds"},
		{"over the per-transfer limit", signed(t, ana, order(t, ana.account, ben.account, "Ben Wu", "50000.01", "refusal-6")), 422, "limit_exceeded"},
		{"unknown field", map[string]any{"order": good, "signature": "x", "extra": 1}, 400, "invalid_request"},
	} {
		if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/usb", c.body); st != c.st || errCode(out) != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.name, st, out, c.st, c.code)
		}
	}

	// The payee check: one answer for "no such account" and "not its holder".
	st1, unknown := ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/usb", signed(t, ana, order(t, ana.account, nowhere, "Ben Wu", "1.00", "payee-1")))
	st2, misnamed := ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/usb", signed(t, ana, order(t, ana.account, ben.account, "Robert Wu", "1.00", "payee-2")))
	if st1 != 422 || errCode(unknown) != "order_mismatch" || st2 != 422 || errCode(misnamed) != "order_mismatch" {
		t.Fatalf("unknown payee account %d %v; wrong payee name %d %v; want 422 order_mismatch", st1, unknown, st2, misnamed)
	}
	if unknown["error"].(map[string]any)["message"] != misnamed["error"].(map[string]any)["message"] {
		t.Errorf("the two payee refusals differ: %v ≠ %v", unknown, misnamed)
	}

	if st, out := ub.call(t, bsess, "ben-phone", "POST", "/v1/transfers/usb", map[string]any{"order": order(t, ben.account, ana.account, "Ana Li", "1.00", "nokey-1"), "signature": usbSign(t, ana, good)}); st != 403 || errCode(out) != "forbidden" {
		t.Errorf("a customer without a USB key: %d %v, want 403 forbidden", st, out)
	}
	if got := ub.balance(t, sess, "ana-phone"); got != "1000.00" {
		t.Errorf("balance %s after refusals only, want 1000.00", got)
	}
}

// TestUnitCloudTransfer: a cloud-key transfer waits for the customer's
// confirmation in keysvc; once the holder approves, polling executes it
// with a verifying receipt; a rejected one moves nothing.
func TestUnitCloudTransfer(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111", cloud: true})
	ben := ub.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	if ana.setupCode == "" {
		t.Fatal("enrolment with a cloud key gave no holder setup code")
	}
	ub.deposit(t, ana.account, "500.00")
	sess := ub.login(t, ana, "ana-phone")

	st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/cloud", map[string]any{"order": order(t, ana.account, ben.account, "Ben Wu", "100.00", "cloud-1")})
	if st != 202 || out["status"] != "pending" {
		t.Fatalf("cloud transfer: %d %v", st, out)
	}
	id := out["id"].(string)
	if st, out := ub.call(t, sess, "ana-phone", "GET", "/v1/transfers/cloud/"+id, nil); st != 200 || out["status"] != "pending" || out["result"] != nil {
		t.Fatalf("poll before approval: %d %v", st, out)
	}
	if err := ub.kms.Approve(id); err != nil {
		t.Fatal(err)
	}
	st, out = ub.call(t, sess, "ana-phone", "GET", "/v1/transfers/cloud/"+id+"?wait=1s", nil)
	if st != 200 || out["status"] != "approved" || out["result"] == nil {
		t.Fatalf("poll after approval: %d %v", st, out)
	}
	ub.checkReceipt(t, out["result"].(map[string]any)["receipt"].(map[string]any))

	st, out = ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/cloud", map[string]any{"order": order(t, ana.account, ben.account, "Ben Wu", "50.00", "cloud-2")})
	if st != 202 {
		t.Fatalf("second cloud transfer: %d %v", st, out)
	}
	if err := ub.kms.Reject(out["id"].(string)); err != nil {
		t.Fatal(err)
	}
	if st, out := ub.call(t, sess, "ana-phone", "GET", "/v1/transfers/cloud/"+out["id"].(string), nil); st != 200 || out["status"] != "rejected" || out["result"] != nil {
		t.Fatalf("poll after rejection: %d %v", st, out)
	}
	if got := ub.balance(t, sess, "ana-phone"); got != "400.00" {
		t.Errorf("balance %s, want 400.00 (one approved transfer of 100.00)", got)
	}
}
