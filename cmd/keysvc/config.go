package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/keyward/keyward/cmd/internal/strictyaml"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// Config is keysvc's YAML configuration. Every field can be left out in dev
// mode (-dev, no config file): see devConfig.
type Config struct {
	// auditAnchors come from serve's -audit-expect flags, not the file.
	auditAnchors []audit.Anchor

	Listen string `yaml:"listen"` // host:port, default 127.0.0.1:8443
	// DataDir holds the bbolt store (keys, audit, PIN guard) with store
	// backend bbolt, and node-local files with either backend (the audit
	// public key, a TPM audit key blob).
	DataDir string `yaml:"data_dir"`
	// Node is this node's name among the keysvc nodes that share an etcd
	// store (the scheduler's election, audit records, logs). Default: the
	// host name.
	Node string `yaml:"node"`
	// Store says where keysvc keeps its key records, audit chain, PIN guard
	// counters and pending confirmations: bbolt (the default,
	// data_dir/keysvc.db, one node) or etcd (a cluster of keysvc nodes,
	// issue 16).
	Store StoreConfig `yaml:"store"`
	TLS   struct {
		Cert     string `yaml:"cert"`
		Key      string `yaml:"key"`
		ClientCA string `yaml:"client_ca"` // CA of client certificates (mutual TLS); empty: bearer tokens only
	} `yaml:"tls"`
	Token struct {
		Kind        string        `yaml:"kind"`   // hsm (default) or usb-key
		URI         string        `yaml:"uri"`    // pkcs11:token=...?module-path=...&pin-source=file:...
		Module      string        `yaml:"module"` // when the URI has no module-path
		MaxSessions int           `yaml:"max_sessions"`
		WaitTimeout time.Duration `yaml:"wait_timeout"`
	} `yaml:"token"`
	// Tokens is a token set (token.Set, issue 15): several HSM partitions
	// holding the same keys, each with its own session pool and PIN guard
	// counter; operations go to a token that is up and fail over to
	// another. Exactly one of token and tokens.
	Tokens []TokenConfig `yaml:"tokens"`
	// ProbeInterval is how often each token of a set is checked, and a
	// token that is down probed to be caught up and re-admitted (default 2s).
	ProbeInterval time.Duration `yaml:"probe_interval"`
	PINGuard      struct {
		Limit int `yaml:"limit"` // 1..6, default 6
	} `yaml:"pin_guard"`
	Destroy struct {
		DefaultDelay time.Duration `yaml:"default_delay"` // default 24h
		MinDelay     time.Duration `yaml:"min_delay"`     // default 24h
	} `yaml:"destroy"`
	// Confirm is the holder's second channel for confirm-required keys
	// (display and confirm, R-DC-1): its own TLS listener, the timeout, and
	// how holders are told a confirmation waits for them.
	Confirm struct {
		Listen    string        `yaml:"listen"`     // host:port; empty: no confirmation endpoint
		Timeout   time.Duration `yaml:"timeout"`    // default 60s
		PublicURL string        `yaml:"public_url"` // base URL holders reach the endpoint at, e.g. https://confirm.bank.example
		// EnrolPerMinute bounds enrolment attempts per source address
		// (default 10). Raise it when a bank server relays holders'
		// enrolments from one address.
		EnrolPerMinute int `yaml:"enrol_per_minute"`
		Notify         struct {
			Webhook string `yaml:"webhook"` // HTTPS URL that receives each notice as JSON (the bank's push service)
			CA      string `yaml:"ca"`      // PEM CA of the webhook's certificate; empty: system roots
			File    string `yaml:"file"`    // dev: append notices to this 0600 file
		} `yaml:"notify"`
	} `yaml:"confirm"`
	// TPM is the host TPM: /dev/tpmrm0 in production, tcp:HOST:PORT for
	// swtpm in tests. keysvc's secrets file is sealed to it and the audit
	// key may live in it. Empty: no TPM.
	TPM string `yaml:"tpm"`
	// Secrets: keysvc's own secrets (the token PIN, the TLS key) in a
	// file sealed by `ceremony seal` (package keysvc/secrets), instead of
	// a clear pin-source file and tls.key.
	Secrets struct {
		File string `yaml:"file"`
		// Passphrase is the recovery passphrase's source when the TPM
		// slot does not open (prompt, env:NAME or file:/abs); empty:
		// unattended only, keysvc then refuses to start.
		Passphrase string `yaml:"passphrase"`
	} `yaml:"secrets"`
	// Audit says which key signs audit checkpoints.
	Audit struct {
		Signer string `yaml:"signer"`  // token (default: keysvc-audit in the token) or tpm
		TPMKey string `yaml:"tpm_key"` // signer tpm: the key's blob, default <data_dir>/audit-key.tpm.json (created on first start)
	} `yaml:"audit"`
	// Metrics is the Prometheus endpoint (R-AV-2): plain HTTP GET /metrics
	// on a listener of its own, never the API's. Empty (the default): off.
	// Keep it on loopback or a monitoring network: it is unauthenticated
	// (it names no keys, but shows load and token health).
	Metrics struct {
		Listen string `yaml:"listen"` // host:port, e.g. 127.0.0.1:9464
	} `yaml:"metrics"`
	SchedulerInterval time.Duration  `yaml:"scheduler_interval"` // default 1m
	Clients           []ClientConfig `yaml:"clients"`
}

// StoreConfig is the store: section.
type StoreConfig struct {
	Backend string `yaml:"backend"` // bbolt (default) or etcd
	Etcd    struct {
		// Endpoints are the etcd members' client URLs, https:// only.
		Endpoints []string `yaml:"endpoints"`
		CA        string   `yaml:"ca"`   // PEM CA of the members' server certificates
		Cert      string   `yaml:"cert"` // PEM client certificate (etcd runs with --client-cert-auth)
		// Key is the client certificate's PEM private key. It may be left
		// out when secrets.file holds an etcd-client-key (sealed by
		// `ceremony seal` with files: [{name: etcd-client-key, ...}]).
		Key            string        `yaml:"key"`
		Prefix         string        `yaml:"prefix"`          // key prefix in etcd, default /keyward/
		RequestTimeout time.Duration `yaml:"request_timeout"` // default 5s
		DialTimeout    time.Duration `yaml:"dial_timeout"`    // default 5s
	} `yaml:"etcd"`
}

// Store backends.
const (
	backendBolt = "bbolt"
	backendEtcd = "etcd"
)

// etcdKeySecret is the name of the etcd client key in a sealed secrets
// file (store.etcd.key left out).
const etcdKeySecret = "etcd-client-key"

// nodeNameRE is what a node's name may be (a host name, or a label).
var nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// TokenConfig is one token of a token set (tokens:).
type TokenConfig struct {
	Name        string        `yaml:"name"`   // the operator's name for it: logs, /readyz, metrics label
	URI         string        `yaml:"uri"`    // pkcs11:token=...?module-path=...&pin-source=file:...
	Module      string        `yaml:"module"` // when the URI has no module-path
	MaxSessions int           `yaml:"max_sessions"`
	WaitTimeout time.Duration `yaml:"wait_timeout"`
}

// tokenNameRE is what a token's name may be (it is a metrics label value).
var tokenNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)

// ClientConfig is one API client.
type ClientConfig struct {
	Name  string `yaml:"name"`
	Admin bool   `yaml:"admin"`
	// EnrolPrefixes: key-name prefixes under which this (non-admin)
	// client may create customer keys, e.g. [usb-, cust-] for banking.
	EnrolPrefixes []string `yaml:"enrol_prefixes"`
	TokenSHA256   string   `yaml:"token_sha256"` // hex SHA-256 of the bearer token
}

func loadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := strictyaml.Decode(b, &c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.defaults()
	return &c, c.validate()
}

func (c *Config) defaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8443"
	}
	if c.Token.Kind == "" && len(c.Tokens) == 0 {
		c.Token.Kind = "hsm"
	}
	if c.SchedulerInterval == 0 {
		c.SchedulerInterval = time.Minute
	}
	if c.Store.Backend == "" {
		c.Store.Backend = backendBolt
	}
	if c.Node == "" {
		if h, err := os.Hostname(); err == nil {
			c.Node = h
		}
	}
	if e := &c.Store.Etcd; c.Store.Backend == backendEtcd {
		if e.Prefix == "" {
			e.Prefix = "/keyward/"
		}
		if e.RequestTimeout == 0 {
			e.RequestTimeout = 5 * time.Second
		}
		if e.DialTimeout == 0 {
			e.DialTimeout = 5 * time.Second
		}
	}
}

// validateStore checks node: and store:. etcd is reached over https with
// mutual TLS only: a plain-text etcd would carry key records, audit
// records and PIN counters in clear, and accept anyone's writes.
func (c *Config) validateStore() []error {
	var errs []error
	if !nodeNameRE.MatchString(c.Node) {
		errs = append(errs, errors.New("node must be 1-63 of A-Z, a-z, 0-9, '.', '_', '-' (starting with a letter or digit); default: the host name"))
	}
	e := c.Store.Etcd
	switch c.Store.Backend {
	case backendBolt:
		if len(e.Endpoints) > 0 || e.CA != "" || e.Cert != "" || e.Key != "" || e.Prefix != "" || e.RequestTimeout != 0 || e.DialTimeout != 0 {
			errs = append(errs, errors.New("store.etcd is set but store.backend is not etcd: set store.backend: etcd, or drop store.etcd"))
		}
		return errs
	case backendEtcd:
	default:
		return append(errs, errors.New("store.backend must be bbolt or etcd"))
	}
	if c.Audit.Signer == "tpm" {
		// Whichever node leads signs the cluster's checkpoints: they must
		// all sign with one key, the token's keysvc-audit.
		errs = append(errs, errors.New("audit.signer tpm is one host's key; with store.backend etcd every node signs the cluster's checkpoints, so use audit.signer token (the shared token's keysvc-audit)"))
	}
	if len(e.Endpoints) == 0 {
		errs = append(errs, errors.New("store.etcd.endpoints is required with store.backend etcd, e.g. [https://10.0.0.1:2379, https://10.0.0.2:2379, https://10.0.0.3:2379]"))
	}
	seen := map[string]bool{}
	for i, ep := range e.Endpoints {
		u, err := url.Parse(ep)
		switch {
		case err != nil || u.Scheme != "https" || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "":
			errs = append(errs, fmt.Errorf("store.etcd.endpoints[%d] must be https://host:port (mutual TLS to etcd; there is no plain-text mode)", i))
		case seen[ep]:
			errs = append(errs, fmt.Errorf("store.etcd.endpoints[%d] repeats another endpoint", i))
		}
		seen[ep] = true
	}
	if e.CA == "" {
		errs = append(errs, errors.New("store.etcd.ca is required: the PEM CA of the etcd members' certificates"))
	}
	if e.Cert == "" {
		errs = append(errs, errors.New("store.etcd.cert is required: keysvc's PEM client certificate (etcd must run with --client-cert-auth)"))
	}
	if e.Key == "" && c.Secrets.File == "" {
		errs = append(errs, errors.New("store.etcd.key is required (or secrets.file holding an "+etcdKeySecret+")"))
	}
	if p := e.Prefix; !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") || len(p) < 2 {
		errs = append(errs, errors.New("store.etcd.prefix must start and end with '/', e.g. /keyward/"))
	}
	if d := e.RequestTimeout; d < 100*time.Millisecond || d > time.Minute {
		errs = append(errs, errors.New("store.etcd.request_timeout must be between 100ms and 1m (0: the default, 5s)"))
	}
	if d := e.DialTimeout; d < 100*time.Millisecond || d > time.Minute {
		errs = append(errs, errors.New("store.etcd.dial_timeout must be between 100ms and 1m (0: the default, 5s)"))
	}
	return errs
}

// validate names the YAML path to fix.
func (c *Config) validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is required (with store.backend etcd it holds node-local files only)"))
	}
	errs = append(errs, c.validateStore()...)
	if c.TLS.Cert == "" || (c.TLS.Key == "" && c.Secrets.File == "") {
		errs = append(errs, errors.New("tls.cert and tls.key are required (TLS 1.2 minimum; there is no plain-HTTP mode); tls.key may be left out when secrets.file holds a tls-key"))
	}
	if c.Secrets.File != "" {
		if c.TPM == "" && c.Secrets.Passphrase == "" {
			errs = append(errs, errors.New("secrets.file needs tpm (auto-unseal) or secrets.passphrase (the recovery passphrase's source), or both"))
		}
		if u, err := pkcs11shim.ParseURI(c.Token.URI); err == nil && u.PINSource != "" {
			errs = append(errs, errors.New("token.uri: drop pin-source when secrets.file is set: the token PIN comes from the secrets file"))
		}
		for i, tc := range c.Tokens {
			if u, err := pkcs11shim.ParseURI(tc.URI); err == nil && u.PINSource != "" {
				errs = append(errs, fmt.Errorf("tokens[%d].uri: drop pin-source when secrets.file is set: every token's PIN comes from the secrets file", i))
			}
		}
	} else if c.Secrets.Passphrase != "" {
		errs = append(errs, errors.New("secrets.passphrase is set without secrets.file"))
	}
	if p := c.Secrets.Passphrase; p != "" {
		if _, err := token.ParsePINSource(p); err != nil {
			errs = append(errs, fmt.Errorf("secrets.passphrase: %w", err))
		}
	}
	switch c.Audit.Signer {
	case "", "token":
		if c.Audit.TPMKey != "" {
			errs = append(errs, errors.New("audit.tpm_key is set but audit.signer is not tpm"))
		}
	case "tpm":
		if c.TPM == "" {
			errs = append(errs, errors.New("audit.signer tpm needs tpm (e.g. /dev/tpmrm0)"))
		}
	default:
		errs = append(errs, errors.New("audit.signer must be token or tpm"))
	}
	if len(c.Tokens) > 0 {
		errs = append(errs, c.validateTokens()...)
	} else {
		if c.Token.Kind != "hsm" && c.Token.Kind != "usb-key" {
			errs = append(errs, errors.New("token.kind must be hsm or usb-key"))
		}
		if c.Token.URI == "" {
			errs = append(errs, errors.New("token.uri is required (or tokens: for a set of tokens), e.g. pkcs11:token=bank?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/keyward/pin"))
		}
		if c.ProbeInterval != 0 {
			errs = append(errs, errors.New("probe_interval is set without tokens: it applies to a token set only"))
		}
	}
	if c.PINGuard.Limit < 0 || c.PINGuard.Limit > 6 {
		errs = append(errs, errors.New("pin_guard.limit must be between 1 and 6"))
	}
	if c.Confirm.Listen != "" {
		if c.Confirm.PublicURL == "" {
			errs = append(errs, errors.New("confirm.public_url is required with confirm.listen: it is the base of the links holders receive"))
		}
		if (c.Confirm.Notify.Webhook == "") == (c.Confirm.Notify.File == "") {
			errs = append(errs, errors.New("confirm.notify needs exactly one of webhook (production) and file (dev)"))
		}
		if w := c.Confirm.Notify.Webhook; w != "" && !strings.HasPrefix(w, "https://") {
			errs = append(errs, errors.New("confirm.notify.webhook must be an https:// URL: notices carry holder credentials"))
		}
		if c.Confirm.Timeout != 0 && (c.Confirm.Timeout < 10*time.Second || c.Confirm.Timeout > 10*time.Minute) {
			errs = append(errs, errors.New("confirm.timeout must be between 10s and 10m"))
		}
		if n := c.Confirm.EnrolPerMinute; n < 0 || n > 100000 {
			errs = append(errs, errors.New("confirm.enrol_per_minute must be between 1 and 100000 (0: the default, 10)"))
		}
	}
	if l := c.Metrics.Listen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			errs = append(errs, fmt.Errorf("metrics.listen must be host:port, e.g. 127.0.0.1:9464: %w", err))
		} else if l == c.Listen || l == c.Confirm.Listen {
			errs = append(errs, errors.New("metrics.listen must be a listener of its own, not listen or confirm.listen"))
		}
	}
	if len(c.Clients) == 0 {
		errs = append(errs, errors.New("clients: at least one client is required"))
	}
	for i, cl := range c.Clients {
		if cl.Name == "" {
			errs = append(errs, fmt.Errorf("clients[%d].name is required", i))
		}
		if _, err := hex.DecodeString(cl.TokenSHA256); cl.TokenSHA256 != "" && (len(cl.TokenSHA256) != 64 || err != nil) {
			errs = append(errs, fmt.Errorf("clients[%d].token_sha256 must be 64 hex digits (sha256sum of the token)", i))
		}
	}
	return errors.Join(errs...)
}

// validateTokens checks a token set (tokens:).
func (c *Config) validateTokens() []error {
	var errs []error
	if c.Token != (Config{}).Token {
		errs = append(errs, errors.New("token and tokens are both set: give exactly one (tokens: for several tokens)"))
	}
	if p := c.ProbeInterval; p != 0 && (p < 100*time.Millisecond || p > time.Minute) {
		errs = append(errs, errors.New("probe_interval must be between 100ms and 1m (0: the default, 2s)"))
	}
	names, uris := map[string]bool{}, map[string]bool{}
	for i, tc := range c.Tokens {
		switch {
		case !tokenNameRE.MatchString(tc.Name):
			errs = append(errs, fmt.Errorf("tokens[%d].name must be 1-32 of a-z, 0-9, '.', '_', '-' (starting with a letter or digit): it names the token in logs and metrics", i))
		case names[tc.Name]:
			errs = append(errs, fmt.Errorf("tokens[%d].name %q is used by another token", i, tc.Name))
		}
		names[tc.Name] = true
		if tc.URI == "" {
			errs = append(errs, fmt.Errorf("tokens[%d].uri is required, e.g. pkcs11:token=bank-a?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/keyward/pin-a", i))
		} else if _, err := pkcs11shim.ParseURI(tc.URI); err != nil {
			errs = append(errs, fmt.Errorf("tokens[%d].uri: %w", i, err))
		} else if uris[tc.URI] {
			errs = append(errs, fmt.Errorf("tokens[%d].uri names the same token as another entry", i))
		}
		uris[tc.URI] = true
		if tc.MaxSessions < 0 {
			errs = append(errs, fmt.Errorf("tokens[%d].max_sessions must not be negative (0: the default)", i))
		}
		if tc.WaitTimeout < 0 {
			errs = append(errs, fmt.Errorf("tokens[%d].wait_timeout must not be negative (0: the default)", i))
		}
	}
	return errs
}
