package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/text/language"

	"github.com/keyward/keyward/token/l10n"
)

// TestErrorShowsRequestID: an error answer is printed with the request id
// the bank answered, so whoever reads it can quote the id to the operator
// (the bank logs it on every line about the request); an answer without
// one prints as before.
func TestErrorShowsRequestID(t *testing.T) {
	defer func(l language.Tag) { lang = l }(lang)
	lang = l10n.English
	var withID atomic.Bool
	withID.Store(true)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if withID.Load() {
			w.Header().Set("X-Request-Id", "0123456789abcdef0123456789abcdef")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"code":"login_failed","message":"wrong login or password"}}`))
	}))
	defer srv.Close()
	b := &bank{base: srv.URL, hc: srv.Client(), timeout: 5 * time.Second}
	_, err := b.call(context.Background(), "POST", "/v1/login", map[string]string{"login": "ana"}, nil)
	if err == nil || err.Error() != "wrong login or password (login_failed, HTTP 401, request id 0123456789abcdef0123456789abcdef)" {
		t.Fatalf("error %v", err)
	}
	if errCode(err) != "login_failed" {
		t.Errorf("errCode %q", errCode(err))
	}
	withID.Store(false)
	_, err = b.call(context.Background(), "POST", "/v1/login", nil, nil)
	if err == nil || strings.Contains(err.Error(), "request id") || !strings.HasSuffix(err.Error(), "(login_failed, HTTP 401)") {
		t.Fatalf("error without a request id: %v", err)
	}

	// In Chinese the same parts, the id named 请求编号.
	lang = l10n.Chinese
	withID.Store(true)
	_, err = b.call(context.Background(), "POST", "/v1/login", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "login_failed, HTTP 401, 请求编号 0123456789abcdef0123456789abcdef") {
		t.Fatalf("the Chinese error: %v", err)
	}
}
