// Command runbankpg is `make run-banking-pg`: banking on PostgreSQL for a
// developer (issue 17): a primary, its synchronous standby and a WAL
// archive, and two stateless banking nodes sharing them. It is not how a
// bank runs PostgreSQL (README, "banking on PostgreSQL: operators"; its
// DBAs run their own); nothing here is linked into cmd/banking.
//
// It needs keysvc's dev mode running (make run, in another terminal), as
// make run-banking does, and starts:
//
//   - under <data-dir>/pg, FRESH AT EVERY START (the directory is removed
//     first; the bank's records of a previous run are gone): a PostgreSQL
//     primary and a synchronous standby (banking/store/pglocal: initdb,
//     pg_basebackup, synchronous_standby_names = 'FIRST 1 (standby1)') on
//     free loopback ports, archiving WAL to pg/archive, with the database
//     "bank";
//   - two banking nodes, bin/banking -dev -store-url <multi-host URL>, on
//     https://127.0.0.1:8445 (node-a) and https://127.0.0.1:8446 (node-b),
//     sharing <data-dir>/bank (dev CA, staff tokens, screening list) and the
//     database; logs in pg/run/node-a.log and node-b.log.
//
// It prints the URLs, the database URL, the ports and the pid files under
// pg/run (to kill -9 the primary or a node), and a status line whenever
// something changes: which server is primary, the synchronous standby's
// state (pg_stat_replication) and each node's /healthz. Every SMS a node
// sends (dev mode prints it) is repeated here with the node's name.
//
// Enter in its terminal promotes the standby once the primary is down (the
// failover an operator or Patroni does; refused while the primary runs,
// which would make two writable servers) and starts again a banking node
// that was killed. The printed pg_ctl command does the same promotion from
// another terminal. Ctrl-C (or SIGTERM) stops the nodes (gracefully, 15 s
// at most), then the servers.
//
// A second run-banking-pg on the same data directory is refused while the
// first runs: it holds an exclusive lock on <data-dir>/pg.lock.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/banking/store/pglocal"
	"github.com/keyward/keyward/cmd/internal/devproc"
)

// The banking nodes' fixed ports, so the printed commands stay right.
var nodePorts = []int{8445, 8446}

// dbName is the database the nodes share.
const dbName = "bank"

func main() {
	dataDir := flag.String("data-dir", "var", "data directory: PostgreSQL in <data-dir>/pg (fresh each start), the bank's dev files in <data-dir>/bank, keysvc's dev mode in <data-dir>")
	bankingBin := flag.String("banking", "bin/banking", "the banking binary")
	flag.Parse()
	if err := run(*dataDir, *bankingBin); err != nil {
		fmt.Fprintln(os.Stderr, "run-banking-pg:", err)
		os.Exit(1)
	}
}

// env is what run starts.
type env struct {
	dataDir, pgDir, runDir, bin string
	db                          *pglocal.Cluster
	dsn                         string
	nodes                       []*node
	hc                          *http.Client
}

type node struct {
	devproc.Node
	addr string
}

func run(dataDir, bin string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e, err := newEnv(dataDir, bin)
	if err != nil {
		return err
	}
	for _, p := range []string{filepath.Join(dataDir, "dev-admin.token"), filepath.Join(dataDir, "tls", "ca.pem")} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("keysvc's dev mode is not set up in %s (%v): run `make run` in another terminal first", dataDir, err)
		}
	}
	unlock, err := lockRun(filepath.Join(e.dataDir, "pg.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if err := e.startDB(ctx, os.Stdout); err != nil {
		return err
	}
	defer e.db.Stop()
	defer e.stopNodes()
	for i := range nodePorts {
		n := e.newNode(i)
		e.nodes = append(e.nodes, n)
		if err := e.startNode(ctx, n); err != nil {
			return err
		}
	}
	e.print(os.Stdout)
	last := e.status(ctx)
	fmt.Println(last)
	lines := devproc.Lines(os.Stdin) // Enter: promote the standby when the primary is down; restart killed nodes
	for {
		select {
		case <-ctx.Done():
			fmt.Println("\nstopping the banking nodes, then PostgreSQL ...")
			return nil
		case <-lines:
			e.enter(ctx)
			last = e.status(ctx)
			fmt.Println(last)
		case <-time.After(2 * time.Second):
		}
		e.reap()
		if s := e.status(ctx); s != last {
			last = s
			fmt.Println(s)
		}
	}
}

func newEnv(dataDir, bin string) (*env, error) {
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	bin, err = filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("banking binary: %w (make run-banking-pg builds it)", err)
	}
	pgDir := filepath.Join(dir, "pg")
	return &env{dataDir: dir, pgDir: pgDir, runDir: filepath.Join(pgDir, "run"), bin: bin}, nil
}

// errInUse is the refusal to start over a running instance's directory.
var errInUse = errors.New("in use")

// lockRun takes an exclusive, non-blocking lock on path and writes this
// process's pid in it; another holder (a running run-banking-pg) is a
// refusal naming its pid. The lock file lives beside pg/, which is removed
// at every start, so the lock outlives the removal.
func lockRun(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := io.ReadAll(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by a running make run-banking-pg (pid %s); stop it (Ctrl-C in its terminal) first: each start wipes %s",
				errInUse, path, strings.TrimSpace(string(b)), filepath.Join(filepath.Dir(path), "pg"))
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}

// startDB removes pg/ and starts the primary, the synchronous standby and
// the WAL archive in it, with the database the nodes use.
func (e *env) startDB(ctx context.Context, out io.Writer) error {
	if _, err := os.Stat(e.pgDir); err == nil {
		fmt.Fprintf(out, "removing %s: run-banking-pg starts a fresh PostgreSQL every time\n", e.pgDir)
		if err := os.RemoveAll(e.pgDir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(e.runDir, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(out, "starting PostgreSQL: a primary and a synchronous standby in %s ...\n", e.pgDir)
	c, err := pglocal.Start(ctx, pglocal.Options{Dir: e.pgDir, Standby: true, ArchiveDir: filepath.Join(e.pgDir, "archive"),
		Logf: func(f string, a ...any) { fmt.Fprintf(out, f+"\n", a...) }})
	if err != nil {
		return err
	}
	if err := c.CreateDatabase(ctx, dbName); err != nil {
		c.Stop()
		return err
	}
	e.db, e.dsn = c, c.DSN(dbName)
	for _, s := range []*pglocal.Server{c.Primary, c.Standby} {
		if err := devproc.WritePID(e.pidPath(s.Name), s.PID(), 0o644); err != nil {
			c.Stop()
			return err
		}
	}
	return nil
}

func (e *env) pidPath(name string) string { return filepath.Join(e.runDir, name+".pid") }

// newNode is banking node i (not started).
func (e *env) newNode(i int) *node {
	name := "node-" + string(rune('a'+i))
	// Its own process group: a ^C here reaches run-banking-pg, which stops
	// the nodes before PostgreSQL (Pdeathsig: no orphan if it dies).
	return &node{addr: "127.0.0.1:" + strconv.Itoa(nodePorts[i]), Node: devproc.Node{Name: name, Log: filepath.Join(e.runDir, name+".log"),
		PIDFile: e.pidPath(name), PIDMode: 0o644, Setpgid: true,
		Stdout: func(log io.Writer) io.Writer { return &smsTee{log: log, out: os.Stdout, prefix: name + ": "} }}}
}

// nodeArgs is node n's command line: dev mode on keysvc's dev instance,
// the shared bank data dir, its own address, the shared database.
func (e *env) nodeArgs(n *node) []string {
	return []string{"-dev", "-keysvc-dir", e.dataDir, "-data-dir", filepath.Join(e.dataDir, "bank"), "-listen", n.addr, "-store-url", e.dsn}
}

// startNode starts n and waits until its /healthz answers 200 (60 s at
// most: the first node may create the bank keys in keysvc).
func (e *env) startNode(ctx context.Context, n *node) error {
	if err := n.Start(e.bin, e.nodeArgs(n)...); err != nil {
		return err
	}
	fmt.Printf("starting banking %s on https://%s (log %s) ...\n", n.Name, n.addr, n.Log)
	err := n.WaitReady(ctx, 200*time.Millisecond, 60*time.Second, func() bool {
		// The first node makes the bank's dev CA: read it once it is there.
		hc, err := e.client()
		return err == nil && healthz(hc, n.addr) == "200"
	})
	var exit *devproc.ExitError
	switch {
	case errors.As(err, &exit):
		return fmt.Errorf("banking %w (see %s; is `make run` running?)", err, n.Log)
	case errors.Is(err, devproc.ErrNotReady):
		return fmt.Errorf("banking %s not answering after 60 s (see %s)", n.Name, n.Log)
	}
	return err
}

// smsTee writes a node's standard output to its log and repeats the dev
// SMS lines (which hold the code, as dev mode's console does) on out.
type smsTee struct {
	log, out io.Writer
	prefix   string
	mu       sync.Mutex
	partial  []byte
}

func (t *smsTee) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.log.Write(p); err != nil {
		return 0, err
	}
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		if line := t.partial[:i]; bytes.Contains(line, []byte("[dev] SMS to ")) {
			fmt.Fprintf(t.out, "%s%s\n", t.prefix, bytes.TrimSpace(line))
		}
		t.partial = t.partial[i+1:]
	}
	return len(p), nil
}

func (e *env) client() (*http.Client, error) {
	if e.hc != nil {
		return e.hc, nil
	}
	pem, err := os.ReadFile(filepath.Join(e.dataDir, "bank", "tls", "ca.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	e.hc = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	return e.hc, nil
}

// healthz is the status code of GET /healthz on addr, or "no answer".
func healthz(hc *http.Client, addr string) string {
	resp, err := hc.Get("https://" + addr + "/healthz")
	if err != nil {
		return "no answer"
	}
	resp.Body.Close()
	return strconv.Itoa(resp.StatusCode)
}

// serverRole is "down", "primary", "standby" or "no answer".
func serverRole(ctx context.Context, s *pglocal.Server) string {
	if !s.Running() {
		return "down"
	}
	var inRecovery bool
	if err := query(ctx, s, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
	}); err != nil {
		return "no answer"
	}
	if inRecovery {
		return "standby"
	}
	return "primary"
}

// replication is what a primary's pg_stat_replication says of its
// standbys ("standby1 streaming sync") and, with none connected, whether
// commits wait for one (synchronous_standby_names set, as on the first
// primary) or are acknowledged by this server alone (a promoted standby:
// RPO 0 no longer holds until a new standby follows it).
func replication(ctx context.Context, s *pglocal.Server) string {
	var rows []string
	var syncNames string
	err := query(ctx, s, func(c *pgx.Conn) error {
		if err := c.QueryRow(ctx, "SHOW synchronous_standby_names").Scan(&syncNames); err != nil {
			return err
		}
		r, err := c.Query(ctx, "SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY application_name")
		if err != nil {
			return err
		}
		defer r.Close()
		for r.Next() {
			var name, state, sync string
			if err := r.Scan(&name, &state, &sync); err != nil {
				return err
			}
			rows = append(rows, name+" "+state+" "+sync)
		}
		return r.Err()
	})
	switch {
	case err != nil:
		return "unknown (" + err.Error() + ")"
	case len(rows) == 0 && syncNames != "":
		return "no standby connected: commits wait for one (synchronous_standby_names = '" + syncNames + "')"
	case len(rows) == 0:
		return "no standby: commits are acknowledged by this server alone (no synchronous_standby_names; RPO 0 needs a new standby)"
	}
	return strings.Join(rows, ", ")
}

func query(ctx context.Context, s *pglocal.Server, fn func(*pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return fn(c)
}

// status is the status line: each server's role, the primary's
// synchronous standby, each node's /healthz.
func (e *env) status(ctx context.Context) string {
	var b strings.Builder
	b.WriteString("status:  postgres")
	var primary *pglocal.Server
	for _, s := range []*pglocal.Server{e.db.Primary, e.db.Standby} {
		role := serverRole(ctx, s)
		if role == "primary" && primary == nil {
			primary = s
		}
		fmt.Fprintf(&b, "  %s :%d (%s)", s.Name, s.Port, role)
	}
	if primary != nil {
		fmt.Fprintf(&b, "\n         replication on %s: %s", primary.Name, replication(ctx, primary))
	} else {
		b.WriteString("\n         no primary: banking answers 503 until one is promoted (press Enter here)")
	}
	b.WriteString("\n         banking")
	hc, err := e.client()
	for _, n := range e.nodes {
		st := "down"
		if n.Running() && err == nil {
			st = "healthz " + healthz(hc, n.addr)
		}
		fmt.Fprintf(&b, "  %s https://%s (%s)", n.Name, n.addr, st)
	}
	return b.String()
}

// enter promotes the standby when the primary is down and starts again
// the banking nodes that were killed.
func (e *env) enter(ctx context.Context) {
	switch p, s := e.db.Primary, e.db.Standby; {
	case serverRole(ctx, s) != "standby":
		// already promoted (here or with pg_ctl), or down
	case p.Running():
		fmt.Printf("the primary (pid %d) still runs: promoting the standby now would make two writable servers; kill it first: kill -9 $(cat %s)\n", p.PID(), e.pidPath(p.Name))
	default:
		fmt.Println("promoting standby1 (pg_ctl promote) ...")
		if err := s.Promote(ctx); err != nil {
			fmt.Println("run-banking-pg:", err)
		} else {
			fmt.Printf("standby1 on port %d is the primary now; the nodes' multi-host URL finds it\n", s.Port)
		}
	}
	for _, n := range e.nodes {
		if !n.Running() {
			if err := e.startNode(ctx, n); err != nil {
				fmt.Println("run-banking-pg:", err)
			}
		}
	}
}

// reap notices a banking node or server that has exited (killed in the
// walk-through) and removes its pid file.
func (e *env) reap() {
	for _, n := range e.nodes {
		if st, ok := n.Reap(); ok {
			fmt.Printf("banking %s exited (%v); press Enter here to start it again\n", n.Name, st)
		}
	}
	for _, s := range []*pglocal.Server{e.db.Primary, e.db.Standby} {
		if !s.Running() {
			if err := os.Remove(e.pidPath(s.Name)); err == nil {
				fmt.Printf("postgres %s (port %d) is down\n", s.Name, s.Port)
			}
		}
	}
}

// stopNodes stops the nodes (SIGTERM: graceful, sessions flushed), and
// kills one that is still there after 15 s (devproc.StopAll).
func (e *env) stopNodes() {
	nodes := make([]*devproc.Node, len(e.nodes))
	for i, n := range e.nodes {
		nodes[i] = &n.Node
	}
	devproc.StopAll(nodes, devproc.Grace)
}

// promoteCommand is the pg_ctl command line that promotes the standby
// from another terminal: as the user the servers run as when this runs as
// root (pglocal: postgres, else nobody).
func promoteCommand(dataDir string) string {
	pgctl, err := pglocal.Bin("pg_ctl")
	if err != nil {
		pgctl = "pg_ctl"
	}
	cmd := pgctl + " promote -D " + dataDir
	if os.Geteuid() == 0 {
		name := "postgres"
		if _, err := user.Lookup(name); err != nil {
			name = "nobody"
		}
		cmd = "runuser -u " + name + " -- " + cmd
	}
	return cmd
}

func (e *env) print(w io.Writer) {
	rel := func(p string) string { // shorter commands when run from the repository
		if wd, err := os.Getwd(); err == nil {
			if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
				return r
			}
		}
		return p
	}
	p, s := e.db.Primary, e.db.Standby
	fmt.Fprintf(w, `
Keyward banking on PostgreSQL (make run-banking-pg) — a fresh database in %[1]s, bank files in %[2]s
  banking:   https://127.0.0.1:%[3]d (node-a)   https://127.0.0.1:%[4]d (node-b)   one database, any node serves any session
  postgres:  primary 127.0.0.1:%[5]d, synchronous standby 127.0.0.1:%[6]d (standby1), WAL archive %[1]s/archive
  database:  %[7]s
  logs:      %[8]s/node-a.log, node-b.log; %[1]s/primary.log, standby1.log
  pids:      %[8]s/primary.pid, standby1.pid, node-a.pid, node-b.pid

Use bankcli as in the README's "Internet banking (banking)" walk-through (node-a is bankcli's default URL);
add -url https://127.0.0.1:%[4]d to any command to send it to node-b. SMS codes appear here.

A failover:
  kill -9 $(cat %[8]s/primary.pid)       the primary dies: transfers fail (503) until a primary is back
  press Enter here                            promotes the standby (or, from another terminal:
                                                %[9]s)
  then transfers go through again: the nodes' multi-host URL finds the new primary.
  kill -9 $(cat %[8]s/node-a.pid)        a banking node dies: node-b serves the same sessions; Enter starts node-a again

Stop everything with Ctrl-C (the database goes with it: the next start is fresh).

`, rel(e.pgDir), rel(filepath.Join(e.dataDir, "bank")), nodePorts[0], nodePorts[1], p.Port, s.Port, e.dsn, rel(e.runDir), promoteCommand(rel(s.DataDir)))
}
