//go:build linux

package softhsmtests

// keysvc's hot backup (issue 17 item 4) on real components: a keysvc
// process on a SoftHSM2 token signing under load while `keysvc backup`
// copies its store, the copy restored and checked (`keysvc audit verify
// -config`, `keysvc serve` signing with the restored keys), a copy with one
// audit byte flipped refused; and the same for the etcd store: a snapshot
// taken through a keysvc node during signing on a 3-member etcd cluster,
// restored into a new cluster with etcdutl, verified and served.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/boltstore/boltsurgeon"
	"github.com/keyward/keyward/keysvc/client"
	"github.com/keyward/keyward/keysvc/etcdstore/etcdlocal"
	"github.com/keyward/keyward/keysvc/wire"
)

// backupSigners is the signing load's concurrency.
const backupSigners = 16

// signLoad signs with every key in turn from backupSigners goroutines
// until end; it counts what was answered and what failed.
type signLoad struct {
	ok, failed atomic.Int64
	worst      atomic.Int64 // the slowest signature, ns
	mu         sync.Mutex
	first      error
	stop       chan struct{}
	wg         sync.WaitGroup
	start      time.Time
}

func startSignLoad(cl *client.Client, names []string) *signLoad {
	l := &signLoad{stop: make(chan struct{}), start: time.Now()}
	for w := range backupSigners {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				name := names[(w+i)%len(names)]
				t0 := time.Now()
				_, err := cl.Sign(context.Background(), name, wire.SignRequest{Message: wire.Base64(fmt.Sprintf("load %d %d", w, i))})
				for d := int64(time.Since(t0)); ; {
					old := l.worst.Load()
					if d <= old || l.worst.CompareAndSwap(old, d) {
						break
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if l.first == nil {
						l.first = fmt.Errorf("sign %s: %w", name, err)
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

// end stops the load and returns signatures per second and the first error.
func (l *signLoad) end() (perSec float64, ok, failed int64, first error) {
	close(l.stop)
	l.wg.Wait()
	d := time.Since(l.start).Seconds()
	return float64(l.ok.Load()) / d, l.ok.Load(), l.failed.Load(), l.first
}

// slowest is the longest signature of the load (for the report).
func (l *signLoad) slowest() time.Duration { return time.Duration(l.worst.Load()) }

// backupKeys creates an hsm and a wrapped EC P-256 signing key (bankapp
// signs, officer reads the public key) and returns their public keys.
func backupKeys(t *testing.T, officer *client.Client, prefix string) ([]string, map[string]*ecdsa.PublicKey) {
	t.Helper()
	ctx := context.Background()
	pubs := map[string]*ecdsa.PublicKey{}
	var names []string
	for _, prot := range []wire.Protection{wire.ProtectionHSM, wire.ProtectionWrapped} {
		name := prefix + "-" + string(prot)
		if _, err := officer.CreateKey(ctx, wire.CreateKeyRequest{Name: name, Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: prot,
			Policy: wire.Policy{Grants: []wire.Grant{{Client: "bankapp", Ops: []wire.Op{wire.OpSign}}, {Client: "officer", Ops: []wire.Op{wire.OpPublic}}}}}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		pk, err := officer.PublicKey(ctx, name, 0)
		if err != nil {
			t.Fatal(err)
		}
		pubs[name] = parseECPublicPEM(t, pk.PEM)
		names = append(names, name)
	}
	return names, pubs
}

// signAndCheck signs msg with each key through cl and verifies the
// signature here against the public key read before the backup: the
// restored store names the same key material.
func signAndCheck(t *testing.T, cl *client.Client, pubs map[string]*ecdsa.PublicKey, msg string) {
	t.Helper()
	for name, pub := range pubs {
		r, err := cl.Sign(context.Background(), name, wire.SignRequest{Message: wire.Base64(msg)})
		if err != nil {
			t.Fatalf("sign %s on the restored keysvc: %v", name, err)
		}
		parts := strings.SplitN(r.Signature, ":", 3)
		if len(parts) != 3 {
			t.Fatalf("signature %q is not kw:v<n>:<base64>", r.Signature)
		}
		der, err := base64.StdEncoding.DecodeString(parts[2])
		if err != nil || !verifyMsg(pub, msg, der) {
			t.Fatalf("%s's signature from the restored keysvc does not verify with the key's public key from before the backup (%v)", name, err)
		}
	}
}

var backupOutRE = regexp.MustCompile(`(?m)^  size (\d+) bytes\n  sha256 ([0-9a-f]{64})$`)

// keysvcBackup runs `keysvc backup -config conf -token-file tokenFile -out
// out` and returns the size and SHA-256 it printed; err is its exit error
// with its output.
func keysvcBackup(t *testing.T, bin, conf, tokenFile, out string) (int64, string, error) {
	t.Helper()
	b, err := exec.Command(bin, "backup", "-config", conf, "-token-file", tokenFile, "-out", out).CombinedOutput()
	if err != nil {
		return 0, "", fmt.Errorf("%w: %s", err, b)
	}
	m := backupOutRE.FindSubmatch(b)
	if m == nil {
		t.Fatalf("keysvc backup printed no size and sha256:\n%s", b)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n, string(m[2]), nil
}

// fileSHA256 is the hex SHA-256 and size of path.
func fileSHA256(t *testing.T, path string) (int64, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return int64(len(b)), hex.EncodeToString(s[:])
}

// backupsUnderLoad signs for 3 s without a backup, then for 3 s while
// `keysvc backup` runs back to back, and returns the last copy. Every
// signature and every backup must succeed; the figures are logged.
func backupsUnderLoad(t *testing.T, bin, conf, tokenFile, dir string, bank *client.Client, names []string) (string, int64, string) {
	t.Helper()
	l := startSignLoad(bank, names)
	time.Sleep(3 * time.Second)
	base, baseOK, failed, first := l.end()
	baseWorst := l.slowest()
	if failed > 0 {
		t.Fatalf("%d of %d signatures failed without a backup: %v", failed, baseOK+failed, first)
	}
	l = startSignLoad(bank, names)
	var (
		last        string
		size        int64
		sum         string
		took        []time.Duration
		deadline    = time.Now().Add(3 * time.Second)
		backupStart = time.Now()
	)
	for i := 0; i == 0 || time.Now().Before(deadline); i++ {
		out := filepath.Join(dir, fmt.Sprintf("backup-%d.db", i))
		t0 := time.Now()
		n, s, err := keysvcBackup(t, bin, conf, tokenFile, out)
		if err != nil {
			l.end()
			t.Fatalf("keysvc backup %d under load: %v", i, err)
		}
		took = append(took, time.Since(t0))
		if fn, fs := fileSHA256(t, out); fn != n || fs != s {
			l.end()
			t.Fatalf("keysvc backup printed %d bytes sha256 %s; %s has %d bytes sha256 %s", n, s, out, fn, fs)
		}
		if st, err := os.Stat(out); err != nil {
			l.end()
			t.Fatal(err)
		} else if st.Mode().Perm() != 0o600 {
			l.end()
			t.Fatalf("%s: mode %v, want 0600", out, st.Mode().Perm())
		}
		last, size, sum = out, n, s
	}
	during, duringOK, failed, first := l.end()
	duringWorst := l.slowest()
	if failed > 0 {
		t.Fatalf("%d of %d signatures failed while backups ran: %v", failed, duringOK+failed, first)
	}
	t.Logf("signing (%d clients, %d keys): %.0f/s without a backup (%d, slowest %s), %.0f/s while %d backups ran back to back for %s (%d, slowest %s); backup size %d bytes, each %v (the keysvc backup command, start to end)",
		backupSigners, len(names), base, baseOK, baseWorst.Round(time.Millisecond), during, len(took), time.Since(backupStart).Round(time.Millisecond), duringOK, duringWorst.Round(time.Millisecond), size, took)
	return last, size, sum
}

// TestKeysvcHotBackupBolt: `keysvc backup` copies a running keysvc's bbolt
// store while 16 clients sign; no signature fails. The copy, put in a new
// data_dir, passes `keysvc audit verify -config` and `keysvc serve` starts
// on it and signs with the restored hsm and wrapped keys (same token). The
// live store's audit log holds the backup's record with the copy's size
// and SHA-256. A copy with one audit byte flipped fails verify. The
// command refuses an existing -out and a wrong token, leaving no file.
func TestKeysvcHotBackupBolt(t *testing.T) {
	dir := t.TempDir()
	tt := newTestTLS(t, dir)
	ks := startKeysvc(t, dir, tt)
	conf := filepath.Join(dir, "keysvc.yaml")
	dataDir := filepath.Join(dir, "keysvc")
	officer := ks.kmsClient(t, officerToken, 30*time.Second, 4)
	names, pubs := backupKeys(t, officer, "bk")
	tokenFile := filepath.Join(dir, "officer.token")
	writeFiles(t, tokenFile, officerToken+"\n")
	bank := ks.kmsClient(t, bankappToken, 30*time.Second, backupSigners)

	copyPath, size, sum := backupsUnderLoad(t, ks.bin, conf, tokenFile, dir, bank, names)

	// The command's refusals leave nothing behind.
	if _, _, err := keysvcBackup(t, ks.bin, conf, tokenFile, copyPath); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("keysvc backup over an existing file: %v", err)
	}
	wrong := filepath.Join(dir, "wrong.token")
	writeFiles(t, wrong, "not-the-officer-token\n")
	refused := filepath.Join(dir, "refused.db")
	if _, _, err := keysvcBackup(t, ks.bin, conf, wrong, refused); err == nil || !strings.Contains(err.Error(), "unauthenticated") {
		t.Fatalf("keysvc backup with a wrong token: %v", err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "*refused*")); len(leftovers) > 0 {
		t.Fatalf("a refused backup left %v", leftovers)
	}
	ks.stop()

	// The live store recorded the copy it handed out.
	live, err := boltstore.Open(filepath.Join(dataDir, "keysvc.db"), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("bytes=%d sha256=%s", size, sum)
	found := false
	err = live.AuditRecords(1, func(r audit.Record) error {
		found = found || (r.Op == keysvc.BackupOp && r.Result == "ok" && r.Client == "officer" && r.Detail == want)
		return nil
	})
	live.Close()
	if err != nil || !found {
		t.Fatalf("no backup record %q in the live store's audit log (%v)", want, err)
	}

	// Restore: the copy as keysvc.db of a new data_dir, the same token.
	rdir := filepath.Join(dir, "restored")
	rconf := restoredBoltConfig(t, conf, dataDir, rdir, copyPath)
	pub := filepath.Join(dataDir, "audit-key.pem") // the officers keep their own copy
	t0 := time.Now()
	out, err := exec.Command(ks.bin, "audit", "verify", "-config", rconf, "-pubkey", pub).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit chain ok") {
		t.Fatalf("audit verify on the restored copy: %v\n%s", err, out)
	}
	verifyTook := time.Since(t0)
	rks := newDaemon(t, "keysvc", rdir, tt)
	rewriteListen(t, rconf, rks.addr)
	rks.args = []string{"serve", "-config", rconf}
	t1 := time.Now()
	rks.start(t)
	t.Logf("restore drill: audit verify of the copy %s (%s), keysvc serve on it healthy in %s", verifyTook.Round(time.Millisecond), strings.SplitN(string(out), "\n", 2)[0], time.Since(t1).Round(time.Millisecond))
	signAndCheck(t, rks.kmsClient(t, bankappToken, 30*time.Second, 2), pubs, "signed by the restored keysvc")
	rks.stop()

	// One flipped byte in one audit record of a copy: verify refuses it.
	tdir := filepath.Join(dir, "tampered")
	tconf := restoredBoltConfig(t, conf, dataDir, tdir, copyPath)
	tpath := filepath.Join(tdir, "data", "keysvc.db")
	victim := firstRecordOf(t, tpath, "bankapp")
	db, err := bolt.Open(tpath, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = boltsurgeon.TamperAudit(db, victim, func(raw []byte) []byte {
		i := bytes.Index(raw, []byte(`"client":"`))
		if i < 0 {
			return raw
		}
		raw = bytes.Clone(raw)
		raw[i+len(`"client":"`)] ^= 0x01 // "bankapp" → "cankapp": still valid JSON
		return raw
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(ks.bin, "audit", "verify", "-config", tconf, "-pubkey", pub).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "chain broken") {
		t.Fatalf("audit verify passed a copy with a flipped byte in record %d (%v):\n%s", victim, err, out)
	}
}

// firstRecordOf is the seq of the first audit record of client in the
// store file at path.
func firstRecordOf(t *testing.T, path, client string) uint64 {
	t.Helper()
	st, err := boltstore.Open(path, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var seq uint64
	err = st.AuditRecords(1, func(r audit.Record) error {
		if seq == 0 && r.Client == client {
			seq = r.Seq
		}
		return nil
	})
	if err != nil || seq == 0 {
		t.Fatalf("no audit record of %s in %s (%v)", client, path, err)
	}
	return seq
}

// restoredBoltConfig puts the copy at rdir/data/keysvc.db (0600) and
// writes rdir/keysvc.yaml: conf with its data_dir moved there.
func restoredBoltConfig(t *testing.T, conf, dataDir, rdir, copyPath string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(rdir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, copyPath, filepath.Join(rdir, "data", "keysvc.db"))
	if err := os.Chmod(filepath.Join(rdir, "data", "keysvc.db"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf("data_dir: %q", dataDir)
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s has no %s", conf, old)
	}
	rconf := filepath.Join(rdir, "keysvc.yaml")
	writeFiles(t, rconf, strings.Replace(string(b), old, fmt.Sprintf("data_dir: %q", filepath.Join(rdir, "data")), 1))
	return rconf
}

var listenRE = regexp.MustCompile(`(?m)^listen: .*$`)

// rewriteListen sets conf's listen: to addr.
func rewriteListen(t *testing.T, conf, addr string) {
	t.Helper()
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if !listenRE.Match(b) {
		t.Fatalf("%s has no listen:", conf)
	}
	writeFiles(t, conf, listenRE.ReplaceAllString(string(b), fmt.Sprintf("listen: %q", addr)))
}

// TestKeysvcHotBackupEtcd: `keysvc backup` through a keysvc node on a
// 3-member etcd cluster takes an etcd snapshot while 16 clients sign; the
// snapshot, restored with etcdutl into a new 3-member cluster
// (etcdlocal.RestoreSnapshot), passes `keysvc audit verify -config`, and a
// keysvc node on the restored cluster signs with the restored keys.
func TestKeysvcHotBackupEtcd(t *testing.T) {
	e := newClusterEnv(t)
	n1 := e.addNode(t, "keysvc-1", "")
	officer := n1.kmsClient(t, officerToken, 30*time.Second, 4)
	names, pubs := backupKeys(t, officer, "bke")
	tokenFile := filepath.Join(e.dir, "officer.token")
	writeFiles(t, tokenFile, officerToken+"\n")
	bank := n1.kmsClient(t, bankappToken, 30*time.Second, backupSigners)

	snap, _, _ := backupsUnderLoad(t, n1.bin, n1.conf, tokenFile, e.dir, bank, names)
	if out, err := e.auditVerify(t, n1); err != nil {
		t.Fatalf("audit verify of the live cluster after the backups: %v\n%s", err, out)
	}

	bin, err := etcdlocal.Binary(".")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rdir := t.TempDir()
	t0 := time.Now()
	rc, err := etcdlocal.RestoreSnapshot(ctx, snap, etcdlocal.RestoreOptions{Options: etcdlocal.Options{Dir: rdir, Binary: bin}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rc.Stop()
		if t.Failed() {
			for _, m := range rc.Members {
				logTail(t, m.Name, filepath.Join(rdir, m.Name+".log"))
			}
		}
	})
	restoreTook := time.Since(t0)

	// A node of the restored cluster: n1's config with the new cluster's
	// endpoints and TLS files, its own address and data_dir.
	node := filepath.Join(e.dir, "restored-node")
	if err := os.MkdirAll(node, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(n1.conf)
	if err != nil {
		t.Fatal(err)
	}
	y := string(b)
	oca, ocert, okey := e.etcd.TLSFiles()
	rca, rcert, rkey := rc.TLSFiles()
	for _, r := range [][2]string{
		{strings.Join(e.etcd.Endpoints(), ", "), strings.Join(rc.Endpoints(), ", ")},
		{fmt.Sprintf("%q", oca), fmt.Sprintf("%q", rca)}, {fmt.Sprintf("%q", ocert), fmt.Sprintf("%q", rcert)}, {fmt.Sprintf("%q", okey), fmt.Sprintf("%q", rkey)},
		{fmt.Sprintf("data_dir: %q", n1.dataDir), fmt.Sprintf("data_dir: %q", filepath.Join(node, "data"))},
		{"node: keysvc-1", "node: keysvc-restored"},
	} {
		if !strings.Contains(y, r[0]) {
			t.Fatalf("n1's config has no %s", r[0])
		}
		y = strings.Replace(y, r[0], r[1], 1)
	}
	rconf := filepath.Join(node, "keysvc.yaml")
	writeFiles(t, rconf, y)
	pub := filepath.Join(n1.dataDir, "audit-key.pem")
	out, err := exec.Command(n1.bin, "audit", "verify", "-config", rconf, "-pubkey", pub).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit chain ok") {
		t.Fatalf("audit verify on the restored etcd cluster: %v\n%s", err, out)
	}
	rn := newDaemon(t, "keysvc", node, e.tls)
	rewriteListen(t, rconf, rn.addr)
	rn.args = []string{"serve", "-config", rconf}
	rn.start(t)
	t.Logf("etcd restore drill: etcdutl restore and 3 members healthy in %s; %s", restoreTook.Round(time.Millisecond), strings.SplitN(string(out), "\n", 2)[0])
	signAndCheck(t, rn.kmsClient(t, bankappToken, 30*time.Second, 2), pubs, "signed on the restored cluster")
}
