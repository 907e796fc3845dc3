package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/token/smcrypto"
)

// readSecret returns a secret from the environment variable envName when
// one is named, else typed at the terminal without echo (prompt on
// stderr). It never reads argv, and refuses to read a pipe: a secret in a
// pipe usually came from a file or a history.
func readSecret(prompt, envName string) ([]byte, error) {
	if envName != "" {
		v, ok := os.LookupEnv(envName)
		if !ok || v == "" {
			return nil, usageErr("environment variable %s is empty or unset", envName)
		}
		return []byte(v), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, usageErr("%s: standard input is not a terminal; type it at a terminal or name an environment variable with the -…-env flag", strings.TrimSuffix(strings.TrimSuffix(prompt, ": "), "："))
	}
	fmt.Fprint(os.Stderr, prompt) // translated by the caller
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// readStaffToken reads a person's staff token from a file.
func readStaffToken(path string) (string, error) {
	if path == "" {
		return "", usageErr("-staff-token-file is required: the file holding your personal staff token (banking's dev mode writes var/bank/staff/teller1.token and supervisor1.token)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", errorf("%s is empty", path)
	}
	return t, nil
}

// loginKey is GET /v1/login/key.
type loginKey struct {
	PEM     string `json:"pem"`
	Version int    `json:"version"`
}

// sealFor fetches the bank's login key and a fresh challenge and seals
// secret to them.
func (b *bank) sealFor(ctx context.Context, secret []byte) (bankwire.Sealed, error) {
	var k loginKey
	if _, err := b.call(ctx, "GET", "/v1/login/key", nil, &k); err != nil {
		return bankwire.Sealed{}, err
	}
	var ch struct {
		Challenge string `json:"challenge"`
	}
	if _, err := b.call(ctx, "POST", "/v1/login/challenge", nil, &ch); err != nil {
		return bankwire.Sealed{}, err
	}
	return seal(k.PEM, k.Version, ch.Challenge, secret)
}

// seal encrypts secret ‖ 0x00 ‖ challenge (the 32 bytes the base64url
// challenge decodes to) to the bank's SM2 login key, as bankwire.Sealed
// describes (R-AUTH-4). The plaintext buffer is wiped.
func seal(pubPEM string, version int, challenge string, secret []byte) (bankwire.Sealed, error) {
	blk, _ := pem.Decode([]byte(pubPEM))
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return bankwire.Sealed{}, errorf("the bank's login key is not a PEM public key")
	}
	pub, err := smcrypto.ParseSM2Public(blk.Bytes)
	if err != nil {
		return bankwire.Sealed{}, errorf("the bank's login key: %w", err)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(challenge)
	if err != nil || len(raw) != 32 {
		return bankwire.Sealed{}, errorf("the bank's challenge is not 32 base64url bytes")
	}
	if len(secret) == 0 || strings.IndexByte(string(secret), 0) >= 0 {
		return bankwire.Sealed{}, usageErr("the password must not be empty or contain a zero byte")
	}
	plain := make([]byte, 0, len(secret)+1+len(raw))
	plain = append(append(append(plain, secret...), 0), raw...)
	defer clear(plain)
	ct, err := smcrypto.SM2Encrypt(pub, plain, smcrypto.EncodingASN1)
	if err != nil {
		return bankwire.Sealed{}, err
	}
	return bankwire.Sealed{Challenge: challenge, Ciphertext: base64.StdEncoding.EncodeToString(ct), KeyVersion: version}, nil
}

// randomToken is n random bytes in base64url, for nonces and idempotency keys.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
