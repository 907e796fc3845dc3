//go:build linux

package softhsmtests

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/banking"
	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/pglocal"
	"github.com/keyward/keyward/banking/store/pgstore"
)

// bankStore is where a test's banks keep their records: a bbolt file
// (path), or the database dbname on a real PostgreSQL cluster (pg) that
// several banking processes share (issue 17).
type bankStore struct {
	path   string
	pg     *pglocal.Cluster
	dbname string
	// noCaptcha turns banking's login captcha off (Config.CaptchaAfter
	// -1), for tests about something else whose wrong passwords all come
	// from one loopback address.
	noCaptcha bool
}

// boltBankStore is dataDir/bank.db, as cmd/banking keeps it.
func boltBankStore(dataDir string) *bankStore {
	return &bankStore{path: filepath.Join(dataDir, "bank.db")}
}

// pgBankStore starts a PostgreSQL cluster in dir/pg (with opts' standby and
// archive) and creates the database banking uses. Under CI=true a missing
// PostgreSQL fails the test.
func pgBankStore(t testing.TB, dir string, opts pglocal.Options) *bankStore {
	t.Helper()
	if _, err := pglocal.Bin("postgres"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and PostgreSQL is missing (scripts/deps.sh installs it): %v", err)
		}
		t.Skipf("PostgreSQL not installed (scripts/deps.sh installs it): %v", err)
	}
	opts.Dir = filepath.Join(dir, "pg")
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pglocal.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	st := &bankStore{pg: c, dbname: "keyward"}
	if err := c.CreateDatabase(ctx, st.dbname); err != nil {
		t.Fatal(err)
	}
	return st
}

// url is what cmd/banking's store.postgres.url gets: every server of the
// cluster, the writable one chosen.
func (s *bankStore) url() string { return s.pg.DSN(s.dbname) }

// open opens the store for a bank in this process.
func (s *bankStore) open(t testing.TB) store.DB {
	t.Helper()
	if s.pg == nil {
		db, err := store.OpenBolt(s.path, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	return s.openAt(t, s.url())
}

// openAt opens the PostgreSQL store at dsn (one server, e.g. a promoted
// standby); it is closed at cleanup.
func (s *bankStore) openAt(t testing.TB, dsn string) store.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := pgstore.Open(ctx, pgstore.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// yaml is cmd/banking's data_dir and store sections for this store.
func (s *bankStore) yaml(dataDir string) string {
	if s.pg == nil {
		return fmt.Sprintf("data_dir: %q\n", dataDir)
	}
	return fmt.Sprintf("data_dir: %q\nstore:\n  backend: postgres\n  postgres: {url: %q, max_conns: 32}\n", dataDir, s.url())
}

// openBankStore is openBank on any bankStore.
func openBankStore(t testing.TB, kms banking.KMS, st *bankStore) (*bankEnv, func()) {
	t.Helper()
	db := st.open(t)
	be := &bankEnv{outbox: otp.NewDevOutbox()}
	var err error
	cfg := banking.Config{DB: db, KMS: kms, KMSName: "bankapp", SMS: be.outbox}
	if st.noCaptcha {
		cfg.CaptchaAfter = -1
	}
	if be.bank, err = banking.New(cfg); err != nil {
		db.Close()
		t.Fatal(err)
	}
	app := be.bank.NewServer(banking.ServerConfig{Staff: testStaff(t)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	be.url = "http://" + ln.Addr().String()
	served := make(chan struct{})
	go func() { defer close(served); app.Listener(ln) }()
	var once sync.Once
	closeBank := func() {
		once.Do(func() {
			app.Shutdown()
			<-served
			be.bank.Close()
			db.Close()
		})
	}
	t.Cleanup(closeBank)
	return be, closeBank
}

// crashSetupStore is crashSetup on any bankStore: four customers with USB
// keys, 100,000.00 each, logged in; the bank in this process is closed on
// return, the sessions stay in the store.
func crashSetupStore(t *testing.T, kms banking.KMS, st *bankStore) ([]crashParty, ledger.Report) {
	t.Helper()
	be, closeBank := openBankStore(t, kms, st)
	defer closeBank()
	var ps []crashParty
	for i, p := range []struct{ login, name, phone, id string }{
		{"alice", "Alice Wang", "13800001111", "11010519491231002X"},
		{"bobli", "Bob Li", "13800002222", "110101199003070011"},
		{"carol", "Carol Zhao", "13800003333", "110101198001010010"},
		{"david", "David Sun", "13800004444", "11010519491231002X"},
	} {
		c := be.enrol(t, p.login, p.name, p.phone, p.id, true, false, "", "")
		be.deposit(t, c.account, "100000.00")
		dev := fmt.Sprintf("crash-dev-%d", i)
		ps = append(ps, crashParty{c: c, sess: be.login(t, c, dev), dev: dev})
	}
	start, err := be.bank.Ledger.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ps, start
}

// startBankingNode runs cmd/banking as name (its log, config and SMS
// outbox files named after it) on st, otherwise as startBanking does.
// Several nodes on one PostgreSQL store serve the same customers.
func startBankingNode(t testing.TB, dir, name string, ks *daemon, st *bankStore, o bankingOptions) *daemon {
	t.Helper()
	d := &daemon{name: name, bin: builtCommand(t, "banking"), logPath: filepath.Join(dir, name+".log"), addr: freeAddr(t), tls: ks.tls}
	d.url = "https://" + d.addr
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			logTail(t, name, d.logPath)
		}
	})
	dataDir := filepath.Dir(st.path) // bbolt: dataDir/bank.db
	if st.pg != nil {
		dataDir = filepath.Join(dir, name+"-data")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	tokenFile, list, conf := filepath.Join(dir, "bankapp.token"), filepath.Join(dir, "blacklist.txt"), filepath.Join(dir, name+".yaml")
	writeFiles(t, tokenFile, bankappToken+"\n", list, "end:0\n", conf, fmt.Sprintf(`listen: %q
%stls: {cert: %q, key: %q}
keysvc: {url: %q, ca: %q, bearer_token_file: %q, timeout: 10s}
kms_name: bankapp
%sblacklist: {file: %q}
sms: {gateway_url: %q}
ledger: {max_batch_size: %d, max_batch_delay: %s}
http: {login_per_minute: %d}
shutdown_timeout: 10s
`, d.addr, st.yaml(dataDir), ks.tls.cert, ks.tls.key, ks.url, ks.tls.ca, tokenFile, staffYAML(), list, smsRelay(t, filepath.Join(dir, strings.TrimPrefix(name+"-", "banking-")+"sms-outbox.jsonl")),
		o.maxBatchSize, o.maxBatchDelay, o.loginPerMinute))
	d.args = []string{"-config", conf}
	d.start(t)
	return d
}
