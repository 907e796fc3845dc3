package ledger

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/keyward/keyward/banking/store"
)

// OpenAccountRequest opens a customer account.
type OpenAccountRequest struct {
	// ID is the account number (ValidateAccountID); empty: the ledger
	// draws one at random after Options.AccountPrefix.
	ID string
	// Owner is the customer id: 1 to 64 printable ASCII characters.
	Owner string
	// Currency is an ISO 4217 code in upper case.
	Currency string
	// Limits; nil takes Options.DefaultLimits for the currency.
	Limits *Limits
}

// OpenAccount creates an open account with a zero balance (fund it with
// Deposit). The account number is screened first (ErrBlocked); a taken
// number is ErrAccountExists.
func (l *Ledger) OpenAccount(ctx context.Context, req OpenAccountRequest) (Account, error) {
	if err := ctx.Err(); err != nil {
		return Account{}, err
	}
	if req.ID != "" {
		if err := ValidateAccountID(req.ID); err != nil {
			return Account{}, err
		}
	}
	if err := validToken("owner", req.Owner, 64); err != nil {
		return Account{}, err
	}
	if _, err := CurrencyExponent(req.Currency); err != nil {
		return Account{}, err
	}
	var lim Limits
	switch {
	case req.Limits != nil:
		lim = *req.Limits
	default:
		d, ok := l.defLimits[req.Currency]
		if !ok {
			return Account{}, fmt.Errorf("%w: no default limits for %s; give the account's limits", ErrInvalidArgument, req.Currency)
		}
		lim = d
	}
	if err := lim.validate(req.Currency, l.ceiling(req.Currency)); err != nil {
		return Account{}, err
	}
	acc := Account{ID: req.ID, Owner: req.Owner, Currency: req.Currency, State: StateOpen,
		Created: l.now().UTC(), Limits: lim}
	err := l.db.Update(func(tx store.Tx) error {
		b := tx.Bucket(bucketAccounts)
		if req.ID != "" {
			if b.Get([]byte(req.ID)) != nil {
				return fmt.Errorf("%w: %s", ErrAccountExists, req.ID)
			}
		} else {
			for tries := 0; ; tries++ {
				id, err := randomAccountNumber(l.prefix)
				if err != nil {
					return err
				}
				if b.Get([]byte(id)) == nil {
					acc.ID = id
					break
				}
				if tries == 20 {
					return fmt.Errorf("%w: no free account number after prefix %s", ErrStore, l.prefix)
				}
			}
		}
		if err := l.screenAccount(acc.ID); err != nil {
			return err
		}
		if err := b.Put([]byte(acc.ID), encodeAccount(&acc)); err != nil {
			return err
		}
		return tx.Bucket(bucketOwners).Put(ownerKey(acc.Owner, acc.ID), nil)
	})
	if err != nil {
		return Account{}, storeErr("open account", err)
	}
	return acc, nil
}

func (l *Ledger) screenAccount(id string) error {
	if l.screen == nil {
		return nil
	}
	if err := l.screen(id); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBlocked, id, err)
	}
	return nil
}

// Account returns the account id (customer or cash account).
func (l *Ledger) Account(ctx context.Context, id string) (Account, error) {
	if err := ctx.Err(); err != nil {
		return Account{}, err
	}
	var acc Account
	err := l.db.View(func(tx store.Tx) error {
		a, err := getAccount(tx, id)
		acc = a
		return err
	})
	return acc, storeErr("read account", err)
}

// Accounts reads several accounts in one store transaction (one snapshot,
// one round of the store instead of one per account). errs[i] is ids[i]'s
// own error (ErrAccountNotFound, a corrupt record); err is a store fault,
// and then nothing was read.
func (l *Ledger) Accounts(ctx context.Context, ids ...string) (accs []Account, errs []error, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	err = l.db.View(func(tx store.Tx) error {
		accs, errs = ReadAccounts(tx, ids...)
		return nil
	})
	if err != nil {
		return nil, nil, storeErr("read accounts", err)
	}
	return accs, errs, nil
}

// ReadAccounts reads accounts inside a caller's transaction on the
// ledger's store, so a caller that needs accounts and records of its own
// reads them in one snapshot and one round (banking's order check reads
// payer, payee and the payee's customer record together). errs as in
// Accounts; a store fault is the transaction's (sticky).
func ReadAccounts(tx store.Tx, ids ...string) (accs []Account, errs []error) {
	accs, errs = make([]Account, len(ids)), make([]error, len(ids))
	if pf, ok := tx.(store.Prefetcher); ok {
		keys := make([][]byte, len(ids))
		for i, id := range ids {
			keys[i] = []byte(id)
		}
		pf.Prefetch(store.Keys{Bucket: bucketAccounts, Keys: keys})
	}
	for i, id := range ids {
		accs[i], errs[i] = getAccount(tx, id)
	}
	return accs, errs
}

// AccountsByOwner returns the accounts of a customer, by account number.
func (l *Ledger) AccountsByOwner(ctx context.Context, owner string) ([]Account, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validToken("owner", owner, 64); err != nil {
		return nil, err
	}
	var out []Account
	prefix := ownerKey(owner, "")
	err := l.db.View(func(tx store.Tx) error {
		c := tx.Bucket(bucketOwners).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			a, err := getAccount(tx, string(k[len(prefix):]))
			if err != nil {
				return fmt.Errorf("%w: owner index names %s: %w", ErrCorrupt, k[len(prefix):], err)
			}
			out = append(out, a)
		}
		return nil
	})
	return out, storeErr("list accounts", err)
}

// SetState freezes (StateFrozen), unfreezes (StateOpen) or closes
// (StateClosed) a customer account. Closing needs a zero balance; a closed
// account stays closed. Setting the current state again is not an error.
// Refusals are ErrIllegalTransition.
func (l *Ledger) SetState(ctx context.Context, id string, to State) (Account, error) {
	if to < StateOpen || to > StateClosed {
		return Account{}, fmt.Errorf("%w: account state %d", ErrInvalidArgument, to)
	}
	return l.updateAccount(ctx, id, func(a *Account) error {
		switch {
		case a.State == to:
			return nil
		case a.State == StateClosed:
			return fmt.Errorf("%w: account %s is closed for good", ErrIllegalTransition, id)
		case to == StateClosed && a.Balance != 0:
			return fmt.Errorf("%w: account %s holds %s %s; move or withdraw it before closing",
				ErrIllegalTransition, id, FormatAmount(a.Balance, a.Currency), a.Currency)
		}
		a.State = to
		return nil
	})
}

// SetLimits replaces a customer account's limits, within the bank's
// ceiling (Options.MaxLimits). The HTTP layer re-authenticates the customer
// first (R-AUTH-6); the ledger only stores. Today's usage is kept: lowering
// the daily limit below it stops transfers until the day ends.
func (l *Ledger) SetLimits(ctx context.Context, id string, lim Limits) (Account, error) {
	return l.updateAccount(ctx, id, func(a *Account) error {
		if err := lim.validate(a.Currency, l.ceiling(a.Currency)); err != nil {
			return err
		}
		if a.State == StateClosed {
			return fmt.Errorf("%w: %s", ErrAccountClosed, id)
		}
		a.Limits = lim
		return nil
	})
}

func (l *Ledger) updateAccount(ctx context.Context, id string, fn func(*Account) error) (Account, error) {
	if err := ctx.Err(); err != nil {
		return Account{}, err
	}
	if err := ValidateAccountID(id); err != nil {
		return Account{}, err
	}
	var acc Account
	err := l.db.Update(func(tx store.Tx) error {
		a, err := getAccount(tx, id)
		if err != nil {
			return err
		}
		if err := fn(&a); err != nil {
			return err
		}
		acc = a
		return tx.Bucket(bucketAccounts).Put([]byte(id), encodeAccount(&a))
	})
	if err != nil {
		return Account{}, storeErr("update account", err)
	}
	return acc, nil
}

// LimitStatus is what an account may still send now.
type LimitStatus struct {
	Limits    Limits
	Day       string    // today in the ledger's zone, YYYY-MM-DD
	SentToday int64     // sent by Transfer today
	Remaining int64     // the most one transfer may send now (limits only, not the balance)
	ResetsAt  time.Time // when today ends
}

// LimitStatus reports an account's limits and what is left today.
func (l *Ledger) LimitStatus(ctx context.Context, id string) (LimitStatus, error) {
	a, err := l.Account(ctx, id)
	if err != nil {
		return LimitStatus{}, err
	}
	day, end := l.dayOf(l.now())
	sent := a.sentOn(day)
	return LimitStatus{Limits: a.Limits, Day: day, SentToday: sent,
		Remaining: min(a.Limits.PerTransaction, max(a.Limits.Daily-sent, 0)), ResetsAt: end}, nil
}
