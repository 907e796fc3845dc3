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
// # Endpoints and failover
//
// NewMulti takes the URLs of several nodes of one keysvc cluster (nodes
// that share one store, issue 16: never independent keysvc instances,
// whose keys and confirmations differ); New is NewMulti with one URL.
//
//	c, err := client.NewMulti([]string{"https://keysvc-a:8443", "https://keysvc-b:8443",
//		"https://keysvc-c:8443"}, client.WithHTTPClient(mtlsClient))
//
// An endpoint fails when the connection does (refused, reset, closed
// before or during the answer, a TLS certificate refused), when a request
// times out (the HTTP client's Timeout, not the caller's ctx), or when it
// answers 502, 503 or 504 (a node without its store quorum or its token
// answers 503). A failed endpoint is passed over for a down time
// (WithDownTime, default 2 s), then tried again by the next request; if
// every endpoint is down, requests still try them, the soonest back first,
// so a client never refuses to call on its own.
//
// Requests are spread over the healthy endpoints by default (Spread:
// round robin). That is what banking wants: every node has its own token
// sessions, so spreading uses the cluster's capacity instead of one node's;
// the HTTP Transport keeps one connection pool per endpoint, so every pool
// stays warm and a failover lands on open connections; and a node killed
// under load takes down only its share of the requests in flight, which
// are then repeated on the others when safe. WithBalance(Sticky) sends
// everything to the first healthy endpoint in the order given and goes
// back to it once its down time has passed: a primary site with standbys
// listed after it.
//
// Stats counts failovers (requests sent again to another endpoint),
// retries and calls that no endpoint answered; Endpoints shows each
// endpoint's state and last failure; WithEndpointEvents reports an
// endpoint that fails and its return, once each, for a log.
//
// # Retries
//
// A call that is safe to repeat goes to the next endpoint as soon as one
// fails, with no wait; once every endpoint has failed it makes up to
// WithRetries more rounds (default 2) after a small exponential backoff
// (50 ms, 100 ms, 200 ms … at most 1 s, with jitter). Safe to repeat,
// even when the first answer was lost after the server acted:
//
//   - reads: GetKey, ListKeys, PublicKey, KEKRotation, Confirmation (a
//     poll; a confirmation lives in the cluster's store, so any node
//     answers it);
//   - deterministic answers: Verify, VerifyMAC, MAC, Decrypt;
//   - Sign and SignBatch: signing the same bytes twice harms nobody: the
//     signature is as valid as the first, the first one was never seen by
//     anyone, and each is audited, so the audit log shows two signatures
//     for one request that was repeated. On a key created with confirm
//     "required", a repeat after a lost 202 finds the first request still
//     pending (its id was lost with the answer) and gets 409
//     wire.ErrConfirmationPending, which the caller sees; the first
//     request expires unless the holder approves it, and its signature is
//     then never collected;
//   - Encrypt and DataKey: each attempt draws a fresh nonce or data key,
//     so a repeat gives a second, equally good answer; the first, lost in
//     transit inside TLS, was never used. The cost is one more audit
//     record and one more use of the key's nonce space per repeat,
//     negligible beside its bounds.
//
// Never repeated, on any endpoint: CreateKey, Rotate, UpdateSettings,
// SetVersionState, CancelConfirmation, UnlockHolder, ResetHolder and
// StartKEKRotation. A request that reached a node may have been done (and
// audited) even when its answer was lost, and a repeat would create,
// rotate or destroy twice, get a confusing "already closed", or issue a
// second setup code and void the first. The endpoint that failed is still
// passed over by the next call, and the error (*UnavailableError, not
// repeatable) says the call was not retried; callers decide.
//
// 4xx answers are never retried (the request is wrong, or not allowed,
// on every node alike), nor are 500s, answers that are not JSON, or a
// caller's ctx that ended. A call that gets no usable answer returns an
// *UnavailableError (errors.Is(err, ErrUnavailable)) naming how many
// endpoints it tried, with the last failure in its chain, so
// errors.Is(err, wire.ErrTokenUnavailable) still holds for a 503.
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
// A node whose host is gone (no answer at all, not even a refusal) costs
// the request that finds it its dial: give the HTTP client's Transport a
// dial timeout of a few seconds (net.Dialer.Timeout), as cmd/banking does,
// or that request waits for the whole Timeout before it fails over.
//
// # Concurrency
//
// A Client is safe for concurrent use.
//
// # Limitations
//
//   - The endpoints must be nodes of one cluster: the client cannot tell
//     independent keysvc instances apart, and would spread one key's
//     requests over stores that do not share it.
//   - A write whose connection was refused before anything was sent is
//     not sent elsewhere either, although it could be: the rule stays
//     simple (a write is sent once, whatever failed); the next call
//     avoids the node.
//   - Health is learnt from requests only; there is no background probe,
//     so a node that comes back is found by the first request after its
//     down time (one failed dial per down time while it stays away).
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
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
)

// DefaultRetries is how many more rounds over the endpoints a call that
// is safe to repeat makes once every endpoint has failed.
const DefaultRetries = 2

// Backoff bounds between retries.
const (
	backoffBase = 50 * time.Millisecond
	backoffMax  = time.Second
)

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// Client calls keysvc: one server, or several nodes of one cluster.
type Client struct {
	eps      []*endpoint
	hc       *http.Client
	bearer   string
	retries  int
	balance  Balance
	downTime time.Duration

	cursor                        atomic.Uint64 // Spread's round robin
	onChange                      func(url string, up bool, err error)
	failovers, retried, exhausted atomic.Uint64 // Stats
}

// Option configures a Client.
type Option func(*Client)

// WithBearer authenticates with a bearer token. Without it, the client
// relies on the HTTP client's TLS certificate (mutual TLS).
func WithBearer(token string) Option { return func(c *Client) { c.bearer = token } }

// WithHTTPClient sets the HTTP client, for example one with a client
// certificate for mutual TLS. The default has a 30 s timeout; long polls
// get their wait on top of the Timeout (see "Timeouts"). Its Transport
// keeps one connection pool per endpoint.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithRetries sets how many more rounds over the endpoints a call that is
// safe to repeat makes, after a backoff, once every endpoint has failed
// (default DefaultRetries; 0: each endpoint is tried once).
func WithRetries(n int) Option { return func(c *Client) { c.retries = max(n, 0) } }

// New returns a client for the server at baseURL (http or https).
func New(baseURL string, opts ...Option) (*Client, error) {
	base, err := parseEndpoint(baseURL, "base URL")
	if err != nil {
		return nil, err
	}
	return newClient([]string{base}, opts)
}

// NewMulti returns a client for the nodes of one keysvc cluster, each
// URL as New takes it (at least one; no repeats). Requests are spread
// over them and fail over between them (see "Endpoints and failover").
func NewMulti(urls []string, opts ...Option) (*Client, error) {
	if len(urls) == 0 {
		return nil, errors.New("keysvc client: no endpoint URL given")
	}
	bases := make([]string, len(urls))
	for i, raw := range urls {
		b, err := parseEndpoint(raw, fmt.Sprintf("endpoint URL %d", i+1))
		if err != nil {
			return nil, err
		}
		if j := slices.Index(bases[:i], b); j >= 0 {
			return nil, fmt.Errorf("keysvc client: endpoint URL %d repeats endpoint URL %d", i+1, j+1)
		}
		bases[i] = b
	}
	return newClient(bases, opts)
}

func newClient(bases []string, opts []Option) (*Client, error) {
	c := &Client{hc: &http.Client{Timeout: 30 * time.Second}, retries: DefaultRetries, balance: Spread, downTime: DefaultDownTime}
	for _, b := range bases {
		c.eps = append(c.eps, &endpoint{base: b})
	}
	for _, o := range opts {
		o(c)
	}
	switch {
	case c.hc == nil:
		return nil, errors.New("keysvc client: WithHTTPClient(nil)")
	case c.balance != Spread && c.balance != Sticky:
		return nil, fmt.Errorf("keysvc client: WithBalance(%v): must be Spread or Sticky", c.balance)
	case c.downTime < time.Millisecond:
		return nil, fmt.Errorf("keysvc client: WithDownTime(%v): must be at least 1ms", c.downTime)
	}
	return c, nil
}

// call describes one request.
type call struct {
	method, path string
	in, out      any
	repeat       bool          // safe to send again, to the same or another endpoint
	hold         time.Duration // how long the server may hold the request before answering (long poll)
	probe        bool          // one round over the endpoints, no backoff retries
}

func keyPath(name string, rest ...string) string {
	return "/v1/keys/" + url.PathEscape(name) + strings.Join(rest, "")
}

// outcome is what one attempt tells do.
type outcome int

const (
	answered   outcome = iota // an answer from the endpoint: return err as it is
	stopped                   // the caller's ctx ended, or the request could not be built: return err, the endpoint unjudged
	failed                    // the endpoint failed: connection error, timeout, 502, 503, 504
	certFailed                // the endpoint's certificate was refused
)

// maxBody bounds a success answer (a page of 1,000 keys, a batch of
// 1,000 signatures).
const maxBody = 64 << 20

// once sends one attempt to ep.
func (c *Client) once(ctx context.Context, ep *endpoint, cl call, body []byte) (outcome, error) {
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
	req, err := http.NewRequestWithContext(rctx, cl.method, ep.base+cl.path, rd)
	if err != nil {
		return stopped, fmt.Errorf("keysvc client: %w", err)
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
			return stopped, fmt.Errorf("keysvc client: %s %s: %w", cl.method, cl.path, ctx.Err())
		}
		// No prefix: do wraps every failure in an *UnavailableError,
		// which names the call.
		if certificateError(err) {
			return certFailed, err
		}
		return failed, err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody)) // lets the connection be reused
		resp.Body.Close()
	}()
	if resp.StatusCode >= 400 {
		e := decodeError(resp)
		switch resp.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return failed, e
		}
		return answered, e
	}
	if cl.out == nil {
		return answered, nil
	}
	// The whole body first: a connection lost mid-answer is the
	// endpoint's failure (the server may have acted: repeated only when
	// safe), a body that is not JSON is not.
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		if ctx.Err() != nil {
			return stopped, fmt.Errorf("keysvc client: %s %s: reading the response: %w", cl.method, cl.path, ctx.Err())
		}
		// A *url.Error, like every other transport failure.
		return failed, &url.Error{Op: cl.method, URL: ep.base + cl.path, Err: fmt.Errorf("reading the response: %w", err)}
	}
	if err := json.Unmarshal(b, cl.out); err != nil {
		return answered, fmt.Errorf("keysvc client: %s %s: decoding the response: %w", cl.method, cl.path, err)
	}
	return answered, nil
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
	err = c.do(ctx, call{method: "GET", path: path, out: &l, repeat: true})
	return l.Keys, l.Next, err
}

// GetKey reads a key's metadata.
func (c *Client) GetKey(ctx context.Context, name string) (wire.KeyView, error) {
	var v wire.KeyView
	return v, c.do(ctx, call{method: "GET", path: keyPath(name), out: &v, repeat: true})
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
	return r, c.do(ctx, call{method: "POST", path: keyPath(name, "/sign"), in: req, out: &r, repeat: true})
}

// SignBatch signs up to 1000 messages or digests; results are in order.
func (c *Client) SignBatch(ctx context.Context, name string, reqs []wire.SignRequest) ([]wire.SignResult, error) {
	in := wire.SignBatchRequest{Items: reqs}
	var out wire.SignBatchResult
	err := c.do(ctx, call{method: "POST", path: keyPath(name, "/sign-batch"), in: in, out: &out, repeat: true})
	return out.Signatures, err
}

// Verify checks a signature; a well-formed signature that does not match
// is (false, nil).
func (c *Client) Verify(ctx context.Context, name string, req wire.VerifyRequest) (bool, error) {
	var out wire.VerifyResult
	err := c.do(ctx, call{method: "POST", path: keyPath(name, "/verify"), in: req, out: &out, repeat: true})
	return out.Valid, err
}

// MAC returns the HMAC-SM3 of message under the primary version of a mac
// key, "kw:v<n>:…".
func (c *Client) MAC(ctx context.Context, name string, message []byte) (string, error) {
	var out wire.MACResult
	err := c.do(ctx, call{method: "POST", path: keyPath(name, "/mac"), in: wire.MACRequest{Message: message}, out: &out, repeat: true})
	return out.MAC, err
}

// VerifyMAC checks a MAC made by MAC (constant-time on the server).
func (c *Client) VerifyMAC(ctx context.Context, name string, message []byte, mac string) (bool, error) {
	var out wire.VerifyResult
	err := c.do(ctx, call{method: "POST", path: keyPath(name, "/mac-verify"), in: wire.VerifyMACRequest{Message: message, MAC: mac}, out: &out, repeat: true})
	return out.Valid, err
}

// Encrypt encrypts plaintext, bound to aad, with the primary version.
func (c *Client) Encrypt(ctx context.Context, name string, plaintext, aad []byte) (ciphertext string, version int, err error) {
	in := wire.EncryptRequest{Plaintext: plaintext, AAD: aad}
	var out wire.EncryptResult
	err = c.do(ctx, call{method: "POST", path: keyPath(name, "/encrypt"), in: in, out: &out, repeat: true})
	return out.Ciphertext, out.Version, err
}

// Decrypt decrypts a ciphertext from Encrypt with the same aad.
func (c *Client) Decrypt(ctx context.Context, name string, ciphertext string, aad []byte) ([]byte, error) {
	in := wire.DecryptRequest{Ciphertext: ciphertext, AAD: aad}
	var out wire.DecryptResult
	err := c.do(ctx, call{method: "POST", path: keyPath(name, "/decrypt"), in: in, out: &out, repeat: true})
	return out.Plaintext, err
}

// DataKey generates a data key of size bytes (16, 24 or 32; 0 means 32).
func (c *Client) DataKey(ctx context.Context, name string, size int, aad []byte) (wire.DataKey, error) {
	in := wire.DataKeyRequest{AAD: aad}
	if size != 0 {
		in.Size = &size
	}
	var dk wire.DataKey
	return dk, c.do(ctx, call{method: "POST", path: keyPath(name, "/datakey"), in: in, out: &dk, repeat: true})
}

// PublicKey returns a version's public key (version 0: the primary).
func (c *Client) PublicKey(ctx context.Context, name string, version int) (wire.PublicKeyResult, error) {
	path := keyPath(name, "/public")
	if version != 0 {
		path += "?version=" + strconv.Itoa(version)
	}
	var r wire.PublicKeyResult
	return r, c.do(ctx, call{method: "GET", path: path, out: &r, repeat: true})
}

// Ready asks the readiness probe of the endpoints in turn and returns
// nil at the first that answers ready: the service can be called. No
// backoff rounds: a probe that fails everywhere is the answer, an
// *UnavailableError holding the last endpoint's.
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, call{method: "GET", path: "/readyz", repeat: true, probe: true})
}
