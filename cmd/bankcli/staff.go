package main

import (
	"fmt"
	"strings"
)

// The staff subcommands (issue 18): each takes the person's own token from
// -staff-token-file (a kwst_… token from `banking staff-token`, dev mode:
// var/bank/staff/teller1.token or supervisor1.token). The bank records
// every one of them in its audit trail under the person's id; a role the
// person lacks is refused with staff_role_required.

// staffFlagHelp is the -staff-token-file help of every staff subcommand.
const staffFlagHelp = "file holding your personal staff token (dev: var/bank/staff/teller1.token or supervisor1.token)"

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
	f.fs.StringVar(&staffFile, "staff-token-file", "", staffFlagHelp)
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
	fmt.Printf("id:    %s\nname:  %s\nroles: %s\n", me.ID, me.Name, strings.Join(me.Roles, ", "))
	if me.Expires != "" {
		fmt.Printf("expires: %s\n", me.Expires)
	}
	return nil
}

// unlock: POST /staff/v1/customers/{id}/unlock — lift a customer's login
// lock after checking their identity (role unlock).
func cmdUnlock(args []string) error {
	f := newFlags("unlock")
	var customer, staffFile string
	f.fs.StringVar(&customer, "customer", "", "customer id (c…, as enrolment printed it)")
	f.fs.StringVar(&staffFile, "staff-token-file", "", staffFlagHelp)
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
		fmt.Printf("unlocked %s: the lock until %s is lifted (%d failed logins cleared); the customer can log in now\n", customer, res.LockedUntil, res.Failures)
	} else {
		fmt.Printf("%s was not locked (%d failed logins cleared)\n", customer, res.Failures)
	}
	return nil
}

// phone: POST /staff/v1/customers/{id}/phone — register a new mobile
// number at the counter (role phone-change). Both numbers get a notice;
// the customer's sessions end.
func cmdPhone(args []string) error {
	f := newFlags("phone")
	var customer, phone, checked, staffFile string
	f.fs.StringVar(&customer, "customer", "", "customer id (c…)")
	f.fs.StringVar(&phone, "phone", "", "the new mainland mobile number")
	f.fs.StringVar(&checked, "identity-checked", "", `how you checked the customer's identity: document type and its last 4 characters, e.g. "resident ID card ending 002X" (never the whole number)`)
	f.fs.StringVar(&staffFile, "staff-token-file", "", staffFlagHelp)
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
	fmt.Printf("phone of %s: %s → %s\nsessions ended: %d\nnotice sent to: %s\n", customer, res.OldPhone, res.NewPhone, res.SessionsEnded, strings.Join(res.Notified, ", "))
	if len(res.NoticeFailed) > 0 {
		fmt.Printf("notice NOT sent to: %s (tell the customer in person)\n", strings.Join(res.NoticeFailed, ", "))
	}
	return nil
}

// limit-override: POST /staff/v1/limits — set an account's limits beyond
// what its customer may set (role limit-override), with a reason.
func cmdLimitOverride(args []string) error {
	f := newFlags("limit-override")
	var account, perTx, daily, reason, staffFile string
	f.fs.StringVar(&account, "account", "", "account number")
	f.fs.StringVar(&perTx, "per-transaction", "", "largest single transfer, e.g. 2000000.00")
	f.fs.StringVar(&daily, "daily", "", "most sent in one day (China time), e.g. 6000000.00")
	f.fs.StringVar(&reason, "reason", "", "why the customer needs these limits (recorded in the audit trail)")
	f.fs.StringVar(&staffFile, "staff-token-file", "", staffFlagHelp)
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
	fmt.Printf("limits of %s: %s per transaction, %s a day\n", res.Account, res.PerTransaction, res.Daily)
	return nil
}
