package etcdstore_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/etcdstore"
	"github.com/keyward/keyward/keysvc/storetest"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
)

// cutProxy is a TCP proxy in front of one real etcd member that, when
// armed, lets one write request through (client bytes of at least
// minRequest), holds what the member sends back until applyWait after it,
// and drops the connection unanswered — so the member applied the write but
// the client never hears it: a write of unknown outcome that did land, which killing a
// member only produces by luck.
type cutProxy struct {
	ln     net.Listener
	target string
	state  atomic.Int32 // 0 pass, 1 armed, 2 request seen: cut at the answer
	seen   atomic.Int64 // when the request was seen (UnixNano)
	cuts   atomic.Int64
}

const (
	minRequest = 200                    // a Txn carrying a record or a key (500+ bytes); reads, pings and window updates are under 150
	applyWait  = 300 * time.Millisecond // a loopback cluster applies a write in a few ms
)

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.handle(c)
		}
	}()
	return p
}

func (p *cutProxy) url() string { return "https://" + p.ln.Addr().String() }

func (p *cutProxy) handle(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	var once sync.Once
	closeBoth := func() { once.Do(func() { c.Close(); s.Close() }) }
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n >= minRequest && p.state.Load() == 1 {
				p.seen.Store(time.Now().UnixNano())
				p.state.Store(2)
			}
			if n > 0 {
				if _, werr := s.Write(buf[:n]); werr != nil {
					closeBoth()
					return
				}
			}
			if err != nil {
				closeBoth()
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 && p.state.Load() == 2 {
			// Hold whatever the member sends after the request (a ping
			// ack may come before the answer) until it surely applied the
			// write, then drop the connection unanswered.
			time.Sleep(time.Until(time.Unix(0, p.seen.Load()).Add(applyWait)))
			if p.state.CompareAndSwap(2, 0) {
				p.cuts.Add(1)
				closeBoth()
				return
			}
		}
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				closeBoth()
				return
			}
		}
		if err != nil {
			closeBoth()
			return
		}
	}
}

// TestUnknownOutcomeLanded drops the connection after etcd applied a write
// and before the client hears the answer, for every kind of write the store
// makes: each call succeeds, and its effect is there exactly once.
func TestUnknownOutcomeLanded(t *testing.T) {
	c := cluster(t)
	p := newCutProxy(t, strings.TrimPrefix(c.Members[0].ClientURL, "https://"))
	tlsCfg, err := c.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	var unknown, landed atomic.Int64
	p0 := freshPrefix()
	open := func() *etcdstore.Store {
		s, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: []string{p.url()}, TLS: tlsCfg.Clone(),
			Prefix: p0, Node: "node-a", Logger: unknownLanded(&unknown, &landed)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	// The sequencer is another node talking to etcd directly: it leads
	// before s opens (s only follows its election), so the only writes
	// through the proxy are s's own.
	seqr := openLog(t, c, "node-seq", p0, 0, slog.New(slog.DiscardHandler))
	if err := seqr.Audit(storetest.Rec("sign", "sequencer")); err != nil {
		t.Fatal(err)
	}
	storetest.Sync(t, seqr)
	s := open()
	if err := s.CreateKey(storetest.Key("k"), storetest.Rec("create", "k")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().UTC()
	if _, err := s.Confirmations().Open(ctx, &keysvc.ConfirmRecord{View: wire.ConfirmationView{ID: "cf_1", Key: "k",
		Status: wire.ConfirmPending, ExpiresAt: now.Add(time.Minute)}, Holder: "h"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	revision := func() uint64 {
		k, err := s.GetKey("k")
		if err != nil {
			t.Fatal(err)
		}
		return k.Revision
	}
	cases := []struct {
		name string
		op   func() error
	}{
		{"Audit", func() error { return s.Audit(storetest.Rec("sign", "k")) }},
		{"UpdateKeyAudited", func() error {
			_, err := s.UpdateKey("k", func(k *keysvc.Key) error { k.Revision++; return nil }, storetest.Rec("update", "k"))
			return err
		}},
		{"UpdateKeyUnaudited", func() error {
			_, err := s.UpdateKey("k", func(k *keysvc.Key) error { k.Revision++; return nil }, nil)
			return err
		}},
		{"CreateKeyUnaudited", func() error { return s.CreateKey(storetest.Key("k2"), nil) }},
		{"PINUpdate", func() error {
			return s.PINCounters().Update("tok/user", func(st *token.PINState) error { st.Failures++; return nil })
		}},
		{"ConfirmUpdate", func() error {
			_, err := s.Confirmations().Update(ctx, "cf_1", func(r *keysvc.ConfirmRecord) error {
				r.View.Reason += "x"
				return nil
			})
			return err
		}},
	}
	startRev := revision()
	for _, tc := range cases {
		before := p.cuts.Load()
		p.state.Store(1)
		if err := tc.op(); err != nil {
			t.Fatalf("%s across a dropped answer: %v", tc.name, err)
		}
		p.state.Store(0)
		if p.cuts.Load() != before+1 {
			t.Fatalf("%s: the proxy did not cut the connection (the fault was not injected)", tc.name)
		}
	}
	if got := revision(); got != startRev+2 {
		t.Fatalf("key revision after two updates across dropped answers = %d, want %d (an update applied twice or lost)", got, startRev+2)
	}
	if st, _ := s.PINCounters().Get("tok/user"); st.Failures != 1 {
		t.Fatalf("PIN failures after one counted attempt across a dropped answer = %d, want 1", st.Failures)
	}
	if r, _ := s.Confirmations().Get(ctx, "cf_1"); r == nil || r.View.Reason != "x" {
		t.Fatalf("confirmation after one update across a dropped answer = %+v", r)
	}
	if _, err := s.GetKey("k2"); err != nil {
		t.Fatalf("k2 after its create across a dropped answer: %v", err)
	}
	n := checkLog(t, s, nil)
	if n != 4 {
		t.Fatalf("the log holds %d records, want 4 (the sequencer's, create, sign, update): a record lost or duplicated", n)
	}
	t.Logf("%d cuts; the flusher saw %d transactions of unknown outcome, %d had landed", p.cuts.Load(), unknown.Load(), landed.Load())
	if landed.Load() < 2 {
		t.Fatalf("the flusher resolved %d landed transactions, want 2 (Audit and the audited UpdateKey)", landed.Load())
	}
}
