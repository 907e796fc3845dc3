package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/secrets"
)

// clientCertFiles writes a self-signed client certificate and its key
// (PEM) into dir and returns their paths and the key's PEM.
func clientCertFiles(t *testing.T, dir string) (certPath, keyPath string, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keysvc"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(k)
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	certPath, keyPath = filepath.Join(dir, "etcd-client.pem"), filepath.Join(dir, "etcd-client-key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath, keyPEM
}

// The etcd client's TLS configuration: from files, or with the key from
// the secrets file; errors name the YAML field, never file contents.
func TestEtcdClientTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key, keyPEM := clientCertFiles(t, dir)
	ca := cert // self-signed: it is its own CA here
	for name, k := range map[string]struct {
		path string
		pem  []byte
	}{"key file": {key, nil}, "sealed key": {"", keyPEM}} {
		cfg, err := etcdClientTLS(ca, cert, k.path, k.pem)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(cfg.Certificates) != 1 || cfg.RootCAs == nil || cfg.MinVersion < 0x0303 {
			t.Errorf("%s: config %+v lacks the client certificate, the CA or TLS 1.2", name, cfg)
		}
	}
	_, _, otherKey := clientCertFiles(t, t.TempDir())
	cases := []struct {
		name                string
		ca, cert, key       string
		keyPEM              []byte
		want                string
		mustNotContainBytes []byte
	}{
		{"missing ca", filepath.Join(dir, "nope.pem"), cert, key, nil, "store.etcd.ca:", nil},
		{"ca without a certificate", key, cert, key, nil, "store.etcd.ca: " + key + " holds no PEM certificate", keyPEM},
		{"missing cert", ca, filepath.Join(dir, "nope.pem"), key, nil, "store.etcd.cert:", nil},
		{"missing key", ca, cert, filepath.Join(dir, "nope.pem"), nil, "store.etcd.key:", nil},
		{"no key at all", ca, cert, "", nil, "store.etcd.key is empty and the secrets file holds no etcd-client-key", nil},
		{"key of another certificate", ca, cert, "", otherKey, "store.etcd.cert and store.etcd.key do not make a key pair", otherKey},
	}
	for _, c := range cases {
		_, err := etcdClientTLS(c.ca, c.cert, c.key, c.keyPEM)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
			continue
		}
		if c.mustNotContainBytes != nil && strings.Contains(err.Error(), string(c.mustNotContainBytes[30:60])) {
			t.Errorf("%s: the error repeats key material: %v", c.name, err)
		}
	}
}

// The etcd client key sealed in the secrets file (passphrase slot): keysvc
// takes it from there when store.etcd.key is left out, and refuses a
// config that gives it twice.
func TestEtcdKeyFromSecretsFile(t *testing.T) {
	dir := t.TempDir()
	cert, _, keyPEM := clientCertFiles(t, dir)
	pass := filepath.Join(dir, "pass")
	if err := os.WriteFile(pass, []byte("a long recovery passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := secrets.Seal(secrets.Bundle{secrets.TokenPIN: []byte("482913"), secrets.TLSKey: []byte("tls key pem"), etcdKeySecret: keyPEM},
		secrets.Options{Passphrase: []byte("a long recovery passphrase"), KDF: &secrets.KDF{Time: 1, MemoryKiB: 1024, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	sealed := filepath.Join(dir, "secrets.json")
	if err := f.Write(sealed, false); err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(etcdConfig, "    key: /etc/keyward/etcd-client-key.pem\n", "", 1)
	text = strings.Replace(text, "tls: {cert: s.pem, key: k.pem}", "tls: {cert: s.pem}", 1)
	text += "secrets: {file: " + sealed + ", passphrase: \"file:" + pass + "\"}\n"
	cfg, err := loadConfig(writeConfig(t, text))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	host, err := openHostSecrets(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if string(host.etcdKey) != string(keyPEM) {
		t.Fatal("the etcd client key was not taken from the secrets file")
	}
	if _, err := etcdClientTLS(cert, cert, cfg.Store.Etcd.Key, host.etcdKey); err != nil {
		t.Fatalf("TLS with the sealed key: %v", err)
	}
	host.close()

	cfg.Store.Etcd.Key = "/etc/keyward/etcd-client-key.pem" // both: refused
	if _, err := openHostSecrets(cfg, log); err == nil || !strings.Contains(err.Error(), "store.etcd.key is set and the secrets file") {
		t.Fatalf("key in the config and in the secrets file: err = %v", err)
	}
}

// audit verify -config on a bbolt config reads the config's data_dir;
// -config with -data-dir is refused.
func TestAuditVerifyConfigBolt(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubPath, _ := auditStore(t, dir, key, 3, 3)
	conf := writeConfig(t, "data_dir: "+dir+"\ntls: {cert: c.pem, key: k.pem}\ntoken: {uri: \"pkcs11:token=t\"}\nclients: [{name: a}]\n")
	if err := auditCmd([]string{"verify", "-config", conf}); err != nil {
		t.Fatalf("audit verify -config (bbolt): %v", err)
	}
	if err := auditCmd([]string{"verify", "-config", conf, "-data-dir", dir}); err == nil || !strings.Contains(err.Error(), "give -config or -data-dir, not both") {
		t.Fatalf("-config with -data-dir: err = %v", err)
	}
	empty := t.TempDir()
	conf2 := writeConfig(t, "data_dir: "+empty+"\ntls: {cert: c.pem, key: k.pem}\ntoken: {uri: \"pkcs11:token=t\"}\nclients: [{name: a}]\n")
	if err := auditCmd([]string{"verify", "-config", conf2, "-pubkey", pubPath}); err == nil {
		t.Fatal("audit verify -config read a store that is not in the config's data_dir")
	}
}
