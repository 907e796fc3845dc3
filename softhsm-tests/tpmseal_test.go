package softhsmtests

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/secrets"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token/tpm"
	"github.com/keyward/keyward/token/tpm/tpmtest"
)

// Issue 8 (R-TOK-4, R-AV-1): cmd/keysvc starts unattended from a secrets
// file sealed to the TPM (swtpm): the token PIN and the TLS key exist on
// disk only inside it, and the audit checkpoints are signed by an ECC key
// in the TPM. A copied disk (other TPM) and a changed boot state (PCR)
// are refused with an actionable message; the recovery passphrase opens
// the file then; switching the audit key under an existing log is refused.

const sealPassphrase = "officers' recovery passphrase"

// sealConfig writes keysvc.yaml for a sealed start; extra is appended.
func sealConfig(t *testing.T, d *daemon, dir, name, label, spec, file, extra string) string {
	conf := filepath.Join(dir, name+".yaml")
	writeFiles(t, conf, fmt.Sprintf(`listen: %q
data_dir: %q
tls: {cert: %q}
token:
  uri: %q
  wait_timeout: 10s
tpm: %q
secrets: {file: %q%s}
audit: {signer: tpm}
destroy: {default_delay: 24h, min_delay: 1h}
scheduler_interval: 1h
clients:
  - {name: officer, admin: true, token_sha256: %s}
`, d.addr, filepath.Join(dir, "keysvc"), d.tls.cert, "pkcs11:token="+label+"?module-path="+modulePath, spec, file, extra, sha(officerToken)))
	return conf
}

// sealTestKDF keeps the tests' passphrase slots cheap; the file records it.
var sealTestKDF = &secrets.KDF{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}

// sealRunFails runs d's binary with args expecting it to refuse to start;
// it returns the output.
func sealRunFails(t *testing.T, d *daemon, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, d.bin, args...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("%s did not exit with an error (%v):\n%s", d.name, err, out)
	}
	return string(out)
}

func TestSealedKeysvcStartsUnattended(t *testing.T) {
	dir := t.TempDir()
	tt := newTestTLS(t, dir)
	ti := newServiceKeyToken(t)
	spec := tpmtest.Start(t)

	// The officers' seal ceremony, done here through the package: the
	// token PIN and the TLS key, bound to PCR 16, with a passphrase slot.
	keyPEM, err := os.ReadFile(tt.key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "secrets.json")
	tpmtest.With(t, spec, func(tp *tpm.TPM) {
		f, err := secrets.Seal(secrets.Bundle{secrets.TokenPIN: []byte(userPIN), secrets.TLSKey: keyPEM},
			secrets.Options{TPM: tp, PCRs: []int{16}, Passphrase: []byte(sealPassphrase), KDF: sealTestKDF})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Write(file, false); err != nil {
			t.Fatal(err)
		}
	})
	os.Remove(tt.key) // the clear TLS key is shredded after the ceremony

	d := newDaemon(t, "keysvc", dir, tt)
	conf := sealConfig(t, d, dir, "sealed", ti.Label, spec, file, "")
	d.args = []string{"serve", "-config", conf}
	d.start(t) // healthy over TLS with the sealed key, logged in with the sealed PIN
	ctx := context.Background()
	officer := d.kmsClient(t, officerToken, 10*time.Second, 2)
	if _, err := officer.CreateKey(ctx, wire.CreateKeyRequest{Name: "sealed-start", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256,
		Protection: wire.ProtectionHSM, Policy: wire.Policy{Grants: []wire.Grant{{Client: "officer", Ops: []wire.Op{wire.OpSign, wire.OpVerify}}}}}); err != nil {
		t.Fatal(err)
	}
	sig, err := officer.Sign(ctx, "sealed-start", wire.SignRequest{Message: []byte("payment 42")})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := officer.Verify(ctx, "sealed-start", wire.VerifyRequest{Message: []byte("payment 42"), Signature: sig.Signature}); err != nil || !ok {
		t.Fatalf("verify: %v %v", ok, err)
	}
	d.stop() // the final checkpoint is signed by the TPM's audit key
	log, _ := os.ReadFile(d.logPath)
	if !strings.Contains(string(log), "secrets unsealed by the TPM") || !strings.Contains(string(log), "created the audit key in the TPM") {
		t.Fatalf("log lacks the unseal and the audit key:\n%s", log)
	}
	if strings.Contains(string(log), userPIN) || strings.Contains(string(log), "PRIVATE KEY") {
		t.Fatal("a secret is in the log")
	}
	verifySealedAudit(t, dir)

	// Audit key continuity: the token's audit key can't take over this log.
	tokConf := filepath.Join(dir, "keysvc-tokenaudit.yaml")
	raw, _ := os.ReadFile(conf)
	writeFiles(t, tokConf, strings.Replace(string(raw), "audit: {signer: tpm}", "audit: {signer: token}", 1))
	if out := sealRunFails(t, d, "serve", "-config", tokConf); !strings.Contains(out, "signed by another audit key") {
		t.Fatalf("switching the audit key was not refused:\n%s", out)
	}

	// A copied disk: another machine's TPM opens neither file.
	other := tpmtest.Start(t)
	copyConf := sealConfig(t, d, dir, "copied-disk", ti.Label, other, file, "")
	if out := sealRunFails(t, d, "serve", "-config", copyConf); !strings.Contains(out, "sealed on another machine's TPM") {
		t.Fatalf("another TPM:\n%s", out)
	}

	// A changed boot state: refused unattended; the passphrase opens it.
	tpmtest.With(t, spec, func(tp *tpm.TPM) {
		if err := tp.ExtendPCR(16, []byte("new bootloader")); err != nil {
			t.Fatal(err)
		}
	})
	if out := sealRunFails(t, d, "serve", "-config", conf); !strings.Contains(out, "PCRs) changed since sealing") || !strings.Contains(out, "ceremony reseal") {
		t.Fatalf("PCR change:\n%s", out)
	}
	t.Setenv("KEYWARD_TEST_RECOVERY", sealPassphrase)
	d.args = []string{"serve", "-config", sealConfig(t, d, dir, "recovery", ti.Label, spec, file, ", passphrase: \"env:KEYWARD_TEST_RECOVERY\"")}
	d.start(t)
	if _, err := officer.Sign(ctx, "sealed-start", wire.SignRequest{Message: []byte("payment 43")}); err != nil {
		t.Fatal(err)
	}
	d.stop()
	log, _ = os.ReadFile(d.logPath)
	if !strings.Contains(string(log), "opened with the recovery passphrase because the TPM slot did not open") {
		t.Fatalf("no reseal warning:\n%s", log)
	}
	if strings.Contains(string(log), sealPassphrase) {
		t.Fatal("the passphrase is in the log")
	}
	verifySealedAudit(t, dir)
}

// verifySealedAudit checks the audit chain with the public key keysvc
// wrote, and that it is the TPM key's.
func verifySealedAudit(t *testing.T, dir string) {
	t.Helper()
	data := filepath.Join(dir, "keysvc")
	b, err := os.ReadFile(filepath.Join(data, "audit-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	// Issue 12 item 6: the real keysvc process writes it owner-only.
	if fi, err := os.Stat(filepath.Join(data, "audit-key.pem")); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit-key.pem has mode %v, want 0600", fi.Mode().Perm())
	}
	blk, _ := pem.Decode(b)
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, "audit-key.tpm.json")); err != nil {
		t.Fatalf("no TPM audit key blob: %v", err)
	}
	st, err := boltstore.Open(filepath.Join(data, "keysvc.db"), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rep, err := keysvc.VerifyAudit(st, pub.(*ecdsa.PublicKey))
	if err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	if rep.Checkpoints == 0 || rep.Unsigned != 0 {
		t.Fatalf("audit report %+v: want signed checkpoints covering every record", rep)
	}
}

// With no TPM the recovery passphrase is the only way in: keysvc reads it
// from its source at each start (here the environment), and refuses to
// start without it, saying what is missing.
func TestSealedKeysvcWithoutTPM(t *testing.T) {
	dir := t.TempDir()
	tt := newTestTLS(t, dir)
	ti := newServiceKeyToken(t)
	file := filepath.Join(dir, "secrets.json")
	f, err := secrets.Seal(secrets.Bundle{secrets.TokenPIN: []byte(userPIN)},
		secrets.Options{Passphrase: []byte(sealPassphrase), KDF: sealTestKDF})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Write(file, false); err != nil {
		t.Fatal(err)
	}
	d := newDaemon(t, "keysvc", dir, tt)
	conf := filepath.Join(dir, "keysvc-passphrase.yaml")
	writeFiles(t, conf, fmt.Sprintf(`listen: %q
data_dir: %q
tls: {cert: %q, key: %q}
token:
  uri: %q
secrets: {file: %q, passphrase: "env:KEYWARD_TEST_RECOVERY"}
clients:
  - {name: officer, admin: true, token_sha256: %s}
`, d.addr, filepath.Join(dir, "keysvc"), tt.cert, tt.key, "pkcs11:token="+ti.Label+"?module-path="+modulePath, file, sha(officerToken)))

	if out := sealRunFails(t, d, "serve", "-config", conf); !strings.Contains(out, "KEYWARD_TEST_RECOVERY") || strings.Contains(out, sealPassphrase) {
		t.Fatalf("no passphrase in the environment:\n%s", out)
	}
	t.Setenv("KEYWARD_TEST_RECOVERY", "a wrong recovery passphrase")
	if out := sealRunFails(t, d, "serve", "-config", conf); !strings.Contains(out, "wrong recovery passphrase") {
		t.Fatalf("wrong passphrase:\n%s", out)
	}
	t.Setenv("KEYWARD_TEST_RECOVERY", sealPassphrase)
	d.args = []string{"serve", "-config", conf}
	d.start(t)
	ctx := context.Background()
	officer := d.kmsClient(t, officerToken, 10*time.Second, 2)
	if _, err := officer.CreateKey(ctx, wire.CreateKeyRequest{Name: "no-tpm", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256,
		Protection: wire.ProtectionHSM, Policy: wire.Policy{Grants: []wire.Grant{{Client: "officer", Ops: []wire.Op{wire.OpSign}}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := officer.Sign(ctx, "no-tpm", wire.SignRequest{Message: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	d.stop()
	log, _ := os.ReadFile(d.logPath)
	if !strings.Contains(string(log), "secrets opened with the recovery passphrase") {
		t.Fatalf("log:\n%s", log)
	}
}

// cmd/banking keeps its own secrets — its TLS key and its credential
// towards keysvc — in a sealed file too: it starts unattended from the
// TPM, keysvc accepts the sealed bearer token (a wrong one stops the start
// with unauthenticated), and a credential given twice is refused.
func TestSealedBankingStarts(t *testing.T) {
	dir := t.TempDir()
	tt := newTestTLS(t, dir)
	ks := startKeysvc(t, dir, tt)
	provisionBankKeysWith(t, ks.kmsClient(t, officerToken, 10*time.Second, 2))
	spec := tpmtest.Start(t)
	keyPEM, err := os.ReadFile(tt.key)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(name, bearer string) string {
		file := filepath.Join(dir, name)
		tpmtest.With(t, spec, func(tp *tpm.TPM) {
			f, err := secrets.Seal(secrets.Bundle{secrets.TLSKey: keyPEM, secrets.KeysvcBearer: []byte(bearer + "\n")}, secrets.Options{TPM: tp})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Write(file, false); err != nil {
				t.Fatal(err)
			}
		})
		return file
	}
	good, wrong := seal("bank-secrets.json", bankappToken), seal("bank-secrets-wrong.json", "not-the-bankapp-token")
	list := filepath.Join(dir, "blacklist.txt")
	writeFiles(t, list, "end:0\n")
	d := newDaemon(t, "banking", dir, tt)
	conf := func(name, file, extra string) string {
		p := filepath.Join(dir, name+".yaml")
		writeFiles(t, p, fmt.Sprintf(`listen: %q
data_dir: %q
tls: {cert: %q}
keysvc: {url: %q, ca: %q, timeout: 10s%s}
kms_name: bankapp
blacklist: {file: %q}
sms: {gateway_url: %q}
tpm: %q
secrets: {file: %q}
`, d.addr, filepath.Join(dir, "bank"), tt.cert, ks.url, tt.ca, extra, list, smsRelay(t, filepath.Join(dir, "sms.jsonl")), spec, file))
		return p
	}
	if out := sealRunFails(t, d, "-config", conf("wrong", wrong, "")); !strings.Contains(out, "unauthenticated") || strings.Contains(out, "not-the-bankapp-token") {
		t.Fatalf("a wrong sealed bearer token:\n%s", out)
	}
	tokenFile := filepath.Join(dir, "bankapp.token")
	writeFiles(t, tokenFile, bankappToken+"\n")
	if out := sealRunFails(t, d, "-config", conf("twice", good, fmt.Sprintf(", bearer_token_file: %q", tokenFile))); !strings.Contains(out, "holds it too") {
		t.Fatalf("a credential given twice:\n%s", out)
	}
	d.args = []string{"-config", conf("sealed", good, "")}
	d.start(t) // healthy over TLS with the sealed key, keysvc reached with the sealed token
	d.stop()
	log, _ := os.ReadFile(d.logPath)
	if !strings.Contains(string(log), "secrets unsealed by the TPM") || strings.Contains(string(log), bankappToken) {
		t.Fatalf("banking log:\n%s", log)
	}
}
