// Package token is what holds Keyward's keys: a PKCS#11 token (an HSM
// partition or a person's USB key) opened by configuration or URI, logged in
// through the PIN guard, and lent to keysvc and cmd/ceremony as a session
// pool (package pkcs11shim).
//
// # Main types
//
// Config names a token (Kind, Module, URI and/or Label/Serial, PIN source,
// PINGuard: where the guard counts); conflicting selectors are refused by
// name. Open resolves it, builds the PIN guard itself from PINGuard (a bbolt
// file or store: there is no in-memory counter, so no caller opens a
// logged-in pool without a guard whose count outlives the process), opens
// the session pool and logs in through the guard: a Token, whose Pool is
// used for key operations, whose Store is keysvc's key store (every
// operation through pkcs11shim.Pool.WithKey, which re-finds a stale object
// handle), and whose ContextAuth re-authenticates each use of a USB key's
// CKA_ALWAYS_AUTHENTICATE keys. OpenAdmin opens a token without a
// user login, as an Admin: PIN unlock (Unlock) and change (ChangePIN), live
// token information, the officers' roster, backup under a trusted KEK
// (WrapForBackup), the replication key (InstallReplicationKey). It is how a
// locked token gets unlocked.
//
// Replication (replica.go, issue 15): a Store copies a replicable key (one
// made with KeySpec.Extractable) to another token of keysvc's set without
// it ever being in clear outside a token: ExportReplica wraps it under the
// token's replication key, which officers install as the SO in every token
// (cmd/ceremony replication-key), and ImportReplica unwraps the Replica in
// the other token, whose replication key's unwrap template keeps the copy
// sensitive and trusted-only. Replicable says whether the token holds the
// officers' replication key; ReplicationCheckValue identifies it (equal on
// two tokens exactly when they hold the same one).
//
// Set is a key store over several tokens that hold the same keys (HSM
// partitions of one bank): it sends each operation to a token that is up,
// retries on another when a token fails, probes the failed one and brings
// it up to date (copies of hsm keys under the officers' replication key:
// ExportReplica, ImportReplica) before it serves again. keysvc uses it with
// `tokens:` in its configuration.
//
// Guard counts PIN attempts (R-TOK-5) in a CounterStore:
// BoltStore, a bbolt file kept open for the process's life, or FileStore,
// which opens that file per operation (cmd/ceremony counting in keysvc's
// file). The same file keeps the ceremony's consumed approval nonces
// (UsedApproval, ConsumeApprovals). CheckPIN applies the PIN rules
// (R-TOK-4); Wipe clears a PIN after use. EnsureDevToken makes the SoftHSM2
// development token for `make run` only.
//
// # Rules
//
//   - The PIN guard stands before every C_Login: under a per-PIN mutex (the
//     process's, shared by every Guard) it
//     refuses a locked PIN without calling the token, durably counts one
//     failure, logs in once, and resets on success; it locks at the limit
//     (1–6, default 6) and on the module's own lock. The count is taken back
//     only when the answer proves the PIN never reached the token.
//   - Login belongs to the application: Token logs in once through the
//     pool's anchor session and the pool never retries a login by itself;
//     Relogin asks for it again.
//   - PINs come from a PIN source (PINSource: file, environment, prompt),
//     never argv; the grammar and readers live in token/pinsource, the
//     standard-library leaf that programs without cgo import instead of
//     this package, and are re-exported here under token's names.
//   - PINs never appear in errors, logs or lock events; callers Wipe them.
//
// # Imports
//
// The standard library, go.etcd.io/bbolt (the counter store), pkcs11shim and
// token/pinsource. token does not import github.com/miekg/pkcs11 (only
// pkcs11shim does), nor keysvc; token/tpm is a separate package.
package token
