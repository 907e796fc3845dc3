package etcdstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/keyward/keyward/keysvc/wire"
)

// SessionTTL is the lease of an election session: a node that dies (or
// loses etcd) stops leading within this time.
const SessionTTL = 5 * time.Second

// sessionHandle is one Lead call's session, ended by resign or Close.
type sessionHandle struct {
	once    sync.Once
	sess    *concurrency.Session
	cancel  context.CancelFunc
	s       *Store
	mu      sync.Mutex
	lcancel context.CancelFunc // ends the leading context (nil before leading)
}

func (h *sessionHandle) close() {
	h.once.Do(func() {
		// Stop leading first, then let the others in: the leading context
		// ends before another node can win.
		h.mu.Lock()
		if h.lcancel != nil {
			h.lcancel()
		}
		h.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		// Revoke the lease, so another node leads at once rather than
		// after SessionTTL.
		_, _ = h.s.cli.Revoke(ctx, h.sess.Lease())
		h.sess.Orphan()
		h.cancel()
		h.s.sessMu.Lock()
		delete(h.s.sessions, h)
		h.s.sessMu.Unlock()
	})
}

// Lead blocks until this node leads the cluster's scheduler election (or
// ctx ends: ctx.Err()), and returns a context that ends when leadership
// is lost (the session's lease expired or was revoked, ctx ended, the
// store closed) and a function that gives leadership up (keysvc.Elector).
// node is the election value (the node's name). While etcd is
// unreachable it keeps trying; only a closed store fails it (wire.ErrStore).
func (s *Store) Lead(ctx context.Context, node string) (context.Context, func(), error) {
	sleep := 100 * time.Millisecond
	for {
		if err := s.closedErr(); err != nil {
			return nil, nil, err
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		leading, resign, err := s.campaign(ctx, keyElection, node)
		if err == nil {
			return leading, resign, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		s.log.Warn("election: cannot campaign, retrying", "err", err)
		sleepCtx(ctx, sleep)
		sleep = min(2*sleep, 2*time.Second)
	}
}

// campaign runs one election campaign on the election prefix (the
// scheduler's, or the audit sequencer's).
func (s *Store) campaign(ctx context.Context, election, node string) (context.Context, func(), error) {
	gctx, gcancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	lease, err := s.cli.Grant(gctx, int64(SessionTTL/time.Second))
	gcancel()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: election: grant lease: %w", wire.ErrStore, err)
	}
	sctx, scancel := context.WithCancel(s.ctx)
	sess, err := concurrency.NewSession(s.cli, concurrency.WithLease(lease.ID), concurrency.WithContext(sctx))
	if err != nil {
		scancel()
		return nil, nil, fmt.Errorf("%w: election: session: %w", wire.ErrStore, err)
	}
	h := &sessionHandle{sess: sess, cancel: scancel, s: s}
	s.sessMu.Lock()
	s.sessions[h] = struct{}{}
	s.sessMu.Unlock()
	if s.closedErr() != nil { // Close ran before we registered
		h.close()
		return nil, nil, s.closedErr()
	}
	e := concurrency.NewElection(sess, s.k(election))
	// Campaign ends with ctx, or when the session ends (it then fails).
	cctx, ccancel := context.WithCancel(ctx)
	stop := context.AfterFunc(sctx, ccancel)
	go func() {
		select {
		case <-sess.Done():
			ccancel()
		case <-cctx.Done():
		}
	}()
	err = e.Campaign(clientv3.WithRequireLeader(cctx), node)
	stop()
	if err != nil {
		ccancel()
		h.close()
		return nil, nil, fmt.Errorf("%w: election: campaign: %w", wire.ErrStore, err)
	}
	leading, lcancel := context.WithCancel(ctx)
	h.mu.Lock()
	h.lcancel = lcancel
	h.mu.Unlock()
	go func() {
		defer ccancel()
		select {
		case <-sess.Done():
			s.log.Warn("election: session lost, no longer leading")
		case <-leading.Done():
		}
		lcancel()
	}()
	s.log.Info("election: leading", "election", election, "as", node)
	resign := func() {
		lcancel() // stop leading before another node can win
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = e.Resign(rctx)
		cancel()
		h.close()
	}
	return leading, resign, nil
}
