package ledger

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Every error the ledger returns wraps exactly one of them
// (a *LimitError matches ErrLimitExceeded), so callers decide with
// errors.Is and never by matching text. The wrapped messages are written for
// an operator or a customer to act on; they never hold secrets.
var (
	ErrInvalidArgument     = errors.New("invalid argument")
	ErrInvalidAmount       = errors.New("invalid amount")
	ErrUnknownCurrency     = errors.New("unknown currency")
	ErrAccountNotFound     = errors.New("account not found")
	ErrAccountExists       = errors.New("account already exists")
	ErrAccountFrozen       = errors.New("account frozen")
	ErrAccountClosed       = errors.New("account closed")
	ErrIllegalTransition   = errors.New("illegal account state change")
	ErrCurrencyMismatch    = errors.New("currency mismatch")
	ErrSameAccount         = errors.New("payer and payee are the same account")
	ErrInsufficientFunds   = errors.New("insufficient funds")
	ErrLimitExceeded       = errors.New("transfer limit exceeded")
	ErrIdempotencyConflict = errors.New("idempotency key already used for a different request")
	ErrBlocked             = errors.New("account blocked by the screening list")
	ErrTransferNotFound    = errors.New("transfer not found")
	ErrCorrupt             = errors.New("ledger invariant violated")
	ErrStore               = errors.New("ledger store error")
)

// ErrorCodes gives each sentinel a stable code for the HTTP layer's error
// table and for logs. When an error wraps two sentinels the first row that
// matches wins. ErrCorrupt and ErrStore are server faults: show the client
// a generic message (R-SRV-4).
var ErrorCodes = []struct {
	Err  error
	Code string
}{
	{ErrLimitExceeded, "limit_exceeded"},
	{ErrInvalidAmount, "invalid_amount"},
	{ErrUnknownCurrency, "unknown_currency"},
	{ErrInvalidArgument, "invalid_argument"},
	{ErrAccountNotFound, "account_not_found"},
	{ErrAccountExists, "account_exists"},
	{ErrAccountFrozen, "account_frozen"},
	{ErrAccountClosed, "account_closed"},
	{ErrIllegalTransition, "illegal_transition"},
	{ErrCurrencyMismatch, "currency_mismatch"},
	{ErrSameAccount, "same_account"},
	{ErrInsufficientFunds, "insufficient_funds"},
	{ErrIdempotencyConflict, "idempotency_conflict"},
	{ErrBlocked, "blocked"},
	{ErrTransferNotFound, "transfer_not_found"},
	{ErrCorrupt, "ledger_corrupt"},
	{ErrStore, "ledger_unavailable"},
}

// ErrorCode returns the stable code of err ("" when no sentinel matches).
func ErrorCode(err error) string {
	for _, c := range ErrorCodes {
		if errors.Is(err, c.Err) {
			return c.Code
		}
	}
	return ""
}

// LimitKind says which limit a transfer exceeded.
type LimitKind uint8

const (
	LimitPerTransaction LimitKind = iota + 1
	LimitDaily
)

func (k LimitKind) String() string {
	switch k {
	case LimitPerTransaction:
		return "per-transaction"
	case LimitDaily:
		return "daily"
	}
	return "unspecified"
}

// LimitError is the ErrLimitExceeded a transfer gets: it says which limit,
// how much was asked, and how much may still be sent, so the message can be
// shown to the customer as is (R-SRV-7).
type LimitError struct {
	Account   string
	Currency  string
	Kind      LimitKind
	Limit     int64     // the limit, minor units
	Requested int64     // the transfer's amount
	UsedToday int64     // sent today before this transfer (daily only)
	Remaining int64     // what may still be sent in one transfer now
	ResetsAt  time.Time // next day boundary in the ledger's zone (daily only)
}

func (e *LimitError) Error() string {
	amt := func(v int64) string { return FormatAmount(v, e.Currency) + " " + e.Currency }
	if e.Kind == LimitDaily {
		return fmt.Sprintf("%v: daily limit of account %s is %s; %s already sent today, so at most %s more until %s; %s requested",
			ErrLimitExceeded, e.Account, amt(e.Limit), amt(e.UsedToday), amt(e.Remaining),
			e.ResetsAt.Format("2006-01-02 15:04 MST"), amt(e.Requested))
	}
	return fmt.Sprintf("%v: per-transaction limit of account %s is %s; %s requested (split it, or raise the limit after re-authenticating)",
		ErrLimitExceeded, e.Account, amt(e.Limit), amt(e.Requested))
}

// Is makes errors.Is(err, ErrLimitExceeded) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimitExceeded }
