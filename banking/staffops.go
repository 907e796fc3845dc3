package banking

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keyward/keyward/banking/auth/bruteforce"
	"github.com/keyward/keyward/banking/auth/mask"
	"github.com/keyward/keyward/banking/ledger"
)

// The acts behind the staff routes a supervisor or teller performs for a
// customer at the counter (issue 18 items 5-6). The HTTP layer
// authenticates the person, checks the role and records every request in
// the audit trail (http_staff.go); these methods do the work.

var customerIDRE = regexp.MustCompile(`^c[0-9]{12}$`)

// staffCustomer returns the customer a staff route names.
func (b *Bank) staffCustomer(id string) (*Customer, error) {
	if !customerIDRE.MatchString(id) {
		return nil, invalid("customer id must be c and 12 digits (as enrolment returned it)")
	}
	return b.Customer(id)
}

// Unlocked is what UnlockLogin did.
type Unlocked struct {
	Customer    string    `json:"customer"`
	WasLocked   bool      `json:"was_locked"`
	LockedUntil time.Time `json:"locked_until,omitzero"` // the lock that was lifted
	Failures    int       `json:"failures"`              // failed logins counted before the unlock
}

// UnlockLogin lifts a customer's login lock at once and clears the count
// of failed logins (bruteforce.Guard.UnlockAccount). The guard counts by
// login name — it must, before the password is checked nobody knows which
// customer is meant — so the customer's login name is unlocked. A lock of
// a source address is left alone: it protects every customer from that
// network. Whoever calls this has checked the customer's identity.
func (b *Bank) UnlockLogin(ctx context.Context, customerID string) (Unlocked, error) {
	c, err := b.staffCustomer(customerID)
	if err != nil {
		return Unlocked{}, err
	}
	st, err := b.guard.AccountStatus(c.Login)
	if err != nil {
		return Unlocked{}, err
	}
	if err := b.guard.UnlockAccount(ctx, c.Login); err != nil {
		return Unlocked{}, fmt.Errorf("banking: unlock: %w", err)
	}
	return Unlocked{Customer: c.ID, WasLocked: !st.LockedUntil.IsZero(), LockedUntil: st.LockedUntil, Failures: st.Failures}, nil
}

// PhoneChanged is what ChangePhone did. Numbers are masked.
type PhoneChanged struct {
	Customer      string   `json:"customer"`
	OldPhone      string   `json:"old_phone"`
	NewPhone      string   `json:"new_phone"`
	SessionsEnded int      `json:"sessions_ended"`
	Notified      []string `json:"notified"`                // numbers the notice reached
	NoticeFailed  []string `json:"notice_failed,omitempty"` // numbers the gateway refused (the change stands)
}

// maxIdentityChecked bounds the teller's statement of how identity was
// checked.
const maxIdentityChecked = 64

// checkIdentityStatement accepts "resident ID card ending 002X",
// "passport ending 4471": a non-empty line of at most 64 characters that
// is not a whole ID number. Fifteen or more digits read as one (a
// mainland ID number has 15 or 18), and the audit trail must never hold
// one.
func checkIdentityStatement(s string) error {
	n, digits := utf8.RuneCountInString(s), 0
	for _, r := range s {
		if unicode.IsDigit(r) {
			digits++
		}
		if unicode.IsControl(r) {
			return invalid("identity_checked must be one line")
		}
	}
	switch {
	case strings.TrimSpace(s) == "":
		return invalid(`identity_checked is required: say how you checked the customer's identity, e.g. "resident ID card ending 002X"`)
	case n > maxIdentityChecked:
		return invalid("identity_checked must be at most %d characters: the document type and its last 4 characters", maxIdentityChecked)
	case digits >= 15:
		return invalid("identity_checked must not hold the document's number: give its type and last 4 characters only")
	}
	return nil
}

// ChangePhone replaces a customer's registered mobile number at the
// counter (issue 18 item 5, seed 6.2.3.2): only through a teller who has
// checked the customer's identity (identityChecked, validated here, goes
// to the audit trail). Every open session of the customer ends (whoever
// holds one was let in on the old second channel); trusted devices stay.
// A security notice — never a code — goes to the old number and to the
// new one; a notice the gateway refuses does not undo the change (the
// answer names it, and the log).
func (b *Bank) ChangePhone(ctx context.Context, customerID, phone, identityChecked string) (PhoneChanged, error) {
	if err := checkIdentityStatement(identityChecked); err != nil {
		return PhoneChanged{}, err
	}
	if !phoneRE.MatchString(phone) {
		return PhoneChanged{}, invalid("phone must be an 11-digit mainland mobile number")
	}
	if _, err := b.staffCustomer(customerID); err != nil {
		return PhoneChanged{}, err
	}
	var old string
	err := b.updateCustomer(customerID, func(c *Customer) bool {
		old = c.Phone
		if c.Phone == phone {
			return false
		}
		c.Phone = phone
		return true
	})
	if err != nil {
		return PhoneChanged{}, err
	}
	if old == phone {
		return PhoneChanged{}, invalid("%s is already the customer's registered number", mask.Phone(phone))
	}
	res := PhoneChanged{Customer: customerID, OldPhone: mask.Phone(old), NewPhone: mask.Phone(phone)}
	if res.SessionsEnded, err = b.sessions.LogoutAll(ctx, customerID); err != nil {
		// The number is changed; the sessions must still end. Say so.
		return res, fmt.Errorf("banking: the phone was changed but the customer's sessions could not be ended; try again: %w", err)
	}
	at := b.now()
	for _, n := range []struct{ phone, text string }{
		{old, phoneNoticeOld(res.NewPhone, at)},
		{phone, phoneNoticeNew(res.OldPhone, at)},
	} {
		if err := b.otps.Notify(ctx, n.phone, n.text); err != nil {
			by, _ := staffFrom(ctx)
			b.log.WarnContext(ctx, "phone change: the security notice was not sent; tell the customer in person", "customer", customerID, "phone", mask.Phone(n.phone), "staff", by.ID, "err", err)
			res.NoticeFailed = append(res.NoticeFailed, mask.Phone(n.phone))
			continue
		}
		res.Notified = append(res.Notified, mask.Phone(n.phone))
	}
	return res, nil
}

// maxReason bounds a limit override's stated reason.
const maxReason = 200

// OverrideLimits sets a customer account's limits beyond the ceiling the
// customer may set themselves (ledger.OverrideLimits): a supervisor's act,
// with a reason (1-200 characters on one line) that goes to the audit
// trail.
func (b *Bank) OverrideLimits(ctx context.Context, account, perTx, daily, reason string) (ledger.Account, error) {
	if n := utf8.RuneCountInString(strings.TrimSpace(reason)); n == 0 || utf8.RuneCountInString(reason) > maxReason || strings.ContainsFunc(reason, unicode.IsControl) {
		return ledger.Account{}, invalid("reason is required: one line of at most %d characters saying why the customer needs these limits", maxReason)
	}
	a, err := b.Ledger.Account(ctx, account)
	if err != nil {
		return ledger.Account{}, err
	}
	var lim ledger.Limits
	if lim.PerTransaction, err = ledger.ParseAmount(perTx, a.Currency); err != nil {
		return ledger.Account{}, err
	}
	if lim.Daily, err = ledger.ParseAmount(daily, a.Currency); err != nil {
		return ledger.Account{}, err
	}
	return b.Ledger.OverrideLimits(ctx, account, lim)
}

// lockedErr turns a *bruteforce.LockedError into the message-bearing error the customer reads (lockMessage);
// other errors pass through.
func (b *Bank) lockedErr(err error) error {
	var le *bruteforce.LockedError
	if errors.As(err, &le) {
		return &lockedLogin{le: le, msg: lockMessage(le, b.now())}
	}
	return err
}
