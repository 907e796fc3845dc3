package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keyward/keyward/banking/blacklist"
	"github.com/keyward/keyward/banking/ledger"
)

// The banking app's wiring: a screening list watched on disk, the ledger
// asking it about every new account and payee, amounts parsed from the
// customer's decimal strings, and errors turned into stable codes.
func Example() {
	dir, _ := os.MkdirTemp("", "ledger-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	listed, _ := ledger.AccountNumber("629990000000000666")
	listPath := filepath.Join(dir, "screening.txt")
	os.WriteFile(listPath, []byte("account:"+listed+"\nend:1\n"), 0o600)
	list, err := blacklist.Open(listPath, blacklist.Options{OnError: func(err error) { fmt.Println("screening:", err) }})
	if err != nil {
		panic(err)
	}
	defer list.Close()

	l, err := ledger.Open(filepath.Join(dir, "ledger.db"), ledger.Options{Screen: list.CheckAccount})
	if err != nil {
		panic(err)
	}
	defer l.Close()

	alice, _ := ledger.AccountNumber("629990000000000001")
	bob, _ := ledger.AccountNumber("629990000000000002")
	for _, id := range []string{alice, bob} {
		if _, err := l.OpenAccount(ctx, ledger.OpenAccountRequest{ID: id, Owner: "cust-" + id[14:], Currency: "CNY"}); err != nil {
			panic(err)
		}
	}
	_, err = l.OpenAccount(ctx, ledger.OpenAccountRequest{ID: listed, Owner: "cust-x", Currency: "CNY"})
	fmt.Println("open listed account:", ledger.ErrorCode(err))

	if _, err := l.Deposit(ctx, ledger.CashRequest{IdempotencyKey: "teller/1", Account: alice, Amount: 100_000_00, Currency: "CNY"}); err != nil {
		panic(err)
	}
	amount, err := ledger.ParseAmount("1234.50", "CNY")
	if err != nil {
		panic(err)
	}
	req := ledger.TransferRequest{IdempotencyKey: "cust-0001/7f3a", From: alice, To: bob, Amount: amount, Currency: "CNY", Memo: "rent"}
	r, err := l.Transfer(ctx, req)
	if err != nil {
		panic(err)
	}
	fmt.Println(r.TransferID, "alice now", ledger.FormatAmount(r.FromBalance, "CNY"), "bob now", ledger.FormatAmount(r.ToBalance, "CNY"))

	again, _ := l.Transfer(ctx, req) // a client retry after a timeout
	fmt.Println("retry replayed:", again.Replayed, again.TransferID)

	req.IdempotencyKey, req.Amount = "cust-0001/7f3b", 60_000_00
	_, err = l.Transfer(ctx, req)
	var le *ledger.LimitError
	if errors.As(err, &le) {
		fmt.Println(ledger.ErrorCode(err), le.Kind, "limit", ledger.FormatAmount(le.Limit, "CNY"))
	}

	req.IdempotencyKey, req.Amount, req.To = "cust-0001/7f3c", 1_00, listed
	_, err = l.Transfer(ctx, req)
	fmt.Println("to a listed payee:", ledger.ErrorCode(err))

	rep, err := l.Verify(ctx)
	fmt.Println("verify:", err, rep.Postings, "postings, CNY total", rep.Totals["CNY"])
	// Output:
	// open listed account: blocked
	// T000000000002 alice now 98765.50 bob now 1234.50
	// retry replayed: true T000000000002
	// limit_exceeded per-transaction limit 50000.00
	// to a listed payee: blocked
	// verify: <nil> 2 postings, CNY total 0
}
