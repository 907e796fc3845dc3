package keysvc

// Several nodes (issue 16): what a Service does when its Store is shared
// (cluster.go). Each piece is found by type assertion on Config.Store, so
// a Service over bbolt runs exactly as before.
//
//   - KeyFeed: New starts WatchKeys, and nothing is cached until the
//     feed's first reset says its watch has started (cache.go); every key
//     record any node commits goes through keyCache.put (which keeps only
//     a higher revision, so the cache never goes backwards) and a reset
//     empties the cache (the next use reads the store). A version disabled
//     on node A is refused on node B once the feed delivers the record.
//     Close stops it.
//   - Elector: Run campaigns with Config.Node and ticks only while it
//     leads; on lost leadership it stops ticking and campaigns again. The
//     Stats gauge SchedulerLeader and a log line say which node leads.
//   - Even so two nodes may tick at once (a leader that lost its session
//     finishes its tick): destruction and rotation re-check "still due"
//     inside the store update that records them (errNotDue), so each
//     happens, and is audited, once.
//   - ConfirmStorer: confirmations in the store (confirm.go).
//
// # Limitations
//
// The feed is eventually consistent: between a commit on node A and its
// delivery to node B, node B still uses what it cached (the lag is the
// store's watch latency; issue 16 measures it over etcd).

import (
	"context"
	"errors"
	"sync"
	"time"
)

// clusterFeed is the running key feed.
type clusterFeed struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// startFeed starts following the store's key feed, if it has one.
func (s *Service) startFeed() {
	kf, ok := s.store.(KeyFeed)
	if !ok {
		return
	}
	s.cache.mu.Lock()
	s.cache.waitFeed = true // nothing cached until the watch has started (cache.go)
	s.cache.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.feed.mu.Lock()
	s.feed.cancel, s.feed.done = cancel, done
	s.feed.mu.Unlock()
	go func() {
		defer close(done)
		started := false
		kf.WatchKeys(ctx, func(k *Key) { s.cache.put(k) }, func() {
			s.cache.clear()
			if !started {
				started = true
				s.log.Info("key feed watching: the key cache follows every node's changes")
				return
			}
			s.log.Warn("key feed reset: the key cache was emptied and refills from the store")
		})
	}()
}

// stopCluster stops the key feed and waits for it.
func (s *Service) stopCluster() {
	s.feed.mu.Lock()
	cancel, done := s.feed.cancel, s.feed.done
	s.feed.cancel, s.feed.done = nil, nil
	s.feed.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Run runs the scheduler (Tick) every interval until ctx ends. With an
// Elector store it ticks only while this node leads: it campaigns
// (Elector.Lead with Config.Node), ticks until leadership is lost, and
// campaigns again.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	el, ok := s.store.(Elector)
	if !ok {
		s.setLeading(true, "no election: this node's store is not shared")
		defer s.setLeading(false, "stopped")
		s.tickLoop(ctx, interval)
		return
	}
	for ctx.Err() == nil {
		leading, resign, err := el.Lead(ctx, s.node)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Error("scheduler election failed; campaigning again", "node", s.node, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			}
			continue
		}
		s.setLeading(true, "elected")
		s.tickLoop(leading, interval)
		resign()
		why := "leadership lost"
		if ctx.Err() != nil {
			why = "stopped"
		}
		s.setLeading(false, why)
	}
}

// setLeading records and logs a change of scheduler leadership.
func (s *Service) setLeading(on bool, why string) {
	if s.leading.Swap(on) == on {
		return
	}
	if on {
		s.log.Info("scheduler leadership gained: this node runs rotation, destruction, checkpoints and the confirmation sweep", "node", s.node, "why", why)
	} else {
		s.log.Info("scheduler leadership given up", "node", s.node, "why", why)
	}
}

// tickLoop calls Tick now and every interval until ctx ends.
func (s *Service) tickLoop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("scheduler", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// errNotDue aborts a scheduled change that is no longer due: another node
// did it, or it was cancelled. It is not an error to report.
var errNotDue = errors.New("not due")
