package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/banking/auth/otp"
)

// Issue 12 item 8: the production path (a config file) has no file of
// one-time codes: no YAML turns the dev outbox on, and its gateway posts
// the text to the provider and keeps nothing; dev mode alone opens an
// outbox.
func TestProductionSMSKeepsNoCodeFile(t *testing.T) {
	if _, err := loadConfig(writeConfig(t, strings.Replace(validYAML, "sms: {gateway_url: https://sms-relay.bank.internal/send}",
		"sms: {outbox: /var/lib/keyward-bank/sms-outbox.jsonl}", 1))); err == nil || !strings.Contains(err.Error(), "for dev mode only") {
		t.Fatalf("a production config with an SMS outbox file: %v", err)
	}
	if _, err := loadConfig(writeConfig(t, strings.Replace(validYAML, "https://sms-relay", "http://sms-relay", 1))); err == nil || !strings.Contains(err.Error(), "sms.gateway_url") {
		t.Fatalf("plain http to a remote gateway: %v", err)
	}

	var got []string
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusAccepted)
	}))
	defer provider.Close()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "sms.token")
	if err := os.WriteFile(tokenFile, []byte("relay-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "bank")
	body := strings.NewReplacer("data_dir: /var/lib/keyward-bank", "data_dir: "+data,
		"sms: {gateway_url: https://sms-relay.bank.internal/send}", "sms: {gateway_url: "+provider.URL+", token_file: "+tokenFile+"}").Replace(validYAML)
	cfg, err := loadConfig(writeConfig(t, body))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := smsGateway(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := gw.(otp.Keeper); ok {
		t.Fatalf("the production gateway %T keeps what it sends", gw)
	}
	if err := gw.Send(context.Background(), "13812345678", "[Keyward Bank] code 123456"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "Bearer relay-token" {
		t.Fatalf("the provider got %q", got)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("the production SMS path wrote under the data dir: %v", err)
	}

	// Dev mode's wiring, and only it, turns the outbox on.
	dcfg, dev, err := devConfig(filepath.Join(dir, "devbank"), fakeKeysvcDevDir(t), "https://127.0.0.1:8443")
	if err != nil {
		t.Fatal(err)
	}
	dgw, err := smsGateway(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := dgw.(otp.Keeper); !ok || dev.outboxPath == "" {
		t.Fatalf("dev mode's gateway %T is not the outbox", dgw)
	}
}
