// Package otp issues and verifies SMS one-time codes (R-AUTH-8) for step-up
// at login (R-AUTH-9), sensitive changes (R-AUTH-6) and anything else the
// banking app wants confirmed on the customer's phone.
//
// # Rules
//
//   - A code is 6 digits from crypto/rand, each digit uniform (rejection
//     sampling, no modulo bias).
//   - It is valid for Config.TTL: 5 minutes by default, never more than 6.
//   - It is single use: after a successful Verify it is spent (ErrOTPUsed).
//   - It survives at most 5 wrong guesses (Config.MaxGuesses may lower
//     that): each wrong guess is *InvalidError with the guesses left; the
//     last one is ErrOTPLocked and raises an auth.KindOTPLocked alert; a
//     dead code is refused even if the right digits are typed afterwards.
//     The customer must ask for a new code.
//   - There is one live code per customer and purpose: Issue replaces the
//     previous one, which stops verifying at once.
//   - At most Config.IssuesPerHour codes (default 5) per customer in any
//     sliding hour, all purposes together; more is *RateLimitedError with
//     the wait, and one auth.KindOTPRateLimited alert per window. With 5
//     codes of 5 guesses each, an attacker who has the password gets 25
//     guesses an hour at a 6-digit code: odds of 1 in 40,000.
//   - A code is stored only as a keyed hash: Hasher.MAC over a fixed
//     prefix, customer id, purpose, a random 16-byte nonce and the code.
//     The database alone does not let anyone test codes offline. Codes are
//     never logged and never in an error: if a gateway's error text holds
//     the code, Issue returns the bare ErrSend instead.
//   - Codes are compared in constant time: by the Hasher when it is a
//     Verifier (keysvc's mac-verify), else hmac.Equal on the keyed hashes;
//     and every wrong guess is counted inside one write transaction,
//     so concurrent guesses cannot exceed the limit and a right code cannot
//     be used twice.
//
// The phone number comes from Config.Phone, the bank's own record of the
// customer (R-SRV-1): a request never says where its code should go.
//
// # Notices
//
// Notify sends a security notice — a text with no code, such as the
// notice of a phone change made at the counter, which goes to the old and
// the new number — through the same Gateway. It creates and stores
// nothing and does not count against the hourly code limit; a text that
// holds a run of six digits is refused (ErrNoticeHasCode), so a notice can
// never be read as a code.
//
// # Using it
//
//	svc, err := otp.New(otp.Config{
//		DB: db, Hasher: keysvcMAC, Gateway: gw,
//		Phone: customers.Phone, Alerts: alerts,
//	})
//	sent, err := svc.Issue(ctx, customerID, "login")  // sent.Phone = "138****5678"
//	...
//	err = svc.Verify(auth.WithSource(ctx, ip), customerID, "login", typed)
//	var inv *otp.InvalidError
//	switch {
//	case err == nil:                 // step-up done
//	case errors.As(err, &inv):       // "wrong code, inv.Remaining tries left"
//	case errors.Is(err, otp.ErrOTPLocked), errors.Is(err, otp.ErrOTPExpired),
//		errors.Is(err, otp.ErrOTPUsed), errors.Is(err, otp.ErrOTPNotFound):
//		// "ask for a new code"
//	}
//
// Purposes are short lower-case words ("login", "change-password",
// "change-limit", "transfer"); they appear in the SMS text.
//
// # Plugging in a real SMS gateway
//
// Implement Gateway. Send is called once per issued code, after the code's
// keyed hash has been committed, with a context whose deadline is
// Config.SendTimeout (10 s by default). An implementation must:
//
//   - honour the context: pass it to the HTTP request (http.NewRequestWithContext)
//     and give its http.Client a timeout too;
//   - never log the text, and never put the text or the code in its error
//     (log the provider's message id and status instead); log the phone
//     masked (mask.Phone) if at all;
//   - return nil only when the provider has accepted the message; retry
//     only failures that prove the message was not accepted (connection
//     refused, 503 before the body was read) — a duplicate SMS is harmless,
//     but a code the customer never gets is a support call;
//   - be safe for concurrent use.
//
// If Send fails, Issue cancels the new code and returns ErrSend wrapping the
// gateway's error; the attempt still counts against the hourly limit.
//
// DevOutbox is the gateway for development and tests: in memory (tests call
// LastCode) and, with OpenDevOutbox, as JSON lines in a 0600 file. It holds
// codes in clear, so it keeps each only while it can be used: it is a
// Keeper, and the Service drops a code from it once Verify accepts it and,
// at Sweep, once it has expired. HTTPGateway is the production gateway.
//
// # The keyed hash
//
// The banking app stores codes under keysvc's HMAC-SM3 (a key of purpose
// "mac"): pass a Hasher that calls keysvc and is also a Verifier, so a
// code is checked with the key version that hashed it and rotating the MAC
// key leaves live codes valid. NewHMACSHA256 is for tests and development
// (no Verifier: a new key would invalidate live codes, at most 6 minutes'
// worth). MAC must be deterministic for a key version.
//
// # Concurrency
//
// A Service is safe for concurrent use. Verify computes the keyed hash
// outside the write transaction (it may be a network call) and then
// settles the guess in one transaction; if the code was replaced in
// between, it starts again with the new code's nonce. Issue checks the
// hourly limit again inside its write transaction.
//
// # Limitations
//
// Expired codes and empty issue logs stay in the database until Sweep runs;
// run it every few minutes. The rate limit is per customer, not per source
// address: the HTTP layer must also rate-limit issue requests per address.
package otp
