package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/api"
	"github.com/keyward/keyward/keysvc/wire"
)

// Bearer tokens of the test clients.
const (
	aliceToken = "alice-token-0123456789"
	rootToken  = "root-token-0123456789"
)

func tokenHash(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

func testClients() []api.Client {
	return []api.Client{
		{Name: "alice", TokenSHA256: tokenHash(aliceToken)},
		{Name: "root", Admin: true, TokenSHA256: tokenHash(rootToken)},
		{Name: "carol"}, // certificate only
	}
}

// fakeCall is one recorded Backend call.
type fakeCall struct {
	Method string
	Caller keysvc.Caller
	Name   string
	Args   []any
}

// fakeBackend records calls and answers with canned values, or with the
// error set for the method. A method listed in block waits, after
// signalling entered, until its channel is closed.
type fakeBackend struct {
	mu      sync.Mutex
	calls   []fakeCall
	errs    map[string]error
	block   map[string]chan struct{}
	entered chan string
	ready   error
	stats   keysvc.Stats
	panicOn string // method that panics with "boom"
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{errs: map[string]error{}, block: map[string]chan struct{}{}, entered: make(chan string, 16)}
}

func (b *fakeBackend) setErr(method string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errs[method] = err
}

func (b *fakeBackend) record(method string, c keysvc.Caller, name string, args ...any) error {
	b.mu.Lock()
	b.calls = append(b.calls, fakeCall{method, c, name, args})
	err := b.errs[method]
	ch := b.block[method]
	boom := b.panicOn == method
	b.mu.Unlock()
	if boom {
		panic("boom")
	}
	if ch != nil {
		b.entered <- method
		<-ch
	}
	return err
}

func (b *fakeBackend) Calls() []fakeCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]fakeCall(nil), b.calls...)
}

func (b *fakeBackend) last(t *testing.T) fakeCall {
	t.Helper()
	cs := b.Calls()
	if len(cs) == 0 {
		t.Fatal("backend not called")
	}
	return cs[len(cs)-1]
}

// testKey has the fields that must never reach a client.
func testKey(name string) *keysvc.Key {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return &keysvc.Key{
		Name: name, Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionWrapped,
		Primary: 1, MinVersion: 1, LastRotated: at, CreatedAt: at,
		Policy: wire.Policy{Grants: []wire.Grant{{Client: "alice", Ops: []wire.Op{wire.OpSign}}}},
		Versions: []keysvc.Version{{Version: 1, State: wire.StateEnabled, CreatedAt: at,
			PublicKey: []byte{1, 2, 3}, ObjectLabel: "SECRET-LABEL", Wrapped: []byte("SECRET-BLOB")}},
	}
}

func (b *fakeBackend) CreateKey(_ context.Context, c keysvc.Caller, req wire.CreateKeyRequest) (*keysvc.Key, error) {
	if err := b.record("CreateKey", c, req.Name, req); err != nil {
		return nil, err
	}
	return testKey(req.Name), nil
}

func (b *fakeBackend) GetKey(_ context.Context, c keysvc.Caller, name string) (*keysvc.Key, error) {
	if err := b.record("GetKey", c, name); err != nil {
		return nil, err
	}
	return testKey(name), nil
}

func (b *fakeBackend) ListKeys(_ context.Context, c keysvc.Caller, after string, limit int) ([]*keysvc.Key, string, error) {
	if err := b.record("ListKeys", c, after, limit); err != nil {
		return nil, "", err
	}
	return []*keysvc.Key{testKey("a"), testKey("b")}, "", nil
}

func (b *fakeBackend) Rotate(_ context.Context, c keysvc.Caller, name string) (*keysvc.Key, error) {
	if err := b.record("Rotate", c, name); err != nil {
		return nil, err
	}
	return testKey(name), nil
}

func (b *fakeBackend) UpdateSettings(_ context.Context, c keysvc.Caller, name string, req wire.KeySettingsRequest) (*keysvc.Key, error) {
	if err := b.record("UpdateSettings", c, name); err != nil {
		return nil, err
	}
	return testKey(name), nil
}

func (b *fakeBackend) SetVersionState(_ context.Context, c keysvc.Caller, name string, version int, action wire.VersionAction, delay time.Duration) (*keysvc.Key, error) {
	if err := b.record("SetVersionState", c, name, version, action, delay); err != nil {
		return nil, err
	}
	return testKey(name), nil
}

func (b *fakeBackend) Sign(_ context.Context, c keysvc.Caller, name string, req wire.SignRequest) (wire.SignResult, error) {
	if err := b.record("Sign", c, name, req); err != nil {
		return wire.SignResult{}, err
	}
	return wire.SignResult{Signature: "kw:v1:c2ln", Version: 1}, nil
}

func (b *fakeBackend) SignBatch(_ context.Context, c keysvc.Caller, name string, reqs []wire.SignRequest) ([]wire.SignResult, error) {
	if err := b.record("SignBatch", c, name, reqs); err != nil {
		return nil, err
	}
	out := make([]wire.SignResult, len(reqs))
	for i := range out {
		out[i] = wire.SignResult{Signature: "kw:v1:c2ln", Version: 1}
	}
	return out, nil
}

func (b *fakeBackend) MAC(_ context.Context, c keysvc.Caller, name string, msg []byte) (string, int, error) {
	if err := b.record("MAC", c, name); err != nil {
		return "", 0, err
	}
	return "kw:v1:bWFj", 1, nil
}

func (b *fakeBackend) VerifyMAC(_ context.Context, c keysvc.Caller, name string, msg []byte, mac string) (bool, error) {
	if err := b.record("VerifyMAC", c, name); err != nil {
		return false, err
	}
	return mac == "kw:v1:bWFj", nil
}

func (b *fakeBackend) Verify(_ context.Context, c keysvc.Caller, name string, req wire.VerifyRequest) (bool, error) {
	if err := b.record("Verify", c, name, req); err != nil {
		return false, err
	}
	return true, nil
}

func (b *fakeBackend) Encrypt(_ context.Context, c keysvc.Caller, name string, plaintext, aad []byte) (string, int, error) {
	if err := b.record("Encrypt", c, name, plaintext, aad); err != nil {
		return "", 0, err
	}
	return "kw:v1:Y3Q=", 1, nil
}

func (b *fakeBackend) Decrypt(_ context.Context, c keysvc.Caller, name string, ciphertext string, aad []byte) ([]byte, error) {
	if err := b.record("Decrypt", c, name, ciphertext, aad); err != nil {
		return nil, err
	}
	return []byte("plain"), nil
}

func (b *fakeBackend) DataKey(_ context.Context, c keysvc.Caller, name string, size int, aad []byte) (wire.DataKey, error) {
	if err := b.record("DataKey", c, name, size, aad); err != nil {
		return wire.DataKey{}, err
	}
	return wire.DataKey{Plaintext: bytes.Repeat([]byte{7}, size), Ciphertext: "kw:v1:ZGs=", Version: 1}, nil
}

func (b *fakeBackend) PublicKey(_ context.Context, c keysvc.Caller, name string, version int) (wire.PublicKeyResult, error) {
	if err := b.record("PublicKey", c, name, version); err != nil {
		return wire.PublicKeyResult{}, err
	}
	return wire.PublicKeyResult{Version: max(version, 1), PEM: "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n",
		JWK: wire.JWK{Kty: "EC", Crv: "P-256", X: "x", Y: "y", Kid: name + "-1"}}, nil
}

func (b *fakeBackend) Ready(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ready
}

func (b *fakeBackend) Stats() keysvc.Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

var _ api.Backend = (*fakeBackend)(nil)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is a real server on a loopback port with a fake backend.
type env struct {
	t    *testing.T
	srv  *api.Server
	be   *fakeBackend
	url  string
	logs *syncBuffer
	reg  *prometheus.Registry
	hc   *http.Client
	done chan error // Serve's result
}

// newEnv starts a plain-HTTP server; edit adjusts the Config first.
func newEnv(t *testing.T, edit ...func(*api.Config)) *env {
	t.Helper()
	e := &env{t: t, be: newFakeBackend(), logs: &syncBuffer{}, reg: prometheus.NewRegistry(),
		hc: &http.Client{Timeout: 10 * time.Second}, done: make(chan error, 1)}
	cfg := api.Config{Backend: e.be, Clients: testClients(), Registry: e.reg,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, f := range edit {
		f(&cfg)
	}
	srv, err := api.New(cfg)
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	e.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "http://" + ln.Addr().String()
	go func() { e.done <- srv.Serve(ln) }()
	t.Cleanup(func() { e.stop() })
	return e
}

// stop shuts the server down once and checks Serve's result.
func (e *env) stop() {
	if e.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		e.t.Errorf("Shutdown: %v", err)
	}
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("Serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		e.t.Error("Serve did not return after Shutdown")
	}
	e.srv = nil
	e.hc.CloseIdleConnections()
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	body   []byte
	code   string // error code, if the body is an error
	msg    string
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

// req sends a request with the given bearer token ("" for none). A body
// is sent as application/json unless headers say otherwise.
func (e *env) req(method, path, token, body string, headers ...string) response {
	e.t.Helper()
	return doReq(e.t, e.hc, e.url, method, path, token, body, headers...)
}

func doReq(t *testing.T, hc *http.Client, base, method, path, token, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			r.Header.Del(headers[i])
		} else {
			r.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := hc.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := response{status: resp.StatusCode, header: resp.Header, body: b}
	var eb struct {
		Error struct{ Code, Message string }
	}
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(b, &eb); err != nil {
			t.Fatalf("%s %s: error body is not JSON: %q", method, path, b)
		}
		out.code, out.msg = eb.Error.Code, eb.Error.Message
	}
	return out
}

// expect checks status and, for errors, the code.
func (r response) expect(t *testing.T, status int, code string) {
	t.Helper()
	if r.status != status || r.code != code {
		t.Fatalf("got %d %q (%s), want %d %q", r.status, r.code, r.body, status, code)
	}
}

// Display-and-confirm methods: the fake has no confirmations; the real
// flow is tested on SoftHSM (softhsm-tests/confirm_test.go).
func (b *fakeBackend) Confirmation(context.Context, keysvc.Caller, string, time.Duration) (wire.ConfirmationView, error) {
	return wire.ConfirmationView{}, wire.ErrConfirmationNotFound
}
func (b *fakeBackend) CancelConfirmation(context.Context, keysvc.Caller, string) (wire.ConfirmationView, error) {
	return wire.ConfirmationView{}, wire.ErrConfirmationNotFound
}
func (b *fakeBackend) UnlockHolder(context.Context, keysvc.Caller, string) (*keysvc.Key, error) {
	return nil, wire.ErrForbidden
}
func (b *fakeBackend) ResetHolder(context.Context, keysvc.Caller, string) (*keysvc.Key, error) {
	return nil, wire.ErrForbidden
}

func (b *fakeBackend) StartKEKRotation(_ context.Context, c keysvc.Caller) (wire.KEKRotationStatus, error) {
	if err := b.record("StartKEKRotation", c, ""); err != nil {
		return wire.KEKRotationStatus{}, err
	}
	return wire.KEKRotationStatus{Current: 1, Target: 2, State: wire.KEKRewrapping}, nil
}

func (b *fakeBackend) KEKRotation(_ context.Context, c keysvc.Caller) (wire.KEKRotationStatus, error) {
	if err := b.record("KEKRotation", c, ""); err != nil {
		return wire.KEKRotationStatus{}, err
	}
	return wire.KEKRotationStatus{Current: 1, Target: 2, State: wire.KEKRewrapping, Done: 3, Total: 10}, nil
}
