// Package pkcs11shim is Keyward's only seam to PKCS#11: it loads a module,
// finds a token by what it is (never by slot id), lends sessions from a
// per-token pool, and performs key generation, lookup and cryptographic
// operations with the attribute templates Keyward allows. Everything above
// it (token, keysvc, cmd/ceremony) speaks in its types, never in cgo ones.
//
// # Main types
//
// A Module (OpenModule) is one PKCS#11 library, loaded once per process and
// reference-counted, because C_Initialize is process-wide. Every call into
// the library runs under the module's read lock; Reinitialize takes the write
// lock and bumps the module's generation. A Selector names a token by label
// and/or serial (ParseURI and SelectorFromURI read an RFC 7512 URI, strictly).
//
// A Pool (NewPool) is one token's sessions: an anchor session holding the
// application's login, and up to MaxSessions sessions lent through
// WithSession. The pool recovers by itself from a closed session, a
// re-initialised module or a re-inserted token; it never logs in by itself
// (see Rules). A Key is a token key found or generated through the pool
// (KeySpec, GenerateKey, FindKey), and the Pool's methods use it: Sign,
// Verify, EncryptGCM, DecryptGCM, EncryptOAEP, DecryptOAEP, WrapKey, HMAC,
// PublicKey. Signer makes a Key a crypto.Signer and crypto.Decrypter.
// Administration works on the Module with a Selector, outside the pool:
// InitToken, InitPIN and SetPIN (token's Admin, cmd/ceremony), the
// officers' roster (TrustedOfficers, EnrolOfficers, RetireOfficers) and
// backup under a trusted KEK (WrapUnderTrustedKEK), the replication key
// (InstallReplicationKey); the Pool's ceremony functions
// (ListTokenObjects, DestroyAllObjects, …) serve cmd/ceremony.
//
// Replication (replica.go): ExportReplica wraps a replicable token key (made
// with KeySpec.Extractable, so CKA_WRAP_WITH_TRUSTED) under the token's
// replication key, a trusted key the SO installs with a
// CKA_UNWRAP_TEMPLATE; ImportReplica unwraps the Replica in another token
// with exactly the attributes KeySpec.templates gives such a key, which the
// template requires. What SoftHSM2 2.6.1 enforces of this, and what it does
// not, is proven with raw calls in replica_test.go.
//
// Every CKR value comes back as a *CKRError whose Is matches the sentinel
// callers act on (ErrPINIncorrect, ErrPINLocked, ErrTokenNotPresent,
// ErrKeyNotFound, …).
//
// # Rules
//
//   - Only this package imports github.com/miekg/pkcs11. PKCtx is the part
//     of *pkcs11.Ctx it calls, so pure logic is unit-tested with a fake;
//     real behaviour is proven against SoftHSM2 in softhsm-tests.
//   - Login belongs to the application, not to a session: the pool's
//     anchor session holds it. The pool asks its Authenticator (package
//     token's PIN guard, R-TOK-5) for a login and hands it a LoginFunc that
//     performs exactly one C_Login; a PIN error is latched, never retried on
//     the pool's own (each retry would be one more guess), until
//     Reauthenticate.
//   - KeySpec's templates are the one place key attributes are chosen:
//     private and secret keys are sensitive, non-extractable unless asked
//     (an extractable token key leaves only under a trusted key), not
//     modifiable, not copyable.
//   - A session whose operation may still be active is closed, never lent
//     again (R-TOK-3). A session handle of an older module generation is
//     dropped, never closed: after C_Initialize its number may name another
//     pool's session.
//   - PINs never appear in errors or logs; a URI's pin-value is refused,
//     pin-source is read through token/pinsource.
//
// # Imports
//
// cgo in one file (nested.go: attribute-array attributes such as
// CKA_UNWRAP_TEMPLATE, which the binding cannot express; Unix CK_ATTRIBUTE
// layout). The standard library, github.com/miekg/pkcs11, golang.org/x/crypto
// (cryptobyte, for DER signatures) and token/pinsource, the PIN-source
// leaf. No other Keyward package.
package pkcs11shim
