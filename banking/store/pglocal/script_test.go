package pglocal_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/store/pglocal"
)

// script is the operator's backup script, from this package's directory.
var script = filepath.Join("..", "..", "..", "scripts", "pg-backup.sh")

func runScript(ctx context.Context, env []string, args ...string) (string, error) {
	abs, err := filepath.Abs(script)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "bash", append([]string{abs}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestBackupScriptArchive: the archive_command of scripts/pg-backup.sh
// copies a segment into place, accepts the same segment again (a retry
// after a crash) and refuses a different one of the same name.
func TestBackupScriptArchive(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	archive := filepath.Join(dir, "wal")
	if err := os.Mkdir(archive, 0o700); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(dir, "000000010000000000000003")
	if err := os.WriteFile(seg, []byte("segment one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runScript(ctx, nil, "archive", seg, filepath.Base(seg), archive); err != nil {
		t.Fatalf("archive: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(filepath.Join(archive, filepath.Base(seg))); err != nil || string(got) != "segment one" {
		t.Fatalf("archived copy: %q, %v", got, err)
	}
	if out, err := runScript(ctx, nil, "archive", seg, filepath.Base(seg), archive); err != nil {
		t.Fatalf("archiving the same segment again: %v\n%s", err, out)
	}
	if err := os.WriteFile(seg, []byte("segment two"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runScript(ctx, nil, "archive", seg, filepath.Base(seg), archive)
	if err == nil || !strings.Contains(out, "refusing to overwrite") {
		t.Fatalf("archiving a different segment of the same name: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(archive, filepath.Base(seg))); string(got) != "segment one" {
		t.Fatalf("archived segment overwritten: %q", got)
	}
	if names := listDir(t, archive); names != filepath.Base(seg) {
		t.Fatalf("archive holds %q: a temporary file left behind?", names)
	}
}

// TestBackupScriptFullRetainRestore: the operator's weekly full
// (pg-backup.sh full) against a real server, twice, with writes between;
// pg-backup.sh retain 1 removes the first and the WAL only it needed; the
// remaining backup with the archive restores every row.
func TestBackupScriptFullRetainRestore(t *testing.T) {
	requirePostgres(t)
	ctx := testContext(t)
	root := t.TempDir()
	backupDir := filepath.Join(root, "backup")
	archive := filepath.Join(backupDir, "wal")
	c := startCluster(t, ctx, pglocal.Options{Dir: filepath.Join(root, "pg"), ArchiveDir: archive})
	env := []string{"BACKUP_DIR=" + backupDir, "PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", c.Primary.Port), "PGUSER=" + pglocal.User}

	if out, err := runScript(ctx, env, "retain", "1"); err == nil || !strings.Contains(out, "no complete base backup") {
		t.Fatalf("retain with no backup: %v\n%s", err, out)
	}
	conn := connect(t, ctx, c.Primary.DSN("postgres"))
	mustExec(t, ctx, conn, "CREATE TABLE t (n int)")
	var fulls []string
	for week := 1; week <= 2; week++ {
		mustExec(t, ctx, conn, "INSERT INTO t SELECT generate_series(1, 1000)")
		if err := c.Primary.ArchiveWAL(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		out, err := runScript(ctx, env, "full")
		if err != nil {
			t.Fatalf("full: %v\n%s", err, out)
		}
		t.Logf("pg-backup.sh full took %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
		list, err := pglocal.Backups(filepath.Join(backupDir, "base"))
		if err != nil || len(list) != week {
			t.Fatalf("after full %d: %d backups, %v", week, len(list), err)
		}
		fulls = append(fulls, list[week-1].Dir)
		time.Sleep(1100 * time.Millisecond) // backup names have whole seconds
	}
	mustExec(t, ctx, conn, "INSERT INTO t SELECT generate_series(1, 1000)")
	if err := c.Primary.ArchiveWAL(ctx); err != nil {
		t.Fatal(err)
	}
	list, _ := pglocal.Backups(filepath.Join(backupDir, "base"))
	if out, err := runScript(ctx, env, "retain", "1"); err != nil {
		t.Fatalf("retain 1: %v\n%s", err, out)
	}
	if _, err := os.Stat(fulls[0]); !os.IsNotExist(err) {
		t.Fatalf("first full still there after retain 1: %v", err)
	}
	segs := walSegments(t, archive)
	if len(segs) == 0 || segs[0][8:] != list[1].StartWAL[8:] {
		t.Fatalf("archive starts at %v, want %s", segs[:min(1, len(segs))], list[1].StartWAL)
	}
	s, err := pglocal.Restore(ctx, pglocal.RestoreOptions{BaseBackup: fulls[1], ArchiveDir: archive, Dir: filepath.Join(root, "restore"), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	rc := connect(t, ctx, s.DSN("postgres"))
	if n := count(t, ctx, rc, "SELECT count(*) FROM t"); n != 3000 {
		t.Fatalf("restored %d rows, want 3000", n)
	}
}
