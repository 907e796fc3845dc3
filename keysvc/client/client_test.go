package client_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/api"
	"github.com/keyward/keyward/keysvc/client"
	"github.com/keyward/keyward/keysvc/wire"
)

const token = "client-test-token"

// fakeBackend answers every call; errs holds, per method, errors to
// return on successive calls (then success).
type fakeBackend struct {
	mu    sync.Mutex
	errs  map[string][]error
	calls map[string]int
	last  map[string][]any
	ready error
	// pending, when set, is what Sign answers (HTTP 202) instead of a
	// signature; polls are Confirmation's answers in turn, the last one
	// repeated once they run out.
	pending *wire.ConfirmationView
	polls   []wire.ConfirmationView
	// hold, when set, is how long Confirmation holds a pending answer
	// instead of the whole wait (a server answers a long poll early when
	// the status changes).
	hold time.Duration
	// delays, per method, is how long a call takes after it has been
	// recorded (done): an answer that comes too late to be read.
	delays map[string]time.Duration
}

func newFake() *fakeBackend {
	return &fakeBackend{errs: map[string][]error{}, calls: map[string]int{}, last: map[string][]any{}, delays: map[string]time.Duration{}}
}

func (b *fakeBackend) fail(method string, errs ...error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errs[method] = errs
}

// confirmations makes Sign answer pending (nil: sign at once) and
// Confirmation answer polls in turn.
func (b *fakeBackend) confirmations(pending *wire.ConfirmationView, polls ...wire.ConfirmationView) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending, b.polls = pending, polls
}

func (b *fakeBackend) count(method string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[method]
}

func (b *fakeBackend) args(method string) []any {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last[method]
}

func (b *fakeBackend) rec(method string, args ...any) error {
	b.mu.Lock()
	b.calls[method]++
	b.last[method] = args
	delay := b.delays[method]
	var err error
	if q := b.errs[method]; len(q) > 0 {
		b.errs[method], err = q[1:], q[0]
	}
	b.mu.Unlock()
	time.Sleep(delay)
	return err
}

// delay makes method take d after it is done (0: at once).
func (b *fakeBackend) delay(method string, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.delays[method] = d
}

func key(name string) *keysvc.Key {
	return &keysvc.Key{Name: name, Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionHSM,
		Primary: 2, MinVersion: 1, Versions: []keysvc.Version{
			{Version: 1, State: wire.StateDisabled, ObjectLabel: "label-1"},
			{Version: 2, State: wire.StateEnabled, ObjectLabel: "label-2"}}}
}

func (b *fakeBackend) CreateKey(_ context.Context, _ keysvc.Caller, r wire.CreateKeyRequest) (*keysvc.Key, error) {
	return key(r.Name), b.rec("CreateKey", r)
}
func (b *fakeBackend) GetKey(_ context.Context, _ keysvc.Caller, n string) (*keysvc.Key, error) {
	return key(n), b.rec("GetKey", n)
}
func (b *fakeBackend) ListKeys(_ context.Context, _ keysvc.Caller, after string, _ int) ([]*keysvc.Key, string, error) {
	// Two pages: the client must follow "next".
	if after == "" {
		return []*keysvc.Key{key("a")}, "a", b.rec("ListKeys")
	}
	return []*keysvc.Key{key("b")}, "", b.rec("ListKeys")
}
func (b *fakeBackend) Rotate(_ context.Context, _ keysvc.Caller, n string) (*keysvc.Key, error) {
	return key(n), b.rec("Rotate", n)
}
func (b *fakeBackend) UpdateSettings(_ context.Context, _ keysvc.Caller, n string, r wire.KeySettingsRequest) (*keysvc.Key, error) {
	return key(n), b.rec("UpdateSettings", n, r)
}
func (b *fakeBackend) SetVersionState(_ context.Context, _ keysvc.Caller, n string, v int, a wire.VersionAction, d time.Duration) (*keysvc.Key, error) {
	return key(n), b.rec("SetVersionState", n, v, a, d)
}
func (b *fakeBackend) Sign(_ context.Context, _ keysvc.Caller, n string, r wire.SignRequest) (wire.SignResult, error) {
	err := b.rec("Sign", n, r)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pending != nil {
		v := *b.pending
		return wire.SignResult{Confirmation: &v}, err
	}
	return wire.SignResult{Signature: "kw:v2:c2ln", Version: 2}, err
}
func (b *fakeBackend) SignBatch(_ context.Context, _ keysvc.Caller, n string, rs []wire.SignRequest) ([]wire.SignResult, error) {
	out := make([]wire.SignResult, len(rs))
	for i := range out {
		out[i] = wire.SignResult{Signature: fmt.Sprintf("kw:v2:%d", i), Version: 2}
	}
	return out, b.rec("SignBatch", n, rs)
}
func (b *fakeBackend) Verify(_ context.Context, _ keysvc.Caller, n string, r wire.VerifyRequest) (bool, error) {
	return r.Signature == "kw:v2:c2ln", b.rec("Verify", n, r)
}
func (b *fakeBackend) MAC(_ context.Context, _ keysvc.Caller, n string, m []byte) (string, int, error) {
	return "kw:v1:bWFj", 1, b.rec("MAC", n, m)
}
func (b *fakeBackend) VerifyMAC(_ context.Context, _ keysvc.Caller, n string, m []byte, mac string) (bool, error) {
	return mac == "kw:v1:bWFj", b.rec("VerifyMAC", n, m, mac)
}
func (b *fakeBackend) Encrypt(_ context.Context, _ keysvc.Caller, n string, pt, aad []byte) (string, int, error) {
	return "kw:v2:" + string(pt), 2, b.rec("Encrypt", n, pt, aad)
}
func (b *fakeBackend) Decrypt(_ context.Context, _ keysvc.Caller, n string, ct string, aad []byte) ([]byte, error) {
	return []byte("plain:" + ct), b.rec("Decrypt", n, ct, aad)
}
func (b *fakeBackend) DataKey(_ context.Context, _ keysvc.Caller, n string, size int, aad []byte) (wire.DataKey, error) {
	return wire.DataKey{Plaintext: make([]byte, size), Ciphertext: "kw:v2:dk", Version: 2}, b.rec("DataKey", n, size, aad)
}
func (b *fakeBackend) PublicKey(_ context.Context, _ keysvc.Caller, n string, v int) (wire.PublicKeyResult, error) {
	return wire.PublicKeyResult{Version: max(v, 2), PEM: "pem", JWK: wire.JWK{Kty: "EC", Kid: n}}, b.rec("PublicKey", n, v)
}
func (b *fakeBackend) Ready(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ready
}
func (b *fakeBackend) Stats() keysvc.Stats { return keysvc.Stats{} }

// serve starts the real API server on loopback with b behind it.
func serve(t *testing.T, b *fakeBackend) string {
	t.Helper()
	sum := sha256.Sum256([]byte(token))
	srv, err := api.New(api.Config{Backend: b, Logger: slog.New(slog.DiscardHandler),
		Clients: []api.Client{{Name: "app", Admin: true, TokenSHA256: hex.EncodeToString(sum[:])}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-done
	})
	return "http://" + ln.Addr().String()
}

func newClient(t *testing.T, base string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(base, append([]client.Option{client.WithBearer(token)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	b := newFake()
	c := newClient(t, serve(t, b))
	ctx := context.Background()
	check := func(method string, want ...any) {
		t.Helper()
		if got := b.args(method); !reflect.DeepEqual(got, want) {
			t.Errorf("%s got %#v, want %#v", method, got, want)
		}
	}

	cr := wire.CreateKeyRequest{Name: "k1", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionHSM,
		RotationPeriod: wire.Duration(720 * time.Hour), Policy: wire.Policy{Grants: []wire.Grant{{Client: "app", Ops: []wire.Op{wire.OpSign}}}}}
	v, err := c.CreateKey(ctx, cr)
	if err != nil || v.Name != "k1" || len(v.Versions) != 2 || v.Primary != 2 {
		t.Fatalf("CreateKey = %+v, %v", v, err)
	}
	check("CreateKey", cr)

	if v, err = c.GetKey(ctx, "k1"); err != nil || v.Name != "k1" {
		t.Fatalf("GetKey = %+v, %v", v, err)
	}
	ks, err := c.ListKeys(ctx)
	if err != nil || len(ks) != 2 || ks[1].Name != "b" {
		t.Fatalf("ListKeys = %+v, %v", ks, err)
	}
	if v, err = c.Rotate(ctx, "k1"); err != nil || v.Name != "k1" {
		t.Fatalf("Rotate = %+v, %v", v, err)
	}
	if _, err = c.SetVersionState(ctx, "k1", 1, wire.ActionScheduleDestroy, 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	check("SetVersionState", "k1", 1, wire.ActionScheduleDestroy, 48*time.Hour)
	if _, err = c.SetVersionState(ctx, "k1", 2, wire.ActionDisable, 0); err != nil {
		t.Fatal(err)
	}
	check("SetVersionState", "k1", 2, wire.ActionDisable, time.Duration(0))

	sr := wire.SignRequest{Message: []byte("hello"), Scheme: "pss"}
	sig, err := c.Sign(ctx, "k1", sr)
	if err != nil || sig != (wire.SignResult{Signature: "kw:v2:c2ln", Version: 2}) {
		t.Fatalf("Sign = %+v, %v", sig, err)
	}
	check("Sign", "k1", sr)
	sigs, err := c.SignBatch(ctx, "k1", []wire.SignRequest{sr, sr, sr})
	if err != nil || len(sigs) != 3 || sigs[2].Signature != "kw:v2:2" {
		t.Fatalf("SignBatch = %+v, %v", sigs, err)
	}
	vr := wire.VerifyRequest{Digest: bytes.Repeat([]byte{1}, 32), Signature: "kw:v2:c2ln"}
	if ok, err := c.Verify(ctx, "k1", vr); err != nil || !ok {
		t.Fatalf("Verify = %v, %v", ok, err)
	}
	check("Verify", "k1", vr)
	vr.Signature = "kw:v2:other"
	if ok, err := c.Verify(ctx, "k1", vr); err != nil || ok {
		t.Fatalf("Verify of a wrong signature = %v, %v", ok, err)
	}

	ct, ver, err := c.Encrypt(ctx, "e1", []byte("secret"), []byte("aad"))
	if err != nil || ct != "kw:v2:secret" || ver != 2 {
		t.Fatalf("Encrypt = %q %d %v", ct, ver, err)
	}
	check("Encrypt", "e1", []byte("secret"), []byte("aad"))
	pt, err := c.Decrypt(ctx, "e1", ct, nil)
	if err != nil || string(pt) != "plain:kw:v2:secret" {
		t.Fatalf("Decrypt = %q %v", pt, err)
	}
	check("Decrypt", "e1", ct, []byte(nil))
	dk, err := c.DataKey(ctx, "e1", 0, nil)
	if err != nil || len(dk.Plaintext) != 32 || dk.Ciphertext != "kw:v2:dk" {
		t.Fatalf("DataKey = %+v %v", dk, err)
	}
	if dk, err = c.DataKey(ctx, "e1", 16, []byte("x")); err != nil || len(dk.Plaintext) != 16 {
		t.Fatalf("DataKey(16) = %+v %v", dk, err)
	}
	check("DataKey", "e1", 16, []byte("x"))
	pk, err := c.PublicKey(ctx, "k1", 0)
	if err != nil || pk.Version != 2 || pk.JWK.Kid != "k1" {
		t.Fatalf("PublicKey = %+v %v", pk, err)
	}
	check("PublicKey", "k1", 0)
	if _, err = c.PublicKey(ctx, "k1", 1); err != nil {
		t.Fatal(err)
	}
	check("PublicKey", "k1", 1)
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("Ready = %v", err)
	}
}

func TestErrorsIs(t *testing.T) {
	b := newFake()
	base := serve(t, b)
	c := newClient(t, base, client.WithRetries(0))
	all := []error{
		wire.ErrInvalidArgument, wire.ErrKeyNotFound, wire.ErrKeyExists, wire.ErrVersionNotFound,
		wire.ErrIllegalTransition, wire.ErrVersionNotUsable, wire.ErrWrongPurpose, wire.ErrForbidden,
		wire.ErrUnauthenticated, wire.ErrInvalidCiphertext, wire.ErrInvalidSignature, wire.ErrDecrypt,
		wire.ErrTokenUnavailable, wire.ErrTokenLocked, wire.ErrAuditUnavailable, wire.ErrStore,
		wire.ErrConfirmationRequired, wire.ErrTransactionNotRecognised, wire.ErrConfirmationPending,
		wire.ErrConfirmationNotFound, wire.ErrConfirmationClosed, wire.ErrConfirmationMismatch,
		wire.ErrHolderPIN, wire.ErrHolderLocked, wire.ErrHolderNotEnrolled, wire.ErrConfirmUnavailable,
	}
	if len(all) != len(wire.SentinelCodes) {
		t.Errorf("testing %d sentinels, keysvc.SentinelCodes has %d", len(all), len(wire.SentinelCodes))
	}
	for _, sentinel := range all {
		b.fail("GetKey", fmt.Errorf("k1: %w", sentinel))
		_, err := c.GetKey(context.Background(), "k1")
		if !errors.Is(err, sentinel) {
			t.Errorf("%v: got %v", sentinel, err)
			continue
		}
		for _, other := range all {
			if other != sentinel && errors.Is(err, other) {
				t.Errorf("%v also matches %v", err, other)
			}
		}
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code == "" || ce.Status < 400 || ce.Message != fmt.Sprintf("k1: %v", sentinel) {
			t.Errorf("%v: %#v", sentinel, ce)
		}
	}

	// An internal error is no sentinel and shows nothing.
	b.fail("Sign", errors.New("CKR_GENERAL_ERROR"))
	_, err := c.Sign(context.Background(), "k1", wire.SignRequest{Digest: []byte{1}})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 500 || ce.Code != "internal" {
		t.Fatalf("internal: %v", err)
	}
	for _, s := range all {
		if errors.Is(err, s) {
			t.Errorf("internal error matches %v", s)
		}
	}
	// Client-side validation errors of the server are invalid arguments.
	_, err = c.GetKey(context.Background(), "Not A Name")
	if !errors.Is(err, wire.ErrInvalidArgument) {
		t.Errorf("bad name: %v", err)
	}
	// A bad token is unauthenticated.
	bad, _ := client.New(base, client.WithBearer("wrong"))
	if _, err := bad.ListKeys(context.Background()); !errors.Is(err, wire.ErrUnauthenticated) {
		t.Errorf("bad token: %v", err)
	}
	b.mu.Lock()
	b.ready = fmt.Errorf("x: %w", wire.ErrTokenLocked)
	b.mu.Unlock()
	if err := c.Ready(context.Background()); !errors.Is(err, wire.ErrTokenLocked) {
		t.Errorf("Ready = %v", err)
	}
}

func TestRetries(t *testing.T) {
	b := newFake()
	c := newClient(t, serve(t, b), client.WithRetries(2))
	ctx := context.Background()
	unavailable := fmt.Errorf("pool: %w", wire.ErrTokenUnavailable)

	// Idempotent calls are retried on 503, up to the limit.
	b.fail("GetKey", unavailable, unavailable)
	if _, err := c.GetKey(ctx, "k1"); err != nil {
		t.Fatalf("GetKey after two 503s: %v", err)
	}
	if n := b.count("GetKey"); n != 3 {
		t.Errorf("GetKey calls = %d, want 3", n)
	}
	b.fail("ListKeys", unavailable, unavailable, unavailable)
	if _, err := c.ListKeys(ctx); !errors.Is(err, wire.ErrTokenUnavailable) {
		t.Fatalf("ListKeys after three 503s: %v", err)
	}
	if n := b.count("ListKeys"); n != 3 {
		t.Errorf("ListKeys calls = %d, want 3 (1 + 2 retries)", n)
	}
	b.fail("Verify", unavailable)
	if _, err := c.Verify(ctx, "k1", wire.VerifyRequest{Digest: []byte{1}, Signature: "kw:v2:c2ln"}); err != nil || b.count("Verify") != 2 {
		t.Errorf("Verify: %v after %d calls", err, b.count("Verify"))
	}
	b.fail("PublicKey", unavailable)
	if _, err := c.PublicKey(ctx, "k1", 0); err != nil || b.count("PublicKey") != 2 {
		t.Errorf("PublicKey: %v after %d calls", err, b.count("PublicKey"))
	}
	b.confirmations(nil, wire.ConfirmationView{ID: confID, Status: wire.ConfirmPending})
	b.fail("Confirmation", unavailable)
	if _, err := c.Confirmation(ctx, confID, 0); err != nil || b.count("Confirmation") != 2 {
		t.Errorf("Confirmation: %v after %d calls", err, b.count("Confirmation"))
	}
	// Other errors are not retried, even on idempotent calls.
	b.fail("GetKey", wire.ErrKeyNotFound, nil)
	if _, err := c.GetKey(ctx, "k1"); !errors.Is(err, wire.ErrKeyNotFound) || b.count("GetKey") != 4 {
		t.Errorf("GetKey 404: %v after %d calls", err, b.count("GetKey"))
	}

	// Sign, SignBatch, MAC, Decrypt, Encrypt and DataKey are safe to
	// repeat (see the package doc): retried on a 503 like reads.
	safe := map[string]func() error{
		"Sign": func() error { _, err := c.Sign(ctx, "k1", wire.SignRequest{Digest: []byte{1}}); return err },
		"SignBatch": func() error {
			_, err := c.SignBatch(ctx, "k1", []wire.SignRequest{{Digest: []byte{1}}})
			return err
		},
		"MAC":     func() error { _, err := c.MAC(ctx, "k1", []byte("m")); return err },
		"Encrypt": func() error { _, _, err := c.Encrypt(ctx, "k1", []byte("x"), nil); return err },
		"Decrypt": func() error { _, err := c.Decrypt(ctx, "k1", "kw:v1:x", nil); return err },
		"DataKey": func() error { _, err := c.DataKey(ctx, "k1", 32, nil); return err },
	}
	for method, f := range safe {
		b.fail(method, unavailable, unavailable)
		if err := f(); err != nil {
			t.Errorf("%s after two 503s: %v", method, err)
		}
		if n := b.count(method); n != 3 {
			t.Errorf("%s called %d times after two 503s, want 3", method, n)
		}
	}

	// Nothing that changes state is ever retried.
	calls := map[string]func() error{
		"Rotate":    func() error { _, err := c.Rotate(ctx, "k1"); return err },
		"CreateKey": func() error { _, err := c.CreateKey(ctx, wire.CreateKeyRequest{Name: "k2"}); return err },
		"SetVersionState": func() error {
			_, err := c.SetVersionState(ctx, "k1", 1, wire.ActionDisable, 0)
			return err
		},
		"UpdateSettings": func() error {
			_, err := c.UpdateSettings(ctx, "k1", wire.KeySettingsRequest{})
			return err
		},
		"CancelConfirmation": func() error { _, err := c.CancelConfirmation(ctx, confID); return err },
		"UnlockHolder":       func() error { _, err := c.UnlockHolder(ctx, "k1"); return err },
		"ResetHolder":        func() error { _, err := c.ResetHolder(ctx, "k1"); return err },
	}
	for method, f := range calls {
		b.fail(method, unavailable, unavailable)
		err := f()
		var ue *client.UnavailableError
		if !errors.Is(err, wire.ErrTokenUnavailable) || !errors.As(err, &ue) || ue.Repeatable || ue.Attempts != 1 {
			t.Errorf("%s: %v", method, err)
		}
		if n := b.count(method); n != 1 {
			t.Errorf("%s called %d times on a 503, want 1", method, n)
		}
	}
}

// flakyServer is a raw TCP server: each connection reads one request and
// then gets the next canned answer ("" closes without answering).
type flakyServer struct {
	ln       net.Listener
	answers  []string
	requests atomic.Int32
}

func newFlaky(t *testing.T, answers ...string) *flakyServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyServer{ln: ln, answers: answers}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			req, err := http.ReadRequest(bufio.NewReader(conn))
			if err == nil {
				_, _ = io.Copy(io.Discard, req.Body)
			}
			i := int(f.requests.Add(1)) - 1
			if i < len(f.answers) && f.answers[i] != "" {
				_, _ = io.WriteString(conn, f.answers[i])
			}
			conn.Close()
		}
	}()
	return f
}

func TestRetryConnectionErrors(t *testing.T) {
	okBody := `{"name":"k1","purpose":"sign","algorithm":"ec-p256","protection":"hsm","primary":1,"min_version":1,"last_rotated":"2025-01-01T00:00:00Z","policy":{"grants":null},"versions":[],"created_at":"2025-01-01T00:00:00Z"}`
	ok := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(okBody), okBody)
	gateway := "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 6\r\n\r\n<html>"
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	// GET: a dropped connection and a proxy's 502 are retried.
	f := newFlaky(t, "", gateway, ok)
	c, _ := client.New("http://"+f.ln.Addr().String(), client.WithHTTPClient(hc), client.WithRetries(3))
	v, err := c.GetKey(context.Background(), "k1")
	if err != nil || v.Name != "k1" {
		t.Fatalf("GetKey = %+v, %v", v, err)
	}
	if n := f.requests.Load(); n != 3 {
		t.Errorf("requests = %d, want 3", n)
	}

	// The last failure is returned; a proxy's page is an Error with no code.
	f = newFlaky(t, gateway, gateway)
	c, _ = client.New("http://"+f.ln.Addr().String(), client.WithHTTPClient(hc), client.WithRetries(1))
	_, err = c.ListKeys(context.Background())
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 502 || ce.Code != "" {
		t.Fatalf("ListKeys = %v", err)
	}
	if n := f.requests.Load(); n != 2 {
		t.Errorf("requests = %d, want 2", n)
	}

	// An answer cut off mid-body (the server acted, its answer was lost):
	// a read is repeated, a write is not, and the error is a transport
	// error (*url.Error), not a decoding one.
	cut := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(okBody), okBody[:20])
	f = newFlaky(t, cut, ok)
	c, _ = client.New("http://"+f.ln.Addr().String(), client.WithHTTPClient(hc), client.WithRetries(3))
	if v, err := c.GetKey(context.Background(), "k1"); err != nil || v.Name != "k1" || f.requests.Load() != 2 {
		t.Errorf("GetKey after a cut answer = %+v, %v (%d requests)", v, err, f.requests.Load())
	}
	f = newFlaky(t, cut, ok)
	c, _ = client.New("http://"+f.ln.Addr().String(), client.WithHTTPClient(hc), client.WithRetries(3))
	var ue *url.Error
	if _, err := c.Rotate(context.Background(), "k1"); !errors.As(err, &ue) || !errors.Is(err, io.ErrUnexpectedEOF) || f.requests.Load() != 1 {
		t.Errorf("Rotate with a cut answer = %v (%d requests)", err, f.requests.Load())
	}

	// POST rotate: a dropped connection is not retried.
	f = newFlaky(t, "", ok)
	c, _ = client.New("http://"+f.ln.Addr().String(), client.WithHTTPClient(hc), client.WithRetries(3))
	if _, err := c.Rotate(context.Background(), "k1"); err == nil {
		t.Fatal("Rotate succeeded on a dropped connection")
	}
	if n := f.requests.Load(); n != 1 {
		t.Errorf("Rotate sent %d times, want 1", n)
	}

	// A cancelled context stops the retries.
	f = newFlaky(t)
	c, _ = client.New("http://"+f.ln.Addr().String(), client.WithHTTPClient(hc), client.WithRetries(100))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.GetKey(ctx, "k1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GetKey with a deadline = %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Error("retries outlived the context")
	}
}

func TestNew(t *testing.T) {
	for _, u := range []string{"", "keysvc:8443", "ftp://h", "http://", "https://user:pw@h", "http://h/?x=1", "http://h/#f"} {
		if _, err := client.New(u); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	if _, err := client.New("https://keysvc.bank.internal:8443/"); err != nil {
		t.Error(err)
	}
	if _, err := client.New("http://h", client.WithHTTPClient(nil)); err == nil {
		t.Error("nil HTTP client accepted")
	}
}

// Display-and-confirm methods. Confirmation holds a pending answer for
// the wait asked (or until ctx ends), like the Service's long poll; the
// real flow is tested on SoftHSM (softhsm-tests/confirm_test.go).
func (b *fakeBackend) Confirmation(ctx context.Context, _ keysvc.Caller, id string, wait time.Duration) (wire.ConfirmationView, error) {
	if err := b.rec("Confirmation", id, wait); err != nil {
		return wire.ConfirmationView{}, err
	}
	b.mu.Lock()
	if len(b.polls) == 0 {
		b.mu.Unlock()
		return wire.ConfirmationView{}, fmt.Errorf("%w: %q", wire.ErrConfirmationNotFound, id)
	}
	v := b.polls[0]
	if len(b.polls) > 1 {
		b.polls = b.polls[1:]
	}
	if b.hold > 0 && b.hold < wait {
		wait = b.hold
	}
	b.mu.Unlock()
	if v.Status == wire.ConfirmPending && wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return v, nil
}
func (b *fakeBackend) CancelConfirmation(_ context.Context, _ keysvc.Caller, id string) (wire.ConfirmationView, error) {
	return wire.ConfirmationView{ID: id, Status: wire.ConfirmCancelled, Reason: "the requester cancelled it"}, b.rec("CancelConfirmation", id)
}
func holderKey(name string) *keysvc.Key {
	k := key(name)
	k.Confirm, k.Holder = wire.ConfirmRequired, &keysvc.Holder{PINHash: []byte{1}}
	return k
}
func (b *fakeBackend) UnlockHolder(_ context.Context, _ keysvc.Caller, n string) (*keysvc.Key, error) {
	return holderKey(n), b.rec("UnlockHolder", n)
}
func (b *fakeBackend) ResetHolder(_ context.Context, _ keysvc.Caller, n string) (*keysvc.Key, error) {
	k := holderKey(n)
	k.Holder = &keysvc.Holder{SetupHash: []byte{1}}
	return k, b.rec("ResetHolder", n)
}
