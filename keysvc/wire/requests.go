package wire

import "time"

// CreateKeyRequest asks for a new key with version 1.
type CreateKeyRequest struct {
	Name           string     `json:"name"`
	Purpose        Purpose    `json:"purpose"`
	Algorithm      Algorithm  `json:"algorithm"`
	Protection     Protection `json:"protection"`
	RotationPeriod Duration   `json:"rotation_period,omitempty"`
	Policy         Policy     `json:"policy"`
	// SM2UID sets an sm2 key's distinguishing ID (1-64 printable ASCII;
	// default 1234567812345678).
	SM2UID string `json:"sm2_uid,omitempty"`
	// Confirm "required" makes every signature wait for the holder's
	// confirmation on the second channel (sign keys only; R-DC-1).
	Confirm ConfirmMode `json:"confirm,omitempty"`
	// PublicKey is the PEM "PUBLIC KEY" (PKIX) of a key with protection
	// external: a customer's USB-key public key that keysvc verifies
	// against. Required for external keys, refused for others.
	PublicKey string `json:"public_key,omitempty"`
}

// SignRequest signs a message (hashed by the service with the algorithm's
// hash: SHA-256 for ec-p256 and RSA, SHA-384 for ec-p384) or a digest the
// caller hashed already. Exactly one of Message and Digest is set.
type SignRequest struct {
	Message Base64 `json:"message"`
	Digest  Base64 `json:"digest"`
	// Scheme for RSA keys: "pkcs1v15" (default) or "pss".
	Scheme string `json:"scheme,omitempty"`
}

// SignResult is one signature, "kw:v<version>:<base64>".
type SignResult struct {
	Signature string `json:"signature,omitempty"`
	Version   int    `json:"version,omitempty"`
	// Confirmation is set instead of a signature when the key needs its
	// holder's confirmation: the request is pending (HTTP 202); poll
	// GET /v1/confirmations/{id} for the signature.
	Confirmation *ConfirmationView `json:"confirmation,omitempty"`
}

// VerifyRequest checks a "kw:v<n>:..." signature over a message or digest.
type VerifyRequest struct {
	Message   Base64 `json:"message"`
	Digest    Base64 `json:"digest"`
	Scheme    string `json:"scheme,omitempty"`
	Signature string `json:"signature"`
}

// VersionAction changes one version's state.
type VersionAction string

// Version actions (POST /v1/keys/{name}/versions/{v}/{action}).
const (
	ActionDisable         VersionAction = "disable"
	ActionEnable          VersionAction = "enable"
	ActionScheduleDestroy VersionAction = "schedule-destroy"
	ActionCancelDestroy   VersionAction = "cancel-destroy"
)

// DataKey is a fresh data-encryption key for envelope encryption: use
// Plaintext locally, store Ciphertext, forget Plaintext.
type DataKey struct {
	Plaintext  []byte `json:"plaintext"`  // base64 in JSON
	Ciphertext string `json:"ciphertext"` // "kw:v<n>:..."
	Version    int    `json:"version"`
}

// PublicKeyResult is a version's public key.
type PublicKeyResult struct {
	Version int    `json:"version"`
	PEM     string `json:"pem"`
	JWK     JWK    `json:"jwk"`
}

// JWK is an RFC 7517 public JSON Web Key.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Kid string `json:"kid"`
	Use string `json:"use,omitempty"`
}

// KeySettingsRequest changes a key's settings; absent fields stay.
type KeySettingsRequest struct {
	// MinVersion is the oldest version allowed to verify or decrypt
	// (1..primary). Raising it retires older versions without destroying them.
	MinVersion *int `json:"min_version,omitempty"`
	// RotationPeriod makes the scheduler rotate the key ("720h"); "0s" stops it.
	RotationPeriod *Duration `json:"rotation_period,omitempty"`
}

// ScheduleDestroy options.
type ScheduleDestroyRequest struct {
	// Delay before destruction; 0 means the configured default (24 h).
	// Below the configured minimum is refused.
	Delay Duration `json:"delay,omitempty"`
}

// KeyView is a key as API clients see it: no object labels, no blobs.
type KeyView struct {
	Name           string        `json:"name"`
	Purpose        Purpose       `json:"purpose"`
	Algorithm      Algorithm     `json:"algorithm"`
	Protection     Protection    `json:"protection"`
	Primary        int           `json:"primary"`
	MinVersion     int           `json:"min_version"`
	RotationPeriod Duration      `json:"rotation_period,omitempty"`
	LastRotated    time.Time     `json:"last_rotated"`
	Policy         Policy        `json:"policy"`
	Versions       []VersionView `json:"versions"`
	CreatedAt      time.Time     `json:"created_at"`
	SM2UID         string        `json:"sm2_uid,omitempty"`
	Confirm        ConfirmMode   `json:"confirm,omitempty"`
	// Holder is the holder's state on confirm-required keys.
	Holder *HolderView `json:"holder,omitempty"`
	// HolderSetupCode is returned once, when the key is created or its
	// holder reset: the holder sets their PIN with it on the confirmation
	// endpoint. Keyward keeps only its hash.
	HolderSetupCode string `json:"holder_setup_code,omitempty"`
}

// HolderView is what API clients see of a key's holder.
type HolderView struct {
	Enrolled bool       `json:"enrolled"` // the holder has set a PIN
	Failures int        `json:"failures"` // consecutive wrong PINs
	Locked   bool       `json:"locked"`
	LockedAt *time.Time `json:"locked_at,omitempty"`
}

// VersionView is a version as API clients see it.
type VersionView struct {
	Version     int        `json:"version"`
	State       State      `json:"state"`
	CreatedAt   time.Time  `json:"created_at"`
	DestroyAt   *time.Time `json:"destroy_at,omitempty"`
	DestroyedAt *time.Time `json:"destroyed_at,omitempty"`
}
