package keysvc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
)

// Backuper is a Store that can copy itself while keysvc serves (issue 17,
// R-AV-3), an optional ability discovered by type assertion. Backup writes
// one consistent copy to w and returns the bytes written:
//
//   - keysvc/boltstore writes the bbolt file as one read transaction sees
//     it (bbolt's Tx.WriteTo). The copy IS a store file: point a config's
//     data_dir at it (as keysvc.db) and `keysvc audit verify` and `keysvc
//     serve` open it. Writers are not blocked: signing goes on during the
//     copy.
//   - keysvc/etcdstore writes an etcd snapshot (the Maintenance Snapshot
//     API) from a healthy member. A snapshot is the member's WHOLE
//     keyspace, not only this store's prefix: restoring one means
//     restoring the etcd cluster from it (etcdutl snapshot restore).
//
// A copy holds key records (wrapped blobs, token labels), the audit chain
// and the PIN guard's counters, never key material in clear: a wrapped key
// opens only with the KEKs of the token it was wrapped under, so a
// restored store needs the same token (or a token restored from the
// officers' backup of it).
type Backuper interface {
	Backup(ctx context.Context, w io.Writer) (n int64, err error)
}

// BackupResult is what a completed backup wrote: its size and SHA-256
// (not secret: it identifies the copy, in the audit record and in the
// operator's output).
type BackupResult struct {
	Size   int64
	SHA256 []byte
}

// BackupOp is the audit op of a backup.
const BackupOp = "backup"

// backupCheckpointTimeout bounds the checkpoint Run signs before copying
// (a clustered store waits for its chain there).
const backupCheckpointTimeout = 30 * time.Second

// backupSlot allows one backup at a time per Service: a copy of a large
// store takes a while, and two at once would only double the I/O.
type backupSlot struct {
	mu      sync.Mutex
	running bool
}

// Backup is one admitted backup, holding the Service's backup slot until
// Run or Abandon. A Backup is used by one goroutine.
type Backup struct {
	s    *Service
	c    Caller
	b    Backuper
	once sync.Once
}

// BeginBackup admits a hot backup of the store for c: admin clients only
// (wire.ErrForbidden), a store that can copy itself (wire.ErrInvalidArgument
// otherwise), one at a time (a second while one runs is
// wire.ErrIllegalTransition). Refusals are audited. The caller must Run or
// Abandon the returned Backup.
func (s *Service) BeginBackup(c Caller) (*Backup, error) {
	if !c.Admin {
		return nil, s.finish(c, "", 0, BackupOp, fmt.Errorf("%w: client %q may not back up the store: admin clients only", wire.ErrForbidden, c.Name))
	}
	b, ok := s.store.(Backuper)
	if !ok {
		return nil, s.finish(c, "", 0, BackupOp, fmt.Errorf("%w: this store (%T) cannot copy itself while keysvc serves", wire.ErrInvalidArgument, s.store))
	}
	s.backups.mu.Lock()
	defer s.backups.mu.Unlock()
	if s.backups.running {
		return nil, s.finish(c, "", 0, BackupOp, fmt.Errorf("%w: a backup is already running on this keysvc; wait for it to finish and try again", wire.ErrIllegalTransition))
	}
	s.backups.running = true
	return &Backup{s: s, c: c, b: b}, nil
}

// Run first signs a checkpoint over the log as it stands (Checkpoint), so
// that the copy carries one covering nearly all its records and `keysvc
// audit verify` on the copy alone vouches for them (only the records
// appended between that checkpoint and the copy stay unsigned, as between
// any two checkpoints; without it, a store whose scheduler had not yet
// checkpointed would give a copy no verify accepts). A checkpoint that
// fails (the token away) is logged and the copy taken all the same: a
// backup now is worth more than a perfectly covered one later.
//
// It then writes the copy to w, hashing it on the way, and appends one
// audit record: op "backup", result ok and detail "bytes=<n>
// sha256=<hex>", or the failure's code and the bytes written before it.
// It releases the slot. A failed audit append fails the backup
// (wire.ErrAuditUnavailable): a copy whose taking is not on the chain must
// not be trusted as one.
func (b *Backup) Run(ctx context.Context, w io.Writer) (BackupResult, error) {
	defer b.release()
	cctx, cancel := context.WithTimeout(ctx, backupCheckpointTimeout)
	err := b.s.Checkpoint(cctx)
	cancel()
	if err != nil {
		b.s.log.Warn("backup: no checkpoint before the copy; its newest records are covered by the last checkpoint there is", "err", err)
	}
	h := sha256.New()
	n, err := b.b.Backup(ctx, io.MultiWriter(h, w))
	if err == nil && n <= 0 {
		err = fmt.Errorf("%w: the store wrote an empty copy", wire.ErrStore)
	}
	if err != nil && !errors.Is(err, wire.ErrStore) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: backup: %w", wire.ErrStore, err)
	}
	res := BackupResult{Size: n, SHA256: h.Sum(nil)}
	rec := b.s.record(b.c, "", 0, BackupOp, err)
	if err != nil {
		rec.Detail = fmt.Sprintf("bytes=%d failed", n)
		b.s.log.Error("backup failed", "client", b.c.Name, "bytes", n, "err", err)
	} else {
		rec.Detail = fmt.Sprintf("bytes=%d sha256=%s", n, hex.EncodeToString(res.SHA256))
	}
	if aerr := b.s.audit(rec); aerr != nil {
		return res, aerr
	}
	if err != nil {
		return res, err
	}
	b.s.log.Info("backup taken", "client", b.c.Name, "bytes", n, "sha256", hex.EncodeToString(res.SHA256))
	return res, nil
}

// Abandon releases the slot of a Backup that will not run (the client went
// away before the copy began). Nothing was copied, so nothing is audited.
func (b *Backup) Abandon() { b.release() }

func (b *Backup) release() {
	b.once.Do(func() {
		b.s.backups.mu.Lock()
		b.s.backups.running = false
		b.s.backups.mu.Unlock()
	})
}
