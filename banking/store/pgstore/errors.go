package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/keyward/keyward/banking/store"
)

// Errors of pgstore. Every fault of the database itself is an *Error, which
// wraps store.ErrBackend; the sentinels below say more about some of them.
var (
	// ErrCommitUnknown: the connection was lost (or the transaction's
	// time ran out) while COMMIT was on its way, so whether the transaction
	// was stored is not known. pgstore never re-runs such a transaction;
	// the caller decides, typically by looking for the record it wrote
	// (banking's idempotency keys exist for exactly this).
	ErrCommitUnknown = errors.New("pgstore: commit outcome unknown (connection lost during COMMIT)")
	// ErrSchemaTooNew: the database was migrated by a newer Keyward than
	// this one; upgrade this node rather than let it write records it does
	// not understand.
	ErrSchemaTooNew = errors.New("pgstore: database schema is newer than this program")
	// ErrSchemaDirty: a migration failed half-way (the migrations table is
	// marked dirty); an operator must repair the schema and clear the flag.
	ErrSchemaDirty = errors.New("pgstore: database schema is dirty (a migration failed half-way)")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("pgstore: store is closed")
	// ErrKeyRequired: Put or Delete with an empty key.
	ErrKeyRequired = errors.New("pgstore: key required")
	// ErrKeyTooLarge: a key longer than MaxKeySize.
	ErrKeyTooLarge = errors.New("pgstore: key too large")
	// ErrTxNotWritable: Put, Delete or NextSequence in a View.
	ErrTxNotWritable = errors.New("pgstore: transaction not writable")
	// ErrBucketName: Ensure with an empty bucket name.
	ErrBucketName = errors.New("pgstore: bucket name required")
)

// MaxKeySize is the longest key pgstore accepts: a PostgreSQL B-tree entry
// must fit in a third of a page (about 2,700 bytes), and a longer key would
// fail only at COMMIT.
const MaxKeySize = 2048

// Error is a fault of PostgreSQL or of the connection to it. It wraps
// store.ErrBackend, ErrCommitUnknown when that applies, and the driver's
// error (a *pgconn.PgError carries the SQLSTATE).
type Error struct {
	// Op is what pgstore was doing: "update", "view", "batch", "commit",
	// "ensure", "open".
	Op string
	// SQLState is PostgreSQL's error code, empty for a connection fault.
	SQLState string
	// Attempts is how many times the transaction ran (retries included).
	Attempts int
	// CommitUnknown is set when the outcome of COMMIT is not known.
	CommitUnknown bool
	// Err is the underlying error.
	Err error

	retry bool // a serialisation conflict, a deadlock, or a connection lost before COMMIT
}

func (e *Error) Error() string {
	msg := "pgstore: " + e.Op
	if e.Attempts > 1 {
		msg += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	if e.CommitUnknown {
		msg += ": commit outcome unknown, the transaction was not re-run"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap lets errors.Is find store.ErrBackend, ErrCommitUnknown and the
// driver's error.
func (e *Error) Unwrap() []error {
	errs := []error{store.ErrBackend}
	if e.CommitUnknown {
		errs = append(errs, ErrCommitUnknown)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Retryable SQLSTATEs: the transaction lost a race and running it again on
// a fresh snapshot is correct.
const (
	sqlSerializationFailure = "40001"
	sqlDeadlockDetected     = "40P01"
	sqlUniqueViolation      = "23505" // a racing insert of the same key (Ensure)
)

// classify turns a driver error into an *Error. commitSent says whether a
// COMMIT was in the batch that failed; ctx is the attempt's context.
func classify(op string, err error, commitSent bool, ctx context.Context) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	out := &Error{Op: op, Err: err}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		out.SQLState = pgErr.Code
	}
	switch {
	case !connLost(err):
		// The server refused a statement: the transaction is aborted,
		// COMMIT (if it was sent) was skipped or refused, nothing was
		// stored.
		switch pgErr.Code {
		case sqlSerializationFailure, sqlDeadlockDetected, sqlUniqueViolation:
			out.retry = true
		}
	case commitSent && !pgconn.SafeToRetry(err):
		out.CommitUnknown = true
	case ctx.Err() != nil:
		// The attempt's TxTimeout ran out: not retried, a slow database
		// would otherwise be waited on many times over.
	default:
		// A connection lost (or never made) before COMMIT: nothing was
		// stored, and the next attempt may reach a promoted standby.
		out.retry = true
	}
	return out
}

// connLost reports whether err means the session itself ended: a network
// error, or the server ending the session (FATAL or PANIC, class 08
// connection exception, class 57 operator intervention: a shutdown, a
// terminated backend, a server still starting), as opposed to the server
// refusing one statement.
func connLost(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return true
	}
	switch {
	case pgErr.Severity == "FATAL" || pgErr.Severity == "PANIC":
		return true
	case strings.HasPrefix(pgErr.Code, "08"), strings.HasPrefix(pgErr.Code, "57P"):
		return true
	}
	return false
}
