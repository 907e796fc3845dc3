// Package session keeps the banking app's server-side login sessions
// (R-AUTH-5, R-AUTH-6).
//
// # Identifiers
//
// A session id is 32 bytes (256 bits) from crypto/rand, given to the client
// as 43 characters of unpadded base64url, once, at Create. The database
// holds only SHA-256(id) as the key, so a copy of the database does not
// hand out live sessions. A malformed id is ErrNotFound without touching the
// database. Session.Ref (the first 8 bytes of the hash, in hex) names a
// session in logs and lists; it cannot be turned back into an id.
//
// # Lifetime
//
//   - Idle timeout (Config.IdleTimeout, default 10 min): a session not
//     touched for that long is over (ErrExpired).
//   - Absolute timeout (Config.AbsoluteTimeout, default 12 h after Create):
//     over whatever the activity.
//   - Logout ends a session at once: the record is deleted and the deletion
//     committed to disk before Logout returns; LogoutAll ends every session
//     of a customer (after a password change, for instance), LogoutOthers
//     every one but the caller's, LogoutRef one chosen from List, and
//     LogoutDevice every one opened from a device the customer has the
//     bank forget (matched by device.RefOf of the session's device id,
//     the ref the device registry lists).
//   - Expired records are deleted by Sweep (every Config.SweepInterval).
//
// Get checks a session; Touch checks it and restarts its idle timer (call
// it once per authenticated request). ErrNotFound and ErrExpired both mean
// "log in again".
//
// # Step-up (R-AUTH-6, R-AUTH-9)
//
// A session has a Level: LevelPassword after a password login, LevelOTP
// once the customer also passed an SMS code. StepUp raises the level and
// records SteppedUpAt (committed at once). Sensitive changes (password,
// transfer limit) call RequireStepUp(s, LevelOTP, 5*time.Minute): a fresh
// verification, not merely an OTP some hours ago.
//
// # Write-behind of last-seen, and what is durable
//
// Creation, StepUp and every kind of logout are committed (fsync'd) before
// they return. Lookups are one Get, or none at all on a store of its own:
// live sessions are cached in memory, so Touch on the request path costs a map lookup
// under a mutex and no disk write. The new last-seen time is written
// behind, every Config.FlushInterval (default 15 s), all dirty sessions in
// one transaction — one fsync per interval instead of one per request.
//
// The trade-off: after a crash, last-seen times can be up to FlushInterval
// old, so a session may expire up to FlushInterval *earlier* than it
// should — never later. That errs on the safe side and costs a customer at
// most a re-login; an fsync per request would cost every request a disk
// flush (milliseconds) and throughput under load.
//
// On a store of its own (bbolt) the cache is kept true because the Manager
// is the only writer: use one Manager per database. A logout racing a cache miss is handled with a
// generation counter, so a session read from disk just before its deletion
// is never put back into the cache; once Logout has returned, no Get or
// Touch succeeds. Flush never re-creates a deleted record.
//
// # Several banking nodes on one store
//
// On a shared store (store.DB.Shared: PostgreSQL, several banking nodes)
// another node's Manager may end, step up or sweep any session, so the
// cache is not trusted: Get and Touch read the record on every call (one
// indexed read) and take from the cache only this node's newer, not yet
// written last-seen time. A Logout on any node is seen by every node once
// it has returned. The write-behind is as above, per node: a session used
// only on node A looks up to FlushInterval older to node B, so B may find
// it idle-expired up to FlushInterval early — never late.
//
// # Concurrency
//
// A Manager is safe for concurrent use. Open starts one goroutine (flush and
// sweep); Close stops it and flushes.
//
// # Limitations
//
// The cache holds every session used since start-up that has not expired
// (about 300 bytes each); expired entries are dropped by Sweep. The session
// does not watch the client's address or device: the HTTP layer compares
// them with Session.IP and Session.Device and steps up or logs out as its
// policy says.
package session
