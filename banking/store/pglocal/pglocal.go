// Package pglocal runs real PostgreSQL servers on loopback, in a
// directory of the caller's: for the tests of banking's PostgreSQL store
// (banking/store/pgstore), its failover and restore drills, and a
// developer's machine. It is not how a bank runs PostgreSQL (its DBAs run
// their own, the README's "Backups and the restore drill"); it is how a test gets a primary, a
// synchronous standby and a WAL archive in seconds, with the server
// programs the bank runs (Debian's PostgreSQL 15 here).
//
// # The programs
//
// Bin finds initdb, postgres, pg_ctl, pg_basebackup and pg_archivecleanup:
// in KEYWARD_PG_BIN when set, else in /usr/lib/postgresql/<N>/bin for the
// highest installed N (Debian's layout), else on PATH. scripts/deps.sh
// installs Debian's postgresql package; it never starts the system
// cluster, and pglocal never touches it.
//
// # A cluster
//
// Start initialises a data directory under Options.Dir (initdb -U keyward,
// UTF8, C locale, 1 MB WAL segments so archives stay small), lets user
// keyward in without a password from 127.0.0.1 and the unix socket only
// (pg_hba.conf), and starts the server on a free loopback port with its
// socket in Options.Dir (never /var/run). fsync is on: a test that kills a
// server (Kill: SIGKILL to the whole server, as a machine crash) and looks
// for acknowledged commits afterwards is testing what a bank would get.
// Every server logs to Dir/<name>.log; an error about a server that failed
// carries the tail of that log.
//
// With Options.Standby, Start makes a synchronous standby (Dir/standby1):
// pg_basebackup -R from the primary through a replication slot
// ("standby1"), then on the primary synchronous_standby_names =
// 'FIRST 1 (standby1)' and synchronous_commit = on, so a commit is
// acknowledged only when the standby has flushed it (RPO 0). Start returns
// when pg_stat_replication shows the standby as sync. Cluster.DSN is the
// multi-host URL a client uses to find the writable server after a
// failover (target_session_attrs=read-write); Server.Promote is the
// failover an operator does.
//
// # What a client sees
//
// With the standby down, a commit on the primary waits: it is not
// acknowledged and no other session sees it (TestCommitWaitsForStandby),
// and it completes when the standby is back. A wait that is cancelled —
// pg_cancel_backend, or the cancel request a client sends when its context
// ends (pgx does) — ends with the transaction committed on the primary
// and visible to everyone, not on the standby, and with success (and a
// WARNING) or the client's own context error as the answer
// (TestCancelledSyncWaitCommitsLocally; PostgreSQL documents it).
// statement_timeout does not end the wait. So a store on this cluster
// must not cancel a COMMIT because a request's deadline passed, and must
// treat an error from COMMIT as an unknown outcome, never as "not done".
//
// With Options.ArchiveDir, the primary archives every completed WAL
// segment there (archive_mode = on; an atomic, fsynced copy that refuses
// to overwrite a different segment of the same name; archive_timeout 5 s),
// and BaseBackup, Restore and Retain give the weekly-full plus
// continuous-WAL backup scheme of the README's "Backups and the restore drill", with point-in-time
// recovery.
//
// # Running as root
//
// initdb and postgres refuse to run as root. When the caller is root (CI
// here), every server program runs as the unprivileged `postgres` user
// (else `nobody`) through SysProcAttr.Credential; pglocal gives that user
// the directories it is handed (Dir, ArchiveDir, a backup's directory) and
// adds the search (x) bit for others to their ancestors that lack it, so
// the server can reach them inside a 0700 test temporary directory.
//
// # Processes
//
// The postmaster is started directly (not through pg_ctl) as a child of
// the caller, in a process group of its own, with Pdeathsig: it dies with
// the test process and leaves no orphan. Stop (fast shutdown) and Kill
// end it; Cluster.Stop ends every server.
//
// # Limitations
//
// One standby; no TLS between client and server or between the servers
// (loopback only); trust authentication. None of this is a production
// configuration.
package pglocal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options configure Start.
type Options struct {
	// Dir holds everything: the data directories (Dir/primary,
	// Dir/standby1), their logs and unix sockets. It is created if
	// missing; a short path keeps the socket path under the kernel's 107
	// bytes.
	Dir string
	// Standby adds a synchronous standby streaming from the primary.
	Standby bool
	// ArchiveDir, when set, turns on WAL archiving into it (created if
	// missing).
	ArchiveDir string
	// Logf receives one line per server event (start, kill, promotion);
	// nil discards them. t.Logf fits.
	Logf func(string, ...any)
}

// Cluster is a primary and, with Options.Standby, its synchronous standby.
type Cluster struct {
	Primary *Server
	Standby *Server // nil without Options.Standby

	opts Options
	acct account
}

// StandbyName is the standby's application_name and replication slot: what
// the primary's synchronous_standby_names names.
const StandbyName = "standby1"

// Start starts a primary (and a synchronous standby with opts.Standby) in
// opts.Dir and returns when both accept connections and, with a standby,
// when the primary reports it as a synchronous standby. On error nothing
// is left running. Call Stop when done (t.Cleanup(c.Stop)).
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Dir == "" {
		return nil, errors.New("pglocal: Options.Dir is required")
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	if len(dir)+len("/.s.PGSQL.65535") > 107 {
		return nil, fmt.Errorf("pglocal: Options.Dir %s is too long for a unix socket path (%d bytes, at most %d): use a shorter directory",
			dir, len(dir), 107-len("/.s.PGSQL.65535"))
	}
	if opts.ArchiveDir != "" {
		if opts.ArchiveDir, err = filepath.Abs(opts.ArchiveDir); err != nil {
			return nil, err
		}
	}
	acct, err := serverAccount()
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, acct: acct}
	if err := c.start(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	for _, name := range []string{"initdb", "postgres", "pg_ctl"} {
		if _, err := Bin(name); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(c.opts.Dir, 0o700); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if err := c.acct.own(c.opts.Dir); err != nil {
		return err
	}
	if c.opts.ArchiveDir != "" {
		if err := os.MkdirAll(c.opts.ArchiveDir, 0o700); err != nil {
			return fmt.Errorf("pglocal: archive directory: %w", err)
		}
		if err := c.acct.own(c.opts.ArchiveDir); err != nil {
			return err
		}
	}
	c.Primary = c.newServer("primary", filepath.Join(c.opts.Dir, "primary"))
	if err := c.initdb(ctx, c.Primary); err != nil {
		return err
	}
	if err := startOnFreePort(ctx, c.Primary); err != nil {
		return err
	}
	if c.opts.Standby {
		if err := c.startStandby(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) newServer(name, dataDir string) *Server {
	return newServer(name, dataDir, c.acct, c.opts.Logf)
}

func newServer(name, dataDir string, acct account, logf func(string, ...any)) *Server {
	return &Server{
		Name:      name,
		DataDir:   dataDir,
		SocketDir: socketDirFor(dataDir),
		LogFile:   filepath.Join(socketDirFor(dataDir), name+".log"),
		acct:      acct,
		logf:      logf,
	}
}

// initdb creates the primary's data directory and writes its
// configuration.
func (c *Cluster) initdb(ctx context.Context, s *Server) error {
	bin, err := Bin("initdb")
	if err != nil {
		return err
	}
	// --no-sync: initdb's own files need not survive a machine crash in a
	// test; the server's fsync (below) is on.
	out, err := runAs(ctx, c.acct, bin, "-D", s.DataDir, "-U", User, "-E", "UTF8", "--locale=C",
		"--auth=trust", "--wal-segsize=1", "--no-sync", "--no-instructions")
	if err != nil {
		return fmt.Errorf("%w: initdb %s: %w\n%s", ErrServer, s.DataDir, err, out)
	}
	conf := []string{
		"# written by pglocal (banking/store/pglocal): a test server, not a production configuration",
		"listen_addresses = '127.0.0.1'",
		"fsync = on",
		"synchronous_commit = on",
		"full_page_writes = on",
		"shared_buffers = 32MB",
		"max_connections = 250",
		"wal_level = replica",
		"max_wal_senders = 10",
		"max_replication_slots = 10",
		"hot_standby = on",
		"wal_receiver_status_interval = 1s",
		"logging_collector = off",
		"log_line_prefix = '%m [%p] %q%a '",
		"log_timezone = 'UTC'",
		"timezone = 'UTC'",
	}
	if c.opts.ArchiveDir != "" {
		cmd, err := archiveCommand(c.opts.ArchiveDir)
		if err != nil {
			return err
		}
		conf = append(conf,
			"archive_mode = on",
			"archive_command = '"+cmd+"'",
			"archive_timeout = 5s",
		)
	}
	if err := appendFile(filepath.Join(s.DataDir, "postgresql.conf"), strings.Join(conf, "\n")+"\n"); err != nil {
		return err
	}
	// Loopback and the unix socket only, user keyward or any (tests make
	// their own roles), no password: initdb's --auth=trust would also let
	// in ::1, which nothing here listens on.
	hba := strings.Join([]string{
		"# written by pglocal: trust on loopback only",
		"local   all          all                 trust",
		"host    all          all   127.0.0.1/32  trust",
		"local   replication  all                 trust",
		"host    replication  all   127.0.0.1/32  trust",
	}, "\n") + "\n"
	return os.WriteFile(filepath.Join(s.DataDir, "pg_hba.conf"), []byte(hba), 0o600)
}

// archiveCommand is the shell command the server runs for each completed
// WAL segment: copy it into dir under a temporary name, fsync it, rename
// it into place; a segment already there succeeds only if it is the same
// file (a retry after a crash between copy and the server's bookkeeping),
// never by overwriting.
func archiveCommand(dir string) (string, error) {
	if err := shellSafe(dir); err != nil {
		return "", err
	}
	return fmt.Sprintf(`if test -f %[1]s/%%f; then cmp -s %%p %[1]s/%%f; else cp %%p %[1]s/%%f.tmp && sync %[1]s/%%f.tmp && mv %[1]s/%%f.tmp %[1]s/%%f; fi`, dir), nil
}

// shellSafe refuses an archive directory whose path would need quoting in
// the shell commands archive_command and restore_command are: letters,
// digits and / . _ + - only.
func shellSafe(dir string) error {
	for _, r := range dir {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._+-", r)) {
			return fmt.Errorf("pglocal: archive directory %q: it goes into a shell command, so only letters, digits and / . _ + - are allowed (not %q)", dir, r)
		}
	}
	return nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("pglocal: %w", err)
	}
	return f.Close()
}

// startOnFreePort starts s on a free loopback port, trying another when
// the port was taken between choosing it and the server binding it.
func startOnFreePort(ctx context.Context, s *Server) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if s.Port, err = freePort(); err != nil {
			return err
		}
		if err = s.Start(ctx); err == nil || !strings.Contains(err.Error(), "could not bind") && !strings.Contains(err.Error(), "could not create any TCP/IP sockets") {
			return err
		}
		s.logf("pglocal: %s: port %d was taken, trying another", s.Name, s.Port)
	}
	return err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pglocal: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// DSN is the multi-host libpq URL for database dbname over the primary and
// the standby, with target_session_attrs=read-write: a client connects to
// whichever of them accepts writes, so the same URL finds the promoted
// standby after a failover. Without a standby it names the primary alone.
func (c *Cluster) DSN(dbname string) string {
	hosts := []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Primary.Port))}
	if c.Standby != nil {
		hosts = append(hosts, net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Standby.Port)))
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(User),
		Host:     strings.Join(hosts, ","),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable&connect_timeout=5&target_session_attrs=read-write",
	}
	return u.String()
}

// CreateDatabase creates database name (owned by keyward) on the primary;
// with a standby it is replicated like any other write.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	err := c.Primary.withConn(ctx, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		return err
	})
	if err != nil {
		return fmt.Errorf("pglocal: creating database %q: %w", name, err)
	}
	return nil
}

// Stop stops every server of the cluster (standby first). It may be
// called more than once.
func (c *Cluster) Stop() {
	if c.Standby != nil {
		c.Standby.Stop()
	}
	if c.Primary != nil {
		c.Primary.Stop()
	}
}

// startStandby makes Dir/standby1 a copy of the primary and starts it as a
// synchronous standby.
func (c *Cluster) startStandby(ctx context.Context) error {
	bin, err := Bin("pg_basebackup")
	if err != nil {
		return err
	}
	s := c.newServer(StandbyName, filepath.Join(c.opts.Dir, StandbyName))
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=%s application_name=%s", c.Primary.Port, User, StandbyName)
	// -R: standby.signal and primary_conninfo; -C -S: a replication slot,
	// so the primary keeps every WAL segment the standby has not received.
	out, err := runAs(ctx, c.acct, bin, "-d", conninfo, "-D", s.DataDir, "-X", "stream", "-c", "fast",
		"-R", "-C", "-S", StandbyName, "--no-sync")
	if err != nil {
		return fmt.Errorf("%w: pg_basebackup for the standby: %w\n%s", ErrServer, err, out)
	}
	// Said again after -R's lines, so application_name is certain to be
	// what synchronous_standby_names names.
	if err := appendFile(filepath.Join(s.DataDir, "postgresql.auto.conf"),
		fmt.Sprintf("primary_conninfo = '%s'\nprimary_slot_name = '%s'\n", conninfo, StandbyName)); err != nil {
		return err
	}
	c.Standby = s
	if err := startOnFreePort(ctx, s); err != nil {
		return err
	}
	// Only now, and only on the primary: a standby copied from a primary
	// that already waited for a synchronous standby would, once promoted,
	// wait for one too and hang every commit.
	err = c.Primary.withConn(ctx, func(conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, "ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 ("+StandbyName+")'"); err != nil {
			return err
		}
		_, err := conn.Exec(ctx, "SELECT pg_reload_conf()")
		return err
	})
	if err != nil {
		return fmt.Errorf("pglocal: making %s synchronous: %w", StandbyName, err)
	}
	return c.waitSync(ctx)
}

// waitSync returns when the primary reports the standby as a synchronous
// standby in pg_stat_replication.
func (c *Cluster) waitSync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var state string
	for {
		err := c.Primary.withConn(ctx, func(conn *pgx.Conn) error {
			return conn.QueryRow(ctx,
				"SELECT coalesce(max(sync_state), '') FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'",
				StandbyName).Scan(&state)
		})
		if err == nil && state == "sync" {
			c.opts.Logf("pglocal: %s is the primary's synchronous standby", StandbyName)
			return nil
		}
		select {
		case <-ctx.Done():
			return c.Standby.failure("did not become a synchronous standby",
				fmt.Errorf("%w (sync_state %q, last error: %v)", ctx.Err(), state, err))
		case <-time.After(50 * time.Millisecond):
		}
	}
}
