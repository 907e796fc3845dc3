package wire

import (
	"strconv"
	"time"
)

// ConfirmMode says whether a key's signatures need the holder's confirmation.
type ConfirmMode string

// ConfirmRequired: every signature waits for the holder (R-DC-1).
const ConfirmRequired ConfirmMode = "required"

// ConfirmationStatus is where a confirmation stands.
type ConfirmationStatus string

// Confirmation states; all but pending are final.
const (
	ConfirmPending   ConfirmationStatus = "pending"
	ConfirmApproved  ConfirmationStatus = "approved"
	ConfirmRejected  ConfirmationStatus = "rejected"
	ConfirmExpired   ConfirmationStatus = "expired"
	ConfirmCancelled ConfirmationStatus = "cancelled"
	ConfirmFailed    ConfirmationStatus = "failed" // approved, but the key could not sign
)

// ConfirmationView is a confirmation as the requester and the holder see
// it. Signature and Version are set once approved.
type ConfirmationView struct {
	ID        string             `json:"id"`
	Key       string             `json:"key"`
	Status    ConfirmationStatus `json:"status"`
	Format    string             `json:"format"`
	Display   []string           `json:"display"`              // in English (txformat.DisplayLines)
	DisplayZH []string           `json:"display_zh,omitempty"` // the same in Chinese, CNY amounts also in capitals (txformat.DisplayLinesIn); empty in records made before it existed
	Digest    string             `json:"digest"`               // hex SHA-256 of the bytes to be signed
	CreatedAt time.Time          `json:"created_at"`
	ExpiresAt time.Time          `json:"expires_at"`
	Reason    string             `json:"reason,omitempty"` // why it ended, when not approved
	Signature string             `json:"signature,omitempty"`
	Version   int                `json:"version,omitempty"`
}

// ApproveRequest is the holder's approval: the key it believes it approves
// for, the SHA-256 it was shown, and the holder PIN.
type ApproveRequest struct {
	Key    string `json:"key"`
	Digest string `json:"digest"` // hex
	PIN    []byte `json:"-"`
}

// TriesLeft is how many holder PIN (or setup code) attempts remain before
// the holder is locked. keysvc's ErrHolderPIN errors wrap one beside the
// sentinel, so the confirmation page says it in the reader's language
// (errors.As) instead of relaying keysvc's English text.
type TriesLeft struct {
	Left, Limit int
}

// Error is "5 of 6 tries left".
func (t *TriesLeft) Error() string {
	return strconv.Itoa(t.Left) + " of " + strconv.Itoa(t.Limit) + " tries left"
}
