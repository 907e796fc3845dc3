package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keyward/keyward/banking"
	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/cmd/internal/devtls"
	"github.com/keyward/keyward/cmd/internal/secretfile"
	"github.com/keyward/keyward/keysvc/client"
	"github.com/keyward/keyward/keysvc/wire"
)

// devClientName is the admin client keysvc's dev mode knows its dev token by.
const devClientName = "dev"

// devInfo is what dev mode prints so a developer can call the bank.
type devInfo struct {
	dataDir, caPath, outboxPath, keysvcDir string
	tellerToken, supervisorToken           string // the dev staff's personal tokens
	storeURL                               string // -store-url, "" for bank.db
	metricsListen                          string // metrics.listen (devMetricsListen)
}

// errStoreURLWithConfig refuses -store-url beside -config.
var errStoreURLWithConfig = errors.New("banking: -store-url is for dev mode only; with -config the store section of the YAML file says where the records are (store.backend: postgres, store.postgres.url)")

// devOnPostgres points a dev configuration at the PostgreSQL database
// storeURL (-store-url) instead of bank.db, and gives this node its own SMS
// outbox, named after its listen port: sms-outbox-<port>.jsonl. A
// DevOutbox rewrites its file whole from its own memory, so two nodes on
// one file would each erase the other's codes.
func devOnPostgres(c *Config, dev *devInfo, storeURL string) error {
	if dev == nil {
		return errStoreURLWithConfig
	}
	c.Store.Backend, c.Store.Postgres.URL = "postgres", storeURL
	if err := c.validate(); err != nil { // the URL (no password in argv) and the listen address
		return fmt.Errorf("-store-url: %w", err)
	}
	_, port, _ := net.SplitHostPort(c.Listen)
	outboxPath := filepath.Join(dev.dataDir, "sms-outbox-"+port+".jsonl")
	ob, err := otp.OpenDevOutbox(outboxPath)
	if err != nil {
		return err
	}
	ob.Close()
	c.SMS.devOutbox, dev.outboxPath, dev.storeURL = outboxPath, outboxPath, storeURL
	return nil
}

// devConfig builds the dev configuration: keysvc's dev mode under
// keysvcDir (its admin token and CA), and the bank's own files under
// dataDir — a dev CA and server certificate, two staff members' tokens
// (ensureDevStaff), an empty
// screening list and the SMS outbox, each created once. Not for
// production.
func devConfig(dataDir, keysvcDir, keysvcURL string) (*Config, *devInfo, error) {
	tokenPath, caPath := filepath.Join(keysvcDir, "dev-admin.token"), filepath.Join(keysvcDir, "tls", "ca.pem")
	for _, p := range []string{tokenPath, caPath} {
		if _, err := os.Stat(p); err != nil {
			return nil, nil, fmt.Errorf("dev mode needs keysvc's dev mode (make run) with its data in %s: %w; start it first or pass -keysvc-dir, or run with -config", keysvcDir, err)
		}
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, nil, err
	}
	// Several dev nodes may share dataDir (-store-url): one makes the
	// files at a time, and the next finds them whole.
	unlock, err := lockFile(filepath.Join(dataDir, ".dev-setup.lock"))
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	tlsDir := filepath.Join(dataDir, "tls")
	if err := ensureDevTLS(tlsDir); err != nil {
		return nil, nil, err
	}
	staffDir := filepath.Join(dataDir, "staff")
	members, err := ensureDevStaff(staffDir)
	if err != nil {
		return nil, nil, err
	}
	listPath := filepath.Join(dataDir, "blacklist.txt")
	if err := ensureFile(listPath, "# Screening list (banking/blacklist format): account:<number> and name:<name>\n# lines, then end:<count of those lines>.\nend:0\n"); err != nil {
		return nil, nil, err
	}
	outboxPath := filepath.Join(dataDir, "sms-outbox.jsonl")
	ob, err := otp.OpenDevOutbox(outboxPath) // creates it 0600, refuses a wider one
	if err != nil {
		return nil, nil, err
	}
	ob.Close()
	c := &Config{DataDir: dataDir, KMSName: devClientName, Staff: members}
	c.TLS.Cert, c.TLS.Key = filepath.Join(tlsDir, "server.pem"), filepath.Join(tlsDir, "server-key.pem")
	c.KeySvc.URL, c.KeySvc.CA, c.KeySvc.BearerTokenFile = keysvcURL, caPath, tokenPath
	c.Blacklist.File, c.Blacklist.Interval = listPath, 2*time.Second
	c.SMS.devOutbox = outboxPath // the dev wiring alone turns the outbox on
	c.defaults()
	return c, &devInfo{dataDir: dataDir, caPath: filepath.Join(tlsDir, "ca.pem"), tellerToken: filepath.Join(staffDir, "teller1.token"),
		supervisorToken: filepath.Join(staffDir, "supervisor1.token"), outboxPath: outboxPath, keysvcDir: keysvcDir}, c.validate()
}

// devMetricsListen is dev mode's metrics and readiness listener: loopback,
// port = the API's port + 1001 (8445 → 9446, 8446 → 9447), so dev nodes
// side by side (make run-banking-pg) each get their own; "" when the API
// port leaves no room.
func devMetricsListen(apiListen string) string {
	_, port, err := net.SplitHostPort(apiListen)
	if err != nil {
		return ""
	}
	n, err := strconv.Atoi(port)
	if err != nil || n == 0 || n+1001 > 65535 {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(n+1001))
}

// opsLine is what print says of the operators' listener.
func (d *devInfo) opsLine() string {
	if d.metricsListen == "" {
		return "  Metrics and readiness: off (-metrics-listen host:port turns them on)\n"
	}
	return fmt.Sprintf("  curl http://%[1]s/metrics    curl http://%[1]s/readyz      (operators' listener, plain HTTP)\n", d.metricsListen)
}

func (d *devInfo) print(addr string) {
	if d.storeURL != "" {
		fmt.Printf("\nRecords in PostgreSQL: %s (files below are shared with the other dev nodes on it)", d.storeURL)
	}
	fmt.Printf(`
Keyward banking (dev mode) on https://%[1]s — data in %[2]s, keys in keysvc (client "dev")
Staff tokens: teller %[4]s, supervisor %[8]s   SMS codes: %[5]s   CA: %[3]s

  make bankcli        # bin/bankcli, the customer and teller client (go doc ./cmd/bankcli)
  bin/bankcli enrol -login alice -name "Alice Wang" -phone 13800001111 -id-card 11010519491231002X \
      -card 6222020200112233446 -anti-phishing 蓝色海豚 -cloud-key -staff-token-file %[4]s
  bin/bankcli login -login alice -device laptop-1 -os "Debian 12"    # the SMS code is printed here
  bin/bankcli accounts

  curl --cacert %[3]s https://%[1]s/v1/login/key
%[7]s  Cloud-key confirmations are shown by keysvc (its terminal, %[6]s/holder-notices.jsonl).
  Stop with Ctrl-C.

`, addr, d.dataDir, d.caPath, d.tellerToken, d.outboxPath, d.keysvcDir, d.opsLine(), d.supervisorToken)
}

// consoleSMS is dev mode's SMS gateway: the outbox file (each code kept
// only while it lives, see otp.Keeper), and the text on the console, as
// keysvc's dev mode prints holder links. Never in production: the text
// holds the code.
type consoleSMS struct{ *otp.DevOutbox }

var _ otp.Keeper = consoleSMS{}

func (c consoleSMS) Send(ctx context.Context, phone, text string) error {
	return c.SendUntil(ctx, phone, text, time.Now().Add(otp.MaxTTL))
}

func (c consoleSMS) SendUntil(ctx context.Context, phone, text string, expires time.Time) error {
	if err := c.DevOutbox.SendUntil(ctx, phone, text, expires); err != nil {
		return err
	}
	fmt.Printf("\n[dev] SMS to %s: %s\n\n", phone, text)
	return nil
}

// smsGateway is the SMS gateway cfg asks for: dev mode's outbox (with the
// console) when the dev wiring turned it on, else the provider over HTTPS;
// the production path never opens a file of codes.
func smsGateway(cfg *Config) (otp.Gateway, error) {
	if cfg.SMS.devOutbox != "" {
		ob, err := otp.OpenDevOutbox(cfg.SMS.devOutbox)
		if err != nil {
			return nil, fmt.Errorf("dev SMS outbox: %w", err)
		}
		return consoleSMS{ob}, nil
	}
	var token string
	if cfg.SMS.TokenFile != "" {
		t, err := readSecretFile(cfg.SMS.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("sms.token_file: %w", err)
		}
		token = strings.TrimSpace(string(t))
	}
	g, err := otp.NewHTTPGateway(cfg.SMS.GatewayURL, token, nil)
	if err != nil {
		return nil, fmt.Errorf("sms.gateway_url: %w", err)
	}
	return g, nil
}

// bankKey is one of the bank's keys and the operations banking needs on it.
type bankKey struct {
	name       string
	purpose    wire.Purpose
	alg        wire.Algorithm
	protection wire.Protection
	ops        []wire.Op
}

// bankKeys are the keys listed in package banking's doc.
var bankKeys = []bankKey{
	{banking.KeyLogin, wire.PurposeEncrypt, wire.AlgSM2, wire.ProtectionWrapped, []wire.Op{wire.OpDecrypt, wire.OpPublic}},
	{banking.KeyPwMAC, wire.PurposeMAC, wire.AlgHMACSM3, wire.ProtectionWrapped, []wire.Op{wire.OpMAC}},
	{banking.KeyPII, wire.PurposeEncrypt, wire.AlgSM4, wire.ProtectionWrapped, []wire.Op{wire.OpDataKey}},
	{banking.KeyReceipt, wire.PurposeSign, wire.AlgECP256, wire.ProtectionHSM, []wire.Op{wire.OpSign, wire.OpVerify, wire.OpPublic}},
	{banking.KeyAudit, wire.PurposeSign, wire.AlgECP256, wire.ProtectionHSM, []wire.Op{wire.OpSign, wire.OpPublic}},
}

// provisionBankKeys creates the bank's keys in keysvc when missing,
// granting their operations to clientName; an existing key must already
// be what banking expects (it is never changed here).
func provisionBankKeys(ctx context.Context, kc *client.Client, clientName string, log *slog.Logger) error {
	for _, k := range bankKeys {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := provisionKey(cctx, kc, clientName, k, log)
		cancel()
		if err != nil {
			return fmt.Errorf("dev mode: key %s: %w", k.name, err)
		}
	}
	return nil
}

func provisionKey(ctx context.Context, kc *client.Client, clientName string, k bankKey, log *slog.Logger) error {
	v, err := kc.GetKey(ctx, k.name)
	if errors.Is(err, wire.ErrKeyNotFound) {
		_, err = kc.CreateKey(ctx, wire.CreateKeyRequest{Name: k.name, Purpose: k.purpose, Algorithm: k.alg, Protection: k.protection,
			Policy: wire.Policy{Grants: []wire.Grant{{Client: clientName, Ops: k.ops}}}})
		if err == nil {
			log.Info("dev mode: created bank key in keysvc", "key", k.name, "algorithm", k.alg)
			return nil
		}
		if !errors.Is(err, wire.ErrKeyExists) {
			return err
		}
		// Another dev node created it since GetKey: check it as found.
		v, err = kc.GetKey(ctx, k.name)
	}
	switch {
	case err != nil:
		return fmt.Errorf("is keysvc's dev mode running? %w", err)
	case v.Purpose != k.purpose || v.Algorithm != k.alg || v.Protection != k.protection:
		return fmt.Errorf("exists as %s/%s/%s; banking needs %s/%s/%s", v.Purpose, v.Algorithm, v.Protection, k.purpose, k.alg, k.protection)
	}
	for _, op := range k.ops {
		if !v.Policy.Allows(clientName, op) {
			return fmt.Errorf("exists but does not grant %q to client %q", op, clientName)
		}
	}
	return nil
}

// ensureSecretFile: see secretfile.Ensure.
var ensureSecretFile = secretfile.Ensure

// lockFile takes an exclusive flock(2) on path (created 0600), waiting for
// another process that holds it; the returned func releases it.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing the descriptor releases the lock
}

// ensureFile creates path (0600) with content unless it exists.
func ensureFile(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	return errors.Join(err, f.Close())
}

// ensureDevTLS creates, once, a dev CA and a server certificate for
// 127.0.0.1, ::1 and localhost in dir. keysvc's dev mode keeps no CA key,
// so the bank has its own dev CA.
func ensureDevTLS(dir string) error { return devtls.Ensure(dir, "Keyward bank dev CA", "banking") }
