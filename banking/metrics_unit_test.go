package banking_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyward/keyward/banking"
	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/internal/fakekms"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/dbtest"
	"github.com/keyward/keyward/keysvc/wire"
)

// metric is the value of one series of ub's registry (read with Gather,
// as a scrape does): a counter's value or a histogram's sample count; -1
// when the series does not exist.
func (ub *unitBank) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := ub.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			if len(got) != len(labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return -1
}

// wantMetric fails the test unless the series holds want.
func (ub *unitBank) wantMetric(t *testing.T, want float64, name string, kv ...string) {
	t.Helper()
	labels := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		labels[kv[i]] = kv[i+1]
	}
	if got := ub.metric(t, name, labels); got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// ops serves the bank's ops handler (/metrics, /readyz) on loopback.
func (ub *unitBank) ops(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: ub.bank.OpsHandler(), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsAfterRequests: real requests through the API move the series
// they should, labelled by route template and code: a login failure, a
// login, an SMS step-up (one code sent, one wrong), a USB transfer (and
// its replay, not counted as another) and a refused one, a 404 with an id
// in its path, a path no route takes, the
// ledger's commits and keysvc's calls.
func TestMetricsAfterRequests(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111", usb: true})
	ben := ub.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	ub.deposit(t, ana.account, "500.00")

	if st, out := ub.loginTry(t, ana.login, wrongPassword, "ana-phone"); st != 401 {
		t.Fatalf("wrong password: %d %v", st, out)
	}
	st, out := ub.loginTry(t, ana.login, password, "ana-phone")
	if st != 200 || out["step_up"] != true {
		t.Fatalf("login from a new device: %d %v", st, out)
	}
	sess := out["session"].(string)
	code := ub.code(t, ana.phone)
	if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/stepup", map[string]any{"code": wrongCode(code), "os": "Android 14"}); st != 403 {
		t.Fatalf("wrong code: %d %v", st, out)
	}
	if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/stepup", map[string]any{"code": code, "os": "Android 14"}); st != 200 {
		t.Fatalf("step-up: %d %v", st, out)
	}
	ord := order(t, ana.account, ben.account, "Ben Wu", "12.50", "metrics-usb-1")
	st, out = ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/usb", signed(t, ana, ord))
	if st != 200 {
		t.Fatalf("USB transfer: %d %v", st, out)
	}
	tid := out["transfer_id"].(string)
	if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/usb", signed(t, ana, ord)); st != 200 || out["replayed"] != true {
		t.Fatalf("the same order again: %d %v", st, out)
	}
	other := order(t, ana.account, ben.account, "Ben Wu", "13.00", "metrics-usb-2")
	if st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/usb", map[string]any{"order": other, "signature": usbSign(t, ana, ord)}); st != 422 {
		t.Fatalf("a signature over another order: %d %v", st, out)
	}
	missing := "T" + strings.Repeat("9", 12)
	if st, out := ub.call(t, sess, "ana-phone", "GET", "/v1/receipts/"+missing, nil); st != 404 {
		t.Fatalf("an unknown receipt: %d %v", st, out)
	}
	if st, _ := ub.call(t, sess, "ana-phone", "GET", "/v1/receipts/"+tid, nil); st != 200 {
		t.Fatalf("the receipt: %d", st)
	}
	if st, _ := ub.call(t, "", "", "GET", "/v1/no-such-route/"+ana.id, nil); st != 404 {
		t.Fatalf("a path no route takes: %d", st)
	}

	const req = "keyward_bank_http_requests_total"
	ub.wantMetric(t, 1, req, "route", "/v1/receipts/:id", "method", "GET", "code", "404")
	ub.wantMetric(t, 1, req, "route", "/v1/receipts/:id", "method", "GET", "code", "200")
	ub.wantMetric(t, 1, req, "route", "unmatched", "method", "GET", "code", "404")
	ub.wantMetric(t, 1, req, "route", "/v1/login", "method", "POST", "code", "401")
	ub.wantMetric(t, 1, req, "route", "/v1/transfers/usb", "method", "POST", "code", "422")
	ub.wantMetric(t, 2, req, "route", "/staff/v1/customers", "method", "POST", "code", "201")
	ub.wantMetric(t, 2, "keyward_bank_http_request_duration_seconds", "route", "/v1/stepup")
	ub.wantMetric(t, 1, "keyward_bank_logins_total", "result", "login_failed")
	ub.wantMetric(t, 1, "keyward_bank_logins_total", "result", "ok")
	ub.wantMetric(t, 1, "keyward_bank_otp_sends_total", "result", "ok")
	ub.wantMetric(t, 1, "keyward_bank_otp_failures_total", "reason", "otp_invalid")
	ub.wantMetric(t, 1, "keyward_bank_transfers_total", "kind", "usb", "result", "ok")
	ub.wantMetric(t, 1, "keyward_bank_transfers_total", "kind", "usb", "result", "signature_invalid")
	ub.wantMetric(t, 2, "keyward_bank_ledger_commit_seconds", "kind", "transfer") // the replay's transaction finds the first posting
	ub.wantMetric(t, 1, "keyward_bank_ledger_commit_seconds", "kind", "deposit")
	ub.wantMetric(t, 3, "keyward_bank_keysvc_call_duration_seconds", "op", "verify") // the order, its replay, the bad signature
	ub.wantMetric(t, 0, "keyward_bank_store_faults_total", "where", "request")
	ub.wantMetric(t, 0, "keyward_bank_login_locks_total", "scope", "account")
}

// TestMetricsCloudAndLocks: a cloud transfer counts once when it executes
// (not when submitted, not again when polled after); five wrong passwords
// count one account lock; keysvc failing counts its errors by operation
// and code and the logins it fails as unavailable.
func TestMetricsCloudAndLocks(t *testing.T) {
	ub := newUnitBankWith(t, func(c *banking.Config) { c.CaptchaAfter = -1 }) // five failures reach the lock
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111", cloud: true})
	ben := ub.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	ub.deposit(t, ana.account, "500.00")
	sess := ub.login(t, ana, "ana-phone")
	st, out := ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/cloud", map[string]any{"order": order(t, ana.account, ben.account, "Ben Wu", "100.00", "metrics-cloud-1")})
	if st != 202 {
		t.Fatalf("cloud transfer: %d %v", st, out)
	}
	id := out["id"].(string)
	ub.wantMetric(t, -1, "keyward_bank_transfers_total", "kind", "cloud", "result", "ok")
	if err := ub.kms.Approve(id); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if st, out := ub.call(t, sess, "ana-phone", "GET", "/v1/transfers/cloud/"+id, nil); st != 200 || out["result"] == nil {
			t.Fatalf("poll: %d %v", st, out)
		}
	}
	ub.wantMetric(t, 1, "keyward_bank_transfers_total", "kind", "cloud", "result", "ok")
	ub.wantMetric(t, 2, "keyward_bank_http_requests_total", "route", "/v1/transfers/cloud/:id", "method", "GET", "code", "200")

	for range 5 {
		if st, out := ub.loginTry(t, ben.login, wrongPassword, "ben-phone"); st != 401 {
			t.Fatalf("wrong password: %d %v", st, out)
		}
	}
	if st, out := ub.loginTry(t, ben.login, password, "ben-phone"); st != 429 {
		t.Fatalf("a locked login: %d %v", st, out)
	}
	ub.wantMetric(t, 1, "keyward_bank_login_locks_total", "scope", "account")
	ub.wantMetric(t, 5, "keyward_bank_logins_total", "result", "login_failed")
	ub.wantMetric(t, 1, "keyward_bank_logins_total", "result", "temporarily_locked")

	ub.kms.SetDown(wire.ErrTokenUnavailable, "mac-verify")
	if st, out := ub.loginTry(t, ana.login, password, "ana-phone"); st != 503 || errCode(out) != "unavailable" {
		t.Fatalf("login with keysvc's token away: %d %v", st, out)
	}
	ub.kms.SetDown(nil)
	ub.wantMetric(t, 1, "keyward_bank_keysvc_errors_total", "op", "verify_mac", "code", "token_unavailable")
	ub.wantMetric(t, 1, "keyward_bank_logins_total", "result", "unavailable")
	ub.wantMetric(t, 1, "keyward_bank_http_requests_total", "route", "/v1/login", "method", "POST", "code", "503")
}

// TestMetricsNameNoCustomer: after a day's worth of requests, no label
// value of the scrape holds anything that names a customer: ids, logins,
// names, phones, accounts, sessions, transfer ids, the source address.
// Every label value is also one of a closed vocabulary.
func TestMetricsNameNoCustomer(t *testing.T) {
	ub := newUnitBank(t)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111", usb: true})
	ben := ub.enrol(t, enrolment{login: "ben.wu", name: "Ben Wu", phone: "13800002222"})
	ub.deposit(t, ana.account, "500.00")
	sess := ub.login(t, ana, "ana-phone")
	ord := order(t, ana.account, ben.account, "Ben Wu", "1.00", "metrics-leak-1")
	_, out := ub.call(t, sess, "ana-phone", "POST", "/v1/transfers/usb", signed(t, ana, ord))
	tid, _ := out["transfer_id"].(string)
	if tid == "" {
		t.Fatalf("transfer: %v", out)
	}
	ub.call(t, sess, "ana-phone", "GET", "/v1/receipts/"+tid, nil)
	ub.call(t, sess, "ana-phone", "GET", "/v1/receipts/"+ben.account, nil)
	ub.call(t, "", "", "GET", "/v1/"+ana.login+"/"+ana.id, nil)
	ub.call(t, "", "", "POST", "/v1/transfers/cloud/"+ben.id, nil)
	ub.loginTry(t, ben.login, wrongPassword, "ben-phone")

	_, scrape := get(t, ub.ops(t)+"/metrics")
	if !strings.Contains(scrape, "keyward_bank_http_requests_total") {
		t.Fatalf("the scrape has no request counts:\n%s", scrape)
	}
	for _, s := range []string{ana.id, ben.id, ana.login, ben.login, "Ana Li", "Ben Wu", ana.phone, ben.phone, ana.account, ben.account,
		sess, tid, "127.0.0.1", "ana-phone", "ben-phone", "bank-login-sm2", "usb-"} {
		if strings.Contains(scrape, s) {
			t.Errorf("the scrape holds %q", s)
		}
	}
	// Every label value of banking's series is a route template, a method,
	// a status code or a lower-case code.
	labelRE := regexp.MustCompile(`([a-z_]+)="([^"]*)"`)
	allowed := regexp.MustCompile(`^(/[a-z0-9/:_-]*|unmatched|[A-Z]+|[0-9]{3}|[a-z_]+|[0-9.e+]+|\+Inf)$`)
	for _, line := range strings.Split(scrape, "\n") {
		if !strings.HasPrefix(line, "keyward_bank_") {
			continue
		}
		for _, m := range labelRE.FindAllStringSubmatch(line, -1) {
			if !allowed.MatchString(m[2]) {
				t.Errorf("label %s=%q is outside the closed vocabulary: %s", m[1], m[2], line)
			}
		}
	}
}

// TestReadyz: /readyz is 200 while the store and keysvc answer; 503
// naming keysvc (with keysvc's reason) while keysvc fails, 200 again when
// it is back; 503 naming the store once the store is closed, and the
// store's faults are counted where they were seen.
func TestReadyz(t *testing.T) {
	var db store.DB
	ub := &unitBank{kms: newProvisionedKMS(t), outbox: newOutbox(), log: &syncBuffer{}}
	h := newDBHandle(t)
	db = h.Open()
	ub.start(t, db)
	ops := ub.ops(t)

	ready := func(wantStatus int, wantFailed ...string) map[string]any {
		t.Helper()
		st, body := get(t, ops+"/readyz")
		var ans map[string]any
		if err := json.Unmarshal([]byte(body), &ans); err != nil {
			t.Fatalf("readyz answer %q: %v", body, err)
		}
		failed, _ := ans["failed"].([]any)
		var names []string
		for _, f := range failed {
			names = append(names, f.(string))
		}
		if st != wantStatus || strings.Join(names, ",") != strings.Join(wantFailed, ",") {
			t.Fatalf("readyz = %d %s, want %d failing %v", st, body, wantStatus, wantFailed)
		}
		return ans
	}
	if ans := ready(200); ans["status"] != "ready" {
		t.Fatalf("readyz %v", ans)
	}
	// keysvc's own answer is asked every time: the login key banking
	// caches does not hide an outage.
	ub.call(t, "", "", "GET", "/v1/login/key", nil)
	ub.kms.SetDown(wire.ErrTokenUnavailable, "public")
	ans := ready(503, "keysvc")
	if e := ans["checks"].(map[string]any)["keysvc"].(map[string]any)["error"].(string); !strings.Contains(e, "token") {
		t.Errorf("the keysvc check's reason %q does not say what keysvc answered", e)
	}
	if st, _ := ub.call(t, "", "", "GET", "/v1/login/key", nil); st != 200 {
		t.Errorf("the API's cached login key during the outage: %d", st) // the API stays up; only readiness says no
	}
	ub.kms.SetDown(nil)
	ready(200)
	ub.wantMetric(t, 1, "keyward_bank_keysvc_errors_total", "op", "public_key", "code", "token_unavailable")

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ans = ready(503, "store")
	if e := ans["checks"].(map[string]any)["store"].(map[string]any)["error"].(string); e == "" {
		t.Error("the store check gives no reason")
	}
	ub.wantMetric(t, 1, "keyward_bank_store_faults_total", "where", "readyz")
	if st, out := ub.call(t, "", "", "POST", "/v1/login/challenge", nil); st != 503 || errCode(out) != "unavailable" {
		t.Fatalf("a challenge with the store closed: %d %v, want 503 unavailable", st, out)
	}
	ub.wantMetric(t, 1, "keyward_bank_store_faults_total", "where", "request")
}

// TestReadyzBounded: a store that does not answer makes /readyz answer
// 503 "store" within the bound, and a second probe while the first read
// is still stuck does not start another.
func TestReadyzBounded(t *testing.T) {
	ub := &unitBank{kms: newProvisionedKMS(t), outbox: newOutbox(), log: &syncBuffer{}}
	hung := &hangingDB{DB: newDBHandle(t).Open(), release: make(chan struct{})}
	ub.start(t, hung)
	ops := ub.ops(t)
	hung.hang.Store(true)
	defer close(hung.release)
	for i := range 2 {
		st, body := get(t, ops+"/readyz")
		if st != 503 || !strings.Contains(body, `"failed":["store"]`) {
			t.Fatalf("probe %d of a hung store: %d %s", i, st, body)
		}
	}
	if n := hung.views.Load(); n != 1 {
		t.Errorf("%d store reads started by two probes of a hung store, want 1", n)
	}
}

// TestRequestIDInEveryLogLine: every line the bank logs while serving a
// request carries that request's id — the client's when well-formed,
// the bank's own otherwise — the brute-force guard's security alerts
// (the default, logged) included; a malformed client id never reaches
// the log.
func TestRequestIDInEveryLogLine(t *testing.T) {
	ub := &unitBank{kms: newProvisionedKMS(t), outbox: newOutbox(), log: &syncBuffer{}}
	ub.configure = func(c *banking.Config) {
		c.Alerts = nil      // the bank's own LogAlerts
		c.CaptchaAfter = -1 // the five failures reach the lock, not the captcha
	}
	ub.start(t, newDBHandle(t).Open())
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	for i := range 5 {
		id := "client-req-" + string(rune('a'+i)) + "-0001"
		st, hdr := ub.loginWithID(t, ana.login, wrongPassword, id)
		if st != 401 || hdr != id {
			t.Fatalf("login %d: %d, X-Request-Id %q, want 401 and %q", i, st, hdr, id)
		}
	}
	bad := "bad id with spaces"
	st, hdr := ub.loginWithID(t, ana.login, wrongPassword, bad)
	if st != 429 || hdr == bad || len(hdr) != 32 {
		t.Fatalf("malformed client id: %d, X-Request-Id %q, want 429 and a fresh 32-hex id", st, hdr)
	}
	logs := ub.log.String()
	if !strings.Contains(logs, "security alert") || !strings.Contains(logs, "request_id=client-req-e-0001") {
		t.Fatalf("the lock alert is not in the log with its request id:\n%s", logs)
	}
	if strings.Contains(logs, bad) {
		t.Error("a malformed client request id reached the log")
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !strings.Contains(line, "request_id=") {
			t.Errorf("a line logged while serving requests has no request id: %s", line)
		}
	}
}

// loginWithID posts a login with X-Request-Id id; it returns the status
// and the X-Request-Id answered.
func (ub *unitBank) loginWithID(t *testing.T, login, pw, id string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"login": login, "password": ub.seal(t, pw), "device": "dev-1", "os": "Android 14"})
	req, _ := http.NewRequestWithContext(context.Background(), "POST", ub.url+"/v1/login", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Request-Id")
}

// TestMetricsRegistryShared: two banks cannot share one registry by
// accident: the second New says so.
func TestMetricsRegistryShared(t *testing.T) {
	reg := prometheus.NewRegistry()
	k := newProvisionedKMS(t)
	cfg := func(db store.DB) banking.Config {
		return banking.Config{DB: db, KMS: k, KMSName: kmsClient, SMS: newOutbox(), Registry: reg}
	}
	b, err := banking.New(cfg(newDBHandle(t).Open()))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := banking.New(cfg(newDBHandle(t).Open())); err == nil || !strings.Contains(err.Error(), "metrics") {
		t.Fatalf("a second bank on the same registry: %v, want a metrics registration error", err)
	}
	ub := &unitBank{reg: reg}
	ub.wantMetric(t, 0, "keyward_bank_store_faults_total", "where", "request") // alerting series exist at zero from the start
	ub.wantMetric(t, 0, "keyward_bank_login_locks_total", "scope", "address")
}

func newProvisionedKMS(t *testing.T) *fakekms.KMS {
	k := fakekms.New(kmsClient, "usb-", "cust-")
	provision(t, k)
	return k
}

func newOutbox() *otp.DevOutbox { return otp.NewDevOutbox() }

func newDBHandle(t *testing.T) *dbtest.Handle { return dbtest.New(t) }

// hangingDB is a store whose reads, once hang is set, wait for release:
// a database that stopped answering.
type hangingDB struct {
	store.DB
	hang    atomic.Bool
	views   atomic.Int32 // reads that hung
	release chan struct{}
}

func (h *hangingDB) View(fn func(store.Tx) error) error {
	if h.hang.Load() {
		h.views.Add(1)
		<-h.release
	}
	return h.DB.View(fn)
}
