package keysvc_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token/memtoken"
)

// lastRecord is the newest audit record of the service's store.
func lastRecord(t *testing.T, st keysvc.Store) audit.Record {
	t.Helper()
	var last audit.Record
	if err := st.AuditRecords(1, func(r audit.Record) error { last = r; return nil }); err != nil {
		t.Fatal(err)
	}
	return last
}

// TestBackupAdminOnlyOneAtATime: a non-admin is refused (audited), a
// second backup while one holds the slot is ErrIllegalTransition
// (audited), and the slot is free again after Abandon.
func TestBackupAdminOnlyOneAtATime(t *testing.T) {
	st, svc := boltService(t)
	if _, err := svc.BeginBackup(bank); !errors.Is(err, wire.ErrForbidden) {
		t.Fatalf("BeginBackup(non-admin) = %v, want ErrForbidden", err)
	}
	if r := lastRecord(t, st); r.Op != keysvc.BackupOp || r.Result != "forbidden" || r.Client != bank.Name {
		t.Fatalf("refusal audited as %+v", r)
	}
	b, err := svc.BeginBackup(officer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.BeginBackup(officer); !errors.Is(err, wire.ErrIllegalTransition) {
		t.Fatalf("second BeginBackup = %v, want ErrIllegalTransition", err)
	}
	if r := lastRecord(t, st); r.Op != keysvc.BackupOp || r.Result != "illegal_transition" {
		t.Fatalf("second backup's refusal audited as %+v", r)
	}
	b.Abandon()
	b2, err := svc.BeginBackup(officer)
	if err != nil {
		t.Fatalf("BeginBackup after Abandon: %v", err)
	}
	b2.Abandon()
}

// TestBackupCopyIsAStore: Run's copy is a bbolt store holding the keys
// and a chain that verifies with the service's audit key, with the
// checkpoint Run signed before copying (there was none); the result's
// size and SHA-256 are the bytes written, and the "backup" record names
// them.
func TestBackupCopyIsAStore(t *testing.T) {
	st, svc := boltService(t)
	for i := range 20 {
		if _, err := svc.CreateKey(context.Background(), officer, wire.CreateKeyRequest{Name: fmt.Sprintf("k%d", i), Purpose: wire.PurposeSign,
			Algorithm: wire.AlgECP256, Protection: wire.ProtectionHSM}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := svc.BeginBackup(officer) // no checkpoint yet: Run makes one
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	res, err := b.Run(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	if res.Size != int64(buf.Len()) || !bytes.Equal(res.SHA256, sum[:]) {
		t.Fatalf("result %d bytes %x; wrote %d bytes %x", res.Size, res.SHA256, buf.Len(), sum)
	}
	r := lastRecord(t, st)
	if want := fmt.Sprintf("bytes=%d sha256=%s", buf.Len(), hex.EncodeToString(sum[:])); r.Op != keysvc.BackupOp || r.Result != "ok" || r.Detail != want || r.Client != officer.Name {
		t.Fatalf("backup audited as %+v, want detail %q", r, want)
	}
	path := filepath.Join(t.TempDir(), "keysvc.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cp, err := boltstore.Open(path, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("the copy does not open as a store: %v", err)
	}
	defer cp.Close()
	keys, err := cp.ListKeys("", 0)
	if err != nil || len(keys) != 20 {
		t.Fatalf("the copy holds %d keys (%v), want 20", len(keys), err)
	}
	rep, err := keysvc.VerifyAudit(cp, svc.AuditPublicKey())
	if err != nil {
		t.Fatalf("the copy's chain: %v", err)
	}
	if rep.Checkpoints == 0 || rep.Records < 20 {
		t.Fatalf("the copy's chain: %+v", rep)
	}
}

// failingStore copies half a store, then fails.
type failingStore struct{ *boltstore.Store }

func (f failingStore) Backup(ctx context.Context, w io.Writer) (int64, error) {
	n, err := w.Write(make([]byte, 4096))
	if err != nil {
		return int64(n), err
	}
	return int64(n), errors.New("disk read error")
}

// TestBackupFailureAudited: a copy that fails part-way is an error
// (wire.ErrStore) and its record says failed, with the bytes written.
func TestBackupFailureAudited(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := keysvc.New(context.Background(), keysvc.Config{Keys: memtoken.New("mem", "0001"), Store: failingStore{st}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(); st.Close() })
	b, err := svc.BeginBackup(officer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(context.Background(), io.Discard); !errors.Is(err, wire.ErrStore) {
		t.Fatalf("Run of a failing copy = %v, want ErrStore", err)
	}
	if r := lastRecord(t, st); r.Op != keysvc.BackupOp || r.Result != "store_unavailable" || r.Detail != "bytes=4096 failed" {
		t.Fatalf("failed backup audited as %+v", r)
	}
}

func boltService(t *testing.T) (*boltstore.Store, *keysvc.Service) {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := keysvc.New(context.Background(), keysvc.Config{Keys: memtoken.New("mem", "0001"), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(); st.Close() })
	return st, svc
}
