package otp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyward/keyward/banking/auth/otp"
)

func TestHTTPGateway(t *testing.T) {
	var got struct{ Phone, Text, Auth string }
	status := http.StatusAccepted
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b struct{ Phone, Text string }
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&b) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		got.Phone, got.Text, got.Auth = b.Phone, b.Text, r.Header.Get("Authorization")
		w.WriteHeader(status)
	}))
	defer srv.Close()
	g, err := otp.NewHTTPGateway(srv.URL+"/sms", "gw-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	text := "[Keyward Bank] Your verification code for login is 123456."
	if err := g.Send(context.Background(), phone, text); err != nil {
		t.Fatal(err)
	}
	if got.Phone != phone || got.Text != text || got.Auth != "Bearer gw-token" {
		t.Fatalf("the provider got %+v", got)
	}
	status = http.StatusServiceUnavailable
	err = g.Send(context.Background(), phone, text)
	if err == nil || !strings.Contains(err.Error(), "503") || strings.Contains(err.Error(), "123456") || strings.Contains(err.Error(), phone) {
		t.Fatalf("a refused message: %v", err)
	}
	for _, u := range []string{"http://sms.example.com/send", "ftp://127.0.0.1/", "https://user:pw@sms.example.com/", "sms.example.com", "http://10.0.0.1/"} {
		if _, err := otp.NewHTTPGateway(u, "", nil); !errors.Is(err, otp.ErrGatewayURL) {
			t.Errorf("NewHTTPGateway(%q) = %v, want ErrGatewayURL", u, err)
		}
	}
	for _, u := range []string{"https://sms.example.com/send", "http://127.0.0.1:9/", "http://[::1]:9/", "http://localhost:9/"} {
		if _, err := otp.NewHTTPGateway(u, "", nil); err != nil {
			t.Errorf("NewHTTPGateway(%q) = %v", u, err)
		}
	}
}
