package main

import (
	"strings"
	"time"

	"github.com/keyward/keyward/token/l10n"
)

// The staff subcommands (issue 18): each takes the person's own token from
// -staff-token-file (a kwst_… token from `banking staff-token`, dev mode:
// var/bank/staff/teller1.token or supervisor1.token). The bank records
// every one of them in its audit trail under the person's id; a role the
// person lacks is refused with staff_role_required.

// staffFlagHelp is the -staff-token-file help of every staff subcommand.
const staffFlagHelp = "file holding your personal staff token (dev: var/bank/staff/teller1.token or supervisor1.token)"

// roleName says in words what a staff role lets its holder do ("" for a
// role bankcli does not know).
func roleName(role string) string {
	switch role {
	case "enrol":
		return tr("enrol customers")
	case "deposit":
		return tr("take cash deposits")
	case "unlock":
		return tr("lift login locks")
	case "phone-change":
		return tr("change registered phones")
	case "limit-override":
		return tr("override limits")
	case "ledger-verify":
		return tr("verify the ledger")
	}
	return ""
}

// roleList is whoami's list of roles: the codes in English, as the bank
// names them (staff_role_required errors and the staff file use them);
// in Chinese the words with the code beside them, "客户开户（enrol）、…".
func roleList(roles []string) string {
	if !l10n.IsChinese(lang) {
		return strings.Join(roles, ", ")
	}
	out := make([]string, len(roles))
	for i, r := range roles {
		out[i] = r
		if name := roleName(r); name != "" {
			out[i] = name + "（" + r + "）"
		}
	}
	return strings.Join(out, "、")
}

// joinList joins items as the reader's language lists them: "a, b" or "a、b".
func joinList(items []string) string {
	if l10n.IsChinese(lang) {
		return strings.Join(items, "、")
	}
	return strings.Join(items, ", ")
}

// staffTime shows a time the bank sent (RFC 3339) in China time with UTC
// beside it; anything else as it came.
func staffTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return l10n.Time(t, lang)
}

// staffBank reads the token file and returns a client authenticated as
// that person.
func staffBank(f *common, staffFile string) (*bank, error) {
	tok, err := readStaffToken(staffFile)
	if err != nil {
		return nil, err
	}
	b, err := newBank(f.url, f.ca)
	if err != nil {
		return nil, err
	}
	b.auth = "Bearer " + tok
	return b, nil
}

// whoami: GET /staff/v1/whoami — who the token is and what it may do.
func cmdWhoami(args []string) error {
	f := newFlags("whoami")
	var staffFile string
	f.fs.StringVar(&staffFile, "staff-token-file", "", text(staffFlagHelp))
	if err := f.parse(args); err != nil {
		return err
	}
	b, err := staffBank(f, staffFile)
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	var me struct {
		ID      string   `json:"id"`
		Name    string   `json:"name"`
		Roles   []string `json:"roles"`
		Expires string   `json:"expires"`
	}
	if _, err := b.call(c, "GET", "/staff/v1/whoami", nil, &me); err != nil {
		return err
	}
	printf("id:    %s\nname:  %s\nroles: %s\n", me.ID, me.Name, roleList(me.Roles))
	if me.Expires != "" {
		printf("expires: %s\n", staffTime(me.Expires))
	}
	return nil
}

// unlock: POST /staff/v1/customers/{id}/unlock — lift a customer's login
// lock after checking their identity (role unlock).
func cmdUnlock(args []string) error {
	f := newFlags("unlock")
	var customer, staffFile string
	f.fs.StringVar(&customer, "customer", "", text("customer id (c…, as enrolment printed it)"))
	f.fs.StringVar(&staffFile, "staff-token-file", "", text(staffFlagHelp))
	if err := f.parse(args); err != nil {
		return err
	}
	if err := required("customer", customer); err != nil {
		return err
	}
	b, err := staffBank(f, staffFile)
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	var res struct {
		WasLocked   bool   `json:"was_locked"`
		LockedUntil string `json:"locked_until"`
		Failures    int    `json:"failures"`
	}
	if _, err := b.call(c, "POST", "/staff/v1/customers/"+customer+"/unlock", nil, &res); err != nil {
		return err
	}
	if res.WasLocked {
		printf("unlocked %s: the lock until %s is lifted (%d failed logins cleared); the customer can log in now\n", customer, staffTime(res.LockedUntil), res.Failures)
	} else {
		printf("%s was not locked (%d failed logins cleared)\n", customer, res.Failures)
	}
	return nil
}

// phone: POST /staff/v1/customers/{id}/phone — register a new mobile
// number at the counter (role phone-change). Both numbers get a notice;
// the customer's sessions end.
func cmdPhone(args []string) error {
	f := newFlags("phone")
	var customer, phone, checked, staffFile string
	f.fs.StringVar(&customer, "customer", "", text("customer id (c…)"))
	f.fs.StringVar(&phone, "phone", "", text("the new mainland mobile number"))
	f.fs.StringVar(&checked, "identity-checked", "", text(`how you checked the customer's identity: document type and its last 4 characters, e.g. "resident ID card ending 002X" (never the whole number)`))
	f.fs.StringVar(&staffFile, "staff-token-file", "", text(staffFlagHelp))
	if err := f.parse(args); err != nil {
		return err
	}
	if err := required("customer", customer, "phone", phone, "identity-checked", checked); err != nil {
		return err
	}
	b, err := staffBank(f, staffFile)
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	var res struct {
		OldPhone      string   `json:"old_phone"`
		NewPhone      string   `json:"new_phone"`
		SessionsEnded int      `json:"sessions_ended"`
		Notified      []string `json:"notified"`
		NoticeFailed  []string `json:"notice_failed"`
	}
	if _, err := b.call(c, "POST", "/staff/v1/customers/"+customer+"/phone", map[string]string{"phone": phone, "identity_checked": checked}, &res); err != nil {
		return err
	}
	printf("phone of %s: %s → %s\nsessions ended: %d\nnotice sent to: %s\n", customer, res.OldPhone, res.NewPhone, res.SessionsEnded, joinList(res.Notified))
	if len(res.NoticeFailed) > 0 {
		printf("notice NOT sent to: %s (tell the customer in person)\n", joinList(res.NoticeFailed))
	}
	return nil
}

// limit-override: POST /staff/v1/limits — set an account's limits beyond
// what its customer may set (role limit-override), with a reason.
func cmdLimitOverride(args []string) error {
	f := newFlags("limit-override")
	var account, perTx, daily, reason, staffFile string
	f.fs.StringVar(&account, "account", "", text("account number"))
	f.fs.StringVar(&perTx, "per-transaction", "", text("largest single transfer, e.g. 2000000.00"))
	f.fs.StringVar(&daily, "daily", "", text("most sent in one day (China time), e.g. 6000000.00"))
	f.fs.StringVar(&reason, "reason", "", text("why the customer needs these limits (recorded in the audit trail)"))
	f.fs.StringVar(&staffFile, "staff-token-file", "", text(staffFlagHelp))
	if err := f.parse(args); err != nil {
		return err
	}
	if err := required("account", account, "per-transaction", perTx, "daily", daily, "reason", reason); err != nil {
		return err
	}
	b, err := staffBank(f, staffFile)
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	var res struct {
		Account        string `json:"account"`
		PerTransaction string `json:"per_transaction"`
		Daily          string `json:"daily"`
	}
	if _, err := b.call(c, "POST", "/staff/v1/limits", map[string]string{"account": account, "per_transaction": perTx, "daily": daily, "reason": reason}, &res); err != nil {
		return err
	}
	printf("limits of %s: %s per transaction, %s a day\n", res.Account, res.PerTransaction, res.Daily)
	return nil
}
