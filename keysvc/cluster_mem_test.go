package keysvc_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token/memtoken"
	"github.com/keyward/keyward/token/txformat"
)

// These tests run several Services on ONE store, the way keysvc nodes
// share a clustered store (issue 16), at unit level: one bbolt handle
// shared by every Service stands in for the shared store, and test-only
// fakes stand in for its KeyFeed (fakeFeed: delivery under the test's
// control) and Elector (bothLead: every node is told it leads). The real
// shared store is keysvc/etcdstore, tested over real etcd there.

// fakeFeed is a KeyFeed whose deliveries the test controls: committed key
// records queue until deliver (or go out at once when auto).
type fakeFeed struct {
	mu     sync.Mutex
	auto   bool
	queue  []*keysvc.Key
	subs   []feedSub
	joined chan struct{}
}

type feedSub struct {
	put   func(*keysvc.Key)
	reset func()
}

func (f *fakeFeed) WatchKeys(ctx context.Context, put func(*keysvc.Key), reset func()) {
	f.mu.Lock()
	f.subs = append(f.subs, feedSub{put, reset})
	f.mu.Unlock()
	reset() // the watch has started (KeyFeed's contract)
	f.joined <- struct{}{}
	<-ctx.Done()
}

func (f *fakeFeed) committed(k *keysvc.Key) {
	f.mu.Lock()
	f.queue = append(f.queue, k.Clone())
	auto := f.auto
	f.mu.Unlock()
	if auto {
		f.deliver()
	}
}

// deliver sends every queued record to every subscriber, in commit order.
func (f *fakeFeed) deliver() {
	f.mu.Lock()
	q, subs := f.queue, f.subs
	f.queue = nil
	f.mu.Unlock()
	for _, k := range q {
		for _, s := range subs {
			s.put(k.Clone())
		}
	}
}

// drop forgets what is queued (a lost watch), so only reset can help.
func (f *fakeFeed) drop() { f.mu.Lock(); f.queue = nil; f.mu.Unlock() }

func (f *fakeFeed) reset() {
	f.mu.Lock()
	subs := f.subs
	f.mu.Unlock()
	for _, s := range subs {
		s.reset()
	}
}

// bothLead is an Elector that tells every node it leads at once; the
// test takes leadership away with depose.
type bothLead struct {
	leads   atomic.Int32
	resigns atomic.Int32
	mu      sync.Mutex
	cancels []context.CancelFunc
}

func (e *bothLead) Lead(ctx context.Context, node string) (context.Context, func(), error) {
	e.leads.Add(1)
	leading, cancel := context.WithCancel(ctx)
	e.mu.Lock()
	e.cancels = append(e.cancels, cancel)
	e.mu.Unlock()
	return leading, func() { e.resigns.Add(1); cancel() }, nil
}

// depose ends every leadership granted so far (sessions expired).
func (e *bothLead) depose() {
	e.mu.Lock()
	cs := e.cancels
	e.cancels = nil
	e.mu.Unlock()
	for _, c := range cs {
		c()
	}
}

// recordingConfirms is a ConfirmStore that keeps every record written to
// it, to check what a clustered store would hold.
type recordingConfirms struct {
	keysvc.ConfirmStore
	mu      sync.Mutex
	written [][]byte // JSON of every record stored
}

func (r *recordingConfirms) keepJSON(c *keysvc.ConfirmRecord) {
	b, _ := json.Marshal(c)
	r.mu.Lock()
	r.written = append(r.written, b)
	r.mu.Unlock()
}

func (r *recordingConfirms) Open(ctx context.Context, rec *keysvc.ConfirmRecord, keep time.Duration) (*keysvc.ConfirmRecord, error) {
	r.keepJSON(rec)
	return r.ConfirmStore.Open(ctx, rec, keep)
}

func (r *recordingConfirms) Update(ctx context.Context, id string, fn func(*keysvc.ConfirmRecord) error) (*keysvc.ConfirmRecord, error) {
	out, err := r.ConfirmStore.Update(ctx, id, fn)
	if out != nil {
		r.keepJSON(out)
	}
	return out, err
}

// sharedStore is one store several Services share: a bbolt handle with a
// key feed, an election and a confirmation store beside it.
type sharedStore struct {
	*boltstore.Store
	feed     *fakeFeed
	elect    *bothLead
	confirms *recordingConfirms
}

var (
	_ keysvc.KeyFeed       = (*sharedStore)(nil)
	_ keysvc.Elector       = (*sharedStore)(nil)
	_ keysvc.ConfirmStorer = (*sharedStore)(nil)
)

func (s *sharedStore) CreateKey(k *keysvc.Key, rec *audit.Record) error {
	if err := s.Store.CreateKey(k, rec); err != nil {
		return err
	}
	s.feed.committed(k)
	return nil
}

func (s *sharedStore) UpdateKey(name string, fn func(k *keysvc.Key) error, rec *audit.Record) (*keysvc.Key, error) {
	k, err := s.Store.UpdateKey(name, fn, rec)
	if err == nil {
		s.feed.committed(k)
	}
	return k, err
}

func (s *sharedStore) WatchKeys(ctx context.Context, put func(*keysvc.Key), reset func()) {
	s.feed.WatchKeys(ctx, put, reset)
}

func (s *sharedStore) Lead(ctx context.Context, node string) (context.Context, func(), error) {
	return s.elect.Lead(ctx, node)
}

func (s *sharedStore) Confirmations() keysvc.ConfirmStore { return s.confirms }

// cluster is n Services ("nodes") on one sharedStore and one token.
type cluster struct {
	st      *sharedStore
	nodes   []*keysvc.Service
	clock   *memClock
	notices chan keysvc.HolderNotice
}

func newCluster(t *testing.T, n int, autoFeed bool) *cluster {
	t.Helper()
	bs, err := boltstore.Open(filepath.Join(t.TempDir(), "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{
		st: &sharedStore{Store: bs, feed: &fakeFeed{auto: autoFeed, joined: make(chan struct{}, n)}, elect: &bothLead{},
			confirms: &recordingConfirms{}},
		clock:   &memClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)},
		notices: make(chan keysvc.HolderNotice, 16),
	}
	c.st.confirms.ConfirmStore = keysvc.NewMemConfirmStoreForTest(c.clock.Now)
	tok := memtoken.New("mem", "0001")
	t.Cleanup(func() { bs.Close() })
	for i := 0; i < n; i++ {
		svc, err := keysvc.New(context.Background(), keysvc.Config{Keys: tok, Store: c.st, MinDestroyDelay: time.Hour, Now: c.clock.Now,
			Node: fmt.Sprintf("node-%c", 'a'+i), Notify: func(_ context.Context, hn keysvc.HolderNotice) error { c.notices <- hn; return nil }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(svc.Close)
		select { // New starts the feed; wait until it watches
		case <-c.st.feed.joined:
		case <-time.After(10 * time.Second):
			t.Fatal("the Service did not start the store's key feed")
		}
		c.nodes = append(c.nodes, svc)
	}
	return c
}

// auditRecords returns the shared log's records.
func (c *cluster) auditRecords(t *testing.T) []audit.Record {
	t.Helper()
	var out []audit.Record
	if err := c.st.AuditRecords(0, func(r audit.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func countAudit(recs []audit.Record, match func(audit.Record) bool) int {
	n := 0
	for _, r := range recs {
		if match(r) {
			n++
		}
	}
	return n
}

// TestClusterCacheFollowsFeed: node B's key cache takes node A's disable
// from the feed and refuses the version (before the feed delivers it, B
// still signs from its cache: the feed is what makes B refuse); a feed
// reset empties B's cache, so B sees a change the feed lost.
func TestClusterCacheFollowsFeed(t *testing.T) {
	c := newCluster(t, 2, false)
	a, b := c.nodes[0], c.nodes[1]
	ctx := context.Background()
	if _, err := a.CreateKey(ctx, officer, wire.CreateKeyRequest{Name: "k", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256,
		Protection: wire.ProtectionWrapped, Policy: wire.Policy{Grants: []wire.Grant{{Client: bank.Name, Ops: []wire.Op{wire.OpSign}}}}}); err != nil {
		t.Fatal(err)
	}
	c.st.feed.deliver()
	sign := func(svc *keysvc.Service) error {
		_, err := svc.Sign(ctx, bank, "k", wire.SignRequest{Message: wire.Base64("payment")})
		return err
	}
	if err := sign(b); err != nil { // B caches k
		t.Fatalf("B signs before the disable: %v", err)
	}
	if _, err := a.SetVersionState(ctx, officer, "k", 1, wire.ActionDisable, 0); err != nil {
		t.Fatal(err)
	}
	if err := sign(a); !errors.Is(err, wire.ErrVersionNotUsable) {
		t.Fatalf("A signs with the version it disabled: %v", err)
	}
	if err := sign(b); err != nil {
		t.Fatalf("B, before the feed delivers the disable, signs from its cache: want success (the lag), got %v", err)
	}
	c.st.feed.deliver()
	if err := sign(b); !errors.Is(err, wire.ErrVersionNotUsable) {
		t.Fatalf("B after the feed delivered A's disable: %v, want version_not_usable", err)
	}

	// A lost watch: A enables it again, the feed drops the record; B keeps
	// refusing from its cache until the feed resets.
	if _, err := a.SetVersionState(ctx, officer, "k", 1, wire.ActionEnable, 0); err != nil {
		t.Fatal(err)
	}
	c.st.feed.drop()
	if err := sign(b); !errors.Is(err, wire.ErrVersionNotUsable) {
		t.Fatalf("B before the reset: %v, want its cached refusal", err)
	}
	c.st.feed.reset()
	if err := sign(b); err != nil {
		t.Fatalf("B after a feed reset: %v, want it to read the store again and sign", err)
	}
}

// TestClusterSchedulerOnce: two nodes that both believe they lead run
// their schedulers at once (Run, plus concurrent Ticks); a due destruction
// and a due rotation each happen once: one audit record each, one new
// version.
func TestClusterSchedulerOnce(t *testing.T) {
	c := newCluster(t, 2, true)
	a := c.nodes[0]
	ctx := context.Background()
	grant := wire.Policy{Grants: []wire.Grant{{Client: bank.Name, Ops: []wire.Op{wire.OpSign}}}}
	for _, prot := range []wire.Protection{wire.ProtectionHSM, wire.ProtectionWrapped} {
		rot, del := "rot-"+string(prot), "del-"+string(prot)
		if _, err := a.CreateKey(ctx, officer, wire.CreateKeyRequest{Name: rot, Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256,
			Protection: prot, Policy: grant, RotationPeriod: wire.Duration(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.CreateKey(ctx, officer, wire.CreateKeyRequest{Name: del, Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256,
			Protection: prot, Policy: grant}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Rotate(ctx, officer, del); err != nil {
			t.Fatal(err)
		}
		if _, err := a.SetVersionState(ctx, officer, del, 1, wire.ActionScheduleDestroy, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	c.clock.Advance(90 * time.Minute) // both due

	// Every node ticks at once, several times.
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, svc := range c.nodes {
		wg.Add(1)
		go func(svc *keysvc.Service) { defer wg.Done(); svc.Run(runCtx, 5*time.Millisecond) }(svc)
	}
	start := make(chan struct{})
	var tickErrs []error
	var mu sync.Mutex
	var tw sync.WaitGroup
	for i := 0; i < 8; i++ {
		tw.Add(1)
		go func(svc *keysvc.Service) {
			defer tw.Done()
			<-start
			if err := svc.Tick(ctx); err != nil {
				mu.Lock()
				tickErrs = append(tickErrs, err)
				mu.Unlock()
			}
		}(c.nodes[i%2])
	}
	close(start)
	tw.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for c.st.elect.leads.Load() < 2 || !c.nodes[0].Stats().SchedulerLeader || !c.nodes[1].Stats().SchedulerLeader {
		if time.Now().After(deadline) {
			t.Fatal("Run did not campaign and lead on both nodes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a few more ticks on both
	stop()
	wg.Wait()
	for _, svc := range c.nodes {
		if svc.Stats().SchedulerLeader {
			t.Error("SchedulerLeader still true after Run returned")
		}
	}
	for _, err := range tickErrs {
		t.Errorf("a concurrent Tick reported: %v", err)
	}

	recs := c.auditRecords(t)
	for _, prot := range []wire.Protection{wire.ProtectionHSM, wire.ProtectionWrapped} {
		rot, del := "rot-"+string(prot), "del-"+string(prot)
		k, err := a.GetKey(ctx, officer, rot)
		if err != nil {
			t.Fatal(err)
		}
		if len(k.Versions) != 2 || k.Primary != 2 {
			t.Errorf("%s: %d versions, primary %d after one due rotation; want 2, 2", rot, len(k.Versions), k.Primary)
		}
		if n := countAudit(recs, func(r audit.Record) bool { return r.Key == rot && r.Op == "rotate" && r.Client == "scheduler" }); n != 1 {
			t.Errorf("%s: %d scheduler rotate records, want 1", rot, n)
		}
		d, err := a.GetKey(ctx, officer, del)
		if err != nil {
			t.Fatal(err)
		}
		if v := d.Version(1); v.State != wire.StateDestroyed {
			t.Errorf("%s v1: %s, want destroyed", del, v.State)
		}
		if n := countAudit(recs, func(r audit.Record) bool { return r.Key == del && r.Op == "destroy" }); n != 1 {
			t.Errorf("%s: %d destroy records, want 1", del, n)
		}
	}
	if n := countAudit(recs, func(r audit.Record) bool { return r.Client == "scheduler" && r.Result != "ok" }); n != 0 {
		t.Errorf("%d failed scheduler records; two nodes ticking at once must not fail", n)
	}
	if rep, err := a.VerifyAudit(); err != nil {
		t.Fatalf("audit chain: %v %+v", err, rep)
	}
}

func transfer(t *testing.T, nonce string) []byte {
	t.Helper()
	for len(nonce) < 16 {
		nonce += "0"
	}
	b, err := txformat.CanonicalJSON(txformat.Transfer{PayerAccount: "6222 0202 0011 2233 445", PayeeAccount: "6222 0200 1234 5678",
		PayeeName: "Li Lei", PayeeBank: "ICBC Beijing", Amount: "12.34", Currency: "CNY", Purpose: "invoice 42"}, "2026-11-28T10:00:00+08:00", nonce)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const memHolderPIN = "Kw-7391-safe"

// confirmKey creates a confirm-required key on svc and enrols its holder.
func (c *cluster) confirmKey(t *testing.T, svc *keysvc.Service, name string) {
	t.Helper()
	ctx := context.Background()
	k, err := svc.CreateKey(ctx, officer, wire.CreateKeyRequest{Name: name, Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256,
		Protection: wire.ProtectionWrapped, Confirm: wire.ConfirmRequired, Policy: wire.Policy{Grants: []wire.Grant{{Client: bank.Name, Ops: []wire.Op{wire.OpSign, wire.OpVerify}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Enrol(ctx, name, k.SetupCode(), []byte(memHolderPIN)); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) request(t *testing.T, svc *keysvc.Service, key string, msg []byte) (wire.ConfirmationView, keysvc.HolderNotice) {
	t.Helper()
	res, err := svc.Sign(context.Background(), bank, key, wire.SignRequest{Message: wire.Base64(msg)})
	if err != nil || res.Confirmation == nil || res.Confirmation.Status != wire.ConfirmPending {
		t.Fatalf("sign request on %s: %+v, %v; want a pending confirmation", key, res, err)
	}
	select {
	case n := <-c.notices:
		return *res.Confirmation, n
	case <-time.After(5 * time.Second):
		t.Fatal("no holder notice")
	}
	panic("unreachable")
}

// TestClusterConfirmAcrossNodes: a confirmation requested on node A is
// approved through node B and collected on node C; the signature verifies
// and is audited once. What the shared ConfirmStore ever held contains no
// clear transaction bytes (only the sealed form, dropped at the end).
func TestClusterConfirmAcrossNodes(t *testing.T) {
	c := newCluster(t, 3, true)
	a, b, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	ctx := context.Background()
	c.confirmKey(t, a, "cust-x")
	msg := transfer(t, "across-nodes")
	view, notice := c.request(t, a, "cust-x", msg)

	// Node C refuses a second request for the key: one pending per key,
	// cluster-wide.
	if _, err := n3.Sign(ctx, bank, "cust-x", wire.SignRequest{Message: wire.Base64(transfer(t, "second"))}); !errors.Is(err, wire.ErrConfirmationPending) {
		t.Fatalf("second request on node C: %v, want confirmation_pending", err)
	}
	// The holder reads it on node B and approves there.
	hv, err := b.HolderConfirmation(ctx, notice.HolderToken)
	if err != nil || hv.ID != view.ID || hv.Digest != view.Digest {
		t.Fatalf("holder view on B: %+v, %v", hv, err)
	}
	approved, err := b.Approve(ctx, notice.HolderToken, wire.ApproveRequest{Key: "cust-x", Digest: view.Digest, PIN: []byte(memHolderPIN)})
	if err != nil || approved.Status != wire.ConfirmApproved || approved.Signature != "" {
		t.Fatalf("approve on B: %+v, %v; want approved, signature withheld from the holder", approved, err)
	}
	// Approving again (on A) is refused: used once.
	if _, err := a.Approve(ctx, notice.HolderToken, wire.ApproveRequest{Key: "cust-x", Digest: view.Digest, PIN: []byte(memHolderPIN)}); !errors.Is(err, wire.ErrConfirmationClosed) {
		t.Fatalf("second approval on A: %v, want confirmation_closed", err)
	}
	// The requester collects on node C.
	got, err := n3.Confirmation(ctx, bank, view.ID, 0)
	if err != nil || got.Status != wire.ConfirmApproved || got.Signature == "" {
		t.Fatalf("collect on C: %+v, %v", got, err)
	}
	ok, err := n3.Verify(ctx, bank, "cust-x", wire.VerifyRequest{Message: wire.Base64(msg), Signature: got.Signature})
	if err != nil || !ok {
		t.Fatalf("the collected signature does not verify over the transaction: %v, %v", ok, err)
	}
	// Another client does not see it.
	if _, err := n3.Confirmation(ctx, intruder, view.ID, 0); !errors.Is(err, wire.ErrConfirmationNotFound) {
		t.Fatalf("intruder polls: %v", err)
	}
	recs := c.auditRecords(t)
	if n := countAudit(recs, func(r audit.Record) bool {
		return r.Op == "sign" && r.Result == "ok" && strings.Contains(r.Detail, "confirmation="+view.ID)
	}); n != 1 {
		t.Fatalf("%d sign records for %s, want 1", n, view.ID)
	}

	// The sealed bytes: nothing the store held carries the transaction in
	// clear (as bytes, or base64 in the record's JSON); the sealed form is
	// there while pending, and gone once ended.
	checkNoClearBytes(t, c.st.confirms, msg)
	final, _ := c.st.confirms.Get(ctx, view.ID)
	if final == nil || len(final.Sealed) != 0 {
		t.Fatalf("the ended record still holds its sealed bytes: %+v", final)
	}
}

// checkNoClearBytes fails if any record written to rc holds msg, or any
// 12-byte run of it in its sealed bytes.
func checkNoClearBytes(t *testing.T, rc *recordingConfirms, msg []byte) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	b64 := base64.StdEncoding.EncodeToString(msg)
	sealedSeen := 0
	for _, js := range rc.written {
		if bytes.Contains(js, msg) || bytes.Contains(js, []byte(b64)) {
			t.Fatalf("a stored confirmation record holds the clear transaction: %s", js)
		}
		var r keysvc.ConfirmRecord
		if err := json.Unmarshal(js, &r); err != nil {
			t.Fatal(err)
		}
		if len(r.Sealed) == 0 {
			continue
		}
		sealedSeen++
		for i := 0; i+12 <= len(msg); i++ {
			if bytes.Contains(r.Sealed, msg[i:i+12]) {
				t.Fatalf("the sealed bytes contain clear transaction bytes %q", msg[i:i+12])
			}
		}
		if len(r.Sealed) < len(msg)+16 {
			t.Fatalf("sealed bytes (%d) are shorter than the transaction (%d) plus a GCM tag", len(r.Sealed), len(msg))
		}
	}
	if sealedSeen == 0 {
		t.Fatal("no stored record held sealed bytes: the check checked nothing")
	}
}

// TestClusterConfirmSweep: the node that took a request is gone (Close
// leaves a clustered store's confirmations); at the timeout the
// scheduler's sweep on another node ends it "expired", audited once even
// when two nodes sweep; an approval whose node died while busy ends
// "failed" once its busy mark lapses.
func TestClusterConfirmSweep(t *testing.T) {
	c := newCluster(t, 3, true)
	a, b, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	ctx := context.Background()
	c.confirmKey(t, a, "cust-s")
	view, _ := c.request(t, a, "cust-s", transfer(t, "sweep-1"))
	a.Close() // a clustered store keeps its confirmations
	if r, _ := c.st.confirms.Get(ctx, view.ID); r == nil || !r.Pending() {
		t.Fatalf("after node A closed: %+v; want it still pending for the other nodes", r)
	}
	if err := b.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.st.confirms.Get(ctx, view.ID); r == nil || !r.Pending() {
		t.Fatalf("sweep before the timeout ended it: %+v", r)
	}
	c.clock.Advance(keysvc.DefaultConfirmTimeout + time.Second)
	var wg sync.WaitGroup
	for _, svc := range []*keysvc.Service{b, n3, b, n3} {
		wg.Add(1)
		go func(svc *keysvc.Service) { defer wg.Done(); _ = svc.Tick(ctx) }(svc)
	}
	wg.Wait()
	got, err := b.Confirmation(ctx, bank, view.ID, 0)
	if err != nil || got.Status != wire.ConfirmExpired {
		t.Fatalf("after the sweep: %+v, %v; want expired", got, err)
	}
	if n := countAudit(c.auditRecords(t), func(r audit.Record) bool {
		return r.Op == "confirm-expire" && r.Detail == "confirmation="+view.ID
	}); n != 1 {
		t.Fatalf("%d confirm-expire records, want exactly 1", n)
	}

	// An approval that died while busy: mark it busy as a node would, let
	// the bound lapse.
	view2, _ := c.request(t, b, "cust-s", transfer(t, "sweep-2"))
	busyUntil := c.clock.Now().Add(keysvc.ConfirmBusyBound)
	if _, err := c.st.confirms.Update(ctx, view2.ID, func(r *keysvc.ConfirmRecord) error {
		r.BusyUntil, r.BusyNode = busyUntil, "node-gone"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := n3.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.st.confirms.Get(ctx, view2.ID); r == nil || !r.Pending() {
		t.Fatalf("busy confirmation ended before its bound lapsed: %+v", r)
	}
	if _, err := n3.CancelConfirmation(ctx, bank, view2.ID); !errors.Is(err, wire.ErrConfirmationClosed) {
		t.Fatalf("cancel while busy: %v, want confirmation_closed", err)
	}
	c.clock.Advance(keysvc.ConfirmBusyBound + time.Second)
	if err := n3.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	got, err = n3.Confirmation(ctx, bank, view2.ID, 0)
	if err != nil || got.Status != wire.ConfirmFailed || got.Signature != "" {
		t.Fatalf("after the busy bound lapsed: %+v, %v; want failed, no signature", got, err)
	}
	if n := countAudit(c.auditRecords(t), func(r audit.Record) bool {
		return r.Op == "confirm-fail" && strings.HasPrefix(r.Detail, "confirmation="+view2.ID)
	}); n != 1 {
		t.Fatalf("%d confirm-fail records, want 1", n)
	}
}

// TestClusterRunStepsDown: Run ticks only while it leads; when leadership
// is lost it steps down (resign, SchedulerLeader false) and campaigns
// again; when ctx ends it gives leadership up.
func TestClusterRunStepsDown(t *testing.T) {
	c := newCluster(t, 1, true)
	svc, el := c.nodes[0], c.st.elect
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(ctx, 10*time.Millisecond) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitFor("the node leads", func() bool { return el.leads.Load() == 1 && svc.Stats().SchedulerLeader })
	el.depose()
	waitFor("it stepped down and campaigned again", func() bool { return el.resigns.Load() >= 1 && el.leads.Load() == 2 })
	waitFor("it leads again", func() bool { return svc.Stats().SchedulerLeader })
	stop()
	<-done
	if svc.Stats().SchedulerLeader || el.resigns.Load() != 2 {
		t.Fatalf("after Run returned: leader %v, %d resignations; want false, 2", svc.Stats().SchedulerLeader, el.resigns.Load())
	}
}

// TestClusterEnrolThenSignElsewhere: a holder enrols through node A and the
// bank's first payment reaches node B before the feed has delivered the
// enrolment (banking's client spreads requests over the nodes): B checks
// its cached "not enrolled" against the store and opens the confirmation.
// A holder that has really not enrolled is still refused.
func TestClusterEnrolThenSignElsewhere(t *testing.T) {
	c := newCluster(t, 2, false)
	a, b := c.nodes[0], c.nodes[1]
	ctx := context.Background()
	k, err := a.CreateKey(ctx, officer, wire.CreateKeyRequest{Name: "cust-e", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256,
		Protection: wire.ProtectionWrapped, Confirm: wire.ConfirmRequired, Policy: wire.Policy{Grants: []wire.Grant{{Client: bank.Name, Ops: []wire.Op{wire.OpSign}}}}})
	if err != nil {
		t.Fatal(err)
	}
	c.st.feed.deliver()
	msg := wire.Base64(transfer(t, "first-payment-0001"))
	if _, err := b.Sign(ctx, bank, "cust-e", wire.SignRequest{Message: msg}); !errors.Is(err, wire.ErrHolderNotEnrolled) {
		t.Fatalf("B before any enrolment: %v, want holder_not_enrolled", err) // and B has now cached "not enrolled"
	}
	if err := a.Enrol(ctx, "cust-e", k.SetupCode(), []byte(memHolderPIN)); err != nil {
		t.Fatal(err)
	}
	c.st.feed.drop() // the feed has not brought the enrolment to B
	res, err := b.Sign(ctx, bank, "cust-e", wire.SignRequest{Message: msg})
	if err != nil || res.Confirmation == nil || res.Confirmation.Status != wire.ConfirmPending {
		t.Fatalf("B right after A's enrolment: %+v, %v; want a pending confirmation", res, err)
	}
}
