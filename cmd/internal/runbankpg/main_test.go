package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/store/pglocal"
)

// TestLockRunRefusesSecond: a second run-banking-pg on the same data
// directory is refused, naming the first one's pid, and may start once
// the first has let go.
func TestLockRunRefusesSecond(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pg.lock")
	unlock, err := lockRun(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockRun(path)
	if !errors.Is(err, errInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lockRun: %v, want errInUse naming pid %d", err, os.Getpid())
	}
	unlock()
	unlock2, err := lockRun(path)
	if err != nil {
		t.Fatalf("lockRun after the first let go: %v", err)
	}
	unlock2()
}

// TestNodeArgs: both nodes run dev mode on the shared bank directory and
// database, each on its own address.
func TestNodeArgs(t *testing.T) {
	e := &env{dataDir: "/d", runDir: "/d/pg/run", dsn: "postgres://keyward@127.0.0.1:1,127.0.0.1:2/bank?target_session_attrs=read-write"}
	a, b := e.nodeArgs(e.newNode(0)), e.nodeArgs(e.newNode(1))
	for _, args := range [][]string{a, b} {
		for _, want := range [][]string{{"-dev"}, {"-data-dir", "/d/bank"}, {"-keysvc-dir", "/d"}, {"-store-url", e.dsn}} {
			i := slices.Index(args, want[0])
			if i < 0 || (len(want) == 2 && (i+1 >= len(args) || args[i+1] != want[1])) {
				t.Errorf("node args %q lack %q", args, want)
			}
		}
	}
	la, lb := a[slices.Index(a, "-listen")+1], b[slices.Index(b, "-listen")+1]
	if la != "127.0.0.1:8445" || lb != "127.0.0.1:8446" {
		t.Errorf("listen addresses %s, %s", la, lb)
	}
}

// TestSMSTee: the log gets every byte; the terminal only the SMS lines,
// however the writes are cut.
func TestSMSTee(t *testing.T) {
	var log, out bytes.Buffer
	tee := &smsTee{log: &log, out: &out, prefix: "node-b: "}
	in := "Keyward banking (dev mode)\n\n[dev] SMS to 13800001111: code 123456\n\nbye\n"
	for _, part := range []string{in[:10], in[10:40], in[40:41], in[41:]} {
		if _, err := tee.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if log.String() != in {
		t.Errorf("log %q", log.String())
	}
	if out.String() != "node-b: [dev] SMS to 13800001111: code 123456\n" {
		t.Errorf("terminal %q", out.String())
	}
}

// needPostgres skips without the PostgreSQL programs, except under CI=true.
func needPostgres(t *testing.T) {
	t.Helper()
	if _, err := pglocal.Bin("postgres"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and PostgreSQL is missing (scripts/deps.sh installs it): %v", err)
		}
		t.Skipf("PostgreSQL not installed: %v", err)
	}
}

// TestStartDBStatusAndPromote runs run-banking-pg's database half on real
// servers: a stale pg/ is wiped, the status line shows the primary and its
// synchronous standby, pid files name the postmasters; after the primary
// is killed, Enter promotes the standby and the status line says so.
func TestStartDBStatusAndPromote(t *testing.T) {
	needPostgres(t)
	dir := t.TempDir()
	stale := filepath.Join(dir, "pg", "stale")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	e := &env{dataDir: dir, pgDir: filepath.Join(dir, "pg"), runDir: filepath.Join(dir, "pg", "run")}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := e.startDB(ctx, &out); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.db.Stop)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the previous run's pg/ was not removed: %v", err)
	}
	if !strings.Contains(out.String(), "fresh PostgreSQL every time") {
		t.Errorf("start-up did not say pg/ is wiped: %q", out.String())
	}
	for _, s := range []*pglocal.Server{e.db.Primary, e.db.Standby} {
		b, err := os.ReadFile(e.pidPath(s.Name))
		if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(s.PID()) {
			t.Errorf("%s pid file %q (%v), pid %d", s.Name, b, err, s.PID())
		}
	}
	if !strings.Contains(e.dsn, "/"+dbName+"?") || !strings.Contains(e.dsn, "target_session_attrs=read-write") ||
		!strings.Contains(e.dsn, strconv.Itoa(e.db.Standby.Port)) {
		t.Errorf("database URL %s", e.dsn)
	}
	st := e.status(ctx)
	for _, want := range []string{"primary :" + strconv.Itoa(e.db.Primary.Port) + " (primary)", "standby1 :" + strconv.Itoa(e.db.Standby.Port) + " (standby)",
		"replication on primary: standby1 streaming sync"} {
		if !strings.Contains(st, want) {
			t.Errorf("status lacks %q:\n%s", want, st)
		}
	}
	e.enter(ctx) // the primary runs: no promotion
	if r := serverRole(ctx, e.db.Standby); r != "standby" {
		t.Fatalf("Enter with the primary running made the standby %s", r)
	}
	e.db.Primary.Kill()
	e.reap()
	if _, err := os.Stat(e.pidPath("primary")); !os.IsNotExist(err) {
		t.Errorf("the killed primary's pid file is still there: %v", err)
	}
	if st := e.status(ctx); !strings.Contains(st, "primary :"+strconv.Itoa(e.db.Primary.Port)+" (down)") || !strings.Contains(st, "no primary") {
		t.Errorf("status after the kill:\n%s", st)
	}
	e.enter(ctx)
	if st := e.status(ctx); !strings.Contains(st, "standby1 :"+strconv.Itoa(e.db.Standby.Port)+" (primary)") || !strings.Contains(st, "acknowledged by this server alone") {
		t.Errorf("status after Enter:\n%s", st)
	}
}
