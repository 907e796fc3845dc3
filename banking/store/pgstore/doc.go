// Package pgstore is banking's store (banking/store's contract) on
// PostgreSQL 15, through pgx v5's pool: the bank's deployment, where
// several stateless banking nodes share one database with a synchronous
// standby (issue 17; R-AV-1, R-AV-4).
//
//	db, err := pgstore.Open(ctx, pgstore.Config{
//		DSN: "postgres://keyward@db1:5432,db2:5432/bank?target_session_attrs=read-write",
//	})
//
// # Schema
//
// Two tables (migrations/0001_kv.up.sql), whatever the bucket:
//
//	kw_buckets(id integer identity primary key, name bytea unique, seq bigint)
//	kw_kv(bucket integer, k bytea, v bytea, primary key (bucket, k))
//
// Bucket names and keys are bytea, so they sort bytewise (memcmp) as
// bbolt's do, whatever the database's collation. kw_kv holds a bucket's
// 4-byte id rather than its name: smaller index entries, and the name is
// resolved once per process (buckets are never dropped, so the id is
// cached for good). There is no foreign key from kw_kv to kw_buckets: a
// foreign key would take a KEY SHARE lock on the bucket's row at every
// insert, the row NextSequence updates; pgstore writes only ids it read
// from kw_buckets.
//
// Migrations are versioned SQL files embedded in the binary and applied by
// Open with golang-migrate (table kw_schema_migrations), under
// golang-migrate's advisory lock: nodes starting together wait for one
// another and the schema is made once. Open refuses a database whose
// schema is newer than this program knows (ErrSchemaTooNew: an older node
// must not write records a newer one defined) or dirty (ErrSchemaDirty: a
// migration failed half-way; an operator repairs it).
//
// # Isolation: why SERIALIZABLE, and what a DBA sees
//
// Update and Batch run at SERIALIZABLE, View at REPEATABLE READ READ ONLY.
//
// Under bbolt, a writing transaction is alone: its reads cannot be made
// stale by another writer. banking's money rules are written that way —
// a transfer reads both balances, the idempotency key and the limits,
// checks them, and writes the postings, all in one Update. SERIALIZABLE
// gives exactly that guarantee across every node sharing the database: the
// outcome is that of some serial order of the transactions, so a check
// made on what a transaction read still holds when it commits. Explicit
// row locking (SELECT … FOR UPDATE) would have to be added to every
// read-check-write in banking and missed nowhere; SERIALIZABLE needs none
// and is the database's own proof. The price is that PostgreSQL may abort
// a transaction that lost a race (SQLSTATE 40001 serialization_failure,
// or 40P01 deadlock_detected): pgstore then rolls back and runs the whole
// function again on a fresh snapshot — the contract allows fn to re-run —
// at most MaxAttempts (20) times with a jittered backoff (1 ms doubling to
// 100 ms), then returns an *Error wrapping store.ErrBackend. A unique
// violation (23505, a racing insert) is retried the same way.
//
// A node's writer that lost a race runs its next attempt alone on that
// node (a read-write lock that first attempts share): optimistic while
// writers do not collide, pessimistic for the one that did, so a hot row
// (a bucket's sequence, one account) cannot starve it. Across nodes the
// retries alone resolve it.
//
// View runs REPEATABLE READ READ ONLY: one snapshot for every read and
// cursor of fn (bbolt's read transaction), and a read-only transaction
// never takes part in a serialisation failure.
//
// A DBA sees: sessions of user keyward in state "idle in transaction" for
// the length of one banking request at most (TxTimeout, 5 s by default,
// bounds every attempt of a write; ViewTimeout, 10 min, a read, which only
// a scan of the whole store such as the ledger's verification comes near); serialisation failures in the server log at ERROR
// ("could not serialize access …"), which are expected under contention
// and re-run here (Stats counts them); rows in kw_kv updated in place
// (HOT updates when the page has room) and deleted rows left to autovacuum.
//
// # Round trips
//
// The connection is taken from the pool at a transaction's first
// statement, and BEGIN travels in the same pipelined batch as it. Get
// looks in the transaction's own writes first, then in what it has read
// already (the snapshot does not change), and only then asks the server.
// Put and Delete are kept in the transaction and sent with COMMIT, as two
// set-based statements (INSERT … SELECT FROM unnest(…) ON CONFLICT DO
// UPDATE, DELETE … USING unnest(…)) in one pipelined batch; KeyN sends
// them early, with the count. NextSequence reads the bucket's counter
// once and writes the new value with COMMIT: two transactions that both
// increment it cannot both commit. Cursors fetch 128 rows at a time and
// merge them with the transaction's writes, so a cursor sees its own
// transaction's puts and deletions (Cursor.Delete while walking
// included) without sending them. A transfer-shaped Update (4 gets, one
// NextSequence, 6 puts) is about 6 round trips; a View that ended costs
// one more (ROLLBACK).
//
// # Batch
//
// Group commit, as bbolt's DB.Batch (SetBatchLimits; defaults 1000
// functions, 10 ms): concurrent callers share one transaction. When one
// function fails, the transaction is rolled back, that function runs again
// alone (in its own Update, so its error is its own), and the others run
// again together. A panic in a function is returned to its caller as an
// error. Batch is the way to throughput under a hot row: the functions of
// one batch do not race one another.
//
// # Faults
//
// Every fault of the database or the connection is an *Error wrapping
// store.ErrBackend (with the SQLSTATE when the server answered). Inside
// fn a fault is sticky: reads return nil, writes return the fault, and
// the transaction returns it even when fn returned an error of its own.
//
//   - Serialisation failure, deadlock, racing insert: re-run (above).
//   - Connection lost before COMMIT (a network error, or the server ending
//     the session: FATAL, class 08, class 57): nothing was stored; the
//     pool is reset (every pooled connection is dropped: a lost
//     connection rarely comes alone) and the transaction re-runs, so new
//     connections find the writable server of a multi-host DSN.
//   - Connection lost or TxTimeout reached while COMMIT was on its way:
//     the outcome is unknown (the primary may have committed; with a
//     synchronous standby it may even be waiting for the standby). The
//     *Error wraps ErrCommitUnknown and the transaction is never re-run:
//     the caller decides, by looking for what it wrote (banking's
//     idempotency keys).
//   - TxTimeout reached before COMMIT: not re-run (a slow database would
//     be waited on many times over).
//
// # Failover
//
// Give the DSN every host and target_session_attrs=read-write. When the
// primary dies, transactions in flight fail with ErrBackend (those whose
// COMMIT was on its way with ErrCommitUnknown); transactions that had not
// sent COMMIT re-run until the attempts run out (about a second) or a
// host accepts writes. Once the standby is promoted — by an operator or a
// tool like Patroni; pgstore is not a failover manager — new connections
// reach it. With a synchronous standby (synchronous_commit on,
// synchronous_standby_names naming it), every transaction pgstore reported
// committed is on the standby: RPO 0 (TestFailoverToPromotedStandby).
//
// # Concurrency
//
// A DB is safe for concurrent use. A transaction (the Tx handed to fn,
// its buckets and cursors) belongs to the goroutine running fn. The pool
// holds at most Config.MaxConns connections (default 4×GOMAXPROCS, at
// least 8); each running transaction holds one from its first statement
// to its end.
//
// # Limitations
//
//   - Keys at most MaxKeySize (2048) bytes: a B-tree entry must fit in a
//     third of an 8 kB page.
//   - Values up to PostgreSQL's 1 GB bytea limit, but every value of a
//     transaction is held in memory until COMMIT.
//   - A transaction that writes many keys and then walks many cursors pays
//     for keeping its writes in order (built on first use).
//   - Put keeps a copy of key and value; Get's results are valid until the
//     transaction ends, as bbolt's.
package pgstore
