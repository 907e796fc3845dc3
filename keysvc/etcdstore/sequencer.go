package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
)

// maxChain is the most records one chaining transaction seals: with the
// head put it stays under etcd's default --max-txn-ops of 128. A node's
// inbox transaction holds at most maxBatchOps (100) records, so one
// revision's entries always fit one chaining transaction.
const maxChain = 120

// DefaultInboxKeep is how long a chained inbox entry stays before the
// sequencer deletes it: far longer than any RequestTimeout, so a node that
// retries a write of unknown outcome still finds its entry (module doc).
const DefaultInboxKeep = time.Minute

// headValue is what audit/head holds.
type headValue struct {
	Seq  uint64 `json:"seq"`
	Hash []byte `json:"hash"`
	Node string `json:"node,omitempty"` // the sequencer that chained it (for operators)
	// Cursor is the highest inbox ModRevision chained: inbox entries with
	// a ModRevision above it are not chained yet.
	Cursor int64 `json:"cursor,omitempty"`
}

// head is a chain head as read from etcd.
type head struct {
	headValue
	rev int64 // ModRevision of audit/head (0: no record yet)
}

func parseHead(kvs []*mvccpb.KeyValue) (head, error) {
	if len(kvs) == 0 {
		return head{headValue: headValue{Hash: audit.Genesis}}, nil
	}
	var hv headValue
	if err := json.Unmarshal(kvs[0].Value, &hv); err != nil || hv.Seq == 0 || len(hv.Hash) == 0 {
		return head{}, fmt.Errorf("%w: audit/head does not decode (%d bytes)", audit.ErrTampered, len(kvs[0].Value))
	}
	return head{headValue: hv, rev: kvs[0].ModRevision}, nil
}

// revCmp compares key's ModRevision with rev, 0 meaning the key is absent
// (CreateRevision 0): the compare of every read-then-write compare-and-
// swap in this package (the audit head, checkpoint-last, casPut, PIN
// state).
func revCmp(key string, rev int64) clientv3.Cmp {
	if rev == 0 {
		return clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	return clientv3.Compare(clientv3.ModRevision(key), "=", rev)
}

func (s *Store) inboxKey(id string) string {
	return s.k(keyInbox + url.PathEscape(s.cfg.Node) + "/" + id)
}

// sequencer campaigns for the audit election and, while it leads, chains
// the inbox; it ends at Close.
func (s *Store) sequencer() {
	defer close(s.seqOut)
	sleep := 100 * time.Millisecond
	for s.ctx.Err() == nil {
		leading, resign, err := s.campaign(s.ctx, keyElectionAudit, s.cfg.Node)
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("audit sequencer: cannot campaign, retrying", "err", err)
			}
			sleepCtx(s.ctx, sleep)
			sleep = min(2*sleep, 2*time.Second)
			continue
		}
		sleep = 100 * time.Millisecond
		s.log.Info("audit sequencer: leading, chaining every node's inbox")
		s.sequence(leading)
		resign()
	}
}

// sequence chains inbox entries onto the head until ctx ends (leadership
// lost). Any failure (a refused or unknown chaining transaction, a broken
// watch) starts again from a fresh read of the head: its cursor says
// what is chained, so nothing is chained twice and nothing is skipped.
func (s *Store) sequence(ctx context.Context) {
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	chained := make(chan []chainedKey, 64)
	cleanDone := make(chan struct{})
	go func() { defer close(cleanDone); s.cleaner(cctx, chained) }()
	defer func() { ccancel(); <-cleanDone }()
	first := true
	sleep := retryFirstSleep
	for ctx.Err() == nil {
		err := s.chainLoop(ctx, chained, first)
		first = false
		if ctx.Err() != nil {
			return
		}
		s.log.Debug("audit sequencer: starting again from the head", "err", err)
		sleepCtx(ctx, sleep)
		sleep = min(2*sleep, time.Second)
	}
}

// chainedKey is an inbox entry chained (or found chained), for the cleaner.
type chainedKey struct {
	key string
	at  time.Time // when it was known chained
}

// inboxEvent is one inbox entry to chain: one node transaction's records.
type inboxEvent struct {
	key  string
	rev  int64
	recs []audit.Record
}

// decodeInbox decodes an inbox entry. One that does not decode (only a
// hand-written one) becomes one record saying so, so that the loss is
// visible in the chain rather than silent.
func (s *Store) decodeInbox(key string, rev int64, val []byte) inboxEvent {
	var e inboxEntry
	err := json.Unmarshal(val, &e)
	if err == nil && len(e.Recs) == 0 {
		err = errors.New("no records")
	}
	if err != nil {
		s.log.Error("audit sequencer: an inbox entry does not decode; chaining a record of the fault instead", "key", key, "err", err)
		e.Recs = []audit.Record{{Time: time.Now(), Client: "sequencer", Op: "audit-inbox-fault", Result: "undecodable",
			Detail: fmt.Sprintf("inbox entry %s (revision %d) does not decode", key, rev)}}
	}
	return inboxEvent{key: key, rev: rev, recs: e.Recs}
}

var errLostHead = errors.New("the audit head moved under the sequencer (another sequencer chained)")

// chainLoop reads the head, then follows the inbox from the head's cursor
// (a watch from cursor+1, or on a compacted history a range read) and
// chains entries in revision order until an error.
func (s *Store) chainLoop(ctx context.Context, chained chan<- []chainedKey, first bool) error {
	h, err := s.readHead(ctx)
	if err != nil {
		s.log.Warn("audit sequencer: cannot read the head", "err", err)
		return err
	}
	if first {
		// Entries chained by an earlier sequencer: the cleaner deletes
		// them after inboxKeep from now.
		if err := s.adoptChained(ctx, h.Cursor, chained); err != nil {
			return err
		}
	}
	from := h.Cursor + 1
	for {
		compacted, err := s.follow(ctx, &h, from, chained)
		if !compacted {
			return err
		}
		// The history from the cursor is gone: read the inbox instead,
		// then watch from after that read (the cursor may stay behind it
		// when nothing was waiting).
		if from, err = s.catchUp(ctx, &h, chained); err != nil {
			return err
		}
	}
}

// follow watches the inbox from revision from and chains what it delivers
// until the watch fails (compacted: its history is gone) or ctx ends.
func (s *Store) follow(ctx context.Context, h *head, from int64, chained chan<- []chainedKey) (compacted bool, err error) {
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	f := s.followInbox(wctx, from)
	for {
		select {
		case <-f.ready:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		evs, compacted, err := f.take()
		// Chain what came before a fault: those entries are whole revisions.
		for len(evs) > 0 {
			n := batchEnd(evs)
			if err := s.chain(ctx, h, evs[:n], chained); err != nil {
				return false, err
			}
			evs = evs[n:]
		}
		if compacted || err != nil {
			return compacted, err
		}
	}
}

// inboxFollower collects the inbox watch's entries as fast as the watch
// delivers them, so each chaining transaction takes everything that
// arrived while the previous one was in flight (reading the watch only
// between transactions would chain one revision per transaction and let a
// backlog grow in the client).
type inboxFollower struct {
	mu        sync.Mutex
	evs       []inboxEvent
	compacted bool
	err       error
	ready     chan struct{} // one token: something to take
}

// followInbox watches the inbox from revision from until ctx ends or the
// watch fails.
func (s *Store) followInbox(ctx context.Context, from int64) *inboxFollower {
	f := &inboxFollower{ready: make(chan struct{}, 1)}
	wch := s.cli.Watch(ctx, s.k(keyInbox), clientv3.WithPrefix(), clientv3.WithRev(from))
	go func() {
		var end error = errors.New("inbox watch closed")
		compacted := false
		for wr := range wch {
			if wr.CompactRevision != 0 || errors.Is(wr.Err(), rpctypes.ErrCompacted) {
				compacted = true
				break
			}
			if err := wr.Err(); err != nil {
				end = err
				break
			}
			f.mu.Lock()
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut && ev.Kv.ModRevision >= from {
					f.evs = append(f.evs, s.decodeInbox(string(ev.Kv.Key), ev.Kv.ModRevision, ev.Kv.Value))
				}
			}
			f.mu.Unlock()
			f.signal()
		}
		f.mu.Lock()
		f.compacted, f.err = compacted, end
		f.mu.Unlock()
		f.signal()
	}()
	return f
}

func (f *inboxFollower) signal() {
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

// take returns the entries collected so far, and how the watch ended (if
// it did).
func (f *inboxFollower) take() ([]inboxEvent, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	evs := f.evs
	f.evs = nil
	return evs, f.compacted, f.err
}

// batchEnd returns how many of evs (in revision order) the next chaining
// transaction takes: whole revisions only (the cursor names a revision),
// at most maxChain records unless one revision alone is more (never: a
// node's transaction holds at most maxBatchOps records).
func batchEnd(evs []inboxEvent) int {
	n, recs := 0, 0
	for n < len(evs) {
		r := evs[n].rev
		e, add := n, 0
		for e < len(evs) && evs[e].rev == r {
			add += len(evs[e].recs)
			e++
		}
		if n > 0 && recs+add > maxChain {
			break
		}
		n, recs = e, recs+add
	}
	return n
}

// readHead reads audit/head (linearizable), retrying until ctx ends
// (LastAudit's read, and the sequencer's at each start).
func (s *Store) readHead(ctx context.Context) (head, error) {
	var h head
	err := s.retry(ctx, func(ctx context.Context) error {
		g, err := s.cli.Get(ctx, s.k(keyHead))
		if err != nil {
			return err
		}
		h, err = parseHead(g.Kvs)
		if err != nil {
			return permanent(err)
		}
		return nil
	})
	return h, err
}

// chain seals evs after h and commits them with the new head in one
// transaction that compares the head's revision; on success h moves.
func (s *Store) chain(ctx context.Context, h *head, evs []inboxEvent, chained chan<- []chainedKey) error {
	seq, prev := h.Seq, h.Hash
	if seq == 0 {
		prev = audit.Genesis
	}
	var ops []clientv3.Op
	for _, ev := range evs {
		for _, rec := range ev.recs {
			rec.Seal(seq, prev)
			seq, prev = rec.Seq, rec.Hash
			v, err := rec.Marshal()
			if err != nil {
				return permanent(err)
			}
			ops = append(ops, clientv3.OpPut(recKey(s.p, rec.Seq), string(v)))
		}
	}
	nh := headValue{Seq: seq, Hash: prev, Node: s.cfg.Node, Cursor: evs[len(evs)-1].rev}
	hv, err := json.Marshal(nh)
	if err != nil {
		return err
	}
	ops = append(ops, clientv3.OpPut(s.k(keyHead), string(hv)))
	actx, cancel := context.WithTimeout(ctx, s.attemptTimeout())
	resp, err := s.cli.Txn(actx).If(revCmp(s.k(keyHead), h.rev)).Then(ops...).Commit()
	cancel()
	if err != nil {
		return err // unknown outcome: the head read next says
	}
	if !resp.Succeeded {
		return errLostHead
	}
	*h = head{headValue: nh, rev: resp.Header.Revision}
	now := time.Now()
	ks := make([]chainedKey, len(evs))
	for i, ev := range evs {
		ks[i] = chainedKey{ev.key, now}
	}
	select {
	case chained <- ks:
	case <-ctx.Done():
	}
	return nil
}

// catchUp chains, after a compacted watch, every inbox entry above h's
// cursor from one range read, and returns the revision to watch from next
// (the one after the read's).
func (s *Store) catchUp(ctx context.Context, h *head, chained chan<- []chainedKey) (int64, error) {
	var g *clientv3.GetResponse
	err := s.retry(ctx, func(ctx context.Context) error {
		var err error
		g, err = s.cli.Get(ctx, s.k(keyInbox), clientv3.WithPrefix(), clientv3.WithMinModRev(h.Cursor+1),
			clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortAscend))
		return err
	})
	if err != nil {
		return 0, err
	}
	evs := make([]inboxEvent, 0, len(g.Kvs))
	for _, kv := range g.Kvs {
		evs = append(evs, s.decodeInbox(string(kv.Key), kv.ModRevision, kv.Value))
	}
	s.log.Warn("audit sequencer: inbox history compacted, chaining from a read", "entries", len(evs), "cursor", h.Cursor)
	for len(evs) > 0 {
		n := batchEnd(evs)
		if err := s.chain(ctx, h, evs[:n], chained); err != nil {
			return 0, err
		}
		evs = evs[n:]
	}
	return g.Header.Revision + 1, nil
}

// adoptChained hands the cleaner the inbox entries an earlier sequencer
// chained (ModRevision ≤ cursor) and did not delete.
func (s *Store) adoptChained(ctx context.Context, cursor int64, chained chan<- []chainedKey) error {
	if cursor == 0 {
		return nil
	}
	var g *clientv3.GetResponse
	err := s.retry(ctx, func(ctx context.Context) error {
		var err error
		g, err = s.cli.Get(ctx, s.k(keyInbox), clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithMaxModRev(cursor))
		return err
	})
	if err != nil {
		return err
	}
	now := time.Now()
	for len(g.Kvs) > 0 {
		n := min(len(g.Kvs), 1000)
		ks := make([]chainedKey, n)
		for i, kv := range g.Kvs[:n] {
			ks[i] = chainedKey{string(kv.Key), now}
		}
		select {
		case chained <- ks:
		case <-ctx.Done():
			return ctx.Err()
		}
		g.Kvs = g.Kvs[n:]
	}
	return nil
}

// cleaner deletes chained inbox entries once they are older than
// inboxKeep, in transactions of maxChain deletes, until ctx ends.
func (s *Store) cleaner(ctx context.Context, chained <-chan []chainedKey) {
	var queue []chainedKey
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case ks := <-chained:
			queue = append(queue, ks...)
			continue
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		keep := time.Duration(s.inboxKeep.Load())
		due := 0
		cut := time.Now().Add(-keep)
		for due < len(queue) && queue[due].at.Before(cut) {
			due++
		}
		for due > 0 && ctx.Err() == nil {
			// Keep taking what the sequencer hands over: it must not wait
			// for deletes.
		drain:
			for {
				select {
				case ks := <-chained:
					queue = append(queue, ks...)
				default:
					break drain
				}
			}
			n := min(due, maxChain)
			ops := make([]clientv3.Op, n)
			for i := range n {
				ops[i] = clientv3.OpDelete(queue[i].key)
			}
			// Deletes are idempotent: retried as they are.
			err := s.retry(ctx, func(ctx context.Context) error {
				_, err := s.cli.Txn(ctx).Then(ops...).Commit()
				return err
			})
			if err != nil {
				s.log.Warn("audit sequencer: cannot delete chained inbox entries, will retry", "err", err)
				break
			}
			queue = slices.Delete(queue, 0, n)
			due -= n
			s.inboxDeleted.Add(int64(n))
		}
	}
}

// watchHead keeps watchedHead at the newest audit/head, for SyncAudit and
// the chaining lag (ChainLag).
func (s *Store) watchHead() {
	ctx := clientv3.WithRequireLeader(s.ctx)
	for s.ctx.Err() == nil {
		for wr := range s.cli.Watch(ctx, s.k(keyHead)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				h, err := parseHead([]*mvccpb.KeyValue{ev.Kv})
				if err != nil {
					continue
				}
				s.seeHead(h)
			}
		}
		sleepCtx(s.ctx, 100*time.Millisecond)
	}
}

// seeHead records h if newer than what was seen, wakes SyncAudit waiters
// and measures the lag of this node's inbox commits it covers.
func (s *Store) seeHead(h head) {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	if old := s.watchedHead.Load(); old != nil && h.rev <= old.rev {
		return
	}
	s.watchedHead.Store(&h)
	close(s.headMoved)
	s.headMoved = make(chan struct{})
	now := time.Now()
	n := 0
	for _, p := range s.lagPending {
		if p.rev > h.Cursor {
			break
		}
		s.lags[s.lagNext%len(s.lags)] = now.Sub(p.at)
		s.lagNext++
		n++
	}
	s.lagPending = s.lagPending[n:]
}

// noteInbox records that an inbox transaction of this node committed at
// rev now (for ChainLag).
func (s *Store) noteInbox(rev int64) {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	if len(s.lagPending) < 4096 {
		s.lagPending = append(s.lagPending, lagMark{rev, time.Now()})
	}
}

type lagMark struct {
	rev int64
	at  time.Time
}

// ChainLag reports how long this node's acknowledged records waited to be
// chained: from the inbox transaction's commit (when Audit returned) to
// the moment this node saw a head whose cursor covers it, over the last
// (up to) 8192 inbox transactions: their count, median, 99th percentile
// and maximum. Until then a record is durable (replicated by etcd) but not
// yet tamper-evident.
func (s *Store) ChainLag() (n int, p50, p99, longest time.Duration) {
	s.lagMu.Lock()
	n = min(s.lagNext, len(s.lags))
	ls := slices.Clone(s.lags[:n])
	s.lagMu.Unlock()
	if n == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(ls)
	return n, ls[n/2], ls[min(n-1, n*99/100)], ls[n-1]
}

// ResetChainLag forgets the lag samples (benchmarks).
func (s *Store) ResetChainLag() {
	s.lagMu.Lock()
	s.lagNext = 0
	s.lagMu.Unlock()
}

// SyncAudit returns once every record acknowledged (in any node's inbox)
// before the call is chained (keysvc.AuditSyncer): it reads the newest
// inbox entry's revision, then waits until the head's cursor covers it.
// It fails with wire.ErrStore when ctx ends first (a ctx without a
// deadline is given RequestTimeout) (no node sequencing: every open Store campaigns, so this
// means etcd has no quorum or this node cannot reach it).
func (s *Store) SyncAudit(ctx context.Context) error {
	if err := s.closedErr(); err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	var target int64
	err := s.retry(ctx, func(ctx context.Context) error {
		g, err := s.cli.Get(ctx, s.k(keyInbox), clientv3.WithPrefix(), clientv3.WithKeysOnly(),
			clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))
		if err != nil {
			return err
		}
		target = 0
		if len(g.Kvs) == 1 {
			target = g.Kvs[0].ModRevision
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: wait for the audit chain: read the inbox: %w", wire.ErrStore, err)
	}
	if target == 0 {
		return nil
	}
	poll := time.NewTicker(250 * time.Millisecond) // in case the head watch is behind
	defer poll.Stop()
	for {
		s.lagMu.Lock()
		moved := s.headMoved
		s.lagMu.Unlock()
		if h := s.watchedHead.Load(); h != nil && h.Cursor >= target {
			return nil
		}
		select {
		case <-moved:
		case <-poll.C:
			g, err := s.cli.Get(ctx, s.k(keyHead))
			if err == nil {
				if h, err := parseHead(g.Kvs); err == nil {
					s.seeHead(h)
				}
			}
		case <-ctx.Done():
			cur := int64(0)
			if h := s.watchedHead.Load(); h != nil {
				cur = h.Cursor
			}
			return fmt.Errorf("%w: wait for the audit chain: records acknowledged up to etcd revision %d are not chained yet (chained up to %d): no node is sequencing (etcd quorum?)", wire.ErrStore, target, cur)
		}
	}
}
