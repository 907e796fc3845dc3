// Command keysvc is Keyward's key-management service.
//
// Today it sets up the embedded default (a local SoftHSM2 token and a bbolt
// store under -data-dir, created on first run), opens the token through the
// PIN guard, prints the token's status and runs a self-test: generate (once)
// an ECDSA P-256 key in the token, sign, and verify. The HTTP API (/v1/keys…)
// arrives with the key registry; see README "Status".
//
// PINs come from files under -data-dir (mode 0600), never from argv.
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

func main() {
	dataDir := flag.String("data-dir", "var", "directory for the bbolt store and the development SoftHSM token")
	module := flag.String("module", "", "PKCS#11 module (default: SoftHSM2 from the Debian package)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(context.Background(), log, *dataDir, *module); err != nil {
		log.Error("keysvc failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, dataDir, module string) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	if module == "" {
		var err error
		if module, err = token.FindSoftHSM(); err != nil {
			return err
		}
	}
	cfg, err := token.EnsureDevToken(dataDir, module)
	if err != nil {
		return err
	}
	store, err := token.OpenBoltStore(filepath.Join(dataDir, "keysvc.db"))
	if err != nil {
		return err
	}
	defer store.Close()
	if cfg.Guard, err = token.NewGuard(store, token.MaxPINAttempts); err != nil {
		return err
	}
	cfg.Logger = log
	tok, err := token.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer tok.Close()
	info, err := tok.Info()
	if err != nil {
		return err
	}
	mechs, err := tok.Pool().Mechanisms()
	if err != nil {
		return err
	}
	pin, err := tok.PINState()
	if err != nil {
		return err
	}
	fmt.Printf("token      %s (serial %s, %s %s)\n", info.Label, info.Serial, info.Manufacturer, info.Model)
	fmt.Printf("module     %s\n", module)
	fmt.Printf("mechanisms %d\n", len(mechs))
	fmt.Printf("PIN guard  %d/%d failures, locked=%v\n", pin.Failures, token.MaxPINAttempts, pin.Locked)

	p := tok.Pool()
	k, err := p.FindKey(ctx, "keysvc-selftest")
	if errors.Is(err, pkcs11shim.ErrKeyNotFound) {
		k, err = p.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: "keysvc-selftest"})
	}
	if err != nil {
		return err
	}
	signer, err := p.NewSigner(ctx, k)
	if err != nil {
		return err
	}
	digest := sha256.Sum256([]byte("keysvc self-test"))
	sig, err := signer.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		return err
	}
	if !ecdsa.VerifyASN1(signer.Public().(*ecdsa.PublicKey), digest[:], sig) {
		return errors.New("self-test signature does not verify")
	}
	fmt.Printf("self-test  ECDSA P-256 sign/verify in the token: ok\n")
	return nil
}
