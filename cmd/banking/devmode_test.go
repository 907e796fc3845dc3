package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/blacklist"
	"github.com/keyward/keyward/banking/staff"
)

// fakeKeysvcDevDir lays out what keysvc's dev mode leaves in its data
// directory and banking's dev mode reads: the admin token and the CA.
func fakeKeysvcDevDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := ensureDevTLS(filepath.Join(dir, "tls")); err != nil {
		t.Fatal(err)
	}
	if _, err := ensureSecretFile(filepath.Join(dir, "dev-admin.token")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestDevConfigCreatesFiles(t *testing.T) {
	ks := fakeKeysvcDevDir(t)
	data := filepath.Join(t.TempDir(), "bank")
	c, dev, err := devConfig(data, ks, "https://127.0.0.1:8443")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"staff/teller1.token", "staff/supervisor1.token", "sms-outbox.jsonl", "blacklist.txt", "tls/server-key.pem"} {
		if m := mode(t, filepath.Join(data, f)); m != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, m)
		}
	}
	for _, d := range []string{data, filepath.Join(data, "staff")} {
		if m := mode(t, d); m != 0o700 {
			t.Errorf("%s has mode %v, want 0700", d, m)
		}
	}
	// The config points at those files and keysvc's dev admin.
	if c.KMSName != "dev" || c.KeySvc.BearerTokenFile != filepath.Join(ks, "dev-admin.token") || c.KeySvc.CA != filepath.Join(ks, "tls", "ca.pem") ||
		c.Listen != "127.0.0.1:8445" || c.SMS.devOutbox != dev.outboxPath {
		t.Fatalf("dev config %+v", c)
	}
	// Two people with their own tokens and the dev roles; the registry
	// knows each token.
	if c.staff == nil || c.staff.Len() != 2 {
		t.Fatalf("dev staff: %+v", c.Staff)
	}
	for _, want := range []struct {
		id, path string
		roles    []staff.Role
	}{
		{"teller1", dev.tellerToken, []staff.Role{staff.RoleEnrol, staff.RoleDeposit, staff.RolePhoneChange}},
		{"supervisor1", dev.supervisorToken, []staff.Role{staff.RoleUnlock, staff.RoleLimitOverride, staff.RoleLedgerVerify}},
	} {
		tok, err := readSecretFile(want.path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := c.staff.Authenticate(tok)
		if err != nil || m.ID != want.id || !slices.Equal(m.Roles, want.roles) {
			t.Fatalf("%s's token: %+v %v", want.id, m, err)
		}
	}
	// The empty list loads: the bank never runs unscreened.
	w, err := blacklist.Open(c.Blacklist.File, blacklist.Options{Interval: -1})
	if err != nil {
		t.Fatalf("dev blacklist: %v", err)
	}
	w.Close()
	// The server certificate is for 127.0.0.1 and chains to the dev CA.
	cert, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	roots := x509.NewCertPool()
	caPEM, _ := os.ReadFile(dev.caPath)
	roots.AppendCertsFromPEM(caPEM)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1"}); err != nil {
		t.Fatalf("server certificate: %v", err)
	}

	// A second start keeps every file.
	c2, _, err := devConfig(data, ks, "https://127.0.0.1:8443")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c2.Staff, c.Staff) {
		t.Fatal("the staff tokens changed on restart")
	}
	if caPEM2, _ := os.ReadFile(dev.caPath); string(caPEM2) != string(caPEM) {
		t.Fatal("the dev CA changed on restart")
	}
}

func TestDevConfigNeedsKeysvc(t *testing.T) {
	_, _, err := devConfig(filepath.Join(t.TempDir(), "bank"), t.TempDir(), "https://127.0.0.1:8443")
	if err == nil || !strings.Contains(err.Error(), "needs keysvc's dev mode") {
		t.Fatalf("without keysvc's dev files: %v", err)
	}
}

func TestDevConfigRefusesOpenFiles(t *testing.T) {
	ks := fakeKeysvcDevDir(t)
	data := t.TempDir()
	// An outbox someone else could read is not reused (codes are secrets).
	if err := os.WriteFile(filepath.Join(data, "sms-outbox.jsonl"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := devConfig(data, ks, "https://127.0.0.1:8443"); !errors.Is(err, otp.ErrOutboxMode) {
		t.Fatalf("0644 outbox: %v", err)
	}
	// Nor is a staff token with open permissions silently replaced, nor a
	// file that holds something else.
	data = t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "staff"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "staff", "teller1.token"), []byte("0123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := devConfig(data, ks, "https://127.0.0.1:8443"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("0644 staff token: %v", err)
	}
	if err := os.Chmod(filepath.Join(data, "staff", "teller1.token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := devConfig(data, ks, "https://127.0.0.1:8443"); err == nil || !strings.Contains(err.Error(), "does not hold a staff token") {
		t.Fatalf("a teller1.token that is no token: %v", err)
	}
}

// TestKMSClientMutualTLS checks that the keysvc client presents the
// configured client certificate and trusts only the configured CA.
func TestKMSClientMutualTLS(t *testing.T) {
	dir := t.TempDir()
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logBuf, nil))
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clients CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	cliKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cliDER, _ := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "banking"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, caCert, &cliKey.PublicKey, caKey)
	cliKeyDER, _ := x509.MarshalPKCS8PrivateKey(cliKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	var seenCN string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenCN = r.TLS.PeerCertificates[0].Subject.CommonName
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ready"}`))
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: x509.NewCertPool()}
	srv.TLS.ClientCAs.AddCert(caCert)
	srv.StartTLS()
	defer srv.Close()

	c := &Config{}
	c.KeySvc.URL = srv.URL
	c.KeySvc.CA = write("server-ca.pem", "CERTIFICATE", srv.Certificate().Raw)
	c.KeySvc.ClientCert = write("banking.pem", "CERTIFICATE", cliDER)
	c.KeySvc.ClientKey = write("banking-key.pem", "PRIVATE KEY", cliKeyDER)
	c.KeySvc.Timeout = 5 * time.Second
	kc, err := newKMSClient(c, &credentials{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.Ready(context.Background()); err != nil {
		t.Fatalf("ready over mTLS: %v", err)
	}
	if seenCN != "banking" {
		t.Fatalf("server saw client certificate %q", seenCN)
	}

	// keysvc.urls: a dead node first, then the live one; the same mTLS
	// client reaches keysvc through the second.
	dead := httptest.NewUnstartedServer(http.NotFoundHandler())
	deadURL := "https://" + dead.Listener.Addr().String()
	dead.Listener.Close()
	c.KeySvc.URL, c.KeySvc.URLs = "", []string{deadURL, srv.URL}
	kc, err = newKMSClient(c, &credentials{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // spread: one of the two calls goes to the dead node first
		seenCN = ""
		if err := kc.Ready(context.Background()); err != nil || seenCN != "banking" {
			t.Fatalf("ready over mTLS with a dead node: %v (client certificate %q)", err, seenCN)
		}
	}
	if eps := kc.Endpoints(); len(eps) != 2 || eps[0].URL != deadURL || !eps[0].Down || eps[1].Down || kc.Stats().Failovers != 1 {
		t.Fatalf("endpoints %+v, %+v", eps, kc.Stats())
	}
	// The dead node is logged once, by URL.
	if l := logBuf.String(); strings.Count(l, "keysvc endpoint failed") != 1 || !strings.Contains(l, "endpoint="+deadURL) {
		t.Errorf("log:\n%s", l)
	}
	c.KeySvc.URL, c.KeySvc.URLs = srv.URL, nil

	// A CA that did not sign the server certificate is refused.
	c.KeySvc.CA = write("other-ca.pem", "CERTIFICATE", caDER)
	kc, err = newKMSClient(c, &credentials{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.Ready(context.Background()); err == nil {
		t.Fatal("a server outside keysvc.ca was trusted")
	}
}
