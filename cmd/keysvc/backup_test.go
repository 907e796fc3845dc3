package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBackupLocalURL(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:8443":         "https://127.0.0.1:8443",
		"0.0.0.0:8443":           "https://127.0.0.1:8443",
		":8443":                  "https://127.0.0.1:8443",
		"[::]:8443":              "https://127.0.0.1:8443",
		"keysvc.bank.internal:1": "https://keysvc.bank.internal:1",
	} {
		if got, err := localURL(listen); err != nil || got != want {
			t.Errorf("localURL(%q) = %q, %v; want %q", listen, got, err, want)
		}
	}
	if _, err := localURL("8443"); err == nil {
		t.Error("localURL accepted a listen without a host:port")
	}
}

// TestBackupPinsConfigCert: without -ca, the command talks only to a
// server presenting exactly the config's tls.cert.
func TestBackupPinsConfigCert(t *testing.T) {
	ok := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }
	mine := httptest.NewTLSServer(http.HandlerFunc(ok)) // httptest's built-in certificate
	other := httptest.NewUnstartedServer(http.HandlerFunc(ok))
	other.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	other.StartTLS()
	defer mine.Close()
	defer other.Close()
	certFile := filepath.Join(t.TempDir(), "tls.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: mine.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := backupTLS(certFile, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := hc.Get(mine.URL)
	if err != nil {
		t.Fatalf("the server presenting the pinned certificate was refused: %v", err)
	}
	resp.Body.Close()
	if _, err := hc.Get(other.URL); err == nil || !strings.Contains(err.Error(), "does not present keysvc's certificate") {
		t.Fatalf("a server with another certificate: %v, want the pin refused", err)
	}
}

// selfSigned is a throwaway certificate for 127.0.0.1.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not keysvc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
