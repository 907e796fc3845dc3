package etcdstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyward/keyward/keysvc/etcdstore"
	"github.com/keyward/keyward/keysvc/storetest"
	"github.com/keyward/keyward/keysvc/wire"
)

// headNode reads which node chained the head (audit/head's node).
func headNode(t *testing.T, s *etcdstore.Store, prefix string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g, err := s.Client().Get(ctx, prefix+"audit/head")
	if err != nil || len(g.Kvs) != 1 {
		t.Fatalf("read audit/head: %v (%d keys)", err, len(g.Kvs))
	}
	var h struct{ Node string }
	if err := json.Unmarshal(g.Kvs[0].Value, &h); err != nil {
		t.Fatal(err)
	}
	return h.Node
}

// TestSequencerFailover closes the node that sequences while three nodes
// append: another node takes the sequencer's election and chains from the
// head's cursor on — every acknowledged record (those acknowledged by the
// closed node included) is chained exactly once, no gap.
func TestSequencerFailover(t *testing.T) {
	c := cluster(t)
	p := freshPrefix()
	st := nodesOn(t, c, p, 3, 0, nil)
	if err := st[0].Audit(storetest.Rec("sign", "first")); err != nil {
		t.Fatal(err)
	}
	storetest.Sync(t, st[0])
	seqNode := headNode(t, st[0], p)
	var victim *etcdstore.Store
	var rest []*etcdstore.Store
	for _, s := range st {
		if s.Node() == seqNode {
			victim = s
		} else {
			rest = append(rest, s)
		}
	}
	if victim == nil {
		t.Fatalf("no store is named %q, the node in audit/head", seqNode)
	}
	stop := appendInBackground(st, 24)
	time.Sleep(time.Second)
	closed := time.Now()
	if err := victim.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	ok, errs := stop()
	for _, err := range errs {
		// Only the closed node's own callers may fail, and only as closed.
		if !errors.Is(err, etcdstore.ErrClosed) || !errors.Is(err, wire.ErrStore) {
			t.Errorf("append failed other than on the closed node: %v", err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	n := checkLog(t, rest[0], ok) // SyncAudit: the new sequencer chained everything
	if now := headNode(t, rest[0], p); now == seqNode {
		t.Fatalf("the head is still chained by %s, which was closed", now)
	} else {
		t.Logf("sequencer %s closed under appends; %s took over; %d records chained (%d acknowledged, %d refused as closed), no gap, no duplicate; %v from the close to the end",
			seqNode, now, n, len(ok), len(errs), time.Since(closed).Round(time.Millisecond))
	}
	if n < len(ok) {
		t.Fatalf("%d records chained, %d acknowledged", n, len(ok))
	}
}

// TestInboxCleanup: chained inbox entries are deleted once they are older
// than the keep time; the chain stays whole; entries not yet chained
// would stay (they are never in the cleaner's queue).
func TestInboxCleanup(t *testing.T) {
	c := cluster(t)
	p := freshPrefix()
	st := []*etcdstore.Store{open(t, c, "node-a", p, 0), open(t, c, "node-b", p, 0)}
	for _, s := range st {
		etcdstore.SetInboxKeep(s, time.Second)
	}
	ok, errs := appendAll(st, 16, 20, nil)
	for _, err := range errs {
		t.Fatal(err)
	}
	storetest.Sync(t, st[0])
	count := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g, err := st[0].Client().Get(ctx, p+"audit/in/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return g.Count
	}
	n0 := count()
	if n0 == 0 {
		t.Fatal("no inbox entry right after the appends: entries are deleted before they are a second old")
	}
	deadline := time.Now().Add(15 * time.Second)
	for count() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d chained inbox entries still there 15 s after their chaining (keep 1 s)", count())
		}
		time.Sleep(200 * time.Millisecond)
	}
	deleted := etcdstore.InboxDeleted(st[0]) + etcdstore.InboxDeleted(st[1])
	if deleted < n0 {
		t.Fatalf("the sequencers deleted %d inbox entries, %d were there after the appends", deleted, n0)
	}
	if n := checkLog(t, st[1], ok); n != len(ok) {
		t.Fatalf("the log holds %d records after the clean-up, want %d", n, len(ok))
	}
	t.Logf("%d records in %d inbox entries (one per node transaction) chained and deleted; the chain verifies", len(ok), deleted)
}

// countMsg counts log messages containing a text.
// TestSequencerCompacted: the sequencer's member is killed while another
// node appends and etcd's history is compacted past the sequencer's
// cursor; when the member returns, the sequencer's watch cannot resume, so
// it reads the inbox instead (or another node has taken over): every
// acknowledged record is chained once, and the sequencer does not fall
// into re-reading the inbox over and over once nothing is waiting.
func TestSequencerCompacted(t *testing.T) {
	c := cluster(t)
	p := freshPrefix()
	tlsCfg, err := c.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	var compactions atomic.Int64
	seq, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: []string{c.Members[0].ClientURL}, TLS: tlsCfg.Clone(),
		Prefix: p, Node: "node-seq", Logger: slog.New(countMsgs{"history compacted": &compactions})})
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Close()
	if err := seq.Audit(storetest.Rec("sign", "first")); err != nil {
		t.Fatal(err)
	}
	storetest.Sync(t, seq) // seq alone: it sequences
	a, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: []string{c.Members[1].ClientURL, c.Members[2].ClientURL},
		TLS: tlsCfg.Clone(), Prefix: p, Node: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ok := map[string]uint64{}
	appendA := func(what string, n int) {
		t.Helper()
		for i := range n {
			r := storetest.Rec("sign", "k")
			r.Detail = fmt.Sprintf("%s %d", what, i)
			if err := a.Audit(r); err != nil {
				t.Fatal(err)
			}
			ok[r.Detail] = 0
		}
	}
	appendA("before", 5)
	storetest.Sync(t, a)
	c.Members[0].Kill()
	appendA("while the sequencer's member is down", 10)
	// Writes that are not appends (here the readiness probe) move the
	// revision past the newest inbox entry: the compaction then passes
	// the cursor even once every entry is chained.
	for range 3 {
		if err := a.Writable(); err != nil {
			t.Fatal(err)
		}
	}
	compactAll(t, a)
	if err := c.Members[0].Start(); err != nil {
		t.Fatal(err)
	}
	storetest.Sync(t, a) // the entries appended while it was down are chained
	// Nothing waits now: a sequencer that re-read the inbox after every
	// compacted watch would log it about once a second.
	before := compactions.Load()
	time.Sleep(5 * time.Second)
	if n := compactions.Load() - before; n > 1 {
		t.Fatalf("the sequencer read the inbox for a compacted history %d more times in 5 s with nothing to chain", n)
	}
	appendA("after", 5)
	if n := checkLog(t, a, ok); n != 1+len(ok) {
		t.Fatalf("the log holds %d records, want %d", n, 1+len(ok))
	}
	if err := seq.Audit(storetest.Rec("sign", "last")); err != nil {
		t.Fatal(err)
	}
	storetest.Sync(t, seq)
	t.Logf("%d records chained once across the compaction; the sequencer read the inbox %d time(s) for a compacted history; the head is chained by %s",
		1+len(ok), compactions.Load(), headNode(t, a, p))
}

// TestSequencersRace runs two more sequencers beside the elected one, with
// no election — as a sequencer whose leadership moved while its batch was
// in flight — under appends from three nodes, with chained entries
// deleted at once: no entry is chained twice and none is skipped. (Racing
// sequencers that see the same inbox write the same records: sealing is a
// function of the inbox's commit order. What stops a sequencer whose view
// is stale is the compare on the head: TestChainStaleHead.)
func TestSequencersRace(t *testing.T) {
	c := cluster(t)
	st := nodes(t, c, 3, 0)
	for _, s := range st { // chained entries go at once: a stale sequencer finds them gone
		etcdstore.SetInboxKeep(s, time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	for _, s := range st[1:] {
		go func() { etcdstore.RunSequencer(s, ctx); done <- struct{}{} }()
	}
	ok, errs := appendAll(st, 48, 40, nil)
	for _, err := range errs {
		t.Fatal(err)
	}
	n := checkLog(t, st[0], ok)
	cancel()
	<-done
	<-done
	if n != len(ok) {
		t.Fatalf("the log holds %d records, %d appends succeeded", n, len(ok))
	}
	t.Logf("%d records from 3 nodes chained by 3 racing sequencers: once each, no gap", n)
}
