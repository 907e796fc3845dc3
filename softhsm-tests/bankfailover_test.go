//go:build linux

package softhsmtests

// banking on PostgreSQL with a synchronous standby (issue 17; R-AV-1,
// R-AV-4): real processes throughout — cmd/keysvc on a SoftHSM token,
// two cmd/banking nodes sharing one database, and a PostgreSQL primary
// with a synchronous standby started by banking/store/pglocal.
//
//   - TestBankPostgresFailover: customers transfer at a steady rate
//     through both banking nodes; the primary is killed (SIGKILL), and the
//     test promotes the standby as an operator (or Patroni) would. Every
//     transfer answered 200 before the kill is in the promoted database
//     exactly once, none that was refused (4xx) is, the books verify and
//     customers hold what they held. It reports the RTO (kill to the first
//     transfer that succeeded after it) and the failed requests.
//   - TestBankNodeKill: two banking nodes serve the same sessions; one is
//     killed (SIGKILL) under load and the other keeps serving every
//     session, with no transfer lost or applied twice.

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/store/pglocal"
)

// failoverSent is one order of a steady load and what it got.
type failoverSent struct {
	order  int
	node   int
	at     time.Time // sent
	result usbResult
}

// steadyLoad sends orders from workers goroutines, each at most one every
// period, worker w through node (w+k)%len(urls) for its k-th order, until
// stop is closed or the orders run out. With sticky, a worker whose node
// fails a request at the transport moves to the next node for good (what
// a load balancer does when a node dies).
func steadyLoad(hc *http.Client, urls []string, ps []crashParty, ords []crashOrder, workers int, period time.Duration, stop <-chan struct{}, sticky bool) []failoverSent {
	var mu sync.Mutex
	var out []failoverSent
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			node := w % len(urls)
			tick := time.NewTicker(period)
			defer tick.Stop()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				i := int(next.Add(1) - 1)
				if i >= len(ords) {
					return
				}
				if !sticky {
					node = (w + k) % len(urls)
				}
				p := ps[ords[i].from]
				s := failoverSent{order: i, node: node, at: time.Now()}
				s.result = postUSB(hc, urls[node], p.sess, p.dev, ords[i].body)
				if sticky && s.result.err != nil {
					node = (node + 1) % len(urls)
				}
				mu.Lock()
				out = append(out, s)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Slice(out, func(a, b int) bool { return out[a].at.Before(out[b].at) })
	return out
}

// answered reports a 200 with a transfer id (new or replayed).
func (r usbResult) answered() bool { return r.err == nil && r.status == http.StatusOK && r.tid != "" }

// refused reports a definite refusal: a 4xx, which stores nothing.
func (r usbResult) refused() bool { return r.err == nil && r.status >= 400 && r.status < 500 }

// pgFailoverEnv is what both tests run: keysvc on SoftHSM2, a PostgreSQL
// cluster (pg), four customers with USB keys and sessions, two cmd/banking
// nodes on it, a steady load's orders and client.
type pgFailoverEnv struct {
	st      *bankStore
	ps      []crashParty
	start   ledger.Report
	nodes   []*daemon
	urls    []string
	ords    []crashOrder
	hc      *http.Client
	workers int
	period  time.Duration
}

// newPGFailover starts it all; period is one worker's pace (doubled, with
// half the workers, under the race detector).
func newPGFailover(t *testing.T, pg pglocal.Options, period time.Duration) *pgFailoverEnv {
	t.Helper()
	dir := t.TempDir()
	ks := startKeysvc(t, dir, newTestTLS(t, dir))
	provisionBankKeysWith(t, ks.kmsClient(t, officerToken, 10*time.Second, 2))
	e := &pgFailoverEnv{st: pgBankStore(t, dir, pg), workers: 16, period: period}
	e.ps, e.start = crashSetupStore(t, ks.kmsClient(t, bankappToken, 10*time.Second, 8), e.st)
	for _, name := range []string{"banking-a", "banking-b"} {
		n := startBankingNode(t, dir, name, ks, e.st, bankingOptions{})
		e.nodes, e.urls = append(e.nodes, n), append(e.urls, n.url)
	}
	if raceEnabled() {
		e.workers, e.period = 8, 2*period
	}
	e.ords = crashOrders(t, e.ps, 20000)
	e.hc = &http.Client{Timeout: 15 * time.Second, Transport: ks.tls.clientTransport(2 * e.workers)}
	t.Cleanup(e.hc.CloseIdleConnections)
	return e
}

// load starts the steady load; the function it returns stops it and
// returns what was sent.
func (e *pgFailoverEnv) load(sticky bool) func() []failoverSent {
	stop := make(chan struct{})
	done := make(chan []failoverSent, 1)
	go func() { done <- steadyLoad(e.hc, e.urls, e.ps, e.ords, e.workers, e.period, stop, sticky) }()
	return func() []failoverSent { close(stop); return <-done }
}

// books opens the database at dsn: the ledger verifies, customers hold what
// they held at the start, and it returns the orders posted (idempotency
// key → transfer id; an order posted twice fails the test).
func (e *pgFailoverEnv) books(t *testing.T, dsn string) (ledger.Report, map[string]string) {
	t.Helper()
	l, err := ledger.New(e.st.openAt(t, dsn), ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := l.Verify(context.Background())
	if err != nil {
		t.Fatalf("ledger: %v", err)
	}
	if rep.CustomerTotals["CNY"] != e.start.CustomerTotals["CNY"] || rep.Totals["CNY"] != 0 {
		t.Fatalf("customers hold %d (before %d), all balances sum to %d", rep.CustomerTotals["CNY"], e.start.CustomerTotals["CNY"], rep.Totals["CNY"])
	}
	var accounts []string
	for _, p := range e.ps {
		accounts = append(accounts, p.c.account)
	}
	return rep, ledgerKeys(t, l, accounts...)
}

// posted reports order i's transfer id in posted.
func (e *pgFailoverEnv) posted(posted map[string]string, i int) (string, bool) {
	o := e.ords[i]
	tid, in := posted[e.ps[o.from].c.id+":"+o.nonce]
	return tid, in
}

func TestBankPostgresFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PostgreSQL, keysvc and two banking processes")
	}
	ctx := context.Background()
	e := newPGFailover(t, pglocal.Options{Standby: true}, 25*time.Millisecond)
	st, ps := e.st, e.ps
	stopLoad := e.load(false)
	time.Sleep(3 * time.Second)
	killedAt := time.Now()
	st.pg.Primary.Kill()
	// An operator (or Patroni) sees the primary gone and promotes the
	// standby; the detection delay is the operator's, not banking's.
	time.Sleep(time.Second)
	promoteAt := time.Now()
	if err := st.pg.Standby.Promote(ctx); err != nil {
		stopLoad()
		t.Fatalf("promote the standby: %v", err)
	}
	promoted := time.Since(promoteAt)
	time.Sleep(5 * time.Second)
	sent := stopLoad()

	// The tally, and the RTO: kill to the first 200 of a request sent
	// after the kill.
	var before, beforeOK, during, okAfter, refused, failed int
	var rto time.Duration
	var worst time.Duration
	failures := map[string]int{}
	for _, s := range sent {
		r := s.result
		worst = max(worst, r.took)
		switch {
		case s.at.Before(killedAt):
			before++
			if r.answered() {
				beforeOK++
			}
		default:
			during++
		}
		switch {
		case r.answered():
			if !s.at.Before(killedAt) {
				okAfter++
				if rto == 0 {
					rto = s.at.Add(r.took).Sub(killedAt)
				}
			}
		case r.refused():
			refused++
			failures[fmt.Sprintf("HTTP %d %s", r.status, r.code)]++
		default:
			failed++
			if r.err != nil {
				failures["transport error"]++
			} else {
				failures[fmt.Sprintf("HTTP %d %s", r.status, r.code)]++
			}
		}
	}
	t.Logf("load: %d workers, one order each per %v, through 2 banking nodes; %d requests (%d sent before the kill, %d answered 200)", e.workers, e.period, len(sent), before, beforeOK)
	t.Logf("primary killed at +3 s, standby promoted 1 s later (promotion took %v); after the kill: %d requests, %d answered 200, %d refused, %d failed %v; worst latency %v",
		promoted.Round(time.Millisecond), during, okAfter, refused, failed, failures, worst.Round(time.Millisecond))
	if rto == 0 {
		t.Fatal("no transfer succeeded after the failover")
	}
	t.Logf("RTO (kill to first successful transfer): %v", rto.Round(time.Millisecond))
	if beforeOK == 0 {
		t.Fatal("no transfer succeeded before the kill: the load did not run")
	}

	// The promoted database, read directly: every transfer answered 200 is
	// there exactly once with the id it was answered with, no refused one
	// is, the books verify and customers hold what they held.
	rep, posted := e.books(t, st.pg.Standby.DSN(st.dbname))
	var unknownIn, unknown int
	for _, s := range sent {
		r := s.result
		tid, in := e.posted(posted, s.order)
		switch {
		case r.answered() && (!in || tid != r.tid):
			t.Errorf("order %d answered 200 %s (sent %v after the kill) is not in the promoted database (%q)", s.order, r.tid, s.at.Sub(killedAt).Round(time.Millisecond), tid)
		case r.refused() && in:
			t.Errorf("order %d was refused (%v) and is in the promoted database as %s", s.order, r, tid)
		case !r.answered() && !r.refused():
			unknown++
			if in {
				unknownIn++
			}
		}
	}
	if got := rep.ByKind[ledger.KindTransfer] - e.start.ByKind[ledger.KindTransfer]; got != uint64(len(posted)) {
		t.Errorf("%d transfers in the journal, %d of them the test's orders", got, len(posted))
	}
	t.Logf("promoted database: %d transfers, every one of %d answered 200 present once; %d requests without a definite answer, %d of them committed; verify ok", len(posted), beforeOK+okAfter, unknown, unknownIn)

	// Both nodes serve on the new primary without a restart.
	for i, u := range e.urls {
		p := ps[i]
		r := postUSB(e.hc, u, p.sess, p.dev, usbBody(p.c, transferOrder(t, p.c.account, ps[(i+1)%len(ps)].c.account, ps[(i+1)%len(ps)].c.name, "1.00", fmt.Sprintf("after-failover-%d", i))))
		if !r.answered() || r.replayed {
			t.Errorf("node %d after the failover: %v", i, r)
		}
	}
}

func TestBankNodeKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PostgreSQL, keysvc and two banking processes")
	}
	e := newPGFailover(t, pglocal.Options{}, 20*time.Millisecond)
	st, ps, ords, a, b := e.st, e.ps, e.ords, e.nodes[0], e.nodes[1]
	stopLoad := e.load(true)
	time.Sleep(2 * time.Second)
	killedAt := time.Now()
	a.kill(t)
	time.Sleep(3 * time.Second)
	sent := stopLoad()

	var okA, okB, lost, other, movedOK int
	moved := map[int]bool{} // workers' sessions that reached b after a died
	for _, s := range sent {
		r := s.result
		switch {
		case r.answered() && s.node == 0:
			okA++
		case r.answered():
			okB++
			if s.at.After(killedAt) {
				movedOK++
				moved[ords[s.order].from] = true
			}
		case r.err != nil && s.node == 0:
			lost++ // in flight on a, or sent to it as it died
		default:
			other++
			t.Errorf("order %d on node %d: %v", s.order, s.node, s.result)
		}
	}
	t.Logf("%d requests: %d answered by a before it died, %d by b (%d after the kill, for %d customers' sessions), %d lost with a, %d other",
		len(sent), okA, okB, movedOK, len(moved), lost, other)
	if len(moved) != len(ps) {
		t.Errorf("after a died, b served %d of %d customers' sessions", len(moved), len(ps))
	}

	// Orders lost with a: sent again to b, each either replays (a had
	// committed it) or applies now; then the books hold every order once.
	var resent []failoverSent
	for _, s := range sent {
		if s.result.err != nil {
			p := ps[ords[s.order].from]
			resent = append(resent, failoverSent{order: s.order, node: 1, result: postUSB(e.hc, b.url, p.sess, p.dev, ords[s.order].body)})
		}
	}
	for _, s := range resent {
		if !s.result.answered() {
			t.Errorf("order %d sent again to b: %v", s.order, s.result)
		}
	}
	_, posted := e.books(t, st.pg.Primary.DSN(st.dbname))
	for _, s := range sent {
		if tid, in := e.posted(posted, s.order); s.result.answered() && tid != s.result.tid || !in {
			t.Errorf("order %d (%v) is in the ledger as %q", s.order, s.result, tid)
		}
	}
}
