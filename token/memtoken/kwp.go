package memtoken

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"

	"github.com/keyward/keyward/token"
)

// AES key wrap with padding (RFC 5649), what a token's
// CKM_AES_KEY_WRAP_PAD does: memtoken's wrapped keys are blobs of the same
// kind as a real token's (not the same bytes: the key formats inside differ).

// kwpIV is the alternative initial value's high half (RFC 5649 §3).
var kwpIV = [4]byte{0xa6, 0x59, 0x59, 0xa6}

func wrapKWP(kek, key []byte) ([]byte, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := (len(key) + 7) / 8
	var a [8]byte
	copy(a[:4], kwpIV[:])
	binary.BigEndian.PutUint32(a[4:], uint32(len(key)))
	p := make([]byte, 8*n)
	copy(p, key)
	if n == 1 { // one block: a single AES encryption of A ‖ P
		out := make([]byte, 16)
		copy(out, a[:])
		copy(out[8:], p)
		b.Encrypt(out, out)
		return out, nil
	}
	var buf [16]byte
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			copy(buf[:8], a[:])
			copy(buf[8:], p[8*i:8*i+8])
			b.Encrypt(buf[:], buf[:])
			t := uint64(n*j + i + 1)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(buf[:8])^t)
			copy(p[8*i:], buf[8:])
		}
	}
	return append(a[:], p...), nil
}

func unwrapKWP(kek, blob []byte) ([]byte, error) {
	if len(blob) < 16 || len(blob)%8 != 0 {
		return nil, token.ErrDecrypt
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(blob)/8 - 1
	var a [8]byte
	p := make([]byte, 8*n)
	if n == 1 {
		var buf [16]byte
		b.Decrypt(buf[:], blob)
		copy(a[:], buf[:8])
		copy(p, buf[8:])
	} else {
		copy(a[:], blob[:8])
		copy(p, blob[8:])
		var buf [16]byte
		for j := 5; j >= 0; j-- {
			for i := n - 1; i >= 0; i-- {
				t := uint64(n*j + i + 1)
				binary.BigEndian.PutUint64(buf[:8], binary.BigEndian.Uint64(a[:])^t)
				copy(buf[8:], p[8*i:8*i+8])
				b.Decrypt(buf[:], buf[:])
				copy(a[:], buf[:8])
				copy(p[8*i:], buf[8:])
			}
		}
	}
	mli := int(binary.BigEndian.Uint32(a[4:]))
	if subtle.ConstantTimeCompare(a[:4], kwpIV[:]) != 1 || mli > 8*n || mli <= 8*(n-1) {
		return nil, token.ErrDecrypt
	}
	for _, c := range p[mli:] {
		if c != 0 {
			return nil, token.ErrDecrypt
		}
	}
	return p[:mli], nil
}
