// Package ledger keeps the banking app's accounts as a double-entry ledger
// in the banking store (banking/store: its own bbolt file through Open, or
// a store shared with banking's other records through New, bbolt or
// PostgreSQL): balances, intra-bank transfers with idempotency keys,
// per-transaction and daily limits (R-SRV-7), deposits and withdrawals
// against the bank's cash account, and Verify, which proves the books
// balance (issue 6 item 4, crash safety item 8, throughput item 9).
//
// # Money
//
// Amounts are int64 counts of the currency's minor unit (fen for CNY, cent
// for USD, yen for JPY, fils for BHD); there is no floating point anywhere.
// ParseAmount reads a decimal string exactly and refuses what it cannot
// represent exactly — more decimals than the currency has, signs, spaces,
// separators, exponents — instead of rounding; FormatAmount writes it back.
// Currencies are ISO 4217 alpha-3 codes in upper case from a fixed table
// (CurrencyExponent); anything else is ErrUnknownCurrency.
//
// # Accounts
//
// A customer account number has 19 digits, does not start with 0, and ends
// with a Luhn check digit over the first 18 (ValidateAccountID;
// AccountNumber computes the digit). OpenAccount may be given a number or
// draw a random one after Options.AccountPrefix. An account belongs to one
// customer id (AccountsByOwner lists them), holds one currency, and is open,
// frozen (no debits and no credits) or closed (final; only at a zero
// balance), see SetState.
//
// Each currency has one bank cash account, CashAccount("CNY") =
// "bank-cash-CNY", which no customer request can name. Deposit moves money
// from it to a customer, Withdraw back; they are the only postings that
// change what customers hold in total. The cash account's balance is
// therefore minus the customers' total, and all balances of a currency
// always sum to zero.
//
// # Postings
//
// Transfer, Deposit and Withdraw each write one posting in one store
// transaction: the journal record (which is the Receipt), a debit entry on
// the payer and a credit entry on the payee, both account records with
// their new balances, and the idempotency record. Either all of that is
// durable or none of it. Journal sequence numbers start at 1 and have no
// gaps; TransferID is "T" and the zero-padded number (Posting finds a
// receipt by it). Nothing in the journal or the entries is ever rewritten
// or deleted.
//
// Entries are appended in journal order, not grouped by account: each
// holds the account's running balance and the sequence number of the
// account's previous entry, and the account record holds its newest
// (LastSeq). Statement walks that chain newest first. Appending keeps a
// group commit's writes on a few pages at the end of the file instead of
// one page per account touched (1.5 instead of 4.9 pages written per
// transfer in BenchmarkTransferParallel).
//
// # Idempotency
//
// Every posting request carries an idempotency key. The first request with
// a key is applied (or refused, storing nothing). A later request with the
// same key and the same fields returns the stored receipt, Replayed set,
// without posting again — even after a crash or restart, since the record
// commits with the posting. The same key with any field changed is
// ErrIdempotencyConflict. Keys are global: the HTTP layer prefixes them
// with the customer id so that customers cannot collide.
//
// # Limits
//
// Each customer account stores its Limits: the most one transfer may send
// and the most it may send per calendar day, in Options.Location (default
// Asia/Shanghai; the day runs from 00:00 to 24:00 local time). New accounts
// get Options.DefaultLimits of their currency (CNY: 50,000.00 per
// transfer, 200,000.00 a day); SetLimits changes them within the bank's
// ceiling Options.MaxLimits (CNY: 1,000,000.00 / 5,000,000.00). The HTTP
// layer must re-authenticate the customer before calling SetLimits
// (R-AUTH-6). OverrideLimits is the supervisor's way beyond the ceiling
// (banking's audited limit-override role); the customer can then lower
// such limits but not raise them. A transfer beyond a limit is a
// *LimitError (errors.Is ErrLimitExceeded) whose message says how much may
// still be sent and when the day resets. Only Transfer counts: deposits and withdrawals are teller
// operations outside the customer's limits.
//
// # Screening
//
// Options.Screen is asked about every account number being opened and every
// payee of a transfer or deposit; an error refuses with ErrBlocked
// (R-SRV-6). blacklist.Watcher.CheckAccount has the right signature. Names
// are not known to the ledger: the banking layer screens customers' names
// at enrolment.
//
// # Errors
//
// Every error wraps one sentinel (ErrInsufficientFunds, ErrAccountFrozen,
// ErrLimitExceeded, …); ErrorCodes maps them to stable codes for the HTTP
// error table, ErrorCode finds the code of an error. ErrStore (the disk)
// and ErrCorrupt (an invariant broken) are server faults whose details
// belong in the log, not in a response (R-SRV-4). An ErrBlocked message
// carries the screening list's reason for the log; the customer should
// only see that the payee cannot receive the transfer. A *LimitError's
// message is meant for the customer.
//
// # Concurrency
//
// All methods are safe for concurrent use. Postings go through db.Batch:
// concurrent requests are group-committed, up to Options.MaxBatchSize per
// transaction after waiting at most Options.MaxBatchDelay, so one fsync
// serves many transfers. Set MaxBatchSize near the expected number of
// concurrent callers. A lone transfer waits MaxBatchDelay for company, so
// an idle ledger answers in about 2 ms plus one commit. The store may run a batched function
// more than once (bbolt when another member of its batch fails, PostgreSQL
// on a serialisation conflict); the posting function
// reads everything inside its transaction and has no effect outside it,
// and a refusal is reported beside the transaction rather than as its
// error, so one refused transfer never rolls back its neighbours. Account
// changes (open, state, limits) are plain transactions.
//
// On bbolt, the file is locked: one process owns the ledger. On a shared
// store (PostgreSQL) several banking nodes post to one ledger; the
// store's serialisable transactions keep the same invariants.
// A request whose context ends after it joined a group commit is committed
// or refused regardless; repeat it with the same key to learn which.
//
// # Storage layout
//
//	ledger-accounts     account id → Account, binary (codec.go)
//	ledger-owners       owner ‖ 0x00 ‖ account id → (empty)
//	ledger-journal      8-byte big-endian seq → JSON Receipt
//	ledger-entries      8-byte seq ‖ leg (0 debit, 1 credit) → JSON {account, amount, balance, prev}
//	ledger-idempotency  key → SHA-256 fingerprint of the request ‖ 8-byte seq
//
// The bucket names are prefixed so the file may be shared with other
// stores (New).
//
// # Limitations
//
//   - On bbolt, one file on one machine: replication (R-AV-4) needs the
//     PostgreSQL store (banking/store/pgstore).
//   - Transfers are intra-bank and single-currency; no FX, no clearing.
//   - Idempotency records are kept for ever (about 60 bytes a posting).
//   - Verify reads the whole file; it is an audit, not a per-request check.
//   - A daily limit counts from the posting's time as read before its
//     group commit, so a transfer requested a few milliseconds before
//     midnight counts for the day that is ending.
package ledger
