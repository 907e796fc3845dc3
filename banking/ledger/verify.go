package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/keyward/keyward/banking/store"
)

// Report is what Verify counted.
type Report struct {
	Postings        uint64           // journal records, sequence numbers 1..Postings
	Entries         int              // statement entries (2 per posting)
	Accounts        int              // customer and cash accounts
	IdempotencyKeys int              // one per posting
	Totals          map[string]int64 // per currency, every balance summed: always 0
	CustomerTotals  map[string]int64 // per currency, customer balances only (= minus the cash account)
	ByKind          map[Kind]uint64  // postings per kind
}

// maxProblems bounds how many violations Verify lists in its error.
const maxProblems = 20

// Verify re-reads the whole ledger in one read transaction (a consistent
// snapshot; transfers continue meanwhile) and checks:
//
//   - journal sequence numbers run 1..N without gaps, N is the bucket's
//     sequence, and every posting is well formed (amount > 0, two different
//     accounts, known kind and currency, TransferID matching its Seq);
//   - every posting has exactly its two entries, a debit of -Amount on From
//     and a credit of +Amount on To with the balances of the receipt, and
//     there are no other entries: no posting is half applied;
//   - every posting has the idempotency record of its key, holding the
//     fingerprint recomputed from the posting, and there are no other
//     records: no key was applied twice;
//   - per account, the entries re-summed in journal order give each entry's
//     stored running balance and finally the account's balance, in its
//     currency, and each entry links to the account's previous one (the
//     chain Statement walks);
//   - customer balances are ≥ 0, and per currency all balances, the bank's
//     cash account included, sum to zero: money was neither created nor
//     destroyed;
//   - the owner index matches the accounts.
//
// A violation is ErrCorrupt listing up to 20 of them. The cost is one pass
// over every record: run it at start-up, after a crash, and from a
// periodic job, not per request.
func (l *Ledger) Verify(ctx context.Context) (Report, error) {
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	rep := Report{Totals: map[string]int64{}, CustomerTotals: map[string]int64{}, ByKind: map[Kind]uint64{}}
	var problems []string
	bad := func(format string, args ...any) {
		if len(problems) < maxProblems {
			problems = append(problems, fmt.Sprintf(format, args...))
		} else if len(problems) == maxProblems {
			problems = append(problems, "…")
		}
	}
	err := l.db.View(func(tx store.Tx) error {
		if err := verifyJournal(ctx, tx, &rep, bad); err != nil {
			return err
		}
		return verifyAccounts(tx, &rep, bad)
	})
	if err != nil {
		return rep, storeErr("verify", err)
	}
	if len(problems) > 0 {
		return rep, fmt.Errorf("%w: %s", ErrCorrupt, strings.Join(problems, "; "))
	}
	return rep, nil
}

// entrySum is an account's entries re-summed in journal order.
type entrySum struct {
	currency string
	sum      int64
	last     uint64 // seq of the newest entry
}

// verifyJournal walks the journal in order with each posting's two entries
// and idempotency record, re-summing every account, then compares the sums
// with the accounts.
func verifyJournal(ctx context.Context, tx store.Tx, rep *Report, bad func(string, ...any)) error {
	journal, entries, idem := tx.Bucket(bucketJournal), tx.Bucket(bucketEntries), tx.Bucket(bucketIdem)
	sums := map[string]*entrySum{}
	var want uint64 = 1
	// Entries are keyed seq ‖ leg, in journal order: one cursor walks them
	// beside the journal's (a page of rows per round trip on PostgreSQL,
	// not one Get per entry). Entries it steps over belong to no posting;
	// the count below reports them.
	ec := entries.Cursor()
	ek, ev := ec.First()
	entryAt := func(want []byte) []byte {
		for ek != nil && bytes.Compare(ek, want) < 0 {
			ek, ev = ec.Next()
		}
		if ek == nil || !bytes.Equal(ek, want) {
			return nil
		}
		v := ev
		ek, ev = ec.Next()
		return v
	}
	c := journal.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if want%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if len(k) != 8 {
			bad("journal key %x is malformed", k)
			continue
		}
		seq := binary.BigEndian.Uint64(k)
		if seq != want {
			bad("journal holds posting %d where %d was expected", seq, want)
			want = seq
		}
		want++
		rep.Postings++
		var r Receipt
		if err := decodeJSON(v, &r); err != nil {
			bad("posting %d: %v", seq, err)
			continue
		}
		rep.ByKind[r.Kind]++
		_, curErr := CurrencyExponent(r.Currency)
		switch {
		case r.Seq != seq || r.TransferID != transferID(seq):
			bad("posting %d names itself %d/%s", seq, r.Seq, r.TransferID)
		case r.Kind < KindTransfer || r.Kind > KindWithdrawal:
			bad("posting %d has kind %d", seq, r.Kind)
		case r.Amount <= 0 || r.From == r.To || curErr != nil:
			bad("posting %d is malformed (amount %d, %s → %s, currency %q)", seq, r.Amount, r.From, r.To, r.Currency)
		}
		for _, leg := range []struct {
			leg     byte
			account string
			amount  int64
			balance int64
		}{{legDebit, r.From, -r.Amount, r.FromBalance}, {legCredit, r.To, r.Amount, r.ToBalance}} {
			ev := entryAt(entryKey(seq, leg.leg))
			if ev == nil {
				bad("posting %s is half applied: no entry on %s", r.TransferID, leg.account)
				continue
			}
			var e entryRecord
			if err := decodeJSON(ev, &e); err != nil {
				bad("entry %d/%d: %v", seq, leg.leg, err)
				continue
			}
			s := sums[e.Account]
			if s == nil {
				s = &entrySum{currency: r.Currency}
				sums[e.Account] = s
			}
			s.sum += e.Amount
			if e.Account != leg.account || e.Amount != leg.amount || e.Balance != leg.balance {
				bad("entry %d/%d does not match posting %s", seq, leg.leg, r.TransferID)
			}
			if e.Balance != s.sum || e.Prev != s.last || s.currency != r.Currency {
				bad("entry %d/%d of %s: running balance %d, re-summed %d; previous entry %d, found %d",
					seq, leg.leg, e.Account, e.Balance, s.sum, e.Prev, s.last)
			}
			s.last = seq
		}
		p := r.posting()
		fp := p.fingerprint()
		iv := idem.Get([]byte(r.IdempotencyKey))
		if len(iv) != 40 || !bytes.Equal(iv[:32], fp[:]) || binary.BigEndian.Uint64(iv[32:]) != seq {
			bad("posting %s: idempotency record of key %q missing or not its own", r.TransferID, r.IdempotencyKey)
		}
	}
	if n := journal.Sequence(); n != rep.Postings {
		bad("journal sequence is %d but it holds %d postings", n, rep.Postings)
	}
	rep.Entries = entries.KeyN()
	if uint64(rep.Entries) != 2*rep.Postings {
		bad("%d entries for %d postings (each has exactly two)", rep.Entries, rep.Postings)
	}
	rep.IdempotencyKeys = idem.KeyN()
	if uint64(rep.IdempotencyKeys) != rep.Postings {
		bad("%d idempotency records for %d postings", rep.IdempotencyKeys, rep.Postings)
	}
	err := tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
		var a Account
		if err := decodeAccount(v, &a); err != nil {
			bad("account %s: %v", k, err)
			return nil
		}
		s := sums[a.ID]
		if s == nil {
			s = &entrySum{currency: a.Currency}
		}
		if a.ID != string(k) || a.Balance != s.sum || a.Currency != s.currency || a.LastSeq != s.last {
			bad("account %s: balance %d, entries sum to %d (or wrong id, currency or last posting)", k, a.Balance, s.sum)
		}
		delete(sums, a.ID)
		return nil
	})
	if err != nil {
		return err
	}
	for id := range sums {
		bad("entries on %s, which is not an account", id)
	}
	return nil
}

func verifyAccounts(tx store.Tx, rep *Report, bad func(string, ...any)) error {
	owners := tx.Bucket(bucketOwners)
	err := tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
		var a Account
		if decodeAccount(v, &a) != nil {
			return nil // reported by verifyEntries
		}
		rep.Accounts++
		rep.Totals[a.Currency] += a.Balance
		if a.System() {
			if a.ID != CashAccount(a.Currency) {
				bad("account %s has no owner", a.ID)
			}
			return nil
		}
		rep.CustomerTotals[a.Currency] += a.Balance
		if a.Balance < 0 {
			bad("customer account %s is overdrawn (%d)", a.ID, a.Balance)
		}
		if err := ValidateAccountID(a.ID); err != nil {
			bad("account %s: %v", a.ID, err)
		}
		if owners.Get(ownerKey(a.Owner, a.ID)) == nil {
			bad("account %s is missing from the owner index", a.ID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for cur, t := range rep.Totals {
		if t != 0 {
			bad("%s balances sum to %d, not 0: money was created or destroyed", cur, t)
		}
	}
	return owners.ForEach(func(k, _ []byte) error {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			bad("owner index key %q is malformed", k)
			return nil
		}
		_, err := getAccount(tx, string(k[i+1:]))
		if errors.Is(err, ErrAccountNotFound) {
			bad("owner index names missing account %s", k[i+1:])
		}
		return nil
	})
}
