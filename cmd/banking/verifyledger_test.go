package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/banking/ledger"
)

// TestVerifyLedger: banking -config … -verify-ledger reads the configured
// store offline and prints the books' totals; a ledger whose records were
// altered fails with the verification's reason.
func TestVerifyLedger(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	l, err := ledger.Open(filepath.Join(dataDir, "bank.db"), ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.OpenAccount(ctx, ledger.OpenAccountRequest{Owner: "c1", Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Deposit(ctx, ledger.CashRequest{IdempotencyKey: "d1", Account: a.ID, Amount: 12345, Currency: "CNY", Memo: "cash"}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	conf := writeConfig(t, strings.Replace(validYAML, "data_dir: /var/lib/keyward-bank", "data_dir: "+dataDir, 1))
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg, err := loadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := runVerifyLedger(log, cfg, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "ledger ok (bbolt store") || !strings.Contains(got, "1 postings") ||
		!strings.Contains(got, "CNY: customers hold 123.45, all balances sum to 0") {
		t.Fatalf("report:\n%s", got)
	}
	if err := serve(log, []string{"-dev", "-verify-ledger", "-keysvc-dir", t.TempDir()}); err == nil {
		t.Fatal("-verify-ledger in dev mode was accepted")
	}
	// The same file with one byte of Alice's balance changed no longer verifies.
	path := filepath.Join(dataDir, "bank.db")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(raw, []byte(`"balance":12345`))
	if i < 0 {
		t.Skip("the entry's JSON is not stored in clear; nothing to alter")
	}
	copy(raw[i:], `"balance":12346`)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := runVerifyLedger(log, cfg, &out); err == nil || !strings.Contains(err.Error(), "ledger verification FAILED") {
		t.Fatalf("an altered ledger: err %v, output %s", err, out.String())
	}
}
