package pglocal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStartFailureCarriesLog: a server that cannot start fails with
// ErrServer and the reason from its log, as soon as the postmaster exits (not at the start
// timeout), and leaves nothing running.
func TestStartFailureCarriesLog(t *testing.T) {
	if _, err := Bin("postgres"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	acct, err := serverAccount()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := acct.own(dir); err != nil {
		t.Fatal(err)
	}
	s := newServer("broken", filepath.Join(dir, "no-such-data"), acct, t.Logf)
	if s.Port, err = freePort(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.Start(context.Background())
	if !errors.Is(err, ErrServer) {
		t.Fatalf("Start on a missing data directory: %v, want ErrServer", err)
	}
	if !strings.Contains(err.Error(), "no-such-data") || !strings.Contains(err.Error(), "last lines of") {
		t.Fatalf("error lacks the log's reason: %v", err)
	}
	if !strings.Contains(err.Error(), "exited while starting") {
		t.Fatalf("the postmaster's exit was not noticed (waited %v for the start timeout instead): %v", time.Since(start), err)
	}
	if s.Running() || s.PID() != 0 {
		t.Fatal("a failed server is still running")
	}
}
