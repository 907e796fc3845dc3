// Command keysvc is Keyward's key-management service.
//
//	keysvc [serve] -config file [-audit-expect seq:hash]  run the service
//	keysvc [serve] -dev [-data-dir dir]                   run a local development instance
//	keysvc audit verify [-config file | -data-dir dir] [-pubkey pem] [-expect seq:hash]  check the audit chain
//	keysvc backup -config file -token-file admin.token -out FILE  a hot copy of the running keysvc's store
//	keysvc rawbench -dev -label kw/<key>/v1 [-goroutines n] the token's raw C_Sign rate
//
// keysvc needs a config file (-config, or KEYWARD_CONFIG). Only with -dev
// and no config does it run in dev mode: it creates a SoftHSM2 token with
// its PINs in clear 0600 files, TLS certificates, an admin bearer token
// and the bbolt store under the data directory (default ./var) and prints
// how to call it. Without either it refuses to start and creates nothing
// (seed 6.5.4 a, R-SRV-9): a production binary never makes dev
// credentials by accident. PINs come from files or the environment, never
// argv.
//
// With store.backend etcd in the config (issue 16) several keysvc nodes
// share one etcd cluster: key records, the one audit chain, the PIN guard
// counters and pending confirmations live there, and data_dir keeps only
// node-local files. `keysvc audit verify -config` then checks the cluster's
// chain in etcd.
//
// Shutdown on SIGINT/SIGTERM is graceful: in-flight requests finish, the
// audit log gets a final signed checkpoint, the store is closed and the
// PKCS#11 module finalised.
package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/keyward/keyward/cmd/internal/startmode"
	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/api"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/token"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && (args[0] == "serve" || args[0] == "audit" || args[0] == "rawbench" || args[0] == "backup") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(log, args)
	case "audit":
		err = auditCmd(args)
	case "rawbench":
		err = rawBench(args)
	case "backup":
		err = backupCmd(args)
	}
	if err != nil {
		log.Error("keysvc", "err", err)
		os.Exit(1)
	}
}

func serve(log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	configPath := fs.String("config", os.Getenv("KEYWARD_CONFIG"), "YAML config file (env KEYWARD_CONFIG)")
	devMode := fs.Bool("dev", false, "without -config: a development instance with a SoftHSM2 token, clear PIN files and a dev admin token under -data-dir")
	dataDir := fs.String("data-dir", envOr("KEYWARD_DATA_DIR", "var"), "dev mode: data directory (env KEYWARD_DATA_DIR)")
	listen := fs.String("listen", os.Getenv("KEYWARD_LISTEN"), "override the listen address (env KEYWARD_LISTEN)")
	var anchors []audit.Anchor
	fs.Func("audit-expect", "refuse to start unless the audit log holds this `seq:hash` (from a checkpoint line the officers kept; repeatable)", anchorFlag(&anchors))
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := startmode.Check("keysvc", "KEYWARD_CONFIG", "it creates a SoftHSM2 token with clear PIN files and a dev admin token under -data-dir", *configPath, *devMode); err != nil {
		return err
	}
	var cfg *Config
	var dev *devInfo
	var err error
	if *configPath != "" {
		cfg, err = loadConfig(*configPath)
	} else {
		cfg, dev, err = devConfig(*dataDir)
	}
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	cfg.auditAnchors = anchors
	return run(log, cfg, dev)
}

func run(log *slog.Logger, cfg *Config, dev *devInfo) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	host, err := openHostSecrets(cfg, log) // first: the etcd client key may be sealed
	if err != nil {
		return err
	}
	defer host.close()
	opened, err := openStore(ctx, cfg, host, log)
	if err != nil {
		return err
	}
	defer opened.close()
	store, pins := opened.store, opened.pins
	var tok *token.Token
	var keys keysvc.KeyStore
	var set *tokenSet
	if len(cfg.Tokens) > 0 {
		if set, err = openTokenSet(ctx, cfg, host.pin, pins, log); err != nil {
			return err
		}
		defer set.close()
		keys = set.set
	} else {
		kind := token.KindHSM
		if cfg.Token.Kind == "usb-key" {
			kind = token.KindUSBKey
		}
		tok, err = token.Open(ctx, token.Config{Kind: kind, URI: cfg.Token.URI, Module: cfg.Token.Module, PIN: host.pin, PINGuard: token.GuardConfig{Store: pins, Limit: cfg.PINGuard.Limit},
			MaxSessions: cfg.Token.MaxSessions, WaitTimeout: cfg.Token.WaitTimeout, Logger: log})
		if err != nil {
			return err
		}
		defer tok.Close()
	}
	notify, err := notifier(cfg, dev != nil)
	if err != nil {
		return err
	}
	svc, err := keysvc.New(ctx, keysvc.Config{Node: cfg.Node, Token: tok, Keys: keys, Store: store, DefaultDestroyDelay: cfg.Destroy.DefaultDelay,
		MinDestroyDelay: cfg.Destroy.MinDelay, Logger: log, ConfirmTimeout: cfg.Confirm.Timeout, Notify: notify,
		AuditSigner: host.audit, TPM: host.tpmKeys(), AuditAnchors: cfg.auditAnchors,
		// Production's service keys come from a ceremony (README, "Several HSMs"); only -dev makes its own,
		// and the next epoch's KEKs (in production officers generate them: ceremony keygen).
		RequireServiceKeys: dev == nil, CreateKEKEpochs: dev != nil,
		// On a token set, hsm keys are checked once the set has copied them into a token that lacks them.
		LevelledAfterStart: set != nil})
	if err != nil {
		return err
	}
	defer svc.Close() // before the store closes: pending confirmations end, audited
	if set != nil {
		set.started(ctx, svc, log)
		if err := svc.CheckManagedKeysAfterSync(ctx); err != nil {
			return err
		}
	}
	if err := writeAuditKey(cfg.DataDir, svc); err != nil {
		return err
	}
	if err := svc.Tick(ctx); err != nil { // catch up after downtime
		log.Error("scheduler catch-up", "err", err)
	}
	clients := make([]api.Client, 0, len(cfg.Clients))
	for _, c := range cfg.Clients {
		clients = append(clients, api.Client{Name: c.Name, Admin: c.Admin, TokenSHA256: c.TokenSHA256, EnrolPrefixes: c.EnrolPrefixes})
	}
	srv, err := api.New(api.Config{Backend: svc, Clients: clients, Logger: log})
	if err != nil {
		return err
	}
	tlsCfg, err := host.tlsConfig(cfg, cfg.TLS.ClientCA)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	schedCtx, stopSched := context.WithCancel(context.Background())
	schedDone := make(chan struct{})
	go func() { defer close(schedDone); svc.Run(schedCtx, cfg.SchedulerInterval) }()
	errc := make(chan error, 3)
	go func() { errc <- srv.ServeTLS(ln, tlsCfg) }()
	if set != nil {
		log.Info("keysvc listening", "addr", ln.Addr().String(), "tokens", set.names(cfg))
	} else {
		log.Info("keysvc listening", "addr", ln.Addr().String(), "token", cfg.Token.URI)
	}
	var csrv *api.ConfirmServer
	if cfg.Confirm.Listen != "" {
		if csrv, err = serveConfirm(cfg, host, svc, log, errc); err != nil {
			srv.Shutdown(context.Background())
			stopSched()
			<-schedDone
			return err
		}
	}
	var msrv *http.Server
	if cfg.Metrics.Listen != "" {
		if msrv, err = serveMetrics(cfg.Metrics.Listen, srv, log, errc); err != nil {
			srv.Shutdown(context.Background())
			if csrv != nil {
				csrv.Shutdown(context.Background())
			}
			stopSched()
			<-schedDone
			return err
		}
	}
	if dev != nil {
		dev.print(ln.Addr().String(), cfg.Confirm.PublicURL)
	}
	select {
	case err = <-errc:
	case <-ctx.Done():
		log.Info("shutting down")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if serr := srv.Shutdown(sctx); err == nil {
		err = serr
	}
	if csrv != nil {
		if serr := csrv.Shutdown(sctx); err == nil {
			err = serr
		}
	}
	if msrv != nil {
		if serr := msrv.Shutdown(sctx); err == nil {
			err = serr
		}
	}
	cancel()
	stopSched()
	<-schedDone
	svc.Close() // pending confirmations end (audited) before the final checkpoint covers them
	if cerr := svc.Checkpoint(context.Background()); cerr != nil {
		log.Error("final audit checkpoint", "err", cerr)
	}
	return err
}

// notifier builds the holder notifier of the confirm config (nil when the
// confirmation endpoint is off: confirm-required keys then refuse to sign).
func notifier(cfg *Config, dev bool) (keysvc.Notifier, error) {
	switch c := cfg.Confirm; {
	case c.Listen == "":
		return nil, nil
	case c.Notify.Webhook != "":
		return webhookNotifier(c.Notify.Webhook, c.Notify.CA, c.PublicURL)
	default:
		return fileNotifier(c.Notify.File, c.PublicURL, dev), nil
	}
}

// serveConfirm starts the holder's confirmation endpoint on its own TLS
// listener (no client certificates: holders authenticate with the link's
// token and their PIN).
func serveConfirm(cfg *Config, host *hostSecrets, svc *keysvc.Service, log *slog.Logger, errc chan<- error) (*api.ConfirmServer, error) {
	csrv, err := api.NewConfirmServer(api.ConfirmConfig{Backend: svc, Logger: log, EnrolPerMinute: cfg.Confirm.EnrolPerMinute})
	if err != nil {
		return nil, err
	}
	tlsCfg, err := host.tlsConfig(cfg, "")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Confirm.Listen)
	if err != nil {
		return nil, err
	}
	go func() { errc <- csrv.ServeTLS(ln, tlsCfg) }()
	log.Info("confirmation endpoint listening", "addr", ln.Addr().String(), "public_url", cfg.Confirm.PublicURL)
	return csrv, nil
}

// serveMetrics serves the Prometheus endpoint on its own plain-HTTP
// listener (metrics.listen): never on the API listener, where it would be
// open to every client (R-AV-2).
func serveMetrics(addr string, srv *api.Server, log *slog.Logger, errc chan<- error) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: srv.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: api.DefaultReadTimeout, WriteTimeout: api.DefaultWriteTimeout}
	go func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return hs, nil
}

// writeAuditKey saves the audit public key beside the store, for
// `keysvc audit verify`, mode 0600 like the rest of the data directory
// (an existing file is tightened too). Keep an independent copy: whoever
// can replace this file could also present checkpoints signed by a key of
// their own.
func writeAuditKey(dir string, svc *keysvc.Service) error {
	der, err := x509.MarshalPKIXPublicKey(svc.AuditPublicKey())
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "audit-key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.Chmod(path, 0o600) // WriteFile keeps the mode of a file that exists
}

// anchorFlag parses repeatable -expect / -audit-expect values.
func anchorFlag(into *[]audit.Anchor) func(string) error {
	return func(v string) error {
		a, err := audit.ParseAnchor(v)
		if err != nil {
			return err
		}
		*into = append(*into, a)
		return nil
	}
}

func auditCmd(args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New("usage: keysvc audit verify [-config file | -data-dir dir] [-pubkey audit-key.pem] [-expect seq:hash]...")
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	configPath := fs.String("config", "", "keysvc's YAML config: verify the store it names (with store.backend etcd: the cluster's one chain, read from etcd while keysvc runs)")
	dataDir := fs.String("data-dir", envOr("KEYWARD_DATA_DIR", "var"), "without -config: data directory holding keysvc.db")
	pubPath := fs.String("pubkey", "", "audit public key PEM (default <data-dir>/audit-key.pem; better: your own copy)")
	var anchors []audit.Anchor
	fs.Func("expect", "fail unless the chain holds this record `seq:hash` (from a checkpoint line or transcript the officers kept; repeatable)", anchorFlag(&anchors))
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	dataDirSet := false
	fs.Visit(func(f *flag.Flag) { dataDirSet = dataDirSet || f.Name == "data-dir" })
	if *configPath != "" && dataDirSet {
		return errors.New("audit verify: give -config or -data-dir, not both (the config's data_dir is used)")
	}
	store, dir, err := openAuditStore(*configPath, *dataDir)
	if err != nil {
		return err
	}
	defer store.Close()
	if *pubPath == "" {
		*pubPath = filepath.Join(dir, "audit-key.pem")
	}
	pub, err := readECPublicKey(*pubPath)
	if err != nil {
		return err
	}
	// A cluster store chains acknowledged records a moment later (its
	// sequencer): wait until every record acknowledged so far is chained,
	// so the verification covers every request that was answered.
	if sy, ok := store.(keysvc.AuditSyncer); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := sy.SyncAudit(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("audit verify: acknowledged records are not all chained yet, so the chain cannot be checked for them (is etcd healthy? retry): %w", err)
		}
	}
	rep, err := keysvc.VerifyAudit(store, pub, anchors...)
	if err != nil {
		return err
	}
	fmt.Printf("audit chain ok: %d records, %d signed checkpoints, %d expected records found, last record %d, last checkpoint %d\n", rep.Records, rep.Checkpoints, rep.Anchors, rep.LastSeq, rep.LastCheckpoint)
	fmt.Printf("anchor of the last checkpoint (keep it outside this machine; pass it to -expect next time): %s\n", audit.Anchor{Seq: rep.LastCheckpoint, Hash: rep.LastCheckpointHash})
	if len(anchors) == 0 {
		fmt.Println("note: without -expect, a log cut back to an earlier checkpoint and given a new tail also passes; anchor it with a seq:hash the officers kept")
	}
	if rep.Unsigned > 0 {
		fmt.Printf("note: the newest %d records are not yet covered by a signed checkpoint (one is made every scheduler interval and at shutdown)\n", rep.Unsigned)
	}
	return nil
}

// openAuditStore opens the store audit verify reads: the config's (bbolt
// read-only in its data_dir, or etcd), or dataDir's keysvc.db without a
// config. It returns the data directory that holds audit-key.pem.
func openAuditStore(configPath, dataDir string) (keysvc.Store, string, error) {
	if configPath == "" {
		st, err := boltstore.Open(filepath.Join(dataDir, "keysvc.db"), boltstore.Options{ReadOnly: true})
		if err != nil {
			return nil, "", fmt.Errorf("open store (is keysvc running? stop it or verify a copy): %w", err)
		}
		return st, dataDir, nil
	}
	cfg, err := loadConfig(configPath)
	if err != nil {
		return nil, "", err
	}
	if cfg.Store.Backend != backendEtcd {
		st, err := boltstore.Open(filepath.Join(cfg.DataDir, "keysvc.db"), boltstore.Options{ReadOnly: true})
		if err != nil {
			return nil, "", fmt.Errorf("open store (is keysvc running? stop it or verify a copy): %w", err)
		}
		return st, cfg.DataDir, nil
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var key []byte
	if cfg.Store.Etcd.Key == "" { // the etcd client key is sealed: open the secrets file as serve does
		host, err := openHostSecrets(cfg, log)
		if err != nil {
			return nil, "", err
		}
		defer host.close()
		key = host.etcdKey
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Store.Etcd.DialTimeout+cfg.Store.Etcd.RequestTimeout)
	defer cancel()
	st, err := openEtcd(ctx, cfg, key, log)
	if err != nil {
		return nil, "", err
	}
	return st, cfg.DataDir, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
