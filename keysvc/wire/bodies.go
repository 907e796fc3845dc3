package wire

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
)

// Base64 is a []byte that travels as standard padded base64, like
// encoding/json's own []byte; null reads as nil. A value that is not a
// base64 string is a *json.UnmarshalTypeError whose Type is Base64Type, so
// a strict decoder (keysvc/api) can say which field is wrong and why.
type Base64 []byte

// Base64Type is the reflect.Type of Base64 in decoding errors.
var Base64Type = reflect.TypeFor[Base64]()

// JSONDescription says what a Base64 field takes, for strict decoders'
// messages (keysvc/wire/httpedge.Describer).
func (Base64) JSONDescription() string { return "a base64 string (standard encoding, padded)" }

// UnmarshalJSON reads a base64 string or null.
func (b *Base64) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*b = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		// encoding/json fills Field from its context.
		return &json.UnmarshalTypeError{Value: jsonKind(data), Type: Base64Type}
	}
	v, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: "string that is not base64", Type: Base64Type}
	}
	*b = v
	return nil
}

func jsonKind(data []byte) string {
	switch data[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case '"':
		return "string"
	}
	return "number"
}

// KeyList is one page of GET /v1/keys.
type KeyList struct {
	Keys []KeyView `json:"keys"`
	// Next is the "after" of the following page; absent on the last page.
	Next string `json:"next,omitempty"`
}

// SignBatchRequest is POST /v1/keys/{name}/sign-batch: 1 to 1000 sign
// requests, signed in order by one version.
type SignBatchRequest struct {
	Items []SignRequest `json:"items"`
}

// SignBatchResult holds one SignResult per item, in order.
type SignBatchResult struct {
	Signatures []SignResult `json:"signatures"`
}

// VerifyResult answers verify and mac-verify. A well-formed signature or
// MAC that does not match is Valid false, not an error.
type VerifyResult struct {
	Valid bool `json:"valid"`
}

// MACRequest is POST /v1/keys/{name}/mac (hmac-sm3 keys).
type MACRequest struct {
	Message Base64 `json:"message"`
}

// MACResult is a MAC, "kw:v<n>:<base64>", and the version that made it.
type MACResult struct {
	MAC     string `json:"mac"`
	Version int    `json:"version"`
}

// VerifyMACRequest is POST /v1/keys/{name}/mac-verify.
type VerifyMACRequest struct {
	Message Base64 `json:"message"`
	MAC     string `json:"mac"`
}

// EncryptRequest is POST /v1/keys/{name}/encrypt: plaintext, bound to aad
// (decrypt needs the same aad).
type EncryptRequest struct {
	Plaintext Base64 `json:"plaintext"`
	AAD       Base64 `json:"aad"`
}

// EncryptResult is a ciphertext, "kw:v<n>:<base64>", and its version.
type EncryptResult struct {
	Ciphertext string `json:"ciphertext"`
	Version    int    `json:"version"`
}

// DecryptRequest is POST /v1/keys/{name}/decrypt.
type DecryptRequest struct {
	Ciphertext string `json:"ciphertext"`
	AAD        Base64 `json:"aad"`
}

// DecryptResult is the plaintext of a decrypt.
type DecryptResult struct {
	Plaintext []byte `json:"plaintext"`
}

// DataKeyRequest is POST /v1/keys/{name}/datakey: Size 16, 24 or 32 bytes
// (absent: 32), bound to aad. The answer is a DataKey.
type DataKeyRequest struct {
	Size *int   `json:"size,omitempty"`
	AAD  Base64 `json:"aad"`
}
