package keysvc

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/keyward/keyward/token/tpm"
)

// Purpose says what a key is for; the service refuses other uses.
type Purpose string

// Purposes.
const (
	PurposeSign    Purpose = "sign"
	PurposeEncrypt Purpose = "encrypt"
	PurposeWrap    Purpose = "wrap"
	// PurposeMAC keys make keyed hashes (HMAC-SM3), e.g. of passwords and
	// PINs before the banking app stores them (R-AUTH-1, R-TOK-4).
	PurposeMAC Purpose = "mac"
)

// Algorithm is a key's algorithm.
type Algorithm string

// Algorithms (SM2/SM4 arrive with issue 4).
const (
	AlgECP256  Algorithm = "ec-p256"
	AlgECP384  Algorithm = "ec-p384"
	AlgRSA2048 Algorithm = "rsa-2048"
	AlgRSA3072 Algorithm = "rsa-3072"
	AlgAES256  Algorithm = "aes-256"
	// AlgSM2 and AlgSM4 are the national algorithms (R-TOK-6): SM2
	// signatures with SM3 and the key's distinguishing ID, SM2 encryption
	// (C1C3C2), SM4-GCM. Protection must be "wrapped" (see sm.go).
	AlgSM2 Algorithm = "sm2"
	AlgSM4 Algorithm = "sm4"
	// AlgHMACSM3 is HMAC with SM3 and a 32-byte key (purpose mac).
	AlgHMACSM3 Algorithm = "hmac-sm3"
)

// Protection says where the key material lives.
type Protection string

// Protection levels.
const (
	// ProtectionHSM: each version is an object inside the token.
	ProtectionHSM Protection = "hsm"
	// ProtectionWrapped: each version is generated in the token, stored
	// only as a blob wrapped by a token-held KEK (CKM_AES_KEY_WRAP_PAD), and
	// unwrapped into a session object for each use. For keys counted in
	// the hundred thousands (one per customer).
	ProtectionWrapped Protection = "wrapped"
	// ProtectionExternal: the private key is held outside keysvc (a
	// customer's USB key); keysvc keeps only the public key given at
	// creation and verifies with it. Such keys never sign.
	ProtectionExternal Protection = "external"
	// ProtectionTPM: each version is an ECC P-256 signing key created in
	// the host TPM (package token/tpm); the store keeps its TPM blob, which
	// only that TPM can load. For low-volume keys (a few signatures a
	// second at most) that must not depend on the HSM partition. Needs
	// Config.TPM; ec-p256 sign keys only.
	ProtectionTPM Protection = "tpm"
)

// State is a key version's lifecycle state.
type State string

// Version states. Allowed transitions:
//
//	enabled ⇄ disabled
//	enabled | disabled → destroy-scheduled → (cancel) disabled
//	destroy-scheduled → destroyed (by the scheduler, when due; final)
const (
	StateEnabled          State = "enabled"
	StateDisabled         State = "disabled"
	StateDestroyScheduled State = "destroy-scheduled"
	StateDestroyed        State = "destroyed"
)

// Op is an operation a policy grants.
type Op string

// Operations a per-key policy can grant.
const (
	OpSign    Op = "sign"
	OpVerify  Op = "verify"
	OpEncrypt Op = "encrypt"
	OpDecrypt Op = "decrypt"
	OpDataKey Op = "datakey"
	OpPublic  Op = "public"
	OpRead    Op = "read"   // key metadata
	OpRotate  Op = "rotate" // manual rotation
	OpManage  Op = "manage" // version state changes, destruction
	OpMAC     Op = "mac"    // compute and verify keyed hashes
)

// Grant lets one client do some operations on a key.
type Grant struct {
	Client string `json:"client"`
	Ops    []Op   `json:"ops"`
}

// Policy is a key's access list. Deny by default: a client not granted an
// operation may not do it. Admin clients may create keys and always read and
// manage them (R-SRV-2).
type Policy struct {
	Grants []Grant `json:"grants"`
}

// Allows reports whether client may do op.
func (p Policy) Allows(client string, op Op) bool {
	for _, g := range p.Grants {
		if g.Client != client {
			continue
		}
		for _, o := range g.Ops {
			if o == op {
				return true
			}
		}
	}
	return false
}

// Version is one version of a key.
type Version struct {
	Version     int        `json:"version"`
	State       State      `json:"state"`
	CreatedAt   time.Time  `json:"created_at"`
	DestroyAt   *time.Time `json:"destroy_at,omitempty"`
	DestroyedAt *time.Time `json:"destroyed_at,omitempty"`
	// StateBeforeDestroy is restored by cancel-destroy.
	StateBeforeDestroy State `json:"state_before_destroy,omitempty"`
	// PublicKey is the PKIX DER public key of asymmetric versions; kept
	// after destruction so old signatures still verify.
	PublicKey []byte `json:"public_key,omitempty"`
	// OAEPHash is the OAEP hash of RSA encryption versions ("sha256", or
	// "sha1" on tokens that implement nothing else, such as SoftHSM 2.6).
	OAEPHash string `json:"oaep_hash,omitempty"`

	// Where the material is; never shown to API clients.
	ObjectLabel string `json:"object_label,omitempty"` // hsm: CKA_LABEL in the token
	Wrapped     []byte `json:"wrapped,omitempty"`      // wrapped: blob under the KEK; emptied on destruction
	// tpm: the key's TPM blob (only that TPM can load it); emptied on destruction.
	TPMKey *tpm.KeyBlob `json:"tpm_key,omitempty"`
}

// Key is a named key with its versions.
type Key struct {
	Name       string     `json:"name"`
	Purpose    Purpose    `json:"purpose"`
	Algorithm  Algorithm  `json:"algorithm"`
	Protection Protection `json:"protection"`
	// Primary is the version that signs and encrypts.
	Primary int `json:"primary"`
	// MinVersion is the oldest version allowed to verify or decrypt.
	MinVersion int `json:"min_version"`
	// RotationPeriod, when set, makes the scheduler rotate the key.
	RotationPeriod Duration  `json:"rotation_period,omitempty"`
	LastRotated    time.Time `json:"last_rotated"`
	Policy         Policy    `json:"policy"`
	Versions       []Version `json:"versions"`
	CreatedAt      time.Time `json:"created_at"`
	// SM2UID is an sm2 key's distinguishing ID (default 1234567812345678).
	SM2UID string `json:"sm2_uid,omitempty"`
	// Confirm is ConfirmRequired for keys that sign only what their holder
	// has seen and confirmed on the second channel (R-DC-1..4). Set at
	// creation; it cannot be turned off.
	Confirm ConfirmMode `json:"confirm,omitempty"`
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

// Duration is a time.Duration that reads and writes as "720h".
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string such as "720h" or "30m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"720h\"")
	}
	if s == "" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("duration %q must look like \"720h\" or \"30m\"", s)
	}
	*d = Duration(v)
	return nil
}
