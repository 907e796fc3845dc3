package banking

// The customer's own functions of seed clause 7.1 and 6.4.3 (issue 18
// item 5): account history with paging, saved payees, the devices the
// bank knows and the anti-phishing message. Handlers are in
// http_customer.go; every change is recorded in banking's audit trail
// (Bank.audit) as "customer:<id>", refusals with their error code.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/keyward/keyward/banking/auth/device"
	"github.com/keyward/keyward/banking/auth/mask"
	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/banking/internal/kv"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/payee"
	"github.com/keyward/keyward/banking/store"
)

// History limits: a page holds 1 to MaxHistoryLimit entries,
// DefaultHistoryLimit when the request names none.
const (
	DefaultHistoryLimit = 20
	MaxHistoryLimit     = 100
)

// AntiPhishingMax is the longest anti-phishing message a customer may
// choose online, in characters (a Chinese character counts as one).
const AntiPhishingMax = 20

// ownAccount returns the account if the session's customer owns it (a
// corporate account: any of the company's operators). Another
// customer's account and one that does not exist are the same
// ErrNotFound, so the answer tells no one which accounts exist.
func (b *Bank) ownAccount(ctx context.Context, s session.Session, account string) (ledger.Account, error) {
	cu, err := b.Customer(s.Customer)
	if err != nil {
		return ledger.Account{}, err
	}
	a, err := b.Ledger.Account(ctx, account)
	switch {
	case errors.Is(err, ledger.ErrAccountNotFound), errors.Is(err, ledger.ErrInvalidArgument),
		err == nil && a.Owner != owner(cu):
		return ledger.Account{}, fmt.Errorf("%w: you have no account %q", ErrNotFound, truncateRunes(account, 24))
	case err != nil:
		return ledger.Account{}, err
	}
	return a, nil
}

// History returns a page of an account's transactions, newest first:
// limit entries (0: DefaultHistoryLimit) older than the cursor before
// ("" for the newest). Only the account's owner sees it (ownAccount).
func (b *Bank) History(ctx context.Context, s session.Session, account string, limit int, before string) (bankwire.History, error) {
	if limit == 0 {
		limit = DefaultHistoryLimit
	}
	if limit < 1 || limit > MaxHistoryLimit {
		return bankwire.History{}, invalid("limit must be 1 to %d", MaxHistoryLimit)
	}
	a, err := b.ownAccount(ctx, s, account)
	if err != nil {
		return bankwire.History{}, err
	}
	var seq uint64
	if before != "" {
		if seq, err = parseCursor(a.ID, before); err != nil {
			return bankwire.History{}, err
		}
	}
	// One more than asked: whether there is an older page is known
	// without a request that comes back empty.
	es, err := b.Ledger.Statement(ctx, a.ID, seq, limit+1)
	if errors.Is(err, ledger.ErrInvalidArgument) {
		return bankwire.History{}, errBadCursor
	}
	if err != nil {
		return bankwire.History{}, err
	}
	h := bankwire.History{Account: a.ID, Entries: make([]bankwire.HistoryEntry, 0, min(len(es), limit))}
	if len(es) > limit {
		es = es[:limit]
		h.Next = cursor(a.ID, es[limit-1].Seq)
	}
	names, err := b.holderNames(es)
	if err != nil {
		return bankwire.History{}, err
	}
	for _, e := range es {
		he := bankwire.HistoryEntry{Time: e.Time.UTC(), Kind: e.Kind.String(), Amount: ledger.FormatAmount(e.Amount, e.Currency), Currency: e.Currency,
			BalanceAfter: ledger.FormatAmount(e.Balance, e.Currency), Memo: e.Memo, TransferID: e.TransferID}
		if e.Counterparty != ledger.CashAccount(e.Currency) {
			he.Counterparty = &bankwire.Counterparty{Account: mask.Card(e.Counterparty), Name: names[e.Counterparty]}
		}
		h.Entries = append(h.Entries, he)
	}
	return h, nil
}

// holderNames maps the entries' counterparty accounts to their holders'
// names, read in one transaction: a customer's name as enrolled, a
// company's corporate id. The bank's cash accounts have none.
func (b *Bank) holderNames(es []ledger.Entry) (map[string]string, error) {
	var ids []string
	seen := map[string]bool{}
	for _, e := range es {
		if cp := e.Counterparty; !seen[cp] && cp != ledger.CashAccount(e.Currency) {
			seen[cp] = true
			ids = append(ids, cp)
		}
	}
	names := make(map[string]string, len(ids))
	if len(ids) == 0 {
		return names, nil
	}
	err := b.db.View(func(tx store.Tx) error {
		accs, errs := ledger.ReadAccounts(tx, ids...)
		for i, a := range accs {
			switch {
			case errs[i] != nil:
			case isCorporate(a.Owner):
				names[a.ID] = strings.TrimPrefix(a.Owner, "corp:")
			default:
				var c Customer
				if v := tx.Bucket(bucketCustomers).Get([]byte(a.Owner)); v != nil && kv.Decode(v, &c) == nil {
					names[a.ID] = c.Name
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("banking: read counterparties: %w", err)
	}
	return names, nil
}

var errBadCursor = invalid("before is not a cursor of this account's history (take next from the previous page, or leave before out for the newest)")

// cursor is the opaque place after entry seq in account's history:
// base64url of "<account>.<seq>". It names the account, so a cursor of
// one account is refused on another.
func cursor(account string, seq uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(account + "." + strconv.FormatUint(seq, 10)))
}

func parseCursor(account, c string) (uint64, error) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(c)
	if err != nil || len(c) > 64 {
		return 0, errBadCursor
	}
	acct, seqS, ok := strings.Cut(string(raw), ".")
	if !ok || acct != account {
		return 0, errBadCursor
	}
	seq, err := strconv.ParseUint(seqS, 10, 64)
	if err != nil || seq == 0 {
		return 0, errBadCursor
	}
	return seq, nil
}

// Payees returns the customer's saved payees, oldest first.
func (b *Bank) Payees(ctx context.Context, s session.Session) ([]bankwire.Payee, error) {
	ps, err := b.payees.List(ctx, s.Customer)
	if err != nil {
		return nil, payeeErr(err)
	}
	out := make([]bankwire.Payee, 0, len(ps))
	for _, p := range ps {
		out = append(out, payeeView(p))
	}
	return out, nil
}

// AddPayee saves a payee after a recent SMS step-up (the rule of POST
// /v1/limits, R-AUTH-6: a saved payee is where money will go), with the
// account checked (package payee's rules) and screened (R-SRV-6).
func (b *Bank) AddPayee(ctx context.Context, s session.Session, req bankwire.Payee) (p bankwire.Payee, err error) {
	subject := ""
	defer func() {
		b.auditChange(ctx, s, "payee.add", subject, "account="+mask.Card(req.Account), err)
	}()
	if err := b.sessions.RequireStepUp(s, session.LevelOTP, b.cfg.StepUpFor); err != nil {
		return bankwire.Payee{}, err
	}
	np, err := payee.Normalise(payee.Payee{Account: req.Account, Name: req.Name, Bank: req.Bank, Nickname: req.Nickname})
	if err != nil {
		return bankwire.Payee{}, payeeErr(err)
	}
	if b.cfg.Screen != nil {
		if b.cfg.Screen.CheckAccount(np.Account) != nil || b.cfg.Screen.CheckName(np.Name) != nil {
			return bankwire.Payee{}, fmt.Errorf("%w: the payee is on the screening list; it cannot be saved", ErrBlocked)
		}
	}
	stored, err := b.payees.Add(ctx, s.Customer, np)
	if err != nil {
		return bankwire.Payee{}, payeeErr(err)
	}
	subject = stored.ID
	return payeeView(stored), nil
}

// RemovePayee deletes one of the customer's saved payees (no step-up:
// removing one lets no money go anywhere).
func (b *Bank) RemovePayee(ctx context.Context, s session.Session, id string) (err error) {
	defer func() { b.auditChange(ctx, s, "payee.remove", truncateRunes(id, 24), "", err) }()
	if _, err := b.payees.Remove(ctx, s.Customer, id); err != nil {
		return payeeErr(err)
	}
	return nil
}

func payeeView(p payee.Payee) bankwire.Payee {
	return bankwire.Payee{ID: p.ID, Account: p.Account, Name: p.Name, Bank: p.Bank, Nickname: p.Nickname, Created: p.Created}
}

// payeeErr gives package payee's refusals banking's codes.
func payeeErr(err error) error {
	switch {
	case errors.Is(err, payee.ErrInvalid), errors.Is(err, payee.ErrFull):
		return fmt.Errorf("%w: %v", ErrInvalid, strings.TrimPrefix(err.Error(), "payee: "))
	case errors.Is(err, payee.ErrExists):
		return fmt.Errorf("%w: %v", ErrExists, strings.TrimPrefix(err.Error(), "payee: "))
	case errors.Is(err, payee.ErrNotFound):
		return fmt.Errorf("%w: you have no saved payee of that id", ErrNotFound)
	}
	return err
}

// Devices lists the devices the bank knows for the customer, most
// recently seen first, the session's own marked Current.
func (b *Bank) Devices(ctx context.Context, s session.Session) ([]bankwire.Device, error) {
	ds, err := b.devices.List(ctx, s.Customer)
	if err != nil {
		return nil, err
	}
	mine := device.RefOf(s.Device)
	out := make([]bankwire.Device, 0, len(ds))
	for _, d := range ds {
		out = append(out, bankwire.Device{Ref: d.Ref, Name: d.Name, OS: d.OS, LastIP: d.LastIP, FirstSeen: d.FirstSeen.UTC(),
			LastSeen: d.LastSeen.UTC(), Current: d.Ref == mine})
	}
	return out, nil
}

// ForgetDevice ends every session opened from the device, then forgets
// it: its next login asks for an SMS code again (R-AUTH-9). Forgetting
// the session's own device ends this session too. A ref the customer
// has neither a device nor a session of is ErrNotFound.
func (b *Bank) ForgetDevice(ctx context.Context, s session.Session, ref string) (res bankwire.DeviceForgotten, err error) {
	ref = truncateRunes(ref, 32)
	defer func() {
		b.auditChange(ctx, s, "device.forget", ref, fmt.Sprintf("sessions_ended=%d", res.SessionsEnded), err)
	}()
	if len(ref) != 16 || strings.Trim(ref, "0123456789abcdef") != "" {
		return res, fmt.Errorf("%w: no device %q (a ref is the 16 hex digits GET /v1/devices shows)", ErrNotFound, ref)
	}
	// Sessions first: a failure after this leaves the device known but
	// none of its sessions alive, and trying again finishes the job.
	n, err := b.sessions.LogoutDevice(ctx, s.Customer, ref)
	if err != nil {
		return res, err
	}
	res = bankwire.DeviceForgotten{Ref: ref, SessionsEnded: n}
	if err := b.devices.Forget(ctx, s.Customer, ref); err != nil {
		if errors.Is(err, device.ErrNotFound) && n > 0 {
			return res, nil
		}
		if errors.Is(err, device.ErrNotFound) {
			return res, fmt.Errorf("%w: no device %q", ErrNotFound, ref)
		}
		return res, err
	}
	return res, nil
}

// SetAntiPhishing changes the message shown at every login (seed 6.4.3)
// after a recent SMS step-up: 1 to AntiPhishingMax characters, without
// control or formatting characters or < > " ' &. The message itself is
// never written to the audit trail or the log.
func (b *Bank) SetAntiPhishing(ctx context.Context, s session.Session, msg string) (err error) {
	defer func() { b.auditChange(ctx, s, "antiphishing.change", "", "", err) }()
	if err := b.sessions.RequireStepUp(s, session.LevelOTP, b.cfg.StepUpFor); err != nil {
		return err
	}
	if err := checkAntiPhishing(msg); err != nil {
		return err
	}
	return b.updateCustomer(s.Customer, func(c *Customer) bool {
		c.AntiPhishing = msg
		return true
	})
}

func checkAntiPhishing(msg string) error {
	n := utf8.RuneCountInString(msg)
	if !utf8.ValidString(msg) || strings.TrimSpace(msg) == "" || n > AntiPhishingMax {
		return invalid("message must be 1 to %d characters (%d given); a Chinese character counts as one", AntiPhishingMax, n)
	}
	for _, c := range msg {
		if unicode.IsControl(c) || unicode.Is(unicode.Cf, c) || strings.ContainsRune(`<>"'&`, c) {
			return invalid("message must not hold line breaks, control or formatting characters, or any of < > \" ' &")
		}
	}
	return nil
}

// auditChange records a customer's change in banking's audit trail:
// Result "ok", or the error code the customer was answered.
func (b *Bank) auditChange(ctx context.Context, s session.Session, op, subject, detail string, err error) {
	result := "ok"
	if err != nil {
		_, result, _, _ = classify(err)
	}
	b.audit(ctx, Event{Op: op, Actor: "customer:" + s.Customer, Subject: subject, Result: result, Detail: detail})
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}
