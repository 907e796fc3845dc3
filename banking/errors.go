package banking

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/keyward/keyward/banking/auth/bruteforce"
	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/auth/password"
	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/keysvc/wire"
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

// errorRow maps a sentinel to its HTTP status and stable code.
type errorRow struct {
	err    error
	status int
	code   string
}

// errorTable is the one list of what clients see; the first match wins.
var errorTable = []errorRow{
	{ErrInvalid, http.StatusBadRequest, "invalid_request"},
	{ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated"},
	{session.ErrNotFound, http.StatusUnauthorized, "unauthenticated"},
	{session.ErrExpired, http.StatusUnauthorized, "session_expired"},
	{ErrLoginFailed, http.StatusUnauthorized, "login_failed"},
	{bruteforce.ErrLocked, http.StatusTooManyRequests, "temporarily_locked"},
	{password.ErrChallengeUsed, http.StatusBadRequest, "challenge_used"},
	{password.ErrChallengeExpired, http.StatusBadRequest, "challenge_expired"},
	{password.ErrChallengeUnknown, http.StatusBadRequest, "challenge_unknown"},
	{password.ErrChallengeMismatch, http.StatusBadRequest, "challenge_mismatch"},
	{ErrStepUp, http.StatusForbidden, "step_up_required"},
	{session.ErrStepUpRequired, http.StatusForbidden, "step_up_required"},
	{otp.ErrOTPInvalid, http.StatusForbidden, "otp_invalid"},
	{otp.ErrOTPLocked, http.StatusForbidden, "otp_locked"},
	{otp.ErrOTPExpired, http.StatusForbidden, "otp_expired"},
	{otp.ErrOTPUsed, http.StatusForbidden, "otp_used"},
	{otp.ErrOTPNotFound, http.StatusForbidden, "otp_not_found"},
	{otp.ErrOTPFormat, http.StatusBadRequest, "otp_format"},
	{otp.ErrRateLimited, http.StatusTooManyRequests, "otp_rate_limited"},
	{ErrMakerChecker, http.StatusForbidden, "maker_checker_required"},
	{ErrForbidden, http.StatusForbidden, "forbidden"},
	{ErrNotFound, http.StatusNotFound, "not_found"},
	{ErrExists, http.StatusConflict, "exists"},
	{ErrOrderMismatch, http.StatusUnprocessableEntity, "order_mismatch"},
	{ErrBadSignature, http.StatusUnprocessableEntity, "signature_invalid"},
	{ErrCustomerBlocked, http.StatusForbidden, "customer_blocked"},
	{ErrBlocked, http.StatusForbidden, "payee_blocked"},
	{ledger.ErrBlocked, http.StatusForbidden, "payee_blocked"}, // its text names the list line: not shown, see classify
	{ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
}

// ledgerStatus is the HTTP status of each ledger code (ledger.ErrorCodes).
var ledgerStatus = map[int][]error{
	http.StatusUnprocessableEntity: {ledger.ErrInsufficientFunds, ledger.ErrLimitExceeded, ledger.ErrCurrencyMismatch, ledger.ErrSameAccount},
	http.StatusConflict:            {ledger.ErrIdempotencyConflict, ledger.ErrAccountFrozen, ledger.ErrAccountClosed},
	http.StatusNotFound:            {ledger.ErrAccountNotFound},
}

// classify returns what the client sees of err. internal is true when the
// error is not for clients (it is logged; the client gets a fixed text).
func classify(err error) (status int, code, message string, internal bool) {
	for _, r := range errorTable {
		if errors.Is(err, r.err) {
			switch r.code { // never echo screening-list details
			case "payee_blocked":
				return r.status, r.code, "the transfer is refused: the payee or account is on the bank's screening list", false
			case "customer_blocked":
				return r.status, r.code, "enrolment refused: the customer is on the bank's screening list", false
			}
			return r.status, r.code, err.Error(), false
		}
	}
	for st, errs := range ledgerStatus {
		for _, e := range errs {
			if errors.Is(err, e) {
				return st, ledgerCode(err), err.Error(), false
			}
		}
	}
	for _, e := range []error{ledger.ErrInvalidArgument, ledger.ErrInvalidAmount, ledger.ErrUnknownCurrency, password.ErrWeak} {
		if errors.Is(err, e) {
			return http.StatusBadRequest, "invalid_request", err.Error(), false
		}
	}
	return http.StatusInternalServerError, "internal", "internal error; the incident has been logged", true
}

func ledgerCode(err error) string {
	for _, c := range ledger.ErrorCodes {
		if errors.Is(err, c.Err) {
			return c.Code
		}
	}
	return "ledger_refused"
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
