package boltstore

import (
	"context"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/wire"
)

var _ keysvc.Backuper = (*Store)(nil)

// Backup writes a consistent copy of the whole bbolt file to w (issue 17,
// R-AV-3): the file as one read transaction sees it (bbolt's Tx.WriteTo),
// so the copy is itself a store file — keys, the audit chain, checkpoints,
// service-key and KEK-epoch records, and the PIN guard's counters when the
// file is shared with token.BoltStore.
//
// A read transaction does not block writers: signing, and the audit
// appends it makes, go on during the copy. Two costs remain: pages freed
// while the copy runs are reused only after it ends (the file may grow a
// little), and a writer that must grow the memory map waits for the copy
// to finish (bbolt grows the map by doubling up to 1 GiB, so this is rare).
//
// The copy stops with ctx's error at the next write once ctx ends.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(ctxWriter{ctx: ctx, w: w})
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return n, fmt.Errorf("backup stopped after %d bytes: %w", n, ctx.Err())
		}
		return n, fmt.Errorf("%w: backup after %d bytes: %w", wire.ErrStore, n, err)
	}
	return n, nil
}

// ctxWriter fails writes once ctx has ended.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
