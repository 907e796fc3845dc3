// Package secretfile reads and creates the small secret files the Keyward
// commands use: bearer tokens, and the development secrets their dev modes
// make. A secret file must be readable by its owner only (as ssh requires
// of a private key); its content is one line, surrounding blanks ignored.
package secretfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Read returns the secret in path. It refuses a file group or others can
// read (the fix is chmod 600) and an empty one; errors never hold the
// secret.
func Read(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// Ensure returns the secret in path, creating it — 32 random bytes as hex,
// mode 0600, O_EXCL — when absent. A file that is there but unreadable or
// too open is an error, never replaced; an empty one (a crash between
// create and write) is.
func Ensure(path string) (string, error) {
	if s, err := Read(path); err == nil {
		return s, nil
	} else if st, serr := os.Stat(path); serr == nil && st.Size() > 0 {
		return "", err
	}
	_ = os.Remove(path)
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	s := hex.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = f.WriteString(s + "\n")
	return s, errors.Join(err, f.Close())
}
