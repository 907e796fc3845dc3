//go:build linux

package softhsmtests

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestProcBankcliCustomerFunctions (issue 18 item 5): the customer's own
// functions through the real bankcli binary against banking and keysvc
// running as processes (keysvc on a SoftHSM token): history paged by
// -limit and followed by -all; payee-add refused without a recent
// step-up (bankcli names the fix), saved after one, screened, listed with
// Chinese names aligned, removed; devices listed with their names and one
// forgotten, its session ended at once; the anti-phishing message changed
// and shown at the next login. The outputs are logged (the README's
// walk-through shows them).
func TestProcBankcliCustomerFunctions(t *testing.T) {
	e := procStartEnv(t)
	cli := e.cli
	alicePriv, alicePub := procUSBKey(t, cli.dir, "alice-usb")
	alice := e.enrol(t, procAlicePW, "-login", "alice", "-name", "Alice Wang", "-phone", procAlicePhone, "-id-card", "11010519491231002X",
		"-card", "6222020200112233446", "-anti-phishing", "蓝色海豚", "-usb-key-pem", alicePub)
	bob := e.enrol(t, procBobPW, "-login", "wangxm", "-name", "王小明", "-phone", "13800002222", "-id-card", "110101199003070011",
		"-card", "6222020200112233453", "-anti-phishing", "green tea")
	const deposits = 23
	for i := 1; i <= deposits; i++ {
		cli.ok(t, nil, "deposit", "-account", alice.account, "-amount", fmt.Sprintf("%d.%02d", 1000*i, i), "-staff-token-file", e.staffTokenFile)
	}
	laptop := filepath.Join(cli.dir, "alice-laptop.session")
	e.login(t, laptop, "alice", procAlicePW, procAlicePhone, "蓝色海豚", "laptop-1", "Debian 12")

	// History: one page of 10 names the next; -all walks every entry once.
	out := cli.ok(t, nil, "history", "-account", alice.account, "-limit", "10", "-session-file", laptop)
	t.Logf("bankcli history -limit 10:\n%s", out)
	if rows := procHistoryRows(out); len(rows) != 10 || !strings.Contains(out, "More: bankcli history -account "+alice.account+" -limit 10 -before ") {
		t.Fatalf("first page: %d rows\n%s", len(rows), out)
	}
	if !strings.Contains(out, "23,000.23") || !strings.Contains(out, "276,002.76") { // the newest deposit and the balance after it
		t.Fatalf("amounts not grouped or wrong:\n%s", out)
	}
	cursor := regexp.MustCompile(`-before (\S+)`).FindStringSubmatch(out)[1]
	out = cli.ok(t, nil, "history", "-account", alice.account, "-limit", "10", "-before", cursor, "-session-file", laptop)
	if rows := procHistoryRows(out); len(rows) != 10 || !strings.Contains(rows[0], "13,000.13") {
		t.Fatalf("second page:\n%s", out)
	}
	out = cli.ok(t, nil, "history", "-account", alice.account, "-limit", "10", "-all", "-session-file", laptop)
	rows := procHistoryRows(out)
	seen := map[string]bool{}
	for _, r := range rows {
		id := regexp.MustCompile(`T[0-9]{12}`).FindString(r)
		if id == "" || seen[id] {
			t.Fatalf("row without a transfer id, or seen twice: %q\n%s", r, out)
		}
		seen[id] = true
	}
	if len(rows) != deposits || !strings.Contains(out, fmt.Sprintf("(%d entries; that is the account's first)", deposits)) {
		t.Fatalf("-all: %d rows, want %d\n%s", len(rows), deposits, out)
	}
	// In Chinese: Chinese headers and kinds, and the next page's command
	// still there for a script to take the cursor from.
	out = cli.ok(t, []string{"LC_ALL=zh_CN.UTF-8"}, "history", "-account", alice.account, "-limit", "10", "-session-file", laptop)
	t.Logf("LC_ALL=zh_CN.UTF-8 bankcli history -limit 10:\n%s", out)
	if rows := procHistoryRows(out); len(rows) != 10 || !strings.Contains(rows[0], "现金存入") ||
		!strings.Contains(out, "账户 "+alice.account+" 的交易明细，由近及远（北京时间）：\n时间 ") ||
		!strings.Contains(out, "更多：bankcli history -account "+alice.account+" -limit 10 -before "+cursor+" ") {
		t.Fatalf("first page in Chinese (cursor %s):\n%s", cursor, out)
	}
	if _, errOut, code := cli.run(t, nil, "history", "-account", bob.account, "-session-file", laptop); code != 1 || !strings.Contains(errOut, "not_found, HTTP 404") {
		t.Fatalf("alice reads bob's account: exit %d: %s", code, errOut)
	}
	// A transfer with a Chinese purpose, signed with the USB key: both
	// statements show it with the other side's name and masked account.
	cli.ok(t, nil, "order", "-from", alice.account, "-to", bob.account, "-payee", "王小明", "-amount", "1234.50", "-purpose", "十二月房租", "-out", "rent.json")
	procOpenSSL(t, cli.dir, "dgst", "-sha256", "-sign", alicePriv, "-out", "rent.sig", "rent.json")
	tid := procTransferID(t, cli.ok(t, nil, "transfer-usb", "-order", "rent.json", "-signature", "rent.sig", "-session-file", laptop))
	out = cli.ok(t, nil, "history", "-account", alice.account, "-limit", "2", "-session-file", laptop)
	t.Logf("bankcli history -limit 2 after a transfer:\n%s", out)
	maskedBob := bob.account[:4] + " **** **** " + bob.account[15:]
	if rows := procHistoryRows(out); len(rows) != 2 || !strings.Contains(rows[0], tid) || !strings.Contains(rows[0], "-1,234.50") ||
		!strings.Contains(rows[0], "274,768.26") || !strings.Contains(rows[0], "王小明 "+maskedBob) || !strings.Contains(rows[0], "十二月房租") {
		t.Fatalf("alice's history after the transfer (want %s to 王小明 %s):\n%s", tid, maskedBob, out)
	}

	// A second login from the same laptop asks for no code: the session's
	// step-up is none, so saving a payee is refused and bankcli says what
	// to do.
	if out, errOut, code := cli.run(t, []string{"PROC_PW=" + procAlicePW}, "login", "-login", "alice", "-device", "laptop-1", "-os", "Debian 12",
		"-password-env", "PROC_PW", "-session-file", laptop); code != 0 || strings.Contains(out, "SMS code") {
		t.Fatalf("login from the known laptop: exit %d\n%s\n%s", code, out, errOut)
	}
	_, errOut, code := cli.run(t, nil, "payee-add", "-account", bob.account, "-name", "王小明", "-nickname", "表哥", "-session-file", laptop)
	t.Logf("bankcli payee-add without a recent step-up (exit %d):\n%s", code, errOut)
	if code != 1 || !strings.Contains(errOut, "step_up_required, HTTP 403") || !strings.Contains(errOut, "run `bankcli stepup -resend`") {
		t.Fatalf("payee-add without a step-up: exit %d\n%s", code, errOut)
	}
	// stepup -resend in a script: the code is sent, then there is no
	// terminal to type it (exit 3); stepup -code-env with the code finishes.
	before := len(procSMSCodes(t, e.outbox, procAlicePhone))
	if out, errOut, code := cli.run(t, nil, "stepup", "-resend", "-session-file", laptop); code != 3 || !strings.Contains(out, "A new SMS code was sent") {
		t.Fatalf("stepup -resend without a terminal: exit %d\n%s\n%s", code, out, errOut)
	}
	codes := procSMSCodes(t, e.outbox, procAlicePhone)
	if len(codes) != before+1 {
		t.Fatalf("SMS codes: %d before -resend, %d after", before, len(codes))
	}
	cli.ok(t, []string{"PROC_SMS_CODE=" + codes[len(codes)-1]}, "stepup", "-code-env", "PROC_SMS_CODE", "-session-file", laptop)
	out = cli.ok(t, nil, "payee-add", "-account", bob.account, "-name", "王小明", "-nickname", "表哥", "-bank", "Keyward Bank", "-session-file", laptop)
	t.Logf("bankcli payee-add after the step-up:\n%s", out)
	pid := regexp.MustCompile(`Saved payee (p[0-9a-f]{16}): 王小明, account ` + bob.account).FindStringSubmatch(out)
	if pid == nil {
		t.Fatalf("payee-add: %s", out)
	}
	// Screened: a listed name is refused, whatever the account.
	if _, errOut, code := cli.run(t, nil, "payee-add", "-account", "6222020200112233461", "-name", "Mallory Fraud", "-session-file", laptop); code != 1 || !strings.Contains(errOut, "payee_blocked") {
		t.Fatalf("screened payee: exit %d\n%s", code, errOut)
	}
	// An account put on the list is refused too, under any name.
	const reloaded = `msg="screening list reloaded"`
	reloads := strings.Count(e.banking.log(), reloaded)
	procReplace(t, e.blacklist, "# test screening list\nname:Mallory Fraud\naccount:6222020200112233479\nend:2\n")
	procEventually(t, "banking to reload the screening list", 15*time.Second, func() bool {
		return strings.Count(e.banking.log(), reloaded) > reloads
	})
	if _, errOut, code := cli.run(t, nil, "payee-add", "-account", "6222020200112233479", "-name", "Innocent Name", "-session-file", laptop); code != 1 || !strings.Contains(errOut, "payee_blocked") {
		t.Fatalf("screened account: exit %d\n%s", code, errOut)
	}
	cli.ok(t, nil, "payee-add", "-account", "6222 0202 0011 2233 461", "-name", "Bob Li", "-session-file", laptop)
	out = cli.ok(t, nil, "payees", "-session-file", laptop)
	t.Logf("bankcli payees:\n%s", out)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "王小明") || !strings.Contains(lines[1], "表哥") || !strings.Contains(lines[2], "6222020200112233461") {
		t.Fatalf("payees:\n%s", out)
	}
	if c1, c2 := displayCol(lines[1], bob.account), displayCol(lines[2], "6222020200112233461"); c1 != c2 {
		t.Errorf("account column at %d after a Chinese name, %d after a Latin one:\n%s", c1, c2, out)
	}
	// The same list in Chinese (bankcli's language by default): Chinese
	// headers, and the columns still line up by display width under them.
	out = cli.ok(t, []string{"LC_ALL=zh_CN.UTF-8"}, "payees", "-session-file", laptop)
	t.Logf("LC_ALL=zh_CN.UTF-8 bankcli payees:\n%s", out)
	lines = strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^编号 +户名 +备注名 +账号 +开户行 +添加时间$`).MatchString(lines[0]) {
		t.Fatalf("payees in Chinese:\n%s", out)
	}
	if h, c1, c2 := displayCol(lines[0], "账号"), displayCol(lines[1], bob.account), displayCol(lines[2], "6222020200112233461"); h != c1 || c1 != c2 {
		t.Errorf("account column at %d (header), %d and %d (rows) in Chinese:\n%s", h, c1, c2, out)
	}
	if out := cli.ok(t, nil, "payee-rm", "-id", pid[1], "-session-file", laptop); !strings.Contains(out, "Removed payee "+pid[1]) {
		t.Fatalf("payee-rm: %s", out)
	}
	if out := cli.ok(t, nil, "payees", "-session-file", laptop); strings.Contains(out, "王小明") {
		t.Fatalf("the removed payee is listed:\n%s", out)
	}

	// Devices: a phone with a name logs in too; the laptop forgets it and
	// the phone's session is refused at once.
	phone := filepath.Join(cli.dir, "alice-phone.session")
	before = len(procSMSCodes(t, e.outbox, procAlicePhone))
	if _, _, code := cli.run(t, []string{"PROC_PW=" + procAlicePW}, "login", "-login", "alice", "-device", "phone-7", "-os", "Android 14",
		"-device-name", "小王的手机", "-password-env", "PROC_PW", "-session-file", phone); code != 3 {
		t.Fatalf("phone login: exit %d, want 3 at the step-up", code)
	}
	codes = procSMSCodes(t, e.outbox, procAlicePhone)
	if len(codes) != before+1 {
		t.Fatal("no SMS code for the phone's login")
	}
	cli.ok(t, []string{"PROC_SMS_CODE=" + codes[len(codes)-1]}, "stepup", "-code-env", "PROC_SMS_CODE", "-session-file", phone)
	cli.ok(t, nil, "accounts", "-session-file", phone)
	out = cli.ok(t, nil, "devices", "-session-file", laptop)
	t.Logf("bankcli devices:\n%s", out)
	var phoneRef string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case strings.Contains(l, "小王的手机") && len(f) > 0 && f[0] != "*":
			phoneRef = f[0]
		case strings.Contains(l, "Debian 12") && (len(f) == 0 || f[0] != "*"):
			t.Errorf("the laptop is not marked as this device: %q", l)
		}
	}
	if phoneRef == "" {
		t.Fatalf("no phone in the device list:\n%s", out)
	}
	out = cli.ok(t, nil, "device-rm", "-ref", phoneRef, "-session-file", laptop)
	t.Logf("bankcli device-rm:\n%s", out)
	if !strings.Contains(out, "Forgot device "+phoneRef+"; 1 session(s) on it ended.") {
		t.Fatalf("device-rm: %s", out)
	}
	if _, errOut, code := cli.run(t, nil, "accounts", "-session-file", phone); code != 1 || !strings.Contains(errOut, "HTTP 401") {
		t.Fatalf("the forgotten phone's session: exit %d: %s", code, errOut)
	}
	cli.ok(t, nil, "accounts", "-session-file", laptop)

	// The anti-phishing message (the laptop stepped up minutes ago).
	out = cli.ok(t, nil, "anti-phishing", "-message", "绿茶与海豚", "-session-file", laptop)
	t.Logf("bankcli anti-phishing:\n%s", out)
	if !strings.Contains(out, "Your anti-phishing message is now: 绿茶与海豚") {
		t.Fatalf("anti-phishing: %s", out)
	}
	if _, errOut, code := cli.run(t, nil, "anti-phishing", "-message", strings.Repeat("茶", 21), "-session-file", laptop); code != 1 || !strings.Contains(errOut, "invalid_request") {
		t.Fatalf("21 characters: exit %d: %s", code, errOut)
	}
	out = cli.ok(t, []string{"PROC_PW=" + procAlicePW}, "login", "-login", "alice", "-device", "laptop-1", "-os", "Debian 12",
		"-password-env", "PROC_PW", "-session-file", filepath.Join(cli.dir, "again.session"))
	if !strings.Contains(out, "Your anti-phishing message: 绿茶与海豚\n") {
		t.Fatalf("the next login shows another message:\n%s", out)
	}
}

// procHistoryRows are the entry lines of bankcli history's table.
func procHistoryRows(out string) []string {
	var rows []string
	for _, l := range strings.Split(out, "\n") {
		if regexp.MustCompile(`^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} `).MatchString(l) {
			rows = append(rows, l)
		}
	}
	return rows
}

// displayCol is the terminal column where cell starts in line (a Chinese
// character takes two columns).
func displayCol(line, cell string) int {
	i := strings.Index(line, cell)
	if i < 0 {
		return -1
	}
	n := 0
	for _, r := range line[:i] {
		if r >= 0x2E80 {
			n += 2
		} else {
			n++
		}
	}
	return n
}
