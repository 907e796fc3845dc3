//go:build linux

package softhsmtests

// TestBackupDrill is `make backup-drill` (issue 17 item 4, R-AV-3): the
// bank's backups restored into fresh directories and checked, on real
// components — cmd/keysvc on a SoftHSM2 token (bbolt store), cmd/banking on
// a PostgreSQL primary with a synchronous standby and a WAL archive.
//
//  1. The weekly full: a base backup of the primary (pglocal.BaseBackup,
//     what scripts/pg-backup.sh full runs), taken while banking serves.
//  2. Day 1: transfers; the time T1 and every balance are noted.
//  3. Day 2: more transfers, and meanwhile `keysvc backup` copies keysvc's
//     store hot.
//  4. The WAL archive (the continuous incremental) holds both days.
//  5. Restore to T1 (point in time) into a fresh directory: the books
//     verify, every balance is T1's, every day-1 transfer is there and no
//     day-2 one.
//  6. Restore to the end of the archive: every transfer of both days,
//     balances as the live database's.
//  7. keysvc's copy in a fresh data_dir: `keysvc audit verify -config`
//     passes over its audit chain.
//
// It prints how long each step took: the figures in the README's backup
// section come from here.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/store/pglocal"
)

func TestBackupDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PostgreSQL, keysvc and banking")
	}
	ctx := context.Background()
	dir := t.TempDir()
	tt := newTestTLS(t, dir)
	ks := startKeysvc(t, dir, tt)
	provisionBankKeysWith(t, ks.kmsClient(t, officerToken, 10*time.Second, 2))
	backups := filepath.Join(dir, "backups")
	archive, full := filepath.Join(backups, "wal"), filepath.Join(backups, "base", "week-1")
	st := pgBankStore(t, dir, pglocal.Options{Standby: true, ArchiveDir: archive})
	ps, start := crashSetupStore(t, ks.kmsClient(t, bankappToken, 10*time.Second, 8), st)
	bk := startBankingNode(t, dir, "banking", ks, st, bankingOptions{})
	hc := &http.Client{Timeout: 15 * time.Second, Transport: ks.tls.clientTransport(16)}
	defer hc.CloseIdleConnections()
	var accounts []string
	for _, p := range ps {
		accounts = append(accounts, p.c.account)
	}
	live, err := ledger.New(st.open(t), ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	balances := func(l *ledger.Ledger) []int64 {
		t.Helper()
		var out []int64
		for _, id := range accounts {
			a, err := l.Account(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, a.Balance)
		}
		return out
	}

	// 1. The weekly full, while banking serves.
	t0 := time.Now()
	if err := st.pg.Primary.BaseBackup(ctx, full); err != nil {
		t.Fatal(err)
	}
	fullTook := time.Since(t0)

	// 2. Day 1.
	n := 240
	if raceEnabled() {
		n = 120
	}
	ords := crashOrders(t, ps, 2*n)
	send := func(off int) func(i int) usbResult {
		return func(i int) usbResult {
			p := ps[ords[off+i].from]
			return postUSB(hc, bk.url, p.sess, p.dev, ords[off+i].body)
		}
	}
	for i, r := range burst(n, 8, send(0), nil) {
		if !r.answered() || r.replayed {
			t.Fatalf("day 1, order %d: %v", i, r)
		}
	}
	atT1 := balances(live)
	t1 := time.Now()
	time.Sleep(50 * time.Millisecond) // day 2 commits strictly after T1

	// 3. Day 2, with keysvc's hot backup taken meanwhile.
	day2 := make(chan []usbResult, 1)
	go func() { day2 <- burst(n, 8, send(n), nil) }()
	tokenFile := filepath.Join(dir, "officer.token")
	writeFiles(t, tokenFile, officerToken+"\n")
	kvCopy := filepath.Join(backups, "keysvc-day2.db")
	t0 = time.Now()
	kvSize, kvSum, err := keysvcBackup(t, ks.bin, filepath.Join(dir, "keysvc.yaml"), tokenFile, kvCopy)
	kvTook := time.Since(t0)
	if err != nil {
		<-day2
		t.Fatalf("keysvc backup: %v", err)
	}
	for i, r := range <-day2 {
		if !r.answered() || r.replayed {
			t.Fatalf("day 2, order %d: %v", i, r)
		}
	}
	atEnd := balances(live)

	// 4. Everything committed is in the archive.
	if err := st.pg.Primary.ArchiveWAL(ctx); err != nil {
		t.Fatal(err)
	}

	// 5. Point in time: T1.
	check := func(name string, target time.Time, want []int64, inDay2 bool) time.Duration {
		t.Helper()
		t0 := time.Now()
		srv, err := pglocal.Restore(ctx, pglocal.RestoreOptions{BaseBackup: full, ArchiveDir: archive,
			Dir: filepath.Join(dir, "restore-"+name), TargetTime: target, Logf: t.Logf})
		if err != nil {
			t.Fatalf("restore %s: %v", name, err)
		}
		took := time.Since(t0)
		defer srv.Stop()
		l, err := ledger.New(st.openAt(t, srv.DSN(st.dbname)), ledger.Options{})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := l.Verify(ctx)
		if err != nil {
			t.Fatalf("restore %s: the books do not verify: %v", name, err)
		}
		if rep.CustomerTotals["CNY"] != start.CustomerTotals["CNY"] || rep.Totals["CNY"] != 0 {
			t.Fatalf("restore %s: customers hold %d (before %d), all balances sum to %d", name, rep.CustomerTotals["CNY"], start.CustomerTotals["CNY"], rep.Totals["CNY"])
		}
		if got := balances(l); !slices.Equal(got, want) {
			t.Fatalf("restore %s: balances %v, want %v", name, got, want)
		}
		posted := ledgerKeys(t, l, accounts...)
		for i, o := range ords {
			_, in := posted[ps[o.from].c.id+":"+o.nonce]
			if wantIn := i < n || inDay2; in != wantIn {
				t.Errorf("restore %s: order %d (day %d) present=%v", name, i, 1+i/n, in)
			}
		}
		// What the operator runs on the restored database before anyone
		// uses it: banking -verify-ledger with the bank's config, pointed at it.
		conf, err := os.ReadFile(filepath.Join(dir, "banking.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		rconf := filepath.Join(dir, "banking-restore-"+name+".yaml")
		writeFiles(t, rconf, strings.Replace(string(conf), st.url(), srv.DSN(st.dbname), 1))
		out, err := exec.Command(bk.bin, "-config", rconf, "-verify-ledger").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ledger ok (postgres store") || !strings.Contains(string(out), fmt.Sprintf("%d postings", rep.Postings)) {
			t.Fatalf("restore %s: banking -verify-ledger: %v\n%s", name, err, out)
		}
		t.Logf("restore %s: %d postings, books verify, balances as expected (%v); banking -verify-ledger: %s", name, rep.Postings, took.Round(time.Millisecond),
			strings.SplitN(string(out[bytes.Index(out, []byte("ledger ok")):]), "\n", 2)[0])
		return took
	}
	pitrTook := check("t1", t1, atT1, false)

	// 6. The end of the archive.
	endTook := check("end", time.Time{}, atEnd, true)

	// 7. keysvc's copy: its audit chain verifies.
	rdir := filepath.Join(dir, "keysvc-restored")
	rconf := restoredBoltConfig(t, filepath.Join(dir, "keysvc.yaml"), filepath.Join(dir, "keysvc"), rdir, kvCopy)
	t0 = time.Now()
	out, err := exec.Command(ks.bin, "audit", "verify", "-config", rconf, "-pubkey", filepath.Join(dir, "keysvc", "audit-key.pem")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit chain ok") {
		t.Fatalf("keysvc audit verify on the restored copy: %v\n%s", err, out)
	}
	verifyTook := time.Since(t0)

	t.Logf("backup drill: base backup %v; keysvc hot copy %d bytes sha256 %s… in %v; restore to T1 %v, to the end %v; keysvc audit verify %v (%s)",
		fullTook.Round(time.Millisecond), kvSize, kvSum[:12], kvTook.Round(time.Millisecond), pitrTook.Round(time.Millisecond),
		endTook.Round(time.Millisecond), verifyTook.Round(time.Millisecond), strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0])
}
