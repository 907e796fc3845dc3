// Package auth is the home of the banking app's authentication primitives
// (issue 6): pure Go over one banking store (banking/store: bbolt, or
// PostgreSQL shared by several banking nodes), no HTTP. The sub-packages do
// the work; this package holds what they share — security events (Event,
// Alerts, LogAlerts) and the request's source address in a context
// (WithSource).
//
// # The pieces
//
//	password    password rules (R-AUTH-2); single-use login challenges and the
//	            password ‖ 0x00 ‖ challenge split (R-AUTH-4)
//	bruteforce  per-account and per-source failure counters, temporary locks,
//	            alerts with the source address (R-AUTH-3)
//	session     server-side sessions: 256-bit ids stored as SHA-256, idle and
//	            absolute timeouts, immediate logout, step-up level (R-AUTH-5, -6)
//	otp         SMS one-time codes: 6 digits, ≤ 6 min, single use, 5 guesses,
//	            keyed-hash storage, gateway interface (R-AUTH-8)
//	device      known devices and the step-up rule (R-AUTH-9)
//	mask        ID card and card number masking and validation (R-AUTH-7)
//
// R-AUTH-1 (passwords protected with national algorithms in transit and at
// rest) is met by the caller: the client encrypts to the bank's SM2 login
// key, keysvc decrypts and computes the HMAC-SM3 that is stored; nothing
// here sees a password except in passing, and nothing stores or logs one.
// R-AUTH-10 (corporate roles) is not here.
//
// # A login, end to end
//
//	GET  /login/challenge
//	     ch := challenges.New(ctx)                         // password
//	POST /login {login, ciphertext, challenge, device, os}
//	     att, err := guard.Begin(ctx, login, ip)           // bruteforce, BEFORE anything else
//	     plain := keysvc.Decrypt(loginKey, ciphertext)
//	     pw, err := challenges.Redeem(ctx, plain, challenge) // single use, replay refused
//	     ok := keysvc.VerifyMAC(pwKey, pw, stored)         // the stored value's key version; then wipe plain and pw
//	     if ok && the primary has moved: stored = keysvc.MAC(pwKey, pw) // in place, one transaction
//	     att.Succeeded / att.Failed / att.Abandon
//	     a := devices.Assess(ctx, customer, device, os, ip)
//	     id, s := sessions.Create(ctx, {customer, device, ip, LevelPassword})
//	     if a.StepUp { otps.Issue(ctx, customer, "login") } else { devices.Remember(...) }
//	POST /login/otp {code}
//	     otps.Verify(auth.WithSource(ctx, ip), customer, "login", code)
//	     sessions.StepUp(ctx, id, LevelOTP); devices.Remember(ctx, customer, device, os, ip)
//	every request: s := sessions.Touch(ctx, id); require s.Level ≥ LevelOTP
//	             for anything but the step-up itself when a.StepUp was true
//	sensitive change: sessions.RequireStepUp(s, LevelOTP, 5*time.Minute), else
//	             otps.Issue(ctx, customer, "change-password") and StepUp again (R-AUTH-6)
//	logout: sessions.Logout(ctx, id); after a password change: LogoutOthers
//
// example_test.go runs this flow against the real packages.
//
// # Storage
//
// Everything persistent lives in the store the app passes in, in
// buckets named "auth-…": auth-challenges, auth-guard-accounts,
// auth-guard-ips, auth-sessions, auth-sessions-by-customer, auth-otp,
// auth-otp-issues, auth-devices. Secrets are stored only as hashes:
// challenges and session ids as SHA-256 (they are 256-bit random values, so
// an unkeyed hash is enough), OTP codes as a keyed hash (6 digits are too
// few for an unkeyed one), device ids as SHA-256. A bbolt store must not be
// opened with NoSync: creation, logout and failure counts rely on bbolt's
// fsync at commit (on PostgreSQL, on its synchronous commit). Challenges,
// the brute-force guard and sessions write through DB.Batch, so concurrent
// logins share one commit; a lone write waits up to the store's batch
// delay (bbolt's default is 10 ms) for company. Every function given to
// Update or Batch may run more than once (the store contract): each
// resets its results on entry and has no effect outside the transaction;
// alerts are raised after the commit.
//
// Every component takes a Now func() time.Time for tests, and has a Sweep
// method deleting what has expired; the session Manager sweeps by itself,
// the others should be swept every few minutes by the app.
//
// # Errors
//
// Each package has sentinels for errors.Is (and typed errors carrying
// details, e.g. otp.InvalidError's remaining guesses, bruteforce.LockedError's
// end time). None carries a password, code, session id or device id. The
// HTTP layer maps them to status codes in its one error table; the
// messages of password.WeakError and otp's errors are written to be shown
// to customers.
package auth
