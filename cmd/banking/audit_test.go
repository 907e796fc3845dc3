package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/auth"
	"github.com/keyward/keyward/banking/bankaudit"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/pgstore"
	"github.com/keyward/keyward/banking/store/pgstore/pgtest"
	"github.com/keyward/keyward/keysvc/audit"
)

type testSigner struct{ k *ecdsa.PrivateKey }

func (s testSigner) SignDigest(_ context.Context, d []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, s.k, d)
}

// auditFixture writes a bank.db holding a trail of 12 records with a
// checkpoint at record 10, the bank-audit public key as PEM and a config
// naming them; it returns the config, the key file and the checkpoint's
// anchor.
func auditFixture(t *testing.T) (conf, pubFile string, anchor audit.Anchor) {
	t.Helper()
	dir := t.TempDir()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	pubFile = filepath.Join(dir, "bank-audit.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := store.OpenBolt(filepath.Join(dir, "bank.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := bankaudit.Open(bankaudit.Config{DB: db, Signer: testSigner{k}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		ev := bankaudit.Event{Actor: "login:ana.li", Op: "login", Result: "login_failed", Detail: fmt.Sprintf("device=d%d", i), Source: "198.51.100.4"}
		if _, err := tr.Append(ev); err != nil {
			t.Fatal(err)
		}
		if i == 9 {
			cp, err := tr.Checkpoint(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			anchor = audit.Anchor{Seq: cp.Seq, Hash: cp.Hash}
		}
	}
	db.Close()
	return writeConfig(t, strings.Replace(validYAML, "data_dir: /var/lib/keyward-bank", "data_dir: "+dir, 1)), pubFile, anchor
}

// bankingProc runs this test binary as the banking command.
func bankingProc(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestAuditVerifyProcess: `banking audit verify` as a process on a bbolt
// file exits 0 on an intact trail (with the anchor it printed), non-zero
// with a wrong anchor, and non-zero naming the record after one record
// was edited through the store.
func TestAuditVerifyProcess(t *testing.T) {
	conf, pub, anchor := auditFixture(t)
	out, err := bankingProc(t, "audit", "verify", "-config", conf, "-pubkey", pub, "-expect", anchor.String())
	if err != nil {
		t.Fatalf("verify of an intact trail: %v\n%s", err, out)
	}
	t.Logf("banking audit verify:\n%s", out)
	for _, want := range []string{"intact (bbolt store", "12 records (1..12)", "1 signed checkpoints, 1 anchors matched", "expect=" + anchor.String(), "2 records after it"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	wrong := audit.Anchor{Seq: 5, Hash: anchor.Hash}
	if out, err := bankingProc(t, "audit", "verify", "-config", conf, "-pubkey", pub, "-expect", wrong.String()); err == nil || !strings.Contains(out, "at record 5") {
		t.Errorf("a wrong anchor: %v\n%s", err, out)
	}
	out, err = bankingProc(t, "audit", "tail", "-config", conf, "-n", "2")
	if err != nil {
		t.Fatalf("tail: %v\n%s", err, out)
	}
	t.Logf("banking audit tail -n 2:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "11 ") || !strings.Contains(lines[2], "login:ana.li") || !strings.Contains(lines[2], "198.51.100.4") ||
		!strings.Contains(lines[2], "login_failed") || !strings.Contains(lines[2], "device=d11") {
		t.Errorf("tail:\n%s", out)
	}

	// One record edited in the file's store.
	dir := filepath.Dir(pub)
	db, err := store.OpenBolt(filepath.Join(dir, "bank.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx store.Tx) error {
		b := tx.Bucket([]byte("bank-audit-records"))
		k := binary.BigEndian.AppendUint64(nil, 3)
		return b.Put(k, []byte(strings.Replace(string(b.Get(k)), "login_failed", "ok", 1)))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	out, err = bankingProc(t, "audit", "verify", "-config", conf, "-pubkey", pub)
	if err == nil || !strings.Contains(out, "FAILED") || !strings.Contains(out, "at record 3: contents do not match its hash") {
		t.Fatalf("verify of an edited trail: %v\n%s", err, out)
	}
	t.Logf("banking audit verify, edited record 3:\n%s", out)
}

func TestAuditConfig(t *testing.T) {
	c, err := loadConfig(writeConfig(t, validYAML))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.Audit.Retention) != 180*24*time.Hour || c.Alerts.Webhook.URL != "" {
		t.Fatalf("defaults: %+v %+v", c.Audit, c.Alerts)
	}
	c, err = loadConfig(writeConfig(t, validYAML+"audit: {retention: 400d, checkpoint_every: 500, checkpoint_interval: 30s}\nalerts: {webhook: {url: https://soc.bank.internal/hooks/keyward, ca_file: /etc/keyward/bank/soc-ca.pem, timeout: 3s}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.Audit.Retention) != 400*24*time.Hour || c.Audit.CheckpointEvery != 500 || c.Alerts.Webhook.Timeout != 3*time.Second {
		t.Fatalf("parsed %+v %+v", c.Audit, c.Alerts)
	}
	for body, want := range map[string]string{
		"audit: {retention: 90d}\n":                   "audit.retention must be at least 180d",
		"audit: {retention: 2160h}\n":                 "audit.retention must be at least 180d",
		"audit: {retention: six months}\n":            "want a number of days",
		"alerts: {webhook: {url: http://soc/hook}}\n": "alerts.webhook.url must be https://",
		"alerts: {webhook: {ca_file: /etc/x.pem}}\n":  "ca_file is set without alerts.webhook.url",
		"audit: {checkpoint_interval: 10ms}\n":        "audit.checkpoint_interval",
	} {
		if _, err := loadConfig(writeConfig(t, validYAML+body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", body, err, want)
		}
	}
}

// TestAlertsWebhookWiring: alerts.webhook with ca_file posts an alert to
// a loopback HTTPS receiver whose certificate that CA file holds, and the
// log still gets it.
func TestAlertsWebhookWiring(t *testing.T) {
	got := make(chan []byte, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "soc-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(writeConfig(t, validYAML+fmt.Sprintf("alerts: {webhook: {url: %q, ca_file: %q}}\n", srv.URL+"/hook", ca)))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	alerts, closeAlerts, err := alertsFor(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	alerts.Alert(context.Background(), auth.Event{Kind: auth.KindIPLocked, IP: "203.0.113.9", Count: 20, Time: time.Now(), Until: time.Now().Add(15 * time.Minute)})
	closeAlerts()
	select {
	case b := <-got:
		if !strings.Contains(string(b), `"kind":"ip-locked"`) || !strings.Contains(string(b), `"source":"203.0.113.9"`) {
			t.Errorf("posted %s", b)
		}
	default:
		t.Fatal("nothing posted to the webhook")
	}
	if l := logs.String(); !strings.Contains(l, "security alert") || !strings.Contains(l, "sent=1") {
		t.Errorf("log: %s", l)
	}
}

// TestAuditVerifyProcessPostgres: `banking audit verify` as a process on
// a PostgreSQL store (store.backend: postgres), as it runs beside live
// nodes; an edited record fails it.
func TestAuditVerifyProcessPostgres(t *testing.T) {
	pgtest.Require(t)
	t.Cleanup(pgtest.Stop) // registered first: runs after the database is dropped
	dsn := pgtest.Fresh(t)
	ctx := context.Background()
	db, err := pgstore.Open(ctx, pgstore.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tr, err := bankaudit.Open(bankaudit.Config{DB: db, Signer: testSigner{k}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := tr.Append(bankaudit.Event{Actor: "staff:t1", Op: "staff.enrol", Result: "ok", Subject: fmt.Sprintf("c%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tr.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	pub := filepath.Join(t.TempDir(), "bank-audit.pem")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(validYAML, "data_dir: /var/lib/keyward-bank\n", fmt.Sprintf("data_dir: /var/lib/keyward-bank\nstore: {backend: postgres, postgres: {url: %q}}\n", dsn), 1)
	conf := writeConfig(t, body)
	out, err := bankingProc(t, "audit", "verify", "-config", conf, "-pubkey", pub)
	if err != nil || !strings.Contains(out, "intact (postgres store") || !strings.Contains(out, "5 records (1..5)") {
		t.Fatalf("verify on PostgreSQL: %v\n%s", err, out)
	}
	if err := db.Update(func(tx store.Tx) error {
		b := tx.Bucket([]byte("bank-audit-records"))
		key := binary.BigEndian.AppendUint64(nil, 2)
		return b.Put(key, []byte(strings.Replace(string(b.Get(key)), "staff:t1", "staff:t2", 1)))
	}); err != nil {
		t.Fatal(err)
	}
	if out, err := bankingProc(t, "audit", "verify", "-config", conf, "-pubkey", pub); err == nil || !strings.Contains(out, "at record 2") {
		t.Fatalf("verify of an edited record on PostgreSQL: %v\n%s", err, out)
	}
}

// TestAuditVerifyDev: `banking audit verify -dev` reads the dev bank's
// bank.db under -data-dir; -config with -dev, and -store-url without
// -dev, are refused.
func TestAuditVerifyDev(t *testing.T) {
	conf, pub, _ := auditFixture(t)
	dataDir := filepath.Dir(pub) // the fixture's bank.db is there
	ks := fakeKeysvcDevDir(t)
	out, err := bankingProc(t, "audit", "verify", "-dev", "-data-dir", dataDir, "-keysvc-dir", ks, "-pubkey", pub)
	if err != nil || !strings.Contains(out, "12 records (1..12)") {
		t.Fatalf("verify -dev: %v\n%s", err, out)
	}
	if out, err := bankingProc(t, "audit", "verify", "-dev", "-config", conf, "-pubkey", pub); err == nil || !strings.Contains(out, "not both") {
		t.Errorf("-dev with -config: %v\n%s", err, out)
	}
	if out, err := bankingProc(t, "audit", "verify", "-config", conf, "-store-url", devPGURL); err == nil || !strings.Contains(out, "dev mode only") {
		t.Errorf("-store-url with -config: %v\n%s", err, out)
	}
	// Records made today are within the retention: prune refuses, and the
	// trail still verifies whole.
	today := time.Now().UTC().Format(time.DateOnly)
	if out, err := bankingProc(t, "audit", "prune", "-config", conf, "-pubkey", pub, "-before", today); err == nil || !strings.Contains(out, "younger than the retention") {
		t.Errorf("prune of today's records: %v\n%s", err, out)
	}
	if out, err := bankingProc(t, "audit", "verify", "-config", conf, "-pubkey", pub); err != nil || !strings.Contains(out, "12 records (1..12)") {
		t.Errorf("verify after the refused prune: %v\n%s", err, out)
	}
	if out, err := bankingProc(t, "audit", "bogus", "-config", conf); err == nil || !strings.Contains(out, "unknown") {
		t.Errorf("an unknown audit command: %v\n%s", err, out)
	}
}
