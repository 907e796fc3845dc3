package main

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/staff"
)

const validYAML = `
listen: 0.0.0.0:9445
data_dir: /var/lib/keyward-bank
tls: {cert: /etc/keyward/bank/tls.pem, key: /etc/keyward/bank/tls-key.pem}
keysvc:
  url: https://keysvc.bank.internal:8443
  ca: /etc/keyward/bank/keysvc-ca.pem
  client_cert: /etc/keyward/bank/banking.pem
  client_key: /etc/keyward/bank/banking-key.pem
kms_name: banking
staff:
  - id: teller1
    name: Li Na
    roles: [enrol, deposit, phone-change]
    token_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
  - {id: supervisor1, name: "Wang Wei", roles: [unlock, limit-override, ledger-verify], token_sha256: 6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b, expires: 2027-06-30}
blacklist: {file: /etc/keyward/bank/blacklist.txt}
sms: {gateway_url: https://sms-relay.bank.internal/send}
ledger: {max_batch_size: 256, max_batch_delay: 3ms, account_prefix: "62888"}
http: {login_per_minute: 60}
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "banking.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigValid(t *testing.T) {
	c, err := loadConfig(writeConfig(t, validYAML))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:9445" || c.KeySvc.ClientKey != "/etc/keyward/bank/banking-key.pem" || c.KMSName != "banking" ||
		c.Ledger.MaxBatchSize != 256 || c.Ledger.MaxBatchDelay != 3*time.Millisecond || c.Ledger.AccountPrefix != "62888" ||
		c.HTTP.LoginPerMinute != 60 || c.Blacklist.File != "/etc/keyward/bank/blacklist.txt" {
		t.Fatalf("parsed %+v", c)
	}
	// Defaults.
	if c.Blacklist.Interval != 10*time.Second || c.KeySvc.Timeout != 30*time.Second || c.ShutdownTimeout != 30*time.Second {
		t.Fatalf("defaults %+v", c)
	}
}

func TestLoadConfigBearerDev(t *testing.T) {
	body := strings.Replace(validYAML, "  client_cert: /etc/keyward/bank/banking.pem\n  client_key: /etc/keyward/bank/banking-key.pem\n",
		"  bearer_token_file: /run/keyward/bank.token\n", 1)
	c, err := loadConfig(writeConfig(t, body))
	if err != nil {
		t.Fatal(err)
	}
	if c.KeySvc.BearerTokenFile != "/run/keyward/bank.token" || c.KeySvc.ClientCert != "" {
		t.Fatalf("parsed %+v", c.KeySvc)
	}
}

func TestLoadConfigUnknownField(t *testing.T) {
	for name, body := range map[string]string{
		"top level":  validYAML + "pin: 1234\n",
		"in section": strings.Replace(validYAML, "kms_name: banking", "kms_name: banking\nsms2: {}", 1),
		"nested":     strings.Replace(validYAML, "  ca: /etc", "  bearer_token: abc\n  ca: /etc", 1),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(writeConfig(t, body))
			if err == nil || !strings.Contains(err.Error(), ": unknown field; allowed here: ") {
				t.Fatalf("want an unknown-field error, got %v", err)
			}
		})
	}
}

func TestLoadConfigMissingFieldsNamed(t *testing.T) {
	_, err := loadConfig(writeConfig(t, "listen: 127.0.0.1:8445\n"))
	if err == nil {
		t.Fatal("accepted a config with nearly nothing")
	}
	for _, want := range []string{"data_dir is required", "tls.cert and tls.key are required", "keysvc.url is required",
		"keysvc.client_cert and keysvc.client_key are required", "kms_name is required", "blacklist.file is required", "sms.gateway_url is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}

func TestLoadConfigRefusals(t *testing.T) {
	for _, c := range []struct{ name, old, new, want string }{
		{"plain http keysvc", "url: https://keysvc", "url: http://keysvc", "keysvc.url is required and must be https://"},
		{"half a client pair", "  client_key: /etc/keyward/bank/banking-key.pem\n", "", "keysvc.client_cert and keysvc.client_key go together"},
		{"pair and bearer", "kms_name:", "  bearer_token_file: /x\nkms_name:", "either client_cert/client_key (mutual TLS) or bearer_token_file"},
		{"short staff hash", "token_sha256: 5e88", "token_sha256: 5e", "staff[0].token_sha256 must be 64 hex digits"},
		{"unknown role", "roles: [enrol, deposit, phone-change]", "roles: [enrol, admin]", `staff[0] (teller1): unknown role "admin"`},
		{"no roles", "    roles: [enrol, deposit, phone-change]\n", "", "staff[0] (teller1): roles must list at least one of"},
		{"same id twice", "id: supervisor1", "id: teller1", "staff[1] (teller1): id repeats staff[0]"},
		{"same token twice", "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b", "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8", "token_sha256 is the same as staff[0]'s"},
		{"bad expiry", "expires: 2027-06-30", "expires: next June", "staff[1].expires must be a date"},
		{"bad staff id", "id: teller1", "id: Teller 1", "staff[0] (Teller 1): id must be"},
		{"bad listen", "listen: 0.0.0.0:9445", "listen: nowhere", "listen must be host:port"},
		{"bad prefix", `account_prefix: "62888"`, `account_prefix: "62a"`, "ledger.account_prefix must be 1 to 12 digits"},
		{"bad kms name", "kms_name: banking", "kms_name: \"bank ing\"", "kms_name is required"},
		{"huge body limit", "http: {login_per_minute: 60}", "http: {body_limit: 99999999}", "http.body_limit must be between"},
		{"captcha off", "http: {login_per_minute: 60}", "http: {login_per_minute: 60}\nlogin: {captcha_after: -1}", "the captcha cannot be turned off"},
		{"captcha late", "http: {login_per_minute: 60}", "http: {login_per_minute: 60}\nlogin: {captcha_after: 21}", "login.captcha_after must be 1 to 20"},
		{"tiny interval", "blacklist: {file: /etc/keyward/bank/blacklist.txt}", "blacklist: {file: /x, interval: 1ms}", "blacklist.interval must be at least 100ms"},
		{"no tls.key and nothing sealed", "tls: {cert: /etc/keyward/bank/tls.pem, key: /etc/keyward/bank/tls-key.pem}", "tls: {cert: /etc/keyward/bank/tls.pem}", "tls.cert and tls.key are required"},
		{"secrets without a way in", "kms_name:", "secrets: {file: /s.json}\nkms_name:", "secrets.file needs tpm"},
		{"passphrase without file", "kms_name:", "secrets: {passphrase: prompt}\nkms_name:", "secrets.passphrase is set without secrets.file"},
		{"passphrase as a value", "kms_name:", "tpm: /dev/tpmrm0\nsecrets: {file: /s.json, passphrase: hunter2hunter2}\nkms_name:", "secrets.passphrase: token: PIN source"},
		{"metrics without a port", "kms_name:", "metrics: {listen: 127.0.0.1}\nkms_name:", "metrics.listen must be host:port"},
		{"metrics on the API listener", "kms_name:", "metrics: {listen: 0.0.0.0:9445}\nkms_name:", "metrics.listen must be a listener of its own"},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := strings.Replace(validYAML, c.old, c.new, 1)
			if body == validYAML {
				t.Fatalf("test edit %q did not apply", c.old)
			}
			_, err := loadConfig(writeConfig(t, body))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want %q, got %v", c.want, err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("a passphrase given as a value is echoed: %v", err)
			}
		})
	}
}

func TestLoadConfigEmptyFile(t *testing.T) {
	if _, err := loadConfig(writeConfig(t, "")); err == nil || !strings.Contains(err.Error(), "the file is empty") {
		t.Fatalf("empty file: %v", err)
	}
}

func TestReadSecretFileRefusesOpenModes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte("abc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readSecretFile(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("0644 token file: %v", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := readSecretFile(p); err != nil || s != "abc" {
		t.Fatalf("0600 token file: %q %v", s, err)
	}
}

// With a secrets file the TLS key and the keysvc credential may be left
// out: they are sealed (openCredentials checks each comes from one place).
func TestLoadConfigSealed(t *testing.T) {
	body := strings.NewReplacer(
		"tls: {cert: /etc/keyward/bank/tls.pem, key: /etc/keyward/bank/tls-key.pem}", "tls: {cert: /etc/keyward/bank/tls.pem}",
		"  client_key: /etc/keyward/bank/banking-key.pem\n", "",
		"kms_name:", "tpm: /dev/tpmrm0\nsecrets: {file: /var/lib/keyward-bank/secrets.json}\nkms_name:").Replace(validYAML)
	c, err := loadConfig(writeConfig(t, body))
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if c.TLS.Key != "" || c.KeySvc.ClientKey != "" || c.Secrets.File == "" || c.TPM != "/dev/tpmrm0" {
		t.Fatalf("parsed %+v", c)
	}
}

// keysvc.urls: the nodes of a keysvc cluster (issue 16), instead of url.
func TestLoadConfigKeysvcURLs(t *testing.T) {
	const one = "  url: https://keysvc.bank.internal:8443\n"
	body := strings.Replace(validYAML, one, "  urls: [https://keysvc-a.bank.internal:8443, \"https://keysvc-b.bank.internal:8443/\",\n    https://10.0.0.3:8443]\n", 1)
	c, err := loadConfig(writeConfig(t, body))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"https://keysvc-a.bank.internal:8443", "https://keysvc-b.bank.internal:8443/", "https://10.0.0.3:8443"}
	if got := c.KeySvc.endpoints(); !slices.Equal(got, want) || c.KeySvc.URL != "" {
		t.Fatalf("endpoints %q, want %q", got, want)
	}
	c, err = loadConfig(writeConfig(t, validYAML))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.KeySvc.endpoints(); !slices.Equal(got, []string{"https://keysvc.bank.internal:8443"}) {
		t.Fatalf("endpoints of url alone: %q", got)
	}

	for _, tc := range []struct{ name, urls, want string }{
		{"url and urls", one + "  urls: [https://a:1, https://b:1]\n", "keysvc: give either url (one keysvc) or urls (the nodes of a keysvc cluster), not both"},
		{"plain http", "  urls: [https://a:1, http://b:1]\n", "keysvc.urls[1] must be https://host:port"},
		{"no host", "  urls: [\"https://\"]\n", "keysvc.urls[0] must be https://host:port"},
		{"credentials", "  urls: [https://a:1, \"https://bank:hunter2@b:1\"]\n", "keysvc.urls[1] must be https://host:port"},
		{"query", "  urls: [\"https://a:1/?k=hunter2\"]\n", "keysvc.urls[0] must be https://host:port"},
		{"repeat", "  urls: [https://a:1, https://b:1, \"https://a:1/\"]\n", "keysvc.urls[2] repeats keysvc.urls[0]"},
		{"empty list", "  urls: []\n", "keysvc.url is required and must be https://host:port (or keysvc.urls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(writeConfig(t, strings.Replace(validYAML, one, tc.urls, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "b:1") {
				t.Errorf("the error repeats a value: %v", err)
			}
		})
	}
}

// TestLoadConfigStore: store.backend postgres needs a URL naming a database,
// with no password in it; several hosts need target_session_attrs; bbolt
// stays the default and needs data_dir. No error repeats the URL.
func TestLoadConfigStore(t *testing.T) {
	c, err := loadConfig(writeConfig(t, validYAML))
	if err != nil || c.Store.Backend != "bbolt" {
		t.Fatalf("default backend: %+v, %v", c.Store, err)
	}
	pg := strings.Replace(validYAML, "data_dir: /var/lib/keyward-bank\n",
		"store:\n  backend: postgres\n  postgres: {url: \"postgres://banking@db-a:5432,db-b:5433/keyward?target_session_attrs=read-write\", password_file: /run/keyward/pg.pw}\n", 1)
	c, err = loadConfig(writeConfig(t, pg))
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Postgres.MaxConns != 32 || c.Store.Postgres.TxTimeout != 5*time.Second || c.Store.Postgres.PasswordFile != "/run/keyward/pg.pw" {
		t.Fatalf("postgres defaults: %+v", c.Store.Postgres)
	}
	for _, r := range []struct{ name, url, want string }{
		{"password in URL", "postgres://banking:s3cretPW@db-a/keyward", "must not hold a password"},
		{"password parameter", "postgres://banking@db-a/keyward?password=s3cretPW", "must not hold a password"},
		{"no database", "postgres://banking@db-a:5432", "must name the database"},
		{"several hosts, any session", "postgres://banking@db-a,db-b/keyward", "target_session_attrs=read-write"},
		{"not postgres", "mysql://banking@db-a/keyward", "must be postgres://"},
	} {
		t.Run(r.name, func(t *testing.T) {
			body := strings.Replace(validYAML, "data_dir: /var/lib/keyward-bank\n",
				"store:\n  backend: postgres\n  postgres: {url: \""+r.url+"\"}\n", 1)
			_, err := loadConfig(writeConfig(t, body))
			if err == nil || !strings.Contains(err.Error(), r.want) {
				t.Fatalf("want %q, got %v", r.want, err)
			}
			if strings.Contains(err.Error(), "s3cretPW") || strings.Contains(err.Error(), "db-a") {
				t.Fatalf("the error repeats the URL: %v", err)
			}
		})
	}
	for _, r := range []struct{ name, edit, want string }{
		{"unknown backend", "store: {backend: sqlite}\n", "store.backend must be bbolt"},
		{"postgres section on bbolt", "store: {postgres: {url: \"postgres://b@h/k\"}}\ndata_dir: /x\n", "store.postgres is set but store.backend is bbolt"},
		{"no url", "store: {backend: postgres}\n", "store.postgres.url: required"},
	} {
		t.Run(r.name, func(t *testing.T) {
			body := strings.Replace(validYAML, "data_dir: /var/lib/keyward-bank\n", r.edit, 1)
			_, err := loadConfig(writeConfig(t, body))
			if err == nil || !strings.Contains(err.Error(), r.want) {
				t.Fatalf("want %q, got %v", r.want, err)
			}
		})
	}
}

func TestLoadConfigStaff(t *testing.T) {
	c, err := loadConfig(writeConfig(t, validYAML))
	if err != nil {
		t.Fatal(err)
	}
	if c.staff == nil || c.staff.Len() != 2 {
		t.Fatalf("staff registry %+v", c.Staff)
	}
	ms := c.staff.Members()
	if ms[0].ID != "teller1" || ms[0].Name != "Li Na" || !ms[0].Can(staff.RolePhoneChange) || ms[0].Can(staff.RoleUnlock) || !ms[0].Expires.IsZero() {
		t.Fatalf("teller1: %+v", ms[0])
	}
	if ms[1].ID != "supervisor1" || !ms[1].Can(staff.RoleUnlock) || !ms[1].Expires.Equal(time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("supervisor1: %+v", ms[1])
	}
	// No staff list: no staff API, and no error.
	i := strings.Index(validYAML, "staff:")
	j := strings.Index(validYAML, "blacklist:")
	c, err = loadConfig(writeConfig(t, validYAML[:i]+validYAML[j:]))
	if err != nil || c.staff != nil {
		t.Fatalf("without staff: %v %v", c, err)
	}
}

// TestLoadConfigRefusesSharedStaffToken: the old shared token is refused
// with the form that replaces it, and its value is not repeated.
func TestLoadConfigRefusesSharedStaffToken(t *testing.T) {
	const old = "staff_token_sha256: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n"
	_, err := loadConfig(writeConfig(t, validYAML+old))
	if err == nil {
		t.Fatal("accepted staff_token_sha256")
	}
	for _, want := range []string{"staff_token_sha256 is no longer accepted", "staff:", "- {id: teller1", "roles: [enrol, deposit, phone-change]", "banking staff-token -out FILE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "2cf24dba") {
		t.Errorf("the refusal repeats the old digest: %v", err)
	}
}

// TestStaffTokenCommand: the token goes to the file (0600) only; stdout
// has its token_sha256 line, which a staff entry accepts and whose
// registry knows the token; an existing file is never overwritten.
func TestStaffTokenCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "teller9.token")
	var out strings.Builder
	if err := staffTokenCmd([]string{"-out", path}, &out); err != nil {
		t.Fatal(err)
	}
	tok, err := readSecretFile(path)
	if err != nil || !staff.ValidTokenFormat(tok) {
		t.Fatalf("token file: %v", err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", st.Mode().Perm())
	}
	line := strings.TrimSpace(out.String())
	if strings.Contains(out.String(), tok) || !strings.HasPrefix(line, "token_sha256: ") || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("stdout %q: want only the token_sha256 line", out.String())
	}
	body := strings.Replace(validYAML, "token_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8", line, 1)
	c, err := loadConfig(writeConfig(t, body))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := c.staff.Authenticate(tok); err != nil || m.ID != "teller1" {
		t.Fatalf("the printed line does not admit the token: %+v %v", m, err)
	}
	before, _ := os.ReadFile(path)
	if err := staffTokenCmd([]string{"-out", path}, &out); !errors.Is(err, os.ErrExist) {
		t.Fatalf("over an existing file: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("the existing token file was changed")
	}
	if err := staffTokenCmd(nil, &out); err == nil || !strings.Contains(err.Error(), "-out FILE is required") {
		t.Fatalf("without -out: %v", err)
	}
}

// TestMetricsListen: metrics.listen is off unless set; a valid one loads;
// dev mode puts it on loopback at the API port + 1001.
func TestMetricsListen(t *testing.T) {
	c, err := loadConfig(writeConfig(t, validYAML))
	if err != nil || c.Metrics.Listen != "" {
		t.Fatalf("default metrics.listen %q (%v), want off", c.Metrics.Listen, err)
	}
	c, err = loadConfig(writeConfig(t, strings.Replace(validYAML, "kms_name:", "metrics: {listen: 127.0.0.1:9446}\nkms_name:", 1)))
	if err != nil || c.Metrics.Listen != "127.0.0.1:9446" {
		t.Fatalf("metrics.listen %v (%v)", c, err)
	}
	for in, want := range map[string]string{"127.0.0.1:8445": "127.0.0.1:9446", "0.0.0.0:8446": "127.0.0.1:9447", "127.0.0.1:0": "", "127.0.0.1:65000": "", "nowhere": ""} {
		if got := devMetricsListen(in); got != want {
			t.Errorf("devMetricsListen(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestMetricsListenFlag: -metrics-listen is checked like metrics.listen
// before anything is opened.
func TestMetricsListenFlag(t *testing.T) {
	path := writeConfig(t, validYAML)
	for flagValue, want := range map[string]string{
		"0.0.0.0:9445": "metrics.listen must be a listener of its own",
		"nowhere":      "metrics.listen must be host:port",
	} {
		err := serve(slog.New(slog.NewTextHandler(io.Discard, nil)), []string{"-config", path, "-metrics-listen", flagValue})
		if err == nil || !strings.Contains(err.Error(), "-metrics-listen") || !strings.Contains(err.Error(), want) {
			t.Errorf("-metrics-listen %s: %v, want %q", flagValue, err, want)
		}
	}
}
