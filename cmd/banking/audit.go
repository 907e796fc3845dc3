package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyward/keyward/banking"
	"github.com/keyward/keyward/banking/auth"
	"github.com/keyward/keyward/banking/auth/alertwebhook"
	"github.com/keyward/keyward/banking/bankaudit"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/token/l10n"
)

// alertsFor is where security alerts go: the log, and the webhook when
// alerts.webhook.url is set. close stops the webhook (queued events get
// one timeout more).
func alertsFor(cfg *Config, log *slog.Logger) (auth.Alerts, func(), error) {
	logAlerts := auth.LogAlerts{Logger: log}
	w := cfg.Alerts.Webhook
	if w.URL == "" {
		return logAlerts, func() {}, nil
	}
	var pool *x509.CertPool
	if w.CAFile != "" {
		pem, err := os.ReadFile(w.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("alerts.webhook.ca_file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("alerts.webhook.ca_file %s holds no PEM certificate", w.CAFile)
		}
	}
	hook, err := alertwebhook.New(alertwebhook.Config{URL: w.URL, RootCAs: pool, Timeout: w.Timeout, Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("alerts.webhook.url: %w", err)
	}
	return auth.MultiAlerts{logAlerts, hook}, func() {
		hook.Close()
		s := hook.Stats()
		log.Info("alert webhook stats", "sent", s.Sent, "retried", s.Retried, "dropped", s.Dropped)
	}, nil
}

// runAudit is `banking audit verify|tail|prune`.
func runAudit(log *slog.Logger, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("banking audit: verify, tail or prune (banking audit verify -config FILE)")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("banking audit "+cmd, flag.ContinueOnError)
	configPath := fs.String("config", os.Getenv("KEYWARD_BANK_CONFIG"), "the banking YAML config whose store to read (env KEYWARD_BANK_CONFIG)")
	pubPath := fs.String("pubkey", "", "verify, prune: the bank-audit public key (PEM); default audit.public_key, else asked of keysvc")
	var expects []string
	fs.Func("expect", "verify: SEQ:HASH, an anchor logged at a checkpoint (\"expect=...\") kept off the machine; repeatable", func(s string) error {
		expects = append(expects, s)
		return nil
	})
	n := fs.Int("n", 20, "tail: how many of the newest records")
	before := fs.String("before", "", "prune: delete records before this date (YYYY-MM-DD, UTC), up to a signed checkpoint")
	devMode := fs.Bool("dev", false, "without -config: the dev bank's store (-data-dir) and keysvc's dev mode (stop banking -dev first: it holds bank.db)")
	dataDir := fs.String("data-dir", "var/bank", "dev mode: the bank's data directory")
	keysvcDir := fs.String("keysvc-dir", "var", "dev mode: keysvc's dev data directory")
	keysvcURL := fs.String("keysvc-url", "https://127.0.0.1:8443", "dev mode: keysvc's URL")
	storeURL := fs.String("store-url", "", "dev mode: the dev nodes' PostgreSQL database (as banking -dev -store-url) instead of <data-dir>/bank.db")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("banking audit %s: unexpected argument %q", cmd, fs.Arg(0))
	}
	var cfg *Config
	var err error
	switch {
	case *configPath != "" && *devMode:
		return errors.New("give -config or -dev, not both")
	case *storeURL != "" && !*devMode:
		return errStoreURLWithConfig
	case *configPath != "":
		cfg, err = loadConfig(*configPath)
	case *devMode:
		var dev *devInfo
		if cfg, dev, err = devConfig(*dataDir, *keysvcDir, *keysvcURL); err == nil && *storeURL != "" {
			err = devOnPostgres(cfg, dev, *storeURL)
		}
	default:
		return fmt.Errorf("banking audit %s needs -config (the deployment's YAML, whose store holds the trail) or -dev", cmd)
	}
	if err != nil {
		return err
	}
	switch cmd {
	case "verify":
		anchors := make([]audit.Anchor, 0, len(expects))
		for _, e := range expects {
			a, err := audit.ParseAnchor(e)
			if err != nil {
				return err
			}
			anchors = append(anchors, a)
		}
		return auditVerify(log, cfg, *pubPath, anchors, out)
	case "tail", "show":
		if *n < 1 || *n > 100000 {
			return errors.New("-n must be between 1 and 100000")
		}
		return auditTail(log, cfg, *n, out)
	case "prune":
		t, err := time.Parse(time.DateOnly, *before)
		if err != nil {
			return errors.New("prune needs -before YYYY-MM-DD (UTC): records before that day go, up to a signed checkpoint")
		}
		return auditPrune(log, cfg, *pubPath, t, out)
	}
	return fmt.Errorf("banking audit %s: unknown; use verify, tail or prune", cmd)
}

// openAuditStore opens the config's store: a bbolt file read-only (it
// waits while a banking process holds the file), or PostgreSQL (reads
// only run in read-only transactions; prune writes).
func openAuditStore(log *slog.Logger, cfg *Config, write bool) (store.DB, error) {
	if cfg.Store.Backend != "postgres" {
		path := filepath.Join(cfg.DataDir, "bank.db")
		if write {
			return store.OpenBolt(path, 5*time.Second)
		}
		return store.OpenBoltReadOnly(path, 5*time.Second)
	}
	creds, err := openCredentials(cfg, log)
	if err != nil {
		return nil, err
	}
	pgPass := string(creds.pgPass)
	creds.wipe()
	return openStore(context.Background(), cfg, pgPass, log)
}

// auditPublicKey is the bank-audit public key: -pubkey, audit.public_key,
// else keysvc's answer through the config's keysvc client.
func auditPublicKey(log *slog.Logger, cfg *Config, path string) (*ecdsa.PublicKey, error) {
	if path == "" {
		path = cfg.Audit.PublicKey
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("the bank-audit public key: %w", err)
		}
		return bankaudit.ParsePublicKeyPEM(b)
	}
	creds, err := openCredentials(cfg, log)
	if err != nil {
		return nil, err
	}
	kc, err := newKMSClient(cfg, creds, log)
	creds.wipe()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pk, err := kc.PublicKey(ctx, banking.KeyAudit, 0)
	if err != nil {
		return nil, fmt.Errorf("keysvc: the %s public key: %w (or give -pubkey bank-audit.pem)", banking.KeyAudit, err)
	}
	return bankaudit.ParsePublicKeyPEM([]byte(pk.PEM))
}

func auditVerify(log *slog.Logger, cfg *Config, pubPath string, anchors []audit.Anchor, out io.Writer) error {
	pub, err := auditPublicKey(log, cfg, pubPath)
	if err != nil {
		return err
	}
	db, err := openAuditStore(log, cfg, false)
	if err != nil {
		return err
	}
	defer db.Close()
	t0 := time.Now()
	rep, err := bankaudit.Verify(db, pub, anchors...)
	if err != nil {
		fmt.Fprintf(out, "banking audit trail BROKEN (%s store)\n", db.Backend())
		return fmt.Errorf("audit verification FAILED: %w", err)
	}
	if rep.Empty {
		fmt.Fprintf(out, "banking audit trail empty (%s store): no record yet\n", db.Backend())
		return nil
	}
	fmt.Fprintf(out, "banking audit trail intact (%s store, %v): %d records (%d..%d), %d signed checkpoints, %d anchors matched\n",
		db.Backend(), time.Since(t0).Round(time.Millisecond), rep.Records, rep.LastSeq-rep.Records+1, rep.LastSeq, rep.Checkpoints, rep.Anchors)
	if rep.Base != nil {
		fmt.Fprintf(out, "  pruned: the log starts at the base checkpoint %d, record %d (signed %s)\n", rep.Base.Index, rep.Base.Seq, rep.Base.Time.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(out, "  last checkpoint at record %d: keep expect=%s off this machine\n", rep.LastCheckpoint, audit.Anchor{Seq: rep.LastCheckpoint, Hash: rep.LastCheckpointHash})
	if rep.Unsigned > 0 {
		fmt.Fprintf(out, "  %d records after it are chained but not yet signed (a checkpoint follows within audit.checkpoint_interval)\n", rep.Unsigned)
	}
	return nil
}

// auditTail prints the newest n records for a person: time in Beijing
// and UTC, actor, op, subject, result, source, detail.
func auditTail(log *slog.Logger, cfg *Config, n int, out io.Writer) error {
	db, err := openAuditStore(log, cfg, false)
	if err != nil {
		return err
	}
	defer db.Close()
	recs, err := bankaudit.Tail(db, n)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%-7s %-19s %-9s %-24s %-22s %-20s %-20s %-15s %s\n", "SEQ", "BEIJING (UTC+8)", "UTC", "ACTOR", "OP", "SUBJECT", "RESULT", "SOURCE", "DETAIL")
	for _, r := range recs {
		detail, source := r.Detail, "-"
		if i := strings.LastIndex(detail, "source="); i >= 0 && !strings.Contains(detail[i:], " ") {
			detail, source = strings.TrimSpace(detail[:i]), detail[i+len("source="):]
		}
		subject := r.Key
		if subject == "" {
			subject = "-"
		}
		fmt.Fprintf(out, "%-7d %-19s %-9s %-24s %-22s %-20s %-20s %-15s %s\n", r.Seq, r.Time.In(l10n.China).Format(time.DateTime),
			r.Time.UTC().Format("15:04:05Z"), r.Client, r.Op, subject, r.Result, source, detail)
	}
	return nil
}

func auditPrune(log *slog.Logger, cfg *Config, pubPath string, before time.Time, out io.Writer) error {
	pub, err := auditPublicKey(log, cfg, pubPath)
	if err != nil {
		return err
	}
	db, err := openAuditStore(log, cfg, true)
	if err != nil {
		return err
	}
	defer db.Close()
	res, err := bankaudit.Prune(db, pub, before, time.Duration(cfg.Audit.Retention), time.Now())
	if err != nil {
		return err
	}
	if res.Deleted == 0 {
		fmt.Fprintf(out, "nothing pruned: no signed checkpoint before %s\n", before.Format(time.DateOnly))
		return nil
	}
	fmt.Fprintf(out, "pruned %d records; the trail now starts at checkpoint %d (record %d), which stays as its signed base\n", res.Deleted, res.Base.Index, res.Base.Seq)
	return nil
}
