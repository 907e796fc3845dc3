// Command runcluster is `make run-cluster`: a keysvc cluster on loopback
// for a developer (issue 16). It is not how a bank runs keysvc (README,
// "Running a keysvc cluster"); nothing here is linked into cmd/keysvc.
//
// It starts, under -data-dir/cluster (default var/cluster):
//
//   - three etcd members (keysvc/etcdstore/etcdlocal: the real etcd server,
//     mutual TLS on client and peer ports) on fixed loopback ports:
//     clients 12379, 12479, 12579 (peers one above each);
//   - one SoftHSM2 token made the way `keysvc -dev` makes one (PINs in
//     clear 0600 files), holding keysvc's service keys, generated here
//     once as a dev instance's keysvc generates them (in production they
//     come from a key ceremony);
//   - three keysvc processes (bin/keysvc serve -config nodeN.yaml, a
//     production config with store.backend etcd) on 127.0.0.1:8451-8453,
//     metrics on 127.0.0.1:9471-9473, all on that one token and sharing
//     one dev CA, server certificate and admin bearer token.
//
// It prints how to call each node and how to take nodes and etcd members
// away, and writes each process's pid under run/. Ctrl-C (or SIGTERM)
// stops the keysvc nodes (gracefully) and then etcd. A second run reuses
// everything (the etcd data, the token, the certificates).
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keyward/keyward/cmd/internal/devproc"
	"github.com/keyward/keyward/cmd/internal/devtls"
	"github.com/keyward/keyward/cmd/internal/secretfile"
	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/etcdstore"
	"github.com/keyward/keyward/keysvc/etcdstore/etcdlocal"
	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// Fixed loopback ports, so the printed commands stay right from run to run.
var (
	etcdPorts    = []int{12379, 12380, 12479, 12480, 12579, 12580} // client, peer per member
	keysvcPorts  = []int{8451, 8452, 8453}
	metricsPorts = []int{9471, 9472, 9473}
)

func main() {
	dataDir := flag.String("data-dir", "var", "data directory; the cluster lives in <data-dir>/cluster")
	keysvcBin := flag.String("keysvc", "bin/keysvc", "the keysvc binary")
	offset := flag.Int("port-offset", 0, "add this to every fixed port (scripts/bench-cluster.sh runs beside a make run-cluster; the printed walk-through keeps the default ports)")
	flag.Parse()
	for _, ports := range [][]int{etcdPorts, keysvcPorts, metricsPorts} {
		for i := range ports {
			ports[i] += *offset
		}
	}
	if err := run(*dataDir, *keysvcBin); err != nil {
		fmt.Fprintln(os.Stderr, "run-cluster:", err)
		os.Exit(1)
	}
}

// cluster is what run starts.
type cluster struct {
	dir, bin, caPath, tokenPath string
	tokenURI, bearerSum         string
	etcd                        *etcdlocal.Cluster
	nodes                       []*node
	gone                        map[string]bool // reported as exited
}

type node struct {
	devproc.Node
	i                   int
	conf, addr, metrics string
}

func run(dataDir, bin string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("keysvc binary: %w (make run-cluster builds it)", err)
	}
	dir, err := filepath.Abs(filepath.Join(dataDir, "cluster"))
	if err != nil {
		return err
	}
	c := &cluster{dir: dir, bin: bin, gone: map[string]bool{}}
	for _, d := range []string{dir, filepath.Join(dir, "run")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	fmt.Printf("starting 3 etcd members (data and logs in %s/etcd) ...\n", dir)
	etcdBin, err := etcdlocal.Binary(".")
	if err != nil {
		return err
	}
	c.etcd, err = etcdlocal.Start(ctx, etcdlocal.Options{Dir: filepath.Join(dir, "etcd"), Ports: etcdPorts, Binary: etcdBin})
	if err != nil {
		return err
	}
	defer c.etcd.Stop()
	c.writeEtcdPIDs()
	tokenURI, err := c.prepareToken(ctx)
	if err != nil {
		return err
	}
	bearerSum, err := c.prepareTLS()
	if err != nil {
		return err
	}
	defer c.stopNodes()
	c.tokenURI, c.bearerSum = tokenURI, bearerSum
	for i := range keysvcPorts {
		n := c.newNode(i)
		c.nodes = append(c.nodes, n)
		if err := c.startNode(ctx, n); err != nil {
			return err
		}
	}
	c.print()
	c.status(ctx)
	lines := devproc.Lines(os.Stdin) // Enter in this terminal: start again what was killed
	for {
		select {
		case <-ctx.Done():
			fmt.Println("\nstopping the keysvc nodes, then etcd ...")
			return nil
		case <-lines:
			if err := c.restartKilled(ctx); err != nil {
				fmt.Println("run-cluster:", err)
			}
			c.status(ctx)
		case <-time.After(time.Second):
		}
		c.reap()
	}
}

// restartKilled starts again every etcd member and keysvc node that is
// not running (killed in the walk-through).
func (c *cluster) restartKilled(ctx context.Context) error {
	for _, m := range c.etcd.Members {
		if !m.Running() {
			fmt.Printf("starting %s again ...\n", m.Name)
			if err := m.Start(); err != nil {
				return err
			}
			delete(c.gone, m.Name)
		}
	}
	c.writeEtcdPIDs()
	for _, n := range c.nodes {
		if !n.Running() {
			delete(c.gone, n.Name)
			if err := c.startNode(ctx, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// status prints each etcd member (running, leader) and each keysvc node
// (/readyz, scheduler leadership).
func (c *cluster) status(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	leader, _ := c.etcd.Leader(lctx)
	var b strings.Builder
	b.WriteString("status:  etcd")
	for _, m := range c.etcd.Members {
		st := "up"
		switch {
		case !m.Running():
			st = "down"
		case m == leader:
			st = "up, leader"
		}
		fmt.Fprintf(&b, "  %s (%s)", m.Name, st)
	}
	b.WriteString("\n         keysvc")
	hc, err := c.client()
	for _, n := range c.nodes {
		st := "down"
		if n.Running() && err == nil {
			st = "readyz " + c.get(hc, "https://"+n.addr+"/readyz")
			if v := c.metric(hc, "http://"+n.metrics+"/metrics", "keyward_scheduler_leader"); v != "" {
				st += ", scheduler_leader " + v
			}
		}
		fmt.Fprintf(&b, "  %s (%s)", n.Name, st)
	}
	b.WriteString("\n         (press Enter here to start again whatever was killed, and to see this again)\n")
	fmt.Print(b.String())
}

// get is the status of a GET (or the transport error, short).
func (c *cluster) get(hc *http.Client, url string) string {
	resp, err := hc.Get(url)
	if err != nil {
		return "no answer"
	}
	resp.Body.Close()
	return strconv.Itoa(resp.StatusCode)
}

// metric is the value of the first sample of name on a /metrics page, or "".
func (c *cluster) metric(hc *http.Client, url, name string) string {
	resp, err := hc.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"{") {
			return l[strings.LastIndexByte(l, ' ')+1:]
		}
	}
	return ""
}

// prepareToken makes the dev token (token.EnsureDevToken: SOFTHSM2_CONF is
// set in this process, and so in the nodes') and puts keysvc's service
// keys in it if they are not there yet, counting PIN attempts in the
// cluster's counters as the nodes do. It returns the token's URI.
func (c *cluster) prepareToken(ctx context.Context) (string, error) {
	module, err := token.FindSoftHSM()
	if err != nil {
		return "", err
	}
	tc, err := token.EnsureDevToken(c.dir, module)
	if err != nil {
		return "", err
	}
	tlsCfg, err := c.etcd.ClientTLS()
	if err != nil {
		return "", err
	}
	st, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: c.etcd.Endpoints(), TLS: tlsCfg, Node: "run-cluster"})
	if err != nil {
		return "", err
	}
	defer st.Close()
	tc.PINGuard = token.GuardConfig{Store: st.PINCounters()}
	tc.WaitTimeout = 10 * time.Second
	tok, err := token.Open(ctx, tc)
	if err != nil {
		return "", err
	}
	defer tok.Close()
	made := 0
	for _, ks := range keysvc.ServiceKeySpecs() {
		if _, err := tok.Store().FindKey(ctx, ks.Label); err == nil {
			continue
		} else if !errors.Is(err, pkcs11shim.ErrKeyNotFound) {
			return "", err
		}
		if _, err := tok.Store().GenerateKey(ctx, ks.KeySpec()); err != nil {
			return "", fmt.Errorf("service key %s: %w", ks.Label, err)
		}
		made++
	}
	if made > 0 {
		fmt.Printf("made the token %s in %s/softhsm with keysvc's %d service keys\n", token.DevTokenLabel, c.dir, made)
	}
	pinPath, err := filepath.Abs(tc.PIN.(token.FilePIN).Path)
	if err != nil {
		return "", err
	}
	return "pkcs11:token=" + token.DevTokenLabel + "?module-path=" + module + "&pin-source=file:" + pinPath, nil
}

// prepareTLS makes the dev CA, the nodes' server certificate and the admin
// bearer token (once), and returns the token's hex SHA-256.
func (c *cluster) prepareTLS() (string, error) {
	tlsDir := filepath.Join(c.dir, "tls")
	if err := devtls.Ensure(tlsDir, "Keyward cluster dev CA", "keysvc"); err != nil {
		return "", err
	}
	c.caPath = filepath.Join(tlsDir, "ca.pem")
	c.tokenPath = filepath.Join(c.dir, "dev-admin.token")
	bearer, err := secretfile.Ensure(c.tokenPath)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(bearer))
	return hex.EncodeToString(sum[:]), nil
}

// nodeConfig is node i's keysvc.yaml: a production config (no -dev) on
// etcd.
func (c *cluster) nodeConfig(i int, tokenURI, bearerSum string) string {
	ca, cert, key := c.etcd.TLSFiles()
	eps := strings.Join(c.etcd.Endpoints(), ", ")
	return fmt.Sprintf(`# keysvc node %[1]d of make run-cluster (written by cmd/internal/runcluster)
node: keysvc-%[1]d
listen: 127.0.0.1:%[2]d
data_dir: %[3]s/node%[1]d
tls: {cert: %[3]s/tls/server.pem, key: %[3]s/tls/server-key.pem}
token:
  uri: %[4]q
  wait_timeout: 10s
store:
  backend: etcd
  etcd:
    endpoints: [%[5]s]
    ca: %[6]s
    cert: %[7]s
    key: %[8]s
    request_timeout: 2s
    dial_timeout: 2s
destroy: {default_delay: 24h, min_delay: 1m}
scheduler_interval: 10s
metrics: {listen: 127.0.0.1:%[9]d}
clients:
  - {name: dev, admin: true, token_sha256: %[10]s}
`, i+1, keysvcPorts[i], c.dir, tokenURI, eps, ca, cert, key, metricsPorts[i], bearerSum)
}

// newNode is node i (not started).
func (c *cluster) newNode(i int) *node {
	name := fmt.Sprintf("keysvc-%d", i+1)
	return &node{i: i, conf: filepath.Join(c.dir, fmt.Sprintf("node%d.yaml", i+1)),
		addr: fmt.Sprintf("127.0.0.1:%d", keysvcPorts[i]), metrics: fmt.Sprintf("127.0.0.1:%d", metricsPorts[i]),
		Node: devproc.Node{Name: name, Log: filepath.Join(c.dir, fmt.Sprintf("node%d.log", i+1)), PIDFile: c.pidPath(name)}}
}

// startNode writes n's config and starts it, and waits until its /readyz
// answers 200 (30 s at most).
func (c *cluster) startNode(ctx context.Context, n *node) error {
	if err := os.WriteFile(n.conf, []byte(c.nodeConfig(n.i, c.tokenURI, c.bearerSum)), 0o600); err != nil {
		return err
	}
	if err := n.Start(c.bin, "serve", "-config", n.conf); err != nil {
		return err
	}
	fmt.Printf("starting %s on https://%s (log %s) ...\n", n.Name, n.addr, n.Log)
	hc, err := c.client()
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	err = n.WaitReady(ctx, 100*time.Millisecond, 30*time.Second, func() bool {
		resp, err := hc.Get("https://" + n.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	var exit *devproc.ExitError
	switch {
	case errors.As(err, &exit):
		return fmt.Errorf("%w (see %s)", err, n.Log)
	case errors.Is(err, devproc.ErrNotReady):
		return fmt.Errorf("%s not ready after 30 s (see %s)", n.Name, n.Log)
	}
	return err
}

func (c *cluster) client() (*http.Client, error) {
	pem, err := os.ReadFile(c.caPath)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

func (c *cluster) pidPath(name string) string { return filepath.Join(c.dir, "run", name+".pid") }

// writeEtcdPIDs writes etcd1.pid ... for the walk-through's kill -STOP.
func (c *cluster) writeEtcdPIDs() {
	for _, m := range c.etcd.Members {
		if pid := m.PID(); pid > 0 {
			_ = devproc.WritePID(c.pidPath(m.Name), pid, 0o600)
		}
	}
}

// reap reports an etcd member or keysvc node that has exited (killed in
// the walk-through), once.
func (c *cluster) reap() {
	for _, m := range c.etcd.Members {
		if !m.Running() && !c.gone[m.Name] {
			c.gone[m.Name] = true
			_ = os.Remove(c.pidPath(m.Name))
			fmt.Printf("%s exited; press Enter here to start it again\n", m.Name)
		}
	}
	for _, n := range c.nodes {
		if st, ok := n.Reap(); ok {
			fmt.Printf("%s exited (%v); press Enter here to start it again\n", n.Name, st)
			c.gone[n.Name] = true
		}
	}
}

// stopNodes stops the nodes this process started (SIGTERM: graceful, a
// final audit checkpoint), SIGKILL after 15 s (devproc.StopAll).
func (c *cluster) stopNodes() {
	nodes := make([]*devproc.Node, len(c.nodes))
	for i, n := range c.nodes {
		nodes[i] = &n.Node
	}
	devproc.StopAll(nodes, devproc.Grace)
}

func (c *cluster) print() {
	var b strings.Builder
	fmt.Fprintf(&b, `
Keyward keysvc cluster (make run-cluster) — data in %[1]s
  etcd:   %[2]s  (mutual TLS; client certificate in %[1]s/etcd/tls)
  keysvc: https://127.0.0.1:8451 (keysvc-1), :8452 (keysvc-2), :8453 (keysvc-3), one SoftHSM2 token
  metrics: http://127.0.0.1:9471/metrics, :9472, :9473   pids: %[1]s/run/*.pid

Call any node with the dev admin token and the dev CA:

  TOKEN=$(cat %[3]s)
  kw() { curl -sS --cacert %[4]s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; echo; }
  kw -X POST https://127.0.0.1:8451/v1/keys -d '{"name":"demo","purpose":"sign","algorithm":"ec-p256","protection":"hsm","policy":{"grants":[{"client":"dev","ops":["sign","verify","public"]}]}}'
  SIG=$(kw -X POST https://127.0.0.1:8452/v1/keys/demo/sign -d '{"message":"aGVsbG8="}' | grep -o 'kw:v[0-9]*:[^"]*')
  kw -X POST https://127.0.0.1:8453/v1/keys/demo/verify -d '{"message":"aGVsbG8=","signature":"'$SIG'"}'

Which node runs the scheduler:  for p in 9471 9472 9473; do curl -s http://127.0.0.1:$p/metrics | grep '^keyward_scheduler_leader'; done

Take things away (README, "Running a keysvc cluster"); the status line below names the etcd leader:
  kill -9 $(cat %[1]s/run/keysvc-2.pid)   a keysvc node dies: the other two carry on
  kill -9 $(cat %[1]s/run/etcd3.pid)      one etcd member (a follower) dies: nothing changes
  kill -9 $(cat %[1]s/run/etcd2.pid)      a second one: quorum lost, 503 on every node, /readyz false
  press Enter in this terminal             what was killed starts again; no keysvc restart needed for etcd
  bin/keysvc audit verify -config %[1]s/node1.yaml   the cluster's one audit chain, read from etcd

Stop everything with Ctrl-C.

`, c.dir, strings.Join(c.etcd.Endpoints(), " "), c.tokenPath, c.caPath)
	fmt.Print(b.String())
}
