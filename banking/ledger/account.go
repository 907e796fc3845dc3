package ledger

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward/banking/internal/luhn"
)

// AccountIDLen is the length of a customer account number.
const AccountIDLen = 19

// ValidateAccountID checks a customer account number: exactly 19 ASCII
// digits, the first not 0, the last a Luhn (ISO/IEC 7812) check digit over
// the first 18 — the rule of Chinese bank-card style account numbers. It
// catches every single mistyped digit and most swapped neighbours before a
// transfer is even looked up. The bank's own cash accounts (CashAccount)
// deliberately fail this check, so no customer request can name them.
func ValidateAccountID(id string) error {
	if len(id) != AccountIDLen || !allDigits(id) {
		return fmt.Errorf("%w: account number %q must be %d digits", ErrInvalidArgument, truncate(id, 24), AccountIDLen)
	}
	if id[0] == '0' {
		return fmt.Errorf("%w: account number %q must not start with 0", ErrInvalidArgument, id)
	}
	if luhn.CheckDigit(id[:AccountIDLen-1]) != id[AccountIDLen-1] {
		return fmt.Errorf("%w: account number %q has a wrong check digit (mistyped?)", ErrInvalidArgument, id)
	}
	return nil
}

// AccountNumber appends the Luhn check digit to an 18-digit body, giving a
// number ValidateAccountID accepts.
func AccountNumber(body string) (string, error) {
	if len(body) != AccountIDLen-1 || !allDigits(body) || body[0] == '0' {
		return "", fmt.Errorf("%w: account number body %q must be %d digits, not starting with 0",
			ErrInvalidArgument, truncate(body, 24), AccountIDLen-1)
	}
	return body + string(luhn.CheckDigit(body)), nil
}

// randomAccountNumber draws the digits after prefix from crypto/rand.
func randomAccountNumber(prefix string) (string, error) {
	n := AccountIDLen - 1 - len(prefix)
	max := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
	r, err := rand.Int(rand.Reader, max)
	if err != nil {
		return "", fmt.Errorf("%w: random account number: %w", ErrStore, err)
	}
	return AccountNumber(fmt.Sprintf("%s%0*d", prefix, n, r))
}

// cashPrefix starts the id of the bank's cash account of each currency.
const cashPrefix = "bank-cash-"

// CashAccount names the bank's cash account for currency ("bank-cash-CNY").
// Deposits are credited to a customer against it and withdrawals debited
// the other way, so the sum of all balances of a currency, this account
// included, is always zero. It is created by the first deposit, can go
// negative, has no limits, and is never a Transfer party.
func CashAccount(currency string) string { return cashPrefix + currency }

// State is an account's state. The zero value is not a state.
type State uint8

const (
	// StateOpen accounts send and receive.
	StateOpen State = iota + 1
	// StateFrozen accounts neither send nor receive (a full freeze; a
	// receive-only freeze is not modelled). Unfreezing returns to open.
	StateFrozen
	// StateClosed is final; only an account with a zero balance closes.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateOpen:
		return "open"
	case StateFrozen:
		return "frozen"
	case StateClosed:
		return "closed"
	}
	return "unspecified"
}

// MarshalText writes the state's name.
func (s State) MarshalText() ([]byte, error) {
	if s < StateOpen || s > StateClosed {
		return nil, fmt.Errorf("%w: account state %d", ErrInvalidArgument, s)
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads "open", "frozen" or "closed".
func (s *State) UnmarshalText(b []byte) error {
	for _, c := range []State{StateOpen, StateFrozen, StateClosed} {
		if string(b) == c.String() {
			*s = c
			return nil
		}
	}
	return fmt.Errorf("%w: account state %q (open, frozen or closed)", ErrInvalidArgument, truncate(string(b), 16))
}

// Limits are an account's outgoing transfer limits in minor units of its
// currency (R-SRV-7). Zero means nothing may be sent. Deposits and
// withdrawals (teller operations) do not count.
type Limits struct {
	PerTransaction int64 `json:"per_transaction"`
	Daily          int64 `json:"daily"`
}

func (l Limits) validate(currency string, ceiling *Limits) error {
	if l.PerTransaction < 0 || l.Daily < 0 {
		return fmt.Errorf("%w: limits cannot be negative", ErrInvalidAmount)
	}
	if l.PerTransaction > l.Daily {
		return fmt.Errorf("%w: per-transaction limit %s is above the daily limit %s and could never be used",
			ErrInvalidArgument, FormatAmount(l.PerTransaction, currency), FormatAmount(l.Daily, currency))
	}
	if ceiling != nil && (l.PerTransaction > ceiling.PerTransaction || l.Daily > ceiling.Daily) {
		return fmt.Errorf("%w: the bank allows at most %s per transaction and %s a day in %s",
			ErrInvalidArgument, FormatAmount(ceiling.PerTransaction, currency), FormatAmount(ceiling.Daily, currency), currency)
	}
	return nil
}

// Account is one account as stored.
type Account struct {
	ID       string    `json:"id"`
	Owner    string    `json:"owner"`    // customer id; "" for the bank's cash accounts
	Currency string    `json:"currency"` // ISO 4217 alpha-3
	Balance  int64     `json:"balance"`  // minor units
	State    State     `json:"state"`
	Created  time.Time `json:"created"`
	Limits   Limits    `json:"limits"`
	// Day (YYYY-MM-DD in the ledger's zone) and DaySent: what the account
	// sent by Transfer on that day. Read them through Ledger.LimitStatus,
	// which knows the current day.
	Day     string `json:"day,omitempty"`
	DaySent int64  `json:"day_sent,omitempty"`
	// LastSeq is the journal sequence number of the newest posting that
	// touched the account (0: none yet).
	LastSeq uint64 `json:"last_seq"`
}

// System reports whether a is one of the bank's cash accounts.
func (a *Account) System() bool { return a.Owner == "" }

// sentOn returns what the account sent by Transfer on day.
func (a *Account) sentOn(day string) int64 {
	if a.Day == day {
		return a.DaySent
	}
	return 0
}

// usable says why a can take no posting (nil when it can).
func (a *Account) usable() error {
	switch a.State {
	case StateOpen:
		return nil
	case StateFrozen:
		return fmt.Errorf("%w: %s", ErrAccountFrozen, a.ID)
	case StateClosed:
		return fmt.Errorf("%w: %s", ErrAccountClosed, a.ID)
	}
	return fmt.Errorf("%w: account %s has state %d", ErrCorrupt, a.ID, a.State)
}

// validText checks a free-text field: valid UTF-8, at most max runes, no
// control characters (which could hide text in a statement or a receipt).
func validText(field, s string, max int) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidArgument, field)
	}
	if utf8.RuneCountInString(s) > max {
		return fmt.Errorf("%w: %s is longer than %d characters", ErrInvalidArgument, field, max)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return fmt.Errorf("%w: %s holds a control character (U+%04X)", ErrInvalidArgument, field, r)
		}
	}
	return nil
}

// validToken checks an identifier field: 1 to max printable ASCII
// characters, no spaces.
func validToken(field, s string, max int) error {
	if s == "" || len(s) > max {
		return fmt.Errorf("%w: %s must be 1 to %d characters", ErrInvalidArgument, field, max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return fmt.Errorf("%w: %s may hold only printable ASCII without spaces", ErrInvalidArgument, field)
		}
	}
	return nil
}
