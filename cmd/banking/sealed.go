package main

import (
	"fmt"
	"log/slog"

	"github.com/keyward/keyward/keysvc/secrets"
)

// credentials are banking's own secrets: from the sealed secrets file when
// one is configured, else from the clear files of the configuration.
type credentials struct {
	tlsKey    []byte // PEM; nil: tls.key
	clientKey []byte // PEM; nil: keysvc.client_key
	bearer    []byte // nil: keysvc.bearer_token_file
	pgPass    []byte // nil: store.postgres.password_file, or no password
}

// wipe clears what the sealed file gave.
func (c *credentials) wipe() {
	clear(c.tlsKey)
	clear(c.clientKey)
	clear(c.bearer)
	clear(c.pgPass)
}

// openCredentials unseals cfg.Secrets.File (the TPM slot first, then the
// recovery passphrase) and checks that each credential comes from exactly
// one place. The TPM is released at once: banking needs it only here.
func openCredentials(cfg *Config, log *slog.Logger) (*credentials, error) {
	c := &credentials{}
	if cfg.Secrets.File == "" {
		return c, nil
	}
	t, err := secrets.OpenTPM(cfg.TPM, cfg.Secrets.Passphrase != "", log)
	if err != nil {
		return nil, err
	}
	f, b, how, err := secrets.OpenPath(cfg.Secrets.File, t, cfg.Secrets.Passphrase)
	if t != nil {
		t.Close()
	}
	if err != nil {
		return nil, err
	}
	defer b.Wipe()
	secrets.LogOpened(log, cfg.Secrets.File, f, how)
	c.tlsKey, c.clientKey, c.bearer = b.Take(secrets.TLSKey), b.Take(secrets.KeysvcClientKey), b.Take(secrets.KeysvcBearer)
	c.pgPass = b.Take(secrets.PGPassword)
	one := func(what string, sealed []byte, file string) error {
		switch {
		case sealed != nil && file != "":
			return fmt.Errorf("%s is set and the secrets file %s holds it too: drop %s (and shred the clear file)", what, cfg.Secrets.File, what)
		case sealed == nil && file == "":
			return fmt.Errorf("%s is empty and the secrets file %s does not hold it", what, cfg.Secrets.File)
		}
		return nil
	}
	err = one("tls.key", c.tlsKey, cfg.TLS.Key)
	if err == nil && cfg.KeySvc.ClientCert != "" {
		err = one("keysvc.client_key", c.clientKey, cfg.KeySvc.ClientKey)
		if err == nil && c.bearer != nil {
			err = fmt.Errorf("the secrets file %s holds a %s but keysvc.client_cert is set: seal one credential towards keysvc", cfg.Secrets.File, secrets.KeysvcBearer)
		}
	} else if err == nil {
		err = one("keysvc.bearer_token_file", c.bearer, cfg.KeySvc.BearerTokenFile)
		if err == nil && c.clientKey != nil {
			err = fmt.Errorf("the secrets file %s holds a %s but keysvc.client_cert is not set", cfg.Secrets.File, secrets.KeysvcClientKey)
		}
	}
	if err == nil && c.pgPass != nil && cfg.Store.Backend != "postgres" {
		err = fmt.Errorf("the secrets file %s holds a %s but store.backend is not postgres", cfg.Secrets.File, secrets.PGPassword)
	}
	if err == nil && c.pgPass != nil && cfg.Store.Postgres.PasswordFile != "" {
		err = fmt.Errorf("store.postgres.password_file is set and the secrets file %s holds a %s too: drop password_file (and shred the clear file)", cfg.Secrets.File, secrets.PGPassword)
	}
	if err != nil {
		c.wipe()
		return nil, err
	}
	return c, nil
}
