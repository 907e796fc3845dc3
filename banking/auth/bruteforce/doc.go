// Package bruteforce is the login brute-force defence (R-AUTH-3): failure
// counters per account and per source address, temporary locks, and an
// alert with the source address for every lock.
//
// # How a login uses it
//
//	att, err := guard.Begin(ctx, account, clientIP) // BEFORE the password is looked at
//	if err != nil {
//		// *LockedError (ErrAccountLocked / ErrIPLocked): refuse without
//		// decrypting or checking anything; say "try again later".
//		return err
//	}
//	ok, err := checkPassword(...)                   // keysvc decrypt + keyed hash
//	switch {
//	case err != nil:
//		att.Abandon(ctx) // the password was never compared
//	case ok:
//		att.Succeeded(ctx)
//	default:
//		att.Failed(ctx)
//	}
//
// # Rules
//
//   - Account: after AccountLimit (5) failures the account is locked for
//     AccountLock (15 min). A success resets its count (and a lock, should
//     a success already in flight land after it). Failures older than
//     AccountWindow (24 h) are forgotten. When a lock ends the count starts
//     from zero.
//   - Source: after IPLimit (20) failures within a sliding IPWindow (10 min)
//     the source is locked for IPLock (15 min), whichever accounts were
//     tried (password spraying). A success does not reset a source, but the
//     successful attempt itself is not counted against it. A source is an
//     IPv4 address, or an IPv6 /64 (SourceKey): an attacker holding a /64
//     would otherwise have 2^64 fresh addresses.
//   - Every lock raises one auth.Event (auth.KindAccountLocked or
//     auth.KindIPLocked) with the account, the address of the attempt that
//     caused it, the time, the count and the lock's end. Refusals while
//     locked raise nothing more. Use auth.LogAlerts to log them with the
//     source address (R-AUTH-3) and forward them to monitoring.
//   - Captcha (seed 6.2.3.2): with CaptchaAfter set (banking: 3),
//     BeginHuman refuses an attempt that comes without a solved captcha
//     (human false) once the account, or the source within its window,
//     has that many failures counted: ErrCaptchaRequired, decided in the
//     transaction that would count the attempt, counting nothing. Locks
//     are reported first. Begin is BeginHuman with human true.
//
// # Why Begin counts before the password is checked
//
// Begin refuses when the account or the source is locked *or at its limit*,
// and otherwise records the attempt as a failure right away, durably (a
// store transaction, committed durably, shared with concurrent attempts
// through DB.Batch). Succeeded and Abandon take it back. So attempts in
// flight count: of 50 concurrent attempts on one account, exactly 5 reach
// the password check, and a crash in the middle of an attempt leaves it
// counted as a failure rather than handing out a free guess. This mirrors
// the token package's PIN guard (R-TOK-5).
//
// # Concurrency
//
// A Guard is safe for concurrent use, also by several banking nodes on one
// shared store; all counting happens inside the store's write
// transactions, which are serialisable. An Attempt settles once;
// settling it again is ErrAttemptSettled.
//
// # Limitations
//
//   - The caller decides what an account name is (normalise case and
//     whitespace first) and which address is the client's (behind a proxy,
//     the address the trusted proxy reports, never a header the client
//     sets).
//   - Locking an account on failures lets anyone who knows a customer's
//     login name lock it for 15 minutes at a time. That is the usual
//     trade-off (R-AUTH-3 asks for the lock); the source lock and the
//     alerts make such an attack visible, and UnlockAccount lets an officer
//     help.
//   - Counters for unknown account names are stored too (telling known from
//     unknown names would enumerate customers); Sweep removes idle ones.
package bruteforce
