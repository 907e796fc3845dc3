package keysvc

import "github.com/keyward/keyward/keysvc/wire"

// Signatures, MACs and ciphertexts carry their key version,
// "kw:v3:<base64>" (wire.Versioned), so verify and decrypt find the right
// version after rotation.

func encodeVersioned(version int, b []byte) string {
	return wire.Versioned{Version: version, Bytes: b}.String()
}

// decodeVersioned parses "kw:v<n>:<base64>"; sentinel is the error to wrap
// (ErrInvalidCiphertext or ErrInvalidSignature).
func decodeVersioned(s string, sentinel error) (int, []byte, error) {
	v, err := wire.ParseVersioned(s, sentinel)
	return v.Version, v.Bytes, err
}
