//go:build linux

package softhsmtests

// KEK rotation on a token set, and the set's events in keysvc's audit log
// (issue 15, keysvc/kekmembers.go), on a real keysvc process over two
// SoftHSM2 tokens (startKeysvcOnTwoTokens):
//
//   - TestKEKRotationOnTwoTokens: a rotation with both tokens up destroys
//     the old KEKs in both; a rotation while B's directory is moved away
//     destroys them in A, and B, put back, is re-admitted only after
//     keysvc destroyed them in B (audited before the re-admission); B then
//     serves a wrapped key alone (A taken away).
//   - TestTokenSetEventsAudited: B taken out, re-admitted with a key
//     copied, and brought level at keysvc's next start each leave an
//     audit record.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/pkcs11shim"
)

// epochKEKSpecs are epoch n's KEKs as officers make them (keygen with
// backup: true and destroyable: true; provisionSetKeys makes them
// backup-able and copies them into every token, as restore would).
func epochKEKSpecs(ns ...int) []pkcs11shim.KeySpec {
	var out []pkcs11shim.KeySpec
	for _, n := range ns {
		out = append(out,
			pkcs11shim.KeySpec{Type: pkcs11shim.KeyAES256, Label: keysvc.KEKLabelFor(n), Usage: pkcs11shim.UsageWrap},
			pkcs11shim.KeySpec{Type: pkcs11shim.KeyAES256, Label: keysvc.SMKEKLabelFor(n), Usage: pkcs11shim.UsageEncrypt})
	}
	return out
}

// rotateKEK starts keysvc's KEK rotation and waits until epoch to is in
// service with nothing left to do.
func (e *failoverEnv) rotateKEK(t *testing.T, to int) wire.KEKRotationStatus {
	t.Helper()
	ctx := context.Background()
	if _, err := e.officer.StartKEKRotation(ctx); err != nil {
		t.Fatalf("start the KEK rotation to epoch %d: %v", to, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := e.officer.KEKRotation(ctx)
		if err == nil && st.State == wire.KEKIdle && st.Current == to {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("KEK rotation to epoch %d not finished in 20 s: %+v %v", to, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// auditAfterStop stops keysvc and reads its audit log.
func (e *failoverEnv) auditAfterStop(t *testing.T) []audit.Record {
	t.Helper()
	e.ks.stop()
	st, err := boltstore.Open(filepath.Join(e.dataDir, "keysvc.db"), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out []audit.Record
	if err := st.AuditRecords(0, func(r audit.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// findAudit returns the first record of op whose detail holds every sub
// (nil when none).
func findAudit(recs []audit.Record, op string, subs ...string) *audit.Record {
	for i, r := range recs {
		if r.Op != op {
			continue
		}
		all := true
		for _, s := range subs {
			all = all && strings.Contains(r.Detail, s)
		}
		if all {
			return &recs[i]
		}
	}
	return nil
}

func auditText(recs []audit.Record, ops ...string) string {
	var b strings.Builder
	for _, r := range recs {
		if slices.Contains(ops, r.Op) {
			fmt.Fprintf(&b, "  #%d %s %s\n", r.Seq, r.Op, r.Detail)
		}
	}
	return b.String()
}

func TestKEKRotationOnTwoTokens(t *testing.T) {
	e := startKeysvcOnTwoTokensWith(t, func(a, b pkcs11shim.TokenInfo) {
		provisionSetKeys(t, epochKEKSpecs(2, 3), a, b)
		provisionSetKeys(t, epochKEKSpecs(4), a) // A only: the rotation to 4 is refused
	})
	pub := e.createKey(t, "kr-wrapped", wire.ProtectionWrapped)
	epoch1 := []string{keysvc.KEKLabelFor(1), keysvc.SMKEKLabelFor(1)}
	epoch2 := []string{keysvc.KEKLabelFor(2), keysvc.SMKEKLabelFor(2)}
	holds := func(ti pkcs11shim.TokenInfo, labels []string) []string {
		have := tokenLabels(t, ti)
		var out []string
		for _, l := range labels {
			if slices.Contains(have, l) {
				out = append(out, l)
			}
		}
		return out
	}

	// Both up: epoch 1's KEKs are destroyed in both tokens.
	start := time.Now()
	if st := e.rotateKEK(t, 2); !slices.Equal(st.DestroyedKEKs, epoch1) {
		t.Fatalf("rotation to 2 destroyed %v, want %v", st.DestroyedKEKs, epoch1)
	}
	t.Logf("rotation 1→2 with both tokens up: %v", time.Since(start).Round(time.Millisecond))
	for _, ti := range []pkcs11shim.TokenInfo{e.a, e.b} {
		if h := holds(ti, epoch1); len(h) > 0 {
			t.Fatalf("token %s still holds %v after the rotation with both up", ti.Label, h)
		}
	}

	// B away during the rotation to 3: A loses epoch 2's KEKs, B keeps
	// them until it comes back, and loses them before it is re-admitted.
	backB := away(t, e.b)
	e.waitState(t, "b", "down", 10*time.Second)
	e.rotateKEK(t, 3)
	if h := holds(e.a, epoch2); len(h) > 0 {
		t.Fatalf("token A still holds %v after the rotation to 3", h)
	}
	backB()
	took := e.waitState(t, "b", "up", 30*time.Second)
	t.Logf("B re-admitted %v after it was put back; keysvc's log on B:\n%s", took.Round(time.Millisecond),
		strings.Join(logLines(e.ks.logPath, "hsm"), "\n"))
	if h := holds(e.b, epoch2); len(h) > 0 {
		t.Fatalf("token B was re-admitted still holding the retired %v", h)
	}

	// B alone serves the wrapped key under epoch 3's KEKs.
	backA := away(t, e.a)
	msg := "signed on B alone after the rotation"
	status, der, err := e.sign("kr-wrapped", msg)
	if status != http.StatusOK || err != nil || !verifyMsg(pub, msg, der) {
		t.Fatalf("sign with only B: %d %v (verifies: %v)", status, err, der != nil && verifyMsg(pub, msg, der))
	}
	e.waitState(t, "a", "down", 10*time.Second)
	backA()
	e.waitState(t, "a", "up", 30*time.Second)

	// Epoch 4's KEKs are on A only: the rotation is refused, naming B.
	_, err = e.officer.StartKEKRotation(context.Background())
	if !errors.Is(err, wire.ErrIllegalTransition) || !strings.Contains(err.Error(), "keysvc-kek-e4: missing from token \""+e.b.Label+"\"") {
		t.Fatalf("rotation to 4 with its KEKs on A only: %v", err)
	}
	t.Logf("refused as it should be: %v", err)

	recs := e.auditAfterStop(t)
	t.Logf("audit:\n%s", auditText(recs, "kek_destroy", "token_member_down", "token_member_readmitted", "kek_rotation_finish"))
	var destroyedOnB []uint64
	for _, l := range epoch2 {
		r := findAudit(recs, "kek_destroy", l+" (epoch 2, retired) destroyed on token \""+e.b.Label+"\"", "before its re-admission")
		if r == nil {
			t.Fatalf("no kek_destroy record for %s on B", l)
		}
		destroyedOnB = append(destroyedOnB, r.Seq)
	}
	re := findAudit(recs, "token_member_readmitted", "member b:", e.b.Label)
	if re == nil {
		t.Fatal("no token_member_readmitted record for B")
	}
	if slices.Max(destroyedOnB) > re.Seq {
		t.Fatalf("B was re-admitted (#%d) before its retired KEKs were destroyed (#%v)", re.Seq, destroyedOnB)
	}
	if findAudit(recs, "token_member_down", "member b:", e.b.Label) == nil {
		t.Fatal("no token_member_down record for B")
	}
}

func TestTokenSetEventsAudited(t *testing.T) {
	e := startKeysvcOnTwoTokens(t)
	backB := away(t, e.b)
	e.waitState(t, "b", "down", 10*time.Second)
	e.createKey(t, "ev-1", wire.ProtectionHSM)
	backB()
	e.waitState(t, "b", "up", 30*time.Second)

	// B away again; a key made meanwhile; keysvc stopped before B is back:
	// the next start brings B level (Sync).
	backB = away(t, e.b)
	e.waitState(t, "b", "down", 10*time.Second)
	e.createKey(t, "ev-2", wire.ProtectionHSM)
	e.ks.stop()
	backB()
	e.ks.start(t)
	if !slices.Contains(tokenLabels(t, e.b), "kw/ev-2/v1") {
		t.Fatalf("keysvc's start did not copy ev-2 into B: %v", tokenLabels(t, e.b))
	}

	recs := e.auditAfterStop(t)
	t.Logf("audit:\n%s", auditText(recs, "token_member_down", "token_member_readmitted", "token_member_synced"))
	downs := 0
	for _, r := range recs {
		if r.Op == "token_member_down" && strings.Contains(r.Detail, "member b:") && strings.Contains(r.Detail, e.b.Label) {
			downs++
		}
		if strings.HasPrefix(r.Op, "token_member_") && r.Client != "keysvc" {
			t.Errorf("record %d %s by %q, want keysvc", r.Seq, r.Op, r.Client)
		}
	}
	if downs != 2 {
		t.Errorf("%d token_member_down records for B, want 2", downs)
	}
	if findAudit(recs, "token_member_readmitted", "member b:", e.b.Label, "copied 1 keys") == nil {
		t.Error("no token_member_readmitted record for B with the one key copied")
	}
	if findAudit(recs, "token_member_synced", "member b:", e.b.Label, "copied 1 keys") == nil {
		t.Error("no token_member_synced record for B with ev-2 copied at the start")
	}
}
