// Package client is a Go client for keysvc's HTTP API (keysvc/api).
//
//	c, err := client.New("https://keysvc.bank.internal:8443",
//		client.WithHTTPClient(mtlsClient)) // or client.WithBearer(token)
//	sig, err := c.Sign(ctx, "receipt-signer", wire.SignRequest{Message: receipt})
//	if errors.Is(err, wire.ErrForbidden) { … }
//
// Server errors come back as *Error, whose Is matches the keysvc sentinel
// of its code, so callers test errors.Is(err, wire.ErrKeyNotFound) as
// they would against the Service itself.
//
// # Retries
//
// Only idempotent calls are retried: GetKey, ListKeys, Verify, VerifyMAC,
// PublicKey and Confirmation (a poll), on a connection error or a 502, 503
// or 504, with a small exponential backoff (50 ms, 100 ms, 200 ms … at most
// 1 s, with jitter). Sign, SignBatch, MAC, Encrypt, Decrypt, DataKey,
// Rotate, CreateKey, UpdateSettings, SetVersionState, CancelConfirmation,
// UnlockHolder and ResetHolder are never retried: a request that reached
// the token may have been done (and audited) even when its answer was
// lost, and a retry would sign, rotate or destroy twice, ask the holder a
// second time, or issue a second setup code and lose the first. Callers
// decide for those.
//
// # Display and confirm
//
// Sign on a key created with confirm "required" signs nothing yet: the
// server answers 202 and the SignResult holds a pending Confirmation
// instead of a signature. Poll it with Confirmation (a long poll of up to
// MaxConfirmationWait), withdraw it with CancelConfirmation, or let
// SignConfirmed do both: it returns the signature once the holder
// approves, or an error wrapping ErrNotConfirmed. The holder approves on
// the confirmation endpoint, a separate listener this client does not
// talk to.
//
// # Timeouts
//
// The default HTTP client has a 30 s timeout (http.Client.Timeout), which
// bounds every request. A long poll is held by the server for its wait
// before it answers, so it gets the wait on top: it is sent through a copy
// of the HTTP client without Timeout, under a context deadline of the wait
// plus that Timeout (25 s + 30 s by default). The shared client is not
// changed, so no other request waits longer than before, and a caller's
// own shorter Timeout (WithHTTPClient) cannot cut a long poll short. An
// HTTP client without a Timeout relies on ctx alone, as before.
//
// # Concurrency
//
// A Client is safe for concurrent use.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
)

// DefaultRetries is how many times an idempotent call is retried.
const DefaultRetries = 2

// Backoff bounds between retries.
const (
	backoffBase = 50 * time.Millisecond
	backoffMax  = time.Second
)

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// Client calls one keysvc server.
type Client struct {
	base    string // scheme://host[:port][/prefix], no trailing slash
	hc      *http.Client
	bearer  string
	retries int
}

// Option configures a Client.
type Option func(*Client)

// WithBearer authenticates with a bearer token. Without it, the client
// relies on the HTTP client's TLS certificate (mutual TLS).
func WithBearer(token string) Option { return func(c *Client) { c.bearer = token } }

// WithHTTPClient sets the HTTP client, for example one with a client
// certificate for mutual TLS. The default has a 30 s timeout; long polls
// get their wait on top of the Timeout (see "Timeouts").
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithRetries sets how many times idempotent calls are retried (default
// DefaultRetries; 0 disables retries).
func WithRetries(n int) Option { return func(c *Client) { c.retries = max(n, 0) } }

// New returns a client for the server at baseURL (http or https).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("keysvc client: base URL %q must be http(s)://host[:port]", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("keysvc client: base URL %q must not hold credentials, a query or a fragment", baseURL)
	}
	c := &Client{base: strings.TrimSuffix(u.String(), "/"), hc: &http.Client{Timeout: 30 * time.Second}, retries: DefaultRetries}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		return nil, errors.New("keysvc client: WithHTTPClient(nil)")
	}
	return c, nil
}

// call describes one request.
type call struct {
	method, path string
	in, out      any
	idempotent   bool          // may be retried
	hold         time.Duration // how long the server may hold the request before answering (long poll)
}

func keyPath(name string, rest ...string) string {
	return "/v1/keys/" + url.PathEscape(name) + strings.Join(rest, "")
}

// do sends c, retrying idempotent calls, and decodes the answer into out.
func (c *Client) do(ctx context.Context, cl call) error {
	var body []byte
	if cl.in != nil {
		var err error
		if body, err = json.Marshal(cl.in); err != nil {
			return fmt.Errorf("keysvc client: encoding the request: %w", err)
		}
	}
	attempts := 1
	if cl.idempotent {
		attempts += c.retries
	}
	var err error
	for i := range attempts {
		if i > 0 {
			if werr := sleep(ctx, backoff(i)); werr != nil {
				return fmt.Errorf("keysvc client: %s %s: %w (after %v)", cl.method, cl.path, werr, err)
			}
		}
		var retry bool
		retry, err = c.once(ctx, cl, body)
		if err == nil || !retry {
			return err
		}
	}
	return err
}

// once sends one attempt; retry says whether a failure may be retried.
func (c *Client) once(ctx context.Context, cl call, body []byte) (retry bool, err error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	hc, rctx := c.hc, ctx
	if cl.hold > 0 && hc.Timeout > 0 {
		// http.Client.Timeout cannot be lengthened for one request: a long
		// poll goes through a copy without it (same Transport, so the same
		// connections), bounded by its own deadline instead.
		lp := *hc
		lp.Timeout = 0
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, cl.hold+hc.Timeout)
		defer cancel()
		hc = &lp
	}
	req, err := http.NewRequestWithContext(rctx, cl.method, c.base+cl.path, rd)
	if err != nil {
		return false, fmt.Errorf("keysvc client: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("keysvc client: %s %s: %w", cl.method, cl.path, ctx.Err())
		}
		return cl.idempotent && !certificateError(err), fmt.Errorf("keysvc client: %s %s: %w", cl.method, cl.path, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody)) // lets the connection be reused
		resp.Body.Close()
	}()
	if resp.StatusCode >= 400 {
		e := decodeError(resp)
		switch resp.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return cl.idempotent, e
		}
		return false, e
	}
	if cl.out == nil {
		return false, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(cl.out); err != nil {
		return false, fmt.Errorf("keysvc client: %s %s: decoding the response: %w", cl.method, cl.path, err)
	}
	return false, nil
}

// certificateError reports a TLS verification failure, which a retry
// cannot fix.
func certificateError(err error) bool {
	var (
		cv *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		hn x509.HostnameError
	)
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn)
}

func backoff(attempt int) time.Duration {
	d := min(backoffBase<<(attempt-1), backoffMax)
	return d/2 + rand.N(d/2+1) // jitter: [d/2, d]
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// CreateKey creates a key (admin clients only).
func (c *Client) CreateKey(ctx context.Context, req wire.CreateKeyRequest) (wire.KeyView, error) {
	var v wire.KeyView
	return v, c.do(ctx, call{method: "POST", path: "/v1/keys", in: req, out: &v})
}

// ListKeys lists every key the caller may read, following the pages.
func (c *Client) ListKeys(ctx context.Context) ([]wire.KeyView, error) {
	var all []wire.KeyView
	after := ""
	for {
		page, next, err := c.ListKeysPage(ctx, after, 0)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		after = next
	}
}

// ListKeysPage lists one page: keys named after after, at most limit (0:
// the server's maximum, 1000). next is the after of the following page, ""
// on the last.
func (c *Client) ListKeysPage(ctx context.Context, after string, limit int) (keys []wire.KeyView, next string, err error) {
	var l wire.KeyList
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/keys"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	err = c.do(ctx, call{method: "GET", path: path, out: &l, idempotent: true})
	return l.Keys, l.Next, err
}

// GetKey reads a key's metadata.
func (c *Client) GetKey(ctx context.Context, name string) (wire.KeyView, error) {
	var v wire.KeyView
	return v, c.do(ctx, call{method: "GET", path: keyPath(name), out: &v, idempotent: true})
}

// Rotate makes a new primary version.
func (c *Client) Rotate(ctx context.Context, name string) (wire.KeyView, error) {
	var v wire.KeyView
	return v, c.do(ctx, call{method: "POST", path: keyPath(name, "/rotate"), out: &v})
}

// UpdateSettings changes the key's minimum version and rotation period.
func (c *Client) UpdateSettings(ctx context.Context, name string, req wire.KeySettingsRequest) (wire.KeyView, error) {
	var v wire.KeyView
	return v, c.do(ctx, call{method: "POST", path: keyPath(name, "/settings"), in: req, out: &v})
}

// SetVersionState disables, enables, schedules the destruction of, or
// cancels the destruction of one version. delay is used by
// ActionScheduleDestroy only (0: the server's default).
func (c *Client) SetVersionState(ctx context.Context, name string, version int, action wire.VersionAction, delay time.Duration) (wire.KeyView, error) {
	var in any
	if action == wire.ActionScheduleDestroy && delay != 0 {
		in = wire.ScheduleDestroyRequest{Delay: wire.Duration(delay)}
	}
	var v wire.KeyView
	path := keyPath(name, "/versions/", strconv.Itoa(version), "/", url.PathEscape(string(action)))
	return v, c.do(ctx, call{method: "POST", path: path, in: in, out: &v})
}

// Sign signs a message or digest with the key's primary version.
//
// On a confirm-required key the server answers 202: the result has no
// signature and Confirmation is set (pending). Collect the signature with
// Confirmation, or use SignConfirmed.
func (c *Client) Sign(ctx context.Context, name string, req wire.SignRequest) (wire.SignResult, error) {
	var r wire.SignResult
	return r, c.do(ctx, call{method: "POST", path: keyPath(name, "/sign"), in: req, out: &r})
}

// SignBatch signs up to 1000 messages or digests; results are in order.
func (c *Client) SignBatch(ctx context.Context, name string, reqs []wire.SignRequest) ([]wire.SignResult, error) {
	in := wire.SignBatchRequest{Items: reqs}
	var out wire.SignBatchResult
	err := c.do(ctx, call{method: "POST", path: keyPath(name, "/sign-batch"), in: in, out: &out})
	return out.Signatures, err
}

// Verify checks a signature; a well-formed signature that does not match
// is (false, nil).
func (c *Client) Verify(ctx context.Context, name string, req wire.VerifyRequest) (bool, error) {
	var out wire.VerifyResult
	err := c.do(ctx, call{method: "POST", path: keyPath(name, "/verify"), in: req, out: &out, idempotent: true})
	return out.Valid, err
}

// MAC returns the HMAC-SM3 of message under the primary version of a mac
// key, "kw:v<n>:…". Not retried.
func (c *Client) MAC(ctx context.Context, name string, message []byte) (string, error) {
	var out wire.MACResult
	err := c.do(ctx, call{method: "POST", path: keyPath(name, "/mac"), in: wire.MACRequest{Message: message}, out: &out})
	return out.MAC, err
}

// VerifyMAC checks a MAC made by MAC (constant-time on the server).
func (c *Client) VerifyMAC(ctx context.Context, name string, message []byte, mac string) (bool, error) {
	var out wire.VerifyResult
	err := c.do(ctx, call{method: "POST", path: keyPath(name, "/mac-verify"), in: wire.VerifyMACRequest{Message: message, MAC: mac}, out: &out, idempotent: true})
	return out.Valid, err
}

// Encrypt encrypts plaintext, bound to aad, with the primary version.
func (c *Client) Encrypt(ctx context.Context, name string, plaintext, aad []byte) (ciphertext string, version int, err error) {
	in := wire.EncryptRequest{Plaintext: plaintext, AAD: aad}
	var out wire.EncryptResult
	err = c.do(ctx, call{method: "POST", path: keyPath(name, "/encrypt"), in: in, out: &out})
	return out.Ciphertext, out.Version, err
}

// Decrypt decrypts a ciphertext from Encrypt with the same aad.
func (c *Client) Decrypt(ctx context.Context, name string, ciphertext string, aad []byte) ([]byte, error) {
	in := wire.DecryptRequest{Ciphertext: ciphertext, AAD: aad}
	var out wire.DecryptResult
	err := c.do(ctx, call{method: "POST", path: keyPath(name, "/decrypt"), in: in, out: &out})
	return out.Plaintext, err
}

// DataKey generates a data key of size bytes (16, 24 or 32; 0 means 32).
func (c *Client) DataKey(ctx context.Context, name string, size int, aad []byte) (wire.DataKey, error) {
	in := wire.DataKeyRequest{AAD: aad}
	if size != 0 {
		in.Size = &size
	}
	var dk wire.DataKey
	return dk, c.do(ctx, call{method: "POST", path: keyPath(name, "/datakey"), in: in, out: &dk})
}

// PublicKey returns a version's public key (version 0: the primary).
func (c *Client) PublicKey(ctx context.Context, name string, version int) (wire.PublicKeyResult, error) {
	path := keyPath(name, "/public")
	if version != 0 {
		path += "?version=" + strconv.Itoa(version)
	}
	var r wire.PublicKeyResult
	return r, c.do(ctx, call{method: "GET", path: path, out: &r, idempotent: true})
}

// Ready asks the server's readiness probe once (no retries: a probe that
// fails is the answer).
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, call{method: "GET", path: "/readyz"})
}
