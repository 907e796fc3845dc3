package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/keysvc/secrets"
	"github.com/keyward/keyward/token/tpm"
	"github.com/keyward/keyward/token/tpm/tpmtest"
)

const testPassphrase = "four officers, one passphrase"

func writeTLSKey(t *testing.T) (string, []byte) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(k)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	path := filepath.Join(t.TempDir(), "server.key")
	if err := os.WriteFile(path, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, pemKey
}

// R-TOK-4, issue 8: seal proves the PIN by a login before sealing it,
// writes a file that opens unattended on this TPM only, records no secret
// in its transcript; after a PCR change reseal (with the passphrase)
// makes it open unattended again.
func TestSealReseal(t *testing.T) {
	setup(t)
	spec := tpmtest.Start(t)
	label := initToken(t, "seal")
	keyPath, keyPEM := writeTLSKey(t)
	t.Setenv("KEYWARD_TEST_PASSPHRASE", testPassphrase)
	vars := map[string]string{"LABEL": label, "TPM": spec, "TLSKEY": keyPath}

	// A wrong token PIN is caught by the login, and nothing is written.
	vars["PIN"] = "user2"
	f, out := ceremonyFile(t, "seal.yaml", vars)
	if r := runBin(t, "seal", "-f", f, "--yes"); r.code != exitFailed || !strings.Contains(r.stderr, "PIN") {
		t.Fatalf("seal with a wrong PIN: %v", r)
	}
	if _, err := os.Stat(filepath.Join(out, "secrets.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a secrets file was written after a failed login: %v", err)
	}

	vars["PIN"] = "user"
	f, out = ceremonyFile(t, "seal.yaml", vars)
	if r := runBin(t, "seal", "-f", f, "--dry-run"); r.code != 0 || !strings.Contains(r.stdout, "a TPM slot and a passphrase slot") {
		t.Fatalf("dry run: %v", r)
	}
	r := mustRun(t, []string{"seal"}, f, out, "--yes")
	if !strings.Contains(r.stdout, "sealed tls-key, token-pin into") {
		t.Fatalf("seal: %v", r)
	}
	file := filepath.Join(out, "secrets.json")
	for _, p := range []string{file, filepath.Join(out, "transcript", "transcript.json"), filepath.Join(out, "transcript", "transcript.md")} {
		raw, _ := os.ReadFile(p)
		for _, s := range []string{userPIN, testPassphrase, "PRIVATE KEY"} {
			if bytes.Contains(raw, []byte(s)) {
				t.Errorf("%s contains %q", filepath.Base(p), s)
			}
		}
	}
	md, _ := os.ReadFile(filepath.Join(out, "transcript", "transcript.md"))
	if !strings.Contains(string(md), "PCRs [16]") || !strings.Contains(string(md), "tls-key, token-pin") {
		t.Errorf("transcript lacks the sealing facts:\n%s", md)
	}
	sf, err := secrets.Read(file)
	if err != nil {
		t.Fatal(err)
	}
	tpmtest.With(t, spec, func(tp *tpm.TPM) {
		b, how, err := sf.Open(secrets.Unlocker{TPM: tp})
		if err != nil || how.Slot != secrets.SlotTPM {
			t.Fatalf("unattended open: %v %+v", err, how)
		}
		if string(b[secrets.TokenPIN]) != userPIN || !bytes.Equal(b[secrets.TLSKey], keyPEM) {
			t.Fatal("the sealed secrets are not the token PIN and the TLS key")
		}
		// A firmware update: the TPM slot stops opening.
		if err := tp.ExtendPCR(16, []byte("firmware 2.1")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := sf.Open(secrets.Unlocker{TPM: tp}); !errors.Is(err, tpm.ErrPCRMismatch) {
			t.Fatalf("after the PCR change: %v, want ErrPCRMismatch", err)
		}
	})
	if r := runBin(t, "seal", "-f", f, "--yes"); r.code != exitUsage {
		t.Fatalf("sealing over an existing file: %v", r)
	}

	// Reseal: a wrong passphrase changes nothing; the right one rebinds.
	before, _ := os.ReadFile(file)
	t.Setenv("KEYWARD_TEST_PASSPHRASE", "not the passphrase at all")
	rf, rout := ceremonyFile(t, "reseal.yaml", map[string]string{"LABEL": label, "TPM": spec, "FILE": file})
	if r := runBin(t, "reseal", "-f", rf, "--yes"); r.code != exitFailed || !strings.Contains(r.stderr, "wrong recovery passphrase") {
		t.Fatalf("reseal with a wrong passphrase: %v", r)
	}
	if after, _ := os.ReadFile(file); !bytes.Equal(before, after) {
		t.Fatal("a failed reseal changed the file")
	}
	t.Setenv("KEYWARD_TEST_PASSPHRASE", testPassphrase)
	rf, rout = ceremonyFile(t, "reseal.yaml", map[string]string{"LABEL": label, "TPM": spec, "FILE": file})
	mustRun(t, []string{"reseal"}, rf, rout, "--yes")
	sf, err = secrets.Read(file)
	if err != nil {
		t.Fatal(err)
	}
	tpmtest.With(t, spec, func(tp *tpm.TPM) {
		b, how, err := sf.Open(secrets.Unlocker{TPM: tp})
		if err != nil || how.Slot != secrets.SlotTPM || string(b[secrets.TokenPIN]) != userPIN {
			t.Fatalf("after reseal: %v %+v", err, how)
		}
	})
}

// A secrets file for cmd/banking: no token PIN (transcript.signer signs),
// the TLS key and the keysvc bearer token from files.
func TestSealBankingFiles(t *testing.T) {
	setup(t)
	spec := tpmtest.Start(t)
	label := initToken(t, "sealb")
	keyPath, keyPEM := writeTLSKey(t)
	bearer := filepath.Join(t.TempDir(), "bank.token")
	if err := os.WriteFile(bearer, []byte("bank-bearer-7731\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KEYWARD_TEST_PASSPHRASE", testPassphrase)
	vars := map[string]string{"LABEL": label, "TPM": spec, "TLSKEY": keyPath, "BEARER": bearer}
	vars["NAME"] = "token-pin" // reserved: only token.user_pin seals it
	f, _ := ceremonyFile(t, "seal-banking.yaml", vars)
	if r := runBin(t, "seal", "-f", f, "--yes"); r.code != exitUsage || !strings.Contains(r.stderr, "files[0].name") {
		t.Fatalf("reserved name: %v", r)
	}
	vars["NAME"] = secrets.KeysvcBearer
	f, out := ceremonyFile(t, "seal-banking.yaml", vars)
	mustRun(t, []string{"seal"}, f, out, "--yes")
	sf, err := secrets.Read(filepath.Join(out, "bank-secrets.json"))
	if err != nil {
		t.Fatal(err)
	}
	tpmtest.With(t, spec, func(tp *tpm.TPM) {
		b, _, err := sf.Open(secrets.Unlocker{TPM: tp})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := b[secrets.TokenPIN]; ok || string(b[secrets.KeysvcBearer]) != "bank-bearer-7731\n" || !bytes.Equal(b[secrets.TLSKey], keyPEM) {
			t.Fatalf("sealed %v", b.Names())
		}
	})
	md, _ := os.ReadFile(filepath.Join(out, "transcript", "transcript.md"))
	if strings.Contains(string(md), "bank-bearer-7731") || !strings.Contains(string(md), "keysvc-bearer, tls-key") {
		t.Fatalf("transcript:\n%s", md)
	}
}
