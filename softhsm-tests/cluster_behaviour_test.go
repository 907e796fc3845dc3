//go:build linux

package softhsmtests

// The keysvc cluster's behaviour (issue 16, "Tests", the last four
// bullets), through real processes: a three-member etcd cluster
// (etcdlocal, mutual TLS), one SoftHSM2 token, keysvc nodes as processes
// (cluster_harness_test.go), each with its confirmation endpoint and its
// metrics listener.
//
//   - TestClusterPINLockout: 100 concurrent wrong token-PIN logins from
//     three processes sharing the cluster's PIN counters in etcd reach
//     the module six times in all; the guard is locked cluster-wide and
//     the security officer's unlock clears it. Wrong holder PINs sent to
//     the three nodes' confirmation endpoints lock the holder after six
//     in total.
//   - TestClusterConfirmAcrossNodes: requested on A, approved on B,
//     collected on C; one pending confirmation per key across the
//     cluster; an unanswered confirmation whose node was killed -9
//     expires cluster-wide and frees its key.
//   - TestClusterRevocationLag: a version disabled through node A is
//     refused by nodes B and C; the lag is measured over 20 repeats.
//   - TestClusterSchedulerOnce: three schedulers alive, each due
//     destruction and rotation happens once; one leader; kill -9 the
//     leader: another takes over and due work still runs once.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/etcdstore"
	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// behNode is a cluster node with its confirmation endpoint, its metrics
// listener and the file its notifier appends holder notices to.
type behNode struct {
	*clusterNode
	confirmURL string
	metricsURL string
	notices    string
}

// addBehNode starts a node with a confirmation endpoint (timeout 10 s, the
// least keysvc accepts), a notify file and a metrics listener; edit (nil:
// none) edits its YAML. It returns once the confirmation endpoint answers.
func (e *clusterEnv) addBehNode(t testing.TB, name string, edit func(string) string) *behNode {
	t.Helper()
	caddr, maddr := freeAddr(t), freeAddr(t)
	notices := filepath.Join(e.dir, name+"-notices.jsonl")
	extra := fmt.Sprintf("confirm:\n  listen: %q\n  public_url: %q\n  timeout: 10s\n  notify: {file: %q}\nmetrics:\n  listen: %q\n",
		caddr, "https://"+caddr, notices, maddr)
	if edit == nil {
		edit = func(y string) string { return y }
	}
	n := &behNode{clusterNode: e.addNodeEdited(t, name, extra, edit), confirmURL: "https://" + caddr, metricsURL: "http://" + maddr + "/metrics", notices: notices}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, _, err := doCall(e.hc, "GET", n.confirmURL+"/healthz", "", nil)
		if err == nil && st == http.StatusOK {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: confirmation endpoint %s does not answer: %d %v", name, n.confirmURL, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// behNodes starts three nodes, one after another.
func (e *clusterEnv) behNodes(t testing.TB, edit func(string) string) []*behNode {
	t.Helper()
	var ns []*behNode
	for i := 1; i <= 3; i++ {
		ns = append(ns, e.addBehNode(t, fmt.Sprintf("keysvc-%d", i), edit))
	}
	return ns
}

// doCall is one HTTPS request (bearer "" sends none; body nil, []byte or a
// value to marshal) returning the status and the decoded JSON answer; it
// never fails the test, so signing loops may use it from goroutines.
func doCall(hc *http.Client, method, url, bearer string, body any) (int, map[string]any, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var out map[string]any
	if len(raw) > 0 && json.Unmarshal(raw, &out) != nil {
		return resp.StatusCode, nil, fmt.Errorf("non-JSON answer %d: %.200s", resp.StatusCode, raw)
	}
	return resp.StatusCode, out, nil
}

// confirmCall is a call to n's confirmation endpoint (no bearer: the
// holder token in the path is the credential).
func (n *behNode) confirmCall(t testing.TB, hc *http.Client, method, path string, body any) (int, map[string]any) {
	t.Helper()
	st, out, err := doCall(hc, method, n.confirmURL+path, "", body)
	if err != nil {
		t.Fatalf("%s %s on %s's confirmation endpoint: %v", method, path, n.node, err)
	}
	return st, out
}

// confirmKeyOn creates a confirm-required ec-p256 key through create (the
// officer is its only client) and enrols its holder with holderPIN through
// enrol's confirmation endpoint.
func confirmKeyOn(t testing.TB, e *clusterEnv, create, enrol *behNode, name string) time.Time {
	t.Helper()
	st, out := create.call(t, e.hc, "POST", "/v1/keys", map[string]any{"name": name, "purpose": "sign", "algorithm": "ec-p256", "protection": "wrapped",
		"confirm": "required", "policy": map[string]any{"grants": []any{map[string]any{"client": "officer", "ops": []string{"sign", "verify", "public"}}}}})
	if st != http.StatusCreated {
		t.Fatalf("create %s through %s: %d %v", name, create.node, st, out)
	}
	code, _ := out["holder_setup_code"].(string)
	if code == "" {
		t.Fatalf("create %s: no holder_setup_code: %v", name, out)
	}
	if st, out := enrol.confirmCall(t, e.hc, "POST", "/confirm/v1/enrol", map[string]any{"key": name, "setup_code": code, "pin": holderPIN}); st != http.StatusOK {
		t.Fatalf("enrol %s through %s: %d %v", name, enrol.node, st, out)
	}
	return time.Now()
}

// requestSign asks n to sign msg with key; the answer must be 202 with a
// pending confirmation over msg's digest, whose id it returns.
func requestSign(t testing.TB, e *clusterEnv, n *behNode, key string, msg []byte) string {
	t.Helper()
	st, out := n.call(t, e.hc, "POST", "/v1/keys/"+key+"/sign", map[string]any{"message": msg})
	if st != http.StatusAccepted {
		t.Fatalf("sign %s on %s: %d %v, want 202 (pending confirmation)", key, n.node, st, out)
	}
	c, _ := out["confirmation"].(map[string]any)
	id, _ := c["id"].(string)
	if id == "" || c["status"] != "pending" || c["digest"] != digestHex(msg) {
		t.Fatalf("sign %s on %s: bad pending confirmation %v", key, n.node, out)
	}
	return id
}

// requestSignAfter is requestSign right after a holder change made
// through another node (an enrolment, an unlock): until the key feed
// brings that change, n still answers from its cache with stale (the
// code of the state before: holder_not_enrolled, holder_locked). That is
// the feed's lag, logged; past revocationBound it is a failure.
func requestSignAfter(t testing.TB, e *clusterEnv, n *behNode, key string, msg []byte, stale string, changedAt time.Time) string {
	t.Helper()
	for {
		st, out := n.call(t, e.hc, "POST", "/v1/keys/"+key+"/sign", map[string]any{"message": msg})
		if st == http.StatusAccepted {
			if d := time.Since(changedAt); d > 50*time.Millisecond || errCode(out) != "" {
				t.Logf("%s took the holder change made through another node %v later", n.node, d.Round(time.Millisecond))
			}
			c, _ := out["confirmation"].(map[string]any)
			id, _ := c["id"].(string)
			if id == "" || c["status"] != "pending" || c["digest"] != digestHex(msg) {
				t.Fatalf("sign %s on %s: bad pending confirmation %v", key, n.node, out)
			}
			return id
		}
		if errCode(out) != stale || time.Since(changedAt) > revocationBound {
			t.Fatalf("sign %s on %s %v after a holder change made through another node: %d %v, want 202 (or %s while the feed brings the change, at most %v)",
				key, n.node, time.Since(changedAt).Round(time.Millisecond), st, out, stale, revocationBound)
		}
		t.Logf("sign %s on %s %v after a holder change through another node: still %s (the feed has not brought it yet)", key, n.node, time.Since(changedAt).Round(time.Millisecond), stale)
		time.Sleep(10 * time.Millisecond)
	}
}

// holderTokenFor finds the holder token of confirmation id in the nodes'
// notify files (whichever node made the request told the holder).
func holderTokenFor(t testing.TB, ns []*behNode, key, id string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, n := range ns {
			for _, nt := range procNotices(t, n.notices, key) {
				if nt.ConfirmationID == id {
					return nt.Link[strings.LastIndex(nt.Link, "/")+1:]
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no holder notice for confirmation %s of %s in any node's notify file", id, key)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// --- 1. PIN lockout across nodes ------------------------------------------

// Environment of TestClusterPINLockoutChild.
const (
	envPINEtcd     = "KEYWARD_TEST_PIN_ETCD"  // endpoints, comma-separated
	envPINTLS      = "KEYWARD_TEST_PIN_TLS"   // ca,cert,key files
	envPINLabel    = "KEYWARD_TEST_PIN_LABEL" // the token's label
	envPINAttempts = "KEYWARD_TEST_PIN_N"     // concurrent wrong logins
	envPINStart    = "KEYWARD_TEST_PIN_START" // unix nanoseconds: start together
	envPINNode     = "KEYWARD_TEST_PIN_NODE"
)

var pinChildRE = regexp.MustCompile(`pin-child node=(\S+) logins=(\d+) incorrect=(\d+) locked=(\d+) other=(\d+) late=(\S+)`)

// TestClusterPINLockout: the token PIN guard counts in etcd across
// processes; the holder PIN counter counts in the key record across
// nodes.
func TestClusterPINLockout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster, three child processes and three keysvc nodes")
	}
	e := newClusterEnv(t)

	t.Run("token PIN, 100 wrong logins from three processes", func(t *testing.T) {
		// A token of its own (the nodes' token must keep its PIN), and a
		// copy of it for each child process: same serial, label and PIN,
		// so the same PIN id and the same counters in etcd, as three HSMs
		// holding one replicated partition. Not one token directory
		// shared by four processes: SoftHSM 2.6.1 rewrites the token file
		// on every wrong C_Login (CKF_USER_PIN_COUNT_LOW), and another
		// process re-reading it at that moment can find no initialised
		// token and drop it (seen in 2 of 3 runs before the copies).
		tokensDir := filepath.Join(confDir, "tokens")
		before, err := os.ReadDir(tokensDir)
		if err != nil {
			t.Fatal(err)
		}
		info := newTokenLabel(t)
		after, err := os.ReadDir(tokensDir)
		if err != nil {
			t.Fatal(err)
		}
		var made []string
		for _, d := range after {
			if !slices.ContainsFunc(before, func(b os.DirEntry) bool { return b.Name() == d.Name() }) {
				made = append(made, d.Name())
			}
		}
		if len(made) != 1 {
			t.Fatalf("token %s: %d new directories in %s, want 1: %v", info.Label, len(made), tokensDir, made)
		}
		childConf := make([]string, 3)
		for i := range childConf {
			childConf[i] = t.TempDir()
			copyTree(t, filepath.Join(tokensDir, made[0]), filepath.Join(childConf[i], "tokens", made[0]))
		}
		ca, cert, key := e.etcd.TLSFiles()
		start := time.Now().Add(4 * time.Second) // the children start, connect and wait for this
		attempts := []int{33, 33, 34}
		type result struct {
			out string
			err error
		}
		res := make([]result, len(attempts))
		var wg sync.WaitGroup
		for i, n := range attempts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := runChild(t, "TestClusterPINLockoutChild", envConfDir+"="+childConf[i],
					envPINEtcd+"="+strings.Join(e.etcd.Endpoints(), ","), envPINTLS+"="+ca+","+cert+","+key,
					envPINLabel+"="+info.Label, envPINAttempts+"="+strconv.Itoa(n),
					envPINStart+"="+strconv.FormatInt(start.UnixNano(), 10), envPINNode+"="+fmt.Sprintf("pin-node-%d", i+1))
				res[i] = result{out, err}
			}()
		}
		wg.Wait()
		var logins, incorrect, locked int
		for i, r := range res {
			m := pinChildRE.FindStringSubmatch(r.out)
			if r.err != nil || m == nil || !contains(r.out, "--- PASS: TestClusterPINLockoutChild") {
				t.Fatalf("child %d: %v\n%s", i+1, r.err, r.out)
			}
			l, _ := strconv.Atoi(m[2])
			inc, _ := strconv.Atoi(m[3])
			lk, _ := strconv.Atoi(m[4])
			t.Logf("child %s: %d attempts, %d C_Login calls, %d refused incorrect, %d refused locked without a login (started late by %s)", m[1], attempts[i], l, inc, lk, m[6])
			logins, incorrect, locked = logins+l, incorrect+inc, locked+lk
		}
		t.Logf("100 concurrent wrong logins over three processes: %d C_Login calls in total (limit 6)", logins)
		if logins > token.MaxPINAttempts {
			t.Fatalf("%d C_Login calls for 100 wrong logins across three processes sharing the etcd counters; the limit is %d", logins, token.MaxPINAttempts)
		}
		// Every attempt that got past the guard was answered incorrect;
		// every other one was refused locked; exactly six got past.
		if logins != token.MaxPINAttempts || incorrect != logins || locked != 100-logins {
			t.Fatalf("logins %d, incorrect %d, locked %d: want 6, 6, 94", logins, incorrect, locked)
		}

		// The guard's state, as any node reads it from etcd.
		st := openTestStore(t, e, "pin-checker")
		gc := token.GuardConfig{Store: st.PINCounters()}
		g, err := token.NewGuard(gc.Store, 0)
		if err != nil {
			t.Fatal(err)
		}
		id := token.PINID(info, pkcs11shim.UserNormal)
		if s, err := g.State(id); err != nil || !s.Locked || s.Failures != token.MaxPINAttempts {
			t.Fatalf("guard state in etcd after the storm: %+v %v, want locked after 6", s, err)
		}
		// The right PIN, from this fourth process: refused without a
		// C_Login.
		right := &countingPIN{pin: userPIN}
		_, err = token.Open(context.Background(), token.Config{Kind: token.KindHSM, Module: modulePath, Label: info.Label, PIN: right, PINGuard: gc})
		if !errors.Is(err, token.ErrPINLocked) || right.n.Load() != 0 {
			t.Fatalf("right PIN on the cluster-locked token: %v after %d PIN reads, want ErrPINLocked and 0", err, right.n.Load())
		}
		// The security officer's unlock (a new user PIN) clears the
		// cluster-wide lock and is recorded in etcd.
		a, err := token.OpenAdmin(token.Config{Kind: token.KindHSM, Module: modulePath, Label: info.Label, PINGuard: gc})
		if err != nil {
			t.Fatal(err)
		}
		const newPIN = "735190"
		if err := a.Unlock([]byte(soPIN), []byte(newPIN), "officer-a"); err != nil {
			a.Close()
			t.Fatalf("SO unlock: %v", err)
		}
		a.Close()
		if s, err := g.State(id); err != nil || s.Locked || s.Failures != 0 {
			t.Fatalf("guard state after the SO unlock: %+v %v", s, err)
		}
		evs, err := st.PINCounters().Events(id)
		if err != nil || len(evs) < 2 || evs[0].Kind != "locked" || evs[len(evs)-1].Kind != "unlocked" || !contains(evs[len(evs)-1].Detail, "officer-a") {
			t.Fatalf("guard events in etcd: %v %+v, want locked ... unlocked by officer-a", err, evs)
		}
		t.Logf("guard events in etcd: %d (%d locked records: each process that saw the limit reached wrote one)", len(evs), len(evs)-1)
		tok, err := token.Open(context.Background(), token.Config{Kind: token.KindHSM, Module: modulePath, Label: info.Label, PIN: &switchablePIN{pin: newPIN}, PINGuard: gc})
		if err != nil {
			t.Fatalf("login with the new PIN after the unlock: %v", err)
		}
		tok.Close()
	})

	t.Run("holder PIN over three nodes' confirmation endpoints", func(t *testing.T) {
		ns := e.behNodes(t, nil)
		const key = "cl-holder"
		enrolled := confirmKeyOn(t, e, ns[0], ns[1], key)
		msg := transferJSON(t, "Li Lei", "42.00", "cl-holder-1")
		id := requestSignAfter(t, e, ns[2], key, msg, "holder_not_enrolled", enrolled)
		tok := holderTokenFor(t, ns, key, id)
		// Six wrong PINs, one node after another: the tries left count
		// down across nodes (one counter, in the key record in etcd).
		for i := 1; i <= 6; i++ {
			n := ns[(i-1)%3]
			st, out := n.confirmCall(t, e.hc, "POST", "/confirm/v1/c/"+tok+"/approve", map[string]any{"key": key, "digest": digestHex(msg), "pin": fmt.Sprintf("Wrong-%d-pin", i)})
			if i < 6 {
				m, _ := out["error"].(map[string]any)
				left := fmt.Sprintf("%d of 6 tries left", 6-i)
				if st != http.StatusForbidden || errCode(out) != "holder_pin_incorrect" || !strings.Contains(fmt.Sprint(m["message"]), left) {
					t.Fatalf("wrong PIN %d through %s: %d %v, want 403 holder_pin_incorrect %q", i, n.node, st, out, left)
				}
				continue
			}
			if st != http.StatusLocked || errCode(out) != "holder_locked" {
				t.Fatalf("wrong PIN 6 through %s: %d %v, want 423 holder_locked", n.node, st, out)
			}
		}
		// Locked everywhere: the confirmation ended, the right PIN is
		// refused, a new request is refused, every node shows the lock.
		if st, out := ns[0].confirmCall(t, e.hc, "POST", "/confirm/v1/c/"+tok+"/approve", map[string]any{"key": key, "digest": digestHex(msg), "pin": holderPIN}); st != http.StatusConflict || errCode(out) != "confirmation_closed" {
			t.Fatalf("right PIN after the lock: %d %v, want 409 confirmation_closed", st, out)
		}
		if st, out := ns[1].call(t, e.hc, "GET", "/v1/confirmations/"+id+"?wait=5s", nil); st != http.StatusOK || out["status"] != "rejected" || out["signature"] != nil {
			t.Fatalf("confirmation after the lock, from %s: %d %v, want rejected", ns[1].node, st, out)
		}
		for _, n := range ns {
			st, out := n.call(t, e.hc, "POST", "/v1/keys/"+key+"/sign", map[string]any{"message": msg})
			if st != http.StatusLocked || errCode(out) != "holder_locked" {
				t.Fatalf("sign on %s with a locked holder: %d %v, want 423 holder_locked", n.node, st, out)
			}
			_, k := n.call(t, e.hc, "GET", "/v1/keys/"+key, nil)
			if h, _ := k["holder"].(map[string]any); h["locked"] != true || h["failures"] != float64(6) {
				t.Fatalf("holder on %s: %v, want locked after 6", n.node, k["holder"])
			}
		}

		// Concurrent: the officer unlocks; waves of 30 wrong approvals at
		// once, ten per node, on one new confirmation, until the holder
		// locks. Approvals of one confirmation are serialised (an
		// approval holds it busy), so most are refused unchecked
		// (confirmation_closed); over all waves exactly six are checked
		// (five holder_pin_incorrect, one holder_locked), and the counter
		// in the key record says six, locked.
		if st, out := ns[2].call(t, e.hc, "POST", "/v1/keys/"+key+"/holder/unlock", nil); st != http.StatusOK {
			t.Fatalf("officer unlock: %d %v", st, out)
		}
		unlocked := time.Now()
		msg2 := transferJSON(t, "Li Lei", "43.00", "cl-holder-2")
		id2 := requestSignAfter(t, e, ns[0], key, msg2, "holder_locked", unlocked)
		tok2 := holderTokenFor(t, ns, key, id2)
		var checked, lockedAns, unchecked, other atomic.Int64
		waves := 0
		for ; waves < 20 && lockedAns.Load() == 0; waves++ {
			var wg sync.WaitGroup
			for i := 0; i < 30; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n := ns[i%3]
					st, out, err := doCall(e.hc, "POST", n.confirmURL+"/confirm/v1/c/"+tok2+"/approve", "", map[string]any{"key": key, "digest": digestHex(msg2), "pin": fmt.Sprintf("Wrong-c%d-pin", i)})
					switch {
					case err != nil:
						other.Add(1)
						t.Errorf("approval %d on %s: %v", i, n.node, err)
					case st == http.StatusForbidden && errCode(out) == "holder_pin_incorrect":
						checked.Add(1)
					case st == http.StatusLocked && errCode(out) == "holder_locked":
						lockedAns.Add(1)
					case st == http.StatusConflict && errCode(out) == "confirmation_closed":
						unchecked.Add(1)
					default:
						other.Add(1)
						t.Errorf("approval %d on %s: %d %v", i, n.node, st, out)
					}
				}()
			}
			wg.Wait()
		}
		_, k := ns[1].call(t, e.hc, "GET", "/v1/keys/"+key, nil)
		h, _ := k["holder"].(map[string]any)
		failures, _ := h["failures"].(float64)
		t.Logf("%d waves of 30 concurrent wrong approvals over three nodes: %d answered holder_pin_incorrect, %d holder_locked, %d refused unchecked (busy or ended), %d other; holder failures in the key record %v, locked %v",
			waves, checked.Load(), lockedAns.Load(), unchecked.Load(), other.Load(), failures, h["locked"])
		if other.Load() != 0 {
			t.Fatal("unexpected answers (above)")
		}
		if checked.Load() != 5 || lockedAns.Load() != 1 || failures != 6 || h["locked"] != true {
			t.Fatalf("concurrent wrong approvals: %d incorrect and %d locked answers, counter %v locked %v; want 5, 1, 6, true",
				checked.Load(), lockedAns.Load(), failures, h["locked"])
		}
		if st, out := ns[2].call(t, e.hc, "GET", "/v1/confirmations/"+id2+"?wait=5s", nil); st != http.StatusOK || out["status"] != "rejected" || out["signature"] != nil {
			t.Fatalf("confirmation after the concurrent lock: %d %v, want rejected", st, out)
		}
	})
}

// copyTree copies the directory src (regular files and directories) to
// dst.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// openTestStore opens the cluster's etcd store from the test process
// (reading the audit chain and PIN counters, or changing a key record as
// the passage of time would).
func openTestStore(t testing.TB, e *clusterEnv, node string) *etcdstore.Store {
	t.Helper()
	cfg, err := e.etcd.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: e.etcd.Endpoints(), TLS: cfg, Node: node, RequestTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestClusterPINLockoutChild is one of TestClusterPINLockout's three
// processes: it opens the token through token.Open with the guard's
// counters in etcd and a counting wrong PIN, N times at once, and prints
// what happened.
func TestClusterPINLockoutChild(t *testing.T) {
	childOnly(t)
	files := strings.Split(os.Getenv(envPINTLS), ",")
	if len(files) != 3 {
		t.Fatalf("%s: want ca,cert,key", envPINTLS)
	}
	pair, err := tls.LoadX509KeyPair(files[1], files[2])
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	node := os.Getenv(envPINNode)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: strings.Split(os.Getenv(envPINEtcd), ","), Node: node, RequestTimeout: 10 * time.Second,
		TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The counters in etcd, as a clustered keysvc node counts (cmd/keysvc
	// gives token.Open the same GuardConfig).
	gc := token.GuardConfig{Store: st.PINCounters()}
	n, _ := strconv.Atoi(os.Getenv(envPINAttempts))
	startNs, _ := strconv.ParseInt(os.Getenv(envPINStart), 10, 64)
	label := os.Getenv(envPINLabel)
	wrong := &countingPIN{pin: "999999"}
	late := time.Duration(0)
	if d := time.Until(time.Unix(0, startNs)); d > 0 {
		time.Sleep(d)
	} else {
		late = -d
	}
	var incorrect, locked, other atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := token.Open(context.Background(), token.Config{Kind: token.KindHSM, Module: modulePath, Label: label, PIN: wrong, PINGuard: gc})
			switch {
			case err == nil:
				tok.Close()
				other.Add(1)
				t.Error("a wrong PIN opened the token")
			case errors.Is(err, token.ErrPINIncorrect):
				incorrect.Add(1)
			case errors.Is(err, token.ErrPINLocked):
				locked.Add(1)
			default:
				other.Add(1)
				t.Errorf("unexpected: %v", err)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("pin-child node=%s logins=%d incorrect=%d locked=%d other=%d late=%s\n", node, wrong.n.Load(), incorrect.Load(), locked.Load(), other.Load(), late.Round(time.Millisecond))
}

// --- 2. confirmations across nodes ----------------------------------------

// TestClusterConfirmAcrossNodes: a confirmation requested on node A is
// approved through node B's confirmation endpoint and collected on node
// C; one pending confirmation per key in the whole cluster; an unanswered
// confirmation expires cluster-wide though its node was killed -9.
func TestClusterConfirmAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster and three keysvc nodes")
	}
	e := newClusterEnv(t)
	ns := e.behNodes(t, nil)
	a, b, c := ns[0], ns[1], ns[2]
	const key = "cl-confirm"
	enrolled := confirmKeyOn(t, e, a, c, key)

	msg := transferJSON(t, "Han Meimei", "1250.00", "cl-across-1")
	id := requestSignAfter(t, e, a, key, msg, "holder_not_enrolled", enrolled)
	for _, n := range []*behNode{b, c} {
		st, out := n.call(t, e.hc, "POST", "/v1/keys/"+key+"/sign", map[string]any{"message": transferJSON(t, "Mallory", "9.00", "cl-across-x")})
		if st != http.StatusConflict || errCode(out) != "confirmation_pending" {
			t.Fatalf("second request on %s while %s's is pending: %d %v, want 409 confirmation_pending", n.node, a.node, st, out)
		}
	}
	tok := holderTokenFor(t, ns, key, id)
	if st, view := b.confirmCall(t, e.hc, "GET", "/confirm/v1/c/"+tok, nil); st != http.StatusOK || view["digest"] != digestHex(msg) || !strings.Contains(fmt.Sprint(view["display"]), "1,250.00 CNY") {
		t.Fatalf("holder view on %s of %s's request: %d %v", b.node, a.node, st, view)
	}
	// C long-polls while B approves.
	got := make(chan map[string]any, 1)
	go func() {
		_, out, err := doCall(e.hc, "GET", c.url+"/v1/confirmations/"+id+"?wait=20s", officerToken, nil)
		if err != nil {
			out = map[string]any{"transport": err.Error()}
		}
		got <- out
	}()
	time.Sleep(100 * time.Millisecond)
	approvedAt := time.Now()
	if st, out := b.confirmCall(t, e.hc, "POST", "/confirm/v1/c/"+tok+"/approve", map[string]any{"key": key, "digest": digestHex(msg), "pin": holderPIN}); st != http.StatusOK || out["status"] != "approved" || out["signature"] != nil {
		t.Fatalf("approve on %s: %d %v", b.node, st, out)
	}
	out := <-got
	t.Logf("%s's long poll woke %v after %s's approval", c.node, time.Since(approvedAt).Round(time.Millisecond), b.node)
	sig, _ := out["signature"].(string)
	if out["status"] != "approved" || !strings.HasPrefix(sig, "kw:v1:") {
		t.Fatalf("collect on %s: %v", c.node, out)
	}
	if st, v := a.call(t, e.hc, "POST", "/v1/keys/"+key+"/verify", map[string]any{"message": msg, "signature": sig}); st != http.StatusOK || v["valid"] != true {
		t.Fatalf("the signature collected on %s does not verify over the message on %s: %d %v", c.node, a.node, st, v)
	}
	if st, v := a.call(t, e.hc, "POST", "/v1/keys/"+key+"/verify", map[string]any{"message": append(slices.Clone(msg), ' '), "signature": sig}); st != http.StatusOK || v["valid"] != false {
		t.Fatalf("the signature verifies over other bytes: %d %v", st, v)
	}

	// Expiry with the requesting node dead.
	msg2 := transferJSON(t, "Han Meimei", "7.00", "cl-across-2")
	id2 := requestSign(t, e, b, key, msg2)
	tok2 := holderTokenFor(t, ns, key, id2)
	if st, out := c.call(t, e.hc, "POST", "/v1/keys/"+key+"/sign", map[string]any{"message": msg}); st != http.StatusConflict || errCode(out) != "confirmation_pending" {
		t.Fatalf("request on %s while %s's is pending: %d %v", c.node, b.node, st, out)
	}
	_, view := c.call(t, e.hc, "GET", "/v1/confirmations/"+id2, nil)
	expires, err := time.Parse(time.RFC3339Nano, fmt.Sprint(view["expires_at"]))
	if err != nil {
		t.Fatalf("confirmation view from %s has no expires_at: %v", c.node, view)
	}
	b.kill9(t)
	killedAt := time.Now()
	deadline := time.Now().Add(40 * time.Second)
	var end map[string]any
	for {
		st, out, err := doCall(e.hc, "GET", c.url+"/v1/confirmations/"+id2+"?wait=15s", officerToken, nil)
		if err != nil || st != http.StatusOK {
			t.Fatalf("poll on %s after %s was killed: %d %v %v", c.node, b.node, st, out, err)
		}
		if out["status"] != "pending" {
			end = out
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("confirmation %s still pending 40 s after its node was killed (expires_at %s)", id2, expires)
		}
	}
	t.Logf("%s's confirmation, its node killed -9: %s seen on %s %v after the kill, %v after its expires_at",
		b.node, end["status"], c.node, time.Since(killedAt).Round(time.Millisecond), time.Since(expires).Round(time.Millisecond))
	if end["status"] != "expired" || end["signature"] != nil {
		t.Fatalf("the dead node's confirmation ended %v, want expired without a signature", end)
	}
	if st, out := a.confirmCall(t, e.hc, "POST", "/confirm/v1/c/"+tok2+"/approve", map[string]any{"key": key, "digest": digestHex(msg2), "pin": holderPIN}); st != http.StatusConflict || errCode(out) != "confirmation_closed" {
		t.Fatalf("late approval on %s: %d %v, want 409 confirmation_closed", a.node, st, out)
	}
	// The key is free again, on any node.
	id3 := requestSign(t, e, a, key, transferJSON(t, "Han Meimei", "8.00", "cl-across-3"))
	if st, out := c.call(t, e.hc, "DELETE", "/v1/confirmations/"+id3, nil); st != http.StatusOK {
		t.Fatalf("cancel on %s of %s's request: %d %v", c.node, a.node, st, out)
	}
	verifyCluster(t, e, a.clusterNode)
}

// --- 3. revocation lag ------------------------------------------------------

// signEvent is one sign request of a signing loop.
type signEvent struct {
	start, end time.Time
	status     int
	code       string // error code of a refusal
	sig        string
	err        error
}

// signLoop signs in a loop through one node until stopped.
type signLoop struct {
	n    *clusterNode
	mu   sync.Mutex
	evs  []signEvent
	stop chan struct{}
	done chan struct{}
}

func startSignLoop(hc *http.Client, n *clusterNode, key string) *signLoop {
	l := &signLoop{n: n, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			ev := signEvent{start: time.Now()}
			st, out, err := doCall(hc, "POST", n.url+"/v1/keys/"+key+"/sign", officerToken, map[string]any{"message": b64(fmt.Sprintf("%s-%d", n.node, i))})
			ev.end, ev.status, ev.err, ev.code = time.Now(), st, err, errCode(out)
			ev.sig, _ = out["signature"].(string)
			l.mu.Lock()
			l.evs = append(l.evs, ev)
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *signLoop) halt() { close(l.stop); <-l.done }

// find returns the first event after from that satisfies ok.
func (l *signLoop) find(from int, ok func(signEvent) bool) (signEvent, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ev := range l.evs[min(from, len(l.evs)):] {
		if ok(ev) {
			return ev, true
		}
	}
	return signEvent{}, false
}

func (l *signLoop) len() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.evs) }

// revocationBound: after node A's 200 to a disable, no node may start a
// signature with the version later than this. The feed is an etcd watch
// (a commit reaches every node in milliseconds, measured below); 2 s is
// also the nodes' etcd request_timeout, past which a node cut off from
// etcd fails writes anyway. A node still signing after it has not
// followed the feed.
const revocationBound = 2 * time.Second

// TestClusterRevocationLag: nodes B and C sign in loops with version 1
// (the primary) of a key; node A disables it, 20 times (enabling it again
// between): the time from A's 200 to each signer's first refusal is
// measured and reported; no signature may start later than
// revocationBound after A's 200, and every refusal must be
// version_not_usable while the version is disabled.
func TestClusterRevocationLag(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster and three keysvc nodes")
	}
	e := newClusterEnv(t)
	a := e.addNode(t, "keysvc-a", "")
	signers := []*clusterNode{e.addNode(t, "keysvc-b", ""), e.addNode(t, "keysvc-c", "")}
	const key = "cl-revoke"
	if st, out := a.call(t, e.hc, "POST", "/v1/keys", map[string]any{"name": key, "purpose": "sign", "algorithm": "ec-p256", "protection": "wrapped",
		"policy": map[string]any{"grants": []any{map[string]any{"client": "officer", "ops": []string{"sign", "verify"}}}}}); st != http.StatusCreated {
		t.Fatalf("create: %d %v", st, out)
	}
	var loops []*signLoop
	for _, n := range signers {
		loops = append(loops, startSignLoop(e.hc, n, key))
	}
	defer func() {
		for _, l := range loops {
			select {
			case <-l.done:
			default:
				l.halt()
			}
		}
	}()
	waitEv := func(l *signLoop, from int, what string, ok func(signEvent) bool) signEvent {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if ev, found := l.find(from, ok); found {
				return ev
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no %s within 10 s", l.n.node, what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	const repeats = 20
	var lags, enableLags []time.Duration
	var lateMax time.Duration
	type window struct{ enabledAt, disableSent, disabledAt time.Time }
	var windows []window
	enabledAt := time.Now()
	for r := 0; r < repeats; r++ {
		if r > 0 {
			st, out := a.call(t, e.hc, "POST", "/v1/keys/"+key+"/versions/1/enable", nil)
			if st != http.StatusOK {
				t.Fatalf("repeat %d: enable on %s: %d %v", r, a.node, st, out)
			}
			enabledAt = time.Now()
		}
		marks := make([]int, len(loops))
		for i, l := range loops {
			marks[i] = l.len()
			ev := waitEv(l, marks[i], "signature after the enable", func(ev signEvent) bool { return ev.status == http.StatusOK && ev.start.After(enabledAt) })
			if r > 0 {
				enableLags = append(enableLags, ev.end.Sub(enabledAt))
			}
		}
		sent := time.Now()
		st, out := a.call(t, e.hc, "POST", "/v1/keys/"+key+"/versions/1/disable", nil)
		if st != http.StatusOK {
			t.Fatalf("repeat %d: disable on %s: %d %v", r, a.node, st, out)
		}
		disabledAt := time.Now()
		windows = append(windows, window{enabledAt, sent, disabledAt})
		for i, l := range loops {
			ev := waitEv(l, marks[i], "refusal after the disable", func(ev signEvent) bool { return ev.status != http.StatusOK && ev.end.After(sent) })
			lags = append(lags, ev.end.Sub(disabledAt))
		}
	}
	for _, l := range loops {
		l.halt()
	}

	// Every event, judged against the windows.
	var total, refusals, wrong int
	for _, l := range loops {
		for _, ev := range l.evs {
			total++
			if ev.err != nil {
				wrong++
				t.Errorf("%s: sign: %v", l.n.node, ev.err)
				continue
			}
			if ev.status == http.StatusOK {
				if !strings.HasPrefix(ev.sig, "kw:v1:") {
					wrong++
					t.Errorf("%s: signature %q is not version 1's", l.n.node, ev.sig)
				}
				continue
			}
			refusals++
			if ev.code != "version_not_usable" {
				wrong++
				t.Errorf("%s: refusal %d %q, want version_not_usable", l.n.node, ev.status, ev.code)
			}
		}
	}
	// A signature that started after A's 200 to a disable and before the
	// next enable was sent: it used a disabled version.
	for wi, w := range windows {
		next := time.Now()
		if wi+1 < len(windows) {
			next = windows[wi+1].enabledAt
		}
		for _, l := range loops {
			for _, ev := range l.evs {
				if ev.status != http.StatusOK || !ev.start.After(w.disabledAt) || !ev.start.Before(next) {
					continue
				}
				late := ev.start.Sub(w.disabledAt)
				lateMax = max(lateMax, late)
				if late > revocationBound {
					t.Errorf("%s signed with the disabled version %v after %s's 200 (bound %v)", l.n.node, late, a.node, revocationBound)
				}
			}
			// A refusal long after an enable's 200 and before the next
			// disable was sent refused an enabled version.
			for _, ev := range l.evs {
				if ev.status != http.StatusOK && ev.err == nil && ev.start.After(w.enabledAt.Add(revocationBound)) && ev.end.Before(w.disableSent) {
					wrong++
					t.Errorf("%s refused the enabled version %v after the enable's 200: %d %q", l.n.node, ev.start.Sub(w.enabledAt), ev.status, ev.code)
				}
			}
		}
	}
	p := func(ds []time.Duration, q float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[int(math.Ceil(q*float64(len(s))))-1]
	}
	t.Logf("%d sign requests on %d nodes, %d refused (all version_not_usable: %v)", total, len(loops), refusals, wrong == 0)
	t.Logf("revocation lag, %s's 200 to a signer's first refusal, %d samples: p50 %v, p90 %v, max %v, min %v",
		a.node, len(lags), p(lags, 0.5).Round(time.Microsecond), p(lags, 0.9).Round(time.Microsecond), p(lags, 1).Round(time.Microsecond), slices.Min(lags).Round(time.Microsecond))
	t.Logf("latest signature started after %s's 200 to a disable: %v after it (bound %v)", a.node, lateMax.Round(time.Microsecond), revocationBound)
	if len(enableLags) > 0 {
		t.Logf("enable lag, %s's 200 to a signer's first signature, %d samples: p50 %v, max %v", a.node, len(enableLags), p(enableLags, 0.5).Round(time.Microsecond), p(enableLags, 1).Round(time.Microsecond))
	}
	if wrong > 0 {
		t.Fatalf("%d wrong answers (above)", wrong)
	}
	if p(lags, 1) > revocationBound {
		t.Fatalf("a signer's first refusal came %v after the disable's 200 (bound %v)", p(lags, 1), revocationBound)
	}
}

// --- 4. one scheduler -------------------------------------------------------

var leaderRE = regexp.MustCompile(`(?m)^keyward_scheduler_leader (\S+)$`)

// leaderGauge reads keyward_scheduler_leader from n's /metrics (-1: no
// answer).
func leaderGauge(hc *http.Client, n *behNode) float64 {
	resp, err := hc.Get(n.metricsURL)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := leaderRE.FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		return -1
	}
	return v
}

// leaders returns the nodes among ns whose gauge is 1, and whether every
// one of them answered.
func leaders(hc *http.Client, ns []*behNode) ([]*behNode, bool) {
	var out []*behNode
	all := true
	for _, n := range ns {
		switch leaderGauge(hc, n) {
		case 1:
			out = append(out, n)
		case 0:
		default:
			all = false
		}
	}
	return out, all
}

// TestClusterSchedulerOnce: three nodes' schedulers alive (500 ms): each
// due destruction and rotation happens once — one "destroy" record per
// version, one "rotate" record and one new version per due rotation —
// and exactly one node reports keyward_scheduler_leader 1. Kill -9 the
// leader: another takes over (reported) and due work still runs once.
func TestClusterSchedulerOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster and three keysvc nodes")
	}
	e := newClusterEnv(t)
	const base = "destroy: {default_delay: 24h, min_delay: 1h}"
	edit := func(y string) string {
		if !strings.Contains(y, base) {
			t.Fatalf("node YAML has no %q line to edit:\n%s", base, y)
		}
		return strings.Replace(y, base, "destroy: {default_delay: 2s, min_delay: 1s}", 1)
	}
	ns := e.behNodes(t, edit)
	mc := &http.Client{Timeout: 2 * time.Second}
	st := openTestStore(t, e, "scheduler-check")

	// Exactly one leader among the three.
	deadline := time.Now().Add(15 * time.Second)
	var leader *behNode
	for {
		ls, all := leaders(mc, ns)
		if all && len(ls) == 1 {
			leader = ls[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no single scheduler leader among three nodes 15 s after start: %d report 1 (all answered: %v)", len(ls), all)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("scheduler leader: %s", leader.node)
	// Sample every node's gauge every 100 ms for the rest of the test:
	// never two nodes leading at once.
	var samples, doubles atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if ls, _ := leaders(mc, ns); len(ls) > 1 {
				doubles.Add(1)
			}
			samples.Add(1)
		}
	}()
	defer func() {
		close(stopSampling)
		<-sampled
		t.Logf("leader gauge sampled %d times on every node: %d samples with two or more nodes leading", samples.Load(), doubles.Load())
		if doubles.Load() > 0 {
			t.Errorf("%d samples saw two or more nodes leading", doubles.Load())
		}
	}()

	type work struct{ destroy, rotate []string }
	// prepare creates, through the nodes in turn, keys whose version 1
	// is due for destruction in 1 s (after a rotation made v2 the
	// primary), and keys with a rotation period of 1 h whose last
	// rotation this test moves 2 h back in etcd (the processes' clocks
	// cannot be moved: this is the record as it would be 2 h later).
	prepare := func(round int) work {
		var w work
		for i := 0; i < 3; i++ {
			n := ns[i%len(ns)]
			if !n.running() {
				n = ns[(i+1)%len(ns)]
				if !n.running() {
					n = ns[(i+2)%len(ns)]
				}
			}
			prot := "wrapped"
			if i == 2 {
				prot = "hsm"
			}
			name := fmt.Sprintf("sch-d%d-%d", round, i)
			if s, out := n.call(t, e.hc, "POST", "/v1/keys", map[string]any{"name": name, "purpose": "sign", "algorithm": "ec-p256", "protection": prot,
				"policy": map[string]any{"grants": []any{map[string]any{"client": "officer", "ops": []string{"sign"}}}}}); s != http.StatusCreated {
				t.Fatalf("create %s: %d %v", name, s, out)
			}
			if s, out := n.call(t, e.hc, "POST", "/v1/keys/"+name+"/rotate", nil); s != http.StatusOK {
				t.Fatalf("rotate %s: %d %v", name, s, out)
			}
			if s, out := n.call(t, e.hc, "POST", "/v1/keys/"+name+"/versions/1/schedule-destroy", map[string]any{"delay": "1s"}); s != http.StatusOK {
				t.Fatalf("schedule-destroy %s v1: %d %v", name, s, out)
			}
			w.destroy = append(w.destroy, name)
			if i == 2 {
				continue
			}
			name = fmt.Sprintf("sch-r%d-%d", round, i)
			if s, out := n.call(t, e.hc, "POST", "/v1/keys", map[string]any{"name": name, "purpose": "sign", "algorithm": "ec-p256", "protection": "wrapped",
				"rotation_period": "1h", "policy": map[string]any{"grants": []any{map[string]any{"client": "officer", "ops": []string{"sign"}}}}}); s != http.StatusCreated {
				t.Fatalf("create %s: %d %v", name, s, out)
			}
			if _, err := st.UpdateKey(name, func(k *keysvc.Key) error {
				k.LastRotated = k.LastRotated.Add(-2 * time.Hour)
				k.Revision++ // as keysvc does on every update: the nodes' caches take it
				return nil
			}, nil); err != nil {
				t.Fatal(err)
			}
			w.rotate = append(w.rotate, name)
		}
		return w
	}
	// done reports whether every item of w has happened (read through n).
	done := func(n *behNode, w work) bool {
		for _, name := range w.destroy {
			_, k := n.call(t, e.hc, "GET", "/v1/keys/"+name, nil)
			vs, _ := k["versions"].([]any)
			if len(vs) == 0 || vs[0].(map[string]any)["state"] != "destroyed" {
				return false
			}
		}
		for _, name := range w.rotate {
			_, k := n.call(t, e.hc, "GET", "/v1/keys/"+name, nil)
			if k["primary"] != float64(2) {
				return false
			}
		}
		return true
	}
	// once waits for w to be done, lets the schedulers tick a few more
	// times, and checks the chain and the keys: each item once.
	once := func(n *behNode, w work, since time.Time) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !done(n, w) {
			if time.Now().After(deadline) {
				t.Fatalf("due work not done 30 s later (read through %s)", n.node)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("due work done %v after it was prepared", time.Since(since).Round(time.Millisecond))
		time.Sleep(2 * time.Second) // four more scheduler intervals on every node
		destroys := map[string]int{}
		rotates := map[string]int{}
		var other []string
		if err := st.AuditRecords(1, func(r audit.Record) error {
			switch {
			case r.Op == "destroy" && slices.Contains(w.destroy, r.Key):
				if r.Result == "ok" && r.Version == 1 {
					destroys[r.Key]++
				} else {
					other = append(other, fmt.Sprintf("%s %s v%d %s by %s", r.Op, r.Key, r.Version, r.Result, r.Client))
				}
			case r.Op == "rotate" && slices.Contains(w.rotate, r.Key):
				if r.Result == "ok" && r.Client == "scheduler" {
					rotates[r.Key]++
				} else {
					other = append(other, fmt.Sprintf("%s %s v%d %s by %s", r.Op, r.Key, r.Version, r.Result, r.Client))
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		t.Logf("audit: destroy records %v, scheduler rotate records %v, other records of these keys %q", destroys, rotates, other)
		for _, name := range w.destroy {
			if destroys[name] != 1 {
				t.Errorf("%s v1: %d destroy records, want 1", name, destroys[name])
			}
		}
		for _, name := range w.rotate {
			if rotates[name] != 1 {
				t.Errorf("%s: %d rotate records by the scheduler, want 1", name, rotates[name])
			}
			_, k := n.call(t, e.hc, "GET", "/v1/keys/"+name, nil)
			if vs, _ := k["versions"].([]any); len(vs) != 2 || k["primary"] != float64(2) {
				t.Errorf("%s after its due rotation: primary %v, %d versions, want 2 and 2", name, k["primary"], len(vs))
			}
			// The new version is real: it signs.
			if s, out := n.call(t, e.hc, "POST", "/v1/keys/"+name+"/sign", map[string]any{"message": b64("after rotation")}); s != http.StatusOK || !strings.HasPrefix(fmt.Sprint(out["signature"]), "kw:v2:") {
				t.Errorf("%s signs after its due rotation: %d %v, want a kw:v2: signature", name, s, out)
			}
		}
		if len(other) > 0 {
			t.Errorf("failed or repeated scheduler records: %q", other)
		}
		if t.Failed() {
			t.FailNow()
		}
	}

	prepared := time.Now()
	w1 := prepare(1)
	once(ns[0], w1, prepared)
	if ls, all := leaders(mc, ns); !all || len(ls) != 1 {
		t.Fatalf("after the first round: %d nodes report leading (all answered: %v), want exactly 1", len(ls), all)
	}

	// Kill -9 the leader, with due work prepared just before: it becomes
	// due while nobody leads, and the next leader does it, once.
	var alive []*behNode
	for _, n := range ns {
		if n != leader {
			alive = append(alive, n)
		}
	}
	prepared = time.Now()
	w2 := prepare(2)
	if ls, _ := leaders(mc, ns); len(ls) == 1 {
		leader = ls[0]
		alive = alive[:0]
		for _, n := range ns {
			if n != leader {
				alive = append(alive, n)
			}
		}
	}
	leader.kill9(t)
	killedAt := time.Now()
	deadline = time.Now().Add(30 * time.Second)
	var next *behNode
	for {
		ls, all := leaders(mc, alive)
		if all && len(ls) == 1 {
			next = ls[0]
			break
		}
		if len(ls) > 1 {
			t.Fatalf("two nodes report leading after the leader was killed")
		}
		if time.Now().After(deadline) {
			t.Fatalf("no node took the scheduler over 30 s after the leader %s was killed -9", leader.node)
		}
		time.Sleep(50 * time.Millisecond)
	}
	takeover := time.Since(killedAt)
	t.Logf("leader %s killed -9: %s leads %v later (etcd session TTL %v)", leader.node, next.node, takeover.Round(time.Millisecond), etcdstore.SessionTTL)
	if takeover > etcdstore.SessionTTL+5*time.Second {
		t.Errorf("takeover took %v, beyond the session TTL %v and a campaign's margin", takeover, etcdstore.SessionTTL)
	}
	once(alive[0], w2, prepared)
	if ls, all := leaders(mc, alive); !all || len(ls) != 1 {
		t.Fatalf("after the second round: %d nodes report leading (all answered: %v), want exactly 1", len(ls), all)
	}
	verifyCluster(t, e, alive[0].clusterNode)
}
