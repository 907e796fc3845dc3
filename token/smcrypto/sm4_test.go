package smcrypto_test

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"github.com/emmansun/gmsm/sm4"

	"github.com/keyward/keyward/token/smcrypto"
)

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSM4GCMRoundTrip(t *testing.T) {
	key := randBytes(t, 16)
	tests := []struct {
		n   int
		aad []byte
	}{
		{0, nil}, {1, nil}, {15, []byte("key-id:42")}, {16, nil}, {17, []byte{0}}, {1024, []byte("header")}, {70000, nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d bytes aad=%d", tc.n, len(tc.aad)), func(t *testing.T) {
			pt := randBytes(t, tc.n)
			sealed, err := smcrypto.SM4GCMSeal(key, pt, tc.aad)
			if err != nil {
				t.Fatal(err)
			}
			if len(sealed) != 12+tc.n+16 {
				t.Fatalf("len = %d, want %d", len(sealed), 12+tc.n+16)
			}
			// Layout check against an independent SM4-GCM instance.
			b, _ := sm4.NewCipher(key)
			g, _ := cipher.NewGCM(b)
			if ref, err := g.Open(nil, sealed[:12], sealed[12:], tc.aad); err != nil || !bytes.Equal(ref, pt) {
				t.Fatalf("output is not nonce||ct||tag: %v", err)
			}
			got, err := smcrypto.SM4GCMOpen(key, sealed, tc.aad)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, pt) {
				t.Fatal("plaintext mismatch")
			}
			again, err := smcrypto.SM4GCMSeal(key, pt, tc.aad)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(again[:12], sealed[:12]) {
				t.Fatal("nonce reused across seals")
			}
		})
	}
}

func TestSM4GCMOpenNegative(t *testing.T) {
	key := randBytes(t, 16)
	aad := []byte("wrapped-key v1")
	pt := []byte("a 16-byte SM4 k!")
	sealed, err := smcrypto.SM4GCMSeal(key, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		c := bytes.Clone(sealed)
		c[i] ^= 0x80
		return c
	}
	wrongKey := bytes.Clone(key)
	wrongKey[0] ^= 1
	tests := []struct {
		name   string
		key    []byte
		sealed []byte
		aad    []byte
	}{
		{"tag mismatch", key, flip(len(sealed) - 1), aad},
		{"ciphertext modified", key, flip(12), aad},
		{"nonce modified", key, flip(0), aad},
		{"aad mismatch", key, sealed, []byte("wrapped-key v2")},
		{"aad missing", key, sealed, nil},
		{"wrong key", wrongKey, sealed, aad},
		{"truncated tag", key, sealed[:len(sealed)-1], aad},
		{"only nonce and tag", key, sealed[:28], aad},
		{"shorter than nonce+tag", key, sealed[:27], aad},
		{"empty", key, nil, aad},
		{"appended byte", key, append(bytes.Clone(sealed), 0), aad},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := smcrypto.SM4GCMOpen(tc.key, tc.sealed, tc.aad)
			if err != smcrypto.ErrDecrypt || got != nil {
				t.Fatalf("got (%x, %v), want exactly ErrDecrypt", got, err)
			}
		})
	}
	t.Run("control", func(t *testing.T) {
		if got, err := smcrypto.SM4GCMOpen(key, sealed, aad); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("control open failed: %v", err)
		}
	})
}

func TestSM4KeyLength(t *testing.T) {
	for _, n := range []int{0, 8, 15, 17, 24, 32} {
		t.Run(fmt.Sprintf("%d-byte key", n), func(t *testing.T) {
			key := make([]byte, n)
			if _, err := smcrypto.SM4GCMSeal(key, []byte("x"), nil); !errors.Is(err, smcrypto.ErrInvalidKey) {
				t.Errorf("SM4GCMSeal err = %v, want ErrInvalidKey", err)
			}
			if _, err := smcrypto.SM4CBCEncrypt(key, []byte("x")); !errors.Is(err, smcrypto.ErrInvalidKey) {
				t.Errorf("SM4CBCEncrypt err = %v, want ErrInvalidKey", err)
			}
			_, err := smcrypto.SM4GCMOpen(key, make([]byte, 64), nil)
			if !errors.Is(err, smcrypto.ErrDecrypt) || !errors.Is(err, smcrypto.ErrInvalidKey) {
				t.Errorf("SM4GCMOpen err = %v, want ErrDecrypt and ErrInvalidKey", err)
			}
			_, err = smcrypto.SM4CBCDecrypt(key, make([]byte, 64))
			if !errors.Is(err, smcrypto.ErrDecrypt) || !errors.Is(err, smcrypto.ErrInvalidKey) {
				t.Errorf("SM4CBCDecrypt err = %v, want ErrDecrypt and ErrInvalidKey", err)
			}
		})
	}
}

func TestSM4CBCRoundTrip(t *testing.T) {
	key := randBytes(t, 16)
	for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 100, 4096} {
		t.Run(fmt.Sprintf("%d bytes", n), func(t *testing.T) {
			pt := randBytes(t, n)
			ct, err := smcrypto.SM4CBCEncrypt(key, pt)
			if err != nil {
				t.Fatal(err)
			}
			wantLen := 16 + (n/16+1)*16 // IV + always-padded body
			if len(ct) != wantLen {
				t.Fatalf("len = %d, want %d", len(ct), wantLen)
			}
			// Check the padding with an independent CBC decrypter.
			b, _ := sm4.NewCipher(key)
			body := bytes.Clone(ct[16:])
			cipher.NewCBCDecrypter(b, ct[:16]).CryptBlocks(body, body)
			pad := byte(len(body) - n)
			if !bytes.Equal(body[:n], pt) || !bytes.Equal(body[n:], bytes.Repeat([]byte{pad}, int(pad))) {
				t.Fatalf("body is not PKCS#7(plaintext): %x", body)
			}
			got, err := smcrypto.SM4CBCDecrypt(key, ct)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, pt) {
				t.Fatal("plaintext mismatch")
			}
			ct2, err := smcrypto.SM4CBCEncrypt(key, pt)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(ct[:16], ct2[:16]) {
				t.Fatal("IV reused")
			}
		})
	}
}

// cbcRaw encrypts an already padded body under key with a zero IV, returning
// IV || ciphertext, so tests can plant arbitrary (bad) padding.
func cbcRaw(t *testing.T, key, body []byte) []byte {
	t.Helper()
	b, err := sm4.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 16+len(body))
	cipher.NewCBCEncrypter(b, out[:16]).CryptBlocks(out[16:], body)
	return out
}

func TestSM4CBCDecryptPadding(t *testing.T) {
	key := randBytes(t, 16)
	block := func(last ...byte) []byte { // 16 bytes: 'A' filler, then last
		b := bytes.Repeat([]byte{'A'}, 16-len(last))
		return append(b, last...)
	}
	tests := []struct {
		name    string
		body    []byte
		wantLen int // -1: must fail with ErrDecrypt
	}{
		{"good pad 1", block(1), 15},
		{"good pad 3", block(3, 3, 3), 13},
		{"good full block of 16", append(block(), bytes.Repeat([]byte{16}, 16)...), 16},
		{"pad byte 0", block(0), -1},
		{"pad byte 17", block(17), -1},
		{"pad byte 0xff", block(0xff), -1},
		{"inconsistent pad 3,2,3", block(3, 2, 3), -1},
		{"inconsistent first pad byte 9,4,4,4", block(9, 4, 4, 4), -1},
		{"16 claimed, 15 present", append([]byte{'A'}, bytes.Repeat([]byte{16}, 15)...), -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := cbcRaw(t, key, tc.body)
			got, err := smcrypto.SM4CBCDecrypt(key, data)
			if tc.wantLen < 0 {
				if err != smcrypto.ErrDecrypt || got != nil {
					t.Fatalf("got (%x, %v), want exactly ErrDecrypt", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.body[:tc.wantLen]) {
				t.Fatalf("got %q, want %q", got, tc.body[:tc.wantLen])
			}
		})
	}
}

func TestSM4CBCDecryptLength(t *testing.T) {
	key := randBytes(t, 16)
	good, err := smcrypto.SM4CBCEncrypt(key, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"IV only", good[:16]},
		{"not a block multiple", good[:31]},
		{"extra byte", append(bytes.Clone(good), 0)},
		{"IV plus partial block", good[:20]},
	}
	t.Run("control", func(t *testing.T) {
		if got, err := smcrypto.SM4CBCDecrypt(key, good); err != nil || string(got) != "hello" {
			t.Fatalf("control decryption failed: %q %v", got, err)
		}
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := smcrypto.SM4CBCDecrypt(key, tc.data)
			if err != smcrypto.ErrDecrypt || got != nil {
				t.Fatalf("got (%x, %v), want exactly ErrDecrypt", got, err)
			}
		})
	}
}

func TestWipe(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"key", bytes.Repeat([]byte{0xa5}, 32)},
		{"odd", []byte{1, 2, 3, 4, 5, 6, 7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := len(tc.b)
			smcrypto.Wipe(tc.b)
			if len(tc.b) != n {
				t.Fatal("length changed")
			}
			for i, v := range tc.b {
				if v != 0 {
					t.Fatalf("byte %d = %#x after Wipe", i, v)
				}
			}
		})
	}
	// Wiping a sub-slice touches only that range.
	b := []byte{1, 2, 3, 4}
	smcrypto.Wipe(b[1:3])
	if !bytes.Equal(b, []byte{1, 0, 0, 4}) {
		t.Fatalf("got %v", b)
	}
}
