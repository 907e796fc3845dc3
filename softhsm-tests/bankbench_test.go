//go:build linux

package softhsmtests

// TestBenchBanking is `make bench-banking` (issue 6 item 9, R-PERF-1): it
// drives many concurrent clients making USB-key-signed transfers against
// cmd/banking and cmd/keysvc on SoftHSM, three processes on this machine,
// TLS on every hop, and prints TPS, latency percentiles and errors. It is
// a driver, not a test: it runs only with KEYWARD_BENCH_BANKING=1 and
// asserts nothing about speed (only that every 200 is in the ledger).
//
// Before the timed part: customers are enrolled with USB keys (ECDSA P-256
// in Go), funded, logged in with the SMS step-up done, by a bank in this
// process on the bbolt file that cmd/banking then opens (sessions are
// durable); every order is built and signed; every client opens its TLS
// connection with one GET /v1/accounts. The timed part is only
// POST /v1/transfers/usb: banking checks the session, the order against
// its data, asks keysvc to verify the signature, posts to the ledger
// (group commit) and asks keysvc to sign the receipt.
//
// By default the clients run a closed loop (each sends its next order as
// soon as the last is answered), which finds the most TPS; with 1,000
// clients the mean latency is then 1,000 / TPS by Little's law, whatever
// the server does. KEYWARD_BENCH_RATE offers a fixed load instead (open
// loop), which is how "N TPS with responses within 1.1 s" is checked.
//
// Settings (environment):
//
//	KEYWARD_BENCH_CLIENTS     concurrent clients (1000)
//	KEYWARD_BENCH_CUSTOMERS   customers, one session each (= clients); client i pays as customer i mod customers
//	KEYWARD_BENCH_DURATION    measured part (20s)
//	KEYWARD_BENCH_WARMUP      transfers before the measured part, not counted (3s): connection pools fill up
//	KEYWARD_BENCH_RATE        offered transfers per second over all clients (0: closed loop)
//	KEYWARD_BENCH_BATCH       cmd/banking ledger.max_batch_size (0: its default)
//	KEYWARD_BENCH_BATCH_DELAY cmd/banking ledger.max_batch_delay (0: its default)
//	KEYWARD_BENCH_PERF        a directory: `perf record -g` of banking and keysvc during the measured part goes there
//	KEYWARD_BENCH_STORE       bbolt (default: one file) or postgres (issue 17: a PostgreSQL 15 primary with a
//	                          synchronous standby on this machine, started by banking/store/pglocal)
//	KEYWARD_BENCH_FAILOVER    1 (postgres only): half-way through the measured part the primary is killed (SIGKILL)
//	                          and the standby promoted 1 s later, as an operator would; the run reports the
//	                          failed requests and the worst latency

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/banking"
	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/store/pglocal"
	"github.com/keyward/keyward/token/smcrypto"
)

func benchEnvInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a whole number", name, v)
	}
	return n
}

func benchEnvDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		t.Fatalf("%s=%q: want a duration such as 20s", name, v)
	}
	return d
}

func mustECKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func publicPEM(k *ecdsa.PrivateKey) string {
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// benchParty is an enrolled, funded, logged-in customer.
type benchParty struct {
	c         customer
	sess, dev string
}

// benchSetup enrols n customers through the Go API of a bank in this
// process on dbPath (8 at a time: more logins in flight from one address
// would trip the brute-force guard's per-source limit of 20), funds each
// with 100,000.00 and logs each in with the SMS step-up.
func benchSetup(t *testing.T, kms banking.KMS, st *bankStore, n int) []benchParty {
	t.Helper()
	be, closeBank := openBankStore(t, kms, st)
	defer closeBank()
	ctx := context.Background()
	b := be.bank
	lk, err := b.LoginKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(lk.PEM))
	pub, err := smcrypto.ParseSM2Public(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	const pw = "Gl4cier-Walk-7q"
	seal := func() (bankwire.Sealed, error) {
		ch, err := b.Challenge(ctx)
		if err != nil {
			return bankwire.Sealed{}, err
		}
		raw, _ := base64.RawURLEncoding.DecodeString(ch.Value)
		ct, err := smcrypto.SM2Encrypt(pub, append(append([]byte(pw), 0), raw...), smcrypto.EncodingASN1)
		return bankwire.Sealed{Challenge: ch.Value, Ciphertext: base64.StdEncoding.EncodeToString(ct), KeyVersion: lk.Version}, err
	}
	one := func(i int) (benchParty, error) {
		p := benchParty{dev: fmt.Sprintf("bench-dev-%05d", i)}
		p.c = customer{login: fmt.Sprintf("bench%05d", i), name: fmt.Sprintf("Bench Customer %05d", i)}
		phone := fmt.Sprintf("139%08d", i)
		p.c.usb = mustECKey()
		sealed, err := seal()
		if err != nil {
			return p, err
		}
		res, err := b.Enrol(ctx, bankwire.EnrolRequest{Login: p.c.login, Name: p.c.name, Phone: phone, IDCard: "11010519491231002X",
			Card: "6222020200112233446", AntiPhishing: "蓝色海豚", Password: sealed, USBPublicKey: publicPEM(p.c.usb)})
		if err != nil {
			return p, fmt.Errorf("enrol: %w", err)
		}
		p.c.id, p.c.account = res.Customer.ID, res.Account
		if _, err := b.Ledger.Deposit(ctx, ledger.CashRequest{IdempotencyKey: "bench-" + p.c.account, Account: p.c.account, Amount: 100000_00, Currency: "CNY", Memo: "deposit"}); err != nil {
			return p, fmt.Errorf("deposit: %w", err)
		}
		if sealed, err = seal(); err != nil {
			return p, err
		}
		lr, err := b.Login(ctx, bankwire.LoginRequest{Login: p.c.login, Password: sealed, Device: p.dev, OS: "Android 14"}, netip.MustParseAddr("127.0.0.1"))
		if err != nil {
			return p, fmt.Errorf("login: %w", err)
		}
		p.sess = lr.Session
		if lr.StepUp {
			code, ok := be.outbox.LastCode(phone)
			if !ok {
				return p, fmt.Errorf("no SMS code for %s", phone)
			}
			s, err := b.Authenticate(ctx, p.sess, p.dev)
			if err == nil {
				err = b.StepUp(ctx, p.sess, s, code, "Android 14")
			}
			if err != nil {
				return p, fmt.Errorf("step-up: %w", err)
			}
		}
		return p, nil
	}
	ps := make([]benchParty, n)
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				ps[i], errs[i] = one(i)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("customer %d: %v", i, err)
		}
	}
	return ps
}

// benchOrders builds and signs perClient orders for each client: client i
// pays 1.00 as customer i mod len(ps) to the next customer.
func benchOrders(t *testing.T, ps []benchParty, clients, perClient int) [][][]byte {
	t.Helper()
	out := make([][][]byte, clients)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < clients; i = int(next.Add(1) - 1) {
				payer, payee := ps[i%len(ps)].c, ps[(i+1)%len(ps)].c
				out[i] = make([][]byte, perClient)
				for k := range out[i] {
					out[i][k] = usbBody(payer, transferOrder(t, payer.account, payee.account, payee.name, "1.00", fmt.Sprintf("bench-%05d-%07d", i, k)))
				}
			}
		})
	}
	wg.Wait()
	return out
}

// procCPU is a process's user+system CPU time so far (Linux /proc).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 (state) on
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)          // field 14
	st, _ := strconv.ParseInt(f[12], 10, 64)          // field 15
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// machineCPU is the "cpu" line of /proc/stat: user, nice, system, idle,
// iowait, irq, softirq, steal, in USER_HZ ticks.
func machineCPU() [8]int64 {
	var out [8]int64
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line)[1:] {
		if i == len(out) {
			break
		}
		out[i], _ = strconv.ParseInt(f, 10, 64)
	}
	return out
}

// machineShare says how the machine's CPUs spent the window between two
// machineCPU readings, and how many cores went to processes other than
// ours (cores used by banking, keysvc and the driver), which on a shared
// machine explains a slow run.
func machineShare(a, b [8]int64, ours time.Duration, elapsed time.Duration) string {
	var d [8]float64
	var total float64
	for i := range d {
		d[i] = float64(b[i] - a[i])
		total += d[i]
	}
	if total == 0 {
		return "unknown"
	}
	pc := func(v float64) float64 { return 100 * v / total }
	busy := (total - d[3] - d[4]) / total * float64(runtime.NumCPU())
	return fmt.Sprintf("user %.0f%%, system %.0f%%, softirq %.0f%%, idle %.0f%%, iowait %.0f%%, steal %.0f%%; everything but our three processes: %.2f cores",
		pc(d[0]+d[1]), pc(d[2]+d[5]), pc(d[6]), pc(d[3]), pc(d[4]), pc(d[7]), busy-ours.Seconds()/elapsed.Seconds())
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startPerf records banking and keysvc with perf while the timed part runs.
func startPerf(t *testing.T, dir string, ds ...*daemon) func() {
	if dir == "" {
		return func() {}
	}
	var cmds []*exec.Cmd
	for _, d := range ds {
		cmd := exec.Command("perf", "record", "-F", "99", "-g", "-p", strconv.Itoa(d.cmd.Process.Pid), "-o", filepath.Join(dir, d.name+".perf.data"))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Logf("perf: %v", err)
			continue
		}
		cmds = append(cmds, cmd)
	}
	return func() {
		for _, c := range cmds {
			c.Process.Signal(syscall.SIGINT)
			c.Wait()
		}
	}
}

// benchStats is what one client saw.
type benchStats struct {
	lat       []time.Duration // requests due in the measured window
	ok        int             // 200s with a receipt, warm-up included
	inWindow  int             // 200s completed within the measured window
	errs      map[string]int  // failures by kind, warm-up included
	exhausted bool            // ran out of signed orders
}

// benchClient sends its orders one after another until deadline. With
// period > 0 it paces them (open loop): order k is due at
// start+phase+k*period, and its latency counts from when it was due, so a
// slow server is not excused by the client waiting for it (coordinated
// omission). Requests due before measured are the warm-up: sent, not
// timed.
func benchClient(hc *http.Client, url string, p benchParty, orders [][]byte, start, measured, deadline time.Time, period, phase time.Duration) benchStats {
	st := benchStats{errs: map[string]int{}}
	for k := 0; ; k++ {
		due := time.Now()
		if period > 0 {
			due = start.Add(phase + time.Duration(k)*period)
			time.Sleep(time.Until(due))
		}
		if !due.Before(deadline) {
			return st
		}
		if k == len(orders) {
			st.exhausted = true
			return st
		}
		r := postUSB(hc, url, p.sess, p.dev, orders[k])
		done := time.Now()
		switch {
		case r.err != nil:
			st.errs["transport: "+benchErrKind(r.err)]++
		case r.status != http.StatusOK || r.replayed || !r.receipt:
			st.errs[fmt.Sprintf("HTTP %d %s replayed=%v receipt=%v", r.status, r.code, r.replayed, r.receipt)]++
		default:
			st.ok++
			if !done.Before(measured) && done.Before(deadline) {
				st.inWindow++
			}
		}
		if !due.Before(measured) {
			st.lat = append(st.lat, done.Sub(due))
		}
	}
}

func TestBenchBanking(t *testing.T) {
	if os.Getenv("KEYWARD_BENCH_BANKING") != "1" {
		t.Skip("a benchmark driver: run with KEYWARD_BENCH_BANKING=1 (make bench-banking)")
	}
	clients := benchEnvInt(t, "KEYWARD_BENCH_CLIENTS", 1000)
	customers := benchEnvInt(t, "KEYWARD_BENCH_CUSTOMERS", clients)
	dur := benchEnvDuration(t, "KEYWARD_BENCH_DURATION", 20*time.Second)
	warmup := benchEnvDuration(t, "KEYWARD_BENCH_WARMUP", 3*time.Second)
	rate := benchEnvInt(t, "KEYWARD_BENCH_RATE", 0)
	opts := bankingOptions{maxBatchSize: benchEnvInt(t, "KEYWARD_BENCH_BATCH", 0), maxBatchDelay: benchEnvDuration(t, "KEYWARD_BENCH_BATCH_DELAY", 0)}
	if clients < 1 || customers < 2 || dur <= 0 {
		t.Fatal("want at least 1 client, 2 customers and a duration")
	}
	// Signed orders for the whole run: in a closed loop enough for 4,000
	// TPS (and at least 6 a second per client), in an open one the
	// client's share of the rate.
	var period time.Duration
	perSecond := max(6, 4000/float64(clients))
	if rate > 0 {
		period = time.Duration(float64(time.Second) * float64(clients) / float64(rate))
		perSecond = float64(rate) / float64(clients)
	}
	perClient := 2 + int((warmup+dur).Seconds()*perSecond)
	if raceEnabled() {
		t.Log("note: the race detector is on; figures are meaningless")
	}

	dir := t.TempDir()
	dataDir := filepath.Join(dir, "bank")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	ks := startKeysvc(t, dir, newTestTLS(t, dir))
	provisionBankKeysWith(t, ks.kmsClient(t, officerToken, 10*time.Second, 2))
	st, storeDesc := boltBankStore(dataDir), "bbolt, one file (fsync per group commit)"
	failover := os.Getenv("KEYWARD_BENCH_FAILOVER") == "1"
	switch kind := os.Getenv("KEYWARD_BENCH_STORE"); kind {
	case "", "bbolt":
		if failover {
			t.Fatal("KEYWARD_BENCH_FAILOVER needs KEYWARD_BENCH_STORE=postgres")
		}
	case "postgres":
		st, storeDesc = pgBankStore(t, dir, pglocal.Options{Standby: true}), "PostgreSQL 15, primary + synchronous standby (synchronous_commit on), one machine"
	default:
		t.Fatalf("KEYWARD_BENCH_STORE=%q: want bbolt or postgres", kind)
	}
	ps := benchSetup(t, ks.kmsClient(t, bankappToken, 30*time.Second, 64), st, customers)
	t.Logf("setup: %d customers enrolled, funded and logged in (%v)", customers, time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	orders := benchOrders(t, ps, clients, perClient)
	t.Logf("setup: %d orders signed (%v)", clients*perClient, time.Since(t0).Round(time.Millisecond))
	bk := startBankingNode(t, dir, "banking", ks, st, opts)

	tr := ks.tls.clientTransport(clients + 16)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: tr}
	defer tr.CloseIdleConnections()
	benchConnect(t, hc, bk.url, ps, clients)
	before := ledgerReport(t, hc, bk.url)

	stats := make([]benchStats, clients)
	start := time.Now()
	measured, deadline := start.Add(warmup), start.Add(warmup+dur)
	cpu0 := make(chan [3]time.Duration, 1)
	mach0 := make(chan [8]int64, 1)
	stopPerf := make(chan func(), 1)
	pg0 := make(chan time.Duration, 1)
	time.AfterFunc(warmup, func() {
		pg0 <- postgresCPU()
		cpu0 <- [3]time.Duration{procCPU(bk.cmd.Process.Pid), procCPU(ks.cmd.Process.Pid), selfCPU()}
		mach0 <- machineCPU()
		stopPerf <- startPerf(t, os.Getenv("KEYWARD_BENCH_PERF"), bk, ks)
	})
	var killedAt, promotedAt time.Time
	var promoteErr error
	failoverDone := make(chan struct{})
	if failover {
		time.AfterFunc(warmup+dur/2, func() {
			defer close(failoverDone)
			killedAt = time.Now()
			st.pg.Primary.Kill()
			time.Sleep(time.Second)
			promoteErr = st.pg.Standby.Promote(context.Background())
			promotedAt = time.Now()
		})
	} else {
		close(failoverDone)
	}
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			stats[i] = benchClient(hc, bk.url, ps[i%len(ps)], orders[i], start, measured, deadline, period, time.Duration(i)*period/time.Duration(clients))
		})
	}
	wg.Wait()
	cpu := [3]time.Duration{procCPU(bk.cmd.Process.Pid), procCPU(ks.cmd.Process.Pid), selfCPU()}
	pgCPU := postgresCPU() - <-pg0
	<-failoverDone
	if promoteErr != nil {
		t.Fatalf("promote the standby: %v", promoteErr)
	}
	m1 := machineCPU()
	elapsed := time.Since(measured)
	(<-stopPerf)()
	c0 := <-cpu0
	for i := range cpu {
		cpu[i] -= c0[i]
	}
	mach := machineShare(<-mach0, m1, cpu[0]+cpu[1]+cpu[2], elapsed)
	var after ledger.Report
	if failover { // the answer may come from a node still reconnecting
		procEventually(t, "the ledger report after the failover", 30*time.Second, func() bool {
			req, _ := http.NewRequest("GET", bk.url+"/staff/v1/ledger/verify", nil)
			req.Header.Set("Authorization", "Bearer "+supervisorToken) // ledger-verify is the supervisor's
			resp, err := hc.Do(req)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
	after = ledgerReport(t, hc, bk.url)

	mode := "closed loop: each client sends its next order when the last is answered"
	if rate > 0 {
		mode = fmt.Sprintf("open loop: %d transfers/s offered, each client one every %v, latency from when due", rate, period.Round(time.Microsecond))
	}
	fmt.Printf("\nbench-banking: %d clients, %d customers, %v warm-up + %v measured, GOMAXPROCS %d, %d CPUs\n  %s\n", clients, customers, warmup, dur,
		runtime.GOMAXPROCS(0), runtime.NumCPU(), mode)
	fmt.Printf("  path: driver -TLS-> cmd/banking -TLS-> cmd/keysvc -> SoftHSM; cmd/banking ledger.max_batch_size=%s max_batch_delay=%s, http defaults (6000 requests/min per session)\n",
		orDefault(opts.maxBatchSize), orDefault(opts.maxBatchDelay))
	fmt.Printf("  store: %s\n", storeDesc)
	if failover {
		fmt.Printf("  failover: primary killed at +%v of the measured part, standby promoted %v later (promotion included)\n",
			killedAt.Sub(measured).Round(time.Millisecond), promotedAt.Sub(killedAt).Round(time.Millisecond))
	}
	fmt.Print(benchSummary(stats, dur, elapsed, cpu))
	if st.pg != nil {
		fmt.Printf("  CPU of the PostgreSQL processes (primary and standby): %.2f cores\n", pgCPU.Seconds()/elapsed.Seconds())
		fmt.Printf("  PostgreSQL log (the whole run): %s\n", pgLogErrors(st.pg.Primary.LogFile))
		bk.stop() // banking logs its store's figures as it stops
		if b, err := os.ReadFile(bk.logPath); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if i := strings.Index(line, "pgstore stats"); i >= 0 {
					fmt.Printf("  banking's store, whole run: %s\n", line[i+len("pgstore stats "):])
				}
			}
		}
	}
	fmt.Printf("  machine: %s\n", mach)
	posted, ok := after.ByKind[ledger.KindTransfer]-before.ByKind[ledger.KindTransfer], 0
	for _, st := range stats {
		ok += st.ok
	}
	fmt.Printf("  ledger: %d transfers posted in the run, %d answered 200; verify ok, %d postings in all\n", posted, ok, after.Postings)
	switch {
	case !failover && posted != uint64(ok):
		t.Errorf("the ledger posted %d transfers, clients got %d OKs", posted, ok)
	case failover && posted < uint64(ok):
		// A failover may commit a transfer whose answer was lost (a 503 or
		// a dropped connection); it never loses one that was answered.
		t.Errorf("the ledger posted %d transfers, clients got %d OKs: an acknowledged transfer was lost", posted, ok)
	}
}

// pgLogErrors counts the ERROR lines of a PostgreSQL log by message, the
// most frequent first: serialisation failures are the retries the store
// made (banking/store/pgstore re-runs such a transaction).
func pgLogErrors(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	counts := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.Index(line, "ERROR:  "); i >= 0 {
			msg := line[i+8:]
			if j := strings.IndexAny(msg, "\"("); j > 0 {
				msg = msg[:j]
			}
			counts[strings.TrimSpace(msg)]++
		}
	}
	if len(counts) == 0 {
		return "no ERROR lines"
	}
	keys := slices.SortedFunc(maps.Keys(counts), func(a, b string) int { return counts[b] - counts[a] })
	var parts []string
	for _, k := range keys[:min(4, len(keys))] {
		parts = append(parts, fmt.Sprintf("%d × %s", counts[k], k))
	}
	return strings.Join(parts, "; ")
}

// postgresCPU is the CPU time of every process named postgres on this
// machine (the bench's primary and standby: their backends live as long as
// banking's pool holds its connections).
func postgresCPU() time.Duration {
	var total time.Duration
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", d.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		total += procCPU(pid)
	}
	return total
}

// benchConnect opens one connection per client, checking its session,
// before the clock runs.
func benchConnect(t *testing.T, hc *http.Client, url string, ps []benchParty, clients int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, clients)
	for i := range clients {
		wg.Go(func() {
			p := ps[i%len(ps)]
			req, _ := http.NewRequest("GET", url+"/v1/accounts", nil)
			req.Header.Set("Authorization", "Bearer "+p.sess)
			req.Header.Set("X-Device-Id", p.dev)
			resp, err := hc.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("HTTP %d", resp.StatusCode)
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("client %d: GET /v1/accounts: %v", i, err)
		}
	}
}

// benchSummary prints throughput, latency, errors and CPU of the measured
// window (elapsed: until the last answer came back).
func benchSummary(stats []benchStats, dur, elapsed time.Duration, cpu [3]time.Duration) string {
	var lat []time.Duration
	var inWindow, exhausted int
	errs := map[string]int{}
	for _, st := range stats {
		lat = append(lat, st.lat...)
		inWindow += st.inWindow
		if st.exhausted {
			exhausted++
		}
		for k, v := range st.errs {
			errs[k] += v
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	over := len(lat) - sort.Search(len(lat), func(i int) bool { return lat[i] > 1100*time.Millisecond })
	var sb strings.Builder
	fmt.Fprintf(&sb, "  TPS %.0f (%d transfers answered 200 within %v)\n", float64(inWindow)/dur.Seconds(), inWindow, dur)
	fmt.Fprintf(&sb, "  latency of %d requests: p50 %s  p90 %s  p99 %s  max %s;  over 1.1 s: %d (%.2f%%)\n", len(lat),
		ms(pct(0.50)), ms(pct(0.90)), ms(pct(0.99)), ms(pct(1)), over, 100*float64(over)/float64(max(1, len(lat))))
	fmt.Fprintf(&sb, "  CPU over %v: banking %.2f cores, keysvc %.2f cores, driver %.2f cores\n", elapsed.Round(time.Millisecond),
		cpu[0].Seconds()/elapsed.Seconds(), cpu[1].Seconds()/elapsed.Seconds(), cpu[2].Seconds()/elapsed.Seconds())
	keys := slices.Sorted(maps.Keys(errs))
	if len(keys) == 0 {
		sb.WriteString("  errors: none\n")
	}
	for _, k := range keys {
		fmt.Fprintf(&sb, "  errors: %d × %s\n", errs[k], k)
	}
	if exhausted > 0 {
		fmt.Fprintf(&sb, "  note: %d clients used up their signed orders before the end; the TPS is a floor\n", exhausted)
	}
	return sb.String()
}

func orDefault[T comparable](v T) string {
	var zero T
	if v == zero {
		return "default"
	}
	return fmt.Sprint(v)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// benchErrKind shortens a transport error to its kind.
func benchErrKind(err error) string {
	s := err.Error()
	for _, k := range []string{"Client.Timeout", "connection reset", "connection refused", "EOF", "broken pipe", "too many open files"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	return s
}
