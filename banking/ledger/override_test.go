package ledger_test

import (
	"context"
	"errors"
	"testing"

	"github.com/keyward/keyward/banking/ledger"
)

// TestOverrideLimits: a supervisor's override goes above the bank's
// ceiling a customer is held to, a transfer within it then passes, the
// customer can lower it but not raise it again, and the sanity checks
// still hold.
func TestOverrideLimits(t *testing.T) {
	ctx := context.Background()
	l, _ := newLedger(t, ledger.Options{})
	payer := mustAccount(t, l, "c1", 3_000_000_00, nil)
	payee := mustAccount(t, l, "c2", 0, nil)
	big := ledger.Limits{PerTransaction: 2_000_000_00, Daily: 6_000_000_00} // above DefaultMaxLimits
	if _, err := l.SetLimits(ctx, payer, big); !errors.Is(err, ledger.ErrInvalidArgument) {
		t.Fatalf("customer above the ceiling: %v", err)
	}
	a, err := l.OverrideLimits(ctx, payer, big)
	if err != nil || a.Limits != big {
		t.Fatalf("override: %+v %v", a.Limits, err)
	}
	if _, err := l.Transfer(ctx, ledger.TransferRequest{IdempotencyKey: newKey("t"), From: payer, To: payee, Amount: 1_500_000_00, Currency: "CNY"}); err != nil {
		t.Fatalf("transfer within the override: %v", err)
	}
	if _, err := l.SetLimits(ctx, payer, ledger.Limits{PerTransaction: 2_000_000_01, Daily: 6_000_000_00}); !errors.Is(err, ledger.ErrInvalidArgument) {
		t.Fatalf("customer raising an override: %v", err)
	}
	for name, lim := range map[string]ledger.Limits{
		"negative":                {PerTransaction: -1, Daily: 10},
		"per-transaction > daily": {PerTransaction: 11, Daily: 10},
	} {
		if _, err := l.OverrideLimits(ctx, payer, lim); !errors.Is(err, ledger.ErrInvalidAmount) && !errors.Is(err, ledger.ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := l.OverrideLimits(ctx, "6299900000000000000", big); !errors.Is(err, ledger.ErrAccountNotFound) && !errors.Is(err, ledger.ErrInvalidArgument) {
		t.Fatalf("unknown account: %v", err)
	}
	mustVerify(t, l)
}
