package keysvc

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// Signatures and ciphertexts carry their key version, "kw:v3:<base64>", so
// verify and decrypt find the right version after rotation.

func encodeVersioned(version int, b []byte) string {
	return "kw:v" + strconv.Itoa(version) + ":" + base64.StdEncoding.EncodeToString(b)
}

// decodeVersioned parses "kw:v<n>:<base64>"; sentinel is the error to wrap
// (ErrInvalidCiphertext or ErrInvalidSignature).
func decodeVersioned(s string, sentinel error) (int, []byte, error) {
	rest, ok := strings.CutPrefix(s, "kw:v")
	if !ok {
		return 0, nil, fmt.Errorf("%w: must look like kw:v<version>:<base64>", sentinel)
	}
	num, body, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, nil, fmt.Errorf("%w: must look like kw:v<version>:<base64>", sentinel)
	}
	v, err := strconv.Atoi(num)
	if err != nil || v < 1 || strconv.Itoa(v) != num {
		return 0, nil, fmt.Errorf("%w: version %q is not a positive number", sentinel, num)
	}
	b, err := base64.StdEncoding.DecodeString(body)
	if err != nil || len(b) == 0 {
		return 0, nil, fmt.Errorf("%w: the part after kw:v%d: is not valid base64", sentinel, v)
	}
	return v, b, nil
}

// VersionOf returns the key version a "kw:v<n>:<base64>" value
// (signature, ciphertext, MAC) names, for clients that keep such values
// and need to know which version made them.
func VersionOf(s string) (int, error) {
	n, _, err := decodeVersioned(s, ErrInvalidArgument)
	return n, err
}
