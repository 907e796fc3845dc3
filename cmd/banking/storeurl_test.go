package main

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/keyward/keyward/banking/staff"
)

const devPGURL = "postgres://keyward@127.0.0.1:5432,127.0.0.1:5433/bank?sslmode=disable&target_session_attrs=read-write"

// TestStoreURLRefusedWithConfig: -store-url is dev mode's; with -config
// the YAML's store section rules, and banking refuses before it reads the
// file or opens anything.
func TestStoreURLRefusedWithConfig(t *testing.T) {
	cfg := writeConfig(t, validYAML)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	err := serve(log, []string{"-config", cfg, "-store-url", devPGURL})
	if !errors.Is(err, errStoreURLWithConfig) {
		t.Fatalf("serve with -config and -store-url: %v, want errStoreURLWithConfig", err)
	}
	if !strings.Contains(err.Error(), "store.postgres.url") {
		t.Errorf("the refusal does not say where the store is configured instead: %v", err)
	}
}

// TestDevOnPostgres: -store-url turns a dev configuration to PostgreSQL,
// with the node's own SMS outbox named after its port.
func TestDevOnPostgres(t *testing.T) {
	ks := fakeKeysvcDevDir(t)
	data := filepath.Join(t.TempDir(), "bank")
	c, dev, err := devConfig(data, ks, "https://127.0.0.1:8443")
	if err != nil {
		t.Fatal(err)
	}
	c.Listen = "127.0.0.1:8446"
	if err := devOnPostgres(c, dev, devPGURL); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(data, "sms-outbox-8446.jsonl")
	if c.Store.Backend != "postgres" || c.Store.Postgres.URL != devPGURL || c.SMS.devOutbox != want || dev.outboxPath != want || dev.storeURL != devPGURL {
		t.Fatalf("store %+v, outbox %q (dev %q)", c.Store, c.SMS.devOutbox, dev.outboxPath)
	}
	if m := mode(t, want); m != 0o600 {
		t.Errorf("%s has mode %v, want 0600", want, m)
	}
}

// TestDevOnPostgresRefusesBadURL: a password in the URL (argv is no place
// for one) and a URL that is not postgres:// are refused, naming the flag.
func TestDevOnPostgresRefusesBadURL(t *testing.T) {
	ks := fakeKeysvcDevDir(t)
	for _, u := range []string{"postgres://keyward:hunter2@127.0.0.1:5432/bank", "mysql://127.0.0.1/bank"} {
		c, dev, err := devConfig(filepath.Join(t.TempDir(), "bank"), ks, "https://127.0.0.1:8443")
		if err != nil {
			t.Fatal(err)
		}
		err = devOnPostgres(c, dev, u)
		if err == nil || !strings.Contains(err.Error(), "-store-url") || !strings.Contains(err.Error(), "store.postgres.url") {
			t.Errorf("devOnPostgres(%q) = %v, want a refusal naming -store-url", u, err)
		}
		if strings.Contains(u, "hunter2") && err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the refusal repeats the password: %v", err)
		}
	}
}

// TestDevConfigSharedDataDir: dev nodes started together on one data dir
// (make run-banking-pg) all get the same staff tokens and one whole TLS
// key pair: the files are made once, under the setup lock.
func TestDevConfigSharedDataDir(t *testing.T) {
	ks := fakeKeysvcDevDir(t)
	data := filepath.Join(t.TempDir(), "bank")
	const n = 8
	var wg sync.WaitGroup
	cfgs, errs := make([]*Config, n), make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfgs[i], _, errs[i] = devConfig(data, ks, "https://127.0.0.1:8443")
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		if !reflect.DeepEqual(cfgs[i].Staff, cfgs[0].Staff) {
			t.Fatalf("node %d has other staff tokens than node 0", i)
		}
	}
	for _, id := range []string{"teller1", "supervisor1"} {
		tok, err := readSecretFile(filepath.Join(data, "staff", id+".token"))
		if err != nil || !staff.ValidTokenFormat(tok) {
			t.Fatalf("%s's token: %v (length %d)", id, err, len(tok))
		}
	}
	if _, err := tls.LoadX509KeyPair(cfgs[0].TLS.Cert, cfgs[0].TLS.Key); err != nil {
		t.Fatalf("the TLS files made by concurrent nodes do not pair: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, ".dev-setup.lock")); err != nil {
		t.Fatal(err)
	}
}
