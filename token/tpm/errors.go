package tpm

import (
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// Errors callers tell apart with errors.Is. Messages name what to do; they never contain secret
// bytes or authorization values.
var (
	// ErrNoTPM: the TPM can't be opened or stopped answering (device missing, simulator not
	// running, connection lost).
	ErrNoTPM = errors.New("tpm: TPM not available")
	// ErrPCRMismatch: the PCR values differ from sealing time (firmware, boot loader or kernel
	// changed, or someone booted differently). A *PCRMismatchError says which PCRs.
	ErrPCRMismatch = errors.New("tpm: PCR values differ from sealing time")
	// ErrAuthFailed: wrong authorization value. It counted as one dictionary-attack failure.
	ErrAuthFailed = errors.New("tpm: authorization failed")
	// ErrLocked: the TPM is in dictionary-attack lockout and refuses DA-protected objects until
	// failures are forgotten (recovery time) or the lockout is cleared (ClearDALockout).
	ErrLocked = errors.New("tpm: dictionary-attack lockout")
	// ErrWrongTPM: the blob does not load under this TPM's storage root key: it was made by
	// another TPM, the TPM was cleared (new owner seed), or the blob was altered.
	ErrWrongTPM = errors.New("tpm: blob does not belong to this TPM")
	// ErrBadBlob: a Sealed or KeyBlob that does not even parse, or a key of the wrong kind.
	ErrBadBlob = errors.New("tpm: malformed blob")
	// ErrSecretSize: Seal takes 1 to MaxSecretSize bytes.
	ErrSecretSize = errors.New("tpm: secret size out of range")
	// ErrClosed: the TPM or Signer was closed.
	ErrClosed = errors.New("tpm: closed")
)

// PCRMismatchError is the ErrPCRMismatch a failed Unseal returns: which PCRs differ from the
// values recorded at sealing time (all sealed PCRs when the blob recorded no values).
type PCRMismatchError struct {
	PCRs []int // PCR indices whose value changed
}

func (e *PCRMismatchError) Error() string {
	return fmt.Sprintf("tpm: SHA-256 PCR %s changed since the secret was sealed "+
		"(firmware, boot or kernel update?); unlock with the passphrase fallback and reseal "+
		"with `ceremony reseal`", joinInts(e.PCRs))
}

// Is makes errors.Is(err, ErrPCRMismatch) true.
func (e *PCRMismatchError) Is(target error) bool { return target == ErrPCRMismatch }

func joinInts(v []int) string {
	s := ""
	for i, x := range slices.Sorted(slices.Values(v)) {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprint(x)
	}
	return s
}

// authError maps the TPM's authorization failures to the typed errors; other errors come back
// unchanged. what names the operation.
func authError(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, tpm2.TPMRCLockout):
		return fmt.Errorf("%w: %s: the TPM refuses DA-protected objects until the lockout "+
			"recovery time has passed or the lockout is cleared with the lockout authorization: %w", ErrLocked, what, err)
	case errors.Is(err, tpm2.TPMRCAuthFail), errors.Is(err, tpm2.TPMRCBadAuth):
		return fmt.Errorf("%w: %s: wrong authorization value: %w", ErrAuthFailed, what, err)
	}
	return err
}
