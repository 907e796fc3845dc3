package pkcs11shim

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/keyward/keyward/token/pinsource"
)

// Sentinel errors a caller must act on. Every error returned by this package
// that comes from a PKCS#11 return value is a *CKRError, which matches the
// sentinel for its code with errors.Is. Never match on error text.
var (
	// ErrModuleLoad: the PKCS#11 library could not be loaded (wrong path,
	// missing dependency, wrong architecture).
	ErrModuleLoad = errors.New("pkcs11shim: cannot load PKCS#11 module")
	// ErrTokenNotFound: no token matched the selector (label, serial or URI).
	ErrTokenNotFound = errors.New("pkcs11shim: token not found")
	// ErrTokenAmbiguous: more than one token matched the selector.
	ErrTokenAmbiguous = errors.New("pkcs11shim: selector matches more than one token")
	// ErrTokenNotPresent: the token was removed or the device is gone
	// (CKR_TOKEN_NOT_PRESENT, CKR_DEVICE_REMOVED, CKR_DEVICE_ERROR).
	ErrTokenNotPresent = errors.New("pkcs11shim: token not present")
	// ErrSessionClosed: the session is no longer valid (CKR_SESSION_CLOSED,
	// CKR_SESSION_HANDLE_INVALID, CKR_CRYPTOKI_NOT_INITIALIZED).
	ErrSessionClosed = errors.New("pkcs11shim: session closed")
	// ErrPINIncorrect: the PIN was wrong (CKR_PIN_INCORRECT).
	ErrPINIncorrect = errors.New("pkcs11shim: PIN incorrect")
	// ErrPINLocked: the PIN is locked (CKR_PIN_LOCKED), by the module or by
	// Keyward's own PIN guard.
	ErrPINLocked = errors.New("pkcs11shim: PIN locked")
	// ErrPINInvalid: the PIN was refused by the module's own rules
	// (CKR_PIN_INVALID, CKR_PIN_LEN_RANGE, CKR_PIN_EXPIRED).
	ErrPINInvalid = errors.New("pkcs11shim: PIN refused by the token")
	// ErrNotLoggedIn: the operation needs a login (CKR_USER_NOT_LOGGED_IN).
	ErrNotLoggedIn = errors.New("pkcs11shim: not logged in")
	// ErrKeyNotFound: no object matched, or its handle is no longer valid.
	ErrKeyNotFound = errors.New("pkcs11shim: key not found")
	// ErrDuplicateLabel: a key with this label already exists on the token.
	ErrDuplicateLabel = errors.New("pkcs11shim: a key with this label already exists")
	// ErrMechanismInvalid: the token does not support the mechanism or its
	// parameters (CKR_MECHANISM_INVALID, CKR_MECHANISM_PARAM_INVALID).
	ErrMechanismInvalid = errors.New("pkcs11shim: mechanism not supported by the token")
	// ErrKeyUnextractable: the key may not leave the token
	// (CKR_KEY_UNEXTRACTABLE, CKR_ATTRIBUTE_SENSITIVE, CKR_KEY_NOT_WRAPPABLE).
	ErrKeyUnextractable = errors.New("pkcs11shim: key is not extractable")
	// ErrKeyMismatch: the key cannot do this (wrong type, size or usage
	// flag: CKR_KEY_TYPE_INCONSISTENT, CKR_KEY_FUNCTION_NOT_PERMITTED, ...).
	ErrKeyMismatch = errors.New("pkcs11shim: key not usable for this operation")
	// ErrSignatureInvalid: verification failed.
	ErrSignatureInvalid = errors.New("pkcs11shim: signature invalid")
	// ErrDecrypt: decryption or unwrapping failed. Deliberately vague, as in
	// crypto/rsa: it does not say whether the tag, padding or key was wrong.
	ErrDecrypt = errors.New("pkcs11shim: decryption failed")
	// ErrInputInvalid: the data has the wrong length or form for the
	// operation (digest length mismatch, CKR_DATA_LEN_RANGE, ...).
	ErrInputInvalid = errors.New("pkcs11shim: invalid input")
	// ErrPoolTimeout: no session became free within the wait timeout.
	ErrPoolTimeout = errors.New("pkcs11shim: timed out waiting for a session")
	// ErrPoolClosed: the pool was closed.
	ErrPoolClosed = errors.New("pkcs11shim: session pool closed")
	// ErrTokenBusy: the token has no more sessions to give (CKR_SESSION_COUNT).
	ErrTokenBusy = errors.New("pkcs11shim: token has no free sessions")
	// ErrDeviceMemory: the token is out of memory (CKR_DEVICE_MEMORY).
	ErrDeviceMemory = errors.New("pkcs11shim: token out of memory")
)

// CKRError is a PKCS#11 return value with the operation that produced it.
// errors.Is(err, ErrPINIncorrect) and friends work on it; so does
// errors.Is(err, pkcs11.Error(code)) for code-level checks inside this package.
type CKRError struct {
	Op   string // the PKCS#11 function, e.g. "C_Login"
	Code uint   // the CKR_ value
}

func (e *CKRError) Error() string {
	text := pkcs11.Error(e.Code).Error()[len("pkcs11: "):]
	if name, ok := ckrNames[e.Code]; ok && strings.HasSuffix(text, ": ") {
		text += name
	}
	return fmt.Sprintf("pkcs11shim: %s: %s", e.Op, text)
}

// ckrNames names the codes miekg/pkcs11 v1.1.2 leaves unnamed (PKCS#11
// 2.40 additions), so an officer reads what the token refused.
var ckrNames = map[uint]string{
	0x1B: "CKR_ACTION_PROHIBITED (the object is not destroyable, copyable or modifiable)",
}

// Is matches the sentinel errors above and the raw pkcs11.Error code.
func (e *CKRError) Is(target error) bool {
	if code, ok := target.(pkcs11.Error); ok {
		return uint(code) == e.Code
	}
	s, ok := ckrSentinel[e.Code]
	return ok && s == target
}

// ckrSentinel maps each CKR code a caller must act on to its sentinel.
// Codes not listed stay plain *CKRError values (internal failures).
var ckrSentinel = map[uint]error{
	pkcs11.CKR_PIN_INCORRECT:                  ErrPINIncorrect,
	pkcs11.CKR_PIN_LOCKED:                     ErrPINLocked,
	pkcs11.CKR_PIN_INVALID:                    ErrPINInvalid,
	pkcs11.CKR_PIN_LEN_RANGE:                  ErrPINInvalid,
	pkcs11.CKR_PIN_EXPIRED:                    ErrPINInvalid,
	pkcs11.CKR_USER_NOT_LOGGED_IN:             ErrNotLoggedIn,
	pkcs11.CKR_TOKEN_NOT_PRESENT:              ErrTokenNotPresent,
	pkcs11.CKR_TOKEN_NOT_RECOGNIZED:           ErrTokenNotPresent,
	pkcs11.CKR_DEVICE_REMOVED:                 ErrTokenNotPresent,
	pkcs11.CKR_DEVICE_ERROR:                   ErrTokenNotPresent,
	pkcs11.CKR_SESSION_CLOSED:                 ErrSessionClosed,
	pkcs11.CKR_SESSION_HANDLE_INVALID:         ErrSessionClosed,
	pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:       ErrSessionClosed,
	pkcs11.CKR_SESSION_COUNT:                  ErrTokenBusy,
	pkcs11.CKR_DEVICE_MEMORY:                  ErrDeviceMemory,
	pkcs11.CKR_OBJECT_HANDLE_INVALID:          ErrKeyNotFound,
	pkcs11.CKR_KEY_HANDLE_INVALID:             ErrKeyNotFound,
	pkcs11.CKR_MECHANISM_INVALID:              ErrMechanismInvalid,
	pkcs11.CKR_MECHANISM_PARAM_INVALID:        ErrMechanismInvalid,
	pkcs11.CKR_KEY_UNEXTRACTABLE:              ErrKeyUnextractable,
	pkcs11.CKR_KEY_NOT_WRAPPABLE:              ErrKeyUnextractable,
	pkcs11.CKR_ATTRIBUTE_SENSITIVE:            ErrKeyUnextractable,
	pkcs11.CKR_KEY_TYPE_INCONSISTENT:          ErrKeyMismatch,
	pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED:     ErrKeyMismatch,
	pkcs11.CKR_KEY_SIZE_RANGE:                 ErrKeyMismatch,
	pkcs11.CKR_WRAPPING_KEY_TYPE_INCONSISTENT: ErrKeyMismatch,
	pkcs11.CKR_SIGNATURE_INVALID:              ErrSignatureInvalid,
	pkcs11.CKR_SIGNATURE_LEN_RANGE:            ErrSignatureInvalid,
	pkcs11.CKR_ENCRYPTED_DATA_INVALID:         ErrDecrypt,
	pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE:       ErrDecrypt,
	pkcs11.CKR_WRAPPED_KEY_INVALID:            ErrDecrypt,
	pkcs11.CKR_WRAPPED_KEY_LEN_RANGE:          ErrDecrypt,
	pkcs11.CKR_DATA_LEN_RANGE:                 ErrInputInvalid,
	pkcs11.CKR_DATA_INVALID:                   ErrInputInvalid,
}

// wrapErr turns a miekg/pkcs11 error into a *CKRError naming op. Other
// errors pass through unchanged; nil stays nil.
func wrapErr(op string, err error) error {
	var code pkcs11.Error
	if errors.As(err, &code) {
		return &CKRError{Op: op, Code: uint(code)}
	}
	return err
}

// ckrCode returns the CKR value inside err, if any.
func ckrCode(err error) (uint, bool) {
	var ce *CKRError
	if errors.As(err, &ce) {
		return ce.Code, true
	}
	var code pkcs11.Error
	if errors.As(err, &code) {
		return uint(code), true
	}
	return 0, false
}

// sessionBroken reports whether err means the session (or the whole module)
// is unusable, so the pool must evict it and possibly recover the token.
func sessionBroken(err error) bool {
	return errors.Is(err, ErrSessionClosed) || errors.Is(err, ErrTokenNotPresent)
}

// IsPINError reports whether err is about the PIN itself. Such errors are
// never retried: each retry would be another guess against the lockout.
func IsPINError(err error) bool {
	return errors.Is(err, ErrPINIncorrect) || errors.Is(err, ErrPINLocked) || errors.Is(err, ErrPINInvalid)
}

// ErrPINSourceSyntax is matched by every error from the PIN-source grammar,
// including a URI's refused pin-source= (it is pinsource.ErrSyntax).
var ErrPINSourceSyntax = pinsource.ErrSyntax
