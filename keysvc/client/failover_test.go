package client_test

// Several endpoints (NewMulti): real API servers (keysvc/api over the fake
// backend) on loopback over TLS, one per node, killed (listener and every
// connection closed with a reset, as kill -9 leaves them) and brought back
// on the same address.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/api"
	"github.com/keyward/keyward/keysvc/client"
	"github.com/keyward/keyward/keysvc/wire"
)

// testCA is a throwaway CA and a server certificate for 127.0.0.1.
type testCA struct {
	pool *x509.CertPool
	cert tls.Certificate
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client test CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testCA{pool: pool, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

// httpClient trusts the CA and keeps connections to each node.
func (ca testCA) httpClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12},
		MaxIdleConns:    64, MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}}
}

// node is one keysvc API server over TLS, reached through a TCP relay on
// a fixed loopback address. kill closes the relay's listener and resets
// every connection through it, which is what clients see of a kill -9
// (the server itself keeps running behind it: an in-process server whose
// own sockets are closed under it is not a killed process); restart
// listens on the same address again.
type node struct {
	t       *testing.T
	name    string
	b       *fakeBackend
	ca      testCA
	addr    string // what clients dial
	url     string
	backend string // the API server's own address

	mu    sync.Mutex
	ln    net.Listener
	conns []*net.TCPConn
}

// startNode serves a new fake backend at a free loopback address.
func startNode(t *testing.T, ca testCA, name string) *node {
	t.Helper()
	n := &node{t: t, name: name, b: newFake(), ca: ca}
	sum := sha256.Sum256([]byte(token))
	srv, err := api.New(api.Config{Backend: n.b, Logger: slog.New(slog.DiscardHandler),
		Clients: []api.Client{{Name: "app", Admin: true, TokenSHA256: hex.EncodeToString(sum[:])}}})
	if err != nil {
		t.Fatal(err)
	}
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.backend = bln.Addr().String()
	done := make(chan error, 1)
	go func() {
		done <- srv.ServeTLS(bln, &tls.Config{Certificates: []tls.Certificate{ca.cert}, MinVersion: tls.VersionTLS12})
	}()
	t.Cleanup(func() {
		n.kill()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("%s: Shutdown: %v", name, err)
		}
		<-done
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr, n.url = ln.Addr().String(), "https://"+ln.Addr().String()
	n.relay(ln)
	return n
}

// relay accepts on ln and pipes each connection to the API server.
func (n *node) relay(ln net.Listener) {
	n.mu.Lock()
	n.ln = ln
	n.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", n.backend)
			if err != nil {
				c.Close()
				continue
			}
			n.mu.Lock()
			if n.ln != ln { // killed meanwhile
				n.mu.Unlock()
				c.Close()
				s.Close()
				return
			}
			n.conns = append(n.conns, c.(*net.TCPConn), s.(*net.TCPConn))
			n.mu.Unlock()
			go pipe(c, s)
			go pipe(s, c)
		}
	}()
}

func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// kill closes the listener and resets every connection.
func (n *node) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ln == nil {
		return
	}
	n.ln.Close()
	for _, c := range n.conns {
		_ = c.SetLinger(0) // a reset, as the kernel sends for a killed process
		c.Close()
	}
	n.ln, n.conns = nil, nil
}

// restart listens on the same address again.
func (n *node) restart() {
	n.t.Helper()
	ln, err := net.Listen("tcp", n.addr)
	if err != nil {
		n.t.Fatalf("%s: listening again on %s: %v", n.name, n.addr, err)
	}
	n.relay(ln)
}

// TestFailoverBadCertificate: a node whose certificate the client does
// not trust is passed over like a dead one (no request ever reaches it),
// and is not asked again in the same call's later rounds: a retry cannot
// fix a certificate.
func TestFailoverBadCertificate(t *testing.T) {
	ca := newTestCA(t)
	good, bad := startNode(t, ca, "good"), startNode(t, newTestCA(t), "bad")
	hc := ca.httpClient(5 * time.Second)
	t.Cleanup(hc.CloseIdleConnections)
	c, err := client.NewMulti([]string{bad.url, good.url}, client.WithBearer(token), client.WithHTTPClient(hc), client.WithBalance(client.Sticky))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sign(context.Background(), "k1", digest); err != nil {
		t.Fatalf("Sign with an untrusted first node: %v", err)
	}
	if eps := c.Endpoints(); !eps[0].Down || !strings.Contains(eps[0].LastFailure, "certificate") || good.b.count("Sign") != 1 {
		t.Errorf("after Sign: %+v, %d signatures on the good node", eps, good.b.count("Sign"))
	}

	// Only untrusted nodes: one round, not three.
	only, err := client.NewMulti([]string{bad.url}, client.WithBearer(token), client.WithHTTPClient(hc), client.WithRetries(2))
	if err != nil {
		t.Fatal(err)
	}
	_, err = only.GetKey(context.Background(), "k1")
	var ue *client.UnavailableError
	var cv *tls.CertificateVerificationError
	if !errors.As(err, &ue) || ue.Attempts != 1 || !errors.As(err, &cv) {
		t.Errorf("GetKey from an untrusted node = %v", err)
	}
	if bad.b.count("GetKey") != 0 || bad.b.count("Sign") != 0 {
		t.Error("a request reached the untrusted node")
	}
}

// cluster starts count nodes (a, b, c, ...) and a client for them all.
func cluster(t *testing.T, count int, opts ...client.Option) ([]*node, *client.Client) {
	t.Helper()
	ca := newTestCA(t)
	nodes := make([]*node, count)
	urls := make([]string, count)
	for i := range nodes {
		nodes[i] = startNode(t, ca, string(rune('a'+i)))
		urls[i] = nodes[i].url
	}
	hc := ca.httpClient(5 * time.Second)
	t.Cleanup(hc.CloseIdleConnections)
	c, err := client.NewMulti(urls, append([]client.Option{client.WithBearer(token), client.WithHTTPClient(hc),
		client.WithDownTime(300 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return nodes, c
}

func counts(nodes []*node, method string) []int {
	out := make([]int, len(nodes))
	for i, n := range nodes {
		out[i] = n.b.count(method)
	}
	return out
}

var digest = wire.SignRequest{Digest: make([]byte, 32)}

// safeCalls are the calls safe to repeat, each checking its answer.
func safeCalls(c *client.Client) map[string]func(context.Context) error {
	check := func(ok bool, err error, what string) error {
		if err == nil && !ok {
			err = fmt.Errorf("%s: wrong answer", what)
		}
		return err
	}
	return map[string]func(context.Context) error{
		"Sign": func(ctx context.Context) error {
			r, err := c.Sign(ctx, "k1", digest)
			return check(r.Signature == "kw:v2:c2ln", err, "Sign")
		},
		"SignBatch": func(ctx context.Context) error {
			r, err := c.SignBatch(ctx, "k1", []wire.SignRequest{digest, digest})
			return check(len(r) == 2, err, "SignBatch")
		},
		"Verify": func(ctx context.Context) error {
			ok, err := c.Verify(ctx, "k1", wire.VerifyRequest{Digest: digest.Digest, Signature: "kw:v2:c2ln"})
			return check(ok, err, "Verify")
		},
		"MAC": func(ctx context.Context) error {
			m, err := c.MAC(ctx, "m1", []byte("x"))
			return check(m == "kw:v1:bWFj", err, "MAC")
		},
		"VerifyMAC": func(ctx context.Context) error {
			ok, err := c.VerifyMAC(ctx, "m1", []byte("x"), "kw:v1:bWFj")
			return check(ok, err, "VerifyMAC")
		},
		"Decrypt": func(ctx context.Context) error {
			p, err := c.Decrypt(ctx, "e1", "kw:v2:x", nil)
			return check(string(p) == "plain:kw:v2:x", err, "Decrypt")
		},
		"Encrypt": func(ctx context.Context) error {
			ct, _, err := c.Encrypt(ctx, "e1", []byte("p"), nil)
			return check(ct == "kw:v2:p", err, "Encrypt")
		},
		"DataKey": func(ctx context.Context) error {
			dk, err := c.DataKey(ctx, "e1", 16, nil)
			return check(len(dk.Plaintext) == 16, err, "DataKey")
		},
		"PublicKey": func(ctx context.Context) error {
			pk, err := c.PublicKey(ctx, "k1", 0)
			return check(pk.JWK.Kid == "k1", err, "PublicKey")
		},
		"GetKey": func(ctx context.Context) error {
			k, err := c.GetKey(ctx, "k1")
			return check(k.Name == "k1", err, "GetKey")
		},
		"ListKeys": func(ctx context.Context) error {
			ks, err := c.ListKeys(ctx)
			return check(len(ks) == 2, err, "ListKeys")
		},
	}
}

// TestFailoverKilledNode: a node killed under load (eight callers, warm
// connections to all three) costs the callers nothing; every safe call
// lands on the others while it is down; back on its address, it is used
// again.
func TestFailoverKilledNode(t *testing.T) {
	var (
		evMu   sync.Mutex
		events = map[string][]bool{}
	)
	nodes, c := cluster(t, 3, client.WithEndpointEvents(func(url string, up bool, err error) {
		if up != (err == nil) {
			t.Errorf("event for %s: up %v with error %v", url, up, err)
		}
		evMu.Lock()
		events[url] = append(events[url], up)
		evMu.Unlock()
	}))
	ctx := context.Background()

	// Spread: round robin over the three.
	for range 30 {
		if _, err := c.Sign(ctx, "k1", digest); err != nil {
			t.Fatal(err)
		}
	}
	if got := counts(nodes, "Sign"); got[0] != 10 || got[1] != 10 || got[2] != 10 {
		t.Fatalf("30 signatures spread as %v, want 10 on each", got)
	}

	// Eight callers sign in a loop; b is killed under them.
	var (
		wg      sync.WaitGroup
		stop    atomic.Bool
		okCount atomic.Int64
		errsMu  sync.Mutex
		errs    []error
		// latency: the worst of calls started within 50 ms of the kill, and
		// of all
		maxNearKill, maxAll time.Duration
		killAt              = time.Now().Add(time.Hour) // set before the kill
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				start := time.Now()
				_, err := c.Sign(ctx, "k1", digest)
				lat := time.Since(start)
				errsMu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					okCount.Add(1)
				}
				if start.After(killAt.Add(-50*time.Millisecond)) && start.Before(killAt.Add(50*time.Millisecond)) {
					maxNearKill = max(maxNearKill, lat)
				}
				maxAll = max(maxAll, lat)
				errsMu.Unlock()
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	before := nodes[1].b.count("Sign")
	errsMu.Lock()
	killAt = time.Now()
	errsMu.Unlock()
	killed := killAt
	nodes[1].kill()
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d signatures failed while b was killed; first: %v", len(errs), int(okCount.Load())+len(errs), errs[0])
	}
	st := c.Stats()
	t.Logf("kill under load: %d signatures, none failed; b had signed %d before the kill (%v); failovers %d, retries %d; "+
		"latency max %v for calls started within 50 ms of the kill, %v overall",
		okCount.Load(), before, time.Since(killed).Round(time.Millisecond), st.Failovers, st.Retries, maxNearKill, maxAll)
	if st.Failovers == 0 {
		t.Error("b was killed under load and no request failed over")
	}
	if eps := c.Endpoints(); !eps[1].Down || eps[1].Failures == 0 || eps[1].LastFailure == "" || eps[0].Down || eps[2].Down {
		t.Errorf("endpoints after b was killed: %+v", eps)
	}

	// While b is down, every safe call answers, from a or c only.
	bCalls := map[string]int{}
	for name := range safeCalls(c) {
		bCalls[name] = nodes[1].b.count(name)
	}
	for range 3 { // past b's down time: b is tried again and fails again
		for name, f := range safeCalls(c) {
			if err := f(ctx); err != nil {
				t.Errorf("%s with b down: %v", name, err)
			}
		}
		time.Sleep(150 * time.Millisecond)
	}
	for name, n := range bCalls {
		if got := nodes[1].b.count(name); got != n {
			t.Errorf("%s reached the killed node b (%d calls, %d before)", name, got, n)
		}
	}

	// b comes back: after its down time it gets its share again.
	nodes[1].restart()
	time.Sleep(400 * time.Millisecond)
	b0 := nodes[1].b.count("Sign")
	for range 30 {
		if _, err := c.Sign(ctx, "k1", digest); err != nil {
			t.Fatal(err)
		}
	}
	if got := nodes[1].b.count("Sign") - b0; got != 10 {
		t.Errorf("b back: it signed %d of the next 30, want 10", got)
	}
	if c.Endpoints()[1].Down {
		t.Error("b is back and still marked down")
	}

	// Events: b went down and came back (once each, unless a request
	// answered on b just before the kill was read after the first
	// failure); a and c never changed.
	evMu.Lock()
	defer evMu.Unlock()
	eb := events[nodes[1].url]
	if len(eb) < 2 || len(eb)%2 != 0 || eb[0] || !eb[len(eb)-1] {
		t.Errorf("b's events %v, want down, up", eb)
	}
	for i := 1; i < len(eb); i++ {
		if eb[i] == eb[i-1] {
			t.Errorf("b's events %v repeat a state", eb)
		}
	}
	if len(events[nodes[0].url])+len(events[nodes[2].url]) != 0 {
		t.Errorf("events for nodes that never failed: %v", events)
	}
}

// TestFailover503: a node answering 503 is left for the next; Sticky
// returns to the first once its down time has passed.
func TestFailover503(t *testing.T) {
	nodes, c := cluster(t, 2, client.WithBalance(client.Sticky))
	ctx := context.Background()
	nodes[0].b.fail("Sign", fmt.Errorf("quorum: %w", wire.ErrAuditUnavailable))
	if _, err := c.Sign(ctx, "k1", digest); err != nil {
		t.Fatalf("Sign with a 503 on a: %v", err)
	}
	if got := counts(nodes, "Sign"); got[0] != 1 || got[1] != 1 {
		t.Errorf("Sign calls %v, want [1 1]: a's 503, then b", got)
	}
	if st := c.Stats(); st.Failovers != 1 || st.Retries != 0 {
		t.Errorf("Stats = %+v, want one failover", st)
	}
	if eps := c.Endpoints(); !eps[0].Down || eps[0].LastFailure != "HTTP 503 audit_unavailable" {
		t.Errorf("a after its 503: %+v", eps[0])
	}
	// a is passed over while down (Sticky would otherwise pick it) ...
	if _, err := c.GetKey(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if got := counts(nodes, "GetKey"); got[0] != 0 || got[1] != 1 {
		t.Errorf("GetKey during a's down time went to %v, want b", got)
	}
	// ... and used again after it.
	time.Sleep(350 * time.Millisecond)
	if _, err := c.GetKey(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if got := counts(nodes, "GetKey"); got[0] != 1 {
		t.Errorf("GetKey after a's down time went to %v, want a", got)
	}
}

// TestFailoverUnsafeNotRetried: a write that meets a dead node, a 503 or
// an answer lost to a timeout is not sent to another node; the next write
// goes to a node that works.
func TestFailoverUnsafeNotRetried(t *testing.T) {
	nodes, c := cluster(t, 2, client.WithBalance(client.Sticky))
	ctx := context.Background()
	notRepeated := func(err error, what string) {
		t.Helper()
		var ue *client.UnavailableError
		if !errors.As(err, &ue) || ue.Repeatable || ue.Attempts != 1 || !errors.Is(err, client.ErrUnavailable) ||
			!strings.Contains(err.Error(), "not retried") {
			t.Errorf("%s: %v", what, err)
		}
	}

	nodes[0].kill()
	_, err := c.Rotate(ctx, "k1")
	notRepeated(err, "Rotate on a dead node")
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Errorf("Rotate on a dead node: no *url.Error in %v", err)
	}
	if n := nodes[1].b.count("Rotate"); n != 0 {
		t.Errorf("Rotate was sent to b after a connection failure on a (%d calls)", n)
	}
	// a is now passed over: the next write goes to b.
	if _, err := c.Rotate(ctx, "k1"); err != nil || nodes[1].b.count("Rotate") != 1 {
		t.Errorf("Rotate with a down: %v (%d calls on b)", err, nodes[1].b.count("Rotate"))
	}
	nodes[0].restart()
	time.Sleep(350 * time.Millisecond)

	// A 503 on a write is not repeated either.
	nodes[0].b.fail("SetVersionState", fmt.Errorf("x: %w", wire.ErrTokenUnavailable))
	_, err = c.SetVersionState(ctx, "k1", 1, wire.ActionDisable, 0)
	notRepeated(err, "SetVersionState on a 503")
	if !errors.Is(err, wire.ErrTokenUnavailable) {
		t.Errorf("SetVersionState on a 503: %v", err)
	}
	if got := counts(nodes, "SetVersionState"); got[0] != 1 || got[1] != 0 {
		t.Errorf("SetVersionState calls %v, want [1 0]", got)
	}
	time.Sleep(350 * time.Millisecond)

	// An answer lost after the server acted (the HTTP timeout fires
	// mid-request): a write is not repeated, a signature is.
	slow, err := client.NewMulti([]string{nodes[0].url, nodes[1].url}, client.WithBearer(token),
		client.WithHTTPClient(nodes[0].ca.httpClient(300*time.Millisecond)), client.WithBalance(client.Sticky),
		client.WithDownTime(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	nodes[0].b.delay("CreateKey", time.Second)
	nodes[0].b.delay("Sign", time.Second)
	_, err = slow.CreateKey(ctx, wire.CreateKeyRequest{Name: "k2"})
	notRepeated(err, "CreateKey whose answer was lost")
	if got := counts(nodes, "CreateKey"); got[0] != 1 || got[1] != 0 {
		t.Errorf("CreateKey calls %v, want [1 0]: done on a, never repeated", got)
	}
	time.Sleep(350 * time.Millisecond)
	signs := counts(nodes, "Sign")
	if r, err := slow.Sign(ctx, "k1", digest); err != nil || r.Signature == "" {
		t.Fatalf("Sign whose answer a lost = %+v, %v", r, err)
	}
	if got := counts(nodes, "Sign"); got[0] != signs[0]+1 || got[1] != signs[1]+1 {
		t.Errorf("Sign calls %v from %v: want one on a (answer lost) and one on b", got, signs)
	}
}

// TestFailover4xxNotRetried: a node's 4xx is the answer.
func TestFailover4xxNotRetried(t *testing.T) {
	nodes, c := cluster(t, 3)
	ctx := context.Background()
	for i, sentinel := range []error{wire.ErrKeyNotFound, wire.ErrForbidden, wire.ErrConfirmationPending, wire.ErrInvalidArgument} {
		for _, n := range nodes {
			n.b.fail("Sign", fmt.Errorf("k1: %w", sentinel))
		}
		_, err := c.Sign(ctx, "k1", digest)
		if !errors.Is(err, sentinel) || errors.Is(err, client.ErrUnavailable) {
			t.Errorf("Sign answered %v: got %v", sentinel, err)
		}
		if total := counts(nodes, "Sign"); total[0]+total[1]+total[2] != i+1 {
			t.Errorf("%v: Sign calls %v, want %d in all (no retry)", sentinel, total, i+1)
		}
		for _, n := range nodes {
			n.b.fail("Sign")
		}
	}
	for _, e := range c.Endpoints() {
		if e.Down || e.Failures != 0 {
			t.Errorf("a 4xx marked %s down: %+v", e.URL, e)
		}
	}
	if st := c.Stats(); st != (client.Stats{}) {
		t.Errorf("Stats after 4xx answers = %+v, want zero", st)
	}
}

// TestFailoverAllDown: with every node dead, a safe call tries each, in
// each round, and says how many it tried; the bearer token is nowhere in
// the error.
func TestFailoverAllDown(t *testing.T) {
	nodes, c := cluster(t, 3, client.WithRetries(1))
	for _, n := range nodes {
		n.kill()
	}
	start := time.Now()
	_, err := c.Sign(context.Background(), "k1", digest)
	took := time.Since(start)
	var ue *client.UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("Sign with every node dead = %v", err)
	}
	if ue.Tried != 3 || ue.Endpoints != 3 || ue.Attempts != 6 || !ue.Repeatable {
		t.Errorf("UnavailableError = %+v, want 3 of 3 tried, 6 attempts (two rounds)", ue)
	}
	msg := err.Error()
	if !strings.Contains(msg, "no endpoint answered (3 of 3 endpoints tried, 6 attempts)") || strings.Contains(msg, token) {
		t.Errorf("error = %q", msg)
	}
	var ne *url.Error
	if !errors.As(err, &ne) {
		t.Errorf("no *url.Error in %v", err)
	}
	if st := c.Stats(); st.Exhausted != 1 {
		t.Errorf("Stats = %+v, want Exhausted 1", st)
	}
	t.Logf("all three down: %q after %v", msg, took.Round(time.Millisecond))
	if err := c.Ready(context.Background()); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Ready with every node dead = %v", err)
	}

	// One comes back: the next call finds it, although all are marked down.
	nodes[2].restart()
	if _, err := c.Sign(context.Background(), "k1", digest); err != nil {
		t.Errorf("Sign with c back: %v", err)
	}
	if err := c.Ready(context.Background()); err != nil {
		t.Errorf("Ready with c back: %v", err)
	}
}

func TestNewMulti(t *testing.T) {
	for _, tc := range []struct {
		urls []string
		want string
	}{
		{nil, "no endpoint URL given"},
		{[]string{"https://a:1", "ftp://b"}, "endpoint URL 2 must be http(s)://host[:port]"},
		{[]string{"https://user:hunter2@a:1"}, "endpoint URL 1 must not hold credentials"},
		{[]string{"https://a:1", "https://b:1/", "https://a:1/"}, "endpoint URL 3 repeats endpoint URL 1"},
	} {
		_, err := client.NewMulti(tc.urls)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("NewMulti(%q) = %v, want %q", tc.urls, err, tc.want)
		}
	}
	if _, err := client.NewMulti([]string{"https://a:1"}, client.WithBalance(0)); err == nil {
		t.Error("WithBalance(0) accepted")
	}
	if _, err := client.NewMulti([]string{"https://a:1"}, client.WithDownTime(0)); err == nil {
		t.Error("WithDownTime(0) accepted")
	}
	c, err := client.NewMulti([]string{"https://a:1/", "http://b:2/prefix"})
	if err != nil {
		t.Fatal(err)
	}
	if eps := c.Endpoints(); len(eps) != 2 || eps[0].URL != "https://a:1" || eps[1].URL != "http://b:2/prefix" || eps[0].Down {
		t.Errorf("Endpoints = %+v", eps)
	}
}
