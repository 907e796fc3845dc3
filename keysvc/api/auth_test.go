package api_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/api"
)

func TestBearerAdmission(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name   string
		header string // Authorization
		status int
		code   string
		caller keysvc.Caller
	}{
		{"no credentials", "", 401, "unauthenticated", keysvc.Caller{}},
		{"bad token", "Bearer not-a-token", 401, "unauthenticated", keysvc.Caller{}},
		{"hash instead of token", "Bearer " + tokenHash(aliceToken), 401, "unauthenticated", keysvc.Caller{}},
		{"wrong scheme", "Basic " + aliceToken, 401, "unauthenticated", keysvc.Caller{}},
		{"empty token", "Bearer ", 401, "unauthenticated", keysvc.Caller{}},
		{"alice", "Bearer " + aliceToken, 200, "", keysvc.Caller{Name: "alice"}},
		{"scheme is case-insensitive", "bearer " + aliceToken, 200, "", keysvc.Caller{Name: "alice"}},
		{"admin", "Bearer " + rootToken, 200, "", keysvc.Caller{Name: "root", Admin: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.be.Calls())
			r := e.req("GET", "/v1/keys/k1", "", "", "Authorization", tc.header)
			r.expect(t, tc.status, tc.code)
			calls := e.be.Calls()[before:]
			if tc.status != 200 {
				if len(calls) != 0 {
					t.Fatalf("backend called on a refused request: %+v", calls)
				}
				if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Errorf("WWW-Authenticate = %q", got)
				}
				return
			}
			if len(calls) != 1 {
				t.Fatalf("backend calls = %d", len(calls))
			}
			got := calls[0].Caller
			if got.Name != tc.caller.Name || got.Admin != tc.caller.Admin {
				t.Errorf("caller = %+v, want %+v", got, tc.caller)
			}
		})
	}
}

func TestRequestDigest(t *testing.T) {
	e := newEnv(t)
	body := `{"message":"aGVsbG8="}`
	e.req("POST", "/v1/keys/k1/sign", aliceToken, body).expect(t, 200, "")
	sum := sha256.Sum256([]byte(body))
	if got := e.be.last(t).Caller.BodySHA256; !bytes.Equal(got, sum[:]) {
		t.Errorf("BodySHA256 = %x", got)
	}
	e.req("GET", "/v1/keys", aliceToken, "").expect(t, 200, "")
	empty := sha256.Sum256(nil)
	if got := e.be.last(t).Caller.BodySHA256; !bytes.Equal(got, empty[:]) {
		t.Errorf("BodySHA256 of an empty body = %x", got)
	}
}

func TestUnauthenticatedRoutes(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/healthz", "/readyz", "/v1/openapi.json"} {
		r := e.req("GET", p, "", "")
		if r.status != 200 {
			t.Errorf("GET %s = %d %s", p, r.status, r.body)
		}
	}
	// An unknown /v1 route does not reveal whether it exists.
	e.req("GET", "/v1/nothing", "", "").expect(t, 401, "unauthenticated")
	e.req("GET", "/v1/nothing", aliceToken, "").expect(t, 404, "not_found")
	e.req("GET", "/v1/keys/k1/sign", aliceToken, "").expect(t, 405, "method_not_allowed")
}

func TestNewRejectsBadClients(t *testing.T) {
	be := newFakeBackend()
	for name, clients := range map[string][]api.Client{
		"empty name":       {{TokenSHA256: tokenHash("x")}},
		"duplicate name":   {{Name: "a"}, {Name: "a"}},
		"short digest":     {{Name: "a", TokenSHA256: "abcd"}},
		"not hex":          {{Name: "a", TokenSHA256: strings.Repeat("z", 64)}},
		"shared token":     {{Name: "a", TokenSHA256: tokenHash("x")}, {Name: "b", TokenSHA256: tokenHash("x")}},
		"token not a hash": {{Name: "a", TokenSHA256: "secret-token"}},
	} {
		if _, err := api.New(api.Config{Backend: be, Clients: clients}); err == nil {
			t.Errorf("%s: New accepted %+v", name, clients)
		}
	}
	if _, err := api.New(api.Config{}); err == nil {
		t.Error("New accepted a nil Backend")
	}
}

// pki is a throwaway CA with helpers to issue certificates.
type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial int64

func newCA(t *testing.T, cn string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &pki{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for cn; server certificates are
// for 127.0.0.1.
func (ca *pki) issue(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsEnv serves over TLS with api.TLSConfig; clientCA may be nil.
func tlsEnv(t *testing.T, ca *pki, clientCA []byte) (base string, be *fakeBackend, roots *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM := ca.issue(t, "keysvc", true)
	caFile := ""
	if clientCA != nil {
		caFile = writeFile(t, dir, "clients-ca.pem", clientCA)
	}
	cfg, err := api.TLSConfig(writeFile(t, dir, "server.pem", certPEM), writeFile(t, dir, "server.key", keyPEM), caFile)
	if err != nil {
		t.Fatalf("TLSConfig: %v", err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x", cfg.MinVersion)
	}
	be = newFakeBackend()
	srv, err := api.New(api.Config{Backend: be, Clients: testClients(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, cfg) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("ServeTLS: %v", err)
		}
	})
	roots = x509.NewCertPool()
	roots.AddCert(ca.cert)
	return "https://" + ln.Addr().String(), be, roots
}

func tlsClient(roots *x509.CertPool, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12},
	}}
}

func TestMutualTLS(t *testing.T) {
	ca := newCA(t, "clients and server CA")
	other := newCA(t, "another CA")
	base, be, roots := tlsEnv(t, ca, ca.pem)

	pair := func(ca *pki, cn string) tls.Certificate {
		c, k := ca.issue(t, cn, false)
		p, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("listed certificate", func(t *testing.T) {
		hc := tlsClient(roots, pair(ca, "carol"))
		doReq(t, hc, base, "GET", "/v1/keys/k1", "", "").expect(t, 200, "")
		if c := be.last(t).Caller; c.Name != "carol" || c.Admin {
			t.Errorf("caller = %+v", c)
		}
	})
	t.Run("certificate names an admin", func(t *testing.T) {
		hc := tlsClient(roots, pair(ca, "root"))
		doReq(t, hc, base, "GET", "/v1/keys", "", "").expect(t, 200, "")
		if c := be.last(t).Caller; c.Name != "root" || !c.Admin {
			t.Errorf("caller = %+v", c)
		}
	})
	t.Run("unknown common name", func(t *testing.T) {
		n := len(be.Calls())
		hc := tlsClient(roots, pair(ca, "mallory"))
		doReq(t, hc, base, "GET", "/v1/keys/k1", "", "").expect(t, 401, "unauthenticated")
		// A valid token beside an unknown certificate does not help.
		doReq(t, hc, base, "GET", "/v1/keys/k1", aliceToken, "").expect(t, 401, "unauthenticated")
		if len(be.Calls()) != n {
			t.Error("backend called for an unknown certificate")
		}
	})
	t.Run("certificate from another CA", func(t *testing.T) {
		hc := tlsClient(roots, pair(other, "carol"))
		if _, err := hc.Get(base + "/v1/keys/k1"); err == nil {
			t.Fatal("handshake succeeded with a certificate from another CA")
		}
	})
	t.Run("no certificate", func(t *testing.T) {
		hc := tlsClient(roots)
		req, _ := http.NewRequest("GET", base+"/healthz", nil)
		if _, err := hc.Do(req); err == nil {
			t.Fatal("handshake succeeded without a client certificate")
		}
	})
}

func TestTLSBearerOnly(t *testing.T) {
	ca := newCA(t, "server CA")
	base, be, roots := tlsEnv(t, ca, nil)
	c, k := ca.issue(t, "carol", false)
	p, _ := tls.X509KeyPair(c, k)
	// No client CA: certificates are not asked for, so carol's is not used.
	doReq(t, tlsClient(roots, p), base, "GET", "/v1/keys/k1", "", "").expect(t, 401, "unauthenticated")
	doReq(t, tlsClient(roots), base, "GET", "/v1/keys/k1", aliceToken, "").expect(t, 200, "")
	if got := be.last(t).Caller.Name; got != "alice" {
		t.Errorf("caller = %s", got)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "ca")
	c, k := ca.issue(t, "keysvc", true)
	cert, key := writeFile(t, dir, "c.pem", c), writeFile(t, dir, "k.pem", k)
	if _, err := api.TLSConfig(filepath.Join(dir, "missing.pem"), key, ""); err == nil {
		t.Error("missing certificate accepted")
	}
	if _, err := api.TLSConfig(cert, key, filepath.Join(dir, "missing-ca.pem")); err == nil {
		t.Error("missing CA file accepted")
	}
	if _, err := api.TLSConfig(cert, key, writeFile(t, dir, "junk.pem", []byte("not PEM"))); err == nil {
		t.Error("CA file without certificates accepted")
	}
	cfg, err := api.TLSConfig(cert, key, writeFile(t, dir, "ca.pem", ca.pem))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil {
		t.Errorf("ClientAuth = %v", cfg.ClientAuth)
	}
	cfg, err = api.TLSConfig(cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.NoClientCert {
		t.Errorf("without a CA, ClientAuth = %v", cfg.ClientAuth)
	}
}
