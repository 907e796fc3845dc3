package softhsmtests

// The banking app against a real keysvc on SoftHSM, both over HTTP on
// loopback (issue 6): enrolment, login with an SM2-encrypted password,
// step-up on a new device, a USB-key-signed transfer with a receipt that
// openssl verifies, a cloud-key transfer confirmed on keysvc's second
// channel, corporate maker-checker, and the refusals.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/dbtest"

	"github.com/keyward/keyward/banking"
	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/blacklist"
	"github.com/keyward/keyward/banking/staff"
	"github.com/keyward/keyward/keysvc/client"
	"github.com/keyward/keyward/token/smcrypto"
	"github.com/keyward/keyward/token/txformat"
)

// The staff of the banks these tests run (issue 18: no shared staff
// token): teller1 holds staffToken (enrol, deposit, phone-change),
// supervisor1 supervisorToken (unlock, limit-override, ledger-verify).
var (
	staffToken, staffSum           = newStaffToken()
	supervisorToken, supervisorSum = newStaffToken()
)

func newStaffToken() (string, [32]byte) {
	tok, sum, err := staff.NewToken()
	if err != nil {
		panic(err)
	}
	return tok, sum
}

// testStaff is the registry of teller1 and supervisor1, for banks served
// in the test process.
func testStaff(t testing.TB) *staff.Registry {
	t.Helper()
	reg, err := staff.New([]staff.Member{
		{ID: "teller1", Name: "Teller One", Roles: []staff.Role{staff.RoleEnrol, staff.RoleDeposit, staff.RolePhoneChange}, TokenSHA256: staffSum},
		{ID: "supervisor1", Name: "Supervisor One", Roles: []staff.Role{staff.RoleUnlock, staff.RoleLimitOverride, staff.RoleLedgerVerify}, TokenSHA256: supervisorSum},
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// staffYAML is the staff: section of a cmd/banking config for the same
// two people.
func staffYAML() string {
	return fmt.Sprintf("staff:\n  - {id: teller1, name: Teller One, roles: [enrol, deposit, phone-change], token_sha256: %x}\n"+
		"  - {id: supervisor1, name: Supervisor One, roles: [unlock, limit-override, ledger-verify], token_sha256: %x}\n", staffSum, supervisorSum)
}

type bankEnv struct {
	ks     *keysvcEnv
	bank   *banking.Bank
	url    string
	outbox *otp.DevOutbox
	list   string // blacklist file
	dir    string // banking's data directory (bank.db, blacklist)
	// kmsBodies records the body of every request banking sends keysvc.
	kmsBodies *bodyRecorder
	db        store.DB // banking's store (its audit trail is read from it)
	kms       *client.Client
}

// bodyRecorder is an http.RoundTripper that keeps every request body.
type bodyRecorder struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (r *bodyRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.bodies = append(r.bodies, b)
		r.mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	return http.DefaultTransport.RoundTrip(req)
}

// all returns the bodies recorded so far.
func (r *bodyRecorder) all() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.bodies)
}

// provisionBankKeys creates the bank's keys in keysvc as the officer
// would at a ceremony.
func provisionBankKeys(t testing.TB, e *keysvcEnv) {
	grant := func(ops ...string) map[string]any {
		return map[string]any{"grants": []any{map[string]any{"client": "bankapp", "ops": ops}}}
	}
	for _, k := range []map[string]any{
		{"name": banking.KeyLogin, "purpose": "encrypt", "algorithm": "sm2", "protection": "wrapped", "policy": grant("decrypt", "public")},
		{"name": banking.KeyPwMAC, "purpose": "mac", "algorithm": "hmac-sm3", "protection": "wrapped", "policy": grant("mac")},
		{"name": banking.KeyPII, "purpose": "encrypt", "algorithm": "sm4", "protection": "wrapped", "policy": grant("datakey")},
		{"name": banking.KeyReceipt, "purpose": "sign", "algorithm": "ec-p256", "protection": "hsm", "policy": grant("sign", "verify", "public")},
		{"name": banking.KeyAudit, "purpose": "sign", "algorithm": "ec-p256", "protection": "hsm", "policy": grant("sign", "public")},
	} {
		if st, out := callAt(t, e.url, officerToken, "POST", "/v1/keys", k); st != 201 {
			t.Fatalf("provision %v: %d %v", k["name"], st, out)
		}
	}
}

func newBankEnv(t *testing.T) *bankEnv {
	ks := newKeysvcEnv(t)
	provisionBankKeys(t, ks)
	dir := t.TempDir()
	db := dbtest.New(t).Open() // bbolt, or PostgreSQL under KEYWARD_BANKING_STORE=postgres
	list := filepath.Join(dir, "blacklist.txt")
	os.WriteFile(list, []byte("account:6299900000000000001\nname:Mallory Fraud\nend:2\n"), 0o600)
	w, err := blacklist.Open(list, blacklist.Options{Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	rec := &bodyRecorder{}
	kc, err := client.New(ks.url, client.WithBearer(bankappToken), client.WithHTTPClient(&http.Client{Transport: rec}))
	if err != nil {
		t.Fatal(err)
	}
	be := &bankEnv{ks: ks, outbox: otp.NewDevOutbox(), list: list, dir: dir, kmsBodies: rec, db: db, kms: kc}
	if be.bank, err = banking.New(banking.Config{DB: db, KMS: kc, KMSName: "bankapp", Screen: w, SMS: be.outbox}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.bank.Close() })
	app := be.bank.NewServer(banking.ServerConfig{Staff: testStaff(t)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Listener(ln)
	t.Cleanup(func() { app.Shutdown() })
	be.url = "http://" + ln.Addr().String()
	return be
}

// bankCall is one request to the bank with an optional session.
func (be *bankEnv) call(t testing.TB, sess, dev, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := newRequest(method, be.url+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if sess != "" {
		req.Header.Set("Authorization", "Bearer "+sess)
		req.Header.Set("X-Device-Id", dev)
	}
	return doJSON(t, req)
}

// seal encrypts secret ‖ 0x00 ‖ challenge to the bank's login key, as a
// client app does.
func (be *bankEnv) seal(t testing.TB, secret string) map[string]any {
	t.Helper()
	_, key := be.call(t, "", "", "GET", "/v1/login/key", nil)
	blk, _ := pem.Decode([]byte(key["pem"].(string)))
	pub, err := smcrypto.ParseSM2Public(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	_, ch := be.call(t, "", "", "POST", "/v1/login/challenge", nil)
	raw, _ := base64.RawURLEncoding.DecodeString(ch["challenge"].(string))
	ct, err := smcrypto.SM2Encrypt(pub, append(append([]byte(secret), 0), raw...), smcrypto.EncodingASN1)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"challenge": ch["challenge"], "ciphertext": base64.StdEncoding.EncodeToString(ct), "key_version": key["version"]}
}

type customer struct {
	id, login, name, account, setupCode string
	usb                                 *ecdsa.PrivateKey
}

func (be *bankEnv) enrol(t *testing.T, login, name, phone, idCard string, usb, cloud bool, corp, role string) customer {
	t.Helper()
	c := customer{login: login, name: name}
	req := map[string]any{"login": login, "name": name, "phone": phone, "id_card": idCard, "card": "6222020200112233446",
		"anti_phishing": "蓝色海豚", "password": be.seal(t, "Gl4cier-Walk-7q"), "cloud_key": cloud}
	if corp != "" {
		req["corporate"], req["role"] = corp, role
	}
	if usb {
		c.usb, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKIXPublicKey(&c.usb.PublicKey)
		req["usb_public_key"] = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	st, out := be.call(t, staffToken, "", "POST", "/staff/v1/customers", req)
	if st != 201 {
		t.Fatalf("enrol %s: %d %v", login, st, out)
	}
	cu := out["customer"].(map[string]any)
	c.id = cu["id"].(string)
	c.account, _ = out["account"].(string)
	c.setupCode, _ = out["holder_setup_code"].(string)
	if cu["id_card"] == idCard || !strings.HasSuffix(cu["id_card"].(string), "******") || !strings.Contains(cu["card"].(string), "****") {
		t.Fatalf("enrolment shows unmasked numbers: %v", cu)
	}
	return c
}

// login logs in and completes the step-up when asked; it returns the
// session.
func (be *bankEnv) login(t *testing.T, c customer, dev string) string {
	t.Helper()
	st, out := be.call(t, "", "", "POST", "/v1/login", map[string]any{"login": c.login, "password": be.seal(t, "Gl4cier-Walk-7q"), "device": dev, "os": "Android 14"})
	if st != 200 {
		t.Fatalf("login %s: %d %v", c.login, st, out)
	}
	sess := out["session"].(string)
	if out["step_up"] == true {
		code, ok := be.outbox.LastCode(be.phoneOf(t, c))
		if !ok {
			t.Fatal("no SMS code sent")
		}
		if st, out := be.call(t, sess, dev, "POST", "/v1/stepup", map[string]any{"code": code, "os": "Android 14"}); st != 200 {
			t.Fatalf("step-up: %d %v", st, out)
		}
	}
	return sess
}

func (be *bankEnv) phoneOf(t *testing.T, c customer) string {
	cu, err := be.bank.Customer(c.id)
	if err != nil {
		t.Fatal(err)
	}
	return cu.Phone
}

func (be *bankEnv) deposit(t *testing.T, account, amount string) {
	t.Helper()
	if st, out := be.call(t, staffToken, "", "POST", "/staff/v1/deposits", map[string]any{"account": account, "amount": amount, "currency": "CNY", "idempotency_key": account + amount}); st != 200 {
		t.Fatalf("deposit: %d %v", st, out)
	}
}

func order(t *testing.T, from, to, payee, amount, nonce string) []byte {
	return transferOrder(t, from, to, payee, amount, nonce)
}

func transferOrder(t testing.TB, from, to, payee, amount, nonce string) []byte {
	t.Helper()
	for len(nonce) < 16 {
		nonce += "0"
	}
	b, err := txformat.CanonicalJSON(txformat.Transfer{PayerAccount: from, PayeeAccount: to, PayeeName: payee, PayeeBank: "Keyward Bank",
		Amount: amount, Currency: "CNY", Purpose: "rent"}, "2026-11-28T10:00:00+08:00", nonce)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func usbSign(c customer, msg []byte) string {
	h := sha256.Sum256(msg)
	sig, _ := ecdsa.SignASN1(rand.Reader, c.usb, h[:])
	return base64.StdEncoding.EncodeToString(sig)
}

func (be *bankEnv) balance(t *testing.T, sess, dev string) string {
	t.Helper()
	_, out := be.call(t, sess, dev, "GET", "/v1/accounts", nil)
	as := out["accounts"].([]any)
	return as[0].(map[string]any)["balance"].(string)
}

func TestBankingEndToEnd(t *testing.T) {
	be := newBankEnv(t)
	alice := be.enrol(t, "alice", "Alice Wang", "13800001111", "11010519491231002X", true, true, "", "")
	bob := be.enrol(t, "bobli", "Bob Li", "13800002222", "110101199003070011", false, false, "", "")
	be.deposit(t, alice.account, "10000.00")

	// Login from a new device: step-up first; nothing else works before.
	st, out := be.call(t, "", "", "POST", "/v1/login", map[string]any{"login": "alice", "password": be.seal(t, "Gl4cier-Walk-7q"), "device": "phone-1", "os": "Android 14"})
	if st != 200 || out["step_up"] != true || out["anti_phishing"] != "蓝色海豚" {
		t.Fatalf("login: %d %v", st, out)
	}
	sess := out["session"].(string)
	if st, out := be.call(t, sess, "phone-1", "GET", "/v1/accounts", nil); st != 403 || errCodeOf(out) != "step_up_required" {
		t.Fatalf("before step-up: %d %v", st, out)
	}
	code, _ := be.outbox.LastCode("13800001111")
	if st, out := be.call(t, sess, "phone-1", "POST", "/v1/stepup", map[string]any{"code": code, "os": "Android 14"}); st != 200 {
		t.Fatalf("step-up: %d %v", st, out)
	}
	if got := be.balance(t, sess, "phone-1"); got != "10000.00" {
		t.Fatalf("balance %s", got)
	}
	// The same device later: no step-up.
	if st, out := be.call(t, "", "", "POST", "/v1/login", map[string]any{"login": "alice", "password": be.seal(t, "Gl4cier-Walk-7q"), "device": "phone-1", "os": "Android 14"}); st != 200 || out["step_up"] != false {
		t.Fatalf("second login: %d %v", st, out)
	}

	// A USB-key-signed transfer; its receipt verifies with openssl.
	ord := order(t, alice.account, bob.account, "Bob Li", "1234.50", "usb-order-1")
	st, out = be.call(t, sess, "phone-1", "POST", "/v1/transfers/usb", map[string]any{"order": ord, "signature": usbSign(alice, ord)})
	if st != 200 {
		t.Fatalf("usb transfer: %d %v", st, out)
	}
	tid := out["transfer_id"].(string)
	rc := out["receipt"].(map[string]any)
	verifyReceipt(t, be, rc)
	if got := be.balance(t, sess, "phone-1"); got != "8765.50" {
		t.Fatalf("balance after transfer %s", got)
	}
	// Replaying the same signed order moves nothing.
	st, out = be.call(t, sess, "phone-1", "POST", "/v1/transfers/usb", map[string]any{"order": ord, "signature": usbSign(alice, ord)})
	if st != 200 || out["replayed"] != true || out["transfer_id"] != tid {
		t.Fatalf("replay: %d %v", st, out)
	}
	if got := be.balance(t, sess, "phone-1"); got != "8765.50" {
		t.Fatalf("balance after replay %s", got)
	}
	// Refusals.
	other := order(t, alice.account, bob.account, "Bob Li", "9000.00", "usb-order-2")
	for _, c := range []struct {
		name string
		body map[string]any
		st   int
		code string
	}{
		{"tampered order", map[string]any{"order": other, "signature": usbSign(alice, ord)}, 422, "signature_invalid"},
		{"payee name mismatch", signed(alice, order(t, alice.account, bob.account, "Robert Li", "1.00", "usb-order-3")), 422, "order_mismatch"},
		{"not my account", signed(alice, order(t, bob.account, alice.account, "Alice Wang", "1.00", "usb-order-4")), 422, "order_mismatch"},
		{"insufficient funds", signed(alice, order(t, alice.account, bob.account, "Bob Li", "9999.00", "usb-order-5")), 422, "insufficient_funds"},
		{"over the per-transfer limit", signed(alice, order(t, alice.account, bob.account, "Bob Li", "50000.01", "usb-order-6")), 422, "limit_exceeded"},
		{"unknown field", map[string]any{"order": ord, "signature": "x", "extra": 1}, 400, "invalid_request"},
	} {
		st, out := be.call(t, sess, "phone-1", "POST", "/v1/transfers/usb", c.body)
		if st != c.st || errCodeOf(out) != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.name, st, out, c.st, c.code)
		}
	}

	// Blacklisted payee: the list file changes while the bank runs.
	mallory := be.enrol(t, "mallory", "Mal Lory", "13800003333", "110101198001010010", false, false, "", "")
	os.WriteFile(be.list, []byte("account:"+mallory.account+"\nend:1\n"), 0o600)
	time.Sleep(300 * time.Millisecond)
	st, out = be.call(t, sess, "phone-1", "POST", "/v1/transfers/usb", signed(alice, order(t, alice.account, mallory.account, "Mal Lory", "5.00", "usb-order-7")))
	if st != 403 || errCodeOf(out) != "payee_blocked" {
		t.Fatalf("blacklisted payee: %d %v", st, out)
	}

	// Cloud key: keysvc shows the order to Alice on the second channel.
	if st, out := callAt(t, be.ks.confirmURL, "", "POST", "/confirm/v1/enrol", map[string]any{"key": "cust-" + alice.id, "setup_code": alice.setupCode, "pin": holderPIN}); st != 200 {
		t.Fatalf("holder enrol: %d %v", st, out)
	}
	cord := order(t, alice.account, bob.account, "Bob Li", "100.00", "cloud-order-1")
	st, out = be.call(t, sess, "phone-1", "POST", "/v1/transfers/cloud", map[string]any{"order": cord})
	if st != 202 || out["status"] != "pending" {
		t.Fatalf("cloud transfer: %d %v", st, out)
	}
	pid := out["id"].(string)
	n := be.ks.lastNotice(t, "cust-"+alice.id)
	if st, out := be.ks.approve(t, n.HolderToken, "cust-"+alice.id, digestHex(cord), holderPIN); st != 200 {
		t.Fatalf("holder approval: %d %v", st, out)
	}
	st, out = be.call(t, sess, "phone-1", "GET", "/v1/transfers/cloud/"+pid+"?wait=5s", nil)
	if st != 200 || out["status"] != "approved" || out["result"] == nil {
		t.Fatalf("cloud poll: %d %v", st, out)
	}
	verifyReceipt(t, be, out["result"].(map[string]any)["receipt"].(map[string]any))
	if got := be.balance(t, sess, "phone-1"); got != "8665.50" {
		t.Fatalf("balance after cloud transfer %s", got)
	}

	// Six wrong SMS codes: the code dies after five.
	be.call(t, sess, "phone-1", "POST", "/v1/stepup/request", nil)
	var last string
	for i := 0; i < 6; i++ {
		_, out := be.call(t, sess, "phone-1", "POST", "/v1/stepup", map[string]any{"code": "000000", "os": ""})
		last = errCodeOf(out)
	}
	if last != "otp_locked" {
		t.Fatalf("sixth wrong code: %s", last)
	}
	good, _ := be.outbox.LastCode("13800001111")
	if st, out := be.call(t, sess, "phone-1", "POST", "/v1/stepup", map[string]any{"code": good}); st != 403 {
		t.Fatalf("right code after the lock: %d %v", st, out)
	}

	// A replayed login challenge is refused.
	sealed := be.seal(t, "Gl4cier-Walk-7q")
	be.call(t, "", "", "POST", "/v1/login", map[string]any{"login": "alice", "password": sealed, "device": "phone-1", "os": "Android 14"})
	if st, out := be.call(t, "", "", "POST", "/v1/login", map[string]any{"login": "alice", "password": sealed, "device": "phone-1", "os": "Android 14"}); st != 400 || errCodeOf(out) != "challenge_used" {
		t.Fatalf("replayed challenge: %d %v", st, out)
	}

	// Logout ends the session at once.
	be.call(t, sess, "phone-1", "POST", "/v1/logout", nil)
	if st, _ := be.call(t, sess, "phone-1", "GET", "/v1/accounts", nil); st != 401 {
		t.Fatalf("after logout: %d", st)
	}
	rep, err := be.bank.Ledger.Verify(context.Background())
	if err != nil {
		t.Fatalf("ledger: %v %+v", err, rep)
	}
	checkBankTrail(t, be, "Gl4cier-Walk-7q", sess, code, good)
}

func signed(c customer, ord []byte) map[string]any {
	return map[string]any{"order": ord, "signature": usbSign(c, ord)}
}

func verifyReceipt(t *testing.T, be *bankEnv, rc map[string]any) {
	t.Helper()
	dir := t.TempDir()
	raw := []byte(rc["body"].(string))
	if !strings.Contains(string(raw), `"type":"keyward.receipt.v1"`) {
		t.Fatalf("receipt body %s", raw)
	}
	sig, err := base64.StdEncoding.DecodeString(rc["signature"].(string))
	if err != nil {
		t.Fatalf("receipt signature: %v", err)
	}
	_, key := be.call(t, "", "", "GET", "/v1/receipt-key", nil)
	os.WriteFile(filepath.Join(dir, "receipt.json"), raw, 0o600)
	os.WriteFile(filepath.Join(dir, "receipt.sig"), sig, 0o600)
	os.WriteFile(filepath.Join(dir, "bank-receipt.pem"), []byte(key["pem"].(string)), 0o600)
	out, err := exec.Command("openssl", "dgst", "-sha256", "-verify", filepath.Join(dir, "bank-receipt.pem"), "-signature", filepath.Join(dir, "receipt.sig"), filepath.Join(dir, "receipt.json")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verified OK") {
		t.Fatalf("openssl: %v %s", err, out)
	}
}

func errCodeOf(out map[string]any) string { return errCode(out) }

func newRequest(method, url string, body io.Reader) (*http.Request, error) {
	return http.NewRequest(method, url, body)
}

func doJSON(t testing.TB, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	return resp.StatusCode, readJSON(t, resp, req.Method+" "+req.URL.Path)
}

func TestBankingCorporate(t *testing.T) {
	be := newBankEnv(t)
	admin := be.enrol(t, "acme-admin", "Acme Admin", "13900000001", "11010519491231002X", false, false, "acme", "admin")
	maker := be.enrol(t, "acme-maker", "Acme Maker", "13900000002", "110101199003070011", false, false, "acme", "maker")
	rev := be.enrol(t, "acme-rev", "Acme Reviewer", "13900000003", "110101198001010010", false, false, "acme", "reviewer")
	auth := be.enrol(t, "acme-auth", "Acme Authoriser", "13900000004", "11010519491231002X", true, false, "acme", "authoriser")
	bob := be.enrol(t, "bob2", "Bob Li", "13800002222", "110101199003070011", false, false, "", "")
	be.deposit(t, admin.account, "50000.00")
	sm, sr, sa := be.login(t, maker, "d-m"), be.login(t, rev, "d-r"), be.login(t, auth, "d-a")

	ord := order(t, admin.account, bob.account, "Bob Li", "2000.00", "corp-order-1")
	st, out := be.call(t, sm, "d-m", "POST", "/v1/corporate/orders", map[string]any{"order": ord})
	if st != 201 {
		t.Fatalf("entry: %d %v", st, out)
	}
	id := out["id"].(string)
	// The authoriser can't skip the review; the maker can't review.
	if st, out := be.call(t, sa, "d-a", "POST", "/v1/corporate/orders/"+id+"/authorise", map[string]any{"approve": true, "signature": usbSign(auth, ord)}); st != 403 {
		t.Fatalf("authorise before review: %d %v", st, out)
	}
	if st, out := be.call(t, sm, "d-m", "POST", "/v1/corporate/orders/"+id+"/review", map[string]any{"approve": true}); st != 403 {
		t.Fatalf("maker reviews: %d %v", st, out)
	}
	if st, out := be.call(t, sr, "d-r", "POST", "/v1/corporate/orders/"+id+"/review", map[string]any{"approve": true}); st != 200 || out["state"] != "reviewed" {
		t.Fatalf("review: %d %v", st, out)
	}
	if st, out := be.call(t, sa, "d-a", "POST", "/v1/corporate/orders/"+id+"/authorise", map[string]any{"approve": true, "signature": usbSign(auth, []byte("other"))}); st != 422 {
		t.Fatalf("authorise with a bad signature: %d %v", st, out)
	}
	st, out = be.call(t, sa, "d-a", "POST", "/v1/corporate/orders/"+id+"/authorise", map[string]any{"approve": true, "signature": usbSign(auth, ord)})
	if st != 200 || out["state"] != "executed" {
		t.Fatalf("authorise: %d %v", st, out)
	}
	verifyReceipt(t, be, out["result"].(map[string]any)["receipt"].(map[string]any))
	// Executed once: authorising again is refused.
	if st, _ := be.call(t, sa, "d-a", "POST", "/v1/corporate/orders/"+id+"/authorise", map[string]any{"approve": true, "signature": usbSign(auth, ord)}); st != 403 {
		t.Fatalf("second authorisation: %d", st)
	}
	if got := be.balance(t, sm, "d-m"); got != "48000.00" {
		t.Fatalf("corporate balance %s", got)
	}
}
