//go:build linux

package softhsmtests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/banking"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token/smcrypto"
)

// TestRestoreDrill (issue 15, "Restore drill"; R-AV-3, R-TOK-8): the bank
// loses its HSM and comes back from the ceremony's backup alone.
//
//  1. Token A is initialised by `ceremony token init`; `ceremony keygen`
//     with service_keys: true makes keysvc's service keys on it.
//  2. keysvc (cmd/keysvc, production config: it refuses to start without
//     ceremony-made service keys) runs on A, banking (cmd/banking) on
//     keysvc; the officer provisions the bank's keys (all "wrapped", so
//     they live in keysvc's store under the service keys; a "kyc" client
//     may decrypt the PII data keys). Three customers are enrolled through
//     banking's staff API: PII sealed under data keys from keysvc,
//     passwords MACed, a confirm-required cloud key each, whose holder PIN
//     is set on keysvc's confirmation endpoint (HMAC under keysvc-pin-mac).
//     Each logs in once (the control).
//  3. `ceremony backup` backs up the service keys 3-of-5. keysvc is
//     stopped and its store (keysvc.db) copied.
//  4. A fresh token C (`ceremony token init`) gets the service keys by
//     `ceremony restore` from the backup file and three shares only.
//  5. keysvc starts on C with the store copy, at the same address; banking,
//     never restarted, then: every customer logs in (SM2 login key and
//     password MAC, both sealed under keysvc-sm-kek), a wrong password is
//     still refused, every customer's cloud key signs a transfer the holder
//     approves with the PIN set before the loss (keysvc-kek unwraps the
//     key, keysvc-pin-mac checks the PIN, banking verifies the signature),
//     and with banking stopped every customer's ID and card number are
//     decrypted from bank.db through keysvc on C.
func TestRestoreDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ceremonies, keysvc and banking")
	}
	ctx := context.Background()
	dir := t.TempDir()
	tt := newTestTLS(t, dir)
	pins := cerPINs(t)
	pinFile := filepath.Join(pins, "user")
	hc := &http.Client{Timeout: 30 * time.Second, Transport: tt.clientTransport(4)}
	defer hc.CloseIdleConnections()

	// 1. Token A and its service keys, by ceremony.
	a := cerInitToken(t, pins, "drill-a")
	kf, _ := cerFile(t, "keygen-service-keys.yaml", pins, map[string]string{"LABEL": a})
	cerRunApproved(t, []string{"keygen"}, kf)

	// 2. keysvc on A, the bank's keys, banking, three customers.
	dirA := filepath.Join(dir, "site-a")
	if err := os.Mkdir(dirA, 0o700); err != nil {
		t.Fatal(err)
	}
	caddr, notify := freeAddr(t), filepath.Join(dir, "holder-notices.jsonl")
	ks := newDaemon(t, "keysvc", dirA, tt)
	ks.args = []string{"serve", "-config", drillKeysvcConf(t, ks, dirA, caddr, notify, a, pinFile)}
	ks.start(t)
	confirmURL := "https://" + caddr
	officer := ks.kmsClient(t, officerToken, 10*time.Second, 2)
	grant := func(ops ...wire.Op) wire.Policy {
		return wire.Policy{Grants: []wire.Grant{{Client: "bankapp", Ops: ops}}}
	}
	piiPolicy := grant(wire.OpDataKey)
	piiPolicy.Grants = append(piiPolicy.Grants, wire.Grant{Client: "kyc", Ops: []wire.Op{wire.OpDecrypt}})
	for _, k := range []wire.CreateKeyRequest{
		{Name: banking.KeyLogin, Purpose: "encrypt", Algorithm: "sm2", Protection: "wrapped", Policy: grant("decrypt", "public")},
		{Name: banking.KeyPwMAC, Purpose: "mac", Algorithm: "hmac-sm3", Protection: "wrapped", Policy: grant("mac")},
		{Name: banking.KeyPII, Purpose: "encrypt", Algorithm: "sm4", Protection: "wrapped", Policy: piiPolicy},
		{Name: banking.KeyReceipt, Purpose: "sign", Algorithm: "ec-p256", Protection: "wrapped", Policy: grant("sign", "verify", "public")},
		{Name: banking.KeyAudit, Purpose: "sign", Algorithm: "ec-p256", Protection: "wrapped", Policy: grant("sign", "public")},
	} {
		if _, err := officer.CreateKey(ctx, k); err != nil {
			t.Fatalf("provision %s: %v", k.Name, err)
		}
	}
	bankData := filepath.Join(dir, "bank")
	if err := os.Mkdir(bankData, 0o700); err != nil {
		t.Fatal(err)
	}
	bk := startBanking(t, dir, bankData, ks, bankingOptions{})
	outbox := filepath.Join(dir, "sms-outbox.jsonl")
	people := []*drillCustomer{
		{login: "alice", name: "Alice Wang", phone: "13800001111", idCard: "11010519491231002X", card: "6222020200112233446"},
		{login: "bobli", name: "Bob Li", phone: "13800002222", idCard: "110101199003070011", card: "6222020200112233446"},
		{login: "carolz", name: "Carol Zhou", phone: "13800003333", idCard: "110101198001010010", card: "6222020200112233446"},
	}
	for i, p := range people {
		p.pw, p.dev = fmt.Sprintf("Drill-Walk-%d7q", i), "phone-"+p.login
		p.enrol(t, hc, bk.url)
		if st, out := procCall(t, hc, "POST", confirmURL+"/confirm/v1/enrol", "", "", map[string]any{"key": p.cloudKey, "setup_code": p.setupCode, "pin": holderPIN}); st != 200 {
			t.Fatalf("holder enrol %s: %d %v", p.login, st, out)
		}
		if st, out := procCall(t, hc, "POST", bk.url+"/staff/v1/deposits", staffToken, "", map[string]any{"account": p.account, "amount": "1000.00", "currency": "CNY", "idempotency_key": "drill-" + p.login}); st != 200 {
			t.Fatalf("deposit %s: %d %v", p.login, st, out)
		}
		p.login1(t, hc, bk.url, outbox)
	}

	// 3. The service keys backed up 3-of-5; keysvc stopped, its store copied.
	bf, out := cerFile(t, "backup.yaml", pins, map[string]string{"LABEL": a, "KEYS": cerServiceKeyLabels()})
	cerRunApproved(t, []string{"backup"}, bf)
	backup := filepath.Join(out, "backup.json")
	shares := []string{filepath.Join(out, "share-2.txt"), filepath.Join(out, "share-4.txt"), filepath.Join(out, "share-5.txt")}
	ks.stop()
	dirC := filepath.Join(dir, "site-c")
	if err := os.MkdirAll(filepath.Join(dirC, "keysvc"), 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(dirA, "keysvc", "keysvc.db"), filepath.Join(dirC, "keysvc", "keysvc.db"))

	// 4. A fresh token C: the service keys from the backup and three shares.
	c := cerInitToken(t, pins, "drill-c")
	cerRestore(t, pins, c, backup, shares...)

	// 5. keysvc on C with the store copy, where keysvc on A answered.
	ksC := newDaemon(t, "keysvc", dirC, tt)
	ksC.addr, ksC.url = ks.addr, ks.url
	ksC.args = []string{"serve", "-config", drillKeysvcConf(t, ksC, dirC, caddr, notify, c, pinFile)}
	ksC.start(t)
	logC, _ := os.ReadFile(ksC.logPath)
	if strings.Contains(string(logC), "creating service key") || !strings.Contains(string(logC), "holds the recorded service keys") {
		t.Fatalf("keysvc on C did not run on the restored service keys:\n%s", logC)
	}
	for _, p := range people {
		p.loginAgain(t, hc, bk.url, outbox)
	}
	if st, out := procCall(t, hc, "POST", bk.url+"/v1/login", "", "", map[string]any{"login": "alice", "password": procSeal(t, hc, bk.url, "Not-Her-Passw0rd"), "device": people[0].dev, "os": "Android 14"}); st == 200 {
		t.Fatalf("a wrong password logged in on C: %v", out)
	}
	for i, p := range people {
		payee := people[(i+1)%len(people)]
		p.cloudTransfer(t, hc, bk.url, confirmURL, notify, transferOrder(t, p.account, payee.account, payee.name, "12.34", "drill-cloud-"+p.login))
	}
	bk.stop()
	db, err := bolt.Open(filepath.Join(bankData, "bank.db"), 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kycC := ksC.kmsClient(t, drillKYCToken, 10*time.Second, 2)
	for _, p := range people {
		var cu banking.Customer
		err := db.View(func(tx *bolt.Tx) error {
			return json.Unmarshal(tx.Bucket([]byte("bank-customers")).Get([]byte(p.id)), &cu)
		})
		if err != nil {
			t.Fatal(err)
		}
		dk, err := kycC.Decrypt(ctx, banking.KeyPII, cu.DataKeyCT, []byte("customer:"+p.id))
		if err != nil {
			t.Fatalf("%s's PII data key on C: %v", p.login, err)
		}
		id, err := smcrypto.SM4GCMOpen(dk, cu.IDCardSealed, []byte(p.id+":id_card"))
		if err != nil || string(id) != p.idCard {
			t.Fatalf("%s's ID number on C: %q %v", p.login, id, err)
		}
		card, err := smcrypto.SM4GCMOpen(dk, cu.CardSealed, []byte(p.id+":card"))
		if err != nil || string(card) != p.card {
			t.Fatalf("%s's card number on C: %q %v", p.login, card, err)
		}
	}
	t.Logf("restore drill: %d customers enrolled on %s; service keys backed up 3-of-5, restored into %s from 3 shares; on C every login, cloud-key transfer and PII decryption succeeded", len(people), a, c)
}

const drillKYCToken = "drill-kyc-token-29fe"

// drillKeysvcConf writes keysvc's production config for token label
// (PIN from pinFile) with its data under dir/keysvc, the confirmation
// endpoint on caddr telling holders through notify; clients: officer
// (admin), bankapp (banking: cust- and usb- keys), kyc.
func drillKeysvcConf(t *testing.T, d *daemon, dir, caddr, notify, label, pinFile string) string {
	t.Helper()
	conf := filepath.Join(dir, "keysvc.yaml")
	writeFiles(t, conf, fmt.Sprintf(`listen: %q
data_dir: %q
tls: {cert: %q, key: %q}
token:
  uri: %q
  wait_timeout: 10s
destroy: {default_delay: 24h, min_delay: 1h}
scheduler_interval: 1h
confirm:
  listen: %q
  public_url: %q
  timeout: 60s
  notify: {file: %q}
clients:
  - {name: officer, admin: true, token_sha256: %s}
  - {name: bankapp, enrol_prefixes: [usb-, cust-], token_sha256: %s}
  - {name: kyc, token_sha256: %s}
`, d.addr, filepath.Join(dir, "keysvc"), d.tls.cert, d.tls.key,
		"pkcs11:token="+label+"?module-path="+modulePath+"&pin-source=file:"+pinFile,
		caddr, "https://"+caddr, notify, sha(officerToken), sha(bankappToken), sha(drillKYCToken)))
	return conf
}

// drillCustomer is one customer of the drill.
type drillCustomer struct {
	login, name, phone, idCard, card, pw, dev string
	id, account, cloudKey, setupCode, sess    string
}

func (p *drillCustomer) enrol(t *testing.T, hc *http.Client, bankURL string) {
	t.Helper()
	st, out := procCall(t, hc, "POST", bankURL+"/staff/v1/customers", staffToken, "", map[string]any{"login": p.login, "name": p.name, "phone": p.phone,
		"id_card": p.idCard, "card": p.card, "anti_phishing": "蓝色海豚", "password": procSeal(t, hc, bankURL, p.pw), "cloud_key": true})
	if st != 201 {
		t.Fatalf("enrol %s: %d %v", p.login, st, out)
	}
	p.id = out["customer"].(map[string]any)["id"].(string)
	p.account, _ = out["account"].(string)
	p.setupCode, _ = out["holder_setup_code"].(string)
	p.cloudKey = "cust-" + p.id
	if p.account == "" || p.setupCode == "" {
		t.Fatalf("enrol %s: %v", p.login, out)
	}
}

// logIn logs in (password sealed to the login key, MAC-verified) and does
// the SMS step-up if asked; it returns the session and whether a step-up
// was asked.
func (p *drillCustomer) logIn(t *testing.T, hc *http.Client, bankURL, outbox string) (string, bool) {
	t.Helper()
	before := 0
	if _, err := os.Stat(outbox); err == nil {
		before = len(procSMSCodes(t, outbox, p.phone))
	}
	st, out := procCall(t, hc, "POST", bankURL+"/v1/login", "", "", map[string]any{"login": p.login, "password": procSeal(t, hc, bankURL, p.pw), "device": p.dev, "os": "Android 14"})
	if st != 200 {
		t.Fatalf("login %s: %d %v", p.login, st, out)
	}
	sess := out["session"].(string)
	if out["step_up"] != true {
		return sess, false
	}
	var codes []string
	procEventually(t, "the step-up SMS to "+p.login, 10*time.Second, func() bool {
		if _, err := os.Stat(outbox); err != nil {
			return false
		}
		codes = procSMSCodes(t, outbox, p.phone)
		return len(codes) > before
	})
	if st, out := procCall(t, hc, "POST", bankURL+"/v1/stepup", sess, p.dev, map[string]any{"code": codes[len(codes)-1], "os": "Android 14"}); st != 200 {
		t.Fatalf("step-up %s: %d %v", p.login, st, out)
	}
	return sess, true
}

// login1 is the first login (a new device: step-up).
func (p *drillCustomer) login1(t *testing.T, hc *http.Client, bankURL, outbox string) {
	t.Helper()
	if _, stepUp := p.logIn(t, hc, bankURL, outbox); !stepUp {
		t.Fatalf("%s's first login from a new device asked no step-up", p.login)
	}
}

// loginAgain logs in after the restore and keeps the session.
func (p *drillCustomer) loginAgain(t *testing.T, hc *http.Client, bankURL, outbox string) {
	t.Helper()
	p.sess, _ = p.logIn(t, hc, bankURL, outbox)
}

// cloudTransfer pays ord with the cloud key: keysvc shows it to the holder
// (the notify file), who approves with the PIN; banking verifies the cloud
// signature and posts the transfer.
func (p *drillCustomer) cloudTransfer(t *testing.T, hc *http.Client, bankURL, confirmURL, notify string, ord []byte) {
	t.Helper()
	sess := p.sess
	before := len(procNotices(t, notify, p.cloudKey))
	st, out := procCall(t, hc, "POST", bankURL+"/v1/transfers/cloud", sess, p.dev, map[string]any{"order": ord})
	if st != 202 || out["status"] != "pending" {
		t.Fatalf("%s's cloud transfer: %d %v", p.login, st, out)
	}
	pid := out["id"].(string)
	var n procNotice
	procEventually(t, "keysvc's holder notice to "+p.login, 30*time.Second, func() bool {
		ns := procNotices(t, notify, p.cloudKey)
		if len(ns) > before {
			n = ns[len(ns)-1]
			return true
		}
		return false
	})
	holderToken := n.Link[strings.LastIndex(n.Link, "/")+1:]
	if st, out := procCall(t, hc, "POST", confirmURL+"/confirm/v1/c/"+holderToken+"/approve", "", "",
		map[string]any{"key": p.cloudKey, "digest": digestHex(ord), "pin": holderPIN}); st != 200 {
		t.Fatalf("%s's holder approval: %d %v", p.login, st, out)
	}
	st, out = procCall(t, hc, "GET", bankURL+"/v1/transfers/cloud/"+pid+"?wait=10s", sess, p.dev, nil)
	if st != 200 || out["status"] != "approved" || out["result"] == nil {
		t.Fatalf("%s's cloud transfer after the approval: %d %v", p.login, st, out)
	}
}

// copyFile copies src to dst (0600), as an operator copies a stopped
// keysvc's store.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
