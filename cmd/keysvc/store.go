package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/etcdstore"
	"github.com/keyward/keyward/token"
)

// openedStore is keysvc's store and where its token PIN guards count.
type openedStore struct {
	store keysvc.Store
	// pins are the PIN guard counters: in keysvc.db with bbolt; in etcd
	// with etcd, so six wrong PINs lock a token for the whole cluster, not
	// six per node (R-TOK-5).
	pins  token.CounterStore
	close func() error
}

// openStore opens the store cfg.Store names: data_dir/keysvc.db (bbolt,
// created on first start), or the etcd cluster (store.etcd), over mutual
// TLS with the client key from store.etcd.key or the sealed secrets file.
func openStore(ctx context.Context, cfg *Config, host *hostSecrets, log *slog.Logger) (*openedStore, error) {
	if cfg.Store.Backend != backendEtcd {
		st, err := boltstore.Open(filepath.Join(cfg.DataDir, "keysvc.db"), boltstore.Options{})
		if err != nil {
			return nil, err
		}
		pins, err := token.NewBoltStore(st.DB())
		if err != nil {
			st.Close()
			return nil, err
		}
		return &openedStore{store: st, pins: pins, close: st.Close}, nil
	}
	st, err := openEtcd(ctx, cfg, host.etcdKey, log)
	if err != nil {
		return nil, err
	}
	return &openedStore{store: st, pins: st.PINCounters(), close: st.Close}, nil
}

// openEtcd opens the etcd store of cfg. keyPEM, when not nil, is the
// client key from the secrets file (store.etcd.key is then empty).
func openEtcd(ctx context.Context, cfg *Config, keyPEM []byte, log *slog.Logger) (*etcdstore.Store, error) {
	e := cfg.Store.Etcd
	tlsCfg, err := etcdClientTLS(e.CA, e.Cert, e.Key, keyPEM)
	if err != nil {
		return nil, err
	}
	st, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: e.Endpoints, TLS: tlsCfg, Prefix: e.Prefix, Node: cfg.Node,
		DialTimeout: e.DialTimeout, RequestTimeout: e.RequestTimeout, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("store.etcd (endpoints %v): %w", e.Endpoints, err)
	}
	log.Info("store: etcd", "endpoints", e.Endpoints, "prefix", e.Prefix, "node", cfg.Node)
	return st, nil
}

// etcdClientTLS is the TLS configuration towards etcd: the members'
// certificates checked against caPath, keysvc's client certificate
// (certPath) with its key from keyPath or keyPEM. Errors name the YAML
// field whose file is at fault, never the file's contents.
func etcdClientTLS(caPath, certPath, keyPath string, keyPEM []byte) (*tls.Config, error) {
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		return nil, fmt.Errorf("store.etcd.ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("store.etcd.ca: %s holds no PEM certificate", caPath)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("store.etcd.cert: %w", err)
	}
	if keyPEM == nil {
		if keyPath == "" {
			return nil, errors.New("store.etcd.key is empty and the secrets file holds no " + etcdKeySecret)
		}
		if keyPEM, err = os.ReadFile(keyPath); err != nil {
			return nil, fmt.Errorf("store.etcd.key: %w", err)
		}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// tls's messages name no key material.
		return nil, fmt.Errorf("store.etcd.cert and store.etcd.key do not make a key pair: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}
