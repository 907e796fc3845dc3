package otp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/keyward/keyward/banking/auth/otp"
)

var sixDigits = regexp.MustCompile(`[0-9]{6}`)

// checkText asserts what every SMS with a code must say (6.4.3 b).
func checkText(t *testing.T, text, code, purpose string) {
	t.Helper()
	if !strings.Contains(text, otp.SecurityNotice) || !strings.HasPrefix(text, otp.SMSSignature) {
		t.Errorf("%s: no security notice or signature: %q", purpose, text)
	}
	if !strings.Contains(text, "用于"+otp.PurposeName(purpose)+"，") {
		t.Errorf("%s: purpose not named: %q", purpose, text)
	}
	if strings.Count(text, code) != 1 || len(sixDigits.FindAllString(text, -1)) != 1 {
		t.Errorf("%s: the code must appear exactly once and be the only six-digit run: %q", purpose, text)
	}
	if !strings.Contains(text, "5分钟内有效") {
		t.Errorf("%s: lifetime missing: %q", purpose, text)
	}
}

// TestEverySMSCarriesTheNotice: a code for each purpose (and one no table
// names) goes out through the dev outbox with the notice, its purpose and
// the code once.
func TestEverySMSCarriesTheNotice(t *testing.T) {
	e := newEnv(t, func(c *otp.Config) { c.IssuesPerHour = 100 })
	for _, p := range append(otp.Purposes(), "unlisted-purpose") {
		code := e.issue(t, "c-"+p, p)
		m, _ := e.box.Last(phone)
		checkText(t, m.Text, code, p)
	}
	if otp.PurposeName("unlisted-purpose") != "身份验证" || otp.PurposeName("login") != "登录确认" {
		t.Fatal("purpose names changed")
	}
}

// TestHTTPGatewaySendsTheNotice: the production gateway posts the whole
// text, notice included.
func TestHTTPGatewaySendsTheNotice(t *testing.T) {
	var mu sync.Mutex
	var texts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b struct{ Phone, Text string }
		if json.NewDecoder(r.Body).Decode(&b) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		texts = append(texts, b.Text)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	g, err := otp.NewHTTPGateway(srv.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *otp.Config) { c.Gateway = g })
	if _, err := e.svc.Issue(context.Background(), "c1", "payee"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(texts) != 1 {
		t.Fatalf("provider got %d texts", len(texts))
	}
	code := sixDigits.FindString(texts[0])
	if code == "" {
		t.Fatalf("no code in %q", texts[0])
	}
	checkText(t, texts[0], code, "payee")
}
