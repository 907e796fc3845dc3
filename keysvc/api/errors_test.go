package api_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/keyward/keyward/keysvc/api"
	"github.com/keyward/keyward/keysvc/wire"
)

func TestErrorTable(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{wire.ErrInvalidArgument, 400, "invalid_argument"},
		{wire.ErrKeyNotFound, 404, "key_not_found"},
		{wire.ErrVersionNotFound, 404, "version_not_found"},
		{wire.ErrKeyExists, 409, "key_exists"},
		{wire.ErrIllegalTransition, 409, "illegal_transition"},
		{wire.ErrVersionNotUsable, 409, "version_not_usable"},
		{wire.ErrWrongPurpose, 400, "wrong_purpose"},
		{wire.ErrForbidden, 403, "forbidden"},
		{wire.ErrUnauthenticated, 401, "unauthenticated"},
		{wire.ErrInvalidCiphertext, 400, "invalid_ciphertext"},
		{wire.ErrInvalidSignature, 400, "invalid_signature"},
		{wire.ErrDecrypt, 400, "decryption_failed"},
		{wire.ErrTokenUnavailable, 503, "token_unavailable"},
		{wire.ErrTokenLocked, 503, "token_locked"},
		{wire.ErrAuditUnavailable, 503, "audit_unavailable"},
		{wire.ErrStore, 503, "store_unavailable"},
		{wire.ErrConfirmationRequired, 409, "confirmation_required"},
		{wire.ErrTransactionNotRecognised, 422, "transaction_not_recognised"},
		{wire.ErrConfirmationPending, 409, "confirmation_pending"},
		{wire.ErrConfirmationNotFound, 404, "confirmation_not_found"},
		{wire.ErrConfirmationClosed, 409, "confirmation_closed"},
		{wire.ErrConfirmationMismatch, 409, "confirmation_mismatch"},
		{wire.ErrHolderPIN, 403, "holder_pin_incorrect"},
		{wire.ErrHolderLocked, 423, "holder_locked"},
		{wire.ErrHolderNotEnrolled, 409, "holder_not_enrolled"},
		{wire.ErrConfirmUnavailable, 503, "confirmation_unavailable"},
	}
	if len(tests) != len(api.ErrorTableCodes()) {
		t.Fatalf("the test covers %d rows, the table has %d", len(tests), len(api.ErrorTableCodes()))
	}
	e := newEnv(t)
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			if api.ErrorTableCodes()[tc.err] != tc.code {
				t.Fatalf("table maps %v to %q", tc.err, api.ErrorTableCodes()[tc.err])
			}
			err := fmt.Errorf("key %q: %w", "k1", tc.err)
			e.be.setErr("GetKey", err)
			r := e.req("GET", "/v1/keys/k1", aliceToken, "")
			r.expect(t, tc.status, tc.code)
			if r.msg != err.Error() {
				t.Errorf("message = %q, want %q", r.msg, err.Error())
			}
		})
	}
}

func TestInternalErrorIsNotShown(t *testing.T) {
	e := newEnv(t)
	secret := "CKR_DEVICE_ERROR in slot 3, label SECRET-LABEL"
	e.be.setErr("Sign", errors.New(secret))
	r := e.req("POST", "/v1/keys/k1/sign", aliceToken, `{"digest":"AAAA"}`)
	r.expect(t, 500, "internal")
	if strings.Contains(string(r.body), "CKR") || strings.Contains(string(r.body), "SECRET") {
		t.Errorf("internal detail leaked: %s", r.body)
	}
	if !strings.Contains(e.logs.String(), "CKR_DEVICE_ERROR") {
		t.Errorf("the real error was not logged: %s", e.logs.String())
	}
}

func TestReadyz(t *testing.T) {
	e := newEnv(t)
	r := e.req("GET", "/readyz", "", "")
	if r.status != 200 || !strings.Contains(string(r.body), `"ready"`) {
		t.Fatalf("readyz = %d %s", r.status, r.body)
	}
	e.be.mu.Lock()
	e.be.ready = fmt.Errorf("pool: %w", wire.ErrTokenUnavailable)
	e.be.mu.Unlock()
	e.req("GET", "/readyz", "", "").expect(t, 503, "token_unavailable")

	e.be.mu.Lock()
	e.be.ready = errors.New("bolt: disk I/O error on /var/lib/secret")
	e.be.mu.Unlock()
	r = e.req("GET", "/readyz", "", "")
	r.expect(t, 503, "not_ready")
	if strings.Contains(string(r.body), "secret") {
		t.Errorf("detail leaked: %s", r.body)
	}
	r = e.req("GET", "/healthz", "", "")
	if r.status != 200 || string(r.body) != `{"status":"ok"}` {
		t.Errorf("healthz = %d %s", r.status, r.body)
	}
}

func TestPanicIsInternal(t *testing.T) {
	e := newEnv(t)
	e.be.mu.Lock()
	e.be.panicOn = "Decrypt"
	e.be.mu.Unlock()
	r := e.req("POST", "/v1/keys/k1/decrypt", aliceToken, `{"ciphertext":"kw:v1:AA=="}`)
	r.expect(t, 500, "internal")
	if strings.Contains(string(r.body), "boom") {
		t.Errorf("panic value leaked: %s", r.body)
	}
	if !strings.Contains(e.logs.String(), "boom") {
		t.Error("panic not logged")
	}
	e.req("GET", "/v1/keys/k1", aliceToken, "").expect(t, 200, "")
}

func TestDefaultBodyLimit(t *testing.T) {
	e := newEnv(t)
	big := `{"plaintext":"` + strings.Repeat("A", 1<<20) + `"}`
	e.req("POST", "/v1/keys/k1/encrypt", aliceToken, big).expect(t, 413, "body_too_large")
	fits := `{"plaintext":"` + strings.Repeat("A", 1<<20-100) + `"}`
	e.req("POST", "/v1/keys/k1/encrypt", aliceToken, fits).expect(t, 200, "")
}
