package otp_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/keyward/keyward/banking/auth/otp"
)

// versioned is a rotating keyed hash in the shape keysvc gives: each MAC
// names its key version ("v<n>:" + HMAC), and VerifyMAC uses that version.
type versioned struct {
	mu      sync.Mutex
	keys    [][]byte // keys[n-1] is version n
	verifys int
}

func (h *versioned) rotate() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keys = append(h.keys, []byte(fmt.Sprintf("key version %d, 32 bytes or more...", len(h.keys)+1)))
}

func (h *versioned) macWith(n int, msg []byte) []byte {
	m := hmac.New(sha256.New, h.keys[n-1])
	m.Write(msg)
	return append([]byte("v"+strconv.Itoa(n)+":"), m.Sum(nil)...)
}

func (h *versioned) MAC(_ context.Context, msg []byte) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.macWith(len(h.keys), msg), nil
}

func (h *versioned) VerifyMAC(_ context.Context, msg, mac []byte) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.verifys++
	num, _, ok := bytes.Cut(bytes.TrimPrefix(mac, []byte("v")), []byte(":"))
	n, err := strconv.Atoi(string(num))
	if !ok || err != nil || n < 1 || n > len(h.keys) {
		return false, errors.New("no such version")
	}
	return hmac.Equal(h.macWith(n, msg), mac), nil
}

// TestVerifierKeepsCodesAcrossRotation: with a Verifier, a code issued
// under key version 1 verifies after the key moved to version 2 (R-TOK-8),
// through VerifyMAC; wrong codes still count.
func TestVerifierKeepsCodesAcrossRotation(t *testing.T) {
	h := &versioned{}
	h.rotate()
	e := newEnv(t, func(c *otp.Config) { c.Hasher = h })
	code := e.issue(t, "c1", "login")
	h.rotate()
	var inv *otp.InvalidError
	if err := e.svc.Verify(context.Background(), "c1", "login", wrong(code, 1)); !errors.As(err, &inv) || inv.Remaining != otp.MaxGuesses-1 {
		t.Fatalf("wrong code after rotation: %v", err)
	}
	if err := e.svc.Verify(context.Background(), "c1", "login", code); err != nil {
		t.Fatalf("code issued before the rotation: %v", err)
	}
	if h.verifys != 2 {
		t.Fatalf("VerifyMAC called %d times, want 2", h.verifys)
	}
	code = e.issue(t, "c1", "login")
	if err := e.svc.Verify(context.Background(), "c1", "login", code); err != nil {
		t.Fatalf("code issued after the rotation: %v", err)
	}
}
