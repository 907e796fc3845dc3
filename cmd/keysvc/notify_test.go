package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
)

var testNotice = keysvc.HolderNotice{Key: "cust-1", ConfirmationID: "cf_x", HolderToken: "tok-43", Display: []string{"Pay 1.00 CNY"}, ExpiresAt: time.Unix(1800000000, 0)}

func TestFileNotifier(t *testing.T) {
	p := filepath.Join(t.TempDir(), "notices.jsonl")
	n := fileNotifier(p, "https://confirm.example/", false)
	for i := 0; i < 2; i++ {
		if err := n(context.Background(), testNotice); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("notice file mode %v, %v", st.Mode(), err)
	}
	b, _ := os.ReadFile(p)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var got notice
	if len(lines) != 2 || json.Unmarshal([]byte(lines[1]), &got) != nil || got.Link != "https://confirm.example/c/tok-43" || got.Key != "cust-1" {
		t.Fatalf("notices %q", b)
	}
}

func TestWebhookNotifier(t *testing.T) {
	var got notice
	status := http.StatusNoContent
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&got) != nil {
			w.WriteHeader(400)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	n, err := webhookNotifier(srv.URL+"/push", ca, "https://confirm.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := n(context.Background(), testNotice); err != nil {
		t.Fatal(err)
	}
	if got.Link != "https://confirm.example/c/tok-43" || got.ConfirmationID != "cf_x" {
		t.Fatalf("webhook got %+v", got)
	}
	status = http.StatusServiceUnavailable
	if err := n(context.Background(), testNotice); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("a 503 from the webhook must refuse: %v", err)
	}
	// Without the CA, the server's certificate is not trusted.
	n2, _ := webhookNotifier(srv.URL+"/push", "", "https://confirm.example")
	if err := n2(context.Background(), testNotice); err == nil {
		t.Fatal("untrusted webhook certificate accepted")
	}
}
