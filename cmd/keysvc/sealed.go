package main

import (
	"crypto"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/api"
	"github.com/keyward/keyward/keysvc/secrets"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/tpm"
)

// hostSecrets is what keysvc takes from the host TPM and its secrets file
// at start (issue 8).
type hostSecrets struct {
	tpm    *tpm.TPM        // nil without cfg.TPM
	pin    token.PINSource // nil: the token URI's pin-source
	tlsKey []byte          // nil: tls.key
	// etcdKey is the etcd client key (PEM) from the secrets file; nil:
	// store.etcd.key.
	etcdKey []byte
	audit   crypto.Signer // nil: the token's keysvc-audit key
	bundle  secrets.Bundle
}

// close wipes the secrets and releases the TPM.
func (h *hostSecrets) close() {
	if h.bundle != nil {
		h.bundle.Wipe()
	}
	if s, ok := h.audit.(*tpm.Signer); ok {
		s.Close()
	}
	if h.tpm != nil {
		h.tpm.Close()
	}
}

// openHostSecrets opens the TPM, unseals the secrets file (the TPM slot
// first; the recovery passphrase when that fails and a passphrase source
// is configured) and loads the TPM audit key. With none of these
// configured it returns an empty hostSecrets.
func openHostSecrets(cfg *Config, log *slog.Logger) (*hostSecrets, error) {
	h := &hostSecrets{}
	ok := false
	defer func() {
		if !ok {
			h.close()
		}
	}()
	// The audit key has no fallback: it lives in the TPM.
	t, err := secrets.OpenTPM(cfg.TPM, cfg.Secrets.Passphrase != "" && cfg.Audit.Signer != "tpm", log)
	if err != nil {
		return nil, err
	}
	h.tpm = t
	if cfg.Secrets.File != "" {
		if err := h.unseal(cfg, log); err != nil {
			return nil, err
		}
	}
	if cfg.Audit.Signer == "tpm" {
		if err := h.loadAuditKey(cfg, log); err != nil {
			return nil, err
		}
	}
	ok = true
	return h, nil
}

func (h *hostSecrets) unseal(cfg *Config, log *slog.Logger) error {
	f, b, how, err := secrets.OpenPath(cfg.Secrets.File, h.tpm, cfg.Secrets.Passphrase)
	if err != nil {
		return err
	}
	h.bundle = b
	secrets.LogOpened(log, cfg.Secrets.File, f, how)
	pin, ok := b[secrets.TokenPIN]
	if !ok {
		return fmt.Errorf("secrets file %s holds no %s; seal one with `ceremony seal`", cfg.Secrets.File, secrets.TokenPIN)
	}
	h.pin = token.HeldPIN(pin)
	if key, ok := b[secrets.TLSKey]; ok {
		if cfg.TLS.Key != "" {
			return fmt.Errorf("tls.key is set and the secrets file %s holds a %s too: drop tls.key (and shred the clear file)", cfg.Secrets.File, secrets.TLSKey)
		}
		h.tlsKey = key
	} else if cfg.TLS.Key == "" {
		return fmt.Errorf("tls.key is empty and the secrets file %s holds no %s", cfg.Secrets.File, secrets.TLSKey)
	}
	if key, ok := b[etcdKeySecret]; ok && cfg.Store.Backend == backendEtcd {
		if cfg.Store.Etcd.Key != "" {
			return fmt.Errorf("store.etcd.key is set and the secrets file %s holds an %s too: drop store.etcd.key (and shred the clear file)", cfg.Secrets.File, etcdKeySecret)
		}
		h.etcdKey = key
	} else if cfg.Store.Backend == backendEtcd && cfg.Store.Etcd.Key == "" {
		return fmt.Errorf("store.etcd.key is empty and the secrets file %s holds no %s; seal one with `ceremony seal` (files: [{name: %s, file: ...}])", cfg.Secrets.File, etcdKeySecret, etcdKeySecret)
	}
	return nil
}

// auditKeyBlob is the audit key's TPM blob on disk.
type auditKeyBlob struct {
	Format string      `json:"format"` // keyward-tpm-key-v1
	Key    tpm.KeyBlob `json:"key"`
}

// loadAuditKey loads the TPM audit key, creating it on first start. An
// existing blob that no longer loads (another TPM) is an error, never
// silently replaced: the audit log's checkpoints are signed by it.
func (h *hostSecrets) loadAuditKey(cfg *Config, log *slog.Logger) error {
	if h.tpm == nil {
		return errors.New("audit.signer tpm: no TPM")
	}
	path := cfg.Audit.TPMKey
	if path == "" {
		path = filepath.Join(cfg.DataDir, "audit-key.tpm.json")
	}
	raw, err := os.ReadFile(path)
	var blob auditKeyBlob
	switch {
	case errors.Is(err, os.ErrNotExist):
		kb, err := h.tpm.CreateSigningKey()
		if err != nil {
			return fmt.Errorf("audit key: create in the TPM: %w", err)
		}
		blob = auditKeyBlob{Format: "keyward-tpm-key-v1", Key: *kb}
		out, _ := json.MarshalIndent(blob, "", "  ")
		if err := os.WriteFile(path, append(out, '\n'), 0o600); err != nil {
			return err
		}
		log.Info("created the audit key in the TPM", "blob", path)
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(raw, &blob); err != nil || blob.Format != "keyward-tpm-key-v1" {
			return fmt.Errorf("audit key blob %s is not a keyward-tpm-key-v1 file", path)
		}
	}
	s, err := h.tpm.LoadSigner(&blob.Key)
	if err != nil {
		return fmt.Errorf("audit key %s does not load in this TPM: %w", path, err)
	}
	h.audit = s
	return nil
}

// tlsConfig is the server's TLS configuration with the sealed TLS key when
// the secrets file holds one, else tls.key.
func (h *hostSecrets) tlsConfig(cfg *Config, clientCA string) (*tls.Config, error) {
	if h.tlsKey != nil {
		return api.TLSConfigKeyPEM(cfg.TLS.Cert, h.tlsKey, clientCA)
	}
	return api.TLSConfig(cfg.TLS.Cert, cfg.TLS.Key, clientCA)
}

// tpmKeys is the TPM for keys of protection tpm, or nil (an untyped nil:
// keysvc then refuses such keys).
func (h *hostSecrets) tpmKeys() keysvc.TPMKeys {
	if h.tpm == nil {
		return nil
	}
	return h.tpm
}
