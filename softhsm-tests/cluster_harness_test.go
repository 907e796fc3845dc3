//go:build linux

package softhsmtests

// The keysvc cluster harness (issue 16): a real etcd cluster
// (keysvc/etcdstore/etcdlocal: three etcd server processes, mutual TLS),
// one SoftHSM2 token holding keysvc's service keys as a ceremony makes
// them, and keysvc nodes as real processes (cmd/keysvc serve -config, a
// production config with store.backend etcd) on loopback, each with its
// own data_dir, all on that token. The cluster tests (this file's users)
// start, kill -9 and restart nodes and etcd members through it:
//
//	e := newClusterEnv(t)               // etcd + token + TLS
//	n1 := e.addNode(t, "keysvc-1", "") // config written, started, /healthz 200
//	n3 := e.newNode(t, "keysvc-3", "metrics: {listen: 127.0.0.1:9999}\n") // written only; n3.start(t)
//	c := n1.kmsClient(t, officerToken, 10*time.Second, 64)   // keysvc/client over TLS
//	st, out := n1.call(t, e.hc, "POST", "/v1/keys/k/sign", body)
//	n1.kill9(t); n1.restart(t)
//	e.etcd.Members[1].Kill(); e.etcd.Members[1].Start()
//	out, err := e.auditVerify(t, n1)   // keysvc audit verify -config, over etcd

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/etcdstore/etcdlocal"
	"github.com/keyward/keyward/pkcs11shim"
)

// clusterEnv is what keysvc nodes of one cluster share.
type clusterEnv struct {
	dir     string
	etcd    *etcdlocal.Cluster
	tls     testTLS              // the nodes' server certificate and its CA
	token   pkcs11shim.TokenInfo // the one SoftHSM2 token, with service keys
	pinFile string               // its user PIN, 0600
	// hc is an HTTPS client for every node (the test CA, 64 idle
	// connections per node).
	hc    *http.Client
	nodes []*clusterNode
}

// clusterNode is one keysvc process of the cluster.
type clusterNode struct {
	*daemon
	node    string // node: in its config
	conf    string // its YAML
	dataDir string
}

// startEtcd starts a three-member etcd cluster under t's temporary
// directory (the server binary is built once into ~/.cache/keyward) and
// stops it at cleanup. A member's log is printed when t fails.
func startEtcd(t testing.TB) *etcdlocal.Cluster {
	t.Helper()
	bin, err := etcdlocal.Binary(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := etcdlocal.Start(ctx, etcdlocal.Options{Dir: dir, Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			for _, m := range c.Members {
				logTail(t, m.Name, filepath.Join(dir, m.Name+".log"))
			}
		}
	})
	return c
}

// newClusterEnv starts etcd and makes the token (service keys as the
// ceremony makes them: keysvc with a config file makes none) and the TLS
// files. Nodes come with addNode.
func newClusterEnv(t testing.TB) *clusterEnv {
	t.Helper()
	dir := t.TempDir()
	e := &clusterEnv{dir: dir, etcd: startEtcd(t), tls: newTestTLS(t, dir), token: newServiceKeyToken(t), pinFile: filepath.Join(dir, "user.pin")}
	writeFiles(t, e.pinFile, userPIN+"\n")
	e.hc = &http.Client{Timeout: 30 * time.Second, Transport: e.tls.clientTransport(64)}
	t.Cleanup(e.hc.CloseIdleConnections)
	return e
}

// nodeConfig is the YAML of a node named node listening on addr with its
// data in dataDir; extra is appended (more top-level fields: confirm:,
// metrics:, ...). Clients: officer (admin) and bankapp (admin, as banking
// creates customers' keys), with keysvcEnv's bearer tokens.
func (e *clusterEnv) nodeConfig(node, addr, dataDir, extra string) string {
	ca, cert, key := e.etcd.TLSFiles()
	return fmt.Sprintf(`node: %s
listen: %q
data_dir: %q
tls: {cert: %q, key: %q}
token:
  uri: %q
  max_sessions: 16
  wait_timeout: 10s
store:
  backend: etcd
  etcd:
    endpoints: [%s]
    ca: %q
    cert: %q
    key: %q
    request_timeout: 2s
    dial_timeout: 2s
destroy: {default_delay: 24h, min_delay: 1h}
scheduler_interval: 500ms
clients:
  - {name: officer, admin: true, token_sha256: %s}
  - {name: bankapp, admin: true, token_sha256: %s}
%s`, node, addr, dataDir, e.tls.cert, e.tls.key,
		"pkcs11:token="+e.token.Label+"?module-path="+modulePath+"&pin-source=file:"+e.pinFile,
		strings.Join(e.etcd.Endpoints(), ", "), ca, cert, key, sha(officerToken), sha(bankappToken), extra)
}

// newNode prepares node: its directory, a free loopback address and its
// config (nodeConfig with extra), written; it does not start it (start,
// or addNode). The process is stopped at cleanup.
func (e *clusterEnv) newNode(t testing.TB, node, extra string) *clusterNode {
	t.Helper()
	dir := filepath.Join(e.dir, node)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	n := &clusterNode{daemon: newDaemon(t, "keysvc", dir, e.tls), node: node, conf: filepath.Join(dir, "keysvc.yaml"), dataDir: filepath.Join(dir, "data")}
	writeFiles(t, n.conf, e.nodeConfig(node, n.addr, n.dataDir, extra))
	n.args = []string{"serve", "-config", n.conf}
	e.nodes = append(e.nodes, n)
	return n
}

// addNode is newNode and start: it returns once /healthz answers. Nodes
// start one after another.
func (e *clusterEnv) addNode(t testing.TB, node, extra string) *clusterNode {
	t.Helper()
	n := e.newNode(t, node, extra)
	n.start(t)
	return n
}

// kill9 is kill -9 of the node's process.
func (n *clusterNode) kill9(t testing.TB) { t.Helper(); n.kill(t) }

// restart starts the node's process again on the same address and config.
func (n *clusterNode) restart(t testing.TB) { t.Helper(); n.start(t) }

// running reports whether the node's process has not exited.
func (n *clusterNode) running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// call makes one request to the node as the officer (body: nil, a string,
// []byte or a value to marshal) and returns the status and the decoded
// JSON answer. A transport error is returned as status 0 with the error
// under "transport": a dead node is a result, not a test failure.
func (n *clusterNode) call(t testing.TB, hc *http.Client, method, path string, body any) (int, map[string]any) {
	t.Helper()
	resp, err := hc.Do(jsonRequest(t, method, n.url+path, officerToken, body))
	if err != nil {
		return 0, map[string]any{"transport": err.Error()}
	}
	return resp.StatusCode, readJSON(t, resp, method+" "+path+" on "+n.node)
}

// auditVerify runs `keysvc audit verify -config <n's config>` (the
// cluster's chain, read from etcd) with args appended, and returns its
// output; err is its exit error.
func (e *clusterEnv) auditVerify(t testing.TB, n *clusterNode, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(n.bin, append([]string{"audit", "verify", "-config", n.conf}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// readyz is the node's /readyz status (0: no answer).
func (n *clusterNode) readyz(hc *http.Client) int {
	resp, err := hc.Get(n.url + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// addNodes adds n nodes, keysvc-1 to keysvc-n, with no extra YAML
// (addNode each); e.nodes holds them in that order.
func (e *clusterEnv) addNodes(t testing.TB, n int) []*clusterNode {
	t.Helper()
	var ns []*clusterNode
	for i := 1; i <= n; i++ {
		ns = append(ns, e.addNode(t, fmt.Sprintf("keysvc-%d", i), ""))
	}
	return ns
}

// addNodeEdited is addNode with the node's YAML passed through edit
// before it is written: a test that needs another value of a field
// nodeConfig already sets (destroy:, scheduler_interval:) replaces it
// there, as a second top-level key of the same name is refused.
func (e *clusterEnv) addNodeEdited(t testing.TB, node, extra string, edit func(yaml string) string) *clusterNode {
	t.Helper()
	dir := filepath.Join(e.dir, node)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	n := &clusterNode{daemon: newDaemon(t, "keysvc", dir, e.tls), node: node, conf: filepath.Join(dir, "keysvc.yaml"), dataDir: filepath.Join(dir, "data")}
	writeFiles(t, n.conf, edit(e.nodeConfig(node, n.addr, n.dataDir, extra)))
	n.args = []string{"serve", "-config", n.conf}
	n.start(t)
	e.nodes = append(e.nodes, n)
	return n
}
