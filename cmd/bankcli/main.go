// Command bankcli is a small customer and teller client of the bank's
// internet-banking API (cmd/banking), for trying it out and for the README
// walk-through. It does what curl alone cannot: it encrypts the password
// with its single-use challenge to the bank's SM2 login key, keeps the
// session, writes canonical transfer orders for a USB key to sign, and
// saves receipts in the files openssl verifies.
//
//	bankcli enrol    -login alice -name "Alice Wang" -phone 13800001111 -id-card 11010519491231002X
//	                 -card 6222020200112233446 -anti-phishing 蓝色海豚 [-usb-key-pem alice-usb.pub.pem]
//	                 [-cloud-key] -staff-token-file var/bank/staff/teller1.token
//	bankcli deposit  -account 6299… -amount 10000.00 -staff-token-file var/bank/staff/teller1.token
//	bankcli whoami   -staff-token-file FILE      who a staff token is, and its roles
//	bankcli unlock   -customer c… -staff-token-file var/bank/staff/supervisor1.token
//	bankcli phone    -customer c… -phone 13900002222 -identity-checked "resident ID card ending 002X" -staff-token-file var/bank/staff/teller1.token
//	bankcli limit-override -account 6299… -per-transaction 2000000.00 -daily 6000000.00 -reason "…" -staff-token-file var/bank/staff/supervisor1.token
//	bankcli login    -login alice -device laptop-1 -os "Debian 12" [-device-name 办公室电脑] [-captcha-env NAME]
//	bankcli stepup   [-resend] [-code-env NAME] finish an SMS step-up the login left open
//	bankcli accounts
//	bankcli history  -account 6299… [-limit 20] [-before CURSOR] [-all]
//	bankcli payees
//	bankcli payee-add -account 6222… -name 王小明 [-bank 中国工商银行] [-nickname 房东]   (a recent step-up)
//	bankcli payee-rm -id p…
//	bankcli devices
//	bankcli device-rm -ref 3f2a…                forget a device; its sessions end
//	bankcli anti-phishing -message 绿茶        (a recent step-up)
//	bankcli order    -from 6299… -to 6299… -payee "Bob Li" -amount 12.00 -out order.json
//	bankcli transfer-usb   -order order.json -signature order.sig [-out receipt.json -sig receipt.sig -key bank-receipt.pem]
//	bankcli transfer-cloud -order order.json [-out receipt.json -sig receipt.sig -key bank-receipt.pem]
//	bankcli receipt  -transfer T000000000002 -out receipt.json -sig receipt.sig -key bank-receipt.pem
//	bankcli logout
//
// Every subcommand takes -url (default https://127.0.0.1:8445, env
// BANKCLI_URL) and -ca, the PEM CA of the bank's certificate (default
// var/bank/tls/ca.pem, banking's dev mode; env BANKCLI_CA). After login
// the session, its device id, URL and CA are kept in a 0600 file,
// -session-file (default ~/.config/keyward/bankcli.session); later
// subcommands use them unless -url or -ca is given.
//
// Amounts are shown with thousands grouping and times in Asia/Shanghai;
// tables line up Chinese text by its display width. A change the bank
// refuses for want of a recent SMS step-up (payee-add, anti-phishing)
// says so and names the fix: bankcli stepup -resend, then the command
// again.
//
// # Secrets
//
// Passwords and SMS codes are typed at the terminal without echo, or read
// from an environment variable whose name a flag gives (-password-env
// NAME, -code-env NAME), never from argv. A teller's or supervisor's
// personal staff token is read from a file (-staff-token-file); the bank
// records every staff act under that person's id, and refuses an act
// their roles do not cover (staff_role_required: enrol, deposit and
// phone belong to tellers, unlock and limit-override to supervisors in
// dev mode). Output files are created with O_EXCL: bankcli
// never overwrites one.
//
// # Language
//
// bankcli speaks the language of LC_ALL, LC_MESSAGES or LANG (the first
// set): Chinese for zh_*, English for any other named language, Chinese
// when none names one (unset, C, POSIX) — the bank's customers read
// Chinese. It asks the bank for its messages in the same language
// (Accept-Language). Tables (history, payees, devices) get headers in
// the reader's language, their columns aligned by display width; whoami
// names each role in Chinese in words with its code beside it:
// 客户开户（enrol）. What scripts read stays the same in both languages:
// exit codes, the bank's error codes and HTTP status in an error line,
// the field names enrol prints, ids and refs, and the bankcli command
// lines printed to run next (history's "bankcli history … -before
// CURSOR", the receipt command). An error from the bank prints its
// message, its code, the HTTP status and the request id the bank logged
// it under (quote it when you call the bank):
//
//	bankcli accounts: 本次登录来自新的设备或网络，请先输入短信验证码（step_up_required, HTTP 403, 请求编号 4f0c…）
//	bankcli accounts: … (step_up_required, HTTP 403, request id 4f0c…)        (LANG=en_US.UTF-8)
//
// # Logging in from a script
//
// The SMS code of a login from a new device cannot be known before the
// bank sends it, so a script cannot hand it to bankcli login up front.
// bankcli login without a terminal stops at the step-up: it prints the
// anti-phishing message, saves the session (marked step_up; it can do
// nothing but the step-up) and exits 3. The script then reads the code
// from wherever its SMS arrives and finishes with bankcli stepup:
//
//	LOGIN_PW=… bankcli login -login alice -device ci-1 -os Debian -password-env LOGIN_PW
//	[ $? -eq 3 ] || exit 1                 # 0: the device was known, no step-up
//	SMS_CODE=$(read-the-sms …) bankcli stepup -code-env SMS_CODE
//
// (stepup -resend asks for a new code first.) After three failed logins
// of a login, or from one address, the bank asks for an image captcha
// (captcha_required). At a terminal bankcli saves the image (0600) in
// the session file's directory and asks for its digits. Without one it
// saves the image and exits 4; a person looks at the image and the
// script runs login again with the digits in an environment variable:
//
//	CAPTCHA=… LOGIN_PW=… bankcli login -login alice … -password-env LOGIN_PW -captcha-env CAPTCHA
//
// A captcha is checked once, right or wrong, and lives two minutes.
//
// # Transfers
//
// order writes a keyward.transfer.v1 order in canonical form (package
// txformat) with a random nonce and shows what it says. A USB key signs
// exactly those bytes — kwsign, or for a key in a PEM file
// `openssl dgst -sha256 -sign key.pem -out order.sig order.json` — and
// transfer-usb sends order and signature (DER, raw or base64). For a
// cloud key, transfer-cloud sends the order; keysvc shows it to the
// customer on its confirmation page, and bankcli waits (long polls) until
// it is approved, rejected or expired.
//
// A receipt is saved as three files: the exact signed body, the DER
// signature and the bank's receipt public key, so that
//
//	openssl dgst -sha256 -verify bank-receipt.pem -signature receipt.sig receipt.json
//
// prints "Verified OK". bankcli checks the signature itself before it
// writes anything.
//
// # Exit codes
//
//	0  done
//	1  the bank refused or could not be reached (its error code and message are printed)
//	2  usage: bad or missing flags, an output file that exists, no terminal for a prompt
//	3  logged in, but the SMS step-up is still open: the session is saved; run bankcli stepup
//	4  the bank asks for a captcha and there is no terminal: its image is saved; run login again with -captcha-env
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

// errUsage marks errors that are the caller's flags, not the bank's answer.
var errUsage = errorf("usage")

// errStepUpOpen marks a login that succeeded but still needs the SMS code.
var errStepUpOpen = errorf("step-up still open")

type command struct {
	run   func(args []string) error
	brief string
}

var commands = map[string]command{
	"enrol":          {cmdEnrol, "enrol a customer (staff role enrol)"},
	"deposit":        {cmdDeposit, "pay cash into an account (staff role deposit)"},
	"whoami":         {cmdWhoami, "show who a staff token is and its roles"},
	"unlock":         {cmdUnlock, "lift a customer's login lock after checking identity (staff role unlock)"},
	"phone":          {cmdPhone, "change a customer's registered phone at the counter (staff role phone-change)"},
	"limit-override": {cmdLimitOverride, "set an account's limits beyond the customer's ceiling (staff role limit-override)"},
	"login":          {cmdLogin, "log in; asks for the SMS code on a new device"},
	"stepup":         {cmdStepUp, "finish the SMS step-up of the saved session"},
	"accounts":       {cmdAccounts, "list your accounts and balances"},
	"history":        {cmdHistory, "an account's transactions, newest first, page by page"},
	"payees":         {cmdPayees, "list your saved payees"},
	"payee-add":      {cmdPayeeAdd, "save a payee (needs a recent SMS step-up)"},
	"payee-rm":       {cmdPayeeRemove, "remove a saved payee"},
	"devices":        {cmdDevices, "list the devices the bank knows for you"},
	"device-rm":      {cmdDeviceRemove, "forget a device and end its sessions"},
	"anti-phishing":  {cmdAntiPhishing, "change your anti-phishing message (needs a recent SMS step-up)"},
	"order":          {cmdOrder, "write a canonical transfer order to sign"},
	"transfer-usb":   {cmdTransferUSB, "send an order signed with your USB key"},
	"transfer-cloud": {cmdTransferCloud, "send an order for your cloud key; confirm it on keysvc's page"},
	"receipt":        {cmdReceipt, "save a transfer's signed receipt for openssl"},
	"logout":         {cmdLogout, "end the saved session"},
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "-help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		eprintf("bankcli: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err := c.run(os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		eprintf("bankcli %s: %v\n", os.Args[1], err)
		if errors.Is(err, errStepUpOpen) {
			os.Exit(3)
		}
		if errors.Is(err, errCaptchaNeeded) {
			os.Exit(4)
		}
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func usage() {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(tr("usage: bankcli <command> [flags]   (bankcli <command> -h for its flags; go doc ./cmd/bankcli)\n\n"))
	for _, n := range names {
		fmt.Fprintf(&b, "  %-15s %s\n", n, text(commands[n].brief))
	}
	fmt.Fprint(os.Stderr, b.String())
}

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+text(format), append([]any{errUsage}, a...)...)
}
