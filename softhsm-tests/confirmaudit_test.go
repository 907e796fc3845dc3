package softhsmtests

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/token"
)

// TestConfirmedSignatureNeedsAudit (issue 12 item 5, R-SRV-3): when the
// "sign" record of an approved confirmation cannot be appended, the
// holder's approval fails with audit_unavailable and the requester's poll
// shows a failed confirmation with no signature.
func TestConfirmedSignatureNeedsAudit(t *testing.T) {
	var hs *hookedStore
	e := &keysvcEnv{tok: mustNewToken(t, token.KindHSM), dbPath: filepath.Join(t.TempDir(), "keysvc.db"), clock: &fakeClock{t: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)},
		wrapStore: func(s keysvc.Store) keysvc.Store { hs = &hookedStore{Store: s}; return hs }}
	e.start(t)
	e.confirmKey(t, "cust-audit", "ec-p256", "wrapped")
	msg := transferJSON(t, "Li Lei", "12.00", "audit-first")
	id := e.requestSign(t, "cust-audit", msg)
	n := e.lastNotice(t, "cust-audit")
	hs.setFailAudit(func(r *audit.Record) bool { return r.Op == "sign" })
	st, out := e.approve(t, n.HolderToken, "cust-audit", digestHex(msg), holderPIN)
	if st != 503 || errCode(out) != "audit_unavailable" {
		t.Fatalf("approve with a failing audit log: %d %v, want 503 audit_unavailable", st, out)
	}
	hs.setFailAudit(nil)
	got := e.poll(t, id, "0s")
	if got["status"] != "failed" || got["signature"] != nil {
		t.Fatalf("the requester collects %v after the sign record failed", got)
	}
	for _, o := range e.auditOps(t) {
		if strings.HasPrefix(o, "sign/ok cust-audit") {
			t.Fatalf("a sign record was written: %s", o)
		}
	}
}
