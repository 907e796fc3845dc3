package ledger

import (
	"fmt"
	"time"

	"github.com/keyward/keyward/banking/store"
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
	// MaxBatchSize is the most transfers group-committed by one store
	// transaction (store.DB.SetBatchLimits); set it near the number of concurrent
	// callers. A batch commits when it is full or MaxBatchDelay after its
	// first transfer: with fewer callers than MaxBatchSize every commit
	// waits for the timer; with more, full batches queue behind each
	// other, which is fine. Default 64.
	MaxBatchSize int
	// MaxBatchDelay is how long a transfer waits for others to share its
	// commit (store.DB.SetBatchLimits). Default 2 ms.
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
	// OnPost, when set, is called after every posting's store transaction
	// returns, with the posting's kind, how long the transaction took (the
	// wait for its batch's company included: what a caller waits for the
	// commit) and the store's error (nil when it committed, whether the
	// posting was applied, replayed or refused inside it). banking counts
	// ledger commit latency through it. It must be fast and must not call
	// the ledger.
	OnPost func(kind Kind, took time.Duration, err error)
}

// Ledger is a double-entry ledger in one banking store. All its methods
// are safe for concurrent use.
type Ledger struct {
	db        store.DB
	ownsDB    bool
	loc       *time.Location
	now       func() time.Time
	screen    func(string) error
	defLimits map[string]Limits
	maxLimits map[string]Limits
	prefix    string
	onPost    func(Kind, time.Duration, error)
}

// Open opens (or creates, mode 0600) the ledger's own bbolt file at path
// (store.OpenBolt). bbolt locks the file: a second process waits
// Options.Timeout (default 5 s) and fails. Close closes it.
func Open(path string, opts Options) (*Ledger, error) {
	db, err := store.OpenBolt(path, opts.Timeout)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
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
// the ledger's buckets. It sets the store's batch limits (SetBatchLimits),
// which are per database. Close does not close a database given to New.
func New(db store.DB, opts Options) (*Ledger, error) {
	l := &Ledger{db: db, loc: opts.Location, now: opts.Now, screen: opts.Screen, onPost: opts.OnPost,
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
	size, delay := DefaultMaxBatchSize, DefaultMaxBatchDelay
	if opts.MaxBatchSize > 0 {
		size = opts.MaxBatchSize
	}
	if opts.MaxBatchDelay > 0 {
		delay = opts.MaxBatchDelay
	}
	db.SetBatchLimits(size, delay)
	if err := db.Ensure(allBuckets...); err != nil {
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
