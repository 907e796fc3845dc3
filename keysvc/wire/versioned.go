package wire

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// Versioned is a value one key version made — a signature, a MAC or a
// ciphertext — as the API carries it: "kw:v<version>:<base64>" (standard
// base64, padded), e.g. "kw:v3:MEUCIQ…". The version travels with the
// value so verify, MAC-verify and decrypt find the right version after the
// key has rotated.
type Versioned struct {
	Version int    // 1 or more
	Bytes   []byte // never empty in a parsed value
}

// String formats v as "kw:v<version>:<base64>".
func (v Versioned) String() string { return encodeVersioned(v.Version, v.Bytes) }

// ParseVersioned parses "kw:v<version>:<base64>". The version must be a
// positive decimal without sign or leading zeros and the bytes must not be
// empty. Refusals wrap sentinel (ErrInvalidSignature for signatures and
// MACs, ErrInvalidCiphertext for ciphertexts) and say what is wrong.
func ParseVersioned(s string, sentinel error) (Versioned, error) {
	n, b, err := decodeVersioned(s, sentinel)
	if err != nil {
		return Versioned{}, err
	}
	return Versioned{Version: n, Bytes: b}, nil
}

// VersionOf returns the key version a "kw:v<n>:<base64>" value
// (signature, ciphertext, MAC) names, for clients that keep such values
// and need to know which version made them. Refusals wrap
// ErrInvalidArgument.
func VersionOf(s string) (int, error) {
	n, _, err := decodeVersioned(s, ErrInvalidArgument)
	return n, err
}

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
