package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// common are the flags every subcommand takes.
type common struct {
	fs          *flag.FlagSet
	url, ca     string
	sessionFile string
}

func newFlags(name string) *common {
	c := &common{fs: flag.NewFlagSet("bankcli "+name, flag.ContinueOnError)}
	c.fs.StringVar(&c.url, "url", envOr("BANKCLI_URL", "https://127.0.0.1:8445"), text("the bank's URL (env BANKCLI_URL)"))
	c.fs.StringVar(&c.ca, "ca", envOr("BANKCLI_CA", "var/bank/tls/ca.pem"), text("PEM CA of the bank's certificate (env BANKCLI_CA); empty: system roots"))
	c.fs.StringVar(&c.sessionFile, "session-file", defaultSessionFile(), text("where the session is kept (0600)"))
	return c
}

// parse parses args and refuses positional arguments (a secret typed
// there would land in the shell history).
func (c *common) parse(args []string) error {
	if err := c.fs.Parse(args); err != nil {
		return err
	}
	if c.fs.NArg() > 0 {
		return usageErr("unexpected argument %q (every value is a -flag; secrets are never arguments)", c.fs.Arg(0))
	}
	return nil
}

// set reports whether the flag was given on the command line.
func (c *common) set(name string) bool {
	found := false
	c.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// bank is a client of the banking API.
type bank struct {
	base    string
	hc      *http.Client
	auth    string // "Bearer …" (session or staff token)
	device  string // X-Device-Id with a session
	timeout time.Duration
}

func newBank(baseURL, caFile string) (*bank, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, usageErr("-url %q must be https://host:port", baseURL)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, usageErr("-ca: %v (banking's dev mode writes var/bank/tls/ca.pem; run from the repository or pass -ca)", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usageErr("-ca: %s holds no PEM certificate", caFile)
		}
	}
	return &bank{base: strings.TrimSuffix(u.String(), "/"), timeout: 60 * time.Second,
		hc: &http.Client{Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}}, nil
}

// apiError is the bank's {"error":{"code","message"}} answer, with the
// request id the bank answered (X-Request-Id): the bank's logs hold it on
// every line about the request, so a customer or teller quoting it lets
// the operator find what happened.
type apiError struct {
	Status    int
	Code      string
	Message   string // in the reader's language: bankcli asks the bank for it
	RequestID string
}

// Error is the message, then the code and HTTP status for scripts (the
// same in every language), then the request id.
func (e *apiError) Error() string {
	if e.RequestID == "" {
		return tr("%s (%s, HTTP %d)", e.Message, e.Code, e.Status)
	}
	return tr("%s (%s, HTTP %d, request id %s)", e.Message, e.Code, e.Status, e.RequestID)
}

// call sends a JSON request and decodes a 2xx JSON answer into out.
func (b *bank) call(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		j, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(j)
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if b.auth != "" {
		req.Header.Set("Authorization", b.auth)
	}
	if b.device != "" {
		req.Header.Set("X-Device-Id", b.device)
	}
	req.Header.Set("Accept-Language", acceptLanguage()) // the bank's messages in bankcli's language
	resp, err := b.hc.Do(req)
	if err != nil {
		return 0, errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		rid := resp.Header.Get("X-Request-Id")
		if json.Unmarshal(raw, &e) != nil || e.Error.Code == "" {
			return resp.StatusCode, &apiError{Status: resp.StatusCode, Code: "http", Message: strings.TrimSpace(string(raw)), RequestID: rid}
		}
		return resp.StatusCode, &apiError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message, RequestID: rid}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, errorf("%s %s: unexpected answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// errCode returns the bank's error code of err, or "".
func errCode(err error) string {
	var e *apiError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// session is what login keeps for later subcommands.
type session struct {
	URL      string    `json:"url"`
	CA       string    `json:"ca"` // absolute path
	Session  string    `json:"session"`
	Device   string    `json:"device"`
	OS       string    `json:"os"`
	Login    string    `json:"login"`
	Customer string    `json:"customer"`
	StepUp   bool      `json:"step_up"` // the SMS step-up is still open
	Created  time.Time `json:"created"`
}

func defaultSessionFile() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "bankcli.session"
	}
	return filepath.Join(dir, "keyward", "bankcli.session")
}

// saveSession replaces the session file (0600, in a 0700 directory).
func saveSession(path string, s *session) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".bankcli-session-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// loadSession reads the session file, refusing one others may read.
func loadSession(path string) (*session, error) {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, usageErr("no session in %s: run bankcli login first", path)
	}
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, errorf("%s is readable by others (mode %v); delete it and log in again", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s session
	if err := json.Unmarshal(b, &s); err != nil || s.Session == "" {
		return nil, errorf("%s is not a bankcli session file", path)
	}
	return &s, nil
}

// sessionBank loads the saved session and returns a client using it; -url
// and -ca, when given, override the saved ones.
func (c *common) sessionBank() (*bank, *session, error) {
	s, err := loadSession(c.sessionFile)
	if err != nil {
		return nil, nil, err
	}
	u, ca := s.URL, s.CA
	if c.set("url") {
		u = c.url
	}
	if c.set("ca") {
		ca = c.ca
	}
	b, err := newBank(u, ca)
	if err != nil {
		return nil, nil, err
	}
	b.auth, b.device = "Bearer "+s.Session, s.Device
	return b, s, nil
}
