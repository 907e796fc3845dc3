package smcrypto

import (
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// DefaultUID is the SM2 distinguishing identifier used when a caller does not
// supply one: the ASCII string "1234567812345678" specified by GB/T 35276-2017
// (and GM/T 0009) as the default user ID. It enters the signature through
// Z_A, so signer and verifier must agree on it.
const DefaultUID = "1234567812345678"

// ErrDecrypt is returned for every decryption or authentication failure
// (SM2 decryption, SM4-GCM open, SM4-CBC decryption). It is deliberately
// vague: callers and their clients must not be able to tell a bad tag from
// bad padding or a malformed ciphertext.
var ErrDecrypt = errors.New("smcrypto: decryption failed")

// ErrInvalidKey is returned (possibly wrapped, test with errors.Is) when key
// material has the wrong length, is out of range, is not on the SM2 curve,
// or belongs to another algorithm or curve.
var ErrInvalidKey = errors.New("smcrypto: invalid key")

// sm2ScalarSize is the byte length of an SM2 private scalar and of a field
// element of the recommended curve.
const sm2ScalarSize = 32

// sm2DigestSize is the byte length of e = SM3(Z_A ‖ M).
const sm2DigestSize = 32

// maxUIDLen is the longest distinguishing identifier GB/T 32918.2 allows:
// ENTL_A is the identifier's length in bits, stored in two bytes.
const maxUIDLen = 0x1fff

// rawC1Len is the length of C1 as an uncompressed point 0x04 ‖ x ‖ y.
const rawC1Len = 1 + 2*sm2ScalarSize

// rawOverhead is the size of a raw C1 ‖ C3 ‖ C2 ciphertext minus the length
// of the plaintext.
const rawOverhead = rawC1Len + sm2DigestSize

// Encoding selects the wire format of an SM2 ciphertext. Both encodings
// carry the components in the C1 ‖ C3 ‖ C2 order of GB/T 32918.4-2016.
type Encoding int

const (
	// EncodingASN1 is the GM/T 0009 SM2Cipher structure
	// SEQUENCE { XCoordinate INTEGER, YCoordinate INTEGER,
	// HASH OCTET STRING (C3), CipherText OCTET STRING (C2) },
	// DER encoded. This is what OpenSSL 3 "pkeyutl -encrypt" produces.
	EncodingASN1 Encoding = iota + 1
	// EncodingRaw is the concatenation C1 ‖ C3 ‖ C2 with C1 an uncompressed
	// point: 0x04 ‖ x (32 bytes) ‖ y (32 bytes) ‖ C3 (32 bytes) ‖ C2, that
	// is 97 bytes longer than the plaintext.
	EncodingRaw
)

// GenerateSM2 generates a fresh SM2 key pair on the GB/T 32918.5
// recommended curve using crypto/rand. The private scalar is in [1, n-2].
func GenerateSM2() (*sm2.PrivateKey, error) {
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("smcrypto: generate SM2 key: %w", err)
	}
	return k, nil
}

// MarshalSM2Private returns the private scalar d of k as exactly 32
// big-endian bytes, the form in which keysvc wraps SM2 keys. The result is
// fresh memory that the caller should [Wipe] after use. It returns nil if k
// is nil, not on the SM2 curve, or has a scalar that does not fit.
func MarshalSM2Private(k *sm2.PrivateKey) []byte {
	if k == nil || k.D == nil || k.Curve != sm2.P256() || k.D.Sign() <= 0 || k.D.BitLen() > 8*sm2ScalarSize {
		return nil
	}
	return k.D.FillBytes(make([]byte, sm2ScalarSize))
}

// ParseSM2Private builds an SM2 private key from a 32-byte big-endian scalar
// d as produced by [MarshalSM2Private] and derives its public key. It
// returns an error wrapping [ErrInvalidKey] if d is not 32 bytes long or the
// scalar is outside [1, n-2] (GB/T 32918.1-2016, 6.1). d is copied, so the
// caller may [Wipe] it as soon as ParseSM2Private returns.
func ParseSM2Private(d []byte) (*sm2.PrivateKey, error) {
	if len(d) != sm2ScalarSize {
		return nil, fmt.Errorf("%w: SM2 private key must be %d bytes, got %d", ErrInvalidKey, sm2ScalarSize, len(d))
	}
	k, err := sm2.NewPrivateKey(d)
	if err != nil {
		// The underlying error says nothing about the value beyond "out of
		// range", but keep the message fixed anyway.
		return nil, fmt.Errorf("%w: SM2 private scalar out of range", ErrInvalidKey)
	}
	return k, nil
}

// MarshalSM2Public encodes pub as a DER PKIX SubjectPublicKeyInfo with
// algorithm id-ecPublicKey and named curve SM2 (OID 1.2.156.10197.1.301),
// the encoding OpenSSL 3 uses for SM2 keys ("openssl pkey -pubin" reads it
// as an SM2 key). PEM-encode it with type "PUBLIC KEY" for OpenSSL. It
// returns an error wrapping [ErrInvalidKey] if pub is not a valid point on
// the SM2 curve.
func MarshalSM2Public(pub *ecdsa.PublicKey) ([]byte, error) {
	if err := checkSM2Public(pub); err != nil {
		return nil, err
	}
	der, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return der, nil
}

// ParseSM2Public parses a DER PKIX SubjectPublicKeyInfo holding an SM2
// public key, as written by [MarshalSM2Public] or "openssl pkey -pubout
// -outform DER". Both the id-ecPublicKey and the SM2 algorithm identifier
// are accepted, but the curve must be the SM2 curve: keys on other curves
// (NIST P-256 included), other algorithms, points not on the curve and
// trailing data are refused with an error wrapping [ErrInvalidKey].
func ParseSM2Public(der []byte) (*ecdsa.PublicKey, error) {
	k, err := smx509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: not an elliptic-curve key (%T)", ErrInvalidKey, k)
	}
	if err := checkSM2Public(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// checkSM2Public reports whether pub is a usable SM2 public key: non-nil, on
// the SM2 curve object, and a valid non-identity point on it.
func checkSM2Public(pub *ecdsa.PublicKey) error {
	if pub == nil || pub.X == nil || pub.Y == nil {
		return fmt.Errorf("%w: nil SM2 public key", ErrInvalidKey)
	}
	if pub.Curve != sm2.P256() {
		name := "unknown"
		if pub.Curve != nil && pub.Curve.Params() != nil {
			name = pub.Curve.Params().Name
		}
		return fmt.Errorf("%w: curve %s is not SM2", ErrInvalidKey, name)
	}
	if pub.X.Sign() < 0 || pub.Y.Sign() < 0 || pub.X.BitLen() > 8*sm2ScalarSize || pub.Y.BitLen() > 8*sm2ScalarSize {
		return fmt.Errorf("%w: SM2 public key coordinates out of range", ErrInvalidKey)
	}
	point := make([]byte, rawC1Len)
	point[0] = 0x04
	pub.X.FillBytes(point[1 : 1+sm2ScalarSize])
	pub.Y.FillBytes(point[1+sm2ScalarSize:])
	if _, err := sm2.NewPublicKey(point); err != nil {
		return fmt.Errorf("%w: point is not on the SM2 curve", ErrInvalidKey)
	}
	return nil
}

// checkSM2Private reports whether priv is a usable SM2 private key.
func checkSM2Private(priv *sm2.PrivateKey) error {
	if priv == nil || priv.D == nil {
		return fmt.Errorf("%w: nil SM2 private key", ErrInvalidKey)
	}
	return checkSM2Public(&priv.PublicKey)
}

// uidOrDefault returns uid, or [DefaultUID] if uid is empty, and rejects
// identifiers too long for the 16-bit ENTL field of GB/T 32918.2.
func uidOrDefault(uid []byte) ([]byte, error) {
	if len(uid) == 0 {
		return []byte(DefaultUID), nil
	}
	if len(uid) > maxUIDLen {
		return nil, fmt.Errorf("smcrypto: SM2 uid is %d bytes, at most %d allowed", len(uid), maxUIDLen)
	}
	return uid, nil
}

// SM2Digest returns e = SM3(Z_A ‖ msg), the value an SM2 signature actually
// signs (GB/T 32918.2-2016, 6.1 steps A1-A2), where
// Z_A = SM3(ENTL_A ‖ uid ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A) binds the signer's
// identifier uid and public key pub. A nil or empty uid means [DefaultUID].
// The result is 32 bytes and is accepted by [SM2SignDigest] and
// [SM2VerifyDigest].
func SM2Digest(pub *ecdsa.PublicKey, uid, msg []byte) ([]byte, error) {
	if err := checkSM2Public(pub); err != nil {
		return nil, err
	}
	id, err := uidOrDefault(uid)
	if err != nil {
		return nil, err
	}
	e, err := sm2.CalculateSM2Hash(pub, msg, id)
	if err != nil {
		return nil, fmt.Errorf("smcrypto: SM2 digest: %w", err)
	}
	return e, nil
}

// SM2Sign signs msg with priv under the distinguishing identifier uid
// (nil or empty means [DefaultUID]) following GB/T 32918.2-2016: it computes
// e = SM3(Z_A ‖ msg) and signs e. The signature is the DER encoding of
// SEQUENCE { r INTEGER, s INTEGER }, verifiable with [SM2Verify] or
// "openssl dgst -sm3 -verify pub.pem -sigopt distid:<uid>". Randomness
// comes from crypto/rand (hedged with the key and digest, see the package
// documentation), so signing the same message twice gives different
// signatures.
func SM2Sign(priv *sm2.PrivateKey, uid, msg []byte) ([]byte, error) {
	if err := checkSM2Private(priv); err != nil {
		return nil, err
	}
	e, err := SM2Digest(&priv.PublicKey, uid, msg)
	if err != nil {
		return nil, err
	}
	return SM2SignDigest(priv, e)
}

// SM2SignDigest signs a precomputed e = SM3(Z_A ‖ M), as returned by
// [SM2Digest], with priv (GB/T 32918.2-2016, 6.1 steps A3-A7). e must be
// exactly 32 bytes; it is NOT hashed again, so passing a plain SM3(M) here
// produces signatures that standard verifiers reject. The output format is
// that of [SM2Sign].
func SM2SignDigest(priv *sm2.PrivateKey, e []byte) ([]byte, error) {
	if err := checkSM2Private(priv); err != nil {
		return nil, err
	}
	if len(e) != sm2DigestSize {
		return nil, fmt.Errorf("smcrypto: SM2 digest must be %d bytes, got %d", sm2DigestSize, len(e))
	}
	sig, err := sm2.SignASN1(rand.Reader, priv, e, nil)
	if err != nil {
		return nil, fmt.Errorf("smcrypto: SM2 sign: %w", err)
	}
	return sig, nil
}

// SM2Verify reports whether sig is a valid DER-encoded SM2 signature of msg
// by pub under the distinguishing identifier uid (nil or empty means
// [DefaultUID]), following GB/T 32918.2-2016 section 7. It returns false for
// malformed signatures, keys not on the SM2 curve and overlong identifiers.
func SM2Verify(pub *ecdsa.PublicKey, uid, msg, sig []byte) bool {
	e, err := SM2Digest(pub, uid, msg)
	if err != nil {
		return false
	}
	return SM2VerifyDigest(pub, e, sig)
}

// SM2VerifyDigest reports whether sig is a valid DER-encoded SM2 signature of
// the precomputed e = SM3(Z_A ‖ M) (see [SM2Digest]) by pub. e must be 32
// bytes.
func SM2VerifyDigest(pub *ecdsa.PublicKey, e, sig []byte) bool {
	if checkSM2Public(pub) != nil || len(e) != sm2DigestSize {
		return false
	}
	return sm2.VerifyASN1(pub, e, sig)
}

// SM2Encrypt encrypts plaintext to pub with SM2 public-key encryption
// (GB/T 32918.4-2016) using randomness from crypto/rand. The components are
// always in C1 ‖ C3 ‖ C2 order; enc selects the ASN.1 SM2Cipher encoding
// that OpenSSL uses ([EncodingASN1]) or the raw concatenation
// ([EncodingRaw]). plaintext must not be empty. The ciphertext is 97 bytes
// (raw) or roughly 105-112 bytes (ASN.1) longer than the plaintext; SM2
// encryption is meant for short secrets such as keys, not bulk data.
func SM2Encrypt(pub *ecdsa.PublicKey, plaintext []byte, enc Encoding) ([]byte, error) {
	if err := checkSM2Public(pub); err != nil {
		return nil, err
	}
	if len(plaintext) == 0 {
		return nil, errors.New("smcrypto: SM2 plaintext must not be empty")
	}
	var opts *sm2.EncrypterOpts
	switch enc {
	case EncodingASN1:
		opts = sm2.ASN1EncrypterOpts
	case EncodingRaw:
		opts = sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2)
	default:
		return nil, fmt.Errorf("smcrypto: unknown SM2 ciphertext encoding %d", int(enc))
	}
	for range maxSM2EncryptAttempts {
		draw := &singleDraw{}
		ct, err := sm2.Encrypt(draw, pub, plaintext, opts)
		if draw.refused {
			// gmsm wanted a second k (step A5 found t all zero, or its
			// rejection sampling drew k ≥ n): start again from A1.
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("smcrypto: SM2 encrypt: %w", err)
		}
		return ct, nil
	}
	return nil, fmt.Errorf("smcrypto: SM2 encrypt: no usable k in %d attempts", maxSM2EncryptAttempts)
}

// maxSM2EncryptAttempts bounds the restarts of [SM2Encrypt]. An attempt is
// restarted with probability about 2^-(8·len(plaintext)) (t all zero) plus
// 2^-32 (k out of range), so 64 attempts never run out in practice.
const maxSM2EncryptAttempts = 64

// errSecondDraw is what [singleDraw] answers to a second read.
var errSecondDraw = errors.New("smcrypto: SM2 encryption attempt needs a second k")

// singleDraw is the randomness of one SM2 encryption attempt: the first Read
// is served from crypto/rand, every later Read fails.
//
// It works around a defect of gmsm v0.44.1 (internal/sm2.Encrypt). GB/T
// 32918.4-2016 6.1 step A5 says: if t = KDF(x2 ‖ y2, klen) is all zero, go
// back to A1, that is pick a new k and compute C1 = [k]G and (x2, y2) =
// [k]P_B again. gmsm does pick a new k, but computes [k]P_B with
// Q.ScalarMult(Q, k), which overwrites its copy Q of P_B; the retry therefore
// uses (x2, y2) = [k2]([k1]P_B) while C1 = [k2]G, and the ciphertext it
// returns decrypts nowhere (C3 check fails in OpenSSL, sm-crypto and gmsm
// itself). For a 1-byte plaintext t is all zero for one k in 256, so 0.4 %
// of such ciphertexts were broken. With singleDraw gmsm can never reach its
// retry: the attempt fails instead and [SM2Encrypt] starts a new one with a
// fresh copy of P_B.
type singleDraw struct {
	used    bool
	refused bool
}

func (d *singleDraw) Read(p []byte) (int, error) {
	if d.used {
		d.refused = true
		return 0, errSecondDraw
	}
	d.used = true
	return io.ReadFull(rand.Reader, p)
}

// SM2Decrypt decrypts an SM2 ciphertext in C1 ‖ C3 ‖ C2 order with priv
// (GB/T 32918.4-2016 section 7) and verifies its C3 hash. It accepts both
// encodings produced by [SM2Encrypt]: input that starts with 0x04 and is at
// least 98 bytes long is taken as [EncodingRaw], anything else must be a
// DER [EncodingASN1] SM2Cipher (such as "openssl pkeyutl -encrypt" output).
// Compressed C1 points and the obsolete C1 ‖ C2 ‖ C3 order are not
// accepted. Every failure, including an unusable key, is reported as
// [ErrDecrypt].
func SM2Decrypt(priv *sm2.PrivateKey, ciphertext []byte) ([]byte, error) {
	if checkSM2Private(priv) != nil {
		return nil, ErrDecrypt
	}
	raw := ciphertext
	if len(ciphertext) <= rawOverhead || ciphertext[0] != 0x04 {
		// Not raw: must be a (strict DER) SM2Cipher. Convert it to the raw
		// C1 ‖ C3 ‖ C2 form so that exactly one decryption path is used.
		var err error
		raw, err = sm2.ASN1Ciphertext2Plain(ciphertext, sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2))
		if err != nil || len(raw) <= rawOverhead || raw[0] != 0x04 {
			return nil, ErrDecrypt
		}
	}
	pt, err := sm2.Decrypt(priv, raw)
	if err != nil || len(pt) == 0 {
		return nil, ErrDecrypt
	}
	return pt, nil
}
