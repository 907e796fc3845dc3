package smcrypto

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"runtime"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
)

// sm4KeySize is the only SM4 key size (GB/T 32907-2016): 128 bits.
const sm4KeySize = 16

// gcmNonceSize and gcmTagSize are the SM4-GCM parameters used by this
// package: the standard 96-bit nonce and the full 128-bit tag.
const (
	gcmNonceSize = 12
	gcmTagSize   = 16
)

// SM3 returns the SM3 hash (GB/T 32905-2016) of b.
func SM3(b []byte) [32]byte {
	return sm3.Sum(b)
}

// HMACSM3 returns HMAC-SM3(key, msg) (RFC 2104 HMAC instantiated with SM3,
// GM/T 0042-2015 Appendix D): a 32-byte tag. Compare tags with
// crypto/hmac.Equal, never with bytes.Equal.
func HMACSM3(key, msg []byte) []byte {
	m := hmac.New(sm3.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// newSM4 returns an SM4 block cipher for a 16-byte key, or an error wrapping
// [ErrInvalidKey].
func newSM4(key []byte) (cipher.Block, error) {
	if len(key) != sm4KeySize {
		return nil, fmt.Errorf("%w: SM4 key must be %d bytes, got %d", ErrInvalidKey, sm4KeySize, len(key))
	}
	b, err := sm4.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return b, nil
}

// newSM4GCM returns SM4-GCM with a 12-byte nonce and a 16-byte tag.
func newSM4GCM(key []byte) (cipher.AEAD, error) {
	b, err := newSM4(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// SM4GCMSeal encrypts and authenticates plaintext, and authenticates aad,
// with SM4-GCM under the 16-byte key. A fresh 12-byte nonce is drawn from
// crypto/rand for every call; the result is nonce ‖ ciphertext ‖ 16-byte
// tag, i.e. 28 bytes longer than plaintext. aad is not included in the
// output and must be presented again to [SM4GCMOpen]. A key of the wrong
// length yields an error wrapping [ErrInvalidKey].
func SM4GCMSeal(key, plaintext, aad []byte) ([]byte, error) {
	aead, err := newSM4GCM(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, gcmNonceSize, gcmNonceSize+len(plaintext)+gcmTagSize)
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("smcrypto: SM4-GCM nonce: %w", err)
	}
	return aead.Seal(out, out[:gcmNonceSize], plaintext, aad), nil
}

// SM4GCMOpen authenticates and decrypts sealed, as produced by
// [SM4GCMSeal] (nonce ‖ ciphertext ‖ tag), with the 16-byte key and the same
// aad. Any failure - truncated input, wrong key, modified ciphertext, nonce,
// tag or aad - returns [ErrDecrypt] and no plaintext. A key of the wrong
// length returns an error that matches both [ErrDecrypt] and [ErrInvalidKey]
// under errors.Is.
func SM4GCMOpen(key, sealed, aad []byte) ([]byte, error) {
	aead, err := newSM4GCM(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	if len(sealed) < gcmNonceSize+gcmTagSize {
		return nil, ErrDecrypt
	}
	pt, err := aead.Open(nil, sealed[:gcmNonceSize], sealed[gcmNonceSize:], aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// SM4CBCEncrypt encrypts plaintext with SM4-CBC under the 16-byte key,
// after PKCS#7 padding (1 to 16 bytes are always added). A fresh 16-byte IV
// is drawn from crypto/rand; the result is IV ‖ ciphertext. CBC provides
// confidentiality only: authenticate the output (encrypt-then-MAC, e.g.
// [HMACSM3]) or prefer [SM4GCMSeal]. A key of the wrong length yields an
// error wrapping [ErrInvalidKey].
func SM4CBCEncrypt(key, plaintext []byte) ([]byte, error) {
	b, err := newSM4(key)
	if err != nil {
		return nil, err
	}
	bs := b.BlockSize()
	padLen := bs - len(plaintext)%bs
	out := make([]byte, bs+len(plaintext)+padLen)
	iv, body := out[:bs], out[bs:]
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("smcrypto: SM4-CBC IV: %w", err)
	}
	copy(body, plaintext)
	for i := len(plaintext); i < len(body); i++ {
		body[i] = byte(padLen)
	}
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(body, body)
	return out, nil
}

// SM4CBCDecrypt decrypts IV ‖ ciphertext as produced by [SM4CBCEncrypt] with
// the 16-byte key and removes the PKCS#7 padding. Input whose length is not
// a positive multiple of 16 beyond the IV, or whose padding is malformed,
// yields [ErrDecrypt]. The padding check examines the whole final block
// without data-dependent branches, but CBC remains unauthenticated: never
// expose SM4CBCDecrypt to attacker-chosen ciphertexts without verifying a
// MAC first. A key of the wrong length returns an error that matches both
// [ErrDecrypt] and [ErrInvalidKey] under errors.Is.
func SM4CBCDecrypt(key, data []byte) ([]byte, error) {
	b, err := newSM4(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	bs := b.BlockSize()
	if len(data) < 2*bs || len(data)%bs != 0 {
		return nil, ErrDecrypt
	}
	pt := make([]byte, len(data)-bs)
	cipher.NewCBCDecrypter(b, data[:bs]).CryptBlocks(pt, data[bs:])
	n, ok := pkcs7Unpad(pt, bs)
	if !ok {
		Wipe(pt)
		return nil, ErrDecrypt
	}
	return pt[:n], nil
}

// pkcs7Unpad checks PKCS#7 padding on the last block of b (len(b) is a
// positive multiple of bs ≤ 255) and returns the unpadded length. The
// check touches every byte of the last block and uses only constant-time
// comparisons, so its timing does not depend on the padding value.
func pkcs7Unpad(b []byte, bs int) (int, bool) {
	last := b[len(b)-bs:]
	padLen := int(last[bs-1])
	good := subtle.ConstantTimeLessOrEq(1, padLen) & subtle.ConstantTimeLessOrEq(padLen, bs)
	for i := range bs {
		// Byte i of the last block is padding iff i >= bs-padLen.
		inPad := subtle.ConstantTimeLessOrEq(bs-padLen, i)
		eq := subtle.ConstantTimeByteEq(last[i], byte(padLen))
		// If inPad, require eq; otherwise, no constraint.
		good &= eq | (inPad ^ 1)
	}
	// Only use padLen as a length when it is known good.
	n := len(b) - subtle.ConstantTimeSelect(good, padLen, 0)
	return n, good == 1
}

// Wipe overwrites b with zeros. Call it (usually deferred) on every buffer
// that held unwrapped key material or other secrets once the operation that
// needed it is over. It cannot reach copies made elsewhere (see the package
// documentation), but it keeps the obvious copy from lingering on the heap.
func Wipe(b []byte) {
	clear(b)
	// Keep b observably live after the stores so the compiler cannot treat
	// them as dead.
	runtime.KeepAlive(b)
}
