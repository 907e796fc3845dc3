package softhsmtests

// Display and confirm over HTTP on SoftHSM (R-DC-1..4, R-TOK-3, R-TOK-5):
// the whole flow, every bypass the issue lists, the timeout, the holder
// lock across a restart, and many concurrent confirmations.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/txformat"
)

const holderPIN = "Kw-7391-safe"

// transferJSON is a keyward.transfer.v1 order to payee with a unique nonce.
func transferJSON(t testing.TB, payee, amount, nonce string) []byte {
	t.Helper()
	for len(nonce) < 16 {
		nonce += "0"
	}
	b, err := txformat.CanonicalJSON(txformat.Transfer{PayerAccount: "6222 0202 0011 2233 445", PayeeAccount: "6222 0200 1234 5678",
		PayeeName: payee, PayeeBank: "ICBC Beijing", Amount: amount, Currency: "CNY", Purpose: "invoice 42"}, "2026-11-28T10:00:00+08:00", nonce)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func digestHex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// confirmKey creates a confirm-required signing key for the banking client
// and enrols its holder with holderPIN.
func (e *keysvcEnv) confirmKey(t testing.TB, name, alg, protection string) {
	t.Helper()
	st, out := callAt(t, e.url, officerToken, "POST", "/v1/keys", map[string]any{"name": name, "purpose": "sign", "algorithm": alg, "protection": protection,
		"confirm": "required", "policy": map[string]any{"grants": []any{map[string]any{"client": "banking", "ops": []string{"sign", "verify", "public"}}}}})
	if st != 201 {
		t.Fatalf("create %s: %d %v", name, st, out)
	}
	code, _ := out["holder_setup_code"].(string)
	if code == "" {
		t.Fatalf("create %s: no holder_setup_code: %v", name, out)
	}
	if st, out := callAt(t, e.confirmURL, "", "POST", "/confirm/v1/enrol", map[string]any{"key": name, "setup_code": code, "pin": holderPIN}); st != 200 {
		t.Fatalf("enrol %s: %d %v", name, st, out)
	}
}

// requestSign is the banking client's sign request; it must be pending.
func (e *keysvcEnv) requestSign(t testing.TB, key string, msg []byte) string {
	t.Helper()
	st, out := callAt(t, e.url, bankingToken, "POST", "/v1/keys/"+key+"/sign", map[string]any{"message": base64.StdEncoding.EncodeToString(msg)})
	if st != 202 {
		t.Fatalf("sign %s: status %d, want 202: %v", key, st, out)
	}
	c, _ := out["confirmation"].(map[string]any)
	id, _ := c["id"].(string)
	if id == "" || c["status"] != "pending" || c["digest"] != digestHex(msg) {
		t.Fatalf("sign %s: bad pending confirmation %v", key, out)
	}
	return id
}

func (e *keysvcEnv) approve(t testing.TB, tok, key, digest, pin string) (int, map[string]any) {
	t.Helper()
	return callAt(t, e.confirmURL, "", "POST", "/confirm/v1/c/"+tok+"/approve", map[string]any{"key": key, "digest": digest, "pin": pin})
}

func (e *keysvcEnv) poll(t testing.TB, id, wait string) map[string]any {
	t.Helper()
	st, out := callAt(t, e.url, bankingToken, "GET", "/v1/confirmations/"+id+"?wait="+wait, nil)
	if st != 200 {
		t.Fatalf("poll %s: %d %v", id, st, out)
	}
	return out
}

// auditOps returns "op/result" of every audit record, in order.
func (e *keysvcEnv) auditOps(t *testing.T) []string {
	t.Helper()
	var ops []string
	if err := e.store.AuditRecords(1, func(r audit.Record) error {
		ops = append(ops, r.Op+"/"+r.Result+" "+r.Key+" "+r.Detail)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ops
}

func hasAudit(ops []string, want string) bool {
	for _, o := range ops {
		if strings.HasPrefix(o, want) {
			return true
		}
	}
	return false
}

// TestConfirmFlow: pain.001 bytes → 202 → the holder sees the fields on
// the second channel → approves with the PIN → the requester's long poll
// gets a signature over exactly those bytes.
func TestConfirmFlow(t *testing.T) {
	e := newKeysvcEnv(t)
	for _, c := range []struct{ key, alg, prot string }{{"cust-1", "ec-p256", "wrapped"}, {"cust-sm2", "sm2", "wrapped"}, {"corp-hsm", "ec-p256", "hsm"}} {
		t.Run(c.key, func(t *testing.T) {
			e.confirmKey(t, c.key, c.alg, c.prot)
			msg, err := os.ReadFile("../token/txformat/testdata/pain001_sample.xml")
			if err != nil {
				t.Fatal(err)
			}
			id := e.requestSign(t, c.key, msg)
			if out := e.poll(t, id, "0s"); out["status"] != "pending" || out["signature"] != nil {
				t.Fatalf("before approval: %v", out)
			}
			n := e.lastNotice(t, c.key)
			if n.ConfirmationID != id || len(n.HolderToken) != 43 {
				t.Fatalf("notice %+v", n)
			}
			// The holder's view: the recognised fields and the digest.
			st, view := callAt(t, e.confirmURL, "", "GET", "/confirm/v1/c/"+n.HolderToken, nil)
			lines := fmt.Sprint(view["display"])
			if st != 200 || view["format"] != "pain.001.001.09" || view["digest"] != digestHex(msg) || !strings.Contains(lines, "CNY") {
				t.Fatalf("holder view %d %v", st, view)
			}
			// Long poll in the background; approve; the poll wakes up.
			got := make(chan map[string]any, 1)
			go func() { got <- e.poll(t, id, "20s") }()
			time.Sleep(50 * time.Millisecond)
			if st, out := e.approve(t, n.HolderToken, c.key, digestHex(msg), holderPIN); st != 200 || out["status"] != "approved" || out["signature"] != nil {
				t.Fatalf("approve: %d %v (the holder channel must not carry the signature)", st, out)
			}
			out := <-got
			sig, _ := out["signature"].(string)
			if out["status"] != "approved" || !strings.HasPrefix(sig, "kw:v1:") {
				t.Fatalf("poll after approval: %v", out)
			}
			v := e.must(t, 200, bankingToken, "POST", "/v1/keys/"+c.key+"/verify", map[string]any{"message": base64.StdEncoding.EncodeToString(msg), "signature": sig})
			if v["valid"] != true {
				t.Fatalf("signature does not verify over the confirmed bytes: %v", v)
			}
			other := append(append([]byte{}, msg...), ' ')
			if v := e.must(t, 200, bankingToken, "POST", "/v1/keys/"+c.key+"/verify", map[string]any{"message": base64.StdEncoding.EncodeToString(other), "signature": sig}); v["valid"] != false {
				t.Fatalf("signature verifies over other bytes: %v", v)
			}
			// The key is free again: a new request is accepted.
			id2 := e.requestSign(t, c.key, transferJSON(t, "Han Meimei", "10.00", "n-"+c.key))
			e.must(t, 200, bankingToken, "DELETE", "/v1/confirmations/"+id2, nil)
		})
	}
	ops := e.auditOps(t)
	for _, want := range []string{"sign-request/ok cust-1", "sign/ok cust-1", "confirm-cancel/ok cust-1", "sign/ok cust-sm2", "sign/ok corp-hsm"} {
		if !hasAudit(ops, want) {
			t.Errorf("audit lacks %q", want)
		}
	}
}

// TestConfirmBypasses tries every way around the holder and checks each
// fails and is audited (R-DC-1, R-DC-3, R-DC-4).
func TestConfirmBypasses(t *testing.T) {
	e := newKeysvcEnv(t)
	e.confirmKey(t, "cust-a", "ec-p256", "wrapped")
	e.confirmKey(t, "cust-b", "ec-p256", "wrapped")
	msg := transferJSON(t, "Li Lei", "1234.50", "bypass-1")
	b64msg := base64.StdEncoding.EncodeToString(msg)
	dg := sha256.Sum256(msg)

	check := func(t *testing.T, st int, out map[string]any, wantSt int, wantCode string) {
		t.Helper()
		if st != wantSt || errCode(out) != wantCode {
			t.Fatalf("status %d code %q, want %d %q: %v", st, errCode(out), wantSt, wantCode, out)
		}
	}
	t.Run("sign a digest directly", func(t *testing.T) {
		st, out := e.call(t, bankingToken, "POST", "/v1/keys/cust-a/sign", map[string]any{"digest": base64.StdEncoding.EncodeToString(dg[:])})
		check(t, st, out, 409, "confirmation_required")
	})
	t.Run("sign-batch", func(t *testing.T) {
		st, out := e.call(t, bankingToken, "POST", "/v1/keys/cust-a/sign-batch", map[string]any{"items": []any{map[string]any{"message": b64msg}}})
		check(t, st, out, 409, "confirmation_required")
	})
	t.Run("unrecognised bytes", func(t *testing.T) {
		st, out := e.call(t, bankingToken, "POST", "/v1/keys/cust-a/sign", map[string]any{"message": b64("pay 1000000 to mallory")})
		check(t, st, out, 422, "transaction_not_recognised")
		st, out = e.call(t, bankingToken, "POST", "/v1/keys/cust-a/sign", map[string]any{"message": b64(`{"type":"keyward.transfer.v1","amount":"-5"}`)})
		check(t, st, out, 422, "transaction_not_recognised")
	})

	id := e.requestSign(t, "cust-a", msg)
	n := e.lastNotice(t, "cust-a")
	t.Run("the requester never sees the holder token", func(t *testing.T) {
		out := e.poll(t, id, "0s")
		if strings.Contains(fmt.Sprint(out), n.HolderToken) {
			t.Fatal("poll answer holds the holder token")
		}
	})
	t.Run("second request while pending", func(t *testing.T) {
		st, out := e.call(t, bankingToken, "POST", "/v1/keys/cust-a/sign", map[string]any{"message": base64.StdEncoding.EncodeToString(transferJSON(t, "Mallory", "99999.00", "bypass-2"))})
		check(t, st, out, 409, "confirmation_pending")
	})
	t.Run("another client polls or cancels", func(t *testing.T) {
		st, out := e.call(t, intruderToken, "GET", "/v1/confirmations/"+id, nil)
		check(t, st, out, 404, "confirmation_not_found")
		st, out = e.call(t, intruderToken, "DELETE", "/v1/confirmations/"+id, nil)
		check(t, st, out, 404, "confirmation_not_found")
	})
	t.Run("the confirmation id is not a holder credential", func(t *testing.T) {
		st, out := e.approve(t, strings.Repeat("A", 43), "cust-a", digestHex(msg), holderPIN)
		check(t, st, out, 404, "confirmation_not_found")
		st, out = e.approve(t, id, "cust-a", digestHex(msg), holderPIN)
		check(t, st, out, 404, "confirmation_not_found")
	})
	t.Run("API routes are not on the confirmation endpoint", func(t *testing.T) {
		st, _ := callAt(t, e.confirmURL, bankingToken, "POST", "/v1/keys/cust-a/sign", map[string]any{"message": b64msg})
		if st != 404 {
			t.Fatalf("status %d", st)
		}
	})
	t.Run("approve another key's confirmation", func(t *testing.T) {
		// cust-b's holder, with cust-b's PIN, tries cust-a's confirmation.
		st, out := e.approve(t, n.HolderToken, "cust-b", digestHex(msg), holderPIN)
		check(t, st, out, 409, "confirmation_mismatch")
		if out := e.poll(t, id, "0s"); out["status"] != "pending" {
			t.Fatalf("after a foreign approval: %v", out)
		}
	})
	t.Run("approve with a wrong PIN, then replay the approval", func(t *testing.T) {
		st, out := e.approve(t, n.HolderToken, "cust-a", digestHex(msg), "Wrong-pin-1")
		check(t, st, out, 403, "holder_pin_incorrect")
		if m, _ := out["error"].(map[string]any); !strings.Contains(fmt.Sprint(m["message"]), "5 of 6 tries left") {
			t.Fatalf("message %v", m)
		}
		st, out = e.approve(t, n.HolderToken, "cust-a", digestHex(msg), holderPIN)
		if st != 200 || out["status"] != "approved" {
			t.Fatalf("approve: %d %v", st, out)
		}
		st, out = e.approve(t, n.HolderToken, "cust-a", digestHex(msg), holderPIN)
		check(t, st, out, 409, "confirmation_closed")
		st, out = callAt(t, e.confirmURL, "", "POST", "/confirm/v1/c/"+n.HolderToken+"/reject", map[string]any{"key": "cust-a"})
		check(t, st, out, 409, "confirmation_closed")
	})
	t.Run("change the bytes after display", func(t *testing.T) {
		shown := transferJSON(t, "Li Lei", "12.00", "bypass-3")
		swapped := transferJSON(t, "Mallory", "12000.00", "bypass-3")
		id := e.requestSign(t, "cust-a", shown)
		n := e.lastNotice(t, "cust-a")
		st, out := e.approve(t, n.HolderToken, "cust-a", digestHex(swapped), holderPIN)
		check(t, st, out, 409, "confirmation_mismatch")
		out = e.poll(t, id, "0s")
		if out["status"] != "rejected" || out["signature"] != nil {
			t.Fatalf("after a mismatching approval: %v", out)
		}
		// And the holder can't approve it afterwards either.
		st, out = e.approve(t, n.HolderToken, "cust-a", digestHex(shown), holderPIN)
		check(t, st, out, 409, "confirmation_closed")
	})
	t.Run("reject", func(t *testing.T) {
		id := e.requestSign(t, "cust-b", transferJSON(t, "Li Lei", "1.00", "bypass-4"))
		n := e.lastNotice(t, "cust-b")
		st, out := callAt(t, e.confirmURL, "", "POST", "/confirm/v1/c/"+n.HolderToken+"/reject", map[string]any{"key": "cust-b"})
		if st != 200 || out["status"] != "rejected" {
			t.Fatalf("reject: %d %v", st, out)
		}
		if out := e.poll(t, id, "0s"); out["status"] != "rejected" || out["signature"] != nil {
			t.Fatalf("after reject: %v", out)
		}
	})
	t.Run("enrol twice", func(t *testing.T) {
		st, out := callAt(t, e.confirmURL, "", "POST", "/confirm/v1/enrol", map[string]any{"key": "cust-a", "setup_code": "AAAAAAAAAAAAAAAA", "pin": "Other-pin-42x"})
		check(t, st, out, 409, "confirmation_closed")
	})

	ops := e.auditOps(t)
	for _, want := range []string{
		"sign-request/confirmation_required cust-a", "sign-batch/confirmation_required cust-a",
		"sign-request/transaction_not_recognised cust-a", "sign-request/confirmation_pending cust-a",
		"confirm-poll/confirmation_not_found cust-a", "confirm-approve/confirmation_not_found",
		"confirm-approve/confirmation_mismatch cust-a confirmation=", "holder-pin/holder_pin_incorrect cust-a",
		"confirm-approve/confirmation_closed cust-a", "confirm-reject/confirmation_closed cust-a",
		"confirm-reject/ok cust-b", "holder-enrol/confirmation_closed cust-a",
	} {
		if !hasAudit(ops, want) {
			t.Errorf("audit lacks %q", want)
		}
	}
	for _, o := range ops {
		if strings.Contains(o, holderPIN) || strings.Contains(o, n.HolderToken) {
			t.Fatalf("audit record holds a secret: %s", o)
		}
	}
	if err := e.svc.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rep, err := e.svc.VerifyAudit(); err != nil {
		t.Fatalf("audit chain: %v %+v", err, rep)
	}
}

// TestConfirmTimeout: an unanswered confirmation expires, its bytes are
// dropped, nothing is signed and the key takes the next request (R-DC-4).
func TestConfirmTimeout(t *testing.T) {
	e := &keysvcEnv{tok: mustNewToken(t, token.KindHSM), dbPath: t.TempDir() + "/keysvc.db", clock: &fakeClock{t: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)}, confirmTimeout: 400 * time.Millisecond}
	e.start(t)
	e.confirmKey(t, "cust-t", "ec-p256", "wrapped")
	msg := transferJSON(t, "Li Lei", "5.00", "timeout-1")
	id := e.requestSign(t, "cust-t", msg)
	n := e.lastNotice(t, "cust-t")
	out := e.poll(t, id, "5s")
	if out["status"] != "expired" || out["signature"] != nil {
		t.Fatalf("after the timeout: %v", out)
	}
	st, body := e.approve(t, n.HolderToken, "cust-t", digestHex(msg), holderPIN)
	if st != 409 || errCode(body) != "confirmation_closed" {
		t.Fatalf("late approval: %d %v", st, body)
	}
	e.requestSign(t, "cust-t", msg) // the state was reset
	if !hasAudit(e.auditOps(t), "confirm-expire/ok cust-t") {
		t.Fatal("expiry not audited")
	}
}

// TestConfirmHolderLock: six wrong PINs lock the holder (R-TOK-5); the
// lock survives a restart; the banking client can't lift it; the security
// officer can.
func TestConfirmHolderLock(t *testing.T) {
	e := newKeysvcEnv(t)
	e.confirmKey(t, "cust-l", "ec-p256", "wrapped")
	msg := transferJSON(t, "Li Lei", "5.00", "lock-1")
	id := e.requestSign(t, "cust-l", msg)
	n := e.lastNotice(t, "cust-l")
	for i := 1; i <= 6; i++ {
		st, out := e.approve(t, n.HolderToken, "cust-l", digestHex(msg), fmt.Sprintf("Wrong-%d-pin", i))
		want, code := 403, "holder_pin_incorrect"
		if i == 6 {
			want, code = 423, "holder_locked"
		}
		if st != want || errCode(out) != code {
			t.Fatalf("wrong PIN %d: %d %v", i, st, out)
		}
	}
	if out := e.poll(t, id, "0s"); out["status"] != "rejected" {
		t.Fatalf("confirmation after the lock: %v", out)
	}
	lockedNow := func(t *testing.T) {
		t.Helper()
		st, out := e.call(t, bankingToken, "POST", "/v1/keys/cust-l/sign", map[string]any{"message": base64.StdEncoding.EncodeToString(msg)})
		if st != 423 || errCode(out) != "holder_locked" {
			t.Fatalf("sign on a locked holder: %d %v", st, out)
		}
	}
	lockedNow(t)
	e.stop()
	e.start(t)
	lockedNow(t)
	k := e.must(t, 200, officerToken, "GET", "/v1/keys/cust-l", nil)
	if h, _ := k["holder"].(map[string]any); h["locked"] != true || h["failures"] != float64(6) {
		t.Fatalf("holder after restart: %v", k["holder"])
	}
	if st, out := e.call(t, bankingToken, "POST", "/v1/keys/cust-l/holder/unlock", nil); st != 403 {
		t.Fatalf("banking unlocks: %d %v", st, out)
	}
	e.must(t, 200, officerToken, "POST", "/v1/keys/cust-l/holder/unlock", nil)
	id = e.requestSign(t, "cust-l", msg)
	n = e.lastNotice(t, "cust-l")
	if st, out := e.approve(t, n.HolderToken, "cust-l", digestHex(msg), holderPIN); st != 200 || out["status"] != "approved" {
		t.Fatalf("approve after unlock: %d %v", st, out)
	}
	if out := e.poll(t, id, "5s"); out["status"] != "approved" {
		t.Fatalf("poll: %v", out)
	}
	// Reset: the old PIN no longer works; the new setup code enrols a new one.
	out := e.must(t, 200, officerToken, "POST", "/v1/keys/cust-l/holder/reset", nil)
	code, _ := out["holder_setup_code"].(string)
	st, body := e.call(t, bankingToken, "POST", "/v1/keys/cust-l/sign", map[string]any{"message": base64.StdEncoding.EncodeToString(msg)})
	if st != 409 || errCode(body) != "holder_not_enrolled" || code == "" {
		t.Fatalf("after reset: %d %v (code %q)", st, body, code)
	}
	if st, out := callAt(t, e.confirmURL, "", "POST", "/confirm/v1/enrol", map[string]any{"key": "cust-l", "setup_code": code, "pin": "New-pin-5183"}); st != 200 {
		t.Fatalf("re-enrol: %d %v", st, out)
	}
	ops := e.auditOps(t)
	for _, want := range []string{"holder-pin/holder_locked cust-l", "holder-unlock/ok cust-l", "holder-reset/ok cust-l", "holder-enrol/ok cust-l", "holder-unlock/forbidden cust-l"} {
		if !hasAudit(ops, want) {
			t.Errorf("audit lacks %q", want)
		}
	}
}

// TestConfirmConcurrent: confirmations for many customers at once all end
// as their holders decide: approved ones verify, rejected ones carry no
// signature, one wrong PIN on the way changes nothing.
func TestConfirmConcurrent(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	// Every holder enrols from this one address: lift the per-address
	// enrolment limit (TestEnrolRateLimited tests it).
	e := &keysvcEnv{tok: mustNewToken(t, token.KindHSM), dbPath: t.TempDir() + "/keysvc.db", clock: &fakeClock{t: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)}, enrolPerMinute: 100000}
	e.start(t)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			e.confirmKey(t, fmt.Sprintf("cc-%04d", i), "ec-p256", "wrapped")
		}(i)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var approved, rejected, bad atomic.Int64
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			key := fmt.Sprintf("cc-%04d", i)
			msg := transferJSON(t, fmt.Sprintf("Payee %d", i), fmt.Sprintf("%d.%02d", 1+i, i%100), "cc-"+key)
			id := e.requestSign(t, key, msg)
			// The holder side runs on its own goroutine, from the notice.
			done := make(chan struct{})
			go func() {
				defer close(done)
				nt := e.lastNotice(t, key)
				switch i % 3 {
				case 0:
					e.approve(t, nt.HolderToken, key, digestHex(msg), holderPIN)
				case 1:
					callAt(t, e.confirmURL, "", "POST", "/confirm/v1/c/"+nt.HolderToken+"/reject", map[string]any{"key": key})
				case 2:
					e.approve(t, nt.HolderToken, key, digestHex(msg), "Wrong-pin-77")
					e.approve(t, nt.HolderToken, key, digestHex(msg), holderPIN)
				}
			}()
			out := e.poll(t, id, "30s")
			<-done
			if out["status"] == "pending" {
				out = e.poll(t, id, "30s")
			}
			switch {
			case i%3 == 1 && out["status"] == "rejected" && out["signature"] == nil:
				rejected.Add(1)
			case i%3 != 1 && out["status"] == "approved":
				v := e.must(t, 200, bankingToken, "POST", "/v1/keys/"+key+"/verify", map[string]any{"message": base64.StdEncoding.EncodeToString(msg), "signature": out["signature"]})
				if v["valid"] != true {
					bad.Add(1)
					t.Errorf("%s: signature does not verify", key)
					return
				}
				approved.Add(1)
			default:
				bad.Add(1)
				t.Errorf("%s (case %d): ended %v", key, i%3, out)
			}
		}(i)
	}
	wg.Wait()
	t.Logf("%d confirmations: %d approved and verified, %d rejected, %d wrong", n, approved.Load(), rejected.Load(), bad.Load())
	if int(approved.Load()+rejected.Load()) != n {
		t.Fatalf("only %d of %d ended correctly", approved.Load()+rejected.Load(), n)
	}
}
