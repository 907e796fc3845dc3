package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/api"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/client"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token/memtoken"
)

// backupServer serves a real keysvc.Service (memtoken, a bbolt store, or
// st when given) on loopback and returns its base URL.
func backupServer(t *testing.T, wrap func(*boltstore.Store) keysvc.Store) (string, *keysvc.Service, *boltstore.Store) {
	t.Helper()
	bs, err := boltstore.Open(filepath.Join(t.TempDir(), "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var st keysvc.Store = bs
	if wrap != nil {
		st = wrap(bs)
	}
	svc, err := keysvc.New(context.Background(), keysvc.Config{Keys: memtoken.New("mem", "0001"), Store: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Backend: svc, Clients: testClients(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()); svc.Close(); bs.Close() })
	return "http://" + ln.Addr().String(), svc, bs
}

func newClient(t *testing.T, base, bearer string) *client.Client {
	t.Helper()
	c, err := client.New(base, client.WithBearer(bearer))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBackupRoute: GET /v1/admin/backup streams a copy whose trailers
// match what arrived and the audit record; non-admins get 403, a second
// backup while one runs 409.
func TestBackupRoute(t *testing.T) {
	base, svc, st := backupServer(t, nil)
	var buf bytes.Buffer
	info, err := newClient(t, base, rootToken).Backup(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	if info.Size != int64(buf.Len()) || info.SHA256 != hex.EncodeToString(sum[:]) || buf.Len() == 0 {
		t.Fatalf("Backup = %+v; received %d bytes, sha256 %x", info, buf.Len(), sum)
	}
	var last audit.Record
	if err := st.AuditRecords(1, func(r audit.Record) error { last = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if last.Op != keysvc.BackupOp || last.Client != "root" || last.Detail != "bytes="+itoa(info.Size)+" sha256="+info.SHA256 {
		t.Fatalf("audit record %+v does not name the copy %+v", last, info)
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cp, err := boltstore.Open(path, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("the copy is not a store: %v", err)
	}
	cp.Close()

	if _, err := newClient(t, base, aliceToken).Backup(context.Background(), io.Discard); !errors.Is(err, wire.ErrForbidden) {
		t.Fatalf("non-admin Backup = %v, want ErrForbidden", err)
	}
	held, err := svc.BeginBackup(keysvc.Caller{Name: "root", Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	var ce *client.Error
	if _, err := newClient(t, base, rootToken).Backup(context.Background(), io.Discard); !errors.As(err, &ce) || ce.Status != 409 || ce.Code != "illegal_transition" {
		t.Fatalf("Backup while one runs = %v, want 409 illegal_transition", err)
	}
	held.Abandon()
	if _, err := newClient(t, base, rootToken).Backup(context.Background(), io.Discard); err != nil {
		t.Fatalf("Backup after the first ended: %v", err)
	}
}

// halfStore's copy fails after 64 KiB.
type halfStore struct{ *boltstore.Store }

func (h halfStore) Backup(ctx context.Context, w io.Writer) (int64, error) {
	n, err := w.Write(make([]byte, 64<<10))
	if err != nil {
		return int64(n), err
	}
	return int64(n), errors.New("read error half-way")
}

// TestBackupRouteFailureCut: a copy that fails after the 200 went out
// reaches the client as an error, never as a backup (no trailers, the
// stream cut), and the audit record says failed.
func TestBackupRouteFailureCut(t *testing.T) {
	base, _, st := backupServer(t, func(bs *boltstore.Store) keysvc.Store { return halfStore{bs} })
	var buf bytes.Buffer
	if _, err := newClient(t, base, rootToken).Backup(context.Background(), &buf); err == nil {
		t.Fatalf("a copy that failed half-way was taken as a backup (%d bytes)", buf.Len())
	}
	var last audit.Record
	if err := st.AuditRecords(1, func(r audit.Record) error { last = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if last.Op != keysvc.BackupOp || last.Result != "store_unavailable" {
		t.Fatalf("failed backup audited as %+v", last)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// endlessStore's copy never ends by itself: it writes until a write fails
// or ctx ends.
type endlessStore struct{ *boltstore.Store }

func (e endlessStore) Backup(ctx context.Context, w io.Writer) (int64, error) {
	var n int64
	chunk := make([]byte, 64<<10)
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, err := w.Write(chunk)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
}

// TestBackupRouteClientGone: a client that goes away mid-copy ends the
// copy on the server: the slot is free again and the record says failed.
func TestBackupRouteClientGone(t *testing.T) {
	base, svc, st := backupServer(t, func(bs *boltstore.Store) keysvc.Store { return endlessStore{bs} })
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	w := &cancelAfter{n: 1 << 20, cancel: cancel}
	go func() { _, err := newClient(t, base, rootToken).Backup(ctx, w); got <- err }()
	if err := <-got; err == nil {
		t.Fatal("a backup cut by its client succeeded")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := svc.BeginBackup(keysvc.Caller{Name: "root", Admin: true})
		if err == nil {
			b.Abandon()
			break
		}
		if !errors.Is(err, wire.ErrIllegalTransition) || time.Now().After(deadline) {
			t.Fatalf("the slot of a backup whose client left is still taken after 20 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	found := false
	if err := st.AuditRecords(1, func(r audit.Record) error {
		found = found || (r.Op == keysvc.BackupOp && r.Client == "root" && r.Result != "ok" && strings.HasSuffix(r.Detail, " failed"))
		return nil
	}); err != nil || !found {
		t.Fatalf("no failed backup record (%v)", err)
	}
}

// cancelAfter cancels once n bytes were written to it.
type cancelAfter struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.n -= len(p)
	if c.n <= 0 {
		c.cancel()
	}
	return len(p), nil
}
