package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const cfgTokenHash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// writeConfig writes text to a fresh config file and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keysvc.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigFull(t *testing.T) {
	p := writeConfig(t, `
listen: 0.0.0.0:9443
data_dir: /var/lib/keyward
tls:
  cert: /etc/keyward/server.pem
  key: /etc/keyward/server-key.pem
  client_ca: /etc/keyward/clients.pem
token:
  kind: usb-key
  uri: pkcs11:token=bank?pin-source=file:/run/keyward/pin
  module: /usr/lib/softhsm/libsofthsm2.so
  max_sessions: 8
  wait_timeout: 2s
pin_guard:
  limit: 3
destroy:
  default_delay: 48h
  min_delay: 24h
scheduler_interval: 30s
clients:
  - name: payments
    token_sha256: `+cfgTokenHash+`
  - name: ops
    admin: true
`)
	c, err := loadConfig(p)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	checks := []struct {
		field     string
		got, want any
	}{
		{"listen", c.Listen, "0.0.0.0:9443"},
		{"data_dir", c.DataDir, "/var/lib/keyward"},
		{"tls.cert", c.TLS.Cert, "/etc/keyward/server.pem"},
		{"tls.key", c.TLS.Key, "/etc/keyward/server-key.pem"},
		{"tls.client_ca", c.TLS.ClientCA, "/etc/keyward/clients.pem"},
		{"token.kind", c.Token.Kind, "usb-key"},
		{"token.uri", c.Token.URI, "pkcs11:token=bank?pin-source=file:/run/keyward/pin"},
		{"token.module", c.Token.Module, "/usr/lib/softhsm/libsofthsm2.so"},
		{"token.max_sessions", c.Token.MaxSessions, 8},
		{"token.wait_timeout", c.Token.WaitTimeout, 2 * time.Second},
		{"pin_guard.limit", c.PINGuard.Limit, 3},
		{"destroy.default_delay", c.Destroy.DefaultDelay, 48 * time.Hour},
		{"destroy.min_delay", c.Destroy.MinDelay, 24 * time.Hour},
		{"scheduler_interval", c.SchedulerInterval, 30 * time.Second},
		{"len(clients)", len(c.Clients), 2},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.field, ch.got, ch.want)
		}
	}
	if len(c.Clients) == 2 {
		if cl := c.Clients[0]; cl.Name != "payments" || cl.Admin || cl.TokenSHA256 != cfgTokenHash {
			t.Errorf("clients[0] = %+v", cl)
		}
		if cl := c.Clients[1]; cl.Name != "ops" || !cl.Admin || cl.TokenSHA256 != "" {
			t.Errorf("clients[1] = %+v", cl)
		}
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	p := writeConfig(t, `
data_dir: /d
tls: {cert: c.pem, key: k.pem}
token: {uri: "pkcs11:token=t"}
clients: [{name: a}]
`)
	c, err := loadConfig(p)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	checks := []struct {
		field     string
		got, want any
	}{
		{"listen", c.Listen, "127.0.0.1:8443"},
		{"token.kind", c.Token.Kind, "hsm"},
		{"scheduler_interval", c.SchedulerInterval, time.Minute},
		{"pin_guard.limit", c.PINGuard.Limit, 0}, // the guard's own default applies
		{"destroy.default_delay", c.Destroy.DefaultDelay, time.Duration(0)},
		{"metrics.listen (off)", c.Metrics.Listen, ""},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.field, ch.got, ch.want)
		}
	}
}

func TestLoadConfigRefusesUnknownFields(t *testing.T) {
	cases := []struct {
		name, yaml, field string
	}{
		// strictyaml's messages: the line, the YAML path and the fields allowed there.
		{"top level", "data_dir: /d\nlistn: x\n", "line 2: listn: unknown field; allowed here: listen, data_dir,"},
		{"nested", "tls:\n  cert: c\n  certificate: x\n", "line 3: tls.certificate: unknown field; allowed here: cert, key"},
		{"in a list", "clients:\n  - name: a\n    admn: true\n", "line 3: clients[0].admn: unknown field; allowed here: name, admin,"},
		{"misplaced", "token:\n  limit: 3\n", "line 2: token.limit: unknown field; allowed here: kind, uri,"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeConfig(t, c.yaml)
			_, err := loadConfig(p)
			if err == nil {
				t.Fatal("loadConfig accepted an unknown field")
			}
			if !strings.HasPrefix(err.Error(), "config "+p+": ") || !strings.Contains(err.Error(), c.field) {
				t.Errorf("err = %q, want the file and %q", err, c.field)
			}
		})
	}
}

func TestLoadConfigReadErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	if _, err := loadConfig(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want fs.ErrNotExist", err)
	}
	for name, text := range map[string]string{
		"bad syntax":   "data_dir: [unclosed\n",
		"wrong type":   "pin_guard:\n  limit: lots\n",
		"bad duration": "scheduler_interval: soon\n",
	} {
		p := writeConfig(t, text)
		if _, err := loadConfig(p); err == nil || !strings.HasPrefix(err.Error(), "config "+p+": ") {
			t.Errorf("%s: err = %v, want a decode error naming the file", name, err)
		}
	}
}

// validConfigMap is a config loadConfig accepts, as YAML data, so cases
// can change one thing.
func validConfigMap() map[string]any {
	return map[string]any{
		"data_dir": "/var/lib/keyward",
		"tls":      map[string]any{"cert": "s.pem", "key": "k.pem"},
		"token":    map[string]any{"kind": "hsm", "uri": "pkcs11:token=bank"},
		"pin_guard": map[string]any{
			"limit": 6,
		},
		"clients": []any{
			map[string]any{"name": "payments", "token_sha256": cfgTokenHash},
			map[string]any{"name": "ops", "admin": true},
		},
	}
}

func TestConfigValidateNamesPath(t *testing.T) {
	sub := func(m map[string]any, k string) map[string]any { return m[k].(map[string]any) }
	client := func(m map[string]any, i int) map[string]any { return m["clients"].([]any)[i].(map[string]any) }
	cases := []struct {
		name   string
		mutate func(m map[string]any)
		want   []string // prefixes of the joined errors, in order; nil: valid
	}{
		{"valid", func(map[string]any) {}, nil},
		{"usb-key", func(m map[string]any) { sub(m, "token")["kind"] = "usb-key" }, nil},
		{"limit 1", func(m map[string]any) { sub(m, "pin_guard")["limit"] = 1 }, nil},
		{"limit 0 (default)", func(m map[string]any) { sub(m, "pin_guard")["limit"] = 0 }, nil},
		{"no token hash (certificate client)", func(m map[string]any) { delete(client(m, 0), "token_sha256") }, nil},

		{"metrics on loopback", func(m map[string]any) { m["metrics"] = map[string]any{"listen": "127.0.0.1:9464"} }, nil},
		{"metrics without a port", func(m map[string]any) { m["metrics"] = map[string]any{"listen": "127.0.0.1"} }, []string{"metrics.listen must be host:port"}},
		{"metrics on the API listener", func(m map[string]any) {
			m["listen"] = "127.0.0.1:8443"
			m["metrics"] = map[string]any{"listen": "127.0.0.1:8443"}
		}, []string{"metrics.listen must be a listener of its own"}},
		{"no data_dir", func(m map[string]any) { delete(m, "data_dir") }, []string{"data_dir is required"}},
		{"no tls.cert", func(m map[string]any) { delete(sub(m, "tls"), "cert") }, []string{"tls.cert and tls.key are required"}},
		{"no tls.key", func(m map[string]any) { delete(sub(m, "tls"), "key") }, []string{"tls.cert and tls.key are required"}},
		{"no tls", func(m map[string]any) { delete(m, "tls") }, []string{"tls.cert and tls.key are required"}},
		{"bad token.kind", func(m map[string]any) { sub(m, "token")["kind"] = "tpm" }, []string{"token.kind must be hsm or usb-key"}},
		{"upper-case token.kind", func(m map[string]any) { sub(m, "token")["kind"] = "HSM" }, []string{"token.kind must be hsm or usb-key"}},
		{"no token.uri", func(m map[string]any) { delete(sub(m, "token"), "uri") }, []string{"token.uri is required"}},
		{"pin_guard.limit 7", func(m map[string]any) { sub(m, "pin_guard")["limit"] = 7 }, []string{"pin_guard.limit must be between 1 and 6"}},
		{"pin_guard.limit -1", func(m map[string]any) { sub(m, "pin_guard")["limit"] = -1 }, []string{"pin_guard.limit must be between 1 and 6"}},
		{"no clients", func(m map[string]any) { delete(m, "clients") }, []string{"clients: at least one client is required"}},
		{"empty clients", func(m map[string]any) { m["clients"] = []any{} }, []string{"clients: at least one client is required"}},
		{"clients[0].name", func(m map[string]any) { delete(client(m, 0), "name") }, []string{"clients[0].name is required"}},
		{"clients[1].name", func(m map[string]any) { client(m, 1)["name"] = "" }, []string{"clients[1].name is required"}},
		{"clients[0].token_sha256 short", func(m map[string]any) { client(m, 0)["token_sha256"] = cfgTokenHash[:63] }, []string{"clients[0].token_sha256 must be 64 hex digits"}},
		{"clients[0].token_sha256 long", func(m map[string]any) { client(m, 0)["token_sha256"] = cfgTokenHash + "0" }, []string{"clients[0].token_sha256 must be 64 hex digits"}},
		{"confirm with webhook", func(m map[string]any) {
			m["confirm"] = map[string]any{"listen": "0.0.0.0:8444", "public_url": "https://confirm.bank.example", "timeout": "90s", "notify": map[string]any{"webhook": "https://push.bank.example/kw"}}
		}, nil},
		{"confirm without public_url", func(m map[string]any) {
			m["confirm"] = map[string]any{"listen": "0.0.0.0:8444", "notify": map[string]any{"file": "/tmp/n"}}
		}, []string{"confirm.public_url is required"}},
		{"confirm webhook over http", func(m map[string]any) {
			m["confirm"] = map[string]any{"listen": ":8444", "public_url": "https://c", "notify": map[string]any{"webhook": "http://push"}}
		}, []string{"confirm.notify.webhook must be an https:// URL"}},
		{"confirm with two notifiers", func(m map[string]any) {
			m["confirm"] = map[string]any{"listen": ":8444", "public_url": "https://c", "notify": map[string]any{"webhook": "https://push", "file": "/tmp/n"}}
		}, []string{"confirm.notify needs exactly one of webhook"}},
		{"confirm timeout 1s", func(m map[string]any) {
			m["confirm"] = map[string]any{"listen": ":8444", "public_url": "https://c", "timeout": "1s", "notify": map[string]any{"file": "/tmp/n"}}
		}, []string{"confirm.timeout must be between 10s and 10m"}},
		{"confirm enrol_per_minute negative", func(m map[string]any) {
			m["confirm"] = map[string]any{"listen": ":8444", "public_url": "https://c", "enrol_per_minute": -1, "notify": map[string]any{"file": "/tmp/n"}}
		}, []string{"confirm.enrol_per_minute must be between 1 and 100000"}},
		// Issue 15: a token set.
		{"tokens", func(m map[string]any) { setTokens(m, "a", "b"); m["probe_interval"] = "500ms" }, nil},
		{"token and tokens", func(m map[string]any) {
			setTokens(m, "a", "b")
			m["token"] = map[string]any{"uri": "pkcs11:token=t"}
		}, []string{"token and tokens are both set"}},
		{"tokens with token.kind alone", func(m map[string]any) {
			setTokens(m, "a")
			m["token"] = map[string]any{"kind": "hsm"}
		}, []string{"token and tokens are both set"}},
		{"tokens[1].name repeated", func(m map[string]any) { setTokens(m, "a", "a") }, []string{`tokens[1].name "a" is used by another token`, "tokens[1].uri names the same token"}},
		{"tokens[0].name upper-case", func(m map[string]any) { setTokens(m, "HSM-A", "b") }, []string{"tokens[0].name must be 1-32 of a-z"}},
		{"tokens[1].uri missing", func(m map[string]any) {
			setTokens(m, "a", "b")
			delete(m["tokens"].([]any)[1].(map[string]any), "uri")
		}, []string{"tokens[1].uri is required"}},
		{"tokens[1].uri bad", func(m map[string]any) {
			setTokens(m, "a", "b")
			m["tokens"].([]any)[1].(map[string]any)["uri"] = "pkcs11:token=b;pin-value=1234"
		}, []string{"tokens[1].uri: "}},
		{"tokens[1].uri same token", func(m map[string]any) {
			setTokens(m, "a", "b")
			m["tokens"].([]any)[1].(map[string]any)["uri"] = "pkcs11:token=a"
		}, []string{"tokens[1].uri names the same token"}},
		{"tokens[0].max_sessions negative", func(m map[string]any) {
			setTokens(m, "a", "b")
			m["tokens"].([]any)[0].(map[string]any)["max_sessions"] = -1
		}, []string{"tokens[0].max_sessions must not be negative"}},
		{"probe_interval 10ms", func(m map[string]any) { setTokens(m, "a", "b"); m["probe_interval"] = "10ms" }, []string{"probe_interval must be between 100ms and 1m"}},
		{"probe_interval without tokens", func(m map[string]any) { m["probe_interval"] = "2s" }, []string{"probe_interval is set without tokens"}},
		{"tokens with sealed secrets and a pin-source", func(m map[string]any) {
			setTokens(m, "a", "b")
			m["tpm"] = "/dev/tpmrm0"
			m["secrets"] = map[string]any{"file": "/s.json"}
			m["tokens"].([]any)[1].(map[string]any)["uri"] = "pkcs11:token=b?pin-source=file:/run/pin"
		}, []string{"tokens[1].uri: drop pin-source"}},
		// Issue 8: sealed secrets and the TPM audit key.
		{"sealed secrets with TPM, no tls.key", func(m map[string]any) {
			delete(sub(m, "tls"), "key")
			m["tpm"] = "/dev/tpmrm0"
			m["secrets"] = map[string]any{"file": "/var/lib/keyward/secrets.json", "passphrase": "prompt"}
			m["audit"] = map[string]any{"signer": "tpm"}
		}, nil},
		{"sealed secrets, passphrase only", func(m map[string]any) {
			m["secrets"] = map[string]any{"file": "/s.json", "passphrase": "env:KW_RECOVERY"}
		}, nil},
		{"secrets.file without a way to open it", func(m map[string]any) {
			m["secrets"] = map[string]any{"file": "/s.json"}
		}, []string{"secrets.file needs tpm"}},
		{"secrets with a URI pin-source", func(m map[string]any) {
			m["tpm"] = "/dev/tpmrm0"
			m["secrets"] = map[string]any{"file": "/s.json"}
			sub(m, "token")["uri"] = "pkcs11:token=bank?pin-source=file:/run/pin"
		}, []string{"token.uri: drop pin-source"}},
		{"secrets.passphrase alone", func(m map[string]any) {
			m["secrets"] = map[string]any{"passphrase": "prompt"}
		}, []string{"secrets.passphrase is set without secrets.file"}},
		{"secrets.passphrase given as a value", func(m map[string]any) {
			m["tpm"] = "/dev/tpmrm0"
			m["secrets"] = map[string]any{"file": "/s.json", "passphrase": "hunter2hunter2"}
		}, []string{"secrets.passphrase: token: PIN source"}},
		{"no tls.key and no secrets file", func(m map[string]any) {
			delete(sub(m, "tls"), "key")
			m["tpm"] = "/dev/tpmrm0"
		}, []string{"tls.cert and tls.key are required"}},
		{"audit.signer tpm without tpm", func(m map[string]any) { m["audit"] = map[string]any{"signer": "tpm"} }, []string{"audit.signer tpm needs tpm"}},
		{"audit.signer unknown", func(m map[string]any) { m["audit"] = map[string]any{"signer": "hsm"} }, []string{"audit.signer must be token or tpm"}},
		{"audit.tpm_key without signer tpm", func(m map[string]any) { m["audit"] = map[string]any{"tpm_key": "/k.json"} }, []string{"audit.tpm_key is set but audit.signer is not tpm"}},
		{"several at once", func(m map[string]any) {
			delete(m, "data_dir")
			delete(sub(m, "token"), "uri")
			client(m, 1)["name"] = ""
		}, []string{"data_dir is required", "token.uri is required", "clients[1].name is required"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := validConfigMap()
			c.mutate(m)
			b, err := yaml.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := loadConfig(writeConfig(t, string(b)))
			if c.want == nil {
				if err != nil {
					t.Fatalf("loadConfig: %v\n%s", err, b)
				}
				return
			}
			if err == nil {
				t.Fatalf("loadConfig accepted:\n%s", b)
			}
			if cfg == nil {
				t.Error("loadConfig returned no config with the validation error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(c.want) {
				t.Fatalf("err = %q, want %d error(s) %q", err, len(c.want), c.want)
			}
			for i, w := range c.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("error %d = %q, want prefix %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestEnsureSecretFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "dev-admin.token")
	s1, err := ensureSecretFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := hex.DecodeString(s1); err != nil || len(b) != 32 {
		t.Errorf("secret %q is not 64 hex digits", s1)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(p); string(b) != s1+"\n" {
		t.Errorf("file holds %q, want %q", b, s1+"\n")
	}
	for i := 0; i < 2; i++ {
		s2, err := ensureSecretFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if s2 != s1 {
			t.Errorf("call %d returned %q, want the stored %q", i+2, s2, s1)
		}
	}
	other, err := ensureSecretFile(filepath.Join(dir, "other.token"))
	if err != nil {
		t.Fatal(err)
	}
	if other == s1 {
		t.Error("two secret files hold the same secret")
	}

	cases := []struct {
		name, content, want string
	}{
		{"LF", "abc\n", "abc"},
		{"CRLF", "abc\r\n", "abc"},
		{"several newlines", "abc\n\n", "abc"},
		{"no newline", "abc", "abc"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "s")
			if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ensureSecretFile(p)
			if err != nil || got != c.want {
				t.Errorf("ensureSecretFile = %q, %v; want %q", got, err, c.want)
			}
		})
	}
	if _, err := ensureSecretFile(filepath.Join(dir, "no-such-dir", "s")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory: err = %v, want fs.ErrNotExist", err)
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: not a single CERTIFICATE PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEnsureDevTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls") // does not exist yet
	if err := ensureDevTLS(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir: %v, %v; want mode 0700", fi, err)
	}
	modes := map[string]os.FileMode{"ca.pem": 0o644, "server.pem": 0o644, "server-key.pem": 0o600}
	before := map[string][]byte{}
	for name, mode := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode = %v, want %v", name, fi.Mode().Perm(), mode)
		}
		before[name], _ = os.ReadFile(filepath.Join(dir, name))
	}

	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	srv := readCert(t, filepath.Join(dir, "server.pem"))
	if !ca.IsCA {
		t.Error("ca.pem is not a CA certificate")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	cases := []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1", true},
		{"localhost", true},
		{"::1", true},
		{"example.com", false},
		{"127.0.0.2", false},
	}
	for _, c := range cases {
		_, err := srv.Verify(x509.VerifyOptions{DNSName: c.host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if c.ok && err != nil {
			t.Errorf("%s: %v", c.host, err)
		}
		if !c.ok && err == nil {
			t.Errorf("%s: the server certificate verified for it", c.host)
		}
	}
	// The server certificate does not verify against the system roots alone.
	if _, err := srv.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: x509.NewCertPool()}); err == nil {
		t.Error("server certificate verified without the dev CA")
	}
	// The key file holds the server certificate's private key.
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")); err != nil {
		t.Errorf("server key does not match the certificate: %v", err)
	}

	// Idempotent: a second call changes nothing.
	if err := ensureDevTLS(dir); err != nil {
		t.Fatal(err)
	}
	for name := range modes {
		after, _ := os.ReadFile(filepath.Join(dir, name))
		if !bytes.Equal(after, before[name]) {
			t.Errorf("%s changed on the second call", name)
		}
	}
}

// TestREADMEConfigLoads keeps the README's production example true: its
// YAML block must load and validate.
func TestREADMEConfigLoads(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "```yaml\n")
	if i < 0 {
		t.Fatal("README has no ```yaml block")
	}
	rest := s[i+len("```yaml\n"):]
	block := rest[:strings.Index(rest, "```")]
	cfg, err := loadConfig(writeConfig(t, block))
	if err != nil {
		t.Fatalf("README config: %v", err)
	}
	if cfg.Confirm.Listen == "" || cfg.Confirm.Notify.Webhook == "" {
		t.Fatalf("README config lost its confirm block: %+v", cfg.Confirm)
	}
}

// setTokens replaces token: with tokens: of the given names (token label =
// name).
func setTokens(m map[string]any, names ...string) {
	delete(m, "token")
	var ts []any
	for _, n := range names {
		ts = append(ts, map[string]any{"name": n, "uri": "pkcs11:token=" + n, "max_sessions": 8, "wait_timeout": "2s"})
	}
	m["tokens"] = ts
}

// TestLoadConfigTokens: a token set loads with its fields, and token.kind
// gets no default beside it (so "both set" is never a false alarm).
func TestLoadConfigTokens(t *testing.T) {
	c, err := loadConfig(writeConfig(t, `
data_dir: /d
tls: {cert: c.pem, key: k.pem}
tokens:
  - {name: hsm-a, uri: "pkcs11:token=bank-a?pin-source=file:/run/kw/pin-a", max_sessions: 32, wait_timeout: 3s}
  - {name: hsm-b, uri: "pkcs11:token=bank-b?pin-source=file:/run/kw/pin-b", module: /usr/lib/softhsm/libsofthsm2.so}
probe_interval: 1s
clients: [{name: a}]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []TokenConfig{
		{Name: "hsm-a", URI: "pkcs11:token=bank-a?pin-source=file:/run/kw/pin-a", MaxSessions: 32, WaitTimeout: 3 * time.Second},
		{Name: "hsm-b", URI: "pkcs11:token=bank-b?pin-source=file:/run/kw/pin-b", Module: "/usr/lib/softhsm/libsofthsm2.so"},
	}
	if !reflect.DeepEqual(c.Tokens, want) || c.ProbeInterval != time.Second || c.Token.Kind != "" {
		t.Fatalf("tokens = %+v, probe_interval %v, token.kind %q", c.Tokens, c.ProbeInterval, c.Token.Kind)
	}
	_, err = loadConfig(writeConfig(t, `
data_dir: /d
tls: {cert: c.pem, key: k.pem}
tokens:
  - {name: hsm-a, uri: "pkcs11:token=bank-a", pin: "1234"}
clients: [{name: a}]
`))
	if err == nil || !strings.Contains(err.Error(), "pin") {
		t.Fatalf("an unknown field in tokens[0]: %v", err)
	}
}
