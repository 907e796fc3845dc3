package etcdstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/wire"
)

var _ keysvc.Backuper = (*Store)(nil)

// Backup writes an etcd snapshot to w (issue 17, R-AV-3): the Maintenance
// Snapshot API of one healthy member (no status errors, a leader known),
// tried in Config.Endpoints order; a member that fails before sending a
// byte is passed over for the next.
//
// The snapshot is the member's WHOLE keyspace — every prefix, not only
// this store's — as of one revision: every keysvc node's key records, the
// chain and the inboxes not yet chained, PIN counters, leases. It is
// restored with etcd's own tool into a NEW cluster (`etcdutl snapshot
// restore`, etcdlocal.RestoreSnapshot does it for tests and the drill):
// restoring one means restoring the etcd cluster, every tenant of it
// included; it cannot be merged into a running cluster.
//
// etcd ends a snapshot with the SHA-256 of what precedes it; Backup checks
// it while streaming and fails (wire.ErrStore) on a mismatch, so a copy
// that reached w whole was the member's.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := s.closedErr(); err != nil {
		return 0, err
	}
	var errs []error
	for _, ep := range s.cfg.Endpoints {
		n, err := s.snapshotFrom(ctx, ep, w)
		if err == nil {
			return n, nil
		}
		if n > 0 || ctx.Err() != nil {
			return n, fmt.Errorf("%w: etcd snapshot from %s failed after %d bytes: %w", wire.ErrStore, ep, n, err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
	}
	return 0, fmt.Errorf("%w: no etcd member could send a snapshot: %w", wire.ErrStore, errors.Join(errs...))
}

// snapshotFrom streams ep's snapshot to w through a client of its own
// (the shared client's balancer would pick any member).
func (s *Store) snapshotFrom(ctx context.Context, ep string, w io.Writer) (int64, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, TLS: s.cfg.TLS, DialTimeout: s.cfg.DialTimeout,
		// A member that dies mid-snapshot is noticed in seconds, as by the
		// store's own client: the copy fails instead of hanging.
		DialKeepAliveTime: time.Second, DialKeepAliveTimeout: time.Second,
		Logger: zap.NewNop(), Context: ctx})
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	sctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	st, err := cli.Status(sctx, ep)
	cancel()
	switch {
	case err != nil:
		return 0, fmt.Errorf("status: %w", err)
	case len(st.Errors) > 0:
		return 0, fmt.Errorf("member reports errors: %v", st.Errors)
	case st.Leader == 0:
		return 0, errors.New("member knows no leader")
	}
	resp, err := cli.SnapshotWithVersion(ctx)
	if err != nil {
		return 0, err
	}
	defer resp.Snapshot.Close()
	v := &snapshotCheck{w: w, h: sha256.New()}
	n, err := io.Copy(v, resp.Snapshot)
	if err != nil {
		return n, err
	}
	if err := v.check(); err != nil {
		return n, err
	}
	s.log.Info("etcd snapshot taken", "member", ep, "bytes", n, "revision", resp.Header.GetRevision(), "etcd_version", resp.Version)
	return n, nil
}

// snapshotCheck passes a snapshot through to w while hashing all but its
// last sha256.Size bytes, which check compares with that hash (etcd's
// integrity trailer, as etcdutl's restore checks it).
type snapshotCheck struct {
	w    io.Writer
	h    hash.Hash
	tail []byte // the newest sha256.Size bytes seen, not yet hashed
}

func (c *snapshotCheck) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		return n, err
	}
	buf := append(c.tail, p...)
	if cut := len(buf) - sha256.Size; cut > 0 {
		c.h.Write(buf[:cut])
		buf = buf[cut:]
	}
	c.tail = append(c.tail[:0:0], buf...)
	return n, nil
}

func (c *snapshotCheck) check() error {
	if len(c.tail) != sha256.Size {
		return errors.New("snapshot too short to hold etcd's checksum")
	}
	if !bytes.Equal(c.h.Sum(nil), c.tail) {
		return errors.New("snapshot checksum mismatch: the stream was damaged")
	}
	return nil
}
