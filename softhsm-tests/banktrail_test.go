package softhsmtests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/banking"
	"github.com/keyward/keyward/banking/bankaudit"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/keysvc/audit"
)

// checkBankTrail checkpoints banking's audit trail through the real
// keysvc (bank-audit, an ec-p256 key in SoftHSM, signing the checkpoint's
// digest), verifies the trail with the public key keysvc serves, checks
// that the flow's logins, step-ups, the dead code and the logout are in
// it, and that no stored record holds one of secrets.
func checkBankTrail(t *testing.T, be *bankEnv, secrets ...string) {
	t.Helper()
	ctx := context.Background()
	cp, err := be.bank.Trail().Checkpoint(ctx)
	if err != nil {
		t.Fatalf("checkpoint signed by keysvc's %s: %v", banking.KeyAudit, err)
	}
	pk, err := be.kms.PublicKey(ctx, banking.KeyAudit, 0)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := bankaudit.ParsePublicKeyPEM([]byte(pk.PEM))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := bankaudit.Verify(be.db, pub, audit.Anchor{Seq: cp.Seq, Hash: cp.Hash})
	if err != nil {
		t.Fatalf("banking's trail does not verify with keysvc's key: %v", err)
	}
	ops := map[string]int{}
	if err := bankaudit.Records(be.db, 0, func(r audit.Record) error { ops[r.Op+" "+r.Result]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"staff.enrol ok", "login ok", "otp.send ok", "stepup ok", "stepup otp_invalid", "alert.otp-locked otp_locked", "logout ok"} {
		if ops[want] == 0 {
			t.Errorf("no %q record in banking's trail: %v", want, ops)
		}
	}
	if err := be.db.View(func(tx store.Tx) error {
		return tx.Bucket([]byte("bank-audit-records")).ForEach(func(_, v []byte) error {
			for _, s := range secrets {
				if s != "" && bytes.Contains(v, []byte(s)) {
					t.Errorf("an audit record holds a secret (%d characters)", len(s))
				}
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("banking trail: %d records, %d checkpoints (signed in SoftHSM through keysvc)", rep.Records, rep.Checkpoints)
}

// procAuditVerify runs `banking audit verify` and `banking audit tail` as
// processes on the stopped banking's bbolt file with the bank-audit key
// saved while keysvc ran (the observability step stops keysvc before
// banking, so the records after that are chained but not yet signed):
// the trail is intact and at least one checkpoint (banking makes one a
// second here, audit.checkpoint_interval) was signed by keysvc.
func procAuditVerify(t *testing.T, e *procEnv, pub string) {
	t.Helper()
	_, bankingBin, _ := procBinaries(t)
	out, err := exec.Command(bankingBin, "audit", "verify", "-config", e.bankingConf, "-pubkey", pub).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "banking audit trail intact (bbolt store") || strings.Contains(string(out), " 0 signed checkpoints") {
		t.Fatalf("banking audit verify: %v\n%s", err, out)
	}
	t.Logf("banking audit verify:\n%s", out)
	out, err = exec.Command(bankingBin, "audit", "tail", "-config", e.bankingConf, "-n", "3").CombinedOutput()
	if err != nil || len(strings.Split(strings.TrimSpace(string(out)), "\n")) != 4 {
		t.Fatalf("banking audit tail: %v\n%s", err, out)
	}
	t.Logf("banking audit tail -n 3:\n%s", out)
}

// procSaveAuditKey writes the bank-audit public key, as banking reads
// it from keysvc, to a PEM file (for a verification after keysvc stops).
func procSaveAuditKey(t *testing.T, e *procEnv) string {
	t.Helper()
	st, out := procCall(t, e.hc, "GET", e.keysvcURL+"/v1/keys/"+banking.KeyAudit+"/public", procBankingToken, "", nil)
	pemText, _ := out["pem"].(string)
	if st != 200 || pemText == "" {
		t.Fatalf("the bank-audit public key: %d %v", st, out)
	}
	path := filepath.Join(e.dir, "bank-audit.pem")
	if err := os.WriteFile(path, []byte(pemText), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
