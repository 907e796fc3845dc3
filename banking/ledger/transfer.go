package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/keyward/keyward/banking/store"
)

// Receipt is the result of a posting, as stored in the journal.
type Receipt struct {
	TransferID     string    `json:"transfer_id"` // "T" and the zero-padded Seq
	Seq            uint64    `json:"seq"`         // journal sequence number, from 1, without gaps
	Kind           Kind      `json:"kind"`
	IdempotencyKey string    `json:"idempotency_key"`
	From           string    `json:"from"` // debited
	To             string    `json:"to"`   // credited
	Amount         int64     `json:"amount"`
	Currency       string    `json:"currency"`
	Memo           string    `json:"memo,omitempty"`
	Reference      string    `json:"reference,omitempty"`
	Time           time.Time `json:"time"`         // UTC
	FromBalance    int64     `json:"from_balance"` // balances right after this posting
	ToBalance      int64     `json:"to_balance"`
	// Replayed is true when this result was stored by an earlier request
	// with the same idempotency key: nothing was posted this time.
	Replayed bool `json:"-"`
}

// TransferRequest moves money between two customer accounts of one
// currency. Every field but Memo and Reference is required.
type TransferRequest struct {
	// IdempotencyKey names the request (1 to 128 printable ASCII
	// characters). Keys are global to the ledger: the HTTP layer should
	// prefix them with the customer id.
	IdempotencyKey string
	From           string // payer account number
	To             string // payee account number
	Amount         int64  // minor units, > 0
	Currency       string // must be both accounts' currency
	Memo           string // up to 140 characters, shown on statements
	// Reference ties the posting to what the customer signed (e.g. the
	// order's EndToEndId): up to 64 printable ASCII characters.
	Reference string
}

// CashRequest is a deposit (bank cash → Account) or a withdrawal (Account
// → bank cash): the only ways money enters or leaves customer accounts.
type CashRequest struct {
	IdempotencyKey string
	Account        string
	Amount         int64
	Currency       string
	Memo           string
	Reference      string
}

// posting is what post writes, whatever the kind.
type posting struct {
	kind            Kind
	key             string
	from, to        string
	amount          int64
	currency        string
	memo, reference string
	screened        bool // the payee is screened (Options.Screen)
}

// fingerprint identifies a request for idempotency: the same key with a
// different fingerprint is ErrIdempotencyConflict. Fields are
// length-prefixed, so no two requests share an encoding.
func (p *posting) fingerprint() [32]byte {
	h := sha256.New()
	var n [8]byte
	field := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(p.kind.String())
	field(p.key)
	field(p.from)
	field(p.to)
	field(strconv.FormatInt(p.amount, 10))
	field(p.currency)
	field(p.memo)
	field(p.reference)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func (r *Receipt) posting() posting {
	return posting{kind: r.Kind, key: r.IdempotencyKey, from: r.From, to: r.To, amount: r.Amount,
		currency: r.Currency, memo: r.Memo, reference: r.Reference}
}

func validateCommon(key string, amount int64, currency, memo, reference string) error {
	if err := validToken("idempotency key", key, 128); err != nil {
		return err
	}
	if _, err := CurrencyExponent(currency); err != nil {
		return err
	}
	if amount <= 0 {
		return fmt.Errorf("%w: the amount must be more than zero", ErrInvalidAmount)
	}
	if err := validText("memo", memo, 140); err != nil {
		return err
	}
	if reference != "" {
		if err := validToken("reference", reference, 64); err != nil {
			return err
		}
	}
	return nil
}

// Transfer posts a transfer between two customer accounts: the payer is
// debited, the payee credited, both balances, the payer's daily usage, the
// journal and the idempotency record change in one transaction, group
// committed with concurrent transfers (db.Batch). The receipt holds both
// balances after the posting.
//
// Idempotency: a request whose key was already used returns the stored
// receipt with Replayed set (its balances are those of then), even if the
// accounts have changed since, provided every field is the same; otherwise
// it is ErrIdempotencyConflict. A refused request stores nothing: its key
// stays free for a corrected request.
//
// Refusals: ErrInvalidArgument / ErrInvalidAmount / ErrUnknownCurrency
// (the request), ErrSameAccount, ErrBlocked (payee screened out),
// ErrAccountNotFound, ErrAccountFrozen, ErrAccountClosed,
// ErrCurrencyMismatch, *LimitError (ErrLimitExceeded), ErrInsufficientFunds.
// The checks run in this order.
//
// ctx is checked before the request joins a group commit; once it has, it
// is committed or refused whatever ctx does. After a timeout or a crash,
// repeat the request with the same key to learn its fate.
func (l *Ledger) Transfer(ctx context.Context, req TransferRequest) (Receipt, error) {
	if err := validateCommon(req.IdempotencyKey, req.Amount, req.Currency, req.Memo, req.Reference); err != nil {
		return Receipt{}, err
	}
	if err := ValidateAccountID(req.From); err != nil {
		return Receipt{}, fmt.Errorf("payer: %w", err)
	}
	if err := ValidateAccountID(req.To); err != nil {
		return Receipt{}, fmt.Errorf("payee: %w", err)
	}
	if req.From == req.To {
		return Receipt{}, fmt.Errorf("%w: %s", ErrSameAccount, req.From)
	}
	return l.post(ctx, posting{kind: KindTransfer, key: req.IdempotencyKey, from: req.From, to: req.To,
		amount: req.Amount, currency: req.Currency, memo: req.Memo, reference: req.Reference, screened: true})
}

// Deposit credits a customer account against the bank's cash account of
// the currency (created by the first deposit). The account is screened
// like a payee. Limits do not apply. Idempotency and refusals as Transfer.
func (l *Ledger) Deposit(ctx context.Context, req CashRequest) (Receipt, error) {
	if err := validateCommon(req.IdempotencyKey, req.Amount, req.Currency, req.Memo, req.Reference); err != nil {
		return Receipt{}, err
	}
	if err := ValidateAccountID(req.Account); err != nil {
		return Receipt{}, err
	}
	return l.post(ctx, posting{kind: KindDeposit, key: req.IdempotencyKey, from: CashAccount(req.Currency), to: req.Account,
		amount: req.Amount, currency: req.Currency, memo: req.Memo, reference: req.Reference, screened: true})
}

// Withdraw debits a customer account to the bank's cash account. Limits do
// not apply (a teller operation); the balance must cover it. Idempotency
// and refusals as Transfer.
func (l *Ledger) Withdraw(ctx context.Context, req CashRequest) (Receipt, error) {
	if err := validateCommon(req.IdempotencyKey, req.Amount, req.Currency, req.Memo, req.Reference); err != nil {
		return Receipt{}, err
	}
	if err := ValidateAccountID(req.Account); err != nil {
		return Receipt{}, err
	}
	return l.post(ctx, posting{kind: KindWithdrawal, key: req.IdempotencyKey, from: req.Account, to: CashAccount(req.Currency),
		amount: req.Amount, currency: req.Currency, memo: req.Memo, reference: req.Reference})
}

// post writes one posting through db.Batch. The store may run the function
// more than once (bbolt retries a batch whose other member failed,
// PostgreSQL a serialisation conflict), so it reads
// every input inside its transaction, writes nothing outside it, and
// reports a refusal through the variables it resets on entry, returning nil
// so that a refusal never rolls back the other members of its batch.
func (l *Ledger) post(ctx context.Context, p posting) (Receipt, error) {
	if err := ctx.Err(); err != nil {
		return Receipt{}, err
	}
	var screenErr error // decided before the transaction; used only if the key is new
	if p.screened {
		screenErr = l.screenAccount(p.to)
	}
	fp := p.fingerprint()
	now := l.now().UTC()
	day, dayEnd := l.dayOf(now)

	var res Receipt
	var refused error
	start := time.Now()
	err := l.db.Batch(func(tx store.Tx) error {
		res, refused = Receipt{}, nil
		if pf, ok := tx.(store.Prefetcher); ok { // one round trip for what follows (PostgreSQL)
			pf.Prefetch(store.Keys{Bucket: bucketIdem, Keys: [][]byte{[]byte(p.key)}},
				store.Keys{Bucket: bucketAccounts, Keys: [][]byte{[]byte(p.from), []byte(p.to)}})
		}
		if v := tx.Bucket(bucketIdem).Get([]byte(p.key)); v != nil {
			r, err := replay(tx, v, fp, p.key)
			if err != nil {
				if isRefusal(err) {
					refused = err
					return nil
				}
				return err
			}
			res = r
			return nil
		}
		if screenErr != nil {
			refused = screenErr
			return nil
		}
		from, to, err := l.loadParties(tx, &p, now)
		if err != nil {
			if isRefusal(err) {
				refused = err
				return nil
			}
			return err
		}
		if refused = l.check(&p, &from, &to, day, dayEnd); refused != nil {
			return nil
		}
		r, err := apply(tx, &p, fp, &from, &to, day, now)
		res = r
		return err
	})
	if l.onPost != nil {
		l.onPost(p.kind, time.Since(start), err)
	}
	switch {
	case err != nil:
		return Receipt{}, storeErr("post "+p.kind.String(), err)
	case refused != nil:
		return Receipt{}, refused
	}
	return res, nil
}

// replay returns the stored receipt of an idempotency record v.
func replay(tx store.Tx, v []byte, fp [32]byte, key string) (Receipt, error) {
	var r Receipt
	if len(v) != 40 {
		return r, fmt.Errorf("%w: idempotency record %q has %d bytes", ErrCorrupt, key, len(v))
	}
	if !bytes.Equal(v[:32], fp[:]) {
		return r, fmt.Errorf("%w: %q; send a new key for a new request, or repeat the original exactly", ErrIdempotencyConflict, truncate(key, 32))
	}
	seq := binary.BigEndian.Uint64(v[32:])
	jv := tx.Bucket(bucketJournal).Get(u64(seq))
	if jv == nil {
		return r, fmt.Errorf("%w: idempotency record %q names missing posting %d", ErrCorrupt, key, seq)
	}
	if err := decodeJSON(jv, &r); err != nil {
		return r, err
	}
	r.Replayed = true
	return r, nil
}

// isRefusal tells a refusal (reported, batch goes on) from a failure
// (returned, batch retried).
func isRefusal(err error) bool {
	code := ErrorCode(err)
	return code != "" && code != "ledger_corrupt" && code != "ledger_unavailable"
}

// loadParties reads both accounts inside tx; a missing cash account is
// made (in memory; apply stores it).
func (l *Ledger) loadParties(tx store.Tx, p *posting, now time.Time) (from, to Account, err error) {
	load := func(id string) (Account, error) {
		a, err := getAccount(tx, id)
		if err != nil && id == CashAccount(p.currency) && ErrorCode(err) == "account_not_found" {
			return Account{ID: id, Currency: p.currency, State: StateOpen, Created: now}, nil
		}
		return a, err
	}
	if from, err = load(p.from); err != nil {
		return from, to, err
	}
	to, err = load(p.to)
	return from, to, err
}

// check applies the business rules, in the documented order.
func (l *Ledger) check(p *posting, from, to *Account, day string, dayEnd time.Time) error {
	if err := from.usable(); err != nil {
		return err
	}
	if err := to.usable(); err != nil {
		return err
	}
	for _, a := range []*Account{from, to} {
		if a.Currency != p.currency {
			return fmt.Errorf("%w: account %s holds %s, the request is in %s", ErrCurrencyMismatch, a.ID, a.Currency, p.currency)
		}
	}
	if p.kind == KindTransfer {
		sent := from.sentOn(day)
		lim := from.Limits
		left := min(lim.PerTransaction, max(lim.Daily-sent, 0))
		switch {
		case p.amount > lim.PerTransaction:
			return &LimitError{Account: from.ID, Currency: p.currency, Kind: LimitPerTransaction, Limit: lim.PerTransaction,
				Requested: p.amount, UsedToday: sent, Remaining: left, ResetsAt: dayEnd}
		case p.amount > lim.Daily-sent:
			return &LimitError{Account: from.ID, Currency: p.currency, Kind: LimitDaily, Limit: lim.Daily,
				Requested: p.amount, UsedToday: sent, Remaining: left, ResetsAt: dayEnd}
		}
	}
	if !from.System() && from.Balance < p.amount {
		return fmt.Errorf("%w: account %s holds %s %s, %s %s requested", ErrInsufficientFunds, from.ID,
			FormatAmount(from.Balance, p.currency), p.currency, FormatAmount(p.amount, p.currency), p.currency)
	}
	if from.Balance < math.MinInt64+p.amount || to.Balance > math.MaxInt64-p.amount {
		return fmt.Errorf("%w: the balance would overflow", ErrInvalidAmount)
	}
	return nil
}

// apply writes the posting: journal record, two entries, both accounts
// and the idempotency record.
func apply(tx store.Tx, p *posting, fp [32]byte, from, to *Account, day string, now time.Time) (Receipt, error) {
	journal := tx.Bucket(bucketJournal)
	seq, err := journal.NextSequence()
	if err != nil {
		return Receipt{}, err
	}
	debit := entryRecord{Account: from.ID, Amount: -p.amount, Balance: from.Balance - p.amount, Prev: from.LastSeq}
	credit := entryRecord{Account: to.ID, Amount: p.amount, Balance: to.Balance + p.amount, Prev: to.LastSeq}
	from.Balance, to.Balance = debit.Balance, credit.Balance
	from.LastSeq, to.LastSeq = seq, seq
	if p.kind == KindTransfer {
		from.DaySent = from.sentOn(day) + p.amount
		from.Day = day
	}
	r := Receipt{TransferID: transferID(seq), Seq: seq, Kind: p.kind, IdempotencyKey: p.key, From: from.ID, To: to.ID,
		Amount: p.amount, Currency: p.currency, Memo: p.memo, Reference: p.reference, Time: now,
		FromBalance: from.Balance, ToBalance: to.Balance}
	// The journal and the entries only ever grow at their end: pack pages
	// full instead of splitting them half empty.
	appendOnly(journal)
	if err := putJSON(journal, u64(seq), &r); err != nil {
		return Receipt{}, err
	}
	entries := tx.Bucket(bucketEntries)
	appendOnly(entries)
	if err := putJSON(entries, entryKey(seq, legDebit), &debit); err != nil {
		return Receipt{}, err
	}
	if err := putJSON(entries, entryKey(seq, legCredit), &credit); err != nil {
		return Receipt{}, err
	}
	accounts := tx.Bucket(bucketAccounts)
	if err := accounts.Put([]byte(from.ID), encodeAccount(from)); err != nil {
		return Receipt{}, err
	}
	if err := accounts.Put([]byte(to.ID), encodeAccount(to)); err != nil {
		return Receipt{}, err
	}
	idem := make([]byte, 0, 40)
	idem = binary.BigEndian.AppendUint64(append(idem, fp[:]...), seq)
	if err := tx.Bucket(bucketIdem).Put([]byte(p.key), idem); err != nil {
		return Receipt{}, err
	}
	return r, nil
}

func transferID(seq uint64) string { return fmt.Sprintf("T%012d", seq) }

func parseTransferID(id string) (uint64, bool) {
	if len(id) < 13 || len(id) > 21 || id[0] != 'T' || !allDigits(id[1:]) {
		return 0, false
	}
	seq, err := strconv.ParseUint(id[1:], 10, 64)
	if err != nil || seq == 0 || transferID(seq) != id {
		return 0, false
	}
	return seq, true
}
