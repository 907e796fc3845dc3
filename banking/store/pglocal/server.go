package pglocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// User is the database superuser every server is initialised with
// (initdb -U keyward); connections from loopback need no password.
const User = "keyward"

// Server is one PostgreSQL server (postmaster) on a data directory of its
// own, listening on 127.0.0.1:Port and on a unix socket in SocketDir.
type Server struct {
	Name    string // "primary", "standby1", "restored", …: also its log file's name
	Port    int
	DataDir string
	// SocketDir holds the server's unix socket (.s.PGSQL.<Port>): the
	// parent of the data directory, never /var/run.
	SocketDir string
	LogFile   string

	acct account
	logf func(string, ...any)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
}

// DSN is a libpq URL for database dbname on this server alone: user
// keyward over TCP on loopback, no TLS, no password.
func (s *Server) DSN(dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(User),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable&connect_timeout=5",
	}
	return u.String()
}

// Start starts the server on its data directory (after Kill or Stop, or
// the first time) and returns when it accepts connections. A primary
// restarted after Kill runs crash recovery first; a standby resumes
// streaming from its primary.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("pglocal: %s is already running (pid %d)", s.Name, s.cmd.Process.Pid)
	}
	return s.startLocked(ctx)
}

func (s *Server) startLocked(ctx context.Context) error {
	bin, err := Bin("postgres")
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pglocal: %s: opening its log: %w", s.Name, err)
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "---- pglocal: starting %s on port %d at %s\n", s.Name, s.Port, time.Now().UTC().Format(time.RFC3339Nano))
	// postgres directly, not pg_ctl: the postmaster is our child, in a
	// process group of its own (a ^C at the terminal reaches the test, not
	// the server), and dies with the test process (Pdeathsig) instead of
	// lingering as an orphan; its backends exit when it dies.
	cmd := exec.Command(bin, "-D", s.DataDir, "-p", strconv.Itoa(s.Port), "-k", s.SocketDir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = serverEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: s.acct.cred}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pglocal: %s: starting %s: %w", s.Name, bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	if err := s.waitReady(ctx, done); err != nil {
		s.killLocked()
		return err
	}
	s.logf("pglocal: %s up on 127.0.0.1:%d (pid %d, data %s)", s.Name, s.Port, cmd.Process.Pid, s.DataDir)
	return nil
}

// startTimeout bounds how long Start waits for a server to accept
// connections (crash recovery of a small test database takes well under
// a second; a standby catching up a few segments, a few seconds).
const startTimeout = 90 * time.Second

// waitReady polls with a real connection until the server answers a
// query, the postmaster exits, or startTimeout passes.
func (s *Server) waitReady(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, s.DSN("postgres"))
		if err == nil {
			var one int
			err = conn.QueryRow(cctx, "SELECT 1").Scan(&one)
			_ = conn.Close(cctx)
		}
		ccancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return s.failure("exited while starting", nil)
		case <-ctx.Done():
			return s.failure("did not accept connections", fmt.Errorf("%w (last: %v)", ctx.Err(), err))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ErrServer is wrapped by every error about a server that failed to
// start or to do what was asked; the message carries the tail of the
// server's log, which says why.
var ErrServer = errors.New("pglocal: server failed")

func (s *Server) failure(what string, cause error) error {
	msg := fmt.Sprintf("%s (port %d, data %s) %s", s.Name, s.Port, s.DataDir, what)
	if cause != nil {
		return fmt.Errorf("%w: %s: %w\n--- last lines of %s ---\n%s", ErrServer, msg, cause, s.LogFile, logTail(s.LogFile, 20))
	}
	return fmt.Errorf("%w: %s\n--- last lines of %s ---\n%s", ErrServer, msg, s.LogFile, logTail(s.LogFile, 20))
}

// logTail returns the last n lines of a log file.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Running reports whether the server's postmaster is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// PID is the postmaster's process id, 0 when it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Kill crashes the server: SIGKILL to the postmaster and every process it
// started, at once, with no shutdown checkpoint, as a power loss or kernel
// panic of its machine would. What a client saw
// acknowledged is on disk (fsync is on); Start runs crash recovery.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	killTree(s.cmd.Process.Pid, 10*time.Second)
	<-s.done
	s.cmd, s.done = nil, nil
	s.logf("pglocal: %s killed (SIGKILL)", s.Name)
}

// Stop shuts the server down cleanly (SIGINT: PostgreSQL's fast
// shutdown, a shutdown checkpoint and, on a primary, every WAL record
// sent to connected standbys), or kills it after 30 s.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done: // the postmaster exits after every other server process
		s.cmd, s.done = nil, nil
		s.logf("pglocal: %s stopped", s.Name)
	case <-time.After(30 * time.Second):
		s.logf("pglocal: %s did not stop within 30 s: killing it", s.Name)
		s.killLocked()
	}
}

// Promote makes a standby a primary (pg_ctl promote) and returns when it
// accepts writes: pg_is_in_recovery() is false. This is what an operator,
// or a failover manager such as Patroni, does after losing the primary.
//
// The old primary must not be started again as it is: it would be a
// second writable server on a diverged history, and a multi-host DSN
// naming it first would reach it. Rebuild it as a standby of the new
// primary (pg_basebackup, or pg_rewind) instead.
func (s *Server) Promote(ctx context.Context) error {
	bin, err := Bin("pg_ctl")
	if err != nil {
		return err
	}
	if out, err := s.run(ctx, bin, "promote", "--no-wait", "-D", s.DataDir); err != nil {
		return s.failure("could not be promoted", fmt.Errorf("pg_ctl promote: %w: %s", err, out))
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		inRecovery, err := s.inRecovery(ctx)
		if err == nil && !inRecovery {
			s.logf("pglocal: %s promoted", s.Name)
			return nil
		}
		select {
		case <-ctx.Done():
			return s.failure("was not promoted", fmt.Errorf("%w (in recovery: %v, last error: %v)", ctx.Err(), inRecovery, err))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) inRecovery(ctx context.Context) (bool, error) {
	var r bool
	err := s.withConn(ctx, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&r)
	})
	return r, err
}

// withConn runs fn on a fresh connection to the server's postgres database.
func (s *Server) withConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.Connect(cctx, s.DSN("postgres"))
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(conn)
}

// run runs a PostgreSQL program as the server account and returns its
// combined output.
func (s *Server) run(ctx context.Context, bin string, args ...string) (string, error) {
	return runAs(ctx, s.acct, bin, args...)
}

func runAs(ctx context.Context, acct account, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = serverEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: acct.cred}
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// serverEnv is the environment of every PostgreSQL program pglocal runs:
// the caller's PATH, the C locale, and no PG* variable of the caller's
// (PGHOST, PGPORT, … would redirect the client programs).
func serverEnv() []string {
	env := []string{"LC_ALL=C", "LANG=C", "TZ=UTC"}
	if p := os.Getenv("PATH"); p != "" {
		env = append(env, "PATH="+p)
	}
	return env
}

// socketDirFor is where a server whose data directory is dataDir keeps
// its unix socket.
func socketDirFor(dataDir string) string { return filepath.Dir(dataDir) }
