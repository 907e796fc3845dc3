package wire

import (
	"encoding/json"
	"fmt"
	"time"
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
	// (C1C3C2), SM4-GCM. Protection must be "wrapped" (see keysvc/sm.go).
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
	// second at most) that must not depend on the HSM partition. Needs keysvc's
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
		// The value is not quoted: decode errors name fields, not values.
		return fmt.Errorf("duration must look like \"720h\" or \"30m\"")
	}
	*d = Duration(v)
	return nil
}
