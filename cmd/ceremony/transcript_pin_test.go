package main

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"sync"
	"testing"
)

// auditKeys holds the ceremony-audit key fingerprint of every token the
// tests initialised, taken from the public key token init printed — the
// officers' own record, never the transcript being checked.
var auditKeys sync.Map // label -> fingerprint

// recordAuditKey takes the printed ceremony-audit public key from token
// init's output and returns its fingerprint.
func recordAuditKey(t *testing.T, label, stdout string) string {
	t.Helper()
	i := strings.Index(stdout, "-----BEGIN PUBLIC KEY-----")
	if i < 0 {
		t.Fatalf("token init printed no public key:\n%s", stdout)
	}
	blk, _ := pem.Decode([]byte(stdout[i:]))
	if blk == nil {
		t.Fatalf("token init printed no PEM public key:\n%s", stdout)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	fp, _, err := fingerprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	auditKeys.Store(label, fp)
	return fp
}

// verifyPinned runs `transcript verify` pinned with -fingerprint to the
// key recorded for the token the transcript names as its signer.
func verifyPinned(t *testing.T, path string) result {
	t.Helper()
	body, _ := verifyTranscript(path, nil)
	fp := strings.Repeat("0", 64)
	if body != nil && body.Signer != nil {
		v, ok := auditKeys.Load(body.Signer.Token.Label)
		if !ok {
			t.Fatalf("%s: no recorded audit key for signer token %s", path, body.Signer.Token.Label)
		}
		fp = v.(string)
	}
	return runBin(t, "transcript", "verify", path, "-fingerprint", fp)
}
