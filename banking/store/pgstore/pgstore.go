package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-migrate/migrate/v4"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/keyward/keyward/banking/store"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// MigrationsTable is the table golang-migrate keeps the schema version in.
const MigrationsTable = "kw_schema_migrations"

// Defaults of Config.
const (
	DefaultTxTimeout     = 5 * time.Second
	DefaultViewTimeout   = 10 * time.Minute
	DefaultMaxBatchSize  = 1000 // as bbolt
	DefaultMaxBatchDelay = 10 * time.Millisecond
	// MaxAttempts bounds how many times one transaction runs when it loses
	// serialisation races or its connection (before COMMIT).
	MaxAttempts = 20
)

// Config configures Open.
type Config struct {
	// DSN is a libpq connection string (URL or key=value). For a primary
	// with a standby, name both hosts and add
	// target_session_attrs=read-write so that a new connection finds the
	// writable one after a failover.
	DSN string
	// Password, when set, is the database password (cmd/banking reads it
	// from store.postgres.password_file or the sealed secrets file), so the
	// DSN — which appears in configs and logs — need not carry it.
	Password string
	// MaxConns caps the pool (default 4×GOMAXPROCS, at least 8).
	MaxConns int32
	// TxTimeout bounds one attempt of one transaction, pool wait included
	// (default 5 s).
	TxTimeout time.Duration
	// ViewTimeout bounds one View (default DefaultViewTimeout). Reads wait
	// for no lock and no standby, so a View runs long only when it scans
	// the whole store — the ledger's verification over millions of
	// postings — which TxTimeout, sized for a request, would cut short.
	ViewTimeout time.Duration
	// Logger receives retries given up, lost connections, commits of
	// unknown outcome and migrations (never a key or a value). Default:
	// discard.
	Logger *slog.Logger
}

// DB is a banking store on PostgreSQL; it implements store.DB.
type DB struct {
	pool        *pgxpool.Pool
	txTimeout   time.Duration
	viewTimeout time.Duration
	log         *slog.Logger

	bucketIDs sync.Map // string(name) → int32; buckets are never dropped

	batchMu       sync.Mutex
	batchRun      sync.Mutex // held by the running batch: one at a time per node
	batch         *batch
	maxBatchSize  int
	maxBatchDelay time.Duration

	// gate lets writing attempts run side by side (read-locked) until one
	// loses a serialisation race: its next attempt takes the write lock,
	// so it runs alone on this node and is not beaten again by its
	// neighbours (optimistic first, pessimistic after a conflict).
	gate sync.RWMutex

	closed atomic.Bool
	stats  struct {
		retries, conflicts, connLost, commitUnknown, exhausted atomic.Uint64
		views, updates, batches, batchedCalls, batchNanos      atomic.Uint64
	}
}

var _ store.DB = (*DB)(nil)

// Open connects to PostgreSQL, applies the schema migrations this program
// knows (under golang-migrate's advisory lock, so nodes starting together
// are safe), and refuses a database whose schema is newer or dirty.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if cfg.TxTimeout <= 0 {
		cfg.TxTimeout = DefaultTxTimeout
	}
	if cfg.ViewTimeout <= 0 {
		cfg.ViewTimeout = DefaultViewTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = int32(max(8, 4*runtime.GOMAXPROCS(0)))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx's parse errors may quote the connection string, password
		// included: say only what is wrong in general.
		return nil, fmt.Errorf("pgstore: the DSN is not a valid PostgreSQL connection string (check its syntax; the value is not shown because it may hold a password)")
	}
	pcfg.MaxConns = cfg.MaxConns
	if cfg.Password != "" {
		pcfg.ConnConfig.Password = cfg.Password // every host of a multi-host DSN
	}
	rp := pcfg.ConnConfig.RuntimeParams
	if rp["application_name"] == "" {
		rp["application_name"] = "keyward-banking" // what a DBA sees in pg_stat_activity
	}
	if rp["idle_in_transaction_session_timeout"] == "" {
		// A transaction abandoned by a node that died mid-request holds
		// its locks until the server ends it (a node that died closes its
		// connections, so this is for partitions). At least 10 s: a View's
		// caller may pause between reads longer than a write may last.
		rp["idle_in_transaction_session_timeout"] = fmt.Sprint(max(2*cfg.TxTimeout, 10*time.Second).Milliseconds())
	}
	if err := migrateUp(ctx, pcfg.ConnConfig, cfg.Logger); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, &Error{Op: "open", Err: err}
	}
	return &DB{
		pool:          pool,
		txTimeout:     cfg.TxTimeout,
		viewTimeout:   cfg.ViewTimeout,
		log:           cfg.Logger,
		maxBatchSize:  DefaultMaxBatchSize,
		maxBatchDelay: DefaultMaxBatchDelay,
	}, nil
}

// SchemaVersion is the newest migration this program carries.
func SchemaVersion() uint {
	v, err := newestMigration()
	if err != nil {
		panic(err) // the embedded files are checked by the tests
	}
	return v
}

func newestMigration() (uint, error) {
	src, err := iofs.New(migrationFiles, "migrations")
	if err != nil {
		return 0, err
	}
	defer src.Close()
	v, err := src.First()
	if err != nil {
		return 0, err
	}
	for {
		next, err := src.Next(v)
		if errors.Is(err, fs.ErrNotExist) {
			return v, nil
		}
		if err != nil {
			return 0, err
		}
		v = next
	}
}

func migrateUp(ctx context.Context, cc *pgx.ConnConfig, log *slog.Logger) error {
	known, err := newestMigration()
	if err != nil {
		return fmt.Errorf("pgstore: embedded migrations: %w", err)
	}
	sqlDB := stdlib.OpenDB(*cc)
	defer sqlDB.Close()
	if err := sqlDB.PingContext(ctx); err != nil {
		return &Error{Op: "open", Err: err}
	}
	drv, err := migratepgx.WithInstance(sqlDB, &migratepgx.Config{MigrationsTable: MigrationsTable})
	if err != nil {
		return &Error{Op: "open", Err: fmt.Errorf("migrations table: %w", err)}
	}
	src, err := iofs.New(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("pgstore: embedded migrations: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", drv)
	if err != nil {
		return &Error{Op: "open", Err: err}
	}
	defer m.Close()
	// Too new is checked before Up (a version only grows, so a check
	// outside the lock is sound); dirty only under the lock, by Up itself:
	// outside it, another node's migration in progress looks dirty.
	tooNew := func() error {
		v, _, err := m.Version()
		switch {
		case errors.Is(err, migrate.ErrNilVersion):
			return nil
		case err != nil:
			return &Error{Op: "open", Err: err}
		case v > known:
			return fmt.Errorf("%w: the database is at schema version %d, this program knows up to %d; run a Keyward as new as the one that migrated it", ErrSchemaTooNew, v, known)
		}
		return nil
	}
	if err := tooNew(); err != nil {
		return err
	}
	var dirty migrate.ErrDirty
	switch err := m.Up(); {
	case errors.Is(err, migrate.ErrNoChange):
	case errors.As(err, &dirty):
		return fmt.Errorf("%w: version %d in table %s; repair the schema by hand, then set dirty=false", ErrSchemaDirty, dirty.Version, MigrationsTable)
	case err != nil:
		if terr := tooNew(); terr != nil { // a newer node migrated meanwhile
			return terr
		}
		return &Error{Op: "open", Err: fmt.Errorf("applying schema migrations: %w", err)}
	default:
		log.Info("pgstore: schema migrated", "to", known)
	}
	return nil
}

// SetBatchLimits sets the most functions one Batch transaction holds and
// how long the first waits for company (0 leaves a value as is).
func (db *DB) SetBatchLimits(maxSize int, maxDelay time.Duration) {
	db.batchMu.Lock()
	defer db.batchMu.Unlock()
	if maxSize > 0 {
		db.maxBatchSize = maxSize
	}
	if maxDelay > 0 {
		db.maxBatchDelay = maxDelay
	}
}

// Backend returns "postgres".
func (db *DB) Backend() string { return "postgres" }

// Shared returns true: other nodes write the same database.
func (db *DB) Shared() bool { return true }

// Close closes the pool; transactions still running fail.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return nil
	}
	db.pool.Close()
	return nil
}

// Stats counts what happened to transactions since Open.
type Stats struct {
	Retries       uint64        // attempts run again
	Conflicts     uint64        // serialisation failures, deadlocks, racing inserts seen
	ConnLost      uint64        // connections lost (the pool was reset each time)
	CommitUnknown uint64        // commits whose outcome was unknown
	Exhausted     uint64        // transactions given up after MaxAttempts
	Views         uint64        // View calls
	Updates       uint64        // Update calls (a batch function re-run alone counts here)
	Batches       uint64        // Batch transactions committed or failed (attempts not counted)
	BatchedCalls  uint64        // functions those batches carried
	BatchTime     time.Duration // time batches spent running, retries included
}

// Stats returns the counters.
func (db *DB) Stats() Stats {
	return Stats{
		Retries:       db.stats.retries.Load(),
		Conflicts:     db.stats.conflicts.Load(),
		ConnLost:      db.stats.connLost.Load(),
		CommitUnknown: db.stats.commitUnknown.Load(),
		Exhausted:     db.stats.exhausted.Load(),
		Views:         db.stats.views.Load(),
		Updates:       db.stats.updates.Load(),
		Batches:       db.stats.batches.Load(),
		BatchedCalls:  db.stats.batchedCalls.Load(),
		BatchTime:     time.Duration(db.stats.batchNanos.Load()),
	}
}

// View runs fn in a REPEATABLE READ READ ONLY transaction: one snapshot.
func (db *DB) View(fn func(store.Tx) error) error {
	db.stats.views.Add(1)
	return db.run("view", false, func(t *tx) error { return fn(t) })
}

// Update runs fn in a SERIALIZABLE transaction, re-running it (at most
// MaxAttempts times) when it loses a serialisation race.
func (db *DB) Update(fn func(store.Tx) error) error {
	db.stats.updates.Add(1)
	return db.run("update", true, func(t *tx) error { return fn(t) })
}

// run runs fn in transactions until one commits, fn fails, a fault that
// must not be retried happens, or MaxAttempts is reached.
func (db *DB) run(op string, writable bool, fn func(*tx) error) error {
	if db.closed.Load() {
		return &Error{Op: op, Err: ErrClosed}
	}
	alone := false
	for attempt := 1; ; attempt++ {
		err, own := db.gated(op, writable, alone, fn)
		if own {
			return err // fn's own error: the transaction was rolled back
		}
		var e *Error
		if !errors.As(err, &e) || !e.retry {
			if e != nil {
				e.Attempts = attempt
				if e.CommitUnknown {
					db.stats.commitUnknown.Add(1)
					db.log.Warn("pgstore: commit outcome unknown; the transaction is not re-run", "op", op, "err", e.Err)
				}
			}
			return err
		}
		if e.SQLState != "" {
			db.stats.conflicts.Add(1)
			alone = true
		}
		if attempt >= MaxAttempts || db.closed.Load() {
			e.Attempts = attempt
			e.retry = false
			db.stats.exhausted.Add(1)
			db.log.Warn("pgstore: transaction given up", "op", op, "attempts", attempt, "sqlstate", e.SQLState, "err", e.Err)
			return e
		}
		db.stats.retries.Add(1)
		time.Sleep(backoff(attempt))
	}
}

// backoff is a jittered exponential wait: up to 1 ms, 2 ms, … capped at
// 100 ms, so twenty attempts span about a second on average.
func backoff(attempt int) time.Duration {
	ceil := time.Millisecond << min(attempt-1, 7)
	ceil = min(ceil, 100*time.Millisecond)
	return ceil/2 + rand.N(ceil/2+1)
}

// gated runs one attempt through the gate: writers share it, a writer
// that lost a race holds it alone, readers never wait for it.
func (db *DB) gated(op string, writable, alone bool, fn func(*tx) error) (error, bool) {
	switch {
	case !writable:
	case alone:
		db.gate.Lock()
		defer db.gate.Unlock()
	default:
		db.gate.RLock()
		defer db.gate.RUnlock()
	}
	return db.attempt(op, writable, fn)
}

// attempt runs fn once; own reports that err is fn's own error.
func (db *DB) attempt(op string, writable bool, fn func(*tx) error) (err error, own bool) {
	timeout := db.txTimeout
	if !writable {
		timeout = db.viewTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t := &tx{db: db, ctx: ctx, op: op, writable: writable}
	defer t.end() // rolls back unless committed, panics included
	ferr := fn(t)
	if t.err != nil {
		return t.err, false // sticky: the fault wins over what fn made of it
	}
	if ferr != nil {
		return ferr, true
	}
	if writable {
		return t.commit(), false
	}
	return nil, false
}

// Ensure creates the named buckets if missing. It is idempotent, so it is
// re-run (at most MaxAttempts times) on any fault but a timeout.
func (db *DB) Ensure(names ...[]byte) error {
	if db.closed.Load() {
		return &Error{Op: "ensure", Err: ErrClosed}
	}
	for _, n := range names {
		if len(n) == 0 {
			return ErrBucketName
		}
	}
	for attempt := 1; ; attempt++ {
		err := db.ensure(names)
		var e *Error
		if !errors.As(err, &e) || !e.retry || attempt >= MaxAttempts || db.closed.Load() {
			if e != nil {
				e.Attempts, e.retry = attempt, false
			}
			return err
		}
		db.stats.retries.Add(1)
		time.Sleep(backoff(attempt))
	}
}

func (db *DB) ensure(names [][]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), db.txTimeout)
	defer cancel()
	fail := func(err error) error {
		e := classify("ensure", err, false, ctx)
		if connLost(err) && ctx.Err() == nil {
			db.stats.connLost.Add(1)
			db.pool.Reset()
		}
		return e
	}
	b := &pgx.Batch{}
	for _, n := range names {
		b.Queue(`INSERT INTO kw_buckets (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`, n)
	}
	b.Queue(`SELECT id, name FROM kw_buckets WHERE name = ANY($1)`, names)
	br := db.pool.SendBatch(ctx, b)
	defer br.Close()
	for range names {
		if _, err := br.Exec(); err != nil {
			return fail(err)
		}
	}
	rows, err := br.Query()
	if err != nil {
		return fail(err)
	}
	for rows.Next() {
		var id int32
		var name []byte
		if err := rows.Scan(&id, &name); err != nil {
			return fail(err)
		}
		db.bucketIDs.Store(string(name), id)
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	return nil
}
