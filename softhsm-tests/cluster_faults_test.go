//go:build linux

package softhsmtests

// The keysvc cluster's faults under load (issue 16, "Tests"): three etcd
// members, three keysvc processes on one SoftHSM2 token (the harness of
// cluster_harness_test.go), and 64 concurrent signers going through
// keysvc/client configured with the three nodes' URLs: the client spreads
// the requests and its failover does the retrying, as banking's would.
//
//   - TestClusterKillKeysvcNodeUnderLoad: kill -9 of one keysvc node at
//     ~4 s, restarted at ~8 s. No caller sees an error; the audit chain
//     verifies and holds a sign record for every signature returned, and
//     no more than those plus the attempts whose answer was lost in flight
//     (the node died after it may have signed and recorded: the client
//     sends those again elsewhere, the documented cost of repeating a
//     sign).
//   - TestClusterKillEtcdMembersUnderLoad: kill -9 of the etcd leader (no
//     request fails; the stall is the max latency), then of a second
//     member: audited operations answer 503 on every node and /readyz is
//     503 everywhere; both members started again, the same keysvc
//     processes sign again (time to first 200). No partial state: the
//     chain verifies, its sequence numbers are 1..N with no gap and no
//     repeat, the sign records are bounded as above, and a create and a
//     rotate refused during the outage left either nothing (no key change,
//     no record) or both (the change and its record: the write's outcome
//     was unknown and it landed when quorum came back), never one without
//     the other.
//
// The phase tables (requests, errors seen by callers, p50, p99, max) are
// logged; they are the figures of docs/PERFORMANCE.md's "keysvc cluster".

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/client"
	"github.com/keyward/keyward/keysvc/etcdstore"
	"github.com/keyward/keyward/keysvc/etcdstore/etcdlocal"
	"github.com/keyward/keyward/keysvc/wire"
)

// attemptCounter is an http.RoundTripper that counts every attempt the
// client sends, by what became of it: the audit bounds need the attempts
// whose outcome on the server is unknown.
type attemptCounter struct {
	base http.RoundTripper

	attempts atomic.Int64
	ok       atomic.Int64 // 200 with the whole body read
	refused  atomic.Int64 // connection refused: the request never reached keysvc
	lost     atomic.Int64 // any other transport error, or a body cut off: keysvc may have acted
	status   sync.Map     // other status → *atomic.Int64
	okHost   sync.Map     // host:port → *atomic.Int64 of 200s
}

// okFrom is how many 200s the node at url has answered so far.
func (a *attemptCounter) okFrom(url string) int64 {
	v, ok := a.okHost.Load(strings.TrimPrefix(url, "https://"))
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

func (a *attemptCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	a.attempts.Add(1)
	resp, err := a.base.RoundTrip(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			a.refused.Add(1)
		} else {
			a.lost.Add(1)
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		v, _ := a.status.LoadOrStore(resp.StatusCode, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		return resp, nil
	}
	v, _ := a.okHost.LoadOrStore(req.URL.Host, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	resp.Body = &countedBody{ReadCloser: resp.Body, a: a}
	return resp, nil
}

// statuses returns the count of non-200 answers by status.
func (a *attemptCounter) statuses() map[int]int64 {
	m := map[int]int64{}
	a.status.Range(func(k, v any) bool { m[k.(int)] = v.(*atomic.Int64).Load(); return true })
	return m
}

func (a *attemptCounter) String() string {
	return fmt.Sprintf("attempts %d: 200 %d, refused %d, lost in flight %d, other statuses %v",
		a.attempts.Load(), a.ok.Load(), a.refused.Load(), a.lost.Load(), a.statuses())
}

// countedBody counts a 200 as ok once its body is read to the end, as
// lost when the read fails.
type countedBody struct {
	io.ReadCloser
	a    *attemptCounter
	done bool
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.done {
		b.done = true
		if err == io.EOF {
			b.a.ok.Add(1)
		} else {
			b.a.lost.Add(1)
		}
	}
	return n, err
}

// clusterLoad is 64 signers over the cluster's three nodes through one
// keysvc/client with every node's URL, on an hsm and a wrapped key.
type clusterLoad struct {
	cl      *client.Client
	counter *attemptCounter
	pubs    map[string]*ecdsa.PublicKey
	names   []string

	start    time.Time
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	samples  []sample
	signed   atomic.Int64 // signatures returned to callers
	badSig   atomic.Int64
	firstErr atomic.Value
}

const clusterSigners = 64

// newClusterLoad creates the two keys (through node 1, officer) and the
// signers' client (bankapp), and starts signing.
func newClusterLoad(t *testing.T, e *clusterEnv, prefix string) *clusterLoad {
	t.Helper()
	ctx := context.Background()
	var urls []string
	for _, n := range e.nodes {
		urls = append(urls, n.url)
	}
	officer, err := client.NewMulti(urls, client.WithBearer(officerToken), client.WithHTTPClient(e.hc))
	if err != nil {
		t.Fatal(err)
	}
	l := &clusterLoad{pubs: map[string]*ecdsa.PublicKey{}, stop: make(chan struct{})}
	for _, prot := range []wire.Protection{wire.ProtectionHSM, wire.ProtectionWrapped} {
		name := prefix + "-" + string(prot)
		if _, err := officer.CreateKey(ctx, wire.CreateKeyRequest{Name: name, Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: prot,
			Policy: wire.Policy{Grants: []wire.Grant{{Client: "bankapp", Ops: []wire.Op{wire.OpSign}}, {Client: "officer", Ops: []wire.Op{wire.OpPublic}}}}}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		pk, err := officer.PublicKey(ctx, name, 0)
		if err != nil {
			t.Fatal(err)
		}
		l.pubs[name] = parseECPublicPEM(t, pk.PEM)
		l.names = append(l.names, name)
	}
	l.counter = &attemptCounter{base: e.tls.clientTransport(clusterSigners)}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: l.counter}
	t.Cleanup(hc.CloseIdleConnections)
	if l.cl, err = client.NewMulti(urls, client.WithBearer(bankappToken), client.WithHTTPClient(hc)); err != nil {
		t.Fatal(err)
	}
	l.start = time.Now()
	for c := 0; c < clusterSigners; c++ {
		l.wg.Add(1)
		go l.signer(c)
	}
	return l
}

func (l *clusterLoad) signer(c int) {
	defer l.wg.Done()
	var mine []sample
	defer func() {
		l.mu.Lock()
		l.samples = append(l.samples, mine...)
		l.mu.Unlock()
	}()
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		name := l.names[(c+i)%len(l.names)]
		msg := fmt.Sprintf("client %d request %d", c, i)
		t0 := time.Now()
		res, err := l.cl.Sign(context.Background(), name, wire.SignRequest{Message: []byte(msg)})
		s := sample{at: t0.Sub(l.start), latency: time.Since(t0), status: http.StatusOK}
		if err != nil {
			var ce *client.Error
			if errors.As(err, &ce) {
				s.status = ce.Status
			} else {
				s.status = 0
			}
			mine = append(mine, s)
			l.firstErr.CompareAndSwap(nil, fmt.Sprintf("%s at %v: %v", name, s.at.Round(time.Millisecond), err))
			continue
		}
		mine = append(mine, s)
		l.signed.Add(1)
		if i%8 == 0 {
			parts := strings.SplitN(res.Signature, ":", 3)
			der, derr := []byte(nil), errors.New("not kw:v<n>:<base64>")
			if len(parts) == 3 {
				der, derr = base64.StdEncoding.DecodeString(parts[2])
			}
			if derr != nil || !verifyMsg(l.pubs[name], msg, der) {
				l.badSig.Add(1)
			}
		}
	}
}

// since is the time since the load started.
func (l *clusterLoad) since() time.Duration { return time.Since(l.start) }

// sleepUntil sleeps until at after the load's start.
func (l *clusterLoad) sleepUntil(at time.Duration) {
	if d := at - l.since(); d > 0 {
		time.Sleep(d)
	}
}

// finish stops the signers and waits for them.
func (l *clusterLoad) finish() {
	close(l.stop)
	l.wg.Wait()
}

// phase is a named slice of the load: the calls that ended (returned to
// their caller) in [from, to). By completion, not start: a call started
// just before a fault and stalled by it belongs to the fault's phase.
type phase struct {
	name     string
	from, to time.Duration
}

// table logs the phase table and returns each phase's figures.
func (l *clusterLoad) table(t *testing.T, title string, phases []phase) map[string]phaseStats {
	t.Helper()
	out := map[string]phaseStats{}
	var tb strings.Builder
	fmt.Fprintf(&tb, "%s: %d signers through keysvc/client over 3 nodes, keys %v, %d CPUs\n", title, clusterSigners, l.names, cpus())
	fmt.Fprintf(&tb, "  %-10s %15s %9s %7s %9s %9s %9s\n", "phase", "calls ended", "requests", "errors", "p50", "p99", "max")
	row := func(name, window string, ss []sample) {
		p := summarise(ss)
		out[name] = p
		fmt.Fprintf(&tb, "  %-10s %15s %9d %7d %9v %9v %9v\n", name, window, p.n, p.non200, p.p50.Round(10*time.Microsecond), p.p99.Round(10*time.Microsecond), p.max.Round(10*time.Microsecond))
	}
	for _, ph := range phases {
		var ss []sample
		for _, s := range l.samples {
			if end := s.at + s.latency; end >= ph.from && end < ph.to {
				ss = append(ss, s)
			}
		}
		row(ph.name, fmt.Sprintf("%.1f-%.1fs", ph.from.Seconds(), min(ph.to, l.since()).Seconds()), ss)
	}
	row("total", "", l.samples)
	st := l.cl.Stats()
	fmt.Fprintf(&tb, "  client: %d failovers, %d retries, %d calls exhausted; %v", st.Failovers, st.Retries, st.Exhausted, l.counter)
	t.Log(tb.String())
	return out
}

// probe is one request as the officer to n, safe to run on any
// goroutine: the status (0: no answer) and the error code of the answer.
func probe(e *clusterEnv, n *clusterNode, method, path string, body any) (int, string) {
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, n.url+path, rd)
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+officerToken)
	resp, err := e.hc.Do(req)
	if err != nil {
		return 0, "transport: " + err.Error()
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(raw, &out) != nil {
		return resp.StatusCode, "non-JSON answer"
	}
	return resp.StatusCode, errCode(out)
}

// parseECPublicPEM parses a PEM public key keysvc returned.
func parseECPublicPEM(t *testing.T, p string) *ecdsa.PublicKey {
	t.Helper()
	blk, _ := pem.Decode([]byte(p))
	if blk == nil {
		t.Fatalf("public key is not PEM: %q", p)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("public key is a %T, not ECDSA", pub)
	}
	return ec
}

// openChain opens the cluster's store as the audit verifier does (a
// client of etcd over mutual TLS), closed at the end of t.
func openChain(t *testing.T, e *clusterEnv) *etcdstore.Store {
	t.Helper()
	return openTestStore(t, e, "test-reader")
}

// syncChain waits until every audit record acknowledged so far (held in a
// node's inbox) is on the chain (etcdstore's SyncAudit: an elected node
// chains the inboxes after the fact), at most 30 s, and logs how long
// that took: the chain's lag behind the answers given.
func syncChain(t *testing.T, st *etcdstore.Store) {
	t.Helper()
	t0 := time.Now()
	var err error
	for time.Since(t0) < 30*time.Second {
		if err = st.SyncAudit(context.Background()); err == nil {
			t.Logf("every acknowledged audit record chained %v after the load stopped", time.Since(t0).Round(time.Millisecond))
			return
		}
	}
	t.Fatalf("the audit records acknowledged to the nodes are not all chained 30 s after the load stopped: %v", err)
}

// chainRecords returns every record of the cluster's chain.
func chainRecords(t *testing.T, e *clusterEnv) []audit.Record {
	t.Helper()
	st := openChain(t, e)
	var recs []audit.Record
	if err := st.AuditRecords(1, func(r audit.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return recs
}

// checkChain reads the chain and checks what the verifier does not say
// in its summary: sequence numbers 1..N, each once, in order, and N the
// count the verifier reported. It returns the records.
func checkChain(t *testing.T, e *clusterEnv, verified int) []audit.Record {
	t.Helper()
	recs := chainRecords(t, e)
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("audit record %d of the chain has seq %d: a gap or a repeat", i+1, r.Seq)
		}
	}
	// The verifier ran a moment earlier: nodes may have appended since
	// (start-up, checkpoints), never removed.
	if len(recs) < verified {
		t.Fatalf("the chain holds %d records, the verifier checked %d", len(recs), verified)
	}
	return recs
}

// checkSignRecords checks the load's sign records against what callers
// saw: at least one "ok" record per signature returned, at most that plus
// the attempts whose outcome the client could not know (lost in flight,
// or a 503 from a node whose store write timed out: its record may have
// landed later). Nothing else can explain more.
func checkSignRecords(t *testing.T, l *clusterLoad, recs []audit.Record, extraOK int64) {
	t.Helper()
	keys := map[string]bool{}
	for _, n := range l.names {
		keys[n] = true
	}
	var okRecs, other int64
	for _, r := range recs {
		if r.Op == "sign" && keys[r.Key] {
			if r.Result == "ok" {
				okRecs++
			} else {
				other++
			}
		}
	}
	signed := l.signed.Load() + extraOK
	unknown := l.counter.lost.Load() + l.counter.statuses()[http.StatusServiceUnavailable]
	t.Logf("sign records of the load's keys: %d ok, %d refused; signatures returned: %d; attempts of unknown outcome (lost in flight or 503): %d",
		okRecs, other, signed, unknown)
	if okRecs < signed {
		t.Errorf("%d sign records with result ok, but %d signatures were returned: a signature without its record", okRecs, signed)
	}
	if okRecs > signed+unknown {
		t.Errorf("%d sign records with result ok, more than the %d signatures returned plus %d attempts of unknown outcome", okRecs, signed, unknown)
	}
}

// threeNodeEnv is the fault tests' cluster: etcd, the token and three
// keysvc processes, keysvc-1..3 (skipped under -short).
func threeNodeEnv(t *testing.T) *clusterEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts an etcd cluster and three keysvc processes")
	}
	e := newClusterEnv(t)
	e.addNodes(t, 3)
	return e
}

// checkAuditAfterLoad is the fault tests' audit check once the load has
// stopped: every acknowledged record chained (syncChain), the chain
// verified by the verifier on the first node, sequence numbers 1..N
// (checkChain) and the load's sign records matching what callers saw
// (checkSignRecords). It returns the chain's records.
func checkAuditAfterLoad(t *testing.T, e *clusterEnv, l *clusterLoad) []audit.Record {
	t.Helper()
	syncChain(t, openChain(t, e))
	verified := verifyCluster(t, e, e.nodes[0])
	recs := checkChain(t, e, verified)
	checkSignRecords(t, l, recs, 0)
	return recs
}

func TestClusterKillKeysvcNodeUnderLoad(t *testing.T) {
	e := threeNodeEnv(t)
	victim := e.nodes[1]
	const total, killAt, restartAt = 12 * time.Second, 4 * time.Second, 8 * time.Second

	l := newClusterLoad(t, e, "kn")
	l.sleepUntil(killAt)
	victim.kill9(t)
	killedAt := l.since()
	l.sleepUntil(restartAt)
	victim.restart(t) // returns once /healthz answers
	restartedAt := l.since()
	okAtRestart := l.counter.okFrom(victim.url)
	// Long enough after the restart for the client to try the node again
	// (its down time) and use it for a while.
	l.sleepUntil(max(total, restartedAt+client.DefaultDownTime+2*time.Second))
	l.finish()
	okAfter := l.counter.okFrom(victim.url) - okAtRestart

	ph := l.table(t, fmt.Sprintf("kill -9 of keysvc node %s at %v, restarted at %v (healthy at %v)", victim.node,
		killedAt.Round(time.Millisecond), restartAt, restartedAt.Round(time.Millisecond)),
		[]phase{{"before", 0, killedAt}, {"during", killedAt, restartedAt}, {"after", restartedAt, time.Hour}})
	if all := ph["total"]; all.non200 != 0 {
		t.Errorf("%d of %d calls failed for their caller; first: %v", all.non200, all.n, l.firstErr.Load())
	}
	if l.badSig.Load() != 0 {
		t.Errorf("%d sampled signatures did not verify", l.badSig.Load())
	}
	if ph["during"].n == 0 || ph["after"].n == 0 {
		t.Errorf("no calls while the node was down (%d) or after it came back (%d)", ph["during"].n, ph["after"].n)
	}
	// The restarted node took its share again: the client found it.
	t.Logf("the restarted node %s answered %d signs with 200 after its restart", victim.node, okAfter)
	if okAfter == 0 {
		t.Errorf("the restarted node %s answered no sign after its restart; the client sees it as %+v", victim.node, l.cl.Endpoints())
	}

	checkAuditAfterLoad(t, e, l)
}

func TestClusterKillEtcdMembersUnderLoad(t *testing.T) {
	e := threeNodeEnv(t)
	n1 := e.nodes[0]
	// A key to rotate while quorum is lost (a write refused, never
	// repeated by anyone).
	if st, out := n1.call(t, e.hc, "POST", "/v1/keys", map[string]any{"name": "nq-rot", "purpose": "sign", "algorithm": "ec-p256", "protection": "wrapped",
		"policy": map[string]any{"grants": []any{map[string]any{"client": "officer", "ops": []string{"sign"}}}}}); st != http.StatusCreated && st != http.StatusOK {
		t.Fatalf("create nq-rot: %d %v", st, out)
	}
	const leaderAt, secondAt, backAt, tail = 3 * time.Second, 6 * time.Second, 10 * time.Second, 3 * time.Second

	l := newClusterLoad(t, e, "km")
	l.sleepUntil(leaderAt)
	leader, err := e.etcd.Leader(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	leader.Kill()
	leaderKilled := l.since()
	l.sleepUntil(secondAt)
	var second *etcdlocal.Member
	for _, m := range e.etcd.Members {
		if m != leader {
			second = m
			break
		}
	}
	second.Kill()
	quorumLost := l.since()

	// Without quorum: audited operations answer 503 on every node (a
	// sign, not repeated by a client here: one request, one answer), a
	// create and a rotate are refused, /readyz is 503 everywhere.
	probes := []struct {
		n            *clusterNode
		method, path string
		body         any
	}{
		{e.nodes[0], "POST", "/v1/keys/nq-rot/sign", map[string]any{"message": b64("no quorum on node 1")}},
		{e.nodes[1], "POST", "/v1/keys/nq-rot/sign", map[string]any{"message": b64("no quorum on node 2")}},
		{e.nodes[2], "POST", "/v1/keys/nq-rot/sign", map[string]any{"message": b64("no quorum on node 3")}},
		{e.nodes[0], "GET", "/readyz", nil},
		{e.nodes[1], "GET", "/readyz", nil},
		{e.nodes[2], "GET", "/readyz", nil},
		{e.nodes[1], "POST", "/v1/keys/nq-rot/rotate", nil},
		{e.nodes[2], "POST", "/v1/keys", map[string]any{"name": "nq-made", "purpose": "sign", "algorithm": "ec-p256", "protection": "wrapped",
			"policy": map[string]any{"grants": []any{map[string]any{"client": "officer", "ops": []string{"sign"}}}}}},
	}
	type answer struct {
		st   int
		code string
		took time.Duration
	}
	answers := make([]answer, len(probes))
	var pwg sync.WaitGroup
	for i, p := range probes {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			t0 := time.Now()
			st, code := probe(e, p.n, p.method, p.path, p.body)
			answers[i] = answer{st, code, time.Since(t0)}
		}()
	}
	pwg.Wait()
	var direct503 int64
	var pl strings.Builder
	for i, p := range probes {
		a := answers[i]
		fmt.Fprintf(&pl, "\n  %s %s on %s: %d %s after %v", p.method, p.path, p.n.node, a.st, a.code, a.took.Round(time.Millisecond))
		if p.path == "/readyz" {
			if a.st != http.StatusServiceUnavailable {
				t.Errorf("/readyz of %s without an etcd quorum: %d %s, want 503", p.n.node, a.st, a.code)
			}
			continue
		}
		if a.st != http.StatusServiceUnavailable || (a.code != "store_unavailable" && a.code != "audit_unavailable") {
			t.Errorf("%s %s on %s without an etcd quorum: %d %s, want 503 store_unavailable or audit_unavailable", p.method, p.path, p.n.node, a.st, a.code)
		}
		if strings.HasSuffix(p.path, "/sign") {
			direct503++
		}
	}
	t.Logf("without an etcd quorum (one request each, no client retry):%s", pl.String())
	probesDone := l.since()

	l.sleepUntil(backAt)
	for _, m := range []*etcdlocal.Member{leader, second} {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
	}
	started := l.since()
	// Time to node 1 ready, and to every node ready.
	var n1Ready time.Duration
	deadline := time.Now().Add(40 * time.Second)
	for n1Ready == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if n1.readyz(e.hc) == http.StatusOK {
			n1Ready = l.since()
		}
	}
	if n1Ready == 0 {
		t.Fatal("node 1 not ready 40 s after the etcd members were started again")
	}
	var allReady time.Duration
	for allReady == 0 && time.Now().Before(deadline) {
		ready := 0
		for _, n := range e.nodes {
			if n.readyz(e.hc) == http.StatusOK {
				ready++
			}
		}
		if ready == len(e.nodes) {
			allReady = l.since()
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if allReady == 0 {
		t.Fatal("not every node ready 40 s after the etcd members were started again")
	}
	l.sleepUntil(allReady + tail)
	l.finish()

	// The load's first 200 answered after the members were started.
	var first200 time.Duration
	for _, s := range l.samples {
		if s.status == http.StatusOK && s.at+s.latency > started && (first200 == 0 || s.at+s.latency < first200) {
			first200 = s.at + s.latency
		}
	}
	ph := l.table(t, fmt.Sprintf("kill -9 of the etcd leader %s at %v, of %s at %v (quorum lost), both started at %v; node 1 ready at %v, every node at %v, the load's first 200 at %v",
		leader.Name, leaderKilled.Round(time.Millisecond), second.Name, quorumLost.Round(time.Millisecond), started.Round(time.Millisecond),
		n1Ready.Round(time.Millisecond), allReady.Round(time.Millisecond), first200.Round(time.Millisecond)),
		[]phase{{"before", 0, leaderKilled}, {"leader", leaderKilled, quorumLost}, {"no-quorum", quorumLost, started}, {"recovering", started, allReady}, {"after", allReady, time.Hour}})
	t.Logf("service resumed %v after the members were started (first 200 of the load), every node ready after %v; probes without quorum took %v",
		(first200 - started).Round(time.Millisecond), (allReady - started).Round(time.Millisecond), (probesDone - quorumLost).Round(time.Millisecond))
	// No caller sees an error from a call that ended before quorum was
	// lost (the leader's election is only a stall), or from one started
	// once every node was ready again. Calls caught by the quorum loss
	// failed after their retries, or were answered once it came back.
	var early, late []sample
	for _, s := range l.samples {
		if s.at+s.latency < quorumLost {
			early = append(early, s)
		}
		if s.at >= allReady {
			late = append(late, s)
		}
	}
	for _, c := range []struct {
		what string
		ss   []sample
	}{{"ended before quorum was lost", early}, {"started once every node was ready again", late}} {
		p := summarise(c.ss)
		t.Logf("calls %s: %d, %d errors, p99 %v, max %v", c.what, p.n, p.non200, p.p99.Round(time.Millisecond), p.max.Round(time.Millisecond))
		if p.non200 != 0 {
			t.Errorf("%d of %d calls %s failed for their caller; first error of the load: %v", p.non200, p.n, c.what, l.firstErr.Load())
		}
	}
	if ph["leader"].n == 0 || ph["after"].n == 0 {
		t.Errorf("no calls after the leader was killed (%d) or after recovery (%d)", ph["leader"].n, ph["after"].n)
	}
	if l.badSig.Load() != 0 {
		t.Errorf("%d sampled signatures did not verify", l.badSig.Load())
	}
	for _, n := range e.nodes {
		if !n.running() {
			t.Errorf("keysvc %s exited while etcd was away", n.node)
		}
	}

	recs := checkAuditAfterLoad(t, e, l)

	// No partial state: each refused write is either absent with no
	// record, or present with its record (an unknown outcome that landed
	// when quorum returned), never one without the other. The direct
	// signs without quorum got 503: no ok record may exceed that count.
	count := func(op, key string) (ok, other int) {
		for _, r := range recs {
			if r.Op == op && r.Key == key {
				if r.Result == "ok" {
					ok++
				} else {
					other++
				}
			}
		}
		return ok, other
	}
	_, kv := n1.call(t, e.hc, "GET", "/v1/keys/nq-rot", nil)
	versions, _ := kv["versions"].([]any)
	rotOK, _ := count("rotate", "nq-rot")
	t.Logf("after the outage: nq-rot has %d versions, %d rotate records ok", len(versions), rotOK)
	if (len(versions) == 1) != (rotOK == 0) || len(versions) > 2 || rotOK > 1 {
		t.Errorf("partial state: nq-rot has %d versions and %d rotate records with result ok (want 1 and 0, or 2 and 1)", len(versions), rotOK)
	}
	stGet, _ := n1.call(t, e.hc, "GET", "/v1/keys/nq-made", nil)
	madeOK, _ := count("create", "nq-made")
	t.Logf("after the outage: GET nq-made %d, %d create records ok", stGet, madeOK)
	if (stGet == http.StatusOK) != (madeOK == 1) || madeOK > 1 || (stGet != http.StatusOK && stGet != http.StatusNotFound) {
		t.Errorf("partial state: GET nq-made answers %d, %d create records with result ok (want 404 and 0, or 200 and 1)", stGet, madeOK)
	}
	if signOK, _ := count("sign", "nq-rot"); int64(signOK) > direct503 {
		t.Errorf("%d sign records ok for nq-rot, which was only signed by %d requests refused with 503", signOK, direct503)
	}
}
