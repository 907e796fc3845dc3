package banking_test

// The unit layer of banking (issue 14 item 2): the bank's HTTP API on
// loopback over an in-memory keysvc (banking/internal/fakekms) with real
// cryptography, through exported APIs only. softhsm-tests/ runs the same
// flows against a real keysvc on SoftHSM and stays the integration layer.

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
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/dbtest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyward/keyward/banking"
	"github.com/keyward/keyward/banking/auth"
	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/internal/fakekms"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/staff"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token/smcrypto"
	"github.com/keyward/keyward/token/txformat"
)

// The bank's two staff members in every unit bank: a teller and a
// supervisor with personal tokens and the roles cmd/banking's dev mode
// gives them.
var (
	tellerToken, tellerSum         = mustStaffToken()
	supervisorToken, supervisorSum = mustStaffToken()
	retiredToken, retiredSum       = mustStaffToken() // retired1's credential expired in 2026-01
	// staffToken is the token the helpers (enrol, deposit) act with: the teller's.
	staffToken = tellerToken
)

func mustStaffToken() (string, [32]byte) {
	tok, sum, err := staff.NewToken()
	if err != nil {
		panic(err)
	}
	return tok, sum
}

// staffRegistry is teller1 (enrol, deposit, phone-change), supervisor1
// (unlock, limit-override, ledger-verify) and retired1, whose credential
// has expired.
func staffRegistry(t testing.TB) *staff.Registry {
	t.Helper()
	reg, err := staff.New([]staff.Member{
		{ID: "teller1", Name: "Teller One", Roles: []staff.Role{staff.RoleEnrol, staff.RoleDeposit, staff.RolePhoneChange}, TokenSHA256: tellerSum},
		{ID: "supervisor1", Name: "Supervisor One", Roles: []staff.Role{staff.RoleUnlock, staff.RoleLimitOverride, staff.RoleLedgerVerify}, TokenSHA256: supervisorSum},
		{ID: "retired1", Name: "Retired One", Roles: []staff.Role{staff.RoleEnrol, staff.RoleDeposit}, TokenSHA256: retiredSum, Expires: time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

const (
	kmsClient     = "bankapp" // Config.KMSName: the fake grants only this client
	password      = "Gl4cier-Walk-7q"
	wrongPassword = "Wrong-Pass-99x"
)

// unitBank is a bank on a temporary bbolt file, its HTTP API on a loopback
// listener, and the fake keysvc it talks to.
type unitBank struct {
	kms    *fakekms.KMS
	bank   *banking.Bank
	db     store.DB // the bank's store (its audit trail is read from it)
	url    string
	outbox *otp.DevOutbox
	log    *syncBuffer // everything the bank logged
	mod    func(*banking.Config)
	// lang, when set, is sent as Accept-Language (tests that read
	// English messages set "en"; without it the bank answers in Chinese).
	lang string

	skew atomic.Int64 // nanoseconds the bank's clock is ahead of time.Now

	// reg holds the bank's metrics (each node its own); configure, when
	// set before start, adjusts the bank's Config (metrics_unit_test.go).
	reg       *prometheus.Registry
	configure func(*banking.Config)

	mu      sync.Mutex
	alerts  []auth.Event
	audits  []banking.Event // every event the bank recorded (Config.OnAudit)
	secrets []string        // one-time codes and sessions seen: never to be logged
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// provision creates the bank's five keys in the fake keysvc as the officer
// does (softhsm-tests' provisionBankKeys).
func provision(t testing.TB, k *fakekms.KMS) {
	t.Helper()
	grant := func(ops ...wire.Op) wire.Policy {
		return wire.Policy{Grants: []wire.Grant{{Client: kmsClient, Ops: ops}}}
	}
	for _, req := range []wire.CreateKeyRequest{
		{Name: banking.KeyLogin, Purpose: wire.PurposeEncrypt, Algorithm: wire.AlgSM2, Protection: wire.ProtectionWrapped, Policy: grant(wire.OpDecrypt, wire.OpPublic)},
		{Name: banking.KeyPwMAC, Purpose: wire.PurposeMAC, Algorithm: wire.AlgHMACSM3, Protection: wire.ProtectionWrapped, Policy: grant(wire.OpMAC)},
		{Name: banking.KeyPII, Purpose: wire.PurposeEncrypt, Algorithm: wire.AlgSM4, Protection: wire.ProtectionWrapped, Policy: grant(wire.OpDataKey)},
		{Name: banking.KeyReceipt, Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionHSM, Policy: grant(wire.OpSign, wire.OpVerify, wire.OpPublic)},
		{Name: banking.KeyAudit, Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionHSM, Policy: grant(wire.OpSign, wire.OpPublic)},
	} {
		if _, err := k.Provision(req); err != nil {
			t.Fatalf("provision %s: %v", req.Name, err)
		}
	}
}

// newUnitBank starts a bank over a fresh fake keysvc. When the test ends
// it checks that the bank's log holds no password and no one-time code.
func newUnitBank(t *testing.T) *unitBank { t.Helper(); return newUnitBankWith(t, nil) }

// newUnitBankWith is newUnitBank with mod applied to the bank's Config.
func newUnitBankWith(t *testing.T, mod func(*banking.Config)) *unitBank {
	t.Helper()
	ub := &unitBank{kms: fakekms.New(kmsClient, "usb-", "cust-"), outbox: otp.NewDevOutbox(), log: &syncBuffer{}, mod: mod}
	provision(t, ub.kms)
	ub.start(t, dbtest.New(t).Open())
	return ub
}

// newUnitNodes starts two banks on one shared store (dbtest's Nodes) and
// one fake keysvc, as two stateless banking nodes behind a load balancer:
// the same SMS outbox and log, each its own HTTP listener, caches and
// background work.
func newUnitNodes(t *testing.T) (a, b *unitBank) {
	t.Helper()
	dbs := dbtest.New(t).Nodes(2)
	a = &unitBank{kms: fakekms.New(kmsClient, "usb-", "cust-"), outbox: otp.NewDevOutbox(), log: &syncBuffer{}}
	provision(t, a.kms)
	a.start(t, dbs[0])
	b = &unitBank{kms: a.kms, outbox: a.outbox, log: a.log}
	b.start(t, dbs[1])
	return a, b
}

// start opens ub's bank on db and serves its API on loopback.
func (ub *unitBank) start(t *testing.T, db store.DB) {
	t.Helper()
	ub.db = db
	var err error
	logger := slog.New(slog.NewTextHandler(ub.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	alerts := auth.AlertsFunc(func(_ context.Context, ev auth.Event) {
		ub.mu.Lock()
		ub.alerts = append(ub.alerts, ev)
		ub.mu.Unlock()
	})
	onAudit := func(_ context.Context, ev banking.Event) {
		ub.mu.Lock()
		ub.audits = append(ub.audits, ev)
		ub.mu.Unlock()
	}
	ub.reg = prometheus.NewRegistry()
	cfg := banking.Config{DB: db, KMS: ub.kms, KMSName: kmsClient, SMS: ub.outbox, Alerts: alerts, Logger: logger, Registry: ub.reg,
		Now: func() time.Time { return time.Now().Add(time.Duration(ub.skew.Load())) }, OnAudit: onAudit}
	if ub.mod != nil {
		ub.mod(&cfg)
	}
	if ub.configure != nil {
		ub.configure(&cfg)
	}
	if ub.bank, err = banking.New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ub.bank.Close() })
	app := ub.bank.NewServer(banking.ServerConfig{Staff: staffRegistry(t), LoginPerMinute: 100000, KeyPerMinute: 100000})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Listener(ln)
	t.Cleanup(func() { app.Shutdown() })
	ub.url = "http://" + ln.Addr().String()
	t.Cleanup(func() { ub.checkLogs(t) })
}

// advance moves the bank's clock forward by d.
func (ub *unitBank) advance(d time.Duration) { ub.skew.Add(int64(d)) }

// checkLogs fails the test if the bank logged a password, a one-time code
// or a session id the test saw.
func (ub *unitBank) checkLogs(t *testing.T) {
	logs := ub.log.String()
	ub.mu.Lock()
	defer ub.mu.Unlock()
	for _, s := range append([]string{password, wrongPassword, tellerToken, supervisorToken, retiredToken}, ub.secrets...) {
		if containsToken(logs, s) {
			t.Errorf("the bank's log holds a secret (%d characters)", len(s))
		}
	}
}

// containsToken reports whether s occurs in logs as a whole token: not
// inside a longer run of letters and digits. A six-digit SMS code is bound
// to turn up by chance inside a 32-hex-digit request id, a 19-digit
// account number or a timestamp's nanoseconds now and then (a CI run failed
// on it); a logged code stands between separators (code=123456,
// "123456").
func containsToken(logs, s string) bool {
	alnum := func(b byte) bool {
		return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
	}
	for from := 0; ; {
		i := strings.Index(logs[from:], s)
		if i < 0 {
			return false
		}
		i += from
		end := i + len(s)
		if (i == 0 || !alnum(logs[i-1])) && (end == len(logs) || !alnum(logs[end])) {
			return true
		}
		from = i + 1
	}
}

// remember notes a secret the bank must never log.
func (ub *unitBank) remember(s string) {
	ub.mu.Lock()
	ub.secrets = append(ub.secrets, s)
	ub.mu.Unlock()
}

// code is the newest SMS code sent to phone.
func (ub *unitBank) code(t *testing.T, phone string) string {
	t.Helper()
	code, ok := ub.outbox.LastCode(phone)
	if !ok {
		t.Fatalf("no SMS code sent to %s", phone)
	}
	ub.remember(code)
	return code
}

// call is one request to the bank; sess "" sends no session, and the
// staff token goes as the bearer of /staff routes.
func (ub *unitBank) call(t testing.TB, sess, dev, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, ub.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if ub.lang != "" {
		req.Header.Set("Accept-Language", ub.lang)
	}
	if sess != "" {
		req.Header.Set("Authorization", "Bearer "+sess)
		req.Header.Set("X-Device-Id", dev)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && json.Unmarshal(raw, &out) != nil {
		t.Fatalf("%s %s: non-JSON answer %d: %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

// errCode is the stable code of an error answer.
func errCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// seal encrypts secret ‖ 0x00 ‖ challenge to the bank's served login key,
// as a client app does.
func (ub *unitBank) seal(t testing.TB, secret string) map[string]any {
	t.Helper()
	st, key := ub.call(t, "", "", "GET", "/v1/login/key", nil)
	if st != 200 {
		t.Fatalf("login key: %d %v", st, key)
	}
	blk, _ := pem.Decode([]byte(key["pem"].(string)))
	pub, err := smcrypto.ParseSM2Public(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return ub.sealTo(t, pub, int(key["version"].(float64)), secret)
}

func (ub *unitBank) sealTo(t testing.TB, pub *ecdsa.PublicKey, version int, secret string) map[string]any {
	t.Helper()
	_, ch := ub.call(t, "", "", "POST", "/v1/login/challenge", nil)
	raw, err := base64.RawURLEncoding.DecodeString(ch["challenge"].(string))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := smcrypto.SM2Encrypt(pub, append(append([]byte(secret), 0), raw...), smcrypto.EncodingASN1)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"challenge": ch["challenge"], "ciphertext": base64.StdEncoding.EncodeToString(ct), "key_version": version}
}

// customer is an enrolled customer as the tests know it.
type customer struct {
	id, login, name, phone, account, setupCode string
	usb                                        *ecdsa.PrivateKey // EC P-256 USB key
	usbSM2                                     *sm2.PrivateKey   // or an SM2 one
}

// enrolment describes one customer to enrol.
type enrolment struct {
	login, name, phone string
	usb, usbSM2, cloud bool
	corp, role         string
}

var idCards = []string{"11010519491231002X", "110101199003070011", "110101198001010010"}

func (ub *unitBank) enrol(t *testing.T, e enrolment) customer {
	t.Helper()
	c := customer{login: e.login, name: e.name, phone: e.phone}
	req := map[string]any{"login": e.login, "name": e.name, "phone": e.phone, "id_card": idCards[len(e.login)%len(idCards)], "card": "6222020200112233446",
		"anti_phishing": "蓝色海豚", "password": ub.seal(t, password), "cloud_key": e.cloud}
	if e.corp != "" {
		req["corporate"], req["role"] = e.corp, e.role
	}
	switch {
	case e.usb:
		c.usb, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKIXPublicKey(&c.usb.PublicKey)
		req["usb_public_key"] = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	case e.usbSM2:
		c.usbSM2, _ = smcrypto.GenerateSM2()
		der, _ := smcrypto.MarshalSM2Public(&c.usbSM2.PublicKey)
		req["usb_public_key"] = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		req["usb_algorithm"] = "sm2"
	}
	st, out := ub.call(t, staffToken, "", "POST", "/staff/v1/customers", req)
	if st != 201 {
		t.Fatalf("enrol %s: %d %v", e.login, st, out)
	}
	cu := out["customer"].(map[string]any)
	c.id = cu["id"].(string)
	c.account, _ = out["account"].(string)
	c.setupCode, _ = out["holder_setup_code"].(string)
	return c
}

// loginTry logs in without completing a step-up.
func (ub *unitBank) loginTry(t *testing.T, login, pw, dev string) (int, map[string]any) {
	t.Helper()
	st, out := ub.call(t, "", "", "POST", "/v1/login", map[string]any{"login": login, "password": ub.seal(t, pw), "device": dev, "os": "Android 14"})
	if s, ok := out["session"].(string); ok {
		ub.remember(s)
	}
	return st, out
}

// login logs c in on dev and completes the step-up when asked; it returns
// the session.
func (ub *unitBank) login(t *testing.T, c customer, dev string) string {
	t.Helper()
	st, out := ub.loginTry(t, c.login, password, dev)
	if st != 200 {
		t.Fatalf("login %s: %d %v", c.login, st, out)
	}
	sess := out["session"].(string)
	if out["step_up"] == true {
		code := ub.code(t, c.phone)
		if st, out := ub.call(t, sess, dev, "POST", "/v1/stepup", map[string]any{"code": code, "os": "Android 14"}); st != 200 {
			t.Fatalf("step-up %s: %d %v", c.login, st, out)
		}
	}
	return sess
}

func (ub *unitBank) deposit(t *testing.T, account, amount string) {
	t.Helper()
	if st, out := ub.call(t, staffToken, "", "POST", "/staff/v1/deposits", map[string]any{"account": account, "amount": amount, "currency": "CNY", "idempotency_key": account + amount}); st != 200 {
		t.Fatalf("deposit: %d %v", st, out)
	}
}

// balance is the balance of the first account the session sees.
func (ub *unitBank) balance(t *testing.T, sess, dev string) string {
	t.Helper()
	st, out := ub.call(t, sess, dev, "GET", "/v1/accounts", nil)
	if st != 200 {
		t.Fatalf("accounts: %d %v", st, out)
	}
	return out["accounts"].([]any)[0].(map[string]any)["balance"].(string)
}

// balanceOf reads an account's balance from the ledger (for accounts the
// test has no session of).
func (ub *unitBank) balanceOf(t *testing.T, account string) string {
	t.Helper()
	a, err := ub.bank.Ledger.Account(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	return ledger.FormatAmount(a.Balance, a.Currency)
}

// order is a canonical-JSON transfer order.
func order(t testing.TB, from, to, payee, amount, nonce string) []byte {
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

// usbSign is c's USB key's signature over msg (base64 DER), as kwsign
// makes it.
func usbSign(t testing.TB, c customer, msg []byte) string {
	t.Helper()
	var sig []byte
	var err error
	if c.usbSM2 != nil {
		sig, err = smcrypto.SM2Sign(c.usbSM2, nil, msg)
	} else {
		h := sha256.Sum256(msg)
		sig, err = ecdsa.SignASN1(rand.Reader, c.usb, h[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func signed(t testing.TB, c customer, ord []byte) map[string]any {
	return map[string]any{"order": ord, "signature": usbSign(t, c, ord)}
}

// checkReceipt verifies a receipt offline with the served receipt key
// (what openssl does in the integration layer).
func (ub *unitBank) checkReceipt(t *testing.T, rc map[string]any) {
	t.Helper()
	body := []byte(rc["body"].(string))
	if !strings.Contains(string(body), `"type":"keyward.receipt.v1"`) {
		t.Fatalf("receipt body %s", body)
	}
	sig, err := base64.StdEncoding.DecodeString(rc["signature"].(string))
	if err != nil {
		t.Fatalf("receipt signature: %v", err)
	}
	_, key := ub.call(t, "", "", "GET", "/v1/receipt-key", nil)
	blk, _ := pem.Decode([]byte(key["pem"].(string)))
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), sum[:], sig) {
		t.Fatal("the receipt does not verify with the served receipt key")
	}
}

// storedVersion is the bank-pw-mac version of c's stored password MAC.
func (ub *unitBank) storedVersion(t *testing.T, c customer) int {
	t.Helper()
	cu, err := ub.bank.Customer(c.id)
	if err != nil {
		t.Fatal(err)
	}
	v, err := wire.VersionOf(string(cu.PasswordMAC))
	if err != nil {
		t.Fatalf("%s: stored password MAC is not a kw:v<n>: value: %v", c.login, err)
	}
	return v
}

// lockAlerts returns the lock events raised so far.
func (ub *unitBank) lockAlerts() []auth.Event {
	ub.mu.Lock()
	defer ub.mu.Unlock()
	var out []auth.Event
	for _, ev := range ub.alerts {
		if !ev.Until.IsZero() {
			out = append(out, ev)
		}
	}
	return out
}

// TestContainsToken: the log check finds a secret written as a value and
// ignores the same digits inside a longer identifier.
func TestContainsToken(t *testing.T) {
	for _, c := range []struct {
		logs string
		want bool
	}{
		{`msg=sent code=123456 phone=138****0000`, true},
		{`otp="123456"`, true},
		{`123456`, true},
		{`customer=c912345678901 request_id=ab123456cd`, false},
		{`request_id=123456abcdef request_id=fedcba123456`, false},
		{`x=1234567`, false},
		{`x=1234567 y=123456`, true},
	} {
		if got := containsToken(c.logs, "123456"); got != c.want {
			t.Errorf("containsToken(%q) = %v, want %v", c.logs, got, c.want)
		}
	}
}
