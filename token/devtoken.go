package token

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keyward/keyward/pkcs11shim"
)

// DevTokenLabel is the label of the local development token.
const DevTokenLabel = "keyward-dev"

// DefaultSoftHSMPaths are where Debian and Ubuntu put SoftHSM2.
var DefaultSoftHSMPaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
}

// FindSoftHSM returns the first SoftHSM2 library found, or an error naming
// the package to install.
func FindSoftHSM() (string, error) {
	for _, p := range DefaultSoftHSMPaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: SoftHSM2 not found; install it with apt-get install -y softhsm2", pkcs11shim.ErrModuleLoad)
}

// EnsureDevToken prepares the embedded default for development and demos:
// a SoftHSM2 configuration and token directory under dir, a token labelled
// DevTokenLabel, and random user and SO PINs in dir/user.pin and dir/so.pin
// (mode 0600). It sets SOFTHSM2_CONF for this process, so call it before any
// module is opened. It is idempotent. Not for production: a real deployment
// names its HSM partition and PIN source in configuration.
func EnsureDevToken(dir, module string) (Config, error) {
	sdir := filepath.Join(dir, "softhsm")
	if err := os.MkdirAll(filepath.Join(sdir, "tokens"), 0o700); err != nil {
		return Config{}, err
	}
	conf := filepath.Join(sdir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", filepath.Join(sdir, "tokens"))
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return Config{}, err
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return Config{}, err
	}
	userPath, soPath := filepath.Join(dir, "user.pin"), filepath.Join(dir, "so.pin")
	userPIN, err := ensurePINFile(userPath)
	if err != nil {
		return Config{}, err
	}
	defer Wipe(userPIN)
	soPIN, err := ensurePINFile(soPath)
	if err != nil {
		return Config{}, err
	}
	defer Wipe(soPIN)
	mod, err := pkcs11shim.OpenModule(module)
	if err != nil {
		return Config{}, err
	}
	defer mod.Close()
	sel := pkcs11shim.Selector{Label: DevTokenLabel}
	if _, err := mod.FindToken(sel); errors.Is(err, pkcs11shim.ErrTokenNotFound) {
		if _, err := mod.InitToken("", soPIN, DevTokenLabel); err != nil {
			return Config{}, fmt.Errorf("token: create development token: %w", err)
		}
		if err := mod.InitPIN(sel, soPIN, userPIN); err != nil {
			return Config{}, fmt.Errorf("token: set development user PIN: %w", err)
		}
	} else if err != nil {
		return Config{}, err
	}
	return Config{Kind: KindHSM, Module: module, Label: DevTokenLabel, PIN: FilePIN{Path: userPath}}, nil
}

// ensurePINFile returns the PIN in path, creating it (0600, O_EXCL) with a
// random PIN that passes CheckPIN when absent.
func ensurePINFile(path string) ([]byte, error) {
	if _, err := os.Stat(path); err == nil {
		return FilePIN{Path: path}.PIN()
	}
	const alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
	pin := make([]byte, 16)
	for {
		if _, err := rand.Read(pin); err != nil {
			return nil, err
		}
		for i := range pin {
			pin[i] = alphabet[int(pin[i])%len(alphabet)]
		}
		if CheckPIN(pin, nil) == nil {
			break
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = f.Write(append(append([]byte{}, pin...), '\n'))
	return pin, errors.Join(err, f.Close())
}
