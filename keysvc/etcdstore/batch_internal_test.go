package etcdstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/etcdstore/etcdlocal"
)

// TestBatchEnd: a chaining batch takes whole revisions, up to maxChain
// records, and always at least one revision.
func TestBatchEnd(t *testing.T) {
	ev := func(rev int64, n int) inboxEvent { return inboxEvent{rev: rev, recs: make([]audit.Record, n)} }
	for _, tc := range []struct {
		name string
		evs  []inboxEvent
		want int
	}{
		{"one", []inboxEvent{ev(5, 3)}, 1},
		{"all fit", []inboxEvent{ev(5, 50), ev(6, 50), ev(9, 20)}, 3},
		{"stops before the revision that does not fit", []inboxEvent{ev(5, 60), ev(6, 50), ev(7, 11)}, 2},
		{"a revision's entries stay together", []inboxEvent{ev(5, 100), ev(6, 10), ev(6, 15)}, 1},
		{"an oversized first revision alone", []inboxEvent{ev(5, 100), ev(5, 100), ev(6, 1)}, 2},
	} {
		if got := batchEnd(tc.evs); got != tc.want {
			t.Errorf("%s: batchEnd = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestChainStaleHead: a sequencer whose cached head is stale (another one
// chained meanwhile) writes nothing: its transaction compares the head.
func TestChainStaleHead(t *testing.T) {
	c, err := etcdlocal.Start(context.Background(), etcdlocal.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	tlsCfg, err := c.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), Config{Endpoints: c.Endpoints(), TLS: tlsCfg, Prefix: "/stale/", Node: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := func(d string) *audit.Record {
		return &audit.Record{Time: time.Now(), Client: "c", Op: "sign", Result: "ok", Detail: d}
	}
	if err := s.Audit(rec("first")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.SyncAudit(ctx); err != nil {
		t.Fatal(err)
	}
	stale, err := s.readHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Audit(rec("second")); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncAudit(ctx); err != nil {
		t.Fatal(err)
	}
	now, _ := s.readHead(ctx)
	chained := make(chan []chainedKey, 1)
	h := stale
	err = s.chain(ctx, &h, []inboxEvent{{key: "rogue", rev: now.Cursor + 1000, recs: []audit.Record{*rec("rogue")}}}, chained)
	if !errors.Is(err, errLostHead) {
		t.Fatalf("chaining on a stale head = %v, want errLostHead", err)
	}
	after, _ := s.readHead(ctx)
	if after.rev != now.rev || after.Seq != 2 {
		t.Fatalf("a stale sequencer moved the head: %+v (was %+v)", after.headValue, now.headValue)
	}
	g, err := s.cli.Get(ctx, recKey(s.p, 2))
	if err != nil || len(g.Kvs) != 1 {
		t.Fatalf("record 2: %v", err)
	}
	if r, _ := audit.Unmarshal(g.Kvs[0].Value); r.Detail != "second" {
		t.Fatalf("record 2 is %q: a stale sequencer overwrote it", r.Detail)
	}
}
