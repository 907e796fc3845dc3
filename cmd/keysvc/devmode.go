package main

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/keyward/keyward/cmd/internal/devtls"
	"github.com/keyward/keyward/cmd/internal/secretfile"
	"github.com/keyward/keyward/token"
)

// devMetricsListen is dev mode's metrics listener (loopback only).
const devMetricsListen = "127.0.0.1:9464"

// devInfo is what dev mode prints so a developer can call the service.
type devInfo struct {
	dataDir, caPath, tokenPath string
}

// devConfig builds the embedded default under dataDir: a SoftHSM2 token
// (token.EnsureDevToken), a dev CA and server certificate, and an admin
// bearer token in a 0600 file. Idempotent. Not for production.
func devConfig(dataDir string) (*Config, *devInfo, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, nil, err
	}
	module, err := token.FindSoftHSM()
	if err != nil {
		return nil, nil, err
	}
	tc, err := token.EnsureDevToken(dataDir, module)
	if err != nil {
		return nil, nil, err
	}
	tlsDir := filepath.Join(dataDir, "tls")
	if err := ensureDevTLS(tlsDir); err != nil {
		return nil, nil, err
	}
	tokenPath := filepath.Join(dataDir, "dev-admin.token")
	bearer, err := ensureSecretFile(tokenPath)
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256([]byte(bearer))
	c := &Config{DataDir: dataDir}
	c.TLS.Cert, c.TLS.Key = filepath.Join(tlsDir, "server.pem"), filepath.Join(tlsDir, "server-key.pem")
	c.Token.URI = "pkcs11:token=" + token.DevTokenLabel + "?module-path=" + module + "&pin-source=file:" + mustAbs(tc.PIN.(token.FilePIN).Path)
	c.Destroy.DefaultDelay, c.Destroy.MinDelay = 24*time.Hour, time.Minute
	c.Clients = append(c.Clients, ClientConfig{Name: "dev", Admin: true, TokenSHA256: hex.EncodeToString(sum[:])})
	c.Confirm.Listen, c.Confirm.PublicURL = "127.0.0.1:8444", "https://127.0.0.1:8444"
	c.Confirm.Notify.File = filepath.Join(dataDir, "holder-notices.jsonl")
	c.Metrics.Listen = devMetricsListen
	c.defaults()
	c.Listen = "127.0.0.1:8443"
	return c, &devInfo{dataDir: dataDir, caPath: filepath.Join(tlsDir, "ca.pem"), tokenPath: tokenPath}, c.validate()
}

func (d *devInfo) print(addr, confirmURL string) {
	fmt.Printf(`
Keyward keysvc (dev mode) on https://%[1]s — data in %[2]s
Call it with the dev admin token and the dev CA:

  TOKEN=$(cat %[4]s)
  kw() { curl -sS --cacert %[3]s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; echo; }
  kw -X POST https://%[1]s/v1/keys -d '{"name":"demo","purpose":"sign","algorithm":"ec-p256","protection":"hsm","policy":{"grants":[{"client":"dev","ops":["sign","verify","public"]}]}}'
  SIG=$(kw -X POST https://%[1]s/v1/keys/demo/sign -d '{"message":"aGVsbG8="}' | grep -o 'kw:v[0-9]*:[^"]*')
  kw -X POST https://%[1]s/v1/keys/demo/verify -d '{"message":"aGVsbG8=","signature":"'$SIG'"}'

Display and confirm (a key that signs only what its holder confirms):

  CODE=$(kw -X POST https://%[1]s/v1/keys -d '{"name":"cust-1","purpose":"sign","algorithm":"ec-p256","protection":"wrapped","confirm":"required","policy":{"grants":[{"client":"dev","ops":["sign","verify"]}]}}' | grep -o '"holder_setup_code":"[A-Z0-9=]*"' | cut -d'"' -f4)
  open %[5]s/enrol in a browser (accept the dev CA), or:
  curl -sS --cacert %[3]s -H 'Content-Type: application/json' %[5]s/confirm/v1/enrol -d '{"key":"cust-1","setup_code":"'$CODE'","pin":"Kw-7391-safe"}'
  kw -X POST https://%[1]s/v1/keys/cust-1/sign -d '{"message":"'$(base64 -w0 token/txformat/testdata/pain001_sample.xml)'"}'
  → 202 with a confirmation id; the holder's link is printed here and kept in %[2]s/holder-notices.jsonl;
    open it, check the fields, type the PIN, Approve; then
  kw "https://%[1]s/v1/confirmations/<id>?wait=25s"

API description: https://%[1]s/v1/openapi.json   Metrics: http://%[6]s/metrics   Stop with Ctrl-C.

`, addr, d.dataDir, d.caPath, d.tokenPath, confirmURL, devMetricsListen)
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// ensureSecretFile: see secretfile.Ensure.
var ensureSecretFile = secretfile.Ensure

// ensureDevTLS creates a dev CA and a server certificate for 127.0.0.1 and
// localhost in dir, once (cmd/internal/devtls).
func ensureDevTLS(dir string) error { return devtls.Ensure(dir, "Keyward dev CA", "keysvc") }

func readECPublicKey(path string) (*ecdsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ECDSA public key", path)
	}
	return ec, nil
}
