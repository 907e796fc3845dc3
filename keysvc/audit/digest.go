package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
)

// DigestScheme names how Record.RequestDigest is made; the digest is
// stored as DigestScheme + ":" + hex.
//
// hmac-sha256-v1 is HMAC-SHA256(K, SHA-256(request body)), where K is a
// per-process subkey that keysvc derives at start inside the token (an
// HMAC, by the token's non-extractable keysvc-audit-digest key, of the
// label DigestKeyLabel). K lives only in keysvc's memory, never on disk, so
// a copy of the data directory gives no way to test guesses of a password
// or an OTP against a record (issue 12; the way Vault's audit devices HMAC
// sensitive fields). The same body always yields the same digest, so
// whoever holds the token can still match a record to a request.
const DigestScheme = "hmac-sha256-v1"

// DigestKeyLabel is the message the token's digest key MACs to derive K.
const DigestKeyLabel = "keyward audit request digest v1"

// ErrUnkeyedDigest is returned for a request digest that is not in
// DigestScheme: a bare hex SHA-256, as keysvc wrote before the keyed
// scheme. Such a log must be migrated (keysvc does it on start).
var ErrUnkeyedDigest = errors.New("audit: unkeyed request digest")

// Digester makes keyed request digests. It is safe for concurrent use.
type Digester struct {
	pool sync.Pool // of HMAC states under K
}

// NewDigester keys a Digester with K (32 bytes, derived in the token).
// The Digester keeps its own copy.
func NewDigester(k []byte) (*Digester, error) {
	if len(k) < 32 {
		return nil, fmt.Errorf("audit: request-digest key of %d bytes, want at least 32", len(k))
	}
	key := append([]byte(nil), k...)
	d := &Digester{}
	d.pool.New = func() any { return hmac.New(sha256.New, key) }
	return d, nil
}

// Digest returns the stored form of the digest of a request whose body
// has SHA-256 bodySum: DigestScheme ":" hex(HMAC-SHA256(K, bodySum)).
// An empty bodySum (no request) gives "".
func (d *Digester) Digest(bodySum []byte) string {
	if len(bodySum) == 0 {
		return ""
	}
	h := d.pool.Get().(hash.Hash)
	h.Reset()
	h.Write(bodySum)
	var out [sha256.Size]byte
	mac := h.Sum(out[:0])
	d.pool.Put(h)
	return DigestScheme + ":" + hex.EncodeToString(mac)
}

// Rekey turns a request digest written before the keyed scheme (hex
// SHA-256 of the body) into the digest a record of the same request holds
// now. A keyed or empty digest comes back unchanged; anything else is an
// error.
func (d *Digester) Rekey(old string) (string, error) {
	if old == "" || IsKeyedDigest(old) {
		return old, nil
	}
	sum, err := hex.DecodeString(old)
	if err != nil || len(sum) != sha256.Size {
		return "", fmt.Errorf("audit: request digest %.16q… is neither %s nor a hex SHA-256", old, DigestScheme)
	}
	return d.Digest(sum), nil
}

// IsKeyedDigest reports whether a stored request digest is in DigestScheme.
func IsKeyedDigest(s string) bool {
	hexPart, ok := strings.CutPrefix(s, DigestScheme+":")
	if !ok || len(hexPart) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(hexPart)
	return err == nil
}

// checkDigest refuses a non-empty request digest outside DigestScheme.
func (r *Record) checkDigest() error {
	if r.RequestDigest == "" || IsKeyedDigest(r.RequestDigest) {
		return nil
	}
	return fmt.Errorf("%w in record %d: written by a keysvc older than the keyed scheme %s; start keysvc once to migrate the log", ErrUnkeyedDigest, r.Seq, DigestScheme)
}
