// Package wire is keysvc's API as data: the requests and answers of its
// HTTP API, the enums they carry, key policies, the error sentinels with
// their stable codes, and the "kw:v<n>:" versioned value. It imports the
// standard library only, so a client of keysvc (package keysvc/client, the
// banking app, the ceremony tool) links no PKCS#11 driver, no TPM stack
// and no cgo.
//
// keysvc itself (the Service), keysvc/api (the server) and keysvc/client
// (the Go client) all use these types; none of them declares a request or
// answer of its own. The JSON field names here are the API: changing one
// is an incompatible change of the HTTP API.
//
// # Keys
//
// A key has a Purpose (sign, encrypt, wrap, mac), an Algorithm (ec-p256,
// ec-p384, rsa-2048, rsa-3072, aes-256, sm2, sm4, hmac-sm3) and a
// Protection saying where its material lives (hsm, wrapped, external,
// tpm). It has numbered versions, each in a State:
//
//	enabled ⇄ disabled
//	enabled | disabled → destroy-scheduled → (cancel) disabled
//	destroy-scheduled → destroyed (by the scheduler, when due; final)
//
// A client sees a key as a KeyView (no object labels, no wrapped blobs, no
// holder PIN hash). CreateKeyRequest makes a key with version 1;
// KeySettingsRequest changes its minimum version and rotation period;
// VersionAction with ScheduleDestroyRequest moves one version's state.
//
// # Policy
//
// A Policy lists Grants: a client name and the Ops it may do on the key
// (sign, verify, encrypt, decrypt, datakey, public, read, rotate, manage,
// mac). Deny by default: Policy.Allows is false unless a grant names both
// the client and the operation. Admin clients may in addition create keys
// and always read and manage them; keysvc enforces that, not this package.
//
// # Versioned values
//
// Signatures, MACs and ciphertexts travel as "kw:v<version>:<base64>"
// (Versioned; ParseVersioned, Versioned.String, VersionOf), so that after
// a rotation verify and decrypt find the version that made them:
//
//	v, err := wire.ParseVersioned(res.Signature, wire.ErrInvalidSignature)
//	// v.Version == 3, v.Bytes is the DER signature
//
// # Errors
//
// Every refusal keysvc can give wraps one of the ErrX sentinels here, and
// SentinelCodes gives each its stable code: the "code" of an HTTP error
// answer, the "result" of an audit record, and what keysvc/client maps back
// to the sentinel. A caller on either side of the HTTP API tests with
// errors.Is:
//
//	if errors.Is(err, wire.ErrKeyNotFound) { … }
//
// When an error wraps two sentinels the first row of SentinelCodes that
// matches wins. Messages around the sentinels are written for a person
// and never hold key material, plaintext or PINs.
//
// # Display and confirm
//
// A key created with Confirm ConfirmRequired signs only what its holder
// has seen and approved on the second channel. Its sign request answers
// HTTP 202 with a ConfirmationView (Status pending); the requester polls
// GET /v1/confirmations/{id} until the status is final (approved: the
// view carries Signature and Version; rejected, expired, cancelled or
// failed: Reason says why). The holder approves with an ApproveRequest
// naming the key and the digest it was shown.
package wire
