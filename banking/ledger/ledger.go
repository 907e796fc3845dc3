package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets; see the package documentation for their layout.
var (
	bucketAccounts = []byte("ledger-accounts")
	bucketOwners   = []byte("ledger-owners")
	bucketJournal  = []byte("ledger-journal")
	bucketEntries  = []byte("ledger-entries")
	bucketIdem     = []byte("ledger-idempotency")
	allBuckets     = [][]byte{bucketAccounts, bucketOwners, bucketJournal, bucketEntries, bucketIdem}
)

// Defaults of Options.
const (
	DefaultMaxBatchSize  = 64
	DefaultMaxBatchDelay = 2 * time.Millisecond
	DefaultZone          = "Asia/Shanghai"
	DefaultAccountPrefix = "62999"
)

// DefaultLimits are the limits of a new CNY account when Options.DefaultLimits
// says nothing: 50,000.00 per transfer and 200,000.00 a day.
var DefaultLimits = map[string]Limits{"CNY": {PerTransaction: 50_000_00, Daily: 200_000_00}}

// DefaultMaxLimits is the bank's ceiling for CNY when Options.MaxLimits says
// nothing: SetLimits refuses more than 1,000,000.00 per transfer or
// 5,000,000.00 a day.
var DefaultMaxLimits = map[string]Limits{"CNY": {PerTransaction: 1_000_000_00, Daily: 5_000_000_00}}

// Options tune a ledger. Zero values take the defaults.
type Options struct {
	// MaxBatchSize is the most transfers group-committed by one bbolt
	// transaction (db.MaxBatchSize); set it near the number of concurrent
	// callers. A batch commits when it is full or MaxBatchDelay after its
	// first transfer: with fewer callers than MaxBatchSize every commit
	// waits for the timer; with more, full batches queue behind each
	// other, which is fine. Default 64.
	MaxBatchSize int
	// MaxBatchDelay is how long a transfer waits for others to share its
	// commit (db.MaxBatchDelay). Default 2 ms.
	MaxBatchDelay time.Duration
	// Location decides where a day ends for daily limits. Default
	// Asia/Shanghai (UTC+8 when the system has no zone database).
	Location *time.Location
	// DefaultLimits, per currency, are given to accounts opened without
	// limits. nil means the package's DefaultLimits. Opening an account in
	// a currency with neither is refused.
	DefaultLimits map[string]Limits
	// MaxLimits, per currency, is the ceiling SetLimits and OpenAccount
	// enforce; a currency without one has no ceiling. nil means the
	// package's DefaultMaxLimits.
	MaxLimits map[string]Limits
	// AccountPrefix starts generated account numbers (digits, 1 to 12 of
	// them). Default "62999".
	AccountPrefix string
	// Screen, when set, is asked about every account being opened and
	// every payee of a transfer or deposit (R-SRV-6); an error refuses the
	// request with ErrBlocked. It must be fast and must not call the
	// ledger: blacklist.Watcher.CheckAccount fits.
	Screen func(accountID string) error
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
	// Timeout is how long Open waits for another process's file lock.
	// Default 5 s.
	Timeout time.Duration
}

// Ledger is a double-entry ledger in one bbolt database. All its methods
// are safe for concurrent use.
type Ledger struct {
	db        *bolt.DB
	ownsDB    bool
	loc       *time.Location
	now       func() time.Time
	screen    func(string) error
	defLimits map[string]Limits
	maxLimits map[string]Limits
	prefix    string
}

// Open opens (or creates, mode 0600) the ledger file at path. bbolt locks
// the file: a second process waits Options.Timeout and fails.
func Open(path string, opts Options) (*Ledger, error) {
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout,
		// The freelist is rebuilt at open instead of written by every
		// commit: less I/O per group commit (bbolt documents it as safe).
		NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", ErrStore, path, err)
	}
	l, err := New(db, opts)
	if err != nil {
		db.Close()
		return nil, err
	}
	l.ownsDB = true
	return l, nil
}

// New uses an already open database (shared with other stores), creating
// the ledger's buckets. It sets db.MaxBatchSize and db.MaxBatchDelay, which
// are per database. Close does not close a database given to New.
func New(db *bolt.DB, opts Options) (*Ledger, error) {
	l := &Ledger{db: db, loc: opts.Location, now: opts.Now, screen: opts.Screen,
		defLimits: opts.DefaultLimits, maxLimits: opts.MaxLimits, prefix: opts.AccountPrefix}
	if l.loc == nil {
		loc, err := time.LoadLocation(DefaultZone)
		if err != nil {
			loc = time.FixedZone("CST", 8*3600) // China has kept UTC+8 without DST since 1991
		}
		l.loc = loc
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.defLimits == nil {
		l.defLimits = DefaultLimits
	}
	if l.maxLimits == nil {
		l.maxLimits = DefaultMaxLimits
	}
	if l.prefix == "" {
		l.prefix = DefaultAccountPrefix
	}
	if len(l.prefix) > 12 || !allDigits(l.prefix) || l.prefix[0] == '0' {
		return nil, fmt.Errorf("%w: account prefix %q must be 1 to 12 digits, not starting with 0", ErrInvalidArgument, l.prefix)
	}
	for cur, lim := range l.defLimits {
		if _, err := CurrencyExponent(cur); err != nil {
			return nil, fmt.Errorf("default limits: %w", err)
		}
		if err := lim.validate(cur, l.ceiling(cur)); err != nil {
			return nil, fmt.Errorf("default limits for %s: %w", cur, err)
		}
	}
	db.MaxBatchSize = DefaultMaxBatchSize
	if opts.MaxBatchSize > 0 {
		db.MaxBatchSize = opts.MaxBatchSize
	}
	db.MaxBatchDelay = DefaultMaxBatchDelay
	if opts.MaxBatchDelay > 0 {
		db.MaxBatchDelay = opts.MaxBatchDelay
	}
	err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("bucket %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: prepare ledger: %w", ErrStore, err)
	}
	return l, nil
}

// Close closes the database if Open opened it.
func (l *Ledger) Close() error {
	if !l.ownsDB {
		return nil
	}
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("%w: close: %w", ErrStore, err)
	}
	return nil
}

// Location is the zone in which days end for daily limits.
func (l *Ledger) Location() *time.Location { return l.loc }

func (l *Ledger) ceiling(currency string) *Limits {
	if c, ok := l.maxLimits[currency]; ok {
		return &c
	}
	return nil
}

// dayOf returns the calendar day of t in the ledger's zone and when it ends.
func (l *Ledger) dayOf(t time.Time) (string, time.Time) {
	lt := t.In(l.loc)
	y, m, d := lt.Date()
	return lt.Format(time.DateOnly), time.Date(y, m, d+1, 0, 0, 0, 0, l.loc)
}

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
	err := l.db.Update(func(tx *bolt.Tx) error {
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
	err := l.db.View(func(tx *bolt.Tx) error {
		a, err := getAccount(tx, id)
		acc = a
		return err
	})
	return acc, storeErr("read account", err)
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
	err := l.db.View(func(tx *bolt.Tx) error {
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
	err := l.db.Update(func(tx *bolt.Tx) error {
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
	err := l.db.View(func(tx *bolt.Tx) error {
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
	err := l.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketJournal).Get(u64(seq))
		if v == nil {
			return fmt.Errorf("%w: %s", ErrTransferNotFound, transferID)
		}
		return decodeJSON(v, &r)
	})
	return r, storeErr("read posting", err)
}

// --- storage helpers ---

func getAccount(tx *bolt.Tx, id string) (Account, error) {
	var a Account
	v := tx.Bucket(bucketAccounts).Get([]byte(id))
	if v == nil {
		return a, fmt.Errorf("%w: %s", ErrAccountNotFound, truncate(id, 24))
	}
	err := decodeAccount(v, &a)
	return a, err
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: encode %x: %w", ErrCorrupt, k, err)
	}
	return b.Put(k, buf)
}

func decodeJSON(v []byte, dst any) error {
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("%w: decode: %w", ErrCorrupt, err)
	}
	return nil
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func ownerKey(owner, id string) []byte {
	return append(append([]byte(owner), 0), id...)
}

// entryRecord is one leg of a posting as stored; Prev links an account's
// entries newest to oldest, starting at Account.LastSeq.
type entryRecord struct {
	Account string `json:"account"`
	Amount  int64  `json:"amount"`  // negative: debit
	Balance int64  `json:"balance"` // the account's balance after the posting
	Prev    uint64 `json:"prev"`    // the account's previous posting (0: none)
}

// Legs of a posting in the entries bucket.
const (
	legDebit  byte = 0
	legCredit byte = 1
)

// entryKey is seq ‖ leg: entries are appended in journal order.
func entryKey(seq uint64, leg byte) []byte {
	k := make([]byte, 9)
	binary.BigEndian.PutUint64(k, seq)
	k[8] = leg
	return k
}

// legOf reads posting seq and the entry of account id in it. The errors
// carry no sentinel; callers decide whether a miss is corruption.
func legOf(tx *bolt.Tx, seq uint64, id string) (Receipt, entryRecord, error) {
	var r Receipt
	var e entryRecord
	v := tx.Bucket(bucketJournal).Get(u64(seq))
	if v == nil {
		return r, e, fmt.Errorf("no posting %d", seq)
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, e, fmt.Errorf("posting %d: %w", seq, err)
	}
	leg := legDebit
	switch id {
	case r.From:
	case r.To:
		leg = legCredit
	default:
		return r, e, fmt.Errorf("posting %d does not touch account %s", seq, id)
	}
	ev := tx.Bucket(bucketEntries).Get(entryKey(seq, leg))
	if ev == nil {
		return r, e, fmt.Errorf("posting %d has no entry for %s", seq, id)
	}
	if err := json.Unmarshal(ev, &e); err != nil || e.Account != id {
		return r, e, fmt.Errorf("entry %d/%d is not %s's (%v)", seq, leg, id, err)
	}
	return r, e, nil
}

// storeErr leaves the ledger's own errors and context errors as they are
// and marks anything else (bbolt, I/O) ErrStore.
func storeErr(op string, err error) error {
	if err == nil {
		return nil
	}
	for _, c := range ErrorCodes {
		if errors.Is(err, c.Err) {
			return err
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrStore, op, err)
}
