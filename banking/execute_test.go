package banking

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/token/txformat"
)

// TestExecuteRefusesUnauthorisedCorporateOrder proves the second door of
// issue 12 item 2 on its own: whatever route reaches execute, a corporate
// account's order that has not been through maker → reviewer → authoriser
// (checkedOrder.authorised) moves no money (R-AUTH-10).
// TestCorpEveryRoleEveryRoute (softhsm-tests) covers the routes; there
// directTransfer refuses first, so it cannot see this check go missing.
func TestExecuteRefusesUnauthorisedCorporateOrder(t *testing.T) {
	ctx := context.Background()
	l, err := ledger.Open(filepath.Join(t.TempDir(), "ledger.db"), ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lim := &ledger.Limits{PerTransaction: 1_000_000_00, Daily: 1_000_000_00}
	corp, err := l.OpenAccount(ctx, ledger.OpenAccountRequest{Owner: "corp:acme", Currency: "CNY", Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	payee, err := l.OpenAccount(ctx, ledger.OpenAccountRequest{Owner: "c-1001", Currency: "CNY", Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Deposit(ctx, ledger.CashRequest{IdempotencyKey: "seed", Account: corp.ID, Amount: 50_000_00, Currency: "CNY"}); err != nil {
		t.Fatal(err)
	}
	if corp, err = l.Account(ctx, corp.ID); err != nil {
		t.Fatal(err)
	}

	b := &Bank{Ledger: l, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	co := &checkedOrder{payer: corp, payee: payee, amount: 4_000_00, idemKey: "corp:acme:e2e-1",
		tr: txformat.Transfer{Currency: "CNY", EndToEndID: "e2e-1"}}
	var execErr error
	func() {
		defer func() {
			if r := recover(); r != nil {
				execErr = errors.New("execute went past the corporate check and posted the transfer (it then panicked making a receipt)")
			}
		}()
		_, execErr = b.execute(ctx, co)
	}()
	if !errors.Is(execErr, ErrMakerChecker) {
		t.Errorf("execute of an unauthorised corporate order: err %v, want ErrMakerChecker", execErr)
	}
	after, err := l.Account(ctx, corp.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Balance != 50_000_00 {
		t.Errorf("corporate balance %s after a refused order, want 50000.00", ledger.FormatAmount(after.Balance, "CNY"))
	}
}
