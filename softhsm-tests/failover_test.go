//go:build linux

package softhsmtests

// keysvc on two tokens at once (issue 15 items 3 and 4), as a real process
// (cmd/keysvc with `tokens:`) on two SoftHSM2 tokens that hold the same
// replication key, installed here as the security officers' ceremony
// would (pkcs11shim.Module.InstallReplicationKey, SO PIN):
//
//   - Lose a token under load: 64 clients sign over HTTPS (an hsm key,
//     replicated, and a wrapped key) for ~12 s; at ~3 s token B's SoftHSM
//     directory is moved away, at ~7 s put back. No request may get
//     anything but 200; the log shows requests, non-200 and latency before,
//     during and after, and how long B took to serve again.
//   - A key created while B is away signs ON B after B is re-admitted (A
//     then taken away), and a version destroyed while B was away is gone
//     from B.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/client"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// failoverEnv is keysvc on tokens a and b.
type failoverEnv struct {
	ks      *daemon
	a, b    pkcs11shim.TokenInfo
	officer *client.Client
	hc      *http.Client
	dataDir string // keysvc's data_dir (keysvc.db)
}

// startKeysvcOnTwoTokens makes two tokens with one replication key and
// runs cmd/keysvc on both (tokens:, probe_interval 1s).
func startKeysvcOnTwoTokens(t *testing.T) *failoverEnv {
	t.Helper()
	return startKeysvcOnTwoTokensWith(t, nil)
}

// startKeysvcOnTwoTokensWith is startKeysvcOnTwoTokens with more keys put
// into the tokens (provision) before keysvc starts.
func startKeysvcOnTwoTokensWith(t *testing.T, provision func(a, b pkcs11shim.TokenInfo)) *failoverEnv {
	t.Helper()
	dir := t.TempDir()
	tt := newTestTLS(t, dir)
	e := &failoverEnv{a: newTokenLabel(t), b: newTokenLabel(t)}
	repl := make([]byte, 32)
	rand.Read(repl)
	so := func(login pkcs11shim.LoginFunc) error { return login([]byte(soPIN)) }
	var checks [][]byte
	for _, ti := range []pkcs11shim.TokenInfo{e.a, e.b} {
		c, err := module.InstallReplicationKey(pkcs11shim.Selector{Label: ti.Label}, repl, so)
		if err != nil {
			t.Fatalf("install the replication key in %s: %v", ti.Label, err)
		}
		checks = append(checks, c)
	}
	if !bytes.Equal(checks[0], checks[1]) {
		t.Fatal("the two tokens' replication keys have different check values")
	}
	provisionSetServiceKeys(t, e.a, e.b)
	if provision != nil {
		provision(e.a, e.b)
	}
	e.dataDir = filepath.Join(dir, "keysvc")
	e.ks = newDaemon(t, "keysvc", dir, tt)
	pinFile, conf := filepath.Join(dir, "user.pin"), filepath.Join(dir, "keysvc.yaml")
	uri := func(ti pkcs11shim.TokenInfo) string {
		return "pkcs11:token=" + ti.Label + "?module-path=" + modulePath + "&pin-source=file:" + pinFile
	}
	writeFiles(t, pinFile, userPIN+"\n", conf, fmt.Sprintf(`listen: %q
data_dir: %q
tls: {cert: %q, key: %q}
tokens:
  - {name: a, uri: %q, max_sessions: 32, wait_timeout: 10s}
  - {name: b, uri: %q, max_sessions: 32, wait_timeout: 10s}
probe_interval: 1s
destroy: {default_delay: 1s, min_delay: 1s}
scheduler_interval: 500ms
clients:
  - {name: officer, admin: true, token_sha256: %s}
  - {name: bankapp, token_sha256: %s}
`, e.ks.addr, filepath.Join(dir, "keysvc"), tt.cert, tt.key, uri(e.a), uri(e.b), sha(officerToken), sha(bankappToken)))
	e.ks.args = []string{"serve", "-config", conf}
	e.ks.start(t)
	e.officer = e.ks.kmsClient(t, officerToken, 10*time.Second, 2)
	e.hc = &http.Client{Timeout: 30 * time.Second, Transport: tt.clientTransport(80)}
	t.Cleanup(e.hc.CloseIdleConnections)
	return e
}

// provisionSetServiceKeys puts keysvc's service keys into every token,
// the same keys in each, before keysvc (production: it makes none itself)
// starts: generated in the first token backup-able (extractable only under
// a trusted key, as the ceremony's service_keys preset makes them) and
// copied into the others under the replication key (what the officers'
// keygen, backup and restore ceremonies give a real set of HSMs).
func provisionSetServiceKeys(t *testing.T, tis ...pkcs11shim.TokenInfo) {
	t.Helper()
	provisionSetKeys(t, serviceKeySpecs, tis...)
}

// provisionSetKeys generates specs in the first token, backup-able, and
// copies them into the others under the replication key.
func provisionSetKeys(t *testing.T, specs []pkcs11shim.KeySpec, tis ...pkcs11shim.TokenInfo) {
	t.Helper()
	ctx := context.Background()
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "guard.db"), 0)
	var stores []*token.Store
	for _, ti := range tis {
		tok, err := token.Open(ctx, token.Config{Kind: token.KindHSM, Module: modulePath, Label: ti.Label,
			PIN: &switchablePIN{pin: userPIN}, PINGuard: g.Config(), WaitTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer tok.Close()
		stores = append(stores, tok.Store())
	}
	for _, ks := range specs {
		ks.Extractable = true
		k, err := stores[0].GenerateKey(ctx, ks)
		if err != nil {
			t.Fatalf("generate %s: %v", ks.Label, err)
		}
		rep, err := stores[0].ExportReplica(ctx, k)
		if err != nil {
			t.Fatalf("export %s: %v", ks.Label, err)
		}
		for _, st := range stores[1:] {
			if _, err := st.ImportReplica(ctx, rep); err != nil {
				t.Fatalf("copy %s: %v", ks.Label, err)
			}
		}
	}
}

// createKey makes a sign key the bankapp may use, and returns its public key.
func (e *failoverEnv) createKey(t *testing.T, name string, prot wire.Protection) *ecdsa.PublicKey {
	t.Helper()
	ctx := context.Background()
	if _, err := e.officer.CreateKey(ctx, wire.CreateKeyRequest{Name: name, Purpose: "sign", Algorithm: "ec-p256", Protection: prot,
		Policy: wire.Policy{Grants: []wire.Grant{{Client: "bankapp", Ops: []wire.Op{"sign"}}, {Client: "officer", Ops: []wire.Op{"public"}}}}}); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return e.publicKey(t, name)
}

func (e *failoverEnv) publicKey(t *testing.T, name string) *ecdsa.PublicKey {
	t.Helper()
	pk, err := e.officer.PublicKey(context.Background(), name, 0)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(pk.PEM))
	if blk == nil {
		t.Fatalf("public key of %s is not PEM", name)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return pub.(*ecdsa.PublicKey)
}

// sign posts one sign request as bankapp and returns the HTTP status and,
// on 200, the signature's DER.
func (e *failoverEnv) sign(name, msg string) (int, []byte, error) {
	body := fmt.Sprintf(`{"message":%q}`, base64.StdEncoding.EncodeToString([]byte(msg)))
	req, _ := http.NewRequest("POST", e.ks.url+"/v1/keys/"+name+"/sign", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bankappToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, fmt.Errorf("%s", b)
	}
	var r wire.SignResult
	if err := json.Unmarshal(b, &r); err != nil {
		return resp.StatusCode, nil, err
	}
	parts := strings.SplitN(r.Signature, ":", 3)
	if len(parts) != 3 {
		return resp.StatusCode, nil, fmt.Errorf("signature %q is not kw:v<n>:<base64>", r.Signature)
	}
	der, err := base64.StdEncoding.DecodeString(parts[2])
	return resp.StatusCode, der, err
}

func verifyMsg(pub *ecdsa.PublicKey, msg string, der []byte) bool {
	d := sha256.Sum256([]byte(msg))
	return ecdsa.VerifyASN1(pub, d[:], der)
}

// tokenStates reads /readyz: each token's state and re-admissions.
func (e *failoverEnv) tokenStates() (map[string]string, map[string]int, error) {
	resp, err := e.hc.Get(e.ks.url + "/readyz")
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Tokens []struct {
			Name, State  string
			Readmissions int
		} `json:"tokens"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, nil, err
	}
	st, re := map[string]string{}, map[string]int{}
	for _, tk := range body.Tokens {
		st[tk.Name], re[tk.Name] = tk.State, tk.Readmissions
	}
	return st, re, nil
}

// waitState polls /readyz until token name is in state want; it returns
// how long that took.
func (e *failoverEnv) waitState(t *testing.T, name, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		st, _, err := e.tokenStates()
		if err == nil && st[name] == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("token %s not %s within %v (readyz: %v, %v)", name, want, within, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// away moves a token's SoftHSM directory away (the HSM partition is gone
// for every process) and returns the function that puts it back.
func away(t *testing.T, ti pkcs11shim.TokenInfo) (back func()) {
	t.Helper()
	dir := tokenDir(t, ti.Label)
	// Outside the token directory: SoftHSM2 would find a token in any
	// directory under directories.tokendir, a renamed one too.
	moved := filepath.Join(t.TempDir(), "away")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	back = func() {
		once.Do(func() {
			if err := os.Rename(moved, dir); err != nil {
				t.Errorf("put token %s back: %v", ti.Label, err)
			}
		})
	}
	t.Cleanup(back)
	return back
}

// tokenLabels lists the private and secret key labels on ti, read by this
// process (its own login, its own guard file).
func tokenLabels(t *testing.T, ti pkcs11shim.TokenInfo) []string {
	t.Helper()
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "guard.db"), 0)
	if err := module.Reinitialize(module.Generation()); err != nil { // see the token as it is on disk now
		t.Logf("re-initialise before listing: %v", err)
	}
	tok, err := token.Open(context.Background(), token.Config{Kind: token.KindHSM, Module: modulePath, Label: ti.Label,
		PIN: &switchablePIN{pin: userPIN}, PINGuard: g.Config(), WaitTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", ti.Label, err)
	}
	defer tok.Close()
	l, err := tok.Store().KeyLabels(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// sample is one request of the load.
type sample struct {
	at      time.Duration // since the load started
	latency time.Duration
	status  int
}

type phaseStats struct {
	n, non200     int
	p50, p99, max time.Duration
}

func summarise(ss []sample) phaseStats {
	var p phaseStats
	var lat []time.Duration
	for _, s := range ss {
		p.n++
		if s.status != http.StatusOK {
			p.non200++
		}
		lat = append(lat, s.latency)
	}
	if len(lat) == 0 {
		return p
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p.p50, p.p99, p.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	return p
}

// TestFailoverLoseTokenUnderLoad: 64 clients sign for ~12 s while token
// B goes away at ~3 s and comes back at ~7 s. Every request must get 200.
func TestFailoverLoseTokenUnderLoad(t *testing.T) {
	e := startKeysvcOnTwoTokens(t)
	pubs := map[string]*ecdsa.PublicKey{
		"fo-hsm":     e.createKey(t, "fo-hsm", wire.ProtectionHSM),
		"fo-wrapped": e.createKey(t, "fo-wrapped", wire.ProtectionWrapped),
	}
	names := []string{"fo-hsm", "fo-wrapped"}
	if st, _, err := e.tokenStates(); err != nil || st["a"] != "up" || st["b"] != "up" {
		t.Fatalf("before the load: %v %v", st, err)
	}
	const clients, total, removeAt, restoreAt = 64, 12 * time.Second, 3 * time.Second, 7 * time.Second
	var (
		mu       sync.Mutex
		samples  []sample
		badSig   atomic.Int64
		firstErr atomic.Value
	)
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			var mine []sample
			for i := 0; ; i++ {
				select {
				case <-stop:
					mu.Lock()
					samples = append(samples, mine...)
					mu.Unlock()
					return
				default:
				}
				name := names[(c+i)%2]
				msg := fmt.Sprintf("client %d request %d", c, i)
				t0 := time.Now()
				status, der, err := e.sign(name, msg)
				mine = append(mine, sample{at: t0.Sub(start), latency: time.Since(t0), status: status})
				if err != nil {
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s at %v: %d %v", name, t0.Sub(start).Round(time.Millisecond), status, err))
					continue
				}
				if i%8 == 0 && !verifyMsg(pubs[name], msg, der) {
					badSig.Add(1)
				}
			}
		}(c)
	}
	time.Sleep(removeAt)
	back := away(t, e.b)
	removedAt := time.Since(start)
	downAfter := e.waitState(t, "b", "down", restoreAt-removeAt)
	time.Sleep(restoreAt - time.Since(start))
	back()
	restoredAt := time.Since(start)
	readmit := e.waitState(t, "b", "up", 30*time.Second)
	readmittedAt := time.Since(start)
	if rest := total - time.Since(start); rest > 0 {
		time.Sleep(rest)
	}
	close(stop)
	wg.Wait()

	var before, during, after []sample
	for _, s := range samples {
		switch {
		case s.at < removedAt:
			before = append(before, s)
		case s.at < readmittedAt:
			during = append(during, s)
		default:
			after = append(after, s)
		}
	}
	all := summarise(samples)
	var tb strings.Builder
	fmt.Fprintf(&tb, "failover under load: %d clients, keys fo-hsm (hsm, on both tokens) and fo-wrapped, %d CPUs\n", clients, cpus())
	fmt.Fprintf(&tb, "  B moved away at %v (readyz showed B down %v later), put back at %v, B up again %v after that (re-admitted at %v)\n",
		removedAt.Round(time.Millisecond), downAfter.Round(time.Millisecond), restoredAt.Round(time.Millisecond), readmit.Round(time.Millisecond), readmittedAt.Round(time.Millisecond))
	fmt.Fprintf(&tb, "  %-8s %9s %7s %9s %9s %9s\n", "phase", "requests", "non-200", "p50", "p99", "max")
	for _, row := range []struct {
		name string
		ss   []sample
	}{{"before", before}, {"during", during}, {"after", after}, {"total", samples}} {
		p := summarise(row.ss)
		fmt.Fprintf(&tb, "  %-8s %9d %7d %9v %9v %9v\n", row.name, p.n, p.non200, p.p50.Round(10*time.Microsecond), p.p99.Round(10*time.Microsecond), p.max.Round(10*time.Microsecond))
	}
	t.Log(tb.String())
	if all.non200 != 0 {
		t.Errorf("%d of %d requests did not get 200; first: %v", all.non200, all.n, firstErr.Load())
	}
	if badSig.Load() != 0 {
		t.Errorf("%d signatures did not verify", badSig.Load())
	}
	if len(during) == 0 || len(after) == 0 {
		t.Errorf("no requests while B was away (%d) or after (%d)", len(during), len(after))
	}
	// What re-initialising the shared module (to bring B back, and at each
	// probe while B is gone) did to A: its sessions died and its pool
	// recovered; the set must never have taken A out for that.
	logText, _ := os.ReadFile(e.ks.logPath)
	downs := map[string]int{}
	for _, line := range strings.Split(string(logText), "\n") {
		if strings.Contains(line, "member DOWN") {
			for _, name := range []string{"a", "b"} {
				if strings.Contains(line, " member="+name+" ") {
					downs[name]++
				}
			}
		}
	}
	t.Logf("keysvc's log: member DOWN a=%d b=%d; on b:\n%s", downs["a"], downs["b"], strings.Join(logLines(e.ks.logPath, "member=b "), "\n"))
	if downs["a"] != 0 || downs["b"] != 1 {
		t.Errorf("member DOWN logged a=%d b=%d times, want 0 and 1", downs["a"], downs["b"])
	}
	if _, re, _ := e.tokenStates(); re["b"] != 1 || re["a"] != 0 {
		t.Errorf("re-admissions a=%d b=%d, want 0 and 1 (a must never have been taken out)", re["a"], re["b"])
	}
}

// TestFailoverCatchUp: while B is away a key is created and a version of
// another destroyed; after B is re-admitted the new key is on B and signs
// there (A taken away), and the destroyed version is gone from B.
func TestFailoverCatchUp(t *testing.T) {
	e := startKeysvcOnTwoTokens(t)
	ctx := context.Background()
	e.createKey(t, "fo-gone", wire.ProtectionHSM)
	if _, err := e.officer.Rotate(ctx, "fo-gone"); err != nil {
		t.Fatal(err)
	}
	gonePub := e.publicKey(t, "fo-gone") // v2, the primary
	labels := tokenLabels(t, e.b)
	if !slices.Contains(labels, "kw/fo-gone/v1") || !slices.Contains(labels, "kw/fo-gone/v2") {
		t.Fatalf("B lacks a version made while it was up: %v", labels)
	}

	backB := away(t, e.b)
	// The prober (1 s) notices; no request is needed for that.
	e.waitState(t, "b", "down", 10*time.Second)
	newPub := e.createKey(t, "fo-new", wire.ProtectionHSM)
	if _, err := e.officer.SetVersionState(ctx, "fo-gone", 1, wire.ActionScheduleDestroy, time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		k, err := e.officer.GetKey(ctx, "fo-gone")
		if err != nil {
			t.Fatal(err)
		}
		if k.Versions[0].State == wire.StateDestroyed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fo-gone v1 not destroyed by the scheduler: %+v", k.Versions[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
	backB()
	took := e.waitState(t, "b", "up", 30*time.Second)
	t.Logf("B re-admitted %v after it was put back; keysvc's log on B:\n%s", took.Round(time.Millisecond),
		strings.Join(logLines(e.ks.logPath, "member=b "), "\n"))
	labels = tokenLabels(t, e.b)
	if !slices.Contains(labels, "kw/fo-new/v1") {
		t.Errorf("the key made while B was away is not on B after re-admission: %v", labels)
	}
	if slices.Contains(labels, "kw/fo-gone/v1") {
		t.Errorf("the version destroyed while B was away is still on B: %v", labels)
	}
	if !slices.Contains(labels, "kw/fo-gone/v2") {
		t.Errorf("catch-up destroyed a live version: %v", labels)
	}

	backA := away(t, e.a)
	defer backA()
	for i, k := range []struct {
		name string
		pub  *ecdsa.PublicKey
	}{{"fo-new", newPub}, {"fo-gone", gonePub}} {
		msg := fmt.Sprint("signed on B ", i)
		status, der, err := e.sign(k.name, msg)
		if status != http.StatusOK || err != nil {
			t.Fatalf("sign %s with only B: %d %v", k.name, status, err)
		}
		if !verifyMsg(k.pub, msg, der) {
			t.Fatalf("%s's signature made on B does not verify", k.name)
		}
	}
	e.waitState(t, "a", "down", 10*time.Second)
}

func cpus() int { return runtime.NumCPU() }

// logLines returns the lines of a log file that contain sub.
func logLines(path, sub string) []string {
	b, _ := os.ReadFile(path)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return out
}
