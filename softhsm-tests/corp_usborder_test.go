package softhsmtests

// Issue 12 item 8: /v1/transfers/usb must not be an oracle on the bank's
// records. Without a valid signature, every order gets the same answer
// (the signature is checked first); with one, a payee account that does
// not exist and a payee name that is not the holder's get the same answer.

import (
	"fmt"
	"testing"
)

func TestCorpUSBOrderNoAccountOracle(t *testing.T) {
	be := newBankEnv(t)
	alice := be.enrol(t, "alice", "Alice Wang", "13800001111", "11010519491231002X", true, false, "", "")
	bob := be.enrol(t, "bobli", "Bob Li", "13800002222", "110101199003070011", false, false, "", "")
	be.deposit(t, alice.account, "10000.00")
	sess := be.login(t, alice, "phone-1")
	missing := "6299900000000000777" // no such account at this bank
	if _, err := be.bank.Ledger.Account(t.Context(), missing); err == nil {
		t.Fatalf("account %s exists; pick another", missing)
	}
	orders := map[string][]byte{
		"existing account, its holder's name": order(t, alice.account, bob.account, "Bob Li", "1.00", "oracle-1"),
		"missing account":                     order(t, alice.account, missing, "Bob Li", "1.00", "oracle-2"),
		"existing account, wrong name":        order(t, alice.account, bob.account, "Robert Li", "1.00", "oracle-3"),
	}
	answer := func(body map[string]any) string {
		st, out := be.call(t, sess, "phone-1", "POST", "/v1/transfers/usb", body)
		return fmt.Sprintf("%d %v", st, out)
	}

	// A bad signature: one answer for all three.
	for _, sig := range []string{"AAAA", usbSign(alice, []byte("some other bytes"))} {
		want := ""
		for name, ord := range orders {
			got := answer(map[string]any{"order": ord, "signature": sig})
			if want == "" {
				want = got
			}
			if got != want {
				t.Errorf("signature %.8s…, %s: %s; another order got %s", sig, name, got, want)
			}
		}
		if want != `422 map[error:map[code:signature_invalid message:指令签名无效：签名与指令或您的 USB Key 不符]]` {
			t.Errorf("signature %.8s…: %s, want signature_invalid", sig, want)
		}
	}

	// A good signature: a missing account and a wrong name are one answer.
	a := answer(signed(alice, orders["missing account"]))
	b := answer(signed(alice, orders["existing account, wrong name"]))
	if a != b {
		t.Errorf("signed orders: missing account %s, wrong name %s: they must not differ", a, b)
	}
	if want := `422 map[error:map[code:order_mismatch message:转账指令不符：收款账号与户名不符，或不是本行账户]]`; a != want {
		t.Errorf("signed order to a missing account: %s, want %s", a, want)
	}
	// Nothing moved; the right order still goes through.
	if st, out := be.call(t, sess, "phone-1", "POST", "/v1/transfers/usb", signed(alice, orders["existing account, its holder's name"])); st != 200 {
		t.Fatalf("good order: %d %v", st, out)
	}
	if got := be.balance(t, sess, "phone-1"); got != "9999.00" {
		t.Fatalf("balance %s, want 9999.00", got)
	}
}
