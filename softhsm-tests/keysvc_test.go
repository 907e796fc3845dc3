package softhsmtests

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/api"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/boltstore/boltsurgeon"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/tpm"
)

// Bearer tokens of the test clients: an officer (admin), the banking app,
// and a client no key grants anything to.
const (
	officerToken  = "officer-token-7f3a"
	bankingToken  = "banking-token-91c2"
	intruderToken = "intruder-token-0b5e"
	bankappToken  = "bankapp-token-5d21"
)

func sha(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// fakeClock is the service's clock, moved by tests instead of sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// keysvcEnv is keysvc over real HTTP on loopback, on a SoftHSM token and a
// bbolt file.
type keysvcEnv struct {
	tok    *tokenEnv
	dbPath string
	store  *boltstore.Store
	svc    *keysvc.Service
	srv    *api.Server
	url    string
	clock  *fakeClock

	// The holder's second channel (display and confirm): its own server,
	// and the notices keysvc sends holders, by key name.
	tpm *tpm.TPM // protection tpm keys (nil: none)
	// auditSigner, when set, is keysvc.Config.AuditSigner.
	auditSigner crypto.Signer

	confirmSrv     *api.ConfirmServer
	confirmURL     string
	confirmTimeout time.Duration // 0: keysvc's default (60 s)
	enrolPerMinute int           // 0: the confirmation server's default (10)
	noticeMu       sync.Mutex
	notices        map[string][]keysvc.HolderNotice
	noticeCh       chan keysvc.HolderNotice

	// wrapStore, when set, wraps the bbolt store the service uses (a test
	// store that pauses reads or fails audit appends).
	wrapStore func(keysvc.Store) keysvc.Store
}

// notify is the Notifier of the test service: it records every notice.
func (e *keysvcEnv) notify(_ context.Context, n keysvc.HolderNotice) error {
	e.noticeMu.Lock()
	if e.notices == nil {
		e.notices = map[string][]keysvc.HolderNotice{}
	}
	e.notices[n.Key] = append(e.notices[n.Key], n)
	ch := e.noticeCh
	e.noticeMu.Unlock()
	if ch != nil {
		ch <- n
	}
	return nil
}

// lastNotice returns the newest holder notice for key.
func (e *keysvcEnv) lastNotice(t testing.TB, key string) keysvc.HolderNotice {
	t.Helper()
	e.noticeMu.Lock()
	defer e.noticeMu.Unlock()
	ns := e.notices[key]
	if len(ns) == 0 {
		t.Fatalf("no holder notice for key %q", key)
	}
	return ns[len(ns)-1]
}

func newKeysvcEnv(t *testing.T) *keysvcEnv {
	t.Helper()
	e := &keysvcEnv{tok: mustNewToken(t, token.KindHSM), dbPath: filepath.Join(t.TempDir(), "keysvc.db"), clock: &fakeClock{t: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)}}
	e.start(t)
	return e
}

// start opens the store and service and serves HTTP; stop undoes it. A
// stop+start pair is a service restart on the same files and token.
func (e *keysvcEnv) start(t *testing.T) {
	t.Helper()
	var err error
	if e.store, err = boltstore.Open(e.dbPath, boltstore.Options{}); err != nil {
		t.Fatal(err)
	}
	var tk keysvc.TPMKeys
	if e.tpm != nil {
		tk = e.tpm
	}
	var st keysvc.Store = e.store
	if e.wrapStore != nil {
		st = e.wrapStore(st)
	}
	e.svc, err = keysvc.New(context.Background(), keysvc.Config{Token: e.tok.tok, Store: st, MinDestroyDelay: time.Hour, DefaultDestroyDelay: 24 * time.Hour, Now: e.clock.Now,
		ConfirmTimeout: e.confirmTimeout, Notify: e.notify, TPM: tk, AuditSigner: e.auditSigner})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Tick(context.Background()); err != nil {
		t.Fatalf("start-up tick: %v", err)
	}
	e.srv, err = api.New(api.Config{Backend: e.svc, Clients: []api.Client{
		{Name: "officer", Admin: true, TokenSHA256: sha(officerToken)},
		{Name: "banking", TokenSHA256: sha(bankingToken)},
		{Name: "intruder", TokenSHA256: sha(intruderToken)},
		// The banking app: not an admin; it may create customers' keys
		// (usb-…, cust-…) granted to itself only.
		{Name: "bankapp", TokenSHA256: sha(bankappToken), EnrolPrefixes: []string{"usb-", "cust-"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "http://" + ln.Addr().String()
	go e.srv.Serve(ln)
	if e.confirmSrv, err = api.NewConfirmServer(api.ConfirmConfig{Backend: e.svc, EnrolPerMinute: e.enrolPerMinute}); err != nil {
		t.Fatal(err)
	}
	cln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.confirmURL = "http://" + cln.Addr().String()
	go e.confirmSrv.Serve(cln)
	t.Cleanup(func() { e.stop() })
}

func (e *keysvcEnv) stop() {
	if e.srv != nil {
		e.srv.Shutdown(context.Background())
		e.confirmSrv.Shutdown(context.Background())
		e.svc.Close()
		e.store.Close()
		e.srv = nil
	}
}

// call sends JSON (or raw bytes) and decodes the JSON answer.
func (e *keysvcEnv) call(t *testing.T, bearer, method, path string, body any) (int, map[string]any) {
	t.Helper()
	return callAt(t, e.url, bearer, method, path, body)
}

// callAt is call against any server (the confirmation endpoint, say).
func callAt(t testing.TB, base, bearer, method, path string, body any) (int, map[string]any) {
	t.Helper()
	return doJSON(t, jsonRequest(t, method, base+path, bearer, body))
}

// jsonRequest builds a request to url whose body is nil, a string, []byte
// or a value to marshal (with Content-Type application/json when there is
// a body), carrying bearer as its Authorization unless empty.
func jsonRequest(t testing.TB, method, url, bearer string, body any) *http.Request {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return req
}

// readJSON reads and closes resp's body, a JSON object or nothing (nil),
// and fails the test on anything else; what names the call in that
// failure.
func readJSON(t testing.TB, resp *http.Response, what string) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && json.Unmarshal(raw, &out) != nil {
		t.Fatalf("%s: non-JSON answer %d: %s", what, resp.StatusCode, raw)
	}
	return out
}

// must calls and fails the test unless the status is want.
func (e *keysvcEnv) must(t *testing.T, want int, bearer, method, path string, body any) map[string]any {
	t.Helper()
	st, out := e.call(t, bearer, method, path, body)
	if st != want {
		t.Fatalf("%s %s: status %d, want %d: %v", method, path, st, want, out)
	}
	return out
}

func errCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// createKey makes a key the banking client may use for ops.
func (e *keysvcEnv) createKey(t *testing.T, name, purpose, alg, protection string, ops ...string) {
	t.Helper()
	e.must(t, 201, officerToken, "POST", "/v1/keys", map[string]any{"name": name, "purpose": purpose, "algorithm": alg, "protection": protection,
		"policy": map[string]any{"grants": []any{map[string]any{"client": "banking", "ops": ops}}}})
}

// TestKeysvcSignRotateVerify: sign → rotate → the old signature still
// verifies and new ones use v2 (R-TOK-8).
func TestKeysvcSignRotateVerify(t *testing.T) {
	e := newKeysvcEnv(t)
	for _, alg := range []string{"ec-p256", "rsa-2048"} {
		name := "receipts-" + alg
		e.createKey(t, name, "sign", alg, "hsm", "sign", "verify", "public")
		msg := b64("receipt #000123, 100.00 CNY")
		s1 := e.must(t, 200, bankingToken, "POST", "/v1/keys/"+name+"/sign", map[string]any{"message": msg})["signature"].(string)
		if !strings.HasPrefix(s1, "kw:v1:") {
			t.Fatalf("first signature %q", s1)
		}
		e.must(t, 200, officerToken, "POST", "/v1/keys/"+name+"/rotate", nil)
		s2 := e.must(t, 200, bankingToken, "POST", "/v1/keys/"+name+"/sign", map[string]any{"message": msg})["signature"].(string)
		if !strings.HasPrefix(s2, "kw:v2:") {
			t.Fatalf("signature after rotation %q", s2)
		}
		for _, sig := range []string{s1, s2} {
			if out := e.must(t, 200, bankingToken, "POST", "/v1/keys/"+name+"/verify", map[string]any{"message": msg, "signature": sig}); out["valid"] != true {
				t.Fatalf("%s does not verify: %v", sig[:6], out)
			}
		}
		if out := e.must(t, 200, bankingToken, "POST", "/v1/keys/"+name+"/verify", map[string]any{"message": b64("other"), "signature": s1}); out["valid"] != false {
			t.Fatalf("wrong message verifies: %v", out)
		}
		pub := e.must(t, 200, bankingToken, "GET", "/v1/keys/"+name+"/public?version=1", nil)
		if !strings.Contains(pub["pem"].(string), "BEGIN PUBLIC KEY") || pub["jwk"] == nil {
			t.Fatalf("public key: %v", pub)
		}
	}
}

// TestKeysvcDestroyLifecycle: a schedule-destroyed version refuses use and
// cancel restores it; once due the token object is gone (C_FindObjects); a
// destroyed version still verifies; destroyed cannot be undone.
func TestKeysvcDestroyLifecycle(t *testing.T) {
	e := newKeysvcEnv(t)
	e.createKey(t, "tx", "sign", "ec-p256", "hsm", "sign", "verify")
	msg := b64("pay 1")
	s1 := e.must(t, 200, bankingToken, "POST", "/v1/keys/tx/sign", map[string]any{"message": msg})["signature"].(string)
	// The primary cannot be scheduled for destruction.
	if out := e.must(t, 409, officerToken, "POST", "/v1/keys/tx/versions/1/schedule-destroy", nil); errCode(out) != "illegal_transition" {
		t.Fatalf("destroy primary: %v", out)
	}
	e.must(t, 200, officerToken, "POST", "/v1/keys/tx/rotate", nil)
	// Below the configured minimum delay: refused.
	if out := e.must(t, 400, officerToken, "POST", "/v1/keys/tx/versions/1/schedule-destroy", map[string]any{"delay": "1m"}); errCode(out) != "invalid_argument" {
		t.Fatalf("short delay: %v", out)
	}
	e.must(t, 200, officerToken, "POST", "/v1/keys/tx/versions/1/schedule-destroy", nil)
	verify := map[string]any{"message": msg, "signature": s1}
	if out := e.must(t, 409, bankingToken, "POST", "/v1/keys/tx/verify", verify); errCode(out) != "version_not_usable" {
		t.Fatalf("verify with scheduled version: %v", out)
	}
	e.must(t, 200, officerToken, "POST", "/v1/keys/tx/versions/1/cancel-destroy", nil)
	if out := e.must(t, 200, bankingToken, "POST", "/v1/keys/tx/verify", verify); out["valid"] != true {
		t.Fatalf("after cancel: %v", out)
	}
	e.must(t, 409, officerToken, "POST", "/v1/keys/tx/versions/1/cancel-destroy", nil)
	e.must(t, 200, officerToken, "POST", "/v1/keys/tx/versions/1/schedule-destroy", nil)
	// Not yet due: the scheduler leaves it.
	e.clock.Advance(23 * time.Hour)
	if err := e.svc.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertTokenObject(t, e, "kw/tx/v1", true)
	e.clock.Advance(2 * time.Hour)
	if err := e.svc.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertTokenObject(t, e, "kw/tx/v1", false)
	k := e.must(t, 200, officerToken, "GET", "/v1/keys/tx", nil)
	if st := k["versions"].([]any)[0].(map[string]any)["state"]; st != "destroyed" {
		t.Fatalf("v1 state %v", st)
	}
	if out := e.must(t, 200, bankingToken, "POST", "/v1/keys/tx/verify", verify); out["valid"] != true {
		t.Fatalf("destroyed version no longer verifies: %v", out)
	}
	for _, action := range []string{"enable", "disable", "cancel-destroy", "schedule-destroy"} {
		if out := e.must(t, 409, officerToken, "POST", "/v1/keys/tx/versions/1/"+action, nil); errCode(out) != "illegal_transition" {
			t.Fatalf("%s destroyed: %v", action, out)
		}
	}
	// Disabling the primary stops signing at once (compromise); enabling restores it.
	e.must(t, 200, officerToken, "POST", "/v1/keys/tx/versions/2/disable", nil)
	if out := e.must(t, 409, bankingToken, "POST", "/v1/keys/tx/sign", map[string]any{"message": msg}); errCode(out) != "version_not_usable" {
		t.Fatalf("sign with disabled primary: %v", out)
	}
	e.must(t, 200, officerToken, "POST", "/v1/keys/tx/versions/2/enable", nil)
	e.must(t, 200, bankingToken, "POST", "/v1/keys/tx/sign", map[string]any{"message": msg})
}

// assertTokenObject looks the label up with a fresh pool (C_FindObjects,
// no cache).
func assertTokenObject(t *testing.T, e *keysvcEnv, label string, want bool) {
	t.Helper()
	tok := mustOpenSecond(t, e.tok)
	defer tok.Close()
	_, err := tok.Pool().FindKey(context.Background(), label)
	switch {
	case want && err != nil:
		t.Fatalf("token object %s: %v", label, err)
	case !want && !errors.Is(err, pkcs11shim.ErrKeyNotFound):
		t.Fatalf("token object %s still there (err %v)", label, err)
	}
}

// TestKeysvcDestroyAfterRestart: a daemon stopped before the due time
// destroys the version when it starts again after it.
func TestKeysvcDestroyAfterRestart(t *testing.T) {
	e := newKeysvcEnv(t)
	e.createKey(t, "k", "encrypt", "aes-256", "hsm", "encrypt", "decrypt")
	e.must(t, 200, officerToken, "POST", "/v1/keys/k/rotate", nil)
	e.must(t, 200, officerToken, "POST", "/v1/keys/k/versions/1/schedule-destroy", map[string]any{"delay": "2h"})
	e.stop()
	e.clock.Advance(3 * time.Hour)
	e.start(t) // start-up tick catches up
	assertTokenObject(t, e, "kw/k/v1", false)
	assertTokenObject(t, e, "kw/k/v2", true)
}

// TestKeysvcWrapped: wrapped keys work like hsm keys but leave no object in
// the token; destroying a version drops its blob.
func TestKeysvcWrapped(t *testing.T) {
	e := newKeysvcEnv(t)
	e.createKey(t, "cust-42", "encrypt", "aes-256", "wrapped", "encrypt", "decrypt", "datakey")
	e.createKey(t, "cust-42-sig", "sign", "ec-p256", "wrapped", "sign", "verify")
	e.createKey(t, "cust-42-rsa", "encrypt", "rsa-2048", "wrapped", "encrypt", "decrypt")
	assertTokenObject(t, e, "kw/cust-42/v1", false)
	ct := e.must(t, 200, bankingToken, "POST", "/v1/keys/cust-42/encrypt", map[string]any{"plaintext": b64("6222 0200 1234 5678"), "aad": b64("cust=42")})["ciphertext"].(string)
	pt := e.must(t, 200, bankingToken, "POST", "/v1/keys/cust-42/decrypt", map[string]any{"ciphertext": ct, "aad": b64("cust=42")})["plaintext"]
	if pt != b64("6222 0200 1234 5678") {
		t.Fatalf("round trip: %v", pt)
	}
	if out := e.must(t, 400, bankingToken, "POST", "/v1/keys/cust-42/decrypt", map[string]any{"ciphertext": ct, "aad": b64("cust=43")}); errCode(out) != "decryption_failed" {
		t.Fatalf("wrong aad: %v", out)
	}
	dk := e.must(t, 200, bankingToken, "POST", "/v1/keys/cust-42/datakey", map[string]any{"size": 32})
	back := e.must(t, 200, bankingToken, "POST", "/v1/keys/cust-42/decrypt", map[string]any{"ciphertext": dk["ciphertext"]})["plaintext"]
	if back != dk["plaintext"] {
		t.Fatal("data key does not decrypt to itself")
	}
	rct := e.must(t, 200, bankingToken, "POST", "/v1/keys/cust-42-rsa/encrypt", map[string]any{"plaintext": b64("pin block")})["ciphertext"].(string)
	if out := e.must(t, 200, bankingToken, "POST", "/v1/keys/cust-42-rsa/decrypt", map[string]any{"ciphertext": rct}); out["plaintext"] != b64("pin block") {
		t.Fatalf("RSA-OAEP wrapped: %v", out)
	}
	sig := e.must(t, 200, bankingToken, "POST", "/v1/keys/cust-42-sig/sign", map[string]any{"message": b64("m")})["signature"]
	if out := e.must(t, 200, bankingToken, "POST", "/v1/keys/cust-42-sig/verify", map[string]any{"message": b64("m"), "signature": sig}); out["valid"] != true {
		t.Fatalf("wrapped signature: %v", out)
	}
	e.must(t, 200, officerToken, "POST", "/v1/keys/cust-42/rotate", nil)
	e.must(t, 200, officerToken, "POST", "/v1/keys/cust-42/versions/1/schedule-destroy", nil)
	e.clock.Advance(25 * time.Hour)
	if err := e.svc.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	k, err := e.store.GetKey("cust-42")
	if err != nil || k.Versions[0].State != wire.StateDestroyed || len(k.Versions[0].Wrapped) != 0 || len(k.Versions[1].Wrapped) == 0 {
		t.Fatalf("after destroy: %v %+v", err, k.Versions)
	}
	if out := e.must(t, 409, bankingToken, "POST", "/v1/keys/cust-42/decrypt", map[string]any{"ciphertext": ct, "aad": b64("cust=42")}); errCode(out) != "version_not_usable" {
		t.Fatalf("decrypt with destroyed version: %v", out)
	}
}

// TestKeysvcAdmission: no credentials → 401; a client without a grant →
// 403; a non-admin cannot create keys; nothing changes (R-SRV-2).
func TestKeysvcAdmission(t *testing.T) {
	e := newKeysvcEnv(t)
	e.createKey(t, "k", "sign", "ec-p256", "hsm", "sign")
	sign := map[string]any{"message": b64("x")}
	if out := e.must(t, 401, "", "POST", "/v1/keys/k/sign", sign); errCode(out) != "unauthenticated" {
		t.Fatalf("no credentials: %v", out)
	}
	if out := e.must(t, 401, "made-up", "POST", "/v1/keys/k/sign", sign); errCode(out) != "unauthenticated" {
		t.Fatalf("bad token: %v", out)
	}
	if out := e.must(t, 403, intruderToken, "POST", "/v1/keys/k/sign", sign); errCode(out) != "forbidden" {
		t.Fatalf("intruder: %v", out)
	}
	if out := e.must(t, 403, bankingToken, "POST", "/v1/keys/k/verify", map[string]any{"message": b64("x"), "signature": "kw:v1:AAAA"}); errCode(out) != "forbidden" {
		t.Fatalf("verify not granted: %v", out)
	}
	if out := e.must(t, 403, bankingToken, "POST", "/v1/keys", map[string]any{"name": "mine", "purpose": "sign", "algorithm": "ec-p256", "protection": "hsm"}); errCode(out) != "forbidden" {
		t.Fatalf("non-admin create: %v", out)
	}
	if out := e.must(t, 403, bankingToken, "POST", "/v1/keys/k/rotate", nil); errCode(out) != "forbidden" {
		t.Fatalf("rotate not granted: %v", out)
	}
	// The officer manages but may not sign: no grant.
	e.must(t, 403, officerToken, "POST", "/v1/keys/k/sign", sign)
	if keys := e.must(t, 200, intruderToken, "GET", "/v1/keys", nil); len(keys["keys"].([]any)) != 0 {
		t.Fatalf("intruder lists keys: %v", keys)
	}
	k, _ := e.store.GetKey("k")
	if len(k.Versions) != 1 {
		t.Fatal("a refused call changed the key")
	}
}

// TestKeysvcBadInput: malformed JSON, unknown fields, wrong types, oversize
// bodies, bad base64, a key used against its purpose → 4xx with codes, and
// nothing changes (R-SRV-4).
func TestKeysvcBadInput(t *testing.T) {
	e := newKeysvcEnv(t)
	e.createKey(t, "s", "sign", "ec-p256", "hsm", "sign", "verify", "encrypt", "decrypt")
	cases := []struct {
		name, path string
		body       any
		status     int
		code       string
	}{
		{"malformed", "/v1/keys/s/sign", `{"message":`, 400, "invalid_json"},
		{"unknown field", "/v1/keys/s/sign", `{"message":"eA==","mesage":"x"}`, 400, "unknown_field"},
		{"wrong type", "/v1/keys/s/sign", `{"message":42}`, 400, "invalid_argument"},
		{"bad base64", "/v1/keys/s/sign", `{"message":"not base64!"}`, 400, "invalid_argument"},
		{"trailing data", "/v1/keys/s/sign", `{"message":"eA=="} {}`, 400, "invalid_json"},
		{"both message and digest", "/v1/keys/s/sign", `{"message":"eA==","digest":"eA=="}`, 400, "invalid_argument"},
		{"short digest", "/v1/keys/s/sign", `{"digest":"eA=="}`, 400, "invalid_argument"},
		{"oversize", "/v1/keys/s/sign", `{"message":"` + strings.Repeat("A", 2<<20) + `"}`, 413, "body_too_large"},
		{"against purpose", "/v1/keys/s/encrypt", `{"plaintext":"eA=="}`, 400, "wrong_purpose"},
		{"bad signature format", "/v1/keys/s/verify", `{"message":"eA==","signature":"abc"}`, 400, "invalid_signature"},
		{"unknown key", "/v1/keys/nope/sign", `{"message":"eA=="}`, 403, "forbidden"}, // as for a key it holds no grant for
		{"bad key name", "/v1/keys/NOPE!/sign", `{"message":"eA=="}`, 400, "invalid_argument"},
		{"bad algorithm", "/v1/keys", `{"name":"x","purpose":"sign","algorithm":"dsa","protection":"hsm"}`, 400, "invalid_argument"},
		{"bad version", "/v1/keys/s/versions/zero/disable", nil, 400, "invalid_argument"},
		{"unknown version", "/v1/keys/s/versions/9/disable", nil, 404, "version_not_found"},
	}
	for _, c := range cases {
		bearer := bankingToken
		if strings.HasPrefix(c.path, "/v1/keys/s/versions") || c.path == "/v1/keys" {
			bearer = officerToken
		}
		st, out := e.call(t, bearer, "POST", c.path, c.body)
		if st != c.status || errCode(out) != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.name, st, out, c.status, c.code)
		}
		if msg, _ := out["error"].(map[string]any)["message"].(string); msg == "" || strings.Contains(msg, "goroutine") {
			t.Errorf("%s: unhelpful message %q", c.name, msg)
		}
	}
	k, _ := e.store.GetKey("s")
	if len(k.Versions) != 1 || k.Versions[0].State != wire.StateEnabled {
		t.Fatalf("bad input changed the key: %+v", k.Versions)
	}
	if _, err := e.store.GetKey("x"); !errors.Is(err, wire.ErrKeyNotFound) {
		t.Fatalf("a refused create stored a key: %v", err)
	}
}

// TestKeysvcAuditTamper: every call is audited in a hash chain with signed
// checkpoints; an edited, deleted or reordered record is detected (R-SRV-3).
func TestKeysvcAuditTamper(t *testing.T) {
	for _, attack := range []string{"edit", "delete", "swap"} {
		t.Run(attack, func(t *testing.T) {
			e := newKeysvcEnv(t)
			e.createKey(t, "a", "sign", "ec-p256", "hsm", "sign")
			for i := 0; i < 5; i++ {
				e.must(t, 200, bankingToken, "POST", "/v1/keys/a/sign", map[string]any{"message": b64("m")})
			}
			e.must(t, 403, intruderToken, "POST", "/v1/keys/a/sign", map[string]any{"message": b64("m")})
			if err := e.svc.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
			rep, err := e.svc.VerifyAudit()
			if err != nil || rep.Records < 7 || rep.Checkpoints != 1 {
				t.Fatalf("clean log: %+v %v", rep, err)
			}
			var forbidden int
			e.store.AuditRecords(0, func(r audit.Record) error {
				if r.Result == "forbidden" && r.Client == "intruder" {
					forbidden++
				}
				if strings.Contains(string(mustJSON(r)), b64("m")) {
					t.Errorf("audit record %d holds the message", r.Seq)
				}
				return nil
			})
			if forbidden != 1 {
				t.Fatalf("refused call audited %d times", forbidden)
			}
			switch attack {
			case "edit":
				err = boltsurgeon.TamperAudit(e.store.DB(), 3, func(raw []byte) []byte { return bytes.Replace(raw, []byte(`"banking"`), []byte(`"officer"`), 1) })
			case "delete":
				err = boltsurgeon.DeleteAudit(e.store.DB(), 4)
			case "swap":
				err = boltsurgeon.SwapAudit(e.store.DB(), 3, 4)
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.svc.VerifyAudit(); !errors.Is(err, audit.ErrTampered) {
				t.Fatalf("%s not detected: %v", attack, err)
			}
		})
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// TestKeysvcAutoRotationAndMinVersion: the scheduler rotates a key whose
// rotation period has passed; min_version retires old versions for verify.
func TestKeysvcAutoRotationAndMinVersion(t *testing.T) {
	e := newKeysvcEnv(t)
	e.createKey(t, "auto", "sign", "ec-p256", "hsm", "sign", "verify")
	if out := e.must(t, 400, officerToken, "POST", "/v1/keys/auto/settings", map[string]any{"rotation_period": "10m"}); errCode(out) != "invalid_argument" {
		t.Fatalf("short period: %v", out)
	}
	e.must(t, 200, officerToken, "POST", "/v1/keys/auto/settings", map[string]any{"rotation_period": "720h"})
	s1 := e.must(t, 200, bankingToken, "POST", "/v1/keys/auto/sign", map[string]any{"message": b64("m")})["signature"].(string)
	e.clock.Advance(719 * time.Hour)
	if err := e.svc.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if k := e.must(t, 200, officerToken, "GET", "/v1/keys/auto", nil); k["primary"] != float64(1) {
		t.Fatalf("rotated early: %v", k["primary"])
	}
	e.clock.Advance(2 * time.Hour)
	if err := e.svc.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if k := e.must(t, 200, officerToken, "GET", "/v1/keys/auto", nil); k["primary"] != float64(2) {
		t.Fatalf("not rotated when due: %v", k["primary"])
	}
	assertTokenObject(t, e, "kw/auto/v2", true)
	// The banking app may not change settings; the officer may.
	e.must(t, 403, bankingToken, "POST", "/v1/keys/auto/settings", map[string]any{"min_version": 2})
	if out := e.must(t, 400, officerToken, "POST", "/v1/keys/auto/settings", map[string]any{"min_version": 3}); errCode(out) != "invalid_argument" {
		t.Fatalf("min_version above primary: %v", out)
	}
	e.must(t, 200, officerToken, "POST", "/v1/keys/auto/settings", map[string]any{"min_version": 2})
	if out := e.must(t, 409, bankingToken, "POST", "/v1/keys/auto/verify", map[string]any{"message": b64("m"), "signature": s1}); errCode(out) != "version_not_usable" {
		t.Fatalf("v1 below min_version: %v", out)
	}
	// The scheduler's rotation is audited under its own name.
	var byScheduler int
	e.store.AuditRecords(0, func(r audit.Record) error {
		if r.Client == "scheduler" && r.Op == "rotate" && r.Result == "ok" {
			byScheduler++
		}
		return nil
	})
	if byScheduler != 1 {
		t.Fatalf("%d scheduler rotations audited", byScheduler)
	}
}

// TestKeysvcSignBatch: many items in one request, spread over sessions;
// every signature verifies; a bad item refuses the whole batch by index;
// more than the limit is refused.
func TestKeysvcSignBatch(t *testing.T) {
	e := newKeysvcEnv(t)
	e.createKey(t, "bulk", "sign", "ec-p384", "hsm", "sign", "verify")
	items := make([]any, 100)
	for i := range items {
		items[i] = map[string]any{"message": b64("receipt " + strconv.Itoa(i))}
	}
	out := e.must(t, 200, bankingToken, "POST", "/v1/keys/bulk/sign-batch", map[string]any{"items": items})
	sigs := out["signatures"].([]any)
	if len(sigs) != len(items) {
		t.Fatalf("%d signatures for %d items", len(sigs), len(items))
	}
	for i, s := range sigs {
		sig := s.(map[string]any)["signature"]
		if v := e.must(t, 200, bankingToken, "POST", "/v1/keys/bulk/verify", map[string]any{"message": b64("receipt " + strconv.Itoa(i)), "signature": sig}); v["valid"] != true {
			t.Fatalf("item %d does not verify (signatures out of order?)", i)
		}
	}
	items[7] = map[string]any{"digest": b64("short")}
	if out := e.must(t, 400, bankingToken, "POST", "/v1/keys/bulk/sign-batch", map[string]any{"items": items}); errCode(out) != "invalid_argument" || !strings.Contains(out["error"].(map[string]any)["message"].(string), "item 7") {
		t.Fatalf("bad item: %v", out)
	}
	many := make([]any, 1001)
	for i := range many {
		many[i] = map[string]any{"message": "eA=="}
	}
	e.must(t, 400, bankingToken, "POST", "/v1/keys/bulk/sign-batch", map[string]any{"items": many})
}

// TestKeysvcMaterialVanished: a token object deleted behind keysvc's back
// gives a clear 409, not an internal error.
func TestKeysvcMaterialVanished(t *testing.T) {
	e := newKeysvcEnv(t)
	e.createKey(t, "gone", "sign", "ec-p256", "hsm", "sign")
	e.must(t, 200, bankingToken, "POST", "/v1/keys/gone/sign", map[string]any{"message": b64("m")})
	other := mustOpenSecond(t, e.tok)
	k, err := other.Pool().FindKey(context.Background(), "kw/gone/v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Pool().DestroyKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	out := e.must(t, 409, bankingToken, "POST", "/v1/keys/gone/sign", map[string]any{"message": b64("m")})
	if errCode(out) != "version_not_usable" || !strings.Contains(out["error"].(map[string]any)["message"].(string), "missing from the token") {
		t.Fatalf("sign with vanished material: %v", out)
	}
}
