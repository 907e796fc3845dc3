// Package etcdlocal runs a real etcd cluster on loopback: for the tests of
// keysvc's etcd backend and for `make run-cluster`. It is not how a bank
// runs etcd (its operators run their own, README "Running a keysvc
// cluster"); it is how a developer or a test gets one in seconds.
//
// # The binary
//
// The etcd server is the real one, go.etcd.io/etcd/server/v3 at the
// version go.mod pins (a `tool` line), built once with `go build` into the
// user's cache directory (Binary). KEYWARD_ETCD_BIN names another binary
// (etcd 3.5 or later). Debian 12's etcd-server package is 3.4, older than
// the client keysvc links, so it is not used.
//
// # The cluster
//
// Start makes a throwaway CA, a server certificate per member (peer and
// client, for 127.0.0.1) and one client certificate, and starts the
// members with mutual TLS on both the client and the peer ports
// (--client-cert-auth, --peer-client-cert-auth): a client needs the CA and
// the client certificate (ClientTLS, or the PEM files under Dir/tls). Each
// member keeps its data under Dir/<name>; Kill (SIGKILL) and Start again
// reuse it, as an operator's restart would. Stop ends every member.
package etcdlocal

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Version is the etcd server version go.mod pins; Binary builds it.
const Version = "v3.7.4"

var buildMu sync.Mutex

// Binary returns the path of the etcd server binary: KEYWARD_ETCD_BIN if
// set, else the real etcd server (go.etcd.io/etcd/server/v3, the version
// in go.mod) built once into the user's cache directory. moduleDir is a
// directory inside the Keyward module (where `go build` runs).
func Binary(moduleDir string) (string, error) {
	return tool(moduleDir, "KEYWARD_ETCD_BIN", "etcd", "go.etcd.io/etcd/server/v3")
}

// UtilBinary returns the path of etcdutl, etcd's offline tool (snapshot
// restore): KEYWARD_ETCDUTL_BIN if set, else go.etcd.io/etcd/etcdutl/v3 at
// the version go.mod pins (a `tool` line, as the server) built once into
// the user's cache directory (`make etcd-bin` builds bin/etcdutl).
func UtilBinary(moduleDir string) (string, error) {
	return tool(moduleDir, "KEYWARD_ETCDUTL_BIN", "etcdutl", "go.etcd.io/etcd/etcdutl/v3")
}

// tool is env's binary if set, else pkg built once into the user cache as
// name-Version.
func tool(moduleDir, env, name, pkg string) (string, error) {
	if p := os.Getenv(env); p != "" {
		return p, nil
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "keyward")
	out := filepath.Join(dir, name+"-"+Version)
	if st, err := os.Stat(out); err == nil && st.Mode().IsRegular() {
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, pkg)
	cmd.Dir = moduleDir
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("etcdlocal: building %s (go build %s): %v: %s", name, pkg, err, b)
	}
	return out, os.Rename(tmp, out) // atomic: a concurrent builder's rename is as good as ours
}

// Options configure Start.
type Options struct {
	// Members is the cluster size (default 3).
	Members int
	// Dir holds the TLS files and each member's data (required).
	Dir string
	// Binary is the etcd server (default: Binary(".")).
	Binary string
	// Ports, when not nil, are the loopback ports to use, two per member
	// (client, peer); otherwise free ports are picked.
	Ports []int
	// Log receives the members' output (default: Dir/<name>.log).
	Log func(member string) (*os.File, error)
}

// Member is one etcd server process.
type Member struct {
	Name       string
	ClientURL  string
	PeerURL    string
	dir        string
	c          *Cluster
	mu         sync.Mutex
	cmd        *exec.Cmd
	exited     chan struct{}
	startCount int
}

// Cluster is a running local etcd cluster.
type Cluster struct {
	Members []*Member
	// Dir is the cluster's directory; TLS files are under Dir/tls:
	// ca.pem, client.pem, client-key.pem (and each member's server cert).
	Dir    string
	binary string
	opts   Options
}

// Start creates the TLS files and starts every member, and returns when
// the cluster answers (a member's /health through the client port) or
// fails after 60 s.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Members == 0 {
		opts.Members = 3
	}
	if opts.Dir == "" {
		return nil, errors.New("etcdlocal: Options.Dir is required")
	}
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = Binary("."); err != nil {
			return nil, err
		}
	}
	// Ports picked here may be taken by another process between the pick
	// and a member's bind (tests of several packages start clusters and
	// servers at once): a member that exits on "address already in use"
	// makes Start try again on new ports, twice at most.
	return startWith(ctx, opts, bin, nil)
}

// startWith is Start with the binary chosen; prepare, when not nil, runs
// after the members' names, ports and TLS files are known and before any
// starts (RestoreSnapshot fills their data directories there).
func startWith(ctx context.Context, opts Options, bin string, prepare func(c *Cluster) error) (*Cluster, error) {
	for attempt := 1; ; attempt++ {
		c, err := start(ctx, opts, bin, prepare)
		if err == nil || opts.Ports != nil || attempt == 3 || !errors.Is(err, errPortTaken) {
			return c, err
		}
	}
}

var errPortTaken = errors.New("etcdlocal: a member's port was taken")

func start(ctx context.Context, opts Options, bin string, prepare func(c *Cluster) error) (*Cluster, error) {
	ports := opts.Ports
	if ports == nil {
		var err error
		if ports, err = pickPorts(2 * opts.Members); err != nil {
			return nil, err
		}
	}
	if len(ports) != 2*opts.Members {
		return nil, fmt.Errorf("etcdlocal: %d ports for %d members, want %d", len(ports), opts.Members, 2*opts.Members)
	}
	c := &Cluster{Dir: opts.Dir, binary: bin, opts: opts}
	for i := 0; i < opts.Members; i++ {
		name := fmt.Sprintf("etcd%d", i+1)
		c.Members = append(c.Members, &Member{Name: name, c: c, dir: filepath.Join(opts.Dir, name),
			ClientURL: fmt.Sprintf("https://127.0.0.1:%d", ports[2*i]), PeerURL: fmt.Sprintf("https://127.0.0.1:%d", ports[2*i+1])})
	}
	if err := c.makeTLS(); err != nil {
		return nil, err
	}
	if prepare != nil {
		if err := prepare(c); err != nil {
			return nil, err
		}
	}
	for _, m := range c.Members {
		if err := m.Start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := c.waitAllHealthy(wctx); err != nil {
		c.Stop()
		if errors.Is(err, errPortTaken) {
			for _, m := range c.Members { // a fresh cluster on the next ports
				os.RemoveAll(m.dir)
				os.Remove(filepath.Join(c.Dir, m.Name+".log"))
			}
		}
		return nil, err
	}
	return c, nil
}

// waitAllHealthy returns when every member answers /health true (a
// cluster started with a member missing would lose its quorum at the first
// member a test kills), or fails when a member exits.
func (c *Cluster) waitAllHealthy(ctx context.Context) error {
	cfg, err := c.ClientTLS()
	if err != nil {
		return err
	}
	for {
		up := 0
		for _, m := range c.Members {
			m.mu.Lock()
			exited := m.exited
			m.mu.Unlock()
			select {
			case <-exited:
				log, _ := os.ReadFile(filepath.Join(c.Dir, m.Name+".log"))
				if strings.Contains(string(log), "address already in use") {
					return fmt.Errorf("%w: %s (%s, %s)", errPortTaken, m.Name, m.ClientURL, m.PeerURL)
				}
				return fmt.Errorf("etcdlocal: %s exited at start (log: %s)", m.Name, filepath.Join(c.Dir, m.Name+".log"))
			default:
			}
			if m.healthy(ctx, cfg) {
				up++
			}
		}
		if up == len(c.Members) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcdlocal: %d of %d members healthy (logs under %s): %w", up, len(c.Members), c.Dir, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.ClientURL
	}
	return out
}

// TLSFiles returns the client's CA, certificate and key PEM files.
func (c *Cluster) TLSFiles() (ca, cert, key string) {
	d := filepath.Join(c.Dir, "tls")
	return filepath.Join(d, "ca.pem"), filepath.Join(d, "client.pem"), filepath.Join(d, "client-key.pem")
}

// ClientTLS is the client's TLS configuration (the CA and the client
// certificate).
func (c *Cluster) ClientTLS() (*tls.Config, error) {
	ca, cert, key := c.TLSFiles()
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("etcdlocal: no certificate in ca.pem")
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// WaitHealthy returns when a quorum answers (a member's /health says true).
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	cfg, err := c.ClientTLS()
	if err != nil {
		return err
	}
	for {
		for _, m := range c.Members {
			if m.healthy(ctx, cfg) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcdlocal: no healthy member (logs under %s): %w", c.Dir, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends every member (SIGTERM, then SIGKILL after 5 s).
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		m.Stop()
	}
}

func (c *Cluster) initialCluster() string {
	parts := make([]string, len(c.Members))
	for i, m := range c.Members {
		parts[i] = m.Name + "=" + m.PeerURL
	}
	return strings.Join(parts, ",")
}

// Start starts the member's process (again, after Kill or Stop, on the
// same data directory).
func (m *Member) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.aliveLocked() {
		return fmt.Errorf("etcdlocal: %s is running", m.Name)
	}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return err
	}
	tlsDir := filepath.Join(m.c.Dir, "tls")
	state := "new"
	if _, err := os.Stat(filepath.Join(m.dir, "member")); err == nil {
		state = "existing"
	}
	srvCert, srvKey := filepath.Join(tlsDir, m.Name+".pem"), filepath.Join(tlsDir, m.Name+"-key.pem")
	ca := filepath.Join(tlsDir, "ca.pem")
	args := []string{
		"--name", m.Name, "--data-dir", m.dir,
		"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster", m.c.initialCluster(), "--initial-cluster-state", state,
		"--initial-cluster-token", "keyward-local",
		"--cert-file", srvCert, "--key-file", srvKey, "--trusted-ca-file", ca, "--client-cert-auth",
		"--peer-cert-file", srvCert, "--peer-key-file", srvKey, "--peer-trusted-ca-file", ca, "--peer-client-cert-auth",
		"--listen-metrics-urls", "", "--log-level", "warn",
		// etcd's defaults, written out: a heartbeat every 100 ms, an
		// election after 1 s without one. A killed leader stalls writes
		// for about that long.
		"--heartbeat-interval", "100", "--election-timeout", "1000",
	}
	cmd := exec.Command(m.c.binary, args...)
	var logf *os.File
	var err error
	if m.c.opts.Log != nil {
		logf, err = m.c.opts.Log(m.Name)
	} else {
		logf, err = os.OpenFile(filepath.Join(m.c.Dir, m.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	}
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test or run-cluster
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("etcdlocal: starting %s: %w", m.Name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	m.cmd, m.exited = cmd, exited
	m.startCount++
	return nil
}

// Kill ends the member with SIGKILL, as a crash would, and waits for it.
func (m *Member) Kill() { m.signal(syscall.SIGKILL, 0) }

// Stop ends the member with SIGTERM (SIGKILL after 5 s) and waits for it.
func (m *Member) Stop() { m.signal(syscall.SIGTERM, 5*time.Second) }

// Running reports whether the member's process is running.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.aliveLocked()
}

// aliveLocked reports whether the process runs, forgetting one that has
// exited by itself or was killed from outside (make run-cluster's
// walk-through kills members with kill -9), so Start can start it again.
func (m *Member) aliveLocked() bool {
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		m.cmd = nil
		return false
	default:
		return true
	}
}

func (m *Member) signal(sig syscall.Signal, grace time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-m.exited:
		case <-time.After(grace):
			_ = m.cmd.Process.Kill()
		}
	}
	<-m.exited
	m.cmd = nil
}

func (m *Member) healthy(ctx context.Context, cfg *tls.Config) bool {
	d := tls.Dialer{Config: cfg}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := d.DialContext(cctx, "tcp", strings.TrimPrefix(m.ClientURL, "https://"))
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 4096)
	n, _ := readAll(conn, buf)
	return strings.Contains(string(buf[:n]), `"health":"true"`)
}

func readAll(c net.Conn, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := c.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// pickPorts is freePorts (a test replaces it).
var pickPorts = freePorts

// freePorts picks n free loopback ports below the ephemeral range (so a
// client's outgoing connection cannot take one between here and the
// member's bind).
func freePorts(n int) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for tries := 0; len(out) < n && tries < 1000; tries++ {
		b := make([]byte, 2)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		p := 20000 + (int(b[0])<<8|int(b[1]))%12000 // 20000-31999
		if seen[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		seen[p] = true
		out = append(out, p)
	}
	if len(out) < n {
		return nil, errors.New("etcdlocal: no free loopback ports")
	}
	return out, nil
}

// makeTLS writes a CA, one server certificate per member and a client
// certificate under Dir/tls (existing files are kept, so a restarted
// run-cluster keeps its certificates).
func (c *Cluster) makeTLS() error {
	dir := filepath.Join(c.Dir, "tls")
	if _, err := os.Stat(filepath.Join(dir, "client-key.pem")); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keyward etcdlocal CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	if err := writePEM(filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER); err != nil {
		return err
	}
	issue := func(name string, serial int64, usage []x509.ExtKeyUsage) error {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), DNSNames: []string{"localhost"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			return err
		}
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, name+".pem"), "CERTIFICATE", der); err != nil {
			return err
		}
		return writePEM(filepath.Join(dir, name+"-key.pem"), "PRIVATE KEY", kder)
	}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for i, m := range c.Members {
		if err := issue(m.Name, int64(10+i), both); err != nil {
			return err
		}
	}
	return issue("client", 2, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) // written last: its key marks the set complete
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// Leader returns the member that leads the cluster now (asking the running
// members in turn).
func (c *Cluster) Leader(ctx context.Context) (*Member, error) {
	cfg, err := c.ClientTLS()
	if err != nil {
		return nil, err
	}
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, TLS: cfg, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(sctx, m.ClientURL)
		cancel()
		cli.Close()
		if err != nil || st.Leader == 0 {
			continue
		}
		if st.Leader == st.Header.MemberId {
			return m, nil
		}
		for _, o := range c.Members { // ask the leader itself, so the answer is its own
			if o != m && o.Running() {
				if id, err := memberID(ctx, o, cfg); err == nil && id == st.Leader {
					return o, nil
				}
			}
		}
	}
	return nil, errors.New("etcdlocal: no member reports a leader")
}

func memberID(ctx context.Context, m *Member, cfg *tls.Config) (uint64, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, TLS: cfg, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := cli.Status(sctx, m.ClientURL)
	if err != nil {
		return 0, err
	}
	return st.Header.MemberId, nil
}

// Follower returns a running member that does not lead the cluster.
func (c *Cluster) Follower(ctx context.Context) (*Member, error) {
	l, err := c.Leader(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range c.Members {
		if m != l && m.Running() {
			return m, nil
		}
	}
	return nil, errors.New("etcdlocal: no running follower")
}

// PID is the member's process id, 0 when it is not running (make
// run-cluster writes it for an operator's kill -STOP / kill -9).
func (m *Member) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.aliveLocked() {
		return 0
	}
	return m.cmd.Process.Pid
}
