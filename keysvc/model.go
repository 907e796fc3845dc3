package keysvc

import (
	"encoding/json"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token/tpm"
)

// Version is one version of a key.
type Version struct {
	Version     int        `json:"version"`
	State       wire.State `json:"state"`
	CreatedAt   time.Time  `json:"created_at"`
	DestroyAt   *time.Time `json:"destroy_at,omitempty"`
	DestroyedAt *time.Time `json:"destroyed_at,omitempty"`
	// StateBeforeDestroy is restored by cancel-destroy.
	StateBeforeDestroy wire.State `json:"state_before_destroy,omitempty"`
	// PublicKey is the PKIX DER public key of asymmetric versions; kept
	// after destruction so old signatures still verify.
	PublicKey []byte `json:"public_key,omitempty"`
	// OAEPHash is the OAEP hash of RSA encryption versions ("sha256", or
	// "sha1" on tokens that implement nothing else, such as SoftHSM 2.6).
	OAEPHash string `json:"oaep_hash,omitempty"`

	// Where the material is; never shown to API clients.
	ObjectLabel string `json:"object_label,omitempty"` // hsm: CKA_LABEL in the token
	Wrapped     []byte `json:"wrapped,omitempty"`      // wrapped: blob under the KEK; emptied on destruction
	// KEKEpoch is the KEK epoch that sealed Wrapped (kekepoch.go); 0 is
	// epoch 1, what every blob made before epochs is.
	KEKEpoch int `json:"kek_epoch,omitempty"`
	// tpm: the key's TPM blob (only that TPM can load it); emptied on destruction.
	TPMKey *tpm.KeyBlob `json:"tpm_key,omitempty"`
}

// Key is a named key with its versions.
type Key struct {
	Name       string          `json:"name"`
	Purpose    wire.Purpose    `json:"purpose"`
	Algorithm  wire.Algorithm  `json:"algorithm"`
	Protection wire.Protection `json:"protection"`
	// Primary is the version that signs and encrypts.
	Primary int `json:"primary"`
	// MinVersion is the oldest version allowed to verify or decrypt.
	MinVersion int `json:"min_version"`
	// RotationPeriod, when set, makes the scheduler rotate the key.
	RotationPeriod wire.Duration `json:"rotation_period,omitempty"`
	LastRotated    time.Time     `json:"last_rotated"`
	Policy         wire.Policy   `json:"policy"`
	Versions       []Version     `json:"versions"`
	CreatedAt      time.Time     `json:"created_at"`
	// SM2UID is an sm2 key's distinguishing ID (default 1234567812345678).
	SM2UID string `json:"sm2_uid,omitempty"`
	// Confirm is ConfirmRequired for keys that sign only what their holder
	// has seen and confirmed on the second channel (R-DC-1..4). Set at
	// creation; it cannot be turned off.
	Confirm wire.ConfirmMode `json:"confirm,omitempty"`
	// Holder is the confirming holder's credential and PIN counter (keys
	// with Confirm only).
	Holder *Holder `json:"holder,omitempty"`
	// Revision counts the store updates of this key record: 1 at
	// creation, incremented in every update's transaction (Service.updateKey).
	// The key cache never replaces a key with one of a lower or equal
	// revision. Records written before revisions existed read as 0 and
	// count up from their next update.
	Revision uint64 `json:"revision,omitempty"`

	// setupCode is the holder's one-time setup code, returned by CreateKey
	// and ResetHolder only; never stored (the store keeps its hash).
	setupCode string
}

// SetupCode is the one-time holder setup code of a key just created or
// reset (empty otherwise). Give it to the holder out of band.
func (k *Key) SetupCode() string { return k.setupCode }

// Version returns version v, or nil.
func (k *Key) Version(v int) *Version {
	if v < 1 || v > len(k.Versions) {
		return nil
	}
	return &k.Versions[v-1]
}

// Clone returns a deep copy.
func (k *Key) Clone() *Key {
	b, _ := json.Marshal(k)
	var c Key
	_ = json.Unmarshal(b, &c)
	return &c
}
