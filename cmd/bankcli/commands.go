package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/token/l10n"
	"github.com/keyward/keyward/token/txformat"
)

func ctx() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt)
}

// required takes flag name and value pairs and names the first flag left
// empty.
func required(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return usageErr("-%s is required", pairs[i])
		}
	}
	return nil
}

func cmdEnrol(args []string) error {
	f := newFlags("enrol")
	var req bankwire.EnrolRequest
	var usbPEM, staffFile, pwEnv string
	f.fs.StringVar(&req.Login, "login", "", text("login name: 4-32 of a-z 0-9 _ . -, starting with a letter"))
	f.fs.StringVar(&req.Name, "name", "", text("the customer's name"))
	f.fs.StringVar(&req.Phone, "phone", "", text("mainland mobile number; SMS codes go there"))
	f.fs.StringVar(&req.IDCard, "id-card", "", text("resident ID card number (18 characters)"))
	f.fs.StringVar(&req.Card, "card", "", text("bank card number"))
	f.fs.StringVar(&req.AntiPhishing, "anti-phishing", "", text("the customer's message, shown at every login"))
	f.fs.StringVar(&usbPEM, "usb-key-pem", "", text("PEM public key of the customer's USB key (EC P-256 or SM2)"))
	f.fs.BoolVar(&req.CloudKey, "cloud-key", false, text("also create a cloud signing key in keysvc (confirmed on keysvc's page)"))
	f.fs.StringVar(&req.Corporate, "corporate", "", text("corporate id, for corporate operators"))
	f.fs.StringVar((*string)(&req.Role), "role", "", text("corporate role: admin, maker, reviewer or authoriser"))
	f.fs.StringVar(&req.Currency, "currency", "", text("currency of the first account (default CNY)"))
	f.fs.StringVar(&staffFile, "staff-token-file", "", text(staffFlagHelp))
	f.fs.StringVar(&pwEnv, "password-env", "", text("read the new password from this environment variable instead of the terminal"))
	if err := f.parse(args); err != nil {
		return err
	}
	if err := required("login", req.Login, "name", req.Name, "phone", req.Phone, "id-card", req.IDCard, "card", req.Card, "anti-phishing", req.AntiPhishing); err != nil {
		return err
	}
	staff, err := readStaffToken(staffFile)
	if err != nil {
		return err
	}
	if usbPEM != "" {
		if req.USBPublicKey, req.USBAlgorithm, err = usbPublicKey(usbPEM); err != nil {
			return err
		}
	}
	b, err := newBank(f.url, f.ca)
	if err != nil {
		return err
	}
	pw, err := readSecret(tr("New password for %s (8-64 characters, three of: lower, upper, digits, symbols): ", req.Login), pwEnv)
	if err != nil {
		return err
	}
	defer clear(pw)
	if pwEnv == "" {
		again, err := readSecret(tr("Type it again: "), "")
		if err != nil {
			return err
		}
		same := hmac.Equal(pw, again)
		clear(again)
		if !same {
			return usageErr("the two passwords differ; nothing was sent")
		}
	}
	c, cancel := ctx()
	defer cancel()
	if req.Password, err = b.sealFor(c, pw); err != nil {
		return err
	}
	b.auth = "Bearer " + staff
	var res bankwire.EnrolResult
	if _, err := b.call(c, "POST", "/staff/v1/customers", req, &res); err != nil {
		return err
	}
	cu := res.Customer
	printf("customer: %s\nlogin:    %s\nname:     %s\naccount:  %s\nid_card:  %s\ncard:     %s\nphone:    %s\n",
		cu.ID, cu.Login, cu.Name, res.Account, cu.IDCard, cu.Card, cu.Phone)
	if cu.USBKey {
		printf("usb_key:  registered in keysvc as usb-%s\n", cu.ID)
	}
	if res.HolderSetupCode != "" {
		printf("cloud_key: cust-%s\nholder_setup_code: %s\n", cu.ID, res.HolderSetupCode)
		eprintf("\nHand the setup code to the customer: they set the cloud key's PIN with it on keysvc's\n"+
			"confirmation endpoint (dev mode: https://127.0.0.1:8444/enrol, key cust-%s). It is shown once.\n", cu.ID)
	}
	return nil
}

func cmdDeposit(args []string) error {
	f := newFlags("deposit")
	var account, amount, currency, key, staffFile string
	f.fs.StringVar(&account, "account", "", text("account number"))
	f.fs.StringVar(&amount, "amount", "", text("amount, e.g. 10000.00"))
	f.fs.StringVar(&currency, "currency", "CNY", text("currency"))
	f.fs.StringVar(&key, "idempotency-key", "", text("repeat a deposit's key to make sure it is booked once (default: a new random key)"))
	f.fs.StringVar(&staffFile, "staff-token-file", "", text(staffFlagHelp))
	if err := f.parse(args); err != nil {
		return err
	}
	if err := required("account", account, "amount", amount); err != nil {
		return err
	}
	b, err := staffBank(f, staffFile)
	if err != nil {
		return err
	}
	if key == "" {
		key = randomToken(12)
	}
	c, cancel := ctx()
	defer cancel()
	var rc struct {
		TransferID string `json:"transfer_id"`
		Replayed   bool   `json:"replayed"`
	}
	body := map[string]string{"account": account, "amount": amount, "currency": currency, "idempotency_key": key}
	if _, err := b.call(c, "POST", "/staff/v1/deposits", body, &rc); err != nil {
		return err
	}
	note := ""
	if rc.Replayed {
		note = tr(" (already booked under this idempotency key; nothing moved now)")
	}
	printf("deposited %s %s into %s: transfer %s%s\n", amount, currency, account, rc.TransferID, note)
	return nil
}

func cmdLogin(args []string) error {
	f := newFlags("login")
	var login, device, deviceName, osName, pwEnv, codeEnv, captchaEnv string
	f.fs.StringVar(&login, "login", "", text("login name"))
	f.fs.StringVar(&device, "device", "", text("this device's id (a new one asks for an SMS code)"))
	f.fs.StringVar(&deviceName, "device-name", "", text("what to call this device in bankcli devices, e.g. \"办公室电脑\" (optional)"))
	f.fs.StringVar(&osName, "os", "", text("this device's operating system, e.g. \"Debian 12\""))
	f.fs.StringVar(&pwEnv, "password-env", "", text("read the password from this environment variable instead of the terminal"))
	f.fs.StringVar(&codeEnv, "code-env", "", text("read the SMS code from this environment variable (it must be set before the code is sent: mostly for stepup)"))
	f.fs.StringVar(&captchaEnv, "captcha-env", "", text("answer the captcha a previous login saved (exit 4) with the digits in this environment variable"))
	if err := f.parse(args); err != nil {
		return err
	}
	if err := required("login", login, "device", device, "os", osName); err != nil {
		return err
	}
	b, err := newBank(f.url, f.ca)
	if err != nil {
		return err
	}
	req := bankwire.LoginRequest{Login: login, Device: device, OS: osName, DeviceName: deviceName}
	capDir := filepath.Dir(f.sessionFile)
	if captchaEnv != "" {
		if req.CaptchaID, req.Captcha, err = savedCaptchaAnswer(capDir, captchaEnv); err != nil {
			return err
		}
	}
	pw, err := readSecret(tr("Password for %s: ", login), pwEnv)
	if err != nil {
		return err
	}
	defer clear(pw)
	c, cancel := ctx()
	defer cancel()
	res, err := loginOnce(c, b, req, pw)
	if errCode(err) == "captcha_required" && captchaEnv == "" {
		// Too many failed logins of this login or from here: a person
		// reads the bank's image and types its digits.
		if req.CaptchaID, req.Captcha, err = askCaptcha(c, b, capDir); err != nil {
			return err
		}
		res, err = loginOnce(c, b, req, pw)
	}
	if err != nil {
		return err
	}
	printf("Your anti-phishing message: %s\n", res.AntiPhishing)
	printf("(If that is not the message you chose, this is not your bank: log out and call it.)\n")
	ca := f.ca
	if ca != "" {
		if abs, err := filepath.Abs(ca); err == nil {
			ca = abs
		}
	}
	s := &session{URL: b.base, CA: ca, Session: res.Session, Device: device, OS: osName, Login: login, Customer: res.Customer,
		StepUp: res.StepUp, Created: time.Now().UTC()}
	if err := saveSession(f.sessionFile, s); err != nil {
		return err
	}
	if res.StepUp {
		printf("This login needs an SMS code (%s); it was sent to your registered phone.\n", strings.Trim(res.StepUpReason, "[]"))
		b.auth, b.device = "Bearer "+s.Session, s.Device
		if err := stepUp(c, b, s, f.sessionFile, codeEnv); err != nil {
			return err
		}
	}
	printf("Logged in as %s (customer %s). Session saved to %s\n", login, res.Customer, f.sessionFile)
	return nil
}

// stepUp asks for the SMS code and completes the session's step-up.
func stepUp(c context.Context, b *bank, s *session, path, codeEnv string) error {
	code, err := readSecret(tr("SMS code: "), codeEnv)
	if err != nil {
		return errorf("%w (%v)\nthe session is saved; finish with: bankcli stepup", errStepUpOpen, err)
	}
	defer clear(code)
	body := map[string]string{"code": strings.TrimSpace(string(code)), "os": s.OS}
	if _, err := b.call(c, "POST", "/v1/stepup", body, nil); err != nil {
		return err
	}
	s.StepUp = false
	return saveSession(path, s)
}

func cmdStepUp(args []string) error {
	f := newFlags("stepup")
	var codeEnv string
	var resend bool
	f.fs.StringVar(&codeEnv, "code-env", "", text("read the SMS code from this environment variable instead of the terminal"))
	f.fs.BoolVar(&resend, "resend", false, text("ask for a new SMS code first"))
	if err := f.parse(args); err != nil {
		return err
	}
	b, s, err := f.sessionBank()
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	if resend {
		if _, err := b.call(c, "POST", "/v1/stepup/request", nil, nil); err != nil {
			return err
		}
		printf("A new SMS code was sent to your registered phone.\n")
	}
	if err := stepUp(c, b, s, f.sessionFile, codeEnv); err != nil {
		return err
	}
	printf("Step-up done.\n")
	return nil
}

func cmdAccounts(args []string) error {
	f := newFlags("accounts")
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
		Accounts []struct {
			ID, Currency, Balance, State string
			Limits                       map[string]string
		} `json:"accounts"`
	}
	if _, err := b.call(c, "GET", "/v1/accounts", nil, &out); err != nil {
		if errCode(err) == "step_up_required" {
			return errorf("%w\nfinish the login with: bankcli stepup", err)
		}
		return err
	}
	rows := make([][]string, 0, len(out.Accounts))
	for _, a := range out.Accounts {
		rows = append(rows, []string{a.ID, a.Currency, l10n.Group(a.Balance), a.State,
			l10n.Group(a.Limits["per_transaction"]) + " / " + l10n.Group(a.Limits["daily"])})
	}
	// Aligned by display width (the headers may be Chinese), amounts grouped.
	table(os.Stdout, []string{tr("ACCOUNT"), tr("CURRENCY"), tr("BALANCE"), tr("STATE"), tr("LIMITS (per transfer / daily)")}, rows, 2)
	return nil
}

func cmdOrder(args []string) error {
	f := newFlags("order")
	var t txformat.Transfer
	var out string
	f.fs.StringVar(&t.PayerAccount, "from", "", text("your account"))
	f.fs.StringVar(&t.PayeeAccount, "to", "", text("the payee's account"))
	f.fs.StringVar(&t.PayeeName, "payee", "", text("the payee's name, as the bank knows the payee account's holder"))
	f.fs.StringVar(&t.PayeeBank, "payee-bank", "Keyward Bank", text("the payee's bank"))
	f.fs.StringVar(&t.Amount, "amount", "", text("amount, e.g. 12.00"))
	f.fs.StringVar(&t.Currency, "currency", "CNY", text("currency"))
	f.fs.StringVar(&t.Purpose, "purpose", "", text("remittance text (optional)"))
	f.fs.StringVar(&out, "out", "", text("the order file to write (never overwritten)"))
	if err := f.parse(args); err != nil {
		return err
	}
	if err := required("from", t.PayerAccount, "to", t.PayeeAccount, "payee", t.PayeeName, "amount", t.Amount, "out", out); err != nil {
		return err
	}
	order, err := txformat.CanonicalJSON(t, time.Now().Format(time.RFC3339), randomToken(16))
	if err != nil {
		return usageErr("%v", err)
	}
	doc, err := txformat.Recognise(order)
	if err != nil {
		return err
	}
	if err := writeNew(out, order, 0o644); err != nil {
		return err
	}
	sum := sha256.Sum256(order)
	printf("Wrote %s (%d bytes, %s). It says:\n\n    %s\n\nSHA-256: %s\n", out, len(order), doc.Format,
		strings.Join(doc.DisplayLinesIn(lang), "\n    "), hex.EncodeToString(sum[:]))
	return nil
}

// receiptFlags are the receipt outputs the transfer and receipt commands take.
func receiptFlags(f *common) *receiptFiles {
	var r receiptFiles
	f.fs.StringVar(&r.body, "out", "", text("save the receipt body here (with -sig and -key)"))
	f.fs.StringVar(&r.sig, "sig", "", text("save the receipt's DER signature here"))
	f.fs.StringVar(&r.key, "key", "", text("save the bank's receipt public key (PEM) here"))
	return &r
}

func cmdTransferUSB(args []string) error {
	f := newFlags("transfer-usb")
	var orderPath, sigPath string
	f.fs.StringVar(&orderPath, "order", "", text("the order file (bankcli order)"))
	f.fs.StringVar(&sigPath, "signature", "", text("its signature by your USB key: DER (openssl, kwsign -out) or base64 (kwsign)"))
	rf := receiptFlags(f)
	if err := f.parse(args); err != nil {
		return err
	}
	if err := required("order", orderPath, "signature", sigPath); err != nil {
		return err
	}
	if rf.any() {
		if err := rf.check(); err != nil {
			return err
		}
	}
	order, err := os.ReadFile(orderPath)
	if err != nil {
		return err
	}
	sig, err := readSignature(sigPath)
	if err != nil {
		return err
	}
	b, _, err := f.sessionBank()
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	var res bankwire.TransferResult
	if _, err := b.call(c, "POST", "/v1/transfers/usb", bankwire.SignedOrder{Order: order, Signature: base64.StdEncoding.EncodeToString(sig)}, &res); err != nil {
		return err
	}
	return reportTransfer(c, b, res, *rf)
}

func cmdTransferCloud(args []string) error {
	f := newFlags("transfer-cloud")
	var orderPath string
	f.fs.StringVar(&orderPath, "order", "", text("the order file (bankcli order)"))
	rf := receiptFlags(f)
	if err := f.parse(args); err != nil {
		return err
	}
	if err := required("order", orderPath); err != nil {
		return err
	}
	if rf.any() {
		if err := rf.check(); err != nil {
			return err
		}
	}
	order, err := os.ReadFile(orderPath)
	if err != nil {
		return err
	}
	b, _, err := f.sessionBank()
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	var p bankwire.PendingTransfer
	if _, err := b.call(c, "POST", "/v1/transfers/cloud", map[string][]byte{"order": order}, &p); err != nil {
		return err
	}
	sum := sha256.Sum256(order)
	if p.Digest != hex.EncodeToString(sum[:]) {
		return errorf("the bank sent keysvc other bytes than %s (SHA-256 %s, not %x): do not confirm it", orderPath, p.Digest, sum)
	}
	printf("Transfer %s waits for your confirmation until %s.\n", p.ID, l10n.Clock(p.ExpiresAt, lang))
	printf("Open the link keysvc sent to your device (dev mode: printed by keysvc and in var/holder-notices.jsonl),\n"+
		"check the payee, amount and SHA-256 %s, then approve with your cloud-key PIN.\nWaiting…\n", p.Digest)
	for p.Status == "pending" {
		if _, err := b.call(c, "GET", "/v1/transfers/cloud/"+p.ID+"?wait=25s", nil, &p); err != nil {
			return err
		}
	}
	if p.Status != "approved" || p.Result == nil {
		reason := p.Reason
		if reason == "" {
			reason = tr("no reason given")
		}
		return errorf("transfer %s was not confirmed: %s (%s); nothing moved", p.ID, p.Status, reason)
	}
	return reportTransfer(c, b, *p.Result, *rf)
}

// reportTransfer prints an executed transfer and saves its receipt when
// asked to.
func reportTransfer(c context.Context, b *bank, res bankwire.TransferResult, rf receiptFiles) error {
	note := ""
	if res.Replayed {
		note = tr(" (this order was executed before; nothing moved now)")
	}
	printf("Transfer %s done%s.\n", res.TransferID, note)
	if !rf.any() {
		printf("Receipt: bankcli receipt -transfer %s -out receipt.json -sig receipt.sig -key bank-receipt.pem\n", res.TransferID)
		return nil
	}
	if res.Receipt.Body == "" { // signed later: fetch it
		return saveReceipt(c, b, res.TransferID, rf)
	}
	return saveReceiptOf(c, b, res.Receipt, rf)
}

func cmdReceipt(args []string) error {
	f := newFlags("receipt")
	var id string
	f.fs.StringVar(&id, "transfer", "", text("the transfer id (T…)"))
	rf := receiptFlags(f)
	if err := f.parse(args); err != nil {
		return err
	}
	if err := required("transfer", id); err != nil {
		return err
	}
	if err := rf.check(); err != nil {
		return err
	}
	b, _, err := f.sessionBank()
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	return saveReceipt(c, b, id, *rf)
}

func saveReceipt(c context.Context, b *bank, id string, rf receiptFiles) error {
	var rc bankwire.Receipt
	if _, err := b.call(c, "GET", "/v1/receipts/"+id, nil, &rc); err != nil {
		return err
	}
	return saveReceiptOf(c, b, rc, rf)
}

func saveReceiptOf(c context.Context, b *bank, rc bankwire.Receipt, rf receiptFiles) error {
	var key struct {
		PEM string `json:"pem"`
	}
	if _, err := b.call(c, "GET", "/v1/receipt-key", nil, &key); err != nil {
		return err
	}
	if err := writeReceipt(rc, key.PEM, rf); err != nil {
		return err
	}
	printf("Receipt saved and its signature checked: %s, %s, %s\nVerify it yourself: openssl dgst -sha256 -verify %s -signature %s %s\n",
		rf.body, rf.sig, rf.key, rf.key, rf.sig, rf.body)
	return nil
}

func cmdLogout(args []string) error {
	f := newFlags("logout")
	if err := f.parse(args); err != nil {
		return err
	}
	b, _, err := f.sessionBank()
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	_, err = b.call(c, "POST", "/v1/logout", nil, nil)
	if err != nil && errCode(err) != "unauthenticated" && errCode(err) != "session_expired" {
		return err
	}
	if err := os.Remove(f.sessionFile); err != nil {
		return err
	}
	printf("Logged out.\n")
	return nil
}
