// Command banking runs the bank's internet-banking API (package banking)
// over HTTPS, in front of keysvc.
//
//	banking -config file [-listen addr] [-metrics-listen addr|off]
//	banking audit verify -config file|-dev [-pubkey bank-audit.pem] [-expect SEQ:HASH]...
//	banking audit tail   -config file|-dev [-n 20]
//	banking audit prune  -config file -before 2026-01-31 [-pubkey bank-audit.pem]
//	banking staff-token -out FILE      a person's new staff token in FILE (0600); prints its token_sha256 line
//	banking -dev [-data-dir var/bank] [-keysvc-dir var] [-keysvc-url https://127.0.0.1:8443] [-listen addr] [-metrics-listen addr|off] [-store-url URL]   dev mode
//
// Without -config (or KEYWARD_BANK_CONFIG) and without -dev, banking
// refuses to start and creates nothing (seed 6.5.4 a, R-SRV-9).
//
// # Configuration
//
// -config (or KEYWARD_BANK_CONFIG) names a strict YAML file: unknown
// fields are refused and every missing or wrong field is named.
//
//	listen: 0.0.0.0:8445
//	data_dir: /var/lib/keyward-bank            # bank.db: customers, ledger, sessions, codes
//	tls: {cert: /etc/keyward/bank/tls.pem, key: /etc/keyward/bank/tls-key.pem}
//	keysvc:
//	  url: https://keysvc.bank.internal:8443
//	  # urls: [https://keysvc-a.bank.internal:8443, https://keysvc-b.bank.internal:8443]   (a cluster, instead of url)
//	  ca: /etc/keyward/bank/keysvc-ca.pem      # CA of keysvc's server certificate
//	  client_cert: /etc/keyward/bank/banking.pem   # mutual TLS, CommonName = kms_name
//	  client_key: /etc/keyward/bank/banking-key.pem
//	  # bearer_token_file: /run/keyward/bank-keysvc.token   (development, instead of the pair)
//	kms_name: banking
//	staff:                                      # each person their own token and roles (banking/staff)
//	  - {id: teller1, name: Li Na, roles: [enrol, deposit, phone-change], token_sha256: 9f2c…}
//	  - {id: supervisor1, name: Wang Wei, roles: [unlock, limit-override, ledger-verify], token_sha256: 41be…, expires: 2027-06-30}
//	blacklist: {file: /etc/keyward/bank/blacklist.txt, interval: 10s}
//	sms: {gateway_url: https://sms-relay.bank.internal/send, token_file: /run/keyward/bank-sms.token}
//	ledger: {max_batch_size: 128, max_batch_delay: 2ms, account_prefix: "62999"}
//	http: {login_per_minute: 120, requests_per_minute: 6000, body_limit: 262144}
//	login: {captcha_after: 3}   # failed logins before the image captcha, 1-20
//	shutdown_timeout: 30s
//	audit: {retention: 180d, checkpoint_every: 1000, checkpoint_interval: 1m}   # public_key: /etc/keyward/bank/bank-audit.pem
//	alerts: {webhook: {url: https://soc.bank.internal/hooks/keyward, ca_file: /etc/keyward/bank/soc-ca.pem, timeout: 5s}}
//	metrics: {listen: 127.0.0.1:9446}           # GET /metrics and /readyz, plain HTTP; off when empty
//
// keysvc.urls names the nodes of one keysvc cluster (issue 16) instead of
// keysvc.url: requests are spread over the nodes, and a node that refuses
// connections, drops them or answers 503 is passed over for 2 s while
// signatures, verifications, decryptions, MACs and reads are repeated on
// another (keysvc/client, "Endpoints and failover"). Each URL must be
// https://; every node must present a certificate the one keysvc.ca
// trusts, for its own host name.
//
// Secrets never come from argv: keysvc's bearer token is read from a 0600
// file, each person's staff token is configured only as its SHA-256, and
// the TLS keys are files.
//
// # Staff
//
// There is no shared staff token: staff_token_sha256 is refused with the
// form that replaces it. Every teller and supervisor is one entry of
// staff: with a personal token and roles — enrol, deposit, unlock,
// limit-override, phone-change, ledger-verify — and every request they
// make on /staff/v1, refused or done, is recorded in banking's audit
// trail under their id. To issue a token:
//
//	banking staff-token -out /secure/teller1.token
//	token_sha256: 9f2c…        ← paste into the person's staff: entry
//
// The token (kwst_…) is written to the file only (0600, never over an
// existing file), never to the terminal or argv; hand the file to the
// person. To withdraw a token, remove the entry (or set expires) and
// restart.
//
// The five bank keys listed in package banking's doc must exist in keysvc
// and grant kms_name their operations; banking checks the login, receipt
// and audit keys at start and refuses to run when they are missing or not
// granted. Customer keys are created at enrolment, so kms_name must be a
// keysvc client with enrol_prefixes [usb-, cust-] (or an admin, as in dev
// mode).
//
// # Audit trail
//
// Banking keeps its own tamper-evident audit trail (package
// banking/bankaudit) in its store: logins, step-ups, SMS codes, password
// and limit changes, enrolments, corporate steps, locks. Checkpoints are
// signed through keysvc by bank-audit every audit.checkpoint_every
// records or audit.checkpoint_interval; each is logged with its anchor
// ("banking audit checkpoint ... expect=<seq>:<hash>"), to be kept off
// the machine.
//
//	banking audit verify -config FILE [-pubkey bank-audit.pem] [-expect SEQ:HASH]
//
// reads the store (a bbolt file read-only: stop the node or check a copy;
// PostgreSQL while nodes run) and exits 0 when every record chains, every
// checkpoint is signed by bank-audit and names its record, and every
// -expect anchor is in the chain; otherwise non-zero, naming the first
// broken record. The public key comes from -pubkey, audit.public_key, or
// keysvc. `banking audit tail -config FILE -n 20` prints the newest
// records (Beijing time and UTC, actor, op, subject, result, source).
//
// Records are kept at least audit.retention (default and minimum 180d,
// R-SRV-3; a shorter value is refused at load). Nothing in banking
// deletes them; `banking audit prune -config FILE -before YYYY-MM-DD`
// refuses a date younger than the retention, verifies the trail, and
// deletes only the records before the newest signed checkpoint older than
// the date, which stays as the base verify starts from.
//
// Security alerts (account and address locks, dead SMS codes, SMS
// bombing) go to the log at WARN and, with alerts.webhook.url, are POSTed
// as JSON to that HTTPS receiver (banking/auth/alertwebhook: queued,
// retried, drops counted and logged at ERROR).
//
// # Dev mode
//
// With -dev and no config file, banking expects keysvc's dev mode (make run) on
// https://127.0.0.1:8443 with its data in ./var. It authenticates with
// keysvc's dev admin token (client "dev"), creates the five bank keys if
// they are missing, and keeps its own files under ./var/bank: a dev CA and
// a server certificate for 127.0.0.1 (tls/), two staff members' personal
// tokens (staff/teller1.token: enrol, deposit, phone-change;
// staff/supervisor1.token: unlock, limit-override, ledger-verify; 0600,
// their paths logged at start), an empty screening list (blacklist.txt, "end:0"), the SMS outbox
// (sms-outbox.jsonl, 0600: each one-time code is there and on the console
// until it is used or expires) and bank.db. Only dev mode opens an outbox:
// with a config file, codes go to sms.gateway_url and are kept nowhere. It listens on https://127.0.0.1:8445 and prints
// how to call it.
//
// With -store-url (dev mode only: with -config the YAML's store section
// rules, and the flag is refused), the records go to that PostgreSQL
// database instead of bank.db: the URL is store.postgres.url, without a
// password (argv is no place for one; a dev server trusts loopback).
// Several dev nodes may then share one database and one -data-dir, each
// on its own -listen address (make run-banking-pg starts two): the dev
// files are created once, under an exclusive lock on
// <data-dir>/.dev-setup.lock, so a node started beside another finds them
// whole; each node keeps its own SMS outbox, sms-outbox-<port>.jsonl (an
// outbox is rewritten whole from its node's memory, so two nodes on one
// file would erase each other's codes); and a bank key created by one
// node while another looks for it is taken as found.
//
// # Metrics and readiness
//
// metrics.listen (off when empty; dev mode: 127.0.0.1 on the API's port +
// 1001, so 9446 for 8445; -metrics-listen overrides either, "off" turns
// it off) serves, over plain HTTP on a listener of its
// own, GET /metrics (Prometheus: requests by route template and status,
// logins, locks, SMS codes, transfers, keysvc calls, ledger commits, store
// faults; no label names a customer) and GET /readyz (200 when the store
// answers a read and keysvc answers a call, each within 2 s; else 503 with
// JSON naming the failed check and why). Keep it on loopback or the
// management network: it is unauthenticated. /healthz stays on the API
// listener. See the README's "Monitoring banking".
//
// # Shutdown
//
// SIGINT or SIGTERM stops accepting connections, lets in-flight requests
// finish (shutdown_timeout), flushes sessions and closes the database.
//
// # Limitations
//
//   - The one production SMS gateway built in posts JSON to an HTTPS
//     endpoint (otp.HTTPGateway); a provider with another protocol needs a
//     relay, or an otp.Gateway wired here.
//   - Certificates are read once at start; rotating one means a restart.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/keyward/keyward/banking"
	"github.com/keyward/keyward/banking/blacklist"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/pgstore"
	"github.com/keyward/keyward/cmd/internal/startmode"
	"github.com/keyward/keyward/keysvc/client"
	"github.com/keyward/keyward/keysvc/wire"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := serve(log, os.Args[1:]); err != nil {
		log.Error("banking", "err", err)
		os.Exit(1)
	}
}

func serve(log *slog.Logger, args []string) error {
	if len(args) > 0 && args[0] == "staff-token" {
		return staffTokenCmd(args[1:], os.Stdout)
	}
	fs := flag.NewFlagSet("banking", flag.ContinueOnError)
	configPath := fs.String("config", os.Getenv("KEYWARD_BANK_CONFIG"), "YAML config file (env KEYWARD_BANK_CONFIG)")
	devMode := fs.Bool("dev", false, "without -config: a development instance on keysvc's dev mode, with dev credentials under -data-dir")
	dataDir := fs.String("data-dir", "var/bank", "dev mode: the bank's data directory")
	keysvcDir := fs.String("keysvc-dir", "var", "dev mode: keysvc's dev data directory (dev-admin.token, tls/ca.pem)")
	keysvcURL := fs.String("keysvc-url", "https://127.0.0.1:8443", "dev mode: keysvc's URL")
	listen := fs.String("listen", "", "override the listen address")
	metricsListen := fs.String("metrics-listen", "", "override metrics.listen (GET /metrics and /readyz, plain HTTP; dev mode's default: 127.0.0.1 on the API port + 1001); off turns it off")
	verifyLedger := fs.Bool("verify-ledger", false, "with -config: open the store (bbolt file or PostgreSQL), verify the ledger (double entry, every idempotency key once, balances re-summed), print the report and exit; for a restored database, before anyone uses it")
	storeURL := fs.String("store-url", "", "dev mode: keep the bank's records in this PostgreSQL database (postgres://user@host:port,host:port/db?target_session_attrs=read-write, no password) instead of <data-dir>/bank.db; several nodes may share it and the data dir")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 && fs.Arg(0) == "audit" {
		return runAudit(log, fs.Args()[1:], os.Stdout)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := startmode.Check("banking", "KEYWARD_BANK_CONFIG", "on keysvc's dev mode, as make run-banking does; it creates dev credentials under -data-dir", *configPath, *devMode); err != nil {
		return err
	}
	if *storeURL != "" && *configPath != "" {
		return errStoreURLWithConfig
	}
	var cfg *Config
	var dev *devInfo
	var err error
	if *configPath != "" {
		cfg, err = loadConfig(*configPath)
	} else {
		cfg, dev, err = devConfig(*dataDir, *keysvcDir, *keysvcURL)
	}
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if dev != nil {
		cfg.Metrics.Listen = devMetricsListen(cfg.Listen)
	}
	switch *metricsListen {
	case "":
	case "off":
		cfg.Metrics.Listen = ""
	default:
		cfg.Metrics.Listen = *metricsListen
		if err := cfg.validate(); err != nil {
			return fmt.Errorf("-metrics-listen: %w", err)
		}
	}
	if dev != nil {
		dev.metricsListen = cfg.Metrics.Listen
	}
	if *verifyLedger {
		if dev != nil {
			return errors.New("-verify-ledger needs -config: the store of the deployment to check")
		}
		return runVerifyLedger(log, cfg, os.Stdout)
	}
	if *storeURL != "" {
		if err := devOnPostgres(cfg, dev, *storeURL); err != nil {
			return err
		}
	}
	return run(log, cfg, dev)
}

func run(log *slog.Logger, cfg *Config, dev *devInfo) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Everything that can be checked without side effects first.
	creds, err := openCredentials(cfg, log)
	if err != nil {
		return err
	}
	srvTLS, err := serverTLS(cfg.TLS.Cert, cfg.TLS.Key, creds.tlsKey)
	if err != nil {
		creds.wipe()
		return err
	}
	kc, err := newKMSClient(cfg, creds, log)
	pgPass := string(creds.pgPass) // pgx keeps a string; the sealed bytes are wiped
	creds.wipe()                   // parsed into the TLS configurations and the client
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	if dev != nil {
		if err := provisionBankKeys(ctx, kc, cfg.KMSName, log); err != nil {
			return err
		}
	}
	if err := checkBankKeys(ctx, kc, log); err != nil {
		return err
	}
	db, err := openStore(ctx, cfg, pgPass, log)
	if err != nil {
		return err
	}
	defer db.Close()
	if pg, ok := db.(*pgstore.DB); ok {
		defer logStoreStats(log, pg) // after bank.Close (deferred later, run earlier)
	}
	screen, err := blacklist.Open(cfg.Blacklist.File, blacklist.Options{Interval: cfg.Blacklist.Interval,
		OnError: func(err error) {
			log.Error("screening list not reloaded; the previous list stays in force", "file", cfg.Blacklist.File, "err", err)
		},
		OnReload: func(l *blacklist.List) {
			log.Info("screening list reloaded", "file", cfg.Blacklist.File, "entries", l.Len())
		}})
	if err != nil {
		return fmt.Errorf("blacklist.file: %w", err)
	}
	defer screen.Close()
	sms, err := smsGateway(cfg)
	if err != nil {
		return err
	}
	alerts, closeAlerts, err := alertsFor(cfg, log)
	if err != nil {
		return err
	}
	defer closeAlerts() // after bank.Close (deferred later, run earlier)
	bank, err := banking.New(banking.Config{DB: db, KMS: kc, Screen: screen, SMS: sms, Logger: log, KMSName: cfg.KMSName, Alerts: alerts,
		CaptchaAfter: cfg.Login.CaptchaAfter,
		Ledger:       ledger.Options{MaxBatchSize: cfg.Ledger.MaxBatchSize, MaxBatchDelay: cfg.Ledger.MaxBatchDelay, AccountPrefix: cfg.Ledger.AccountPrefix},
		Trail:        banking.TrailConfig{CheckpointEvery: cfg.Audit.CheckpointEvery, CheckpointInterval: cfg.Audit.CheckpointInterval}})
	if err != nil {
		return err
	}
	defer bank.Close() // before db.Close: sessions are flushed to it
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	defer stopSweep()
	go bank.RunSweeper(sweepCtx, time.Minute) // expired codes, challenges, counters, sessions
	logStaff(log, cfg, dev)
	app := bank.NewServer(banking.ServerConfig{Staff: cfg.staff, LoginPerMinute: cfg.HTTP.LoginPerMinute,
		RequestsPerMinute: cfg.HTTP.RequestsPerMinute, BodyLimit: cfg.HTTP.BodyLimit})
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- app.Listener(tls.NewListener(ln, srvTLS)) }()
	log.Info("banking listening", "addr", ln.Addr().String(), "keysvc", cfg.KeySvc.endpoints(), "kms_name", cfg.KMSName)
	var ops *http.Server
	if cfg.Metrics.Listen != "" {
		if ops, err = serveOps(cfg.Metrics.Listen, bank, log, errc); err != nil {
			app.Shutdown()
			return fmt.Errorf("metrics.listen: %w", err)
		}
	}
	if dev != nil {
		dev.print(ln.Addr().String())
	}
	select {
	case err = <-errc:
	case <-ctx.Done():
		log.Info("shutting down")
	}
	// Stop accepting, let in-flight requests finish; the deferred closes
	// then flush sessions and close the list, outbox and database.
	if serr := app.ShutdownWithTimeout(cfg.ShutdownTimeout); err == nil {
		err = serr
	}
	if ops != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if serr := ops.Shutdown(sctx); err == nil {
			err = serr
		}
		cancel()
	}
	return err
}

// serveOps serves the operators' endpoints (banking.Bank.OpsHandler:
// GET /metrics, GET /readyz) on their own plain-HTTP listener
// (metrics.listen): never on the API listener, where every client could
// read them (R-AV-2). Operators put it on loopback or the management
// network.
func serveOps(addr string, bank *banking.Bank, log *slog.Logger, errc chan<- error) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: bank.OpsHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second}
	go func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	log.Info("metrics and readiness listening", "addr", ln.Addr().String(), "paths", "/metrics /readyz")
	return hs, nil
}

// runVerifyLedger is banking -verify-ledger: the ledger of cfg's store
// verified offline (no keysvc needed), the report printed. A banking node
// may be running: Verify reads one consistent snapshot (PostgreSQL; a bbolt
// file is locked by a running node, so stop it first).
func runVerifyLedger(log *slog.Logger, cfg *Config, out io.Writer) error {
	creds, err := openCredentials(cfg, log)
	if err != nil {
		return err
	}
	pgPass := string(creds.pgPass)
	creds.wipe()
	ctx := context.Background()
	db, err := openStore(ctx, cfg, pgPass, log)
	if err != nil {
		return err
	}
	defer db.Close()
	l, err := ledger.New(db, ledger.Options{})
	if err != nil {
		return err
	}
	t0 := time.Now()
	rep, err := l.Verify(ctx)
	if err != nil {
		return fmt.Errorf("ledger verification FAILED: %w", err)
	}
	fmt.Fprintf(out, "ledger ok (%s store, %v): %d postings, %d entries, %d accounts, %d idempotency keys\n",
		db.Backend(), time.Since(t0).Round(time.Millisecond), rep.Postings, rep.Entries, rep.Accounts, rep.IdempotencyKeys)
	for _, cur := range slices.Sorted(maps.Keys(rep.CustomerTotals)) {
		fmt.Fprintf(out, "  %s: customers hold %s, all balances sum to %d\n", cur, ledger.FormatAmount(rep.CustomerTotals[cur], cur), rep.Totals[cur])
	}
	return nil
}

// logStoreStats logs what the PostgreSQL store did while banking ran:
// retries and conflicts (serialisation failures re-run), lost connections
// (a failover), commits of unknown outcome, and group-commit figures.
func logStoreStats(log *slog.Logger, db *pgstore.DB) {
	s := db.Stats()
	log.Info("pgstore stats", "retries", s.Retries, "conflicts", s.Conflicts, "conn_lost", s.ConnLost,
		"commit_unknown", s.CommitUnknown, "exhausted", s.Exhausted, "views", s.Views, "updates", s.Updates, "batches", s.Batches,
		"batched_calls", s.BatchedCalls, "batch_time", s.BatchTime.Round(time.Millisecond))
}

// openStore opens banking's store: bbolt's data_dir/bank.db (one banking
// process), or PostgreSQL at store.postgres.url, shared by every banking
// node. The password comes from the sealed secrets file (pg-password) or
// store.postgres.password_file, never from the URL.
func openStore(ctx context.Context, cfg *Config, sealedPass string, log *slog.Logger) (store.DB, error) {
	if cfg.Store.Backend != "postgres" {
		dbPath := filepath.Join(cfg.DataDir, "bank.db")
		return store.OpenBolt(dbPath, 5*time.Second) // a lock timeout names the file and asks whether banking already runs
	}
	pass := sealedPass
	if f := cfg.Store.Postgres.PasswordFile; f != "" {
		b, err := readSecretFile(f)
		if err != nil {
			return nil, fmt.Errorf("store.postgres.password_file: %w", err)
		}
		pass = b // secretfile.Read: 0600, trimmed
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	db, err := pgstore.Open(octx, pgstore.Config{DSN: cfg.Store.Postgres.URL, Password: pass,
		MaxConns: int32(cfg.Store.Postgres.MaxConns), TxTimeout: cfg.Store.Postgres.TxTimeout, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("store.postgres: %w", err)
	}
	log.Info("store: PostgreSQL", "schema", pgstore.SchemaVersion(), "max_conns", cfg.Store.Postgres.MaxConns)
	return db, nil
}

// serverTLS loads the bank's own HTTPS certificate, its key from keyFile
// or, when sealed, keyPEM.
func serverTLS(certFile, keyFile string, keyPEM []byte) (*tls.Config, error) {
	cert, err := loadKeyPair(certFile, keyFile, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls.cert/tls.key: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// newKMSClient builds the keysvc client: mutual TLS with the configured
// client certificate, or (development) a bearer token from a file. The
// transport keeps many idle connections to keysvc: every login, transfer
// and receipt is a keysvc call.
func newKMSClient(cfg *Config, creds *credentials, log *slog.Logger) (*client.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.KeySvc.CA != "" {
		pem, err := os.ReadFile(cfg.KeySvc.CA)
		if err != nil {
			return nil, fmt.Errorf("keysvc.ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("keysvc.ca: %s holds no PEM certificate", cfg.KeySvc.CA)
		}
		tc.RootCAs = pool
	}
	opts := []client.Option{}
	if cfg.KeySvc.ClientCert != "" {
		cert, err := loadKeyPair(cfg.KeySvc.ClientCert, cfg.KeySvc.ClientKey, creds.clientKey)
		if err != nil {
			return nil, fmt.Errorf("keysvc.client_cert/client_key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	} else if creds.bearer != nil {
		opts = append(opts, client.WithBearer(strings.TrimSpace(string(creds.bearer))))
	} else {
		tok, err := readSecretFile(cfg.KeySvc.BearerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("keysvc.bearer_token_file: %w", err)
		}
		opts = append(opts, client.WithBearer(tok))
	}
	// MaxConnsPerHost bounds the connections to keysvc: beyond it requests
	// queue for a connection instead of opening new TLS sessions (with
	// 1,000 clients, fresh handshakes cost 16 % of banking's CPU).
	// The limits are per keysvc node: the Transport keeps one pool per
	// endpoint. A node whose host is gone costs a request its dial, so the
	// dial is bounded well under keysvc.timeout before the client fails
	// over to the next node.
	dialer := &net.Dialer{Timeout: min(5*time.Second, cfg.KeySvc.Timeout/2), KeepAlive: 30 * time.Second}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxIdleConns: 512, MaxIdleConnsPerHost: 512, MaxConnsPerHost: 128,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second, DialContext: dialer.DialContext}
	opts = append(opts, client.WithHTTPClient(&http.Client{Transport: tr, Timeout: cfg.KeySvc.Timeout}))
	// Spread (the client's default): every keysvc node signs with its own
	// token sessions, and every pool stays warm for a failover. A node
	// that fails, and its return, are logged once each.
	opts = append(opts, client.WithEndpointEvents(func(url string, up bool, err error) {
		if up {
			log.Info("keysvc endpoint answers again", "endpoint", url)
			return
		}
		log.Warn("keysvc endpoint failed; requests safe to repeat go to the other endpoints until it answers", "endpoint", url, "err", err)
	}))
	return client.NewMulti(cfg.KeySvc.endpoints(), opts...)
}

// checkBankKeys asks keysvc for the login, receipt and audit public keys, so a
// missing key or grant stops the start with a clear message. keysvc being
// unreachable is only logged: banking answers 503 until it is back.
func checkBankKeys(ctx context.Context, kc *client.Client, log *slog.Logger) error {
	for _, name := range []string{banking.KeyLogin, banking.KeyReceipt, banking.KeyAudit} {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := kc.PublicKey(cctx, name, 0)
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, wire.ErrKeyNotFound), errors.Is(err, wire.ErrForbidden), errors.Is(err, wire.ErrUnauthenticated):
			return fmt.Errorf("keysvc key %s: %w (provision the bank keys listed in `go doc ./banking` and grant them to kms_name)", name, err)
		default:
			log.Warn("keysvc not answering; banking starts and answers 503 until it is back", "key", name, "err", err)
			return nil
		}
	}
	return nil
}

// loadKeyPair is tls.LoadX509KeyPair with the key from keyFile or, when
// sealed (keyPEM not nil), from memory.
func loadKeyPair(certFile, keyFile string, keyPEM []byte) (tls.Certificate, error) {
	if keyPEM == nil {
		return tls.LoadX509KeyPair(certFile, keyFile)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
