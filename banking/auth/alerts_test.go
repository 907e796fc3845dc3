package auth_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/auth"
)

func TestLogAlertsCarriesTheSource(t *testing.T) {
	var buf bytes.Buffer
	la := auth.LogAlerts{Logger: slog.New(slog.NewTextHandler(&buf, nil))}
	la.Alert(context.Background(), auth.Event{Kind: auth.KindAccountLocked, Account: "alice",
		IP: "203.0.113.7", Time: time.Unix(0, 0), Count: 5, Until: time.Unix(900, 0)})
	out := buf.String()
	for _, want := range []string{"level=WARN", "kind=account-locked", "account=alice", "source=203.0.113.7", "count=5", "until="} {
		if !strings.Contains(out, want) {
			t.Errorf("log line %q lacks %q", out, want)
		}
	}
}

func TestSource(t *testing.T) {
	ctx := context.Background()
	if got := auth.Source(ctx); got != "" {
		t.Fatalf("no source: %q", got)
	}
	ctx = auth.WithSource(ctx, netip.MustParseAddr("2001:db8::7"))
	if got := auth.Source(ctx); got != "2001:db8::7" {
		t.Fatalf("Source = %q", got)
	}
}
