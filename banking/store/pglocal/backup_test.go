package pglocal_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/banking/store/pglocal"
)

// serverNow is the server's clock, read after everything before it
// committed: a recovery target between two writes.
func serverNow(t *testing.T, ctx context.Context, conn *pgx.Conn) time.Time {
	t.Helper()
	var now time.Time
	if err := conn.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

// TestPointInTimeRestore: a base backup, rows written at T1, the time
// noted, more rows at T2, the WAL archived. Restored to the noted time the
// database has T1's rows and not T2's; restored to the end of the WAL it
// has both; each restored server is writable and does not write into the
// archive it was restored from.
func TestPointInTimeRestore(t *testing.T) {
	requirePostgres(t)
	ctx := testContext(t)
	root := t.TempDir()
	archive := filepath.Join(root, "archive")
	c := startCluster(t, ctx, pglocal.Options{Dir: filepath.Join(root, "pg"), ArchiveDir: archive})
	if err := c.CreateDatabase(ctx, "bank"); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, ctx, c.Primary.DSN("bank"))
	mustExec(t, ctx, conn, "CREATE TABLE t (phase int, n int)")

	backup := filepath.Join(root, "backups", "base1")
	start := time.Now()
	if err := c.Primary.BaseBackup(ctx, backup); err != nil {
		t.Fatal(err)
	}
	t.Logf("base backup took %v", time.Since(start).Round(time.Millisecond))

	mustExec(t, ctx, conn, "INSERT INTO t SELECT 1, generate_series(1, 50)")
	mustExec(t, ctx, conn, "INSERT INTO t SELECT 1, generate_series(51, 100)")
	t1 := serverNow(t, ctx, conn)
	time.Sleep(20 * time.Millisecond)
	mustExec(t, ctx, conn, "INSERT INTO t SELECT 2, generate_series(1, 70)")
	if err := c.Primary.ArchiveWAL(ctx); err != nil {
		t.Fatal(err)
	}
	segments, _ := filepath.Glob(filepath.Join(archive, "0*"))
	if len(segments) == 0 {
		t.Fatal("nothing archived")
	}
	before := listDir(t, archive)

	cases := []struct {
		name           string
		target         time.Time
		phase1, phase2 int
	}{
		{"to T1", t1, 100, 0},
		{"to end of WAL", time.Time{}, 100, 70},
	}
	for i, tc := range cases {
		start := time.Now()
		s, err := pglocal.Restore(ctx, pglocal.RestoreOptions{
			BaseBackup: backup, ArchiveDir: archive, Dir: filepath.Join(root, "restore", string(rune('a'+i))),
			TargetTime: tc.target, Logf: t.Logf,
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		t.Logf("restore %s took %v", tc.name, time.Since(start).Round(time.Millisecond))
		rc := connect(t, ctx, s.DSN("bank"))
		p1 := count(t, ctx, rc, "SELECT count(*) FROM t WHERE phase = 1")
		p2 := count(t, ctx, rc, "SELECT count(*) FROM t WHERE phase = 2")
		if p1 != tc.phase1 || p2 != tc.phase2 {
			t.Errorf("restore %s: %d rows of T1, %d of T2; want %d, %d", tc.name, p1, p2, tc.phase1, tc.phase2)
		}
		mustExec(t, ctx, rc, "INSERT INTO t VALUES (3, 1)") // promoted: writable, no synchronous standby awaited
		rc.Close(ctx)
		s.Stop()
	}
	if after := listDir(t, archive); after != before {
		t.Fatalf("a restored server wrote into the archive:\nbefore %s\nafter  %s", before, after)
	}
	if n := count(t, ctx, conn, "SELECT count(*) FROM t WHERE phase = 3"); n != 0 {
		t.Fatalf("a restored server's write reached the original: %d rows", n)
	}
}

func listDir(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

// TestRetain: three weekly fulls with WAL between them; keeping two
// removes the oldest backup and exactly the WAL older than the second, and
// the oldest kept backup still restores to the end of the WAL with every
// row.
func TestRetain(t *testing.T) {
	requirePostgres(t)
	ctx := testContext(t)
	root := t.TempDir()
	archive := filepath.Join(root, "archive")
	backups := filepath.Join(root, "backups")
	c := startCluster(t, ctx, pglocal.Options{Dir: filepath.Join(root, "pg"), ArchiveDir: archive})
	if err := pglocal.Retain(archive, t.TempDir(), 2); !errors.Is(err, pglocal.ErrNoBackup) {
		t.Fatalf("Retain with no backup: %v, want ErrNoBackup", err)
	}
	if err := pglocal.Retain(archive, backups, 0); err == nil {
		t.Fatal("Retain keeping 0 backups succeeded")
	}
	conn := connect(t, ctx, c.Primary.DSN("postgres"))
	mustExec(t, ctx, conn, "CREATE TABLE t (week int, n int)")
	for week := 1; week <= 3; week++ {
		mustExec(t, ctx, conn, "INSERT INTO t SELECT $1, generate_series(1, 1000)", week)
		if err := c.Primary.ArchiveWAL(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Primary.BaseBackup(ctx, filepath.Join(backups, "week"+string(rune('0'+week)))); err != nil {
			t.Fatal(err)
		}
	}
	mustExec(t, ctx, conn, "INSERT INTO t SELECT 4, generate_series(1, 1000)")
	if err := c.Primary.ArchiveWAL(ctx); err != nil {
		t.Fatal(err)
	}
	// A backup that did not finish (no manifest) is neither kept nor
	// counted nor removed.
	if err := os.MkdirAll(filepath.Join(backups, "partial"), 0o700); err != nil {
		t.Fatal(err)
	}
	list, err := pglocal.Backups(backups)
	if err != nil || len(list) != 3 {
		t.Fatalf("Backups: %d, %v; want 3", len(list), err)
	}
	oldestKept := list[1].StartWAL

	if err := pglocal.Retain(archive, backups, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(list[0].Dir); !os.IsNotExist(err) {
		t.Fatalf("oldest backup still there: %v", err)
	}
	for _, b := range list[1:] {
		if _, err := os.Stat(b.Dir); err != nil {
			t.Fatalf("kept backup gone: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(backups, "partial")); err != nil {
		t.Fatalf("unfinished backup removed: %v", err)
	}
	segs := walSegments(t, archive)
	if len(segs) == 0 || segs[0][8:] != oldestKept[8:] {
		t.Fatalf("archive starts at %v, want %s (the oldest kept backup's first segment)", segs[:min(1, len(segs))], oldestKept)
	}

	s, err := pglocal.Restore(ctx, pglocal.RestoreOptions{BaseBackup: list[1].Dir, ArchiveDir: archive, Dir: filepath.Join(root, "restore"), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	rc := connect(t, ctx, s.DSN("postgres"))
	if n := count(t, ctx, rc, "SELECT count(*) FROM t"); n != 4000 {
		t.Fatalf("restored from the oldest kept backup: %d rows, want 4000", n)
	}
}

// walSegments lists the WAL segment files of an archive, in order.
func walSegments(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var segs []string
	for _, e := range entries {
		if n := e.Name(); len(n) == 24 && strings.Trim(n, "0123456789ABCDEF") == "" {
			segs = append(segs, n)
		}
	}
	return segs
}
