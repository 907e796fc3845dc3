package alertwebhook_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/auth"
	"github.com/keyward/keyward/banking/auth/alertwebhook"
)

// receiver is a loopback HTTPS server that records the bodies it gets and
// answers with status(n) for the n-th request (from 1).
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	n      atomic.Int32
}

func newReceiver(t *testing.T, status func(n int32) int, block chan struct{}) *receiver {
	r := &receiver{}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n := r.n.Add(1)
		if block != nil {
			<-block
		}
		b, _ := io.ReadAll(req.Body)
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.bodies = append(r.bodies, b)
		r.mu.Unlock()
		w.WriteHeader(status(n))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(r.srv.Certificate())
	return p
}

var lock = auth.Event{Kind: auth.KindAccountLocked, Account: "ana.li", IP: "198.51.100.7", Count: 5,
	Time: time.Date(2026, 12, 7, 5, 15, 0, 0, time.UTC), Until: time.Date(2026, 12, 7, 5, 30, 0, 0, time.UTC)}

func ok(int32) int { return http.StatusNoContent }

func TestDelivers(t *testing.T) {
	r := newReceiver(t, ok, nil)
	var logs bytes.Buffer
	w, err := alertwebhook.New(alertwebhook.Config{URL: r.srv.URL + "/alerts", RootCAs: r.pool(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	w.Alert(context.Background(), lock)
	w.Alert(context.Background(), auth.Event{Kind: auth.KindOTPLocked, Account: "c123", Count: 5, Time: lock.Time})
	w.Close()
	if s := w.Stats(); s.Sent != 2 || s.Dropped != 0 {
		t.Fatalf("stats %+v; log %s", s, logs.String())
	}
	var got []map[string]any
	for _, b := range r.bodies {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	want0 := map[string]any{"kind": "account-locked", "account": "ana.li", "source": "198.51.100.7", "count": float64(5),
		"until": "2026-12-07T05:30:00Z", "time": "2026-12-07T05:15:00Z"}
	if len(got) != 2 || len(got[0]) != len(want0) {
		t.Fatalf("bodies %v", got)
	}
	for k, v := range want0 {
		if got[0][k] != v {
			t.Errorf("%s = %v, want %v", k, got[0][k], v)
		}
	}
	if _, has := got[1]["until"]; has || got[1]["kind"] != "otp-locked" {
		t.Errorf("second event %v", got[1])
	}
}

func TestRetriesThenDelivers(t *testing.T) {
	r := newReceiver(t, func(n int32) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}, nil)
	w, err := alertwebhook.New(alertwebhook.Config{URL: r.srv.URL, RootCAs: r.pool(), Backoff: time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	w.Alert(context.Background(), lock)
	w.Close()
	if s := w.Stats(); s.Sent != 1 || s.Retried != 2 || s.Dropped != 0 || r.n.Load() != 3 {
		t.Fatalf("stats %+v after %d requests", s, r.n.Load())
	}
}

func TestDropsAfterRetries(t *testing.T) {
	r := newReceiver(t, func(int32) int { return http.StatusInternalServerError }, nil)
	var logs bytes.Buffer
	w, err := alertwebhook.New(alertwebhook.Config{URL: r.srv.URL, RootCAs: r.pool(), Retries: 2, Backoff: time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	w.Alert(context.Background(), lock)
	w.Close()
	if s := w.Stats(); s.Sent != 0 || s.Dropped != 1 || r.n.Load() != 3 {
		t.Fatalf("stats %+v after %d requests", s, r.n.Load())
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "account=ana.li") || !strings.Contains(l, "500") {
		t.Errorf("drop not logged with the event: %s", l)
	}
}

// TestNeverBlocks: while the receiver hangs, Alert returns at once; what
// the queue cannot hold is dropped and counted.
func TestNeverBlocks(t *testing.T) {
	block := make(chan struct{})
	r := newReceiver(t, ok, block)
	w, err := alertwebhook.New(alertwebhook.Config{URL: r.srv.URL, RootCAs: r.pool(), QueueSize: 2, Timeout: 10 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		for range 10 {
			w.Alert(context.Background(), lock)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Alert blocked on a hanging receiver")
	}
	if d := w.Stats().Dropped; d < 7 {
		t.Errorf("%d dropped with a queue of 2 and the sender busy, want at least 7", d)
	}
	close(block)
	w.Close()
	if s := w.Stats(); s.Sent+s.Dropped != 10 {
		t.Errorf("stats %+v: every event is sent or dropped", s)
	}
}

// TestUntrustedReceiver: a receiver whose certificate the configured CA
// did not sign gets nothing; the event is dropped.
func TestUntrustedReceiver(t *testing.T) {
	r := newReceiver(t, ok, nil)
	w, err := alertwebhook.New(alertwebhook.Config{URL: r.srv.URL, RootCAs: x509.NewCertPool(), Retries: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	w.Alert(context.Background(), lock)
	w.Close()
	if s := w.Stats(); s.Sent != 0 || s.Dropped != 1 || len(r.bodies) != 0 {
		t.Fatalf("stats %+v, bodies %d", s, len(r.bodies))
	}
}

func TestRefusesPlainHTTP(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:9/alerts", "https://user:pw@host/x", "not a url", ""} {
		if _, err := alertwebhook.New(alertwebhook.Config{URL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}
