package ledger

import (
	"context"
	"fmt"
)

// OverrideLimits replaces a customer account's limits without the bank's
// ceiling (Options.MaxLimits): a supervisor's act at the bank (banking's
// POST /staff/v1/limits, role limit-override, audited with its reason),
// for a customer who needs more than they may set themselves. The limits
// must still be sane — not negative, the per-transaction limit not above
// the daily one — and the account not closed. The customer's own
// SetLimits stays bound by the ceiling afterwards: they can lower an
// override, never raise one. Today's usage is kept, as with SetLimits.
func (l *Ledger) OverrideLimits(ctx context.Context, id string, lim Limits) (Account, error) {
	return l.updateAccount(ctx, id, func(a *Account) error {
		if a.Owner == "" {
			return fmt.Errorf("%w: %s is one of the bank's own accounts, which have no transfer limits", ErrInvalidArgument, id)
		}
		if err := lim.validate(a.Currency, nil); err != nil {
			return err
		}
		if a.State == StateClosed {
			return fmt.Errorf("%w: %s", ErrAccountClosed, id)
		}
		a.Limits = lim
		return nil
	})
}
