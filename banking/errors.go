package banking

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/keyward/keyward/banking/auth/bruteforce"
	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/auth/password"
	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/banking/captcha"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/staff"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

// Sentinel errors of the banking layer. Messages wrapped around them are
// for the customer to act on; none holds a secret.
var (
	ErrInvalid         = errors.New("invalid request")
	ErrUnauthenticated = errors.New("not logged in")
	ErrLoginFailed     = errors.New("wrong login or password")
	ErrStepUp          = errors.New("confirmation by SMS code required")
	ErrForbidden       = errors.New("not allowed")
	// ErrMakerChecker refuses a corporate operator's direct transfer: a
	// corporate account's money moves only by entry, review and
	// authorisation by three different operators (R-AUTH-10).
	ErrMakerChecker    = errors.New("corporate transfers need entry, review and authorisation")
	ErrNotFound        = errors.New("not found")
	ErrExists          = errors.New("already exists")
	ErrOrderMismatch   = errors.New("signed order does not match")
	ErrBadSignature    = errors.New("order signature invalid")
	ErrBlocked         = errors.New("blocked by screening")
	ErrCustomerBlocked = errors.New("customer on the screening list")
	ErrUnavailable     = errors.New("service temporarily unavailable")
)

// errorTable is the one list of what clients see; the first match wins.
// Rows with a Message never show the error's own text (a screening
// error's text names the list line).
var errorTable = append(httpedge.Table{
	{Err: ErrInvalid, Status: http.StatusBadRequest, Code: "invalid_request"},
	{Err: ErrUnauthenticated, Status: http.StatusUnauthorized, Code: "unauthenticated"},
	{Err: session.ErrNotFound, Status: http.StatusUnauthorized, Code: "unauthenticated"},
	{Err: session.ErrExpired, Status: http.StatusUnauthorized, Code: "session_expired"},
	{Err: ErrLoginFailed, Status: http.StatusUnauthorized, Code: "login_failed"},
	{Err: staff.ErrUnknownToken, Status: http.StatusUnauthorized, Code: "unauthenticated", Message: msgStaffToken},
	{Err: staff.ErrExpired, Status: http.StatusUnauthorized, Code: "staff_credential_expired"},
	{Err: staff.ErrRoleRequired, Status: http.StatusForbidden, Code: "staff_role_required"},
	{Err: bruteforce.ErrLocked, Status: http.StatusTooManyRequests, Code: "temporarily_locked"},
	{Err: bruteforce.ErrCaptchaRequired, Status: http.StatusUnauthorized, Code: "captcha_required", Message: captcha.ErrRequired.Error()},
	{Err: captcha.ErrWrong, Status: http.StatusUnauthorized, Code: "captcha_invalid"},
	{Err: captcha.ErrExpired, Status: http.StatusUnauthorized, Code: "captcha_invalid"},
	{Err: captcha.ErrUnknown, Status: http.StatusUnauthorized, Code: "captcha_invalid"},
	{Err: captcha.ErrFormat, Status: http.StatusUnauthorized, Code: "captcha_invalid"},
	{Err: password.ErrChallengeUsed, Status: http.StatusBadRequest, Code: "challenge_used"},
	{Err: password.ErrChallengeExpired, Status: http.StatusBadRequest, Code: "challenge_expired"},
	{Err: password.ErrChallengeUnknown, Status: http.StatusBadRequest, Code: "challenge_unknown"},
	{Err: password.ErrChallengeMismatch, Status: http.StatusBadRequest, Code: "challenge_mismatch"},
	{Err: ErrStepUp, Status: http.StatusForbidden, Code: "step_up_required"},
	{Err: session.ErrStepUpRequired, Status: http.StatusForbidden, Code: "step_up_required"},
	{Err: otp.ErrOTPInvalid, Status: http.StatusForbidden, Code: "otp_invalid"},
	{Err: otp.ErrOTPLocked, Status: http.StatusForbidden, Code: "otp_locked"},
	{Err: otp.ErrOTPExpired, Status: http.StatusForbidden, Code: "otp_expired"},
	{Err: otp.ErrOTPUsed, Status: http.StatusForbidden, Code: "otp_used"},
	{Err: otp.ErrOTPNotFound, Status: http.StatusForbidden, Code: "otp_not_found"},
	{Err: otp.ErrOTPFormat, Status: http.StatusBadRequest, Code: "otp_format"},
	{Err: otp.ErrRateLimited, Status: http.StatusTooManyRequests, Code: "otp_rate_limited"},
	{Err: ErrMakerChecker, Status: http.StatusForbidden, Code: "maker_checker_required"},
	{Err: ErrForbidden, Status: http.StatusForbidden, Code: "forbidden"},
	{Err: ErrNotFound, Status: http.StatusNotFound, Code: "not_found"},
	{Err: ErrExists, Status: http.StatusConflict, Code: "exists"},
	{Err: ErrOrderMismatch, Status: http.StatusUnprocessableEntity, Code: "order_mismatch"},
	{Err: ErrBadSignature, Status: http.StatusUnprocessableEntity, Code: "signature_invalid"},
	{Err: ErrCustomerBlocked, Status: http.StatusForbidden, Code: "customer_blocked", Message: msgCustomerBlocked},
	{Err: ErrBlocked, Status: http.StatusForbidden, Code: "payee_blocked", Message: msgPayeeBlocked},
	{Err: ledger.ErrBlocked, Status: http.StatusForbidden, Code: "payee_blocked", Message: msgPayeeBlocked},
	{Err: ErrUnavailable, Status: http.StatusServiceUnavailable, Code: "unavailable"},
	// The database is down or failing over (store.ErrBackend, also under
	// ledger.ErrStore): nothing was stored, or — for a commit whose outcome
	// was lost with the connection — send the same request again with the
	// same idempotency key to learn which.
	{Err: store.ErrBackend, Status: http.StatusServiceUnavailable, Code: "unavailable", Message: msgStoreUnavailable},
}, ledgerRows()...)

// Fixed texts of the screening refusals: never echo screening-list details.
const (
	msgStoreUnavailable = "the bank's records cannot be reached just now; try again shortly (a transfer sent again with the same order is never applied twice)"
	msgPayeeBlocked     = "the transfer is refused: the payee or account is on the bank's screening list"
	msgCustomerBlocked  = "enrolment refused: the customer is on the bank's screening list"
	msgStaffToken       = "this staff token is not known; send your own personal token (kwst_…) as Authorization: Bearer"
)

// ledgerStatus is the HTTP status of each ledger code (ledger.ErrorCodes).
var ledgerStatus = []struct {
	status int
	errs   []error
}{
	{http.StatusUnprocessableEntity, []error{ledger.ErrInsufficientFunds, ledger.ErrLimitExceeded, ledger.ErrCurrencyMismatch, ledger.ErrSameAccount}},
	{http.StatusConflict, []error{ledger.ErrIdempotencyConflict, ledger.ErrAccountFrozen, ledger.ErrAccountClosed}},
	{http.StatusNotFound, []error{ledger.ErrAccountNotFound}},
}

// ledgerRows are the ledger's refusals (with ledger.ErrorCodes' codes)
// and the invalid arguments of the ledger and the password rules.
func ledgerRows() httpedge.Table {
	var rows httpedge.Table
	for _, g := range ledgerStatus {
		for _, e := range g.errs {
			rows = append(rows, httpedge.Row{Err: e, Status: g.status, Code: ledgerCode(e)})
		}
	}
	for _, e := range []error{ledger.ErrInvalidArgument, ledger.ErrInvalidAmount, ledger.ErrUnknownCurrency, password.ErrWeak} {
		rows = append(rows, httpedge.Row{Err: e, Status: http.StatusBadRequest, Code: "invalid_request"})
	}
	return rows
}

func ledgerCode(err error) string {
	for _, c := range ledger.ErrorCodes {
		if errors.Is(err, c.Err) {
			return c.Code
		}
	}
	return "ledger_refused"
}

// edge is banking's configuration of the shared HTTP edge's classifier:
// banking's table, and one code, invalid_request, for every bad body.
var edge = httpedge.Config{Errors: errorTable, InvalidCode: "invalid_request"}

// classify returns what the client sees of err. internal is true when the
// error is not for clients (it is logged; the client gets a fixed text).
func classify(err error) (status int, code, message string, internal bool) {
	p := edge.Classify(err)
	return p.Status, p.Code, p.Message, p.Internal
}

// kmsErr turns a keysvc failure into what the customer can act on: keysvc
// down or its token unavailable is ErrUnavailable (retry later); anything
// else is internal (logged, not shown).
func kmsErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, wire.ErrTokenUnavailable), errors.Is(err, wire.ErrAuditUnavailable),
		errors.Is(err, wire.ErrStore), errors.Is(err, wire.ErrTokenLocked), isTransport(err):
		return fmt.Errorf("%w: the key service cannot be reached; try again shortly", ErrUnavailable)
	}
	return fmt.Errorf("banking: key service: %w", err)
}

// isTransport reports a network-level failure reaching keysvc (the
// client's *url.Error and net.Error both have Timeout).
func isTransport(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne)
}
