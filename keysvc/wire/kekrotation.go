package wire

import "time"

// KEK rotation states (KEKRotationStatus.State).
const (
	// KEKIdle: no rotation runs; every live blob is under Current.
	KEKIdle = "idle"
	// KEKRewrapping: live blobs are being re-wrapped from Current to
	// Target; new blobs are sealed under Target.
	KEKRewrapping = "rewrapping"
	// KEKRetiring: nothing live remains under Retiring, whose KEKs are
	// being destroyed in the token.
	KEKRetiring = "retiring"
)

// KEKRotationStatus is the answer of GET and POST /v1/admin/kek-rotation:
// keysvc's key-encryption-key epochs and the progress of a rotation.
type KEKRotationStatus struct {
	// Current is the epoch whose KEKs are in service; during a rotation,
	// the epoch being left.
	Current int `json:"current"`
	// Target is the epoch a running rotation re-wraps to (0: none).
	Target int `json:"target,omitempty"`
	// Retiring is the epoch whose KEKs are being destroyed (0: none).
	Retiring int    `json:"retiring,omitempty"`
	State    string `json:"state"`
	// Done counts keys re-wrapped by this keysvc process in the running
	// (or, when idle, the last) rotation; Total is Done plus the keys
	// still holding a blob under an older epoch at the start of the
	// worker's last pass. A restart counts from 0 again.
	Done  int `json:"done"`
	Total int `json:"total"`
	// Failed counts keys whose re-wrap failed in the last pass (retried
	// until they succeed; LastError names the newest).
	Failed     int        `json:"failed,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	StartedBy  string     `json:"started_by,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// Retired lists the epochs whose KEKs were destroyed; DestroyedKEKs the
	// labels destroyed by the last rotation.
	Retired       []int    `json:"retired,omitempty"`
	DestroyedKEKs []string `json:"destroyed_keks,omitempty"`
}
