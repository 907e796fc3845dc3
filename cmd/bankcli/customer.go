package main

// The customer's own functions (issue 18 item 5): history, saved payees,
// devices and the anti-phishing message, over the saved session.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/text/width"

	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/token/l10n"
)

func localTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(l10n.China).Format("2006-01-02 15:04:05")
}

// grouped writes an amount the bank sent ("-1234567.50") with thousands
// grouping ("-1,234,567.50"); anything else is shown as it came.
func grouped(amount string) string {
	sign, rest := "", amount
	if strings.HasPrefix(rest, "-") {
		sign, rest = "-", rest[1:]
	}
	intPart, frac, hasFrac := strings.Cut(rest, ".")
	if intPart == "" || strings.Trim(intPart, "0123456789") != "" {
		return amount
	}
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if hasFrac {
		return sign + b.String() + "." + frac
	}
	return sign + b.String()
}

// displayWidth is the number of terminal columns s takes: East Asian wide
// and fullwidth characters (Chinese, most emoji) take two.
func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		switch width.LookupRune(r).Kind() {
		case width.EastAsianWide, width.EastAsianFullwidth:
			n += 2
		default:
			n++
		}
	}
	return n
}

// table writes rows in columns aligned by display width (so Chinese names
// line up); right lists the columns aligned right (amounts).
func table(w io.Writer, header []string, rows [][]string, right ...int) {
	widths := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], displayWidth(c))
		}
	}
	isRight := map[int]bool{}
	for _, i := range right {
		isRight[i] = true
	}
	for _, r := range append([][]string{header}, rows...) {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-displayWidth(c))
			switch {
			case isRight[i]:
				b.WriteString(pad + c)
			case i == len(r)-1:
				b.WriteString(c)
			default:
				b.WriteString(c + pad)
			}
			if i < len(r)-1 {
				b.WriteString("  ")
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// stepUpHint explains a step_up_required refusal of a change that needs a
// fresh SMS confirmation; what names the change in the reader's language
// (tr("Saving a payee")).
func stepUpHint(err error, what string) error {
	if errCode(err) == "step_up_required" {
		return errorf("%w\n%s needs an SMS confirmation from the last few minutes: run `bankcli stepup -resend`, enter the code, then run this command again", err, what)
	}
	return err
}

// kindName is a history entry's kind in the reader's language (the code
// itself in English, or when bankcli does not know it).
func kindName(kind string) string {
	switch kind {
	case "transfer":
		return tr("transfer")
	case "deposit":
		return tr("deposit")
	case "withdrawal":
		return tr("withdrawal")
	}
	return kind
}

func cmdHistory(args []string) error {
	f := newFlags("history")
	var account, before string
	var limit int
	var all bool
	f.fs.StringVar(&account, "account", "", text("your account number"))
	f.fs.IntVar(&limit, "limit", 20, text("entries per page (1-100)"))
	f.fs.StringVar(&before, "before", "", text("the cursor a previous page printed: show the entries older than it"))
	f.fs.BoolVar(&all, "all", false, text("follow the pages to the account's first entry"))
	if err := f.parse(args); err != nil {
		return err
	}
	if err := required("account", account); err != nil {
		return err
	}
	if limit < 1 || limit > 100 {
		return usageErr("-limit must be 1 to 100")
	}
	b, _, err := f.sessionBank()
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	var rows [][]string
	for {
		q := url.Values{"limit": {fmt.Sprint(limit)}}
		if before != "" {
			q.Set("before", before)
		}
		var h bankwire.History
		if _, err := b.call(c, "GET", "/v1/accounts/"+url.PathEscape(account)+"/transactions?"+q.Encode(), nil, &h); err != nil {
			return err
		}
		for _, e := range h.Entries {
			cp := ""
			if e.Counterparty != nil {
				cp = strings.TrimSpace(e.Counterparty.Name + " " + e.Counterparty.Account)
			}
			rows = append(rows, []string{localTime(e.Time), kindName(e.Kind), grouped(e.Amount), grouped(e.BalanceAfter), e.Currency, e.TransferID, cp, e.Memo})
		}
		before = h.Next
		if !all || before == "" {
			break
		}
	}
	printf("Account %s, newest first (times Asia/Shanghai):\n", account)
	table(os.Stdout, []string{tr("TIME"), tr("KIND"), tr("AMOUNT"), tr("BALANCE"), tr("CCY"), tr("TRANSFER"), tr("COUNTERPARTY"), tr("MEMO")}, rows, 2, 3)
	switch {
	case len(rows) == 0:
		printf("(no entries)\n")
	case before != "":
		// The command stands apart from the words around it, so that a
		// script finds "-before CURSOR" in either language.
		printf("More: bankcli history -account %s -limit %d -before %s   (or -all)\n", account, limit, before)
	default:
		printf("(%d entries; that is the account's first)\n", len(rows))
	}
	return nil
}

func cmdPayees(args []string) error {
	f := newFlags("payees")
	if err := f.parse(args); err != nil {
		return err
	}
	b, _, err := f.sessionBank()
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	var out struct {
		Payees []bankwire.Payee `json:"payees"`
	}
	if _, err := b.call(c, "GET", "/v1/payees", nil, &out); err != nil {
		return err
	}
	if len(out.Payees) == 0 {
		printf("No saved payees. Add one with: bankcli payee-add -account … -name …\n")
		return nil
	}
	var rows [][]string
	for _, p := range out.Payees {
		rows = append(rows, []string{p.ID, p.Name, orDash(p.Nickname), p.Account, orDash(p.Bank), localTime(p.Created)})
	}
	table(os.Stdout, []string{tr("ID"), tr("NAME"), tr("NICKNAME"), tr("ACCOUNT"), tr("BANK"), tr("SAVED")}, rows)
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdPayeeAdd(args []string) error {
	f := newFlags("payee-add")
	var p bankwire.Payee
	f.fs.StringVar(&p.Account, "account", "", text("the payee's account number (spaces allowed)"))
	f.fs.StringVar(&p.Name, "name", "", text("the account holder's name, as their bank knows it"))
	f.fs.StringVar(&p.Bank, "bank", "", text("the payee's bank (optional)"))
	f.fs.StringVar(&p.Nickname, "nickname", "", text("your name for the payee (optional)"))
	if err := f.parse(args); err != nil {
		return err
	}
	if err := required("account", p.Account, "name", p.Name); err != nil {
		return err
	}
	b, _, err := f.sessionBank()
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	var saved bankwire.Payee
	if _, err := b.call(c, "POST", "/v1/payees", p, &saved); err != nil {
		return stepUpHint(err, tr("Saving a payee"))
	}
	printf("Saved payee %s: %s, account %s\n", saved.ID, saved.Name, saved.Account)
	return nil
}

func cmdPayeeRemove(args []string) error {
	f := newFlags("payee-rm")
	var id string
	f.fs.StringVar(&id, "id", "", text("the payee's id (bankcli payees)"))
	if err := f.parse(args); err != nil {
		return err
	}
	if err := required("id", id); err != nil {
		return err
	}
	b, _, err := f.sessionBank()
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	if _, err := b.call(c, "DELETE", "/v1/payees/"+url.PathEscape(id), nil, nil); err != nil {
		return err
	}
	printf("Removed payee %s.\n", id)
	return nil
}

func cmdDevices(args []string) error {
	f := newFlags("devices")
	if err := f.parse(args); err != nil {
		return err
	}
	b, _, err := f.sessionBank()
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	var out struct {
		Devices []bankwire.Device `json:"devices"`
	}
	if _, err := b.call(c, "GET", "/v1/devices", nil, &out); err != nil {
		return err
	}
	var rows [][]string
	for _, d := range out.Devices {
		mark := ""
		if d.Current {
			mark = "*"
		}
		rows = append(rows, []string{mark, d.Ref, orDash(d.Name), d.OS, localTime(d.LastSeen), localTime(d.FirstSeen), d.LastIP})
	}
	table(os.Stdout, []string{"", tr("REF"), tr("DEVICE"), tr("OS"), tr("LAST SEEN"), tr("FIRST SEEN"), tr("LAST ADDRESS")}, rows)
	printf("* this device. Forget one (its sessions end): bankcli device-rm -ref REF\n")
	return nil
}

func cmdDeviceRemove(args []string) error {
	f := newFlags("device-rm")
	var ref string
	f.fs.StringVar(&ref, "ref", "", text("the device's ref (bankcli devices)"))
	if err := f.parse(args); err != nil {
		return err
	}
	if err := required("ref", ref); err != nil {
		return err
	}
	b, s, err := f.sessionBank()
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	var res bankwire.DeviceForgotten
	if _, err := b.call(c, "DELETE", "/v1/devices/"+url.PathEscape(ref), nil, &res); err != nil {
		return err
	}
	printf("Forgot device %s; %d session(s) on it ended. Its next login asks for an SMS code.\n", res.Ref, res.SessionsEnded)
	if deviceRef(s.Device) == res.Ref {
		printf("That was this device: this session has ended too; log in again.\n")
	}
	return nil
}

// deviceRef is the ref the bank lists a device id under: the first 8
// bytes of its SHA-256, in hex.
func deviceRef(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:8])
}

func cmdAntiPhishing(args []string) error {
	f := newFlags("anti-phishing")
	var msg string
	f.fs.StringVar(&msg, "message", "", text("your new anti-phishing message: 1-20 characters, shown at every login"))
	if err := f.parse(args); err != nil {
		return err
	}
	if err := required("message", msg); err != nil {
		return err
	}
	b, _, err := f.sessionBank()
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	if _, err := b.call(c, "POST", "/v1/anti-phishing", bankwire.AntiPhishingRequest{Message: msg}, nil); err != nil {
		return stepUpHint(err, tr("Changing the anti-phishing message"))
	}
	var me bankwire.CustomerView
	if _, err := b.call(c, "GET", "/v1/me", nil, &me); err != nil {
		return err
	}
	printf("Your anti-phishing message is now: %s\nEvery login shows it; if a login page does not, it is not your bank.\n", me.AntiPhishing)
	return nil
}
