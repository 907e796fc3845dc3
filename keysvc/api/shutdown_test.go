package api_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/api"
)

// TestGracefulShutdown: a request in flight when Shutdown starts finishes
// and is answered; Shutdown waits for it; new connections are refused.
func TestGracefulShutdown(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	e.be.mu.Lock()
	e.be.block["Sign"] = release
	e.be.mu.Unlock()

	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("POST", e.url+"/v1/keys/k1/sign", strings.NewReader(`{"digest":"AAAA"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		resp, err := e.hc.Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{resp.StatusCode, string(b), err}
	}()
	select {
	case <-e.be.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("Sign never reached the backend")
	}

	srv := e.srv
	e.srv = nil // this test shuts down itself
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned before the in-flight request finished: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	// The listener is closed already.
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(e.url, "http://"), time.Second); err == nil {
		c.Close()
		t.Error("new connection accepted during shutdown")
	}

	close(release)
	r := <-got
	if r.err != nil || r.status != 200 || !strings.Contains(r.body, "kw:v1:") {
		t.Fatalf("in-flight request: %d %q %v", r.status, r.body, r.err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-e.done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	if err := srv.Serve(ln); !errors.Is(err, api.ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v", err)
	}
}

// TestShutdownDeadline: when the in-flight request outlasts the context,
// Shutdown returns the context's error.
func TestShutdownDeadline(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	defer close(release)
	e.be.mu.Lock()
	e.be.block["GetKey"] = release
	e.be.mu.Unlock()
	go func() {
		req, _ := http.NewRequest("GET", e.url+"/v1/keys/k1", nil)
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		if resp, err := e.hc.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-e.be.entered
	srv := e.srv
	e.srv = nil
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
}
