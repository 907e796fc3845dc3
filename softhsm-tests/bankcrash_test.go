//go:build linux

package softhsmtests

// Crash safety of banking + keysvc (issue 6 item 8):
//
//   - TestBankCrashKeysvc (on both stores: a bbolt file and PostgreSQL)
//     runs keysvc as a real process (the cmd/keysvc
//     binary, TLS, bearer tokens, a throwaway SoftHSM token, PIN from a
//     file) and banking in this process. Mid-burst of USB-key transfers it
//     kills keysvc with SIGKILL: banking must answer 503 "unavailable" (no
//     500, no hang), recover once keysvc is back on the same data and
//     token, and the ledger must hold exactly the transfers it confirmed.
//   - TestBankCrashBanking runs banking as cmd/banking and keysvc as
//     cmd/keysvc, TLS between them, and kills banking with SIGKILL
//     mid-burst; restarted on the same store (its bbolt file, or its
//     PostgreSQL database: both are run), the bank must verify,
//     hold the starting total, and every order sent again must either
//     replay its stored receipt or apply once.
//
// The binaries are built once per run (cmd/banking and cmd/keysvc from
// this module), with -race when this test binary has it.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/banking"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/store/pglocal"
	"github.com/keyward/keyward/keysvc/client"
	"github.com/keyward/keyward/keysvc/wire"
)

// raceEnabled reports whether this test binary was built with -race: the
// bursts are smaller then, and the keysvc binary is built the same way so
// that `go test -race` finds its packages in the build cache.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// --- TLS material ----------------------------------------------------------

// testTLS is a throwaway CA and a server certificate for 127.0.0.1 and
// localhost, as PEM files, and the CA as a pool.
type testTLS struct {
	ca, cert, key string // PEM files
	pool          *x509.CertPool
}

func newTestTLS(t testing.TB, dir string) testTLS {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Keyward test CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	tt := testTLS{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "server.pem"), key: filepath.Join(dir, "server-key.pem"), pool: x509.NewCertPool()}
	tt.pool.AddCert(ca)
	writeFiles(t, tt.ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
		tt.cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		tt.key, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	return tt
}

// clientTransport trusts the test CA and keeps up to idle connections.
func (tt testTLS) clientTransport(idle int) *http.Transport {
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tt.pool, MinVersion: tls.VersionTLS12},
		MaxIdleConns: idle, MaxIdleConnsPerHost: idle, IdleConnTimeout: time.Minute}
}

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// --- servers as real processes ----------------------------------------------

// binaries holds the commands built for this run, in the run's SoftHSM
// directory (TestMain removes it at the end).
var (
	binariesMu sync.Mutex
	binaries   = map[string]string{}
)

// builtCommand builds ./cmd/<name> once per run, with -race when this test
// binary has it (after `go test -race ./...` the race build of every
// package it needs is in the build cache).
func builtCommand(t testing.TB, name string) string {
	t.Helper()
	binariesMu.Lock()
	defer binariesMu.Unlock()
	if p, ok := binaries[name]; ok {
		return p
	}
	dir := filepath.Join(confDir, "bin")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	args := []string{"build", "-o", bin}
	if raceEnabled() {
		args = append(args, "-race")
	}
	cmd := exec.Command(goTool(), append(args, "github.com/keyward/keyward/cmd/"+name)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	binaries[name] = bin
	return bin
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// daemon is a server binary run as a child process on a fixed loopback
// address, so that a restart answers at the same URL.
type daemon struct {
	name, bin, logPath, addr, url string
	args                          []string
	tls                           testTLS
	cmd                           *exec.Cmd
	exited                        chan struct{}
}

// newDaemon prepares cmd/<name> in dir; its config is the caller's.
func newDaemon(t testing.TB, name, dir string, tt testTLS) *daemon {
	d := &daemon{name: name, bin: builtCommand(t, name), logPath: filepath.Join(dir, name+".log"), addr: freeAddr(t), tls: tt}
	d.url = "https://" + d.addr
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			logTail(t, name, d.logPath)
		}
	})
	return d
}

// start runs the binary and waits until /healthz answers over TLS.
func (d *daemon) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(d.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(d.bin, d.args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive a crashed test
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	d.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); logf.Close(); close(done) }(d.cmd, d.exited)
	hc := &http.Client{Timeout: time.Second, Transport: d.tls.clientTransport(1)}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get(d.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-d.exited:
			logTail(t, d.name, d.logPath)
			t.Fatalf("%s exited during start-up: %v", d.name, d.cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			logTail(t, d.name, d.logPath)
			t.Fatalf("%s not healthy after 30 s: %v", d.name, err)
		}
	}
}

// kill is kill -9: no shutdown of any kind.
func (d *daemon) kill(t testing.TB) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL %s: %v", d.name, err)
	}
	<-d.exited
	if ws, ok := d.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("%s ended by %v, not by SIGKILL", d.name, d.cmd.ProcessState)
	}
}

// stop is a graceful shutdown (SIGTERM), SIGKILL after 15 s.
func (d *daemon) stop() {
	if d.cmd == nil {
		return
	}
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
}

func logTail(t testing.TB, name, path string) {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	t.Logf("%s log (%s), last lines:\n%s", name, path, b)
}

// startKeysvc runs cmd/keysvc on a new throwaway SoftHSM token (PIN from
// a 0600 file), TLS with tt, its data in dir/keysvc. Clients: officer, and
// bankapp as an admin (banking creates customers' keys at enrolment), with
// the bearer tokens of keysvcEnv.
func startKeysvc(t testing.TB, dir string, tt testTLS) *daemon {
	t.Helper()
	d := newDaemon(t, "keysvc", dir, tt)
	ti := newServiceKeyToken(t)
	pinFile := filepath.Join(dir, "user.pin")
	conf := filepath.Join(dir, "keysvc.yaml")
	writeFiles(t, pinFile, userPIN+"\n", conf, fmt.Sprintf(`listen: %q
data_dir: %q
tls: {cert: %q, key: %q}
token:
  uri: %q
  wait_timeout: 10s
destroy: {default_delay: 24h, min_delay: 1h}
scheduler_interval: 1h
clients:
  - {name: officer, admin: true, token_sha256: %s}
  - {name: bankapp, admin: true, token_sha256: %s}
`, d.addr, filepath.Join(dir, "keysvc"), tt.cert, tt.key,
		"pkcs11:token="+ti.Label+"?module-path="+modulePath+"&pin-source=file:"+pinFile, sha(officerToken), sha(bankappToken)))
	d.args = []string{"serve", "-config", conf}
	d.start(t)
	return d
}

// kmsClient is a keysvc client over TLS with bearer authentication.
func (d *daemon) kmsClient(t testing.TB, bearer string, timeout time.Duration, idle int) *client.Client {
	t.Helper()
	c, err := client.New(d.url, client.WithBearer(bearer), client.WithHTTPClient(&http.Client{Timeout: timeout, Transport: d.tls.clientTransport(idle)}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// bankingOptions are the cmd/banking settings the tests vary.
type bankingOptions struct {
	maxBatchSize   int           // ledger.max_batch_size; 0: the default
	maxBatchDelay  time.Duration // ledger.max_batch_delay; 0: the default
	loginPerMinute int           // http.login_per_minute; 0: the default
}

// startBanking runs cmd/banking with its data in dataDir (bank.db there),
// TLS with tt, talking to keysvc ks over TLS as bankapp (bearer token
// file), with an empty screening list and an SMS outbox file.
func startBanking(t testing.TB, dir, dataDir string, ks *daemon, o bankingOptions) *daemon {
	t.Helper()
	return startBankingNode(t, dir, "banking", ks, boltBankStore(dataDir), o)
}

// writeFiles writes path, content pairs with mode 0600.
func writeFiles(t testing.TB, pathContent ...string) {
	t.Helper()
	for i := 0; i+1 < len(pathContent); i += 2 {
		if err := os.WriteFile(pathContent[i], []byte(pathContent[i+1]), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// provisionBankKeysWith creates the bank's keys as provisionBankKeys does,
// through a keysvc client (the officer's).
func provisionBankKeysWith(t testing.TB, officer *client.Client) {
	t.Helper()
	grant := func(ops ...wire.Op) wire.Policy {
		return wire.Policy{Grants: []wire.Grant{{Client: "bankapp", Ops: ops}}}
	}
	for _, k := range []wire.CreateKeyRequest{
		{Name: banking.KeyLogin, Purpose: "encrypt", Algorithm: "sm2", Protection: "wrapped", Policy: grant("decrypt", "public")},
		{Name: banking.KeyPwMAC, Purpose: "mac", Algorithm: "hmac-sm3", Protection: "wrapped", Policy: grant("mac")},
		{Name: banking.KeyPII, Purpose: "encrypt", Algorithm: "sm4", Protection: "wrapped", Policy: grant("datakey")},
		{Name: banking.KeyReceipt, Purpose: "sign", Algorithm: "ec-p256", Protection: "hsm", Policy: grant("sign", "verify", "public")},
		{Name: banking.KeyAudit, Purpose: "sign", Algorithm: "ec-p256", Protection: "hsm", Policy: grant("sign", "public")},
	} {
		if _, err := officer.CreateKey(context.Background(), k); err != nil {
			t.Fatalf("provision %s: %v", k.Name, err)
		}
	}
}

// --- banking in this process ---------------------------------------------

// openBank opens a bank on the bbolt file at dbPath, keysvc through kms,
// and serves its API over plain HTTP on loopback for the helpers of
// banking_test.go. The returned close (also run at cleanup) stops the
// server, flushes the sessions and closes the file, so that another
// process may open it.
func openBank(t testing.TB, kms banking.KMS, dbPath string) (*bankEnv, func()) {
	t.Helper()
	// bbolt: the file is cmd/banking's data (bank.db), which a banking
	// process opens after this one.
	return openBankStore(t, kms, &bankStore{path: dbPath})
}

// --- USB-key transfers over HTTP ------------------------------------------

// usbBody is the JSON body of POST /v1/transfers/usb for an order signed
// with c's USB key.
func usbBody(c customer, ord []byte) []byte {
	b, _ := json.Marshal(map[string]any{"order": ord, "signature": usbSign(c, ord)})
	return b
}

// usbResult is what one POST /v1/transfers/usb got.
type usbResult struct {
	status   int
	code     string // error code, when not 200
	tid      string
	replayed bool
	receipt  bool // a signed receipt came with it
	err      error
	took     time.Duration
}

func postUSB(hc *http.Client, url, sess, dev string, body []byte) usbResult {
	req, err := http.NewRequest("POST", url+"/v1/transfers/usb", bytes.NewReader(body))
	if err != nil {
		return usbResult{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+sess)
	req.Header.Set("X-Device-Id", dev)
	t0 := time.Now()
	resp, err := hc.Do(req)
	r := usbResult{err: err}
	if err != nil {
		r.took = time.Since(t0)
		return r
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.took, r.status = time.Since(t0), resp.StatusCode
	var out struct {
		TransferID string `json:"transfer_id"`
		Replayed   bool   `json:"replayed"`
		Receipt    struct {
			Signature string `json:"signature"`
		} `json:"receipt"`
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err != nil || json.Unmarshal(raw, &out) != nil {
		r.err = fmt.Errorf("HTTP %d, unreadable answer %q (%v)", resp.StatusCode, raw, err)
		return r
	}
	r.code, r.tid, r.replayed, r.receipt = out.Error.Code, out.TransferID, out.Replayed, out.Receipt.Signature != ""
	return r
}

func (r usbResult) String() string {
	if r.err != nil {
		return fmt.Sprintf("error %v after %v", r.err, r.took.Round(time.Millisecond))
	}
	return fmt.Sprintf("HTTP %d %s tid=%s replayed=%v receipt=%v after %v", r.status, r.code, r.tid, r.replayed, r.receipt, r.took.Round(time.Millisecond))
}

// burst sends requests 0..n-1 from workers goroutines. After each 200 it
// calls onOK with the number of 200s so far (from a worker goroutine).
func burst(n, workers int, send func(i int) usbResult, onOK func(oks int64)) []usbResult {
	res := make([]usbResult, n)
	var next, oks atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				res[i] = send(i)
				if res[i].err == nil && res[i].status == http.StatusOK && onOK != nil {
					onOK(oks.Add(1))
				}
			}
		})
	}
	wg.Wait()
	return res
}

// ledgerKeys maps the idempotency keys of the transfers debited from the
// accounts to their transfer ids, failing on a key posted twice.
func ledgerKeys(t *testing.T, l *ledger.Ledger, accounts ...string) map[string]string {
	t.Helper()
	ctx := context.Background()
	got := map[string]string{}
	for _, id := range accounts {
		var before uint64
		for {
			page, err := l.Statement(ctx, id, before, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			for _, e := range page {
				if e.Kind != ledger.KindTransfer || e.Amount >= 0 {
					continue
				}
				r, err := l.Posting(ctx, e.TransferID)
				if err != nil {
					t.Fatal(err)
				}
				if old, dup := got[r.IdempotencyKey]; dup {
					t.Fatalf("order %s posted twice: %s and %s", r.IdempotencyKey, old, r.TransferID)
				}
				got[r.IdempotencyKey] = r.TransferID
			}
			before = page[len(page)-1].Seq
		}
	}
	return got
}

// crashSizes are the burst size, the number of 200s before the kill and
// the worker count; smaller under the race detector.
func crashSizes() (n, killAfter, workers int) {
	if raceEnabled() {
		return 160, 40 + mrand.IntN(20), 8
	}
	return 400, 100 + mrand.IntN(100), 16
}

// burstAndKill runs burst and calls kill once onOK has seen killAfter
// 200s; the burst goes on meanwhile and afterwards.
func burstAndKill(t *testing.T, n, workers, killAfter int, send func(i int) usbResult, kill func()) []usbResult {
	t.Helper()
	reached := make(chan struct{})
	var once sync.Once
	done := make(chan []usbResult)
	go func() {
		done <- burst(n, workers, send, func(oks int64) {
			if oks >= int64(killAfter) {
				once.Do(func() { close(reached) })
			}
		})
	}()
	select {
	case <-reached:
		kill()
		return <-done
	case res := <-done:
		t.Fatalf("the burst ended before %d transfers succeeded", killAfter)
		return res
	}
}

// TestBankCrashKeysvc: kill -9 keysvc (cmd/keysvc, TLS) during a burst of
// USB-key transfers through a bank in this process.
func TestBankCrashKeysvc(t *testing.T) {
	if testing.Short() {
		t.Skip("builds, runs and kills keysvc")
	}
	// One test, both stores the bank may keep its books in (issue 17).
	t.Run("bbolt", func(t *testing.T) { bankCrashKeysvc(t, false) })
	t.Run("postgres", func(t *testing.T) { bankCrashKeysvc(t, true) })
}

func bankCrashKeysvc(t *testing.T, pg bool) {
	ctx := context.Background()
	dir := t.TempDir()
	ks := startKeysvc(t, dir, newTestTLS(t, dir))
	provisionBankKeysWith(t, ks.kmsClient(t, officerToken, 10*time.Second, 2))
	st := &bankStore{path: filepath.Join(dir, "bank.db")}
	if pg {
		st = pgBankStore(t, dir, pglocal.Options{})
	}
	be, _ := openBankStore(t, ks.kmsClient(t, bankappToken, 5*time.Second, 64), st)
	alice := be.enrol(t, "alice", "Alice Wang", "13800001111", "11010519491231002X", true, false, "", "")
	bob := be.enrol(t, "bobli", "Bob Li", "13800002222", "110101199003070011", true, false, "", "")
	be.deposit(t, alice.account, "100000.00")
	const dev = "crash-phone"
	sess := be.login(t, alice, dev)

	n, killAfter, workers := crashSizes()
	nonce := func(i int) string { return fmt.Sprintf("kscrash-%08d", i) }
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = usbBody(alice, transferOrder(t, alice.account, bob.account, "Bob Li", "1.00", nonce(i)))
	}
	const clientTimeout = 10 * time.Second
	hc := &http.Client{Timeout: clientTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer hc.CloseIdleConnections()
	send := func(i int) usbResult { return postUSB(hc, be.url, sess, dev, bodies[i]) }
	res := burstAndKill(t, n, workers, killAfter, send, func() { ks.kill(t) })

	// Clear errors only: 200 (posted) or 503 "unavailable"; no 500s, no
	// transport errors, nothing near the client timeout.
	var ok, unavailable, noReceipt int
	var slowest time.Duration
	for i, r := range res {
		slowest = max(slowest, r.took)
		switch {
		case r.err == nil && r.status == http.StatusOK && r.tid != "":
			ok++
			if !r.receipt {
				noReceipt++ // posted; signing its receipt failed with keysvc gone
			}
		case r.err == nil && r.status == http.StatusServiceUnavailable && r.code == "unavailable":
			unavailable++
		default:
			t.Errorf("transfer %d: %v; want 200 or 503 unavailable", i, r)
		}
	}
	if unavailable == 0 {
		t.Errorf("no request saw keysvc down (%d ok)", ok)
	}
	if slowest > clientTimeout/2 {
		t.Errorf("slowest answer took %v", slowest)
	}
	t.Logf("burst of %d from %d workers, keysvc killed after %d OKs: %d ok (%d without a receipt), %d unavailable, slowest %v",
		n, workers, killAfter, ok, noReceipt, unavailable, slowest.Round(time.Millisecond))

	// keysvc back on the same data directory and token: the same bank
	// serves new transfers again.
	ks.start(t)
	recovered := false
	for try := 0; try < 50 && !recovered; try++ {
		r := postUSB(hc, be.url, sess, dev, usbBody(alice, transferOrder(t, alice.account, bob.account, "Bob Li", "1.00", fmt.Sprintf("ksrecover-%07d", try))))
		switch {
		case r.err == nil && r.status == http.StatusOK && r.receipt && !r.replayed:
			recovered = true
			t.Logf("after restart: transfer %d succeeded", try+1)
		case r.err == nil && r.status == http.StatusServiceUnavailable && r.code == "unavailable":
			time.Sleep(100 * time.Millisecond) // keysvc is healthy already: only banking's connections may lag
		default:
			t.Fatalf("after restart: %v", r)
		}
	}
	if !recovered {
		t.Fatal("no transfer succeeded after keysvc came back")
	}

	// The ledger holds every transfer answered 200 once, and no other.
	if rep, err := be.bank.Ledger.Verify(ctx); err != nil {
		t.Fatalf("ledger: %v %+v", err, rep)
	}
	posted := ledgerKeys(t, be.bank.Ledger, alice.account)
	for i, r := range res {
		tid, in := posted[alice.id+":"+nonce(i)]
		if r.status == http.StatusOK && tid != r.tid || r.status != http.StatusOK && in {
			t.Errorf("transfer %d: %v, ledger has %q", i, r, tid)
		}
	}
	// Every order again: one answered 200 replays its receipt (signed now
	// if it had none), a refused one is applied now; a third time, every
	// one replays.
	again := burst(n, workers, send, nil)
	for i, r := range again {
		first := res[i].status == http.StatusOK
		if r.err != nil || r.status != http.StatusOK || r.replayed != first || !r.receipt || first && r.tid != res[i].tid {
			t.Errorf("transfer %d sent again: %v (first: %v)", i, r, res[i])
		}
	}
	for i, r := range burst(n, workers, send, nil) {
		if r.err != nil || r.status != http.StatusOK || !r.replayed || r.tid != again[i].tid {
			t.Errorf("transfer %d sent a third time: %v", i, r)
		}
	}
	rep, err := be.bank.Ledger.Verify(ctx)
	if err != nil {
		t.Fatalf("ledger after resending: %v", err)
	}
	a, _ := be.bank.Ledger.Account(ctx, alice.account)
	if want := int64(100000_00 - (n+1)*100); a.Balance != want || rep.ByKind[ledger.KindTransfer] != uint64(n+1) {
		t.Fatalf("alice holds %d (want %d), %d transfers in the journal (want %d)", a.Balance, want, rep.ByKind[ledger.KindTransfer], n+1)
	}
}

// ledgerReport asks the bank's staff API for a ledger check.
func ledgerReport(t *testing.T, hc *http.Client, url string) ledger.Report {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/staff/v1/ledger/verify", nil)
	req.Header.Set("Authorization", "Bearer "+supervisorToken) // ledger-verify is the supervisor's
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var rep ledger.Report
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &rep) != nil {
		t.Fatalf("ledger verify: HTTP %d %s", resp.StatusCode, raw)
	}
	return rep
}

// crashParty is a customer with a USB key and a live session.
type crashParty struct {
	c         customer
	sess, dev string
}

// crashOrder is burst order i of TestBankCrashBanking.
type crashOrder struct {
	from, to int
	amount   int64
	nonce    string
	body     []byte
}

// crashOrders makes n orders among the parties: payer i%len(ps) to one of
// the others, 0.01 to 10.00, each signed with the payer's USB key.
func crashOrders(t *testing.T, ps []crashParty, n int) []crashOrder {
	ords := make([]crashOrder, n)
	for i := range ords {
		o := crashOrder{from: i % len(ps), amount: int64(1 + (i*37)%1000), nonce: fmt.Sprintf("bkcrash-%08d", i)}
		o.to = (o.from + 1 + (i/len(ps))%(len(ps)-1)) % len(ps)
		payer, payee := ps[o.from].c, ps[o.to].c
		o.body = usbBody(payer, transferOrder(t, payer.account, payee.account, payee.name, ledger.FormatAmount(o.amount, "CNY"), o.nonce))
		ords[i] = o
	}
	return ords
}

// TestBankCrashBanking: kill -9 banking (cmd/banking) during a burst of
// USB-key transfers among four customers, restart it on the same store
// (bbolt file, PostgreSQL database); keysvc runs as cmd/keysvc, both over
// TLS.
func TestBankCrashBanking(t *testing.T) {
	if testing.Short() {
		t.Skip("builds, runs and kills keysvc and banking")
	}
	// One test, both stores (issue 17): the bbolt file cmd/banking keeps,
	// and a PostgreSQL database (the process dies, the database lives on).
	t.Run("bbolt", func(t *testing.T) { bankCrashBanking(t, false) })
	t.Run("postgres", func(t *testing.T) { bankCrashBanking(t, true) })
}

func bankCrashBanking(t *testing.T, pg bool) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "bank")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	st := boltBankStore(dataDir)
	if pg {
		st = pgBankStore(t, dir, pglocal.Options{})
	}
	ks := startKeysvc(t, dir, newTestTLS(t, dir))
	provisionBankKeysWith(t, ks.kmsClient(t, officerToken, 10*time.Second, 2))

	// Customers, money and sessions are set up by a bank in this process on
	// the file cmd/banking then opens: sessions are durable.
	ps, start := crashSetupStore(t, ks.kmsClient(t, bankappToken, 10*time.Second, 8), st)
	n, killAfter, workers := crashSizes()
	ords := crashOrders(t, ps, n)
	bk := startBankingNode(t, dir, "banking", ks, st, bankingOptions{})
	hc := &http.Client{Timeout: 10 * time.Second, Transport: ks.tls.clientTransport(workers)}
	defer hc.CloseIdleConnections()
	send := func(i int) usbResult {
		p := ps[ords[i].from]
		return postUSB(hc, bk.url, p.sess, p.dev, ords[i].body)
	}
	res := burstAndKill(t, n, workers, killAfter, send, func() { bk.kill(t) })
	var acked, lost int
	for i, r := range res {
		switch {
		case r.err == nil && r.status == http.StatusOK && r.tid != "" && !r.replayed:
			acked++
		case r.err != nil: // in flight at the kill, or sent to a dead process
			lost++
		default:
			t.Errorf("transfer %d: %v", i, r)
		}
	}
	t.Logf("burst of %d from %d workers, banking killed after %d OKs: %d acknowledged, %d without an answer", n, workers, killAfter, acked, lost)

	// Restarted on the same file: the books verify and hold what they held.
	bk.start(t)
	rep := ledgerReport(t, hc, bk.url)
	if rep.CustomerTotals["CNY"] != start.CustomerTotals["CNY"] || rep.Totals["CNY"] != 0 {
		t.Fatalf("after the crash customers hold %d (before %d), all balances sum to %d", rep.CustomerTotals["CNY"], start.CustomerTotals["CNY"], rep.Totals["CNY"])
	}
	committed := rep.ByKind[ledger.KindTransfer] - start.ByKind[ledger.KindTransfer]
	if committed < uint64(acked) {
		t.Fatalf("%d transfers in the journal, %d were acknowledged", committed, acked)
	}

	// Every order again: acknowledged ones replay their receipt; the others
	// replay if they committed before the kill, or apply now. The replays
	// must be exactly the transfers the journal held.
	var replayed uint64
	for i, r := range burst(n, workers, send, nil) {
		first := res[i]
		switch {
		case r.err != nil || r.status != http.StatusOK || !r.receipt:
			t.Errorf("transfer %d sent again: %v", i, r)
		case first.err == nil && (!r.replayed || r.tid != first.tid):
			t.Errorf("acknowledged transfer %d (%s) sent again: %v", i, first.tid, r)
		case r.replayed:
			replayed++
		}
	}
	if replayed != committed {
		t.Errorf("%d orders replayed, the journal held %d transfers of the burst", replayed, committed)
	}
	rep = ledgerReport(t, hc, bk.url)
	if got := rep.ByKind[ledger.KindTransfer] - start.ByKind[ledger.KindTransfer]; got != uint64(n) || rep.CustomerTotals["CNY"] != start.CustomerTotals["CNY"] {
		t.Fatalf("after resending: %d transfers of %d in the journal, customers hold %d (before %d)", got, n, rep.CustomerTotals["CNY"], start.CustomerTotals["CNY"])
	}
	t.Logf("after restart: %d of the burst had committed (%d acknowledged), %d applied on resending", committed, acked, uint64(n)-committed)

	bk.kill(t) // once more, and read the file itself
	crashCheckStore(t, st, ps, ords)
}

// crashCheckStore opens the bank's store: it verifies, each order is in the
// journal exactly once, and every balance is what the orders say.
func crashCheckStore(t *testing.T, st *bankStore, ps []crashParty, ords []crashOrder) {
	t.Helper()
	ctx := context.Background()
	db := st.open(t) // the killed cmd/banking's bbolt file, or its database
	defer db.Close()
	l, err := ledger.New(db, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	var accounts []string
	for _, p := range ps {
		accounts = append(accounts, p.c.account)
	}
	posted := ledgerKeys(t, l, accounts...)
	want := make([]int64, len(ps))
	for i := range want {
		want[i] = 100000_00
	}
	for i, o := range ords {
		if _, ok := posted[ps[o.from].c.id+":"+o.nonce]; !ok {
			t.Errorf("order %d is not in the journal", i)
		}
		want[o.from] -= o.amount
		want[o.to] += o.amount
	}
	for i, p := range ps {
		if a, err := l.Account(ctx, p.c.account); err != nil || a.Balance != want[i] {
			t.Errorf("%s holds %d, want %d (%v)", p.c.name, a.Balance, want[i], err)
		}
	}
}
