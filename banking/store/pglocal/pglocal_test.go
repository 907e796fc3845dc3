package pglocal_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keyward/keyward/banking/store/pglocal"
)

// requirePostgres skips the test when PostgreSQL's server programs are not
// installed, except under CI=true, where their absence is a failure.
func requirePostgres(t testing.TB) {
	t.Helper()
	for _, name := range []string{"initdb", "postgres", "pg_basebackup"} {
		if _, err := pglocal.Bin(name); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("CI=true and PostgreSQL is missing (scripts/deps.sh installs it): %v", err)
			}
			t.Skipf("PostgreSQL not installed: %v", err)
		}
	}
}

// processUID is the real uid of a running process.
func processUID(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			return f[1]
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return ""
}

// startCluster starts a cluster for the test (its log lines in the test's
// log), stopped at cleanup.
func startCluster(t *testing.T, ctx context.Context, opts pglocal.Options) *pglocal.Cluster {
	t.Helper()
	opts.Logf = t.Logf
	c, err := pglocal.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t *testing.T, ctx context.Context, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, ctx context.Context, conn *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestSingleServer starts one server, writes to a database of its own,
// crashes the server (SIGKILL) and restarts it: the committed rows are
// there after crash recovery, and the server answers on the same port.
func TestSingleServer(t *testing.T) {
	requirePostgres(t)
	ctx := testContext(t)
	start := time.Now()
	c := startCluster(t, ctx, pglocal.Options{Dir: t.TempDir()})
	t.Logf("primary started in %v", time.Since(start).Round(time.Millisecond))
	if c.Standby != nil {
		t.Fatal("a standby without Options.Standby")
	}
	if err := c.CreateDatabase(ctx, "bank"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateDatabase(ctx, "bank"); err == nil {
		t.Fatal("creating an existing database succeeded")
	}

	conn := connect(t, ctx, c.DSN("bank"))
	mustExec(t, ctx, conn, "CREATE TABLE t (id int PRIMARY KEY)")
	mustExec(t, ctx, conn, "INSERT INTO t SELECT generate_series(1, 100)")
	var fsync, user string
	if err := conn.QueryRow(ctx, "SELECT current_setting('fsync'), current_user").Scan(&fsync, &user); err != nil {
		t.Fatal(err)
	}
	if fsync != "on" || user != pglocal.User {
		t.Fatalf("fsync = %s, user = %s; want on, %s", fsync, user, pglocal.User)
	}
	conn.Close(ctx)
	if err := c.Primary.ArchiveWAL(ctx); err == nil || !strings.Contains(err.Error(), "does not archive") {
		t.Fatalf("ArchiveWAL without an archive: %v", err)
	}

	pid := c.Primary.PID()
	if uid := processUID(t, pid); os.Geteuid() == 0 && uid == "0" {
		t.Fatal("the postmaster runs as root")
	} else if os.Geteuid() != 0 && uid != strconv.Itoa(os.Geteuid()) {
		t.Fatalf("the postmaster runs as uid %s, not as the current user", uid)
	}
	c.Primary.Kill()
	if c.Primary.Running() {
		t.Fatal("running after Kill")
	}
	if _, err := pgx.Connect(ctx, c.Primary.DSN("bank")); err == nil {
		t.Fatal("connected to a killed server")
	}
	if err := c.Primary.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Primary.PID() == pid {
		t.Fatal("same postmaster after a restart")
	}
	conn = connect(t, ctx, c.Primary.DSN("bank"))
	if n := count(t, ctx, conn, "SELECT count(*) FROM t"); n != 100 {
		t.Fatalf("after crash recovery %d rows, want 100", n)
	}
}

// TestSynchronousStandbyRPO0: with a synchronous standby, every commit the
// primary acknowledged survives the primary's crash. Writers commit rows
// as fast as they can; the primary is killed (SIGKILL of every server
// process) in the middle; the standby is promoted; every acknowledged row
// is on it, and the cluster's multi-host DSN now reaches it for writes.
func TestSynchronousStandbyRPO0(t *testing.T) {
	requirePostgres(t)
	ctx := testContext(t)
	start := time.Now()
	c := startCluster(t, ctx, pglocal.Options{Dir: t.TempDir(), Standby: true})
	t.Logf("primary + synchronous standby started in %v", time.Since(start).Round(time.Millisecond))
	if err := c.CreateDatabase(ctx, "bank"); err != nil {
		t.Fatal(err)
	}
	primary := connect(t, ctx, c.Primary.DSN("bank"))
	mustExec(t, ctx, primary, "CREATE TABLE t (writer int, seq int, PRIMARY KEY (writer, seq))")
	var names string
	if err := primary.QueryRow(ctx, "SELECT current_setting('synchronous_standby_names')").Scan(&names); err != nil {
		t.Fatal(err)
	}
	if names != "FIRST 1 (standby1)" {
		t.Fatalf("synchronous_standby_names = %q", names)
	}
	standby := connect(t, ctx, c.Standby.DSN("postgres"))
	var inRecovery bool
	if err := standby.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || !inRecovery {
		t.Fatalf("standby in recovery = %v, %v", inRecovery, err)
	}
	standby.Close(ctx)

	const writers = 8
	acked := make([][]int, writers)
	done := make(chan struct{})
	for w := range writers {
		go func() {
			defer func() { done <- struct{}{} }()
			conn, err := pgx.Connect(ctx, c.Primary.DSN("bank"))
			if err != nil {
				t.Errorf("writer %d: %v", w, err)
				return
			}
			defer conn.Close(context.Background())
			for seq := 1; ; seq++ {
				if _, err := conn.Exec(ctx, "INSERT INTO t VALUES ($1, $2)", w, seq); err != nil {
					return // the primary is gone: this row was not acknowledged
				}
				acked[w] = append(acked[w], seq)
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	c.Primary.Kill()
	for range writers {
		<-done
	}
	total := 0
	for _, a := range acked {
		total += len(a)
	}
	if total < writers {
		t.Fatalf("only %d commits acknowledged before the kill: the test proved nothing", total)
	}

	promoteStart := time.Now()
	if err := c.Standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d commits acknowledged before the kill; promotion took %v", total, time.Since(promoteStart).Round(time.Millisecond))
	conn := connect(t, ctx, c.DSN("bank")) // finds the promoted standby
	var port int
	if err := conn.QueryRow(ctx, "SELECT current_setting('port')::int").Scan(&port); err != nil {
		t.Fatal(err)
	}
	if port != c.Standby.Port {
		t.Fatalf("multi-host DSN reached port %d, want the promoted standby's %d", port, c.Standby.Port)
	}
	lost := 0
	for w, seqs := range acked {
		if len(seqs) == 0 {
			continue
		}
		// The rows 1..n of a writer were acknowledged in order: all must be
		// there (one more, unacknowledged, may be too).
		n := count(t, ctx, conn, "SELECT count(*) FROM t WHERE writer = $1 AND seq <= $2", w, seqs[len(seqs)-1])
		lost += len(seqs) - n
	}
	if lost != 0 {
		t.Fatalf("%d acknowledged commits lost in the failover (RPO must be 0)", lost)
	}
	mustExec(t, ctx, conn, "INSERT INTO t VALUES (-1, 1)") // writable
}

// TestCommitWaitsForStandby: with the synchronous standby down, a commit
// on the primary is not acknowledged, and no other session sees it; once
// the standby is back (Kill, then Start on its data: it resumes streaming
// through its slot) the commit returns and the row is on the standby.
func TestCommitWaitsForStandby(t *testing.T) {
	requirePostgres(t)
	ctx := testContext(t)
	c := startCluster(t, ctx, pglocal.Options{Dir: t.TempDir(), Standby: true})
	conn := connect(t, ctx, c.Primary.DSN("postgres"))
	mustExec(t, ctx, conn, "CREATE TABLE t (n int)")
	c.Standby.Kill()

	committed := make(chan error, 1)
	go func() {
		writer, err := pgx.Connect(ctx, c.Primary.DSN("postgres"))
		if err != nil {
			committed <- err
			return
		}
		defer writer.Close(context.Background())
		_, err = writer.Exec(ctx, "INSERT INTO t VALUES (1)")
		committed <- err
	}()
	// The commit record is written locally at once; the acknowledgement
	// waits. Give it ample time to (wrongly) return.
	select {
	case err := <-committed:
		t.Fatalf("commit acknowledged with the synchronous standby down (err %v)", err)
	case <-time.After(2 * time.Second):
	}
	if n := count(t, ctx, conn, "SELECT count(*) FROM t"); n != 0 {
		t.Fatalf("another session sees %d rows of an unacknowledged commit", n)
	}

	if err := c.Standby.Start(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-committed:
		if err != nil {
			t.Fatalf("commit after the standby came back: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("commit still waiting after the standby came back")
	}
	standby := connect(t, ctx, c.Standby.DSN("postgres"))
	if n := count(t, ctx, standby, "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("standby has %d rows, want 1", n)
	}
}

// TestCancelledSyncWaitCommitsLocally pins down a PostgreSQL behaviour
// that banking's store must allow for (package doc, "What a client
// sees"): a commit waiting for the synchronous standby that is cancelled
// (here pg_cancel_backend; a client's cancel request, which pgx sends when
// a context ends, is the same) is already committed on the primary: it
// returns success with only a WARNING, and every session sees the row,
// although the standby does not have it.
func TestCancelledSyncWaitCommitsLocally(t *testing.T) {
	requirePostgres(t)
	ctx := testContext(t)
	c := startCluster(t, ctx, pglocal.Options{Dir: t.TempDir(), Standby: true})
	conn := connect(t, ctx, c.Primary.DSN("postgres"))
	mustExec(t, ctx, conn, "CREATE TABLE t (n int)")
	c.Standby.Kill()

	cfg, err := pgx.ParseConfig(c.Primary.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	warnings := make(chan string, 4)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { warnings <- n.Severity + ": " + n.Message }
	writer, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { writer.Close(context.Background()) })
	done := make(chan error, 1)
	go func() { _, err := writer.Exec(ctx, "INSERT INTO t VALUES (1)"); done <- err }()
	for cancelled := 0; cancelled == 0; {
		select {
		case err := <-done:
			t.Fatalf("commit returned (%v) before the standby came back or the wait was cancelled", err)
		case <-time.After(20 * time.Millisecond):
		}
		cancelled = count(t, ctx, conn, "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
	}
	if err := <-done; err != nil {
		t.Fatalf("a cancelled synchronous-replication wait returned %v; PostgreSQL 15 returns success", err)
	}
	if w := <-warnings; !strings.Contains(w, "synchronous replication") {
		t.Fatalf("warning %q", w)
	}
	if n := count(t, ctx, conn, "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("%d rows visible on the primary after the cancelled wait, want 1 (committed locally)", n)
	}
}
