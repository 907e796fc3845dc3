package etcdstore_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/etcdstore"
	"github.com/keyward/keyward/keysvc/etcdstore/etcdlocal"
)

// TestBackupRestore takes an etcd snapshot (Store.Backup) from one node
// while another appends, restores it into a new 3-member cluster with etcdutl
// (etcdlocal.RestoreSnapshot) and checks the restored chain: it verifies,
// holds every record acknowledged before the backup began exactly once,
// and is a prefix of the live cluster's chain (the records acknowledged
// during the backup are there or not, never twice). A snapshot with one
// byte flipped is refused by etcdutl.
func TestBackupRestore(t *testing.T) {
	c := cluster(t)
	prefix := freshPrefix()
	live := nodesOn(t, c, prefix, 2, 0, nil)
	before, errs := appendAll(live[:1], 8, 40, nil) // node-a: its details differ from node-b's below
	if len(errs) > 0 {
		t.Fatalf("appends before the backup: %v", errs[0])
	}
	stop := make(chan struct{})
	type result struct {
		ok   map[string]uint64
		errs []error
	}
	during := make(chan result)
	go func() { ok, errs := appendAll(live[1:], 8, 0, stop); during <- result{ok, errs} }()
	time.Sleep(200 * time.Millisecond) // the appenders are busy
	snap := filepath.Join(t.TempDir(), "etcd.snapshot")
	f, err := os.OpenFile(snap, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	n, err := live[0].Backup(context.Background(), f)
	took := time.Since(t0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	d := <-during
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if len(d.errs) > 0 {
		t.Fatalf("appends during the backup: %v", d.errs[0])
	}
	st, _ := os.Stat(snap)
	if st.Size() != n {
		t.Fatalf("Backup reported %d bytes, the file has %d", n, st.Size())
	}
	t.Logf("snapshot: %d bytes in %s while %d records were appended around it", n, took.Round(time.Millisecond), len(d.ok))

	// A damaged copy: etcdutl checks the snapshot's SHA-256 trailer.
	raw, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(raw)
	bad[len(bad)/2] ^= 0x01
	badPath := filepath.Join(t.TempDir(), "damaged.snapshot")
	if err := os.WriteFile(badPath, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if rc, err := etcdlocal.RestoreSnapshot(ctx, badPath, etcdlocal.RestoreOptions{Options: etcdlocal.Options{Dir: t.TempDir()}}); err == nil {
		rc.Stop()
		t.Fatal("RestoreSnapshot accepted a snapshot with a flipped byte")
	} else if !strings.Contains(err.Error(), "etcdutl") {
		t.Fatalf("RestoreSnapshot of a damaged snapshot failed, but not in etcdutl's check: %v", err)
	}

	t1 := time.Now()
	rc, err := etcdlocal.RestoreSnapshot(ctx, snap, etcdlocal.RestoreOptions{Options: etcdlocal.Options{Dir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Stop)
	restoredIn := time.Since(t1)
	restored := openLog(t, rc, "node-r", prefix, 0, nil)
	if err := restored.SyncAudit(ctx); err != nil {
		t.Fatalf("SyncAudit on the restored cluster: %v", err)
	}
	for _, s := range live {
		if err := s.SyncAudit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := chain(t, restored)
	want := chain(t, live[0])
	if len(got) > len(want) {
		t.Fatalf("restored chain has %d records, the live one %d", len(got), len(want))
	}
	seen := map[string]int{}
	for i, r := range got {
		if !bytes.Equal(r.Hash, want[i].Hash) {
			t.Fatalf("restored record %d differs from the live chain's", r.Seq)
		}
		seen[r.Detail]++
	}
	for detail := range before {
		if seen[detail] != 1 {
			t.Fatalf("record %q, acknowledged before the backup, is %d times in the restored chain", detail, seen[detail])
		}
	}
	fromDuring := 0
	for detail := range d.ok {
		switch seen[detail] {
		case 0:
		case 1:
			fromDuring++
		default:
			t.Fatalf("record %q is %d times in the restored chain", detail, seen[detail])
		}
	}
	t.Logf("restored cluster (3 members, etcdutl) up in %s: %d records, %d before the backup, %d of %d appended around it",
		restoredIn.Round(time.Millisecond), len(got), len(before), fromDuring, len(d.ok))
}

// chain reads s's whole chain through audit.Checker.
func chain(t *testing.T, s *etcdstore.Store) []audit.Record {
	t.Helper()
	var out []audit.Record
	ck := audit.NewChecker()
	err := s.AuditRecords(1, func(r audit.Record) error {
		out = append(out, r)
		return ck.Next(r)
	})
	if err != nil {
		t.Fatalf("chain of %s: %v", s.Node(), err)
	}
	return out
}
