//go:build linux

package softhsmtests

// TestClusterProcessesStart (issue 16 items 1, 2 and 4, through real
// processes): a real three-member etcd cluster and two keysvc processes
// on one SoftHSM2 token with store.backend etcd.
//
//   - an hsm key created through node 1 signs through node 2 (SoftHSM
//     re-reads its token directory: node 2 finds the object node 1 made)
//     and verifies through node 1;
//   - `keysvc audit verify -config` reads the cluster's one chain from etcd
//     and passes, every sign and the key's creation on record;
//   - two etcd members killed (the leader and a follower): both nodes
//     answer a sign with 503 (the operation not performed) and /readyz
//     with 503 store_unavailable;
//   - the members started again: node 1 signs again, the same process (no
//     keysvc restart), and the chain still verifies.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/etcdstore/etcdlocal"
)

func TestClusterProcessesStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster and two keysvc processes")
	}
	e := newClusterEnv(t)
	n1 := e.addNode(t, "keysvc-1", "")
	n2 := e.addNode(t, "keysvc-2", "")

	create := map[string]any{"name": "cluster-sig", "purpose": "sign", "algorithm": "ec-p256", "protection": "hsm",
		"policy": map[string]any{"grants": []any{map[string]any{"client": "officer", "ops": []string{"sign", "verify", "public"}}}}}
	if st, out := n1.call(t, e.hc, "POST", "/v1/keys", create); st != http.StatusCreated && st != http.StatusOK {
		t.Fatalf("create through node 1: %d %v", st, out)
	}
	sign := func(n *clusterNode, msg string) (int, map[string]any) {
		return n.call(t, e.hc, "POST", "/v1/keys/cluster-sig/sign", map[string]any{"message": b64(msg)})
	}
	signed := 0
	st, out := sign(n2, "made on node 1, signed on node 2")
	if st != http.StatusOK {
		t.Fatalf("sign through node 2 with a key created through node 1: %d %v", st, out)
	}
	signed++
	sig, _ := out["signature"].(string)
	if st, out := n1.call(t, e.hc, "POST", "/v1/keys/cluster-sig/verify", map[string]any{"message": b64("made on node 1, signed on node 2"), "signature": sig}); st != http.StatusOK || out["valid"] != true {
		t.Fatalf("verify through node 1 of node 2's signature: %d %v", st, out)
	}
	for i := 0; i < 5; i++ {
		for _, n := range []*clusterNode{n1, n2} {
			if st, out := sign(n, "m"+strconv.Itoa(i)); st != http.StatusOK {
				t.Fatalf("sign %d through %s: %d %v", i, n.node, st, out)
			}
			signed++
		}
	}
	recs := verifyCluster(t, e, n1)
	// The creation and every sign are on record; each node adds its own
	// start-up records too, so this is a lower bound.
	if recs < signed+1 {
		t.Fatalf("audit verify reports %d records, want at least %d (a creation and %d signatures)", recs, signed+1, signed)
	}

	// Quorum lost: two of three members down, the leader among them (a
	// follower alone left cannot elect one).
	leader, err := e.etcd.Leader(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	down := []*etcdlocal.Member{leader}
	for _, m := range e.etcd.Members {
		if m != leader && len(down) < 2 {
			down = append(down, m)
		}
	}
	for _, m := range down {
		m.Kill()
	}
	lostAt := time.Now()
	st, out = sign(n1, "no quorum")
	t.Logf("sign on node 1 without an etcd quorum: %d %v after %v", st, out, time.Since(lostAt).Round(time.Millisecond))
	// An audited operation whose record cannot be written is not
	// performed: keysvc.Service answers audit_unavailable for any failed
	// append (wire.ErrAuditUnavailable), store_unavailable where the store
	// error reaches the caller. Both are 503: not done, retry later.
	notDone := func(st int, out map[string]any) bool {
		c := errCode(out)
		return st == http.StatusServiceUnavailable && (c == "store_unavailable" || c == "audit_unavailable")
	}
	if !notDone(st, out) {
		t.Fatalf("sign without an etcd quorum: %d %v, want 503 store_unavailable or audit_unavailable", st, out)
	}
	for _, n := range []*clusterNode{n1, n2} {
		if rz, out := n.call(t, e.hc, "GET", "/readyz", nil); rz != http.StatusServiceUnavailable || errCode(out) != "store_unavailable" {
			t.Fatalf("/readyz of %s without an etcd quorum: %d %v, want 503 store_unavailable", n.node, rz, out)
		}
	}
	if st, out := sign(n2, "no quorum either"); !notDone(st, out) {
		t.Fatalf("sign on node 2 without an etcd quorum: %d %v, want 503", st, out)
	}

	// Back: the members restart on their data; keysvc is not restarted.
	for _, m := range down {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
	}
	backAt := time.Now()
	deadline := backAt.Add(60 * time.Second)
	for {
		st, out = sign(n1, "quorum back")
		if st == http.StatusOK {
			break
		}
		if !notDone(st, out) {
			t.Fatalf("sign while etcd comes back: %d %v, want 503 until it is back, then 200", st, out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 1 still answers %d %v 60 s after the etcd members restarted", st, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	signed++
	t.Logf("node 1 signs again %v after the two etcd members were started again", time.Since(backAt).Round(time.Millisecond))
	if rz := n1.readyz(e.hc); rz != http.StatusOK {
		t.Fatalf("/readyz after etcd came back: %d, want 200", rz)
	}
	if !n1.running() || !n2.running() {
		t.Fatal("a keysvc process exited while etcd was away")
	}
	if st, out := sign(n2, "node 2 too"); st != http.StatusOK {
		t.Fatalf("sign on node 2 after etcd came back: %d %v", st, out)
	}
	signed++
	if recs2 := verifyCluster(t, e, n2); recs2 < recs+2 {
		t.Fatalf("audit verify after the outage reports %d records, want at least %d", recs2, recs+2)
	}
}

var auditOKRE = regexp.MustCompile(`audit chain ok: (\d+) records, (\d+) signed checkpoints`)

// verifyCluster runs `keysvc audit verify -config` through n's config and
// returns the number of records it checked; it fails t unless the command
// succeeds.
func verifyCluster(t *testing.T, e *clusterEnv, n *clusterNode) int {
	t.Helper()
	// The chain needs a signed checkpoint to pass (the elected node makes
	// one every scheduler_interval, 500 ms here): wait up to 10 s for the
	// first one; any other failure fails at once.
	deadline := time.Now().Add(10 * time.Second)
	out, err := e.auditVerify(t, n)
	for err != nil && strings.Contains(out, "no signed checkpoint") && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		out, err = e.auditVerify(t, n)
	}
	if err != nil {
		t.Fatalf("keysvc audit verify -config %s: %v\n%s", n.conf, err, out)
	}
	m := auditOKRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keysvc audit verify printed no summary:\n%s", out)
	}
	t.Logf("keysvc audit verify -config (node %s): %s", n.node, m[0])
	recs, _ := strconv.Atoi(m[1])
	return recs
}

// TestClusterPINGuardAcrossNodes: the token's PIN guard counts in etcd,
// so wrong PINs add up across nodes (R-TOK-5: six in total, not six per
// node). Two nodes, each with its own data_dir, start with a wrong PIN
// three times each (each start is refused); then a third node with the
// right PIN is refused as locked. With per-node counters (bbolt in each
// data_dir) neither node would have reached six, and the third would
// start.
func TestClusterPINGuardAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster and keysvc processes")
	}
	e := newClusterEnv(t)
	wrong := filepath.Join(e.dir, "wrong.pin")
	writeFiles(t, wrong, "000000\n")
	for i := 0; i < 6; i++ {
		node := fmt.Sprintf("wrong-%d", i%2)
		out, err := e.runNodeOnce(t, node, wrong)
		if err == nil || !strings.Contains(out, "PIN incorrect") {
			t.Fatalf("start %d of %s with a wrong PIN: err %v, want a refusal naming the incorrect PIN:\n%s", i+1, node, err, out)
		}
	}
	out, err := e.runNodeOnce(t, "right", e.pinFile)
	if err == nil || !strings.Contains(out, "PIN locked") || !strings.Contains(out, "after 6 failed attempts") {
		t.Fatalf("start with the right PIN after 6 wrong ones on two other nodes: err %v, want a refusal: locked after 6 failed attempts:\n%s", err, out)
	}
	if strings.Contains(out, userPIN) || strings.Contains(out, "000000") {
		t.Fatalf("a PIN reached keysvc's output:\n%s", out)
	}
}

// runNodeOnce runs `keysvc serve -config` for node with the token PIN
// from pinFile and waits (30 s at most) for it to exit; it returns the
// output and the exit error. It fails t if the process is still running
// (started) after 30 s.
func (e *clusterEnv) runNodeOnce(t *testing.T, node, pinFile string) (string, error) {
	t.Helper()
	dir := filepath.Join(e.dir, node)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "keysvc.yaml")
	text := strings.Replace(e.nodeConfig(node, freeAddr(t), filepath.Join(dir, "data"), ""), "pin-source=file:"+e.pinFile, "pin-source=file:"+pinFile, 1)
	writeFiles(t, conf, text)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, builtCommand(t, "keysvc"), "serve", "-config", conf)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("keysvc %s did not exit within 30 s (it started?):\n%s", node, out)
	}
	return string(out), err
}
