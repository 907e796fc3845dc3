package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// An officer's approval key may live on the officer's own USB key or
// smart card instead of a file: -key 'pkcs11:token=alice-usb;object=officer-approval?module-path=/usr/lib/...'
// (RFC 7512; pin-source=file:... in the URI, else the PIN is asked at the
// terminal). The key is generated in the token (EC P-256, not
// extractable) by officer keygen and signs approvals there; the officer's
// name is given with -name, since the token stores none. The PIN is
// tried once per run, through a guard kept in memory: the officer's
// token counts its own retries, and the approver has no pin_guard file.

func isTokenKey(s string) bool { return strings.HasPrefix(s, "pkcs11:") }

// memCounter is a CounterStore in memory, for the officer's own token.
type memCounter struct {
	mu sync.Mutex
	m  map[string]token.PINState
}

func (c *memCounter) Get(id string) (token.PINState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[id], nil
}

func (c *memCounter) Update(id string, fn func(st *token.PINState) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.m[id]
	if err := fn(&st); err != nil {
		return err
	}
	if c.m == nil {
		c.m = map[string]token.PINState{}
	}
	c.m[id] = st
	return nil
}

func (c *memCounter) Record(token.Event) error             { return nil }
func (c *memCounter) Events(string) ([]token.Event, error) { return nil, nil }
func (c *memCounter) String() string                       { return "memory" }

var _ token.CounterStore = (*memCounter)(nil)

// openTokenKey opens the officer's token named by uri, logged in with the
// PIN from the URI's pin-source or a prompt.
func openTokenKey(ctx context.Context, uri, prompt string, o *options) (*token.Token, string, error) {
	u, err := pkcs11shim.ParseURI(uri)
	if err != nil {
		return nil, "", err
	}
	if u.Object == "" {
		return nil, "", errors.New("the pkcs11: URI needs object=LABEL, the officer key's label on the token")
	}
	g, err := token.NewGuard(&memCounter{}, token.MaxPINAttempts)
	if err != nil {
		return nil, "", err
	}
	cfg := token.Config{Kind: token.KindUSBKey, URI: uri, Guard: g, MaxSessions: 1, Logger: quietLog}
	if u.PINSource == "" {
		cfg.PIN = &lazyPIN{read: func() ([]byte, error) {
			return readPIN(o, "prompt", prompt, false)
		}}
	}
	t, err := token.Open(ctx, cfg)
	if err != nil {
		return nil, "", fmt.Errorf("open the officer token: %w", err)
	}
	return t, u.Object, nil
}

// readTokenOfficerKey opens an officer key on a token for signing.
func readTokenOfficerKey(ctx context.Context, uri, name string, o *options) (*officerKey, error) {
	if !validOfficerName(name) {
		return nil, fmt.Errorf("-name: give your officer name with a pkcs11: key (%s)", officerNameRule)
	}
	t, label, err := openTokenKey(ctx, uri, "PIN of your officer token", o)
	if err != nil {
		return nil, err
	}
	p := t.Pool()
	k, err := p.FindKey(ctx, label)
	if err == nil && k.Type != pkcs11shim.KeyECP256 {
		err = fmt.Errorf("%s is a %v key; an officer key is EC P-256", label, k.Type)
	}
	var pub crypto.PublicKey
	if err == nil {
		pub, err = p.PublicKey(ctx, k)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if err == nil && (!ok || ec.Curve != elliptic.P256()) {
		err = errors.New("the officer key's public key is not EC P-256")
	}
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("officer key %q: %w", label, err)
	}
	fp, _, err := fingerprint(ec)
	if err != nil {
		t.Close()
		return nil, err
	}
	auth := t.ContextAuth()
	return &officerKey{name: name, fp: fp,
		sign: func(d []byte) ([]byte, error) {
			sig, err := p.Sign(ctx, k, d, crypto.SHA256, auth)
			if err == nil && !ecdsa.VerifyASN1(ec, d, sig) {
				err = errors.New("the officer token's signature does not verify")
			}
			return sig, err
		},
		close: func() { t.Close() },
	}, nil
}

// tokenOfficerKeygen generates the officer key in the token (refusing a
// label that exists) and returns its public key.
func tokenOfficerKeygen(ctx context.Context, uri string, o *options) (*ecdsa.PublicKey, error) {
	t, label, err := openTokenKey(ctx, uri, "PIN of your officer token", o)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	p := t.Pool()
	if _, err := p.FindKey(ctx, label); err == nil {
		return nil, fmt.Errorf("a key labelled %q already exists on the token; keys are never replaced", label)
	} else if !errors.Is(err, pkcs11shim.ErrKeyNotFound) {
		return nil, err
	}
	k, err := p.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: label, Usage: pkcs11shim.UsageSign})
	if err != nil {
		return nil, fmt.Errorf("generate the officer key on the token: %w", err)
	}
	pub, err := p.PublicKey(ctx, k)
	if err != nil {
		return nil, err
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("the generated key is not ECDSA")
	}
	return ec, nil
}

// stdOptions are the options of the tools that are not ceremonies.
func stdOptions(o *options) *options {
	if o.stdin == nil {
		o.stdin = os.Stdin
	}
	return o
}
