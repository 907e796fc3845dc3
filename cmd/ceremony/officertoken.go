package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// An officer's approval key may live on the officer's own USB key or
// smart card instead of a file: -key 'pkcs11:token=alice-usb;object=officer-approval?module-path=/usr/lib/...'
// (RFC 7512; pin-source=file:... in the URI, else the PIN is asked at the
// terminal). The key is generated in the token (EC P-256, not
// extractable) by officer keygen and signs approvals there; the officer's
// name is given with -name, since the token stores none. Each PIN attempt
// is counted by token.Open's guard in the officer's own counter file
// (-pin-guard, default officerGuardDefault: like kwsign's -state), so six
// wrong PINs lock the officer's token for every later run (R-TOK-5), not
// only until the process ends.

func isTokenKey(s string) bool { return strings.HasPrefix(s, "pkcs11:") }

// officerGuardDefault is the default -pin-guard of an officer's own token:
// a file in the officer's configuration directory.
func officerGuardDefault() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "keyward", "officer-pin-guard.db")
}

// officerGuard is the PIN guard of the officer's token: the -pin-guard
// file, made absolute, its directory created (0700).
func officerGuard(o *options) (token.GuardConfig, error) {
	if o.officerGuard == "" {
		return token.GuardConfig{}, errors.New("-pin-guard: give the file that counts your token's PIN attempts (no configuration directory to put it in)")
	}
	path, err := filepath.Abs(o.officerGuard)
	if err != nil {
		return token.GuardConfig{}, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return token.GuardConfig{}, fmt.Errorf("-pin-guard: %w", err)
	}
	return token.GuardConfig{Path: path}, nil
}

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
	g, err := officerGuard(o)
	if err != nil {
		return nil, "", err
	}
	cfg := token.Config{Kind: token.KindUSBKey, URI: uri, PINGuard: g, MaxSessions: 1, Logger: quietLog}
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
