package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/bankaudit"
	"github.com/keyward/keyward/banking/staff"
	"github.com/keyward/keyward/cmd/internal/secretfile"
	"github.com/keyward/keyward/cmd/internal/strictyaml"
	"github.com/keyward/keyward/token/pinsource"
)

// Config is the banking binary's YAML configuration. In dev mode (no
// config file) devConfig fills it; see the package doc for an example.
type Config struct {
	Listen  string `yaml:"listen"`   // host:port, default 127.0.0.1:8445
	DataDir string `yaml:"data_dir"` // bank.db (customers, ledger, sessions, codes) when store.backend is bbolt
	// Store is where banking keeps its records: bbolt (default: one file,
	// data_dir/bank.db, one banking process) or PostgreSQL (several
	// stateless banking processes sharing one database; issue 17).
	Store storeConfig `yaml:"store"`
	TLS   struct {
		Cert string `yaml:"cert"` // the bank's own HTTPS certificate (PEM chain)
		Key  string `yaml:"key"`
	} `yaml:"tls"`
	KeySvc keysvcConfig `yaml:"keysvc"`
	// KMSName is the client name keysvc knows banking by; customer keys
	// created at enrolment grant it sign, verify and public.
	KMSName string `yaml:"kms_name"`
	// Staff lists the people who may use /staff/v1, each with a personal
	// token (kept here only as its SHA-256) and roles (package
	// banking/staff). Empty: no staff API.
	Staff []staffConfig `yaml:"staff"`
	// StaffTokenSHA256 is refused: the one shared staff token is gone
	// (issue 18); validate says what to write instead.
	StaffTokenSHA256 string `yaml:"staff_token_sha256"`
	// staff is the registry built from Staff by validate.
	staff     *staff.Registry
	Blacklist struct {
		File     string        `yaml:"file"`     // fraud/terror list (banking/blacklist format), required
		Interval time.Duration `yaml:"interval"` // how often the file is looked at, default 10s
	} `yaml:"blacklist"`
	SMS struct {
		// GatewayURL is the SMS provider (or its relay) that one-time
		// codes are posted to (otp.HTTPGateway): https://, or http:// to a
		// loopback relay. Required. Nothing on the bank's side keeps a code.
		GatewayURL string `yaml:"gateway_url"`
		// TokenFile holds the bearer token for the gateway (0600); empty:
		// none.
		TokenFile string `yaml:"token_file"`
		// Outbox is refused: the clear-code outbox file is dev mode's alone.
		Outbox string `yaml:"outbox"`
		// devOutbox is dev mode's SMS outbox file (codes in clear while
		// they live); only devConfig sets it, no YAML can.
		devOutbox string
	} `yaml:"sms"`
	Ledger struct {
		MaxBatchSize  int           `yaml:"max_batch_size"`  // transfers per store commit, default 128
		MaxBatchDelay time.Duration `yaml:"max_batch_delay"` // default 2ms
		AccountPrefix string        `yaml:"account_prefix"`  // 1-12 digits, default 62999
	} `yaml:"ledger"`
	HTTP struct {
		LoginPerMinute    int `yaml:"login_per_minute"`    // per source address, default 120
		RequestsPerMinute int `yaml:"requests_per_minute"` // per session, default 6000
		BodyLimit         int `yaml:"body_limit"`          // bytes, default 256 KiB
	} `yaml:"http"`
	Login struct {
		// CaptchaAfter is how many recent failed logins of a login, or
		// from a source address, make the next login need the image
		// captcha (seed 6.2.3.2): 1 to 20, default 3. It cannot be turned
		// off.
		CaptchaAfter int `yaml:"captcha_after"`
	} `yaml:"login"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"` // default 30s
	// Audit is banking's own audit trail (banking/bankaudit, issue 18).
	Audit auditConfig `yaml:"audit"`
	// Alerts: where brute-force and SMS alerts go besides the log (R-AUTH-3).
	Alerts struct {
		Webhook struct {
			URL     string        `yaml:"url"`     // https:// receiver; empty: log only
			CAFile  string        `yaml:"ca_file"` // PEM CA of the receiver's certificate; empty: system roots
			Timeout time.Duration `yaml:"timeout"` // per POST, default 5s
		} `yaml:"webhook"`
	} `yaml:"alerts"`
	// Metrics is the operators' endpoint (R-AV-2): plain HTTP GET /metrics
	// (Prometheus) and GET /readyz (the store and keysvc answer) on a
	// listener of its own, never the API's. Empty (the default): off.
	// Put it on loopback or the management network: it is unauthenticated
	// (it names no customer, but shows load, failures and the hosts
	// banking depends on). Dev mode: 127.0.0.1:<API port + 1001>.
	Metrics struct {
		Listen string `yaml:"listen"` // host:port, e.g. 127.0.0.1:9446
	} `yaml:"metrics"`
	// TPM and Secrets: banking's own secrets (its TLS key, its keysvc
	// client key or bearer token) in a file sealed by `ceremony seal`
	// (package keysvc/secrets) instead of clear files. TPM: /dev/tpmrm0,
	// or tcp:HOST:PORT for swtpm.
	TPM     string `yaml:"tpm"`
	Secrets struct {
		File       string `yaml:"file"`
		Passphrase string `yaml:"passphrase"` // recovery passphrase's source (prompt, env:NAME, file:/abs); empty: TPM only
	} `yaml:"secrets"`
}

// auditConfig is the audit section.
type auditConfig struct {
	// Retention is how long trail records are kept at least: "180d"
	// (the default and the minimum, R-SRV-3) or more; `banking audit
	// prune` refuses anything younger.
	Retention days `yaml:"retention"`
	// CheckpointEvery and CheckpointInterval: a checkpoint signed by
	// bank-audit after this many records or this often (defaults 1000, 1m).
	CheckpointEvery    int           `yaml:"checkpoint_every"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// PublicKey is the bank-audit public key (PEM) `banking audit verify`
	// checks against; empty: asked of keysvc.
	PublicKey string `yaml:"public_key"`
}

// days is a duration written in days ("180d") or as a Go duration ("4320h").
type days time.Duration

// UnmarshalText reads "<n>d" or a Go duration.
func (d *days) UnmarshalText(b []byte) error {
	s := string(b)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		v, err := strconv.Atoi(n)
		if err != nil || v < 0 || v > 36500 {
			return fmt.Errorf("%q: want a number of days such as 180d", s)
		}
		*d = days(time.Duration(v) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q: want a number of days such as 180d", s)
	}
	*d = days(v)
	return nil
}

// storeConfig is the store section.
type storeConfig struct {
	Backend  string `yaml:"backend"` // bbolt (default) or postgres
	Postgres struct {
		// URL is a libpq connection URL without a password, e.g.
		// postgres://banking@db-a:5432,db-b:5432/keyward?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=/etc/keyward/bank/pg-ca.pem
		// Several hosts and target_session_attrs=read-write find the
		// writable primary after a failover.
		URL string `yaml:"url"`
		// PasswordFile holds the database password (0600); empty: none
		// (certificate or peer authentication), or sealed in secrets.file
		// as pg-password.
		PasswordFile string        `yaml:"password_file"`
		MaxConns     int           `yaml:"max_conns"`  // pool size, default 32
		TxTimeout    time.Duration `yaml:"tx_timeout"` // per transaction attempt, default 5s
	} `yaml:"postgres"`
}

// staffConfig is one person of the staff list:
//
//	staff:
//	  - id: teller1                      # ^[a-z][a-z0-9_-]{1,31}$, what the audit trail names
//	    name: Li Na
//	    roles: [enrol, deposit, phone-change]
//	    token_sha256: 9f2c…              # printed by: banking staff-token -out teller1.token
//	    expires: 2027-06-30              # optional: a date (UTC midnight) or RFC 3339 time
type staffConfig struct {
	ID          string   `yaml:"id"`
	Name        string   `yaml:"name"`
	Roles       []string `yaml:"roles"`
	TokenSHA256 string   `yaml:"token_sha256"`
	Expires     string   `yaml:"expires"`
}

// staffMigration is the refusal of the old shared token, with the form
// that replaces it.
const staffMigration = `staff_token_sha256 is no longer accepted: there is no shared staff token. Give each person their own token and roles, e.g.
  staff:
    - {id: teller1, name: "Li Na", roles: [enrol, deposit, phone-change], token_sha256: <64 hex digits>}
    - {id: supervisor1, name: "Wang Wei", roles: [unlock, limit-override, ledger-verify], token_sha256: <64 hex digits>}
  (banking staff-token -out FILE writes a person's token to FILE and prints its token_sha256 line)`

// staffRegistry checks the staff list and builds its registry; each
// problem names its YAML path.
func (c *Config) staffRegistry() (*staff.Registry, []error) {
	var errs []error
	members := make([]staff.Member, 0, len(c.Staff))
	for i, e := range c.Staff {
		m := staff.Member{ID: e.ID, Name: e.Name}
		for _, r := range e.Roles {
			m.Roles = append(m.Roles, staff.Role(r))
		}
		d, err := staff.ParseDigest(e.TokenSHA256)
		if err != nil {
			errs = append(errs, fmt.Errorf("staff[%d].token_sha256 must be 64 hex digits (banking staff-token -out FILE prints the line)", i))
		}
		m.TokenSHA256 = d
		if e.Expires != "" {
			if m.Expires, err = parseExpiry(e.Expires); err != nil {
				errs = append(errs, fmt.Errorf("staff[%d].expires must be a date (2027-06-30) or an RFC 3339 time", i))
			}
		}
		members = append(members, m)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	reg, err := staff.New(members)
	if err != nil {
		return nil, []error{err}
	}
	return reg, nil
}

func parseExpiry(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC3339, s)
}

// keysvcConfig is the keysvc section: where keysvc is and how banking
// authenticates to it.
type keysvcConfig struct {
	URL string `yaml:"url"` // https://keysvc.bank.internal:8443
	// URLs: the nodes of a keysvc cluster, instead of url. Requests are
	// spread over them and fail over between them (keysvc/client's
	// "Endpoints and failover").
	URLs []string `yaml:"urls"`
	CA   string   `yaml:"ca"` // PEM CA of keysvc's server certificate; empty: system roots
	// mTLS: a client certificate whose CommonName is kms_name.
	ClientCert string `yaml:"client_cert"`
	ClientKey  string `yaml:"client_key"`
	// Development: a file holding a bearer token keysvc knows by its
	// SHA-256. Exactly one of client_cert/client_key and this.
	BearerTokenFile string        `yaml:"bearer_token_file"`
	Timeout         time.Duration `yaml:"timeout"` // per request, default 30s
}

// loadConfig reads a strict YAML file: unknown fields are errors, and
// validate names every field to fix.
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
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("config %s:\n%w", path, err)
	}
	return &c, nil
}

func (c *Config) defaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8445"
	}
	if c.Blacklist.Interval == 0 {
		c.Blacklist.Interval = 10 * time.Second
	}
	if c.KeySvc.Timeout == 0 {
		c.KeySvc.Timeout = 30 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.Store.Backend == "" {
		c.Store.Backend = "bbolt"
	}
	if c.Store.Postgres.MaxConns == 0 {
		c.Store.Postgres.MaxConns = 32
	}
	if c.Store.Postgres.TxTimeout == 0 {
		c.Store.Postgres.TxTimeout = 5 * time.Second
	}
	if c.Audit.Retention == 0 {
		c.Audit.Retention = days(bankaudit.MinRetention)
	}
	if c.Alerts.Webhook.Timeout == 0 {
		c.Alerts.Webhook.Timeout = 5 * time.Second
	}
}

var (
	kmsNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	digitsRE  = regexp.MustCompile(`^[0-9]{1,12}$`)
)

// validate checks everything before anything is opened; each error names
// the YAML path to fix.
func (c *Config) validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen must be host:port, e.g. 0.0.0.0:8445")
	}
	switch c.Store.Backend {
	case "bbolt":
		if c.DataDir == "" {
			add("data_dir is required (bank.db is kept there)")
		}
		if c.Store.Postgres.URL != "" || c.Store.Postgres.PasswordFile != "" {
			add("store.postgres is set but store.backend is bbolt: set store.backend: postgres, or remove store.postgres")
		}
	case "postgres":
		if err := checkPostgresURL(c.Store.Postgres.URL); err != nil {
			add("store.postgres.url: %v", err)
		}
		if n := c.Store.Postgres.MaxConns; n < 2 || n > 1000 {
			add("store.postgres.max_conns must be between 2 and 1000")
		}
		if d := c.Store.Postgres.TxTimeout; d < 100*time.Millisecond || d > time.Minute {
			add("store.postgres.tx_timeout must be between 100ms and 1m")
		}
	default:
		add("store.backend must be bbolt (one file in data_dir) or postgres (store.postgres.url)")
	}
	sealed := c.Secrets.File != ""
	if c.TLS.Cert == "" || (c.TLS.Key == "" && !sealed) {
		add("tls.cert and tls.key are required (TLS 1.2 minimum; there is no plain-HTTP mode); tls.key may be left out when secrets.file holds a tls-key")
	}
	switch {
	case sealed && c.TPM == "" && c.Secrets.Passphrase == "":
		add("secrets.file needs tpm (auto-unseal) or secrets.passphrase (the recovery passphrase's source), or both")
	case !sealed && c.Secrets.Passphrase != "":
		add("secrets.passphrase is set without secrets.file")
	}
	if p := c.Secrets.Passphrase; p != "" {
		if _, err := pinsource.Open(p); err != nil {
			add("secrets.passphrase: %v", err)
		}
	}
	switch {
	case c.KeySvc.URL != "" && len(c.KeySvc.URLs) > 0:
		add("keysvc: give either url (one keysvc) or urls (the nodes of a keysvc cluster), not both")
	case len(c.KeySvc.URLs) > 0:
		for i, u := range c.KeySvc.URLs {
			if !httpsURL(u) {
				add("keysvc.urls[%d] must be https://host:port", i)
			} else if j := slices.IndexFunc(c.KeySvc.URLs[:i], func(v string) bool { return sameURL(u, v) }); j >= 0 {
				add("keysvc.urls[%d] repeats keysvc.urls[%d]", i, j)
			}
		}
	case !httpsURL(c.KeySvc.URL):
		add("keysvc.url is required and must be https://host:port (or keysvc.urls: a list, for the nodes of a keysvc cluster)")
	}
	// With a secrets file, client_key or the bearer token may be sealed
	// in it instead (checked when it is opened).
	mtls := c.KeySvc.ClientCert != "" || c.KeySvc.ClientKey != ""
	switch {
	case mtls && (c.KeySvc.ClientCert == "" || (c.KeySvc.ClientKey == "" && !sealed)):
		add("keysvc.client_cert and keysvc.client_key go together (client_key may be sealed in secrets.file)")
	case mtls && c.KeySvc.BearerTokenFile != "":
		add("keysvc: give either client_cert/client_key (mutual TLS) or bearer_token_file, not both")
	case !mtls && c.KeySvc.BearerTokenFile == "" && !sealed:
		add("keysvc.client_cert and keysvc.client_key are required (mutual TLS; bearer_token_file is for development)")
	}
	if c.KeySvc.Timeout < time.Second || c.KeySvc.Timeout > 5*time.Minute {
		add("keysvc.timeout must be between 1s and 5m")
	}
	if !kmsNameRE.MatchString(c.KMSName) {
		add("kms_name is required: the client name keysvc knows banking by (its certificate's CommonName)")
	}
	if c.StaffTokenSHA256 != "" {
		add("%s", staffMigration)
	}
	if reg, serrs := c.staffRegistry(); len(serrs) > 0 {
		errs = append(errs, serrs...)
	} else if len(c.Staff) > 0 {
		c.staff = reg
	}
	if c.Blacklist.File == "" {
		add("blacklist.file is required: the bank must not run unscreened (an empty list is a file holding end:0)")
	}
	if c.Blacklist.Interval < 0 || (c.Blacklist.Interval > 0 && c.Blacklist.Interval < 100*time.Millisecond) {
		add("blacklist.interval must be at least 100ms")
	}
	switch {
	case c.SMS.Outbox != "":
		add("sms.outbox is gone: a file of one-time codes in clear is for dev mode only; set sms.gateway_url to the SMS provider or its relay")
	case c.SMS.devOutbox == "" && c.SMS.GatewayURL == "":
		add("sms.gateway_url is required: the SMS provider (or its relay) that one-time codes are posted to")
	case c.SMS.devOutbox == "":
		if _, err := otp.NewHTTPGateway(c.SMS.GatewayURL, "", nil); err != nil {
			add("sms.gateway_url: %v", err)
		}
	}
	if c.Ledger.MaxBatchSize < 0 || c.Ledger.MaxBatchSize > 10000 {
		add("ledger.max_batch_size must be between 1 and 10000")
	}
	if c.Ledger.MaxBatchDelay < 0 || c.Ledger.MaxBatchDelay > time.Second {
		add("ledger.max_batch_delay must be between 0 and 1s")
	}
	if p := c.Ledger.AccountPrefix; p != "" && !digitsRE.MatchString(p) {
		add("ledger.account_prefix must be 1 to 12 digits")
	}
	if n := c.Login.CaptchaAfter; n < 0 || n > 20 {
		add("login.captcha_after must be 1 to 20 failed logins (default 3); the captcha cannot be turned off")
	}
	if c.HTTP.LoginPerMinute < 0 || c.HTTP.RequestsPerMinute < 0 {
		add("http.login_per_minute and http.requests_per_minute must not be negative")
	}
	if c.HTTP.BodyLimit != 0 && (c.HTTP.BodyLimit < 4<<10 || c.HTTP.BodyLimit > 4<<20) {
		add("http.body_limit must be between 4096 and 4194304 bytes")
	}
	if l := c.Metrics.Listen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			add("metrics.listen must be host:port, e.g. 127.0.0.1:9446")
		} else if l == c.Listen {
			add("metrics.listen must be a listener of its own, not listen: the API's clients must not reach /metrics and /readyz")
		}
	}
	if c.ShutdownTimeout < time.Second || c.ShutdownTimeout > 10*time.Minute {
		add("shutdown_timeout must be between 1s and 10m")
	}
	if time.Duration(c.Audit.Retention) < bankaudit.MinRetention {
		add("audit.retention must be at least 180d: audit records are kept six months or more (R-SRV-3)")
	}
	if n := c.Audit.CheckpointEvery; n < 0 || n > 1000000 {
		add("audit.checkpoint_every must be between 1 and 1000000 records")
	}
	if d := c.Audit.CheckpointInterval; d < 0 || (d > 0 && d < time.Second) || d > time.Hour {
		add("audit.checkpoint_interval must be between 1s and 1h")
	}
	if w := c.Alerts.Webhook; w.URL != "" {
		if !httpsURL(w.URL) && !strings.HasPrefix(w.URL, "https://") {
			add("alerts.webhook.url must be https://host[:port]/path")
		} else if u, err := url.Parse(w.URL); err != nil || u.User != nil {
			add("alerts.webhook.url must not hold credentials")
		}
		if w.Timeout < 100*time.Millisecond || w.Timeout > time.Minute {
			add("alerts.webhook.timeout must be between 100ms and 1m")
		}
	} else if w.CAFile != "" {
		add("alerts.webhook.ca_file is set without alerts.webhook.url")
	}
	return errors.Join(errs...)
}

// checkPostgresURL accepts a postgres:// or postgresql:// URL that names a
// database and carries no password: the password comes from
// store.postgres.password_file or the sealed secrets file, never from the
// config (it would show in every copy of the file and in ps for tools that
// take the URL as an argument). The error never repeats the URL.
func checkPostgresURL(s string) error {
	if s == "" {
		return errors.New("required when store.backend is postgres, e.g. postgres://banking@db-a:5432,db-b:5432/keyward?target_session_attrs=read-write")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return errors.New("must be postgres://user@host:port[,host:port...]/database[?parameters]")
	}
	if _, has := u.User.Password(); has || u.Query().Has("password") {
		return errors.New("must not hold a password: put it in store.postgres.password_file or seal it in secrets.file as pg-password")
	}
	if strings.Trim(u.Path, "/") == "" {
		return errors.New("must name the database, e.g. .../keyward")
	}
	if h := u.Query().Get("target_session_attrs"); strings.Contains(u.Host, ",") && h != "read-write" && h != "primary" {
		return errors.New("names several hosts: add target_session_attrs=read-write so banking finds the writable primary after a failover")
	}
	return nil
}

// httpsURL reports whether s is https://host[:port][/prefix], with no
// credentials, query or fragment.
func httpsURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https" && u.Host != "" && u.User == nil && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery
}

// sameURL reports whether two valid keysvc URLs name the same endpoint.
func sameURL(a, b string) bool { return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/") }

// endpoints is keysvc.urls, or keysvc.url alone.
func (k *keysvcConfig) endpoints() []string {
	if len(k.URLs) > 0 {
		return k.URLs
	}
	return []string{k.URL}
}

// readSecretFile: see secretfile.Read.
var readSecretFile = secretfile.Read
