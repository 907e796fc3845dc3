package etcdstore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/confirmtest"
	"github.com/keyward/keyward/keysvc/etcdstore"
	"github.com/keyward/keyward/keysvc/etcdstore/etcdlocal"
	"github.com/keyward/keyward/keysvc/storetest"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

func TestMain(m *testing.M) {
	if _, err := etcdlocal.Binary("."); err != nil {
		println(err.Error())
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// cluster starts a real 3-member etcd cluster for one test.
func cluster(t testing.TB) *etcdlocal.Cluster {
	t.Helper()
	c, err := etcdlocal.Start(context.Background(), etcdlocal.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

var prefixes atomic.Int64

// freshPrefix returns a prefix no other store of the test uses.
func freshPrefix() string { return fmt.Sprintf("/keyward-test-%d/", prefixes.Add(1)) }

// open opens a Store ("node") on c with its own etcd client.
func open(t testing.TB, c *etcdlocal.Cluster, node, prefix string, timeout time.Duration) *etcdstore.Store {
	t.Helper()
	return openLog(t, c, node, prefix, timeout, nil)
}

// openLog is open with the store's log going to log (nil: warnings and
// errors to stderr).
func openLog(t testing.TB, c *etcdlocal.Cluster, node, prefix string, timeout time.Duration, log *slog.Logger) *etcdstore.Store {
	t.Helper()
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	tlsCfg, err := c.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	s, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: c.Endpoints(), TLS: tlsCfg, Prefix: prefix,
		Node: node, RequestTimeout: timeout, Logger: log})
	if err != nil {
		t.Fatalf("Open(%s): %v", node, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// nodes opens n Stores on one fresh prefix: n keysvc nodes of one cluster.
func nodes(t testing.TB, c *etcdlocal.Cluster, n int, timeout time.Duration) []*etcdstore.Store {
	return nodesOn(t, c, freshPrefix(), n, timeout, nil)
}

// nodesOn opens n Stores, node-a, node-b…, on prefix, each logging to log
// (openLog).
func nodesOn(t testing.TB, c *etcdlocal.Cluster, prefix string, n int, timeout time.Duration, log *slog.Logger) []*etcdstore.Store {
	t.Helper()
	var out []*etcdstore.Store
	for i := range n {
		out = append(out, openLog(t, c, fmt.Sprintf("node-%c", 'a'+i), prefix, timeout, log))
	}
	return out
}

func TestStoreConformance(t *testing.T) {
	c := cluster(t)
	storetest.Run(t, func(t *testing.T) keysvc.Store { return open(t, c, "node-a", freshPrefix(), 0) })
}

func TestConfirmStore(t *testing.T) {
	c := cluster(t)
	confirmtest.Run(t, func(t *testing.T) keysvc.ConfirmStore {
		return open(t, c, "node-a", freshPrefix(), 0).Confirmations()
	})
}

func TestOpenRefusesPlain(t *testing.T) {
	_, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: []string{"https://127.0.0.1:1"}})
	if !errors.Is(err, wire.ErrStore) {
		t.Fatalf("Open without TLS = %v, want wire.ErrStore", err)
	}
}

// slowest is the longest Audit call appendAll saw (for reports).
var slowest atomic.Int64 // nanoseconds

// appendAll runs appenders goroutines spread over stores, each appending
// until stop closes (or each of them n records when n > 0); it returns the
// details of the records whose Audit succeeded and the errors.
func appendAll(stores []*etcdstore.Store, appenders, n int, stop <-chan struct{}) (ok map[string]uint64, errs []error) {
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	ok = map[string]uint64{}
	for a := range appenders {
		s := stores[a%len(stores)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; n == 0 || i < n; i++ {
				if stop != nil {
					select {
					case <-stop:
						return
					default:
					}
				}
				r := storetest.Rec("sign", "k")
				r.Detail = fmt.Sprintf("%s appender=%d i=%d", s.Node(), a, i)
				t0 := time.Now()
				err := s.Audit(r)
				if d := int64(time.Since(t0)); d > slowest.Load() {
					slowest.Store(d) // racy max, good enough for a report
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", r.Detail, err))
				} else {
					ok[r.Detail] = r.Seq
				}
				mu.Unlock()
				if errors.Is(err, etcdstore.ErrClosed) {
					return // this appender's node was closed
				}
			}
		}()
	}
	wg.Wait()
	return ok, errs
}

// appendInBackground runs appendAll(stores, appenders, 0, …) while the
// test does something to the cluster; the returned stop ends the appends
// and returns what appendAll did.
func appendInBackground(stores []*etcdstore.Store, appenders int) (stop func() (ok map[string]uint64, errs []error)) {
	quit := make(chan struct{})
	type result struct {
		ok   map[string]uint64
		errs []error
	}
	done := make(chan result)
	go func() {
		ok, errs := appendAll(stores, appenders, 0, quit)
		done <- result{ok, errs}
	}()
	return func() (map[string]uint64, []error) {
		close(quit)
		r := <-done
		return r.ok, r.errs
	}
}

// compactAll compacts etcd's history up to the current revision (through
// s's client): a watch from an older revision then fails as compacted.
func compactAll(t *testing.T, s *etcdstore.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.Client().Get(ctx, "compact-me")
	if err == nil {
		_, err = s.Client().Compact(ctx, resp.Header.Revision)
	}
	if err != nil {
		t.Fatalf("compact: %v", err)
	}
}

// checkLog waits until every acknowledged record is chained (SyncAudit),
// verifies the chain and that every successful append is in it exactly
// once; it returns the record count.
func checkLog(t *testing.T, s keysvc.Store, ok map[string]uint64) int {
	t.Helper()
	recs := storetest.All(t, s) // SyncAudit first
	storetest.CheckChain(t, s, recs)
	seen := map[string]uint64{}
	for _, r := range recs {
		if _, dup := seen[r.Detail]; dup && r.Detail != "" {
			t.Fatalf("record %q stored twice", r.Detail)
		}
		seen[r.Detail] = r.Seq
	}
	for d := range ok {
		if _, in := seen[d]; !in {
			t.Fatalf("append %q succeeded but the log does not have it", d)
		}
	}
	return len(recs)
}

// TestCluster runs the multi-node behaviour on one etcd cluster, each
// subtest on its own prefix.
func TestCluster(t *testing.T) {
	c := cluster(t)

	t.Run("ThreeNodesOneChain", func(t *testing.T) {
		st := nodes(t, c, 3, 0)
		const appenders, each = 48, 10
		ok, errs := appendAll(st, appenders, each, nil)
		for _, err := range errs {
			t.Error(err)
		}
		if len(ok) != appenders*each {
			t.Fatalf("%d appends succeeded of %d", len(ok), appenders*each)
		}
		for _, s := range st {
			if n := checkLog(t, s, ok); n != appenders*each {
				t.Fatalf("%s reads %d records, want %d", s.Node(), n, appenders*each)
			}
		}
	})

	t.Run("ConcurrentUpdateKey", func(t *testing.T) {
		st := nodes(t, c, 3, 0)
		if err := st[0].CreateKey(storetest.Key("k"), storetest.Rec("create", "k")); err != nil {
			t.Fatal(err)
		}
		const per = 4 // goroutines per node
		const each = 5
		var wg sync.WaitGroup
		var calls atomic.Int64
		errs := make(chan error, 3*per*each)
		for _, s := range st {
			for range per {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range each {
						_, err := s.UpdateKey("k", func(k *keysvc.Key) error { calls.Add(1); k.Revision++; return nil }, storetest.Rec("update", "k"))
						if err != nil {
							errs <- err
						}
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		k, err := st[1].GetKey("k")
		if err != nil {
			t.Fatal(err)
		}
		if want := uint64(1 + 3*per*each); k.Revision != want {
			t.Fatalf("revision after %d concurrent increments from 3 nodes = %d, want %d", 3*per*each, k.Revision, want)
		}
		if n := checkLog(t, st[2], nil); n != 1+3*per*each {
			t.Fatalf("log holds %d records, want %d", n, 1+3*per*each)
		}
		t.Logf("%d increments from 3 nodes: fn ran %d times (conflicts re-run it)", 3*per*each, calls.Load())
	})

	t.Run("WatchKeys", func(t *testing.T) {
		st := nodes(t, c, 2, 0)
		a, b := st[0], st[1]
		if err := a.CreateKey(storetest.Key("w"), storetest.Rec("create", "w")); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		type seen struct {
			k  *keysvc.Key
			at time.Time
		}
		got := make(chan seen, 100)
		var resets atomic.Int64
		firstReset := make(chan struct{})
		go b.WatchKeys(ctx, func(k *keysvc.Key) { got <- seen{k, time.Now()} }, func() {
			if resets.Add(1) == 1 {
				close(firstReset)
			}
		})
		select { // the feed's first reset: its start is fixed, it sees everything after
		case <-firstReset:
		case <-time.After(10 * time.Second):
			t.Fatal("the feed did not call reset once its watch started")
		}
		const n = 30
		var fromCall, fromReturn []time.Duration
		for i := range n {
			called := time.Now()
			if _, err := a.UpdateKey("w", func(k *keysvc.Key) error {
				k.Revision++
				k.Versions[0].State = wire.StateDisabled
				return nil
			}, storetest.Rec("disable", "w")); err != nil {
				t.Fatal(err)
			}
			returned := time.Now()
			select {
			case sn := <-got:
				if sn.k.Name != "w" || sn.k.Revision != uint64(2+i) || sn.k.Versions[0].State != wire.StateDisabled {
					t.Fatalf("node B's feed got %+v, want revision %d", sn.k, 2+i)
				}
				fromCall = append(fromCall, sn.at.Sub(called))
				fromReturn = append(fromReturn, sn.at.Sub(returned))
			case <-time.After(10 * time.Second):
				t.Fatalf("node B's feed did not see node A's update %d within 10 s", i)
			}
		}
		if resets.Load() != 1 {
			t.Fatalf("the feed reset %d times with no fault, want once (at its start)", resets.Load())
		}
		slices.Sort(fromCall)
		slices.Sort(fromReturn)
		t.Logf("key feed lag over %d updates: node A's UpdateKey called → node B's put: median %v, p90 %v, max %v; "+
			"A's UpdateKey returned → B's put: median %v, max %v (negative: B saw it before A's call returned)",
			n, fromCall[n/2], fromCall[n*9/10], fromCall[n-1], fromReturn[n/2], fromReturn[n-1])
	})

	t.Run("Elector", func(t *testing.T) {
		st := nodes(t, c, 3, 0)
		type lead struct {
			node string
			ctx  context.Context
		}
		leads := make(chan lead, 3)
		var leading atomic.Int64
		var overlap atomic.Int64
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		for _, s := range st {
			go func() {
				lctx, _, err := s.Lead(ctx, s.Node())
				if err != nil {
					return
				}
				if leading.Add(1) > 1 {
					overlap.Add(1)
				}
				leads <- lead{s.Node(), lctx}
				<-lctx.Done()
				leading.Add(-1)
			}()
		}
		byNode := map[string]*etcdstore.Store{}
		for _, s := range st {
			byNode[s.Node()] = s
		}
		var prev *lead
		for round := range 3 {
			var l lead
			select {
			case l = <-leads:
			case <-time.After(15 * time.Second):
				t.Fatalf("round %d: no node leads", round)
			}
			if prev != nil && prev.ctx.Err() == nil {
				t.Fatalf("%s leads while %s's leading context is still live", l.node, prev.node)
			}
			// Nobody else leads meanwhile.
			select {
			case other := <-leads:
				t.Fatalf("round %d: %s and %s lead at once", round, l.node, other.node)
			case <-time.After(time.Second):
			}
			t.Logf("round %d: %s leads; closing its store", round, l.node)
			byNode[l.node].Close()
			select {
			case <-l.ctx.Done():
			case <-time.After(5 * time.Second):
				t.Fatalf("%s's leading context still live after its store closed", l.node)
			}
			prev = &l
		}
		if n := overlap.Load(); n != 0 {
			t.Fatalf("two leaders at once %d times", n)
		}
	})

	t.Run("PINCountersGuard", func(t *testing.T) {
		st := nodes(t, c, 3, 0)
		const id = "SoftHSM/SoftHSM v2/0123456789/user"
		var logins atomic.Int64
		var wg sync.WaitGroup
		results := make(chan error, 300)
		for _, s := range st {
			g, err := token.NewGuard(s.PINCounters(), 0)
			if err != nil {
				t.Fatal(err)
			}
			for range 100 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results <- g.Attempt(id, func() error { logins.Add(1); return pkcs11shim.ErrPINIncorrect })
				}()
			}
		}
		wg.Wait()
		close(results)
		var wrong, locked int
		for err := range results {
			switch {
			case errors.Is(err, pkcs11shim.ErrPINIncorrect):
				wrong++
			case errors.Is(err, pkcs11shim.ErrPINLocked):
				locked++
			default:
				t.Errorf("Attempt = %v", err)
			}
		}
		if n := logins.Load(); n > token.MaxPINAttempts {
			t.Fatalf("300 wrong-PIN attempts over 3 nodes reached the module %d times, want at most %d", n, token.MaxPINAttempts)
		}
		stt, err := st[2].PINCounters().Get(id)
		if err != nil || !stt.Locked || stt.Failures != token.MaxPINAttempts {
			t.Fatalf("state after the attempts = %+v, %v; want locked after %d", stt, err, token.MaxPINAttempts)
		}
		evs, err := st[1].PINCounters().Events(id)
		if err != nil || len(evs) == 0 || evs[0].Kind != "locked" {
			t.Fatalf("events = %+v, %v; want a lock event", evs, err)
		}
		t.Logf("300 attempts over 3 nodes: %d login calls, %d wrong-PIN answers, %d refused locked", logins.Load(), wrong, locked)
	})

	// The guard serialises attempts on one PIN inside a process (token's
	// per-PIN lock), so the test above cannot show that the store's
	// check-and-count is atomic across processes. This one races the
	// CounterStore directly: 3 nodes × 32 goroutines, each counting one
	// failure only while below the limit, as Guard.Attempt does.
	t.Run("PINCountersCAS", func(t *testing.T) {
		st := nodes(t, c, 3, 0)
		const id = "SoftHSM/SoftHSM v2/cas/user"
		var allowed atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 96)
		for _, s := range st {
			cs := s.PINCounters()
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var ok bool
					err := cs.Update(id, func(p *token.PINState) error {
						ok = p.Failures < token.MaxPINAttempts
						if ok {
							p.Failures++
						}
						return nil
					})
					if err != nil {
						errs <- err
						return
					}
					if ok {
						allowed.Add(1)
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		stt, _ := st[0].PINCounters().Get(id)
		if allowed.Load() != token.MaxPINAttempts || stt.Failures != token.MaxPINAttempts {
			t.Fatalf("96 racing check-and-counts from 3 nodes let %d through (state %d), want exactly %d", allowed.Load(), stt.Failures, token.MaxPINAttempts)
		}
	})

	t.Run("CheckpointRace", func(t *testing.T) {
		st := nodes(t, c, 3, 0)
		signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			if err := st[0].Audit(storetest.Rec("sign", "k")); err != nil {
				t.Fatal(err)
			}
		}
		storetest.Sync(t, st[1])
		seq, hash, err := st[1].LastAudit()
		if err != nil {
			t.Fatal(err)
		}
		// Each node's scheduler signs a checkpoint of the same head at once.
		cps := make([]audit.Checkpoint, 3)
		for i := range cps {
			if cps[i], err = audit.SignCheckpoint(signer, nil, seq, hash, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		errs := make([]error, 3)
		var wg sync.WaitGroup
		for i, s := range st {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = s.AddCheckpoint(cps[i]) }()
		}
		wg.Wait()
		stored := -1
		for i, err := range errs {
			switch {
			case err == nil && stored == -1:
				stored = i
			case err == nil:
				t.Fatalf("two different checkpoints of record %d were both accepted", seq)
			case !errors.Is(err, wire.ErrInvalidArgument):
				t.Fatalf("the losing checkpoint = %v, want wire.ErrInvalidArgument", err)
			}
		}
		if stored == -1 {
			t.Fatalf("no checkpoint stored: %v", errs)
		}
		// The same checkpoint again (a retry, another node's copy) is ignored.
		if err := st[(stored+1)%3].AddCheckpoint(cps[stored]); err != nil {
			t.Fatalf("AddCheckpoint(the stored one again) = %v, want nil", err)
		}
		got, err := st[2].Checkpoints()
		if err != nil || len(got) != 1 || string(got[0].Signature) != string(cps[stored].Signature) {
			t.Fatalf("Checkpoints = %+v, %v; want the one stored", got, err)
		}
	})

	t.Run("ConfirmAcrossNodes", func(t *testing.T) {
		st := nodes(t, c, 3, 0)
		now := time.Now().UTC()
		rec := &keysvc.ConfirmRecord{View: wire.ConfirmationView{ID: "cf_x", Key: "pay", Status: wire.ConfirmPending, CreatedAt: now, ExpiresAt: now.Add(time.Minute)},
			Holder: "h1", Digest: []byte{1}}
		if other, err := st[0].Confirmations().Open(context.Background(), rec, time.Minute); err != nil || other != nil {
			t.Fatalf("Open on A = %v, %v", other, err)
		}
		waited := make(chan error, 1)
		go func() { waited <- st[2].Confirmations().Wait(context.Background(), "cf_x") }()
		if other, err := st[1].Confirmations().Open(context.Background(), &keysvc.ConfirmRecord{View: wire.ConfirmationView{ID: "cf_y", Key: "pay", Status: wire.ConfirmPending, ExpiresAt: now.Add(time.Minute)}}, time.Minute); err != nil || other == nil || other.View.ID != "cf_x" {
			t.Fatalf("Open of the same key on B = %v, %v; want refused with cf_x", other, err)
		}
		if _, err := st[1].Confirmations().Update(context.Background(), "cf_x", func(r *keysvc.ConfirmRecord) error {
			r.View.Status = wire.ConfirmApproved
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-waited:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("C's Wait did not see B's approval")
		}
		if r, err := st[2].Confirmations().Get(context.Background(), "cf_x"); err != nil || r == nil || r.View.Status != wire.ConfirmApproved {
			t.Fatalf("C reads %+v, %v", r, err)
		}
	})
}

// countMsgs is a log handler that counts the store's messages (any
// level) containing each of its texts, e.g. "outcome unknown" (an append
// whose transaction died with the member that carried it) and "had
// landed".
type countMsgs map[string]*atomic.Int64

func (h countMsgs) Enabled(context.Context, slog.Level) bool { return true }
func (h countMsgs) Handle(_ context.Context, r slog.Record) error {
	for text, n := range h {
		if strings.Contains(r.Message, text) {
			n.Add(1)
		}
	}
	return nil
}
func (h countMsgs) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countMsgs) WithGroup(string) slog.Handler      { return h }

// unknownLanded counts the store's unknown outcomes and, of those, the
// ones that had landed.
func unknownLanded(unknown, landed *atomic.Int64) *slog.Logger {
	return slog.New(countMsgs{"outcome unknown": unknown, "had landed": landed})
}

// TestKillLeader kills the etcd leader during concurrent appends from three
// nodes: no append fails, the chain verifies, nothing is stored twice.
func TestKillLeader(t *testing.T) {
	c := cluster(t)
	var unknown, landed atomic.Int64
	st := nodesOn(t, c, freshPrefix(), 3, 0, unknownLanded(&unknown, &landed))
	stop := appendInBackground(st, 24)
	time.Sleep(time.Second)
	l, err := c.Leader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slowest.Store(0)
	killed := time.Now()
	l.Kill()
	t.Logf("killed the etcd leader %s", l.Name)
	time.Sleep(4 * time.Second) // the election and some appends after it
	ok, errs := stop()
	for _, err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	n := checkLog(t, st[0], ok)
	if n != len(ok) {
		t.Fatalf("the log holds %d records, %d appends succeeded (none failed)", n, len(ok))
	}
	t.Logf("%d appends from 3 nodes across the leader kill (%v ago), none failed; chain verifies, no duplicate; %d transactions of unknown outcome resolved (%d had landed); slowest append %v",
		n, time.Since(killed).Round(time.Millisecond), unknown.Load(), landed.Load(), time.Duration(slowest.Load()).Round(time.Millisecond))
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
}

// TestLoseQuorum kills two of three members: appends and Writable fail with
// wire.ErrStore within about RequestTimeout; the members come back and the
// same Store appends again.
func TestLoseQuorum(t *testing.T) {
	c := cluster(t)
	const timeout = 2 * time.Second
	st := nodes(t, c, 2, timeout)
	s := st[0]
	if err := s.Audit(storetest.Rec("sign", "before")); err != nil {
		t.Fatal(err)
	}
	leading, _, err := st[1].Lead(context.Background(), "node-b")
	if err != nil {
		t.Fatal(err)
	}
	c.Members[0].Kill()
	c.Members[1].Kill()
	lost := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	start := time.Now()
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := storetest.Rec("sign", "during")
			r.Detail = fmt.Sprint("during ", i)
			errs <- st[i%2].Audit(r)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		if !errors.Is(err, wire.ErrStore) {
			t.Fatalf("append without quorum = %v, want wire.ErrStore", err)
		}
	}
	t.Logf("appends without quorum failed after %v (RequestTimeout %v)", took.Round(time.Millisecond), timeout)
	if took > timeout+5*time.Second {
		t.Fatalf("appends without quorum took %v to fail (RequestTimeout %v): they hang", took, timeout)
	}
	if err := s.Writable(); !errors.Is(err, wire.ErrStore) {
		t.Fatalf("Writable without quorum = %v, want wire.ErrStore", err)
	}
	if _, err := s.GetKey("k"); !errors.Is(err, wire.ErrStore) {
		t.Fatalf("GetKey without quorum = %v, want wire.ErrStore", err)
	}
	// The scheduler's leader stops leading: its session cannot be kept alive.
	select {
	case <-leading.Done():
		t.Logf("the leader stopped leading %v after quorum was lost (session TTL %v)", time.Since(lost).Round(time.Millisecond), etcdstore.SessionTTL)
	case <-time.After(etcdstore.SessionTTL + 10*time.Second):
		t.Fatalf("node-b still leads %v after quorum was lost", time.Since(lost))
	}
	for _, m := range c.Members[:2] {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	// The same Stores append again, without reopening (a cluster just
	// back may still be electing: one RequestTimeout covers it).
	for _, s := range st {
		r := storetest.Rec("sign", "after")
		if err := s.Audit(r); err != nil {
			t.Fatalf("%s: append after quorum returned: %v", s.Node(), err)
		}
	}
	if err := s.Writable(); err != nil {
		t.Fatalf("Writable after quorum returned: %v", err)
	}
	t.Logf("appends resumed %v after the members answered healthy", time.Since(back).Round(time.Millisecond))
	storetest.Sync(t, s) // the sequencer's election recovers too (its stale lease revoked)
	t.Logf("every acknowledged record chained %v after the members answered healthy", time.Since(back).Round(time.Millisecond))
	// A new leader is elected once the old session's lease has lapsed.
	lctx, lcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer lcancel()
	if _, resign, err := st[0].Lead(lctx, "node-a"); err != nil {
		t.Fatalf("Lead after quorum returned: %v", err)
	} else {
		t.Logf("node-a leads %v after the members answered healthy", time.Since(back).Round(time.Millisecond))
		resign()
	}
	n := checkLog(t, s, nil) // verifies, and no record stored twice
	var during int
	for _, r := range storetest.All(t, s) {
		if r.Key == "during" {
			during++
		}
	}
	t.Logf("log: %d records (%d of the 8 appends that failed during the outage landed later, as the package doc warns)", n, during)
}

// TestMemberChurn kills and restarts etcd members one at a time (the
// leader twice) under concurrent appends from three nodes: no append
// fails, every transaction of unknown outcome is resolved without a lost
// or duplicated record.
func TestMemberChurn(t *testing.T) {
	c := cluster(t)
	var unknown, landed atomic.Int64
	st := nodesOn(t, c, freshPrefix(), 3, 0, unknownLanded(&unknown, &landed))
	stop := appendInBackground(st, 24)
	ctx := context.Background()
	for round := range 3 {
		time.Sleep(500 * time.Millisecond)
		var m *etcdlocal.Member
		var err error
		if round == 1 {
			m, err = c.Follower(ctx)
		} else {
			m, err = c.Leader(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		m.Kill()
		time.Sleep(2500 * time.Millisecond)
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err = c.WaitHealthy(wctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed and restarted %s", round, m.Name)
	}
	time.Sleep(time.Second)
	ok, errs := stop()
	for _, err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	if n := checkLog(t, st[1], ok); n != len(ok) {
		t.Fatalf("the log holds %d records, %d appends succeeded (none failed)", n, len(ok))
	}
	t.Logf("%d appends from 3 nodes across 3 member kills (2 leaders), none failed, chain verifies, no duplicate; %d transactions of unknown outcome resolved (%d of them had landed)",
		len(ok), unknown.Load(), landed.Load())
}

// Closing a Store mid-append answers every caller; nothing hangs.
func TestCloseDuringAppends(t *testing.T) {
	c := cluster(t)
	s := open(t, c, "node-a", freshPrefix(), 0)
	stop := make(chan struct{})
	done := make(chan []error)
	go func() {
		_, errs := appendAll([]*etcdstore.Store{s}, 16, 0, stop)
		done <- errs
	}()
	time.Sleep(300 * time.Millisecond)
	s.Close()
	close(stop)
	select {
	case errs := <-done:
		for _, err := range errs {
			if !errors.Is(err, wire.ErrStore) {
				t.Fatalf("append on a closing store = %v, want wire.ErrStore", err)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("appends hang after Close")
	}
}

// The cluster interfaces of a closed Store fail with wire.ErrStore (or
// return, for the feed) without hanging.
func TestClosedClusterCalls(t *testing.T) {
	c := cluster(t)
	s := open(t, c, "node-a", freshPrefix(), 0)
	s.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx := context.Background()
		cs := s.Confirmations()
		calls := map[string]error{}
		_, calls["Confirm.Open"] = cs.Open(ctx, &keysvc.ConfirmRecord{View: wire.ConfirmationView{ID: "x", Key: "k"}}, time.Second)
		_, calls["Confirm.Get"] = cs.Get(ctx, "x")
		_, calls["Confirm.ByHolder"] = cs.ByHolder(ctx, "h")
		_, calls["Confirm.Update"] = cs.Update(ctx, "x", func(*keysvc.ConfirmRecord) error { return nil })
		calls["Confirm.Wait"] = cs.Wait(ctx, "x")
		_, calls["Confirm.Pending"] = cs.Pending(ctx)
		_, calls["PIN.Get"] = s.PINCounters().Get("id")
		calls["PIN.Update"] = s.PINCounters().Update("id", func(*token.PINState) error { return nil })
		calls["PIN.Record"] = s.PINCounters().Record(token.Event{Token: "id", Kind: "locked"})
		_, calls["PIN.Events"] = s.PINCounters().Events("id")
		_, _, calls["Lead"] = s.Lead(ctx, "node-a")
		for name, err := range calls {
			if !errors.Is(err, wire.ErrStore) {
				t.Errorf("%s on a closed store = %v, want wire.ErrStore", name, err)
			}
		}
		s.WatchKeys(ctx, func(*keysvc.Key) {}, func() {}) // returns at once
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("calls on a closed store hang")
	}
}

// TestWatchKeysCompacted: node B's key feed loses its member while node A
// changes a key and compacts etcd's history past what B saw; when B's
// member returns, the feed cannot resume, so it calls reset and follows
// the key again from a new consistent read.
func TestWatchKeysCompacted(t *testing.T) {
	c := cluster(t)
	p := freshPrefix()
	tlsCfg, err := c.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	// A talks to members 1 and 2; B only to member 0.
	a, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: []string{c.Members[1].ClientURL, c.Members[2].ClientURL},
		TLS: tlsCfg.Clone(), Prefix: p, Node: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: []string{c.Members[0].ClientURL}, TLS: tlsCfg.Clone(), Prefix: p, Node: "node-b"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.CreateKey(storetest.Key("w"), storetest.Rec("create", "w")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan uint64, 100)
	var resets atomic.Int64
	go b.WatchKeys(ctx, func(k *keysvc.Key) { got <- k.Revision }, func() { resets.Add(1) })
	for resets.Load() == 0 { // the feed's start
		time.Sleep(10 * time.Millisecond)
	}
	bump := func() uint64 {
		t.Helper()
		k, err := a.UpdateKey("w", func(k *keysvc.Key) error { k.Revision++; return nil }, storetest.Rec("update", "w"))
		if err != nil {
			t.Fatal(err)
		}
		return k.Revision
	}
	if r := bump(); <-got != r {
		t.Fatal("the feed missed an update with no fault")
	}
	c.Members[0].Kill()
	for range 5 {
		bump()
	}
	compactAll(t, a)
	if err := c.Members[0].Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for resets.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the feed did not reset after its history was compacted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Drain what it delivered meanwhile, then it must follow again.
	time.Sleep(500 * time.Millisecond)
	for len(got) > 0 {
		<-got
	}
	want := bump()
	select {
	case r := <-got:
		if r != want {
			t.Fatalf("after the reset the feed delivered revision %d, want %d", r, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the feed did not follow the key after its reset")
	}
	t.Logf("the feed reset %d time(s) and follows again", resets.Load())
}

// TestWatchKeysFirstReset: the feed's first reset comes after the read
// that fixes its watch's start, so a put another node makes as soon as the
// caller may cache (inside reset, before the watch is even created) is
// delivered, not lost between the node's start and its feed's.
func TestWatchKeysFirstReset(t *testing.T) {
	c := cluster(t)
	st := nodes(t, c, 2, 0)
	a, b := st[0], st[1]
	if err := a.CreateKey(storetest.Key("w"), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan uint64, 10)
	var resets atomic.Int64
	putErr := make(chan error, 1)
	go b.WatchKeys(ctx, func(k *keysvc.Key) { got <- k.Revision }, func() {
		if resets.Add(1) != 1 {
			return
		}
		// The caller starts caching now: another node's change made now
		// must reach it.
		_, err := a.UpdateKey("w", func(k *keysvc.Key) error { k.Revision = 7; return nil }, storetest.Rec("update", "w"))
		putErr <- err
	})
	select {
	case err := <-putErr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the feed never called reset")
	}
	select {
	case r := <-got:
		if r != 7 {
			t.Fatalf("the feed delivered revision %d, want 7", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a put made right after the feed's first reset was lost")
	}
	if n := resets.Load(); n != 1 {
		t.Fatalf("the feed reset %d times, want once", n)
	}
}
