package pglocal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The backup scheme (the README's "Backups and the restore drill"): a full base backup every week
// (BaseBackup), every WAL segment archived as it completes (the daily —
// in fact continuous — incremental: Options.ArchiveDir), Retain to keep the
// newest base backups and the WAL they need, Restore to bring a base
// backup and the archive back to any point in time.

// BaseBackup takes a full, consistent base backup of the running server
// into dir (created; it must not exist or be empty): pg_basebackup in
// plain format (a copy of the data directory, which Restore copies
// again), with the WAL it needs streamed alongside (-X stream: the backup
// restores on its own, without the archive), an immediate checkpoint (-c
// fast) and a backup manifest that pg_verifybackup then checks.
func (s *Server) BaseBackup(ctx context.Context, dir string) error {
	bin, err := Bin("pg_basebackup")
	if err != nil {
		return err
	}
	verify, err := Bin("pg_verifybackup")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pglocal: base backup directory: %w", err)
	}
	if err := s.acct.own(dir); err != nil {
		return err
	}
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=%s application_name=pglocal_basebackup", s.Port, User)
	out, err := s.run(ctx, bin, "-d", conninfo, "-D", dir, "-X", "stream", "-c", "fast",
		"-l", "pglocal "+time.Now().UTC().Format(time.RFC3339))
	if err != nil {
		return fmt.Errorf("%w: pg_basebackup of %s into %s: %w\n%s", ErrServer, s.Name, dir, err, out)
	}
	if out, err := s.run(ctx, verify, dir); err != nil {
		return fmt.Errorf("%w: pg_verifybackup %s: %w\n%s", ErrServer, dir, err, out)
	}
	s.logf("pglocal: base backup of %s in %s", s.Name, dir)
	return nil
}

// ArchiveWAL closes the server's current WAL segment (pg_switch_wal) and
// returns when the archiver has archived it, so that everything committed
// before the call is in the archive. A server archives on its own every
// archive_timeout (5 s) too; tests and drills call this to not wait.
func (s *Server) ArchiveWAL(ctx context.Context) error {
	var segment, mode string
	err := s.withConn(ctx, func(conn *pgx.Conn) error {
		if err := conn.QueryRow(ctx, "SELECT current_setting('archive_mode')").Scan(&mode); err != nil || mode == "off" {
			return err
		}
		return conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&segment)
	})
	if err == nil && mode == "off" {
		return fmt.Errorf("pglocal: %s does not archive WAL (start the cluster with Options.ArchiveDir)", s.Name)
	}
	if err != nil {
		return fmt.Errorf("pglocal: %s: switching WAL segment: %w", s.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var last, failed string
	for {
		err = s.withConn(ctx, func(conn *pgx.Conn) error {
			return conn.QueryRow(ctx,
				"SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, '') FROM pg_stat_archiver").Scan(&last, &failed)
		})
		// Same timeline: names order as the segments do.
		if err == nil && len(last) >= 24 && last[:24] >= segment {
			return nil
		}
		select {
		case <-ctx.Done():
			return s.failure("did not archive its WAL", fmt.Errorf("%w (waiting for %s; last archived %q, last failed %q, last error %v)",
				ctx.Err(), segment, last, failed, err))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// BaseBackup is a base backup's directory (BaseBackup, or
	// scripts/pg-backup.sh full); it is copied, never changed.
	BaseBackup string
	// ArchiveDir is the WAL archive replayed after the base backup.
	ArchiveDir string
	// Dir receives the restored server's data directory (Dir/restored),
	// log and socket.
	Dir string
	// TargetTime, when set, stops recovery before the first transaction
	// that committed after it (recovery_target_time); zero replays every
	// archived segment (the latest timeline).
	TargetTime time.Time
	// Logf as in Options.
	Logf func(string, ...any)
}

// Restore brings a base backup and the WAL archive back as a new,
// writable server: the base backup is copied into Dir/restored, which gets
// recovery.signal, restore_command (a copy out of ArchiveDir),
// recovery_target_time when TargetTime is set and
// recovery_target_action = promote; Restore starts it and returns when
// recovery has finished and the server accepts writes. The restored
// server does not archive (it must never write into the archive of the
// cluster it came from) and waits for no synchronous standby. Stop it when
// done.
func Restore(ctx context.Context, opts RestoreOptions) (*Server, error) {
	if opts.BaseBackup == "" || opts.ArchiveDir == "" || opts.Dir == "" {
		return nil, errors.New("pglocal: RestoreOptions needs BaseBackup, ArchiveDir and Dir")
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	for _, p := range []*string{&opts.BaseBackup, &opts.ArchiveDir, &opts.Dir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, err
		}
		*p = abs
	}
	if _, err := os.Stat(filepath.Join(opts.BaseBackup, "backup_label")); err != nil {
		return nil, fmt.Errorf("pglocal: %s is not a plain-format base backup (no backup_label): %w", opts.BaseBackup, err)
	}
	if err := shellSafe(opts.ArchiveDir); err != nil {
		return nil, err
	}
	acct, err := serverAccount()
	if err != nil {
		return nil, err
	}
	s := newServer("restored", filepath.Join(opts.Dir, "restored"), acct, opts.Logf)
	if _, err := os.Stat(s.DataDir); err == nil {
		return nil, fmt.Errorf("pglocal: %s exists: restore into a fresh directory", s.DataDir)
	}
	if err := copyTree(opts.BaseBackup, s.DataDir); err != nil {
		return nil, fmt.Errorf("pglocal: copying base backup %s: %w", opts.BaseBackup, err)
	}
	// A backup of a standby carries standby.signal: this is a restore,
	// not a new standby.
	_ = os.Remove(filepath.Join(s.DataDir, "standby.signal"))
	conf := []string{
		"# written by pglocal.Restore",
		"restore_command = 'cp " + opts.ArchiveDir + "/%f %p'",
		"recovery_target_action = 'promote'",
		"recovery_target_timeline = 'latest'",
		"archive_mode = off",
		"synchronous_standby_names = ''",
		"primary_conninfo = ''",
	}
	if !opts.TargetTime.IsZero() {
		conf = append(conf, "recovery_target_time = '"+opts.TargetTime.UTC().Format("2006-01-02 15:04:05.999999")+"+00'")
	}
	if err := appendFile(filepath.Join(s.DataDir, "postgresql.auto.conf"), strings.Join(conf, "\n")+"\n"); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(s.DataDir, "recovery.signal"), nil, 0o600); err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	if err := os.Chmod(s.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	if err := acct.own(opts.Dir); err != nil {
		return nil, err
	}
	// The archive is read by restore_command, run as the server account.
	if err := acct.own(opts.ArchiveDir); err != nil {
		return nil, err
	}
	if err := startOnFreePort(ctx, s); err != nil {
		return nil, err
	}
	// With hot_standby the server answers before recovery ends: wait for
	// the promotion that recovery_target_action asks for.
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		inRecovery, err := s.inRecovery(ctx)
		if err == nil && !inRecovery {
			s.logf("pglocal: %s restored from %s (target %v)", s.Name, opts.BaseBackup, targetString(opts.TargetTime))
			return s, nil
		}
		select {
		case <-ctx.Done():
			s.Stop()
			return nil, s.failure("did not finish recovery", fmt.Errorf("%w (last error %v)", ctx.Err(), err))
		case <-time.After(50 * time.Millisecond):
		}
		if !s.Running() {
			s.Stop()
			return nil, s.failure("stopped during recovery", nil)
		}
	}
}

func targetString(t time.Time) string {
	if t.IsZero() {
		return "end of WAL"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// copyTree copies the regular files, directories and symlinks under src
// into dst (created), keeping permission bits.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			return copyFile(p, target, info.Mode().Perm())
		default:
			return fmt.Errorf("%s: not a regular file, directory or symlink", p)
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ErrNoBackup is returned by Retain when backupsDir holds no complete
// base backup: it then removes nothing, since without a base backup the
// archive is the only copy of the data.
var ErrNoBackup = errors.New("pglocal: no complete base backup")

// Backup is one complete base backup in a backups directory.
type Backup struct {
	Dir       string
	Start     time.Time // START TIME of its backup_label
	StartWAL  string    // the first WAL segment it needs (START WAL LOCATION's file)
	Timeline  string
	LabelText string // its backup_label, as written by the server
}

// Backups lists the complete base backups directly under backupsDir
// (those with a backup_label and a backup_manifest: pg_basebackup writes
// the manifest last), oldest first. Other entries are ignored.
func Backups(backupsDir string) ([]Backup, error) {
	entries, err := os.ReadDir(backupsDir)
	if err != nil {
		return nil, fmt.Errorf("pglocal: backups directory: %w", err)
	}
	var list []Backup
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(backupsDir, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "backup_manifest")); err != nil {
			continue
		}
		b, err := readBackupLabel(dir)
		if err != nil {
			return nil, err
		}
		list = append(list, b)
	}
	// START TIME has whole seconds: two backups in one second are ordered
	// by where their WAL begins (the segment number, timeline aside).
	sort.Slice(list, func(i, j int) bool {
		if !list[i].Start.Equal(list[j].Start) {
			return list[i].Start.Before(list[j].Start)
		}
		return list[i].StartWAL[8:] < list[j].StartWAL[8:]
	})
	return list, nil
}

func readBackupLabel(dir string) (Backup, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "backup_label"))
	if err != nil {
		return Backup{}, fmt.Errorf("pglocal: %s has a manifest but no backup_label (a tar-format backup? only plain format is supported): %w", dir, err)
	}
	b := Backup{Dir: dir, LabelText: string(raw)}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		switch key {
		case "START WAL LOCATION":
			// "0/2000028 (file 000000010000000000000002)"
			if _, f, ok := strings.Cut(val, "(file "); ok {
				b.StartWAL = strings.TrimSuffix(f, ")")
			}
		case "START TIME":
			// "2026-12-07 02:30:00 UTC"
			t, err := time.Parse("2006-01-02 15:04:05 MST", val)
			if err != nil {
				return Backup{}, fmt.Errorf("pglocal: %s/backup_label: START TIME %q: %w", dir, val, err)
			}
			b.Start = t
		case "START TIMELINE":
			b.Timeline = val
		}
	}
	if len(b.StartWAL) != 24 || b.Start.IsZero() {
		return Backup{}, fmt.Errorf("pglocal: %s/backup_label: no START WAL LOCATION or START TIME", dir)
	}
	return b, nil
}

// Retain keeps the newest keepFull complete base backups under backupsDir
// (Backups), removes the older ones, and removes from archiveDir every WAL
// segment older than the oldest kept backup's first segment
// (pg_archivecleanup): what remains restores to any moment since that
// backup began. With no complete backup it removes nothing and returns
// ErrNoBackup.
func Retain(archiveDir, backupsDir string, keepFull int) error {
	if keepFull < 1 {
		return fmt.Errorf("pglocal: Retain: keepFull is %d; at least 1 base backup must be kept", keepFull)
	}
	list, err := Backups(backupsDir)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		return fmt.Errorf("%w in %s: nothing removed from %s", ErrNoBackup, backupsDir, archiveDir)
	}
	if len(list) > keepFull {
		for _, b := range list[:len(list)-keepFull] {
			if err := os.RemoveAll(b.Dir); err != nil {
				return fmt.Errorf("pglocal: removing old base backup: %w", err)
			}
		}
		list = list[len(list)-keepFull:]
	}
	bin, err := Bin("pg_archivecleanup")
	if err != nil {
		return err
	}
	out, err := runAs(context.Background(), account{}, bin, archiveDir, list[0].StartWAL)
	if err != nil {
		return fmt.Errorf("pglocal: pg_archivecleanup %s %s: %w\n%s", archiveDir, list[0].StartWAL, err, out)
	}
	return nil
}
