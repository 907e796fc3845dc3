package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/keyward/keyward/banking/store"
)

// Kind is what a posting is.
type Kind uint8

const (
	KindTransfer   Kind = iota + 1 // customer to customer
	KindDeposit                    // bank cash account to customer
	KindWithdrawal                 // customer to bank cash account
)

func (k Kind) String() string {
	switch k {
	case KindTransfer:
		return "transfer"
	case KindDeposit:
		return "deposit"
	case KindWithdrawal:
		return "withdrawal"
	}
	return "unspecified"
}

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) {
	if k < KindTransfer || k > KindWithdrawal {
		return nil, fmt.Errorf("%w: posting kind %d", ErrInvalidArgument, k)
	}
	return []byte(k.String()), nil
}

// UnmarshalText reads "transfer", "deposit" or "withdrawal".
func (k *Kind) UnmarshalText(b []byte) error {
	for _, c := range []Kind{KindTransfer, KindDeposit, KindWithdrawal} {
		if string(b) == c.String() {
			*k = c
			return nil
		}
	}
	return fmt.Errorf("%w: posting kind %q", ErrInvalidArgument, truncate(string(b), 16))
}

// Entry is one line of an account's statement: one leg of a posting.
type Entry struct {
	Seq          uint64    `json:"seq"`          // the posting's journal sequence number
	TransferID   string    `json:"transfer_id"`  // the posting's id
	Kind         Kind      `json:"kind"`         // of the posting
	Account      string    `json:"account"`      // whose statement
	Counterparty string    `json:"counterparty"` // the other leg's account
	Amount       int64     `json:"amount"`       // minor units; negative: debit, positive: credit
	Balance      int64     `json:"balance"`      // the account's balance after this entry
	Currency     string    `json:"currency"`
	Time         time.Time `json:"time"`
	Memo         string    `json:"memo,omitempty"`
}

// Statement returns up to limit (1 to 1000) entries of an account, newest
// first, older than journal sequence number before (0: from the newest).
// Pass the last entry's Seq as before to read the next page; an empty
// result is the end.
func (l *Ledger) Statement(ctx context.Context, id string, before uint64, limit int) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit < 1 || limit > 1000 {
		return nil, fmt.Errorf("%w: statement limit must be 1 to 1000", ErrInvalidArgument)
	}
	var out []Entry
	err := l.db.View(func(tx store.Tx) error {
		a, err := getAccount(tx, id)
		if err != nil {
			return err
		}
		seq := a.LastSeq
		if before != 0 {
			_, e, err := legOf(tx, before, id)
			if err != nil {
				return fmt.Errorf("%w: statement cursor: %w", ErrInvalidArgument, err)
			}
			seq = e.Prev
		}
		for seq != 0 && len(out) < limit {
			r, e, err := legOf(tx, seq, id)
			if err != nil {
				return fmt.Errorf("%w: statement of %s: %w", ErrCorrupt, id, err)
			}
			peer := r.To
			if e.Amount > 0 {
				peer = r.From
			}
			out = append(out, Entry{Seq: seq, TransferID: r.TransferID, Kind: r.Kind, Account: id, Counterparty: peer,
				Amount: e.Amount, Balance: e.Balance, Currency: r.Currency, Time: r.Time, Memo: r.Memo})
			seq = e.Prev
		}
		return nil
	})
	return out, storeErr("read statement", err)
}

// Posting returns the receipt of a posting by its TransferID.
func (l *Ledger) Posting(ctx context.Context, transferID string) (Receipt, error) {
	if err := ctx.Err(); err != nil {
		return Receipt{}, err
	}
	seq, ok := parseTransferID(transferID)
	if !ok {
		return Receipt{}, fmt.Errorf("%w: %q", ErrTransferNotFound, truncate(transferID, 32))
	}
	var r Receipt
	err := l.db.View(func(tx store.Tx) error {
		v := tx.Bucket(bucketJournal).Get(u64(seq))
		if v == nil {
			return fmt.Errorf("%w: %s", ErrTransferNotFound, transferID)
		}
		return decodeJSON(v, &r)
	})
	return r, storeErr("read posting", err)
}
