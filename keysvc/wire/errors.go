package wire

import "errors"

// Sentinel errors. The HTTP layer maps each to a status and a stable code
// in one table (keysvc/api); messages wrapped around them are written for a
// person to act on and never hold key material, plaintext or PINs.
var (
	ErrInvalidArgument   = errors.New("invalid argument")
	ErrKeyNotFound       = errors.New("key not found")
	ErrKeyExists         = errors.New("key already exists")
	ErrVersionNotFound   = errors.New("key version not found")
	ErrIllegalTransition = errors.New("illegal version state transition")
	ErrVersionNotUsable  = errors.New("key version not usable")
	ErrWrongPurpose      = errors.New("key purpose does not allow this operation")
	ErrForbidden         = errors.New("not permitted by the key's policy")
	ErrUnauthenticated   = errors.New("client not authenticated")
	ErrInvalidCiphertext = errors.New("invalid ciphertext")
	ErrInvalidSignature  = errors.New("invalid signature format")
	ErrDecrypt           = errors.New("decryption failed")
	ErrTokenUnavailable  = errors.New("token unavailable")
	ErrTokenLocked       = errors.New("token PIN locked")
	ErrAuditUnavailable  = errors.New("audit log unavailable")
	ErrStore             = errors.New("key store error")

	// Display and confirm (keysvc/confirm.go).
	ErrConfirmationRequired     = errors.New("the key signs only what its holder confirms")
	ErrTransactionNotRecognised = errors.New("transaction not recognised")
	ErrConfirmationPending      = errors.New("a confirmation is already pending for this key")
	ErrConfirmationNotFound     = errors.New("confirmation not found")
	ErrConfirmationClosed       = errors.New("confirmation already ended")
	ErrConfirmationMismatch     = errors.New("confirmation does not match")
	ErrHolderPIN                = errors.New("holder PIN incorrect")
	ErrHolderLocked             = errors.New("holder locked")
	ErrHolderNotEnrolled        = errors.New("holder not enrolled")
	ErrConfirmUnavailable       = errors.New("confirmation channel unavailable")
)

// SentinelCodes gives each sentinel its stable code: the "code" of HTTP error
// responses (keysvc/api adds the status), the "result" of audit records,
// and what keysvc/client maps back to the sentinel. This is the only list.
// When an error wraps two sentinels the first row that matches wins.
var SentinelCodes = []struct {
	Err  error
	Code string
}{
	{ErrInvalidArgument, "invalid_argument"},
	{ErrKeyNotFound, "key_not_found"},
	{ErrVersionNotFound, "version_not_found"},
	{ErrKeyExists, "key_exists"},
	{ErrIllegalTransition, "illegal_transition"},
	{ErrVersionNotUsable, "version_not_usable"},
	{ErrWrongPurpose, "wrong_purpose"},
	{ErrForbidden, "forbidden"},
	{ErrUnauthenticated, "unauthenticated"},
	{ErrInvalidCiphertext, "invalid_ciphertext"},
	{ErrInvalidSignature, "invalid_signature"},
	{ErrDecrypt, "decryption_failed"},
	{ErrTokenUnavailable, "token_unavailable"},
	{ErrTokenLocked, "token_locked"},
	{ErrAuditUnavailable, "audit_unavailable"},
	{ErrStore, "store_unavailable"},
	{ErrConfirmationRequired, "confirmation_required"},
	{ErrTransactionNotRecognised, "transaction_not_recognised"},
	{ErrConfirmationPending, "confirmation_pending"},
	{ErrConfirmationNotFound, "confirmation_not_found"},
	{ErrConfirmationClosed, "confirmation_closed"},
	{ErrConfirmationMismatch, "confirmation_mismatch"},
	{ErrHolderPIN, "holder_pin_incorrect"},
	{ErrHolderLocked, "holder_locked"},
	{ErrHolderNotEnrolled, "holder_not_enrolled"},
	{ErrConfirmUnavailable, "confirmation_unavailable"},
}
