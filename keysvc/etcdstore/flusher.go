package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
)

// job is one change for the flusher: audit records to seal and append,
// and the change's own puts and compares, all committed in one
// transaction with the rest of its batch.
type job struct {
	tmpl  []audit.Record  // the records, unsealed (copies)
	out   []*audit.Record // the caller's records: the sealed copies go there on success
	cmps  []clientv3.Cmp  // the change's own compares
	watch []watchKey      // the keys compared: a different ModRevision in Else is a conflict
	ops   []clientv3.Op   // the change's puts
	keys  []string        // the keys ops write: two jobs writing one key never share a batch
	what  string          // names the change in errors
	done  chan error      // buffered: nil, errConflict or a wire.ErrStore error
	dl    time.Time       // the caller's deadline
	state jobState
}

type jobState int

const (
	jobLive jobState = iota
	jobAnswered
)

type watchKey struct {
	key string
	rev int64 // expected ModRevision (0: absent)
}

// errConflict: a key the job compared changed; the caller reads it again
// and runs its function again.
var errConflict = errors.New("etcdstore: conflict")

func (j *job) size() int { return len(j.tmpl) + len(j.ops) }

func (j *job) answer(err error) {
	if j.state == jobLive {
		j.state = jobAnswered
		j.done <- err
	}
}

// headValue is what audit/head holds.
type headValue struct {
	Seq  uint64 `json:"seq"`
	Hash []byte `json:"hash"`
	Node string `json:"node,omitempty"` // the node that appended it (for operators)
}

// head is the flusher's cached chain head.
type head struct {
	headValue
	rev   int64 // ModRevision of audit/head (0: no record yet)
	known bool
}

// attempt is a transaction whose outcome is unknown. Every attempt compares
// the head revision it read, so at most one attempt per head revision
// applies; once the head has moved past headRev, the attempt landed iff the
// record at lastSeq has lastHash (a hash covers its whole chain).
type attempt struct {
	headRev  int64
	lastSeq  uint64
	lastHash []byte
	jobs     []*job
	sealed   [][]audit.Record
}

// submit queues j and waits for its answer.
func (s *Store) submit(j *job) error {
	if err := s.closedErr(); err != nil {
		return err
	}
	j.done = make(chan error, 1)
	select {
	case <-s.closing:
		return fmt.Errorf("%w: %w", wire.ErrStore, ErrClosed)
	case s.jobs <- j:
	}
	select {
	case err := <-j.done:
		return err
	case <-s.flusherOut:
		select {
		case err := <-j.done:
			return err
		default:
			return fmt.Errorf("%w: %w", wire.ErrStore, ErrClosed)
		}
	}
}

// flusher commits queued jobs in batches until Close.
func (s *Store) flusher() {
	defer close(s.flusherOut)
	var (
		h     head
		carry []*job
	)
	closed := fmt.Errorf("%w: %w", wire.ErrStore, ErrClosed)
	for {
		if len(carry) == 0 {
			select {
			case j := <-s.jobs:
				carry = append(carry, j)
			case <-s.closing:
			}
		}
		if s.closedErr() != nil {
			for _, j := range carry {
				j.answer(closed)
			}
			for {
				select {
				case j := <-s.jobs:
					j.answer(closed)
				default:
					return
				}
			}
		}
		var batch []*job
		batch, carry = fill(carry, s.jobs)
		s.commit(&h, batch)
	}
}

// fill takes jobs from carry, then from the queue, up to maxBatchOps
// operations and with no key written twice; what does not fit is carried
// to the next batch (at least one job is always taken).
func fill(carry []*job, queue chan *job) (batch, rest []*job) {
	used := map[string]bool{}
	ops := 0
	fits := func(j *job) bool {
		if len(batch) > 0 && ops+j.size() > maxBatchOps {
			return false
		}
		for _, k := range j.keys {
			if used[k] {
				return false
			}
		}
		return true
	}
	take := func(j *job) {
		batch = append(batch, j)
		ops += j.size()
		for _, k := range j.keys {
			used[k] = true
		}
	}
	for _, j := range carry {
		if fits(j) {
			take(j)
		} else {
			rest = append(rest, j)
		}
	}
	for len(rest) == 0 && ops < maxBatchOps {
		select {
		case j := <-queue:
			if fits(j) {
				take(j)
			} else {
				rest = append(rest, j)
			}
		default:
			return batch, rest
		}
	}
	return batch, rest
}

// commit appends batch in one transaction, retrying on conflicts and
// unknown outcomes until every job is answered (module doc).
func (s *Store) commit(h *head, batch []*job) {
	var (
		unresolved []attempt
		lastErr    error
		sleep      = retryFirstSleep
	)
	pause := func() {
		t := time.NewTimer(sleep)
		select {
		case <-t.C:
		case <-s.closing:
			t.Stop()
		}
		sleep = min(2*sleep, retryMaxSleep)
	}
	for {
		// Answer the jobs whose deadline passed, and the rest if closing.
		now := time.Now()
		closing := s.closedErr() != nil
		live := batch[:0]
		for _, j := range batch {
			switch {
			case j.state != jobLive:
			case closing:
				j.answer(fmt.Errorf("%w: %s: %w", wire.ErrStore, j.what, ErrClosed))
			case !now.Before(j.dl):
				j.answer(s.timeoutErr(j, lastErr, inAttempts(unresolved, j)))
			default:
				live = append(live, j)
			}
		}
		batch = live
		if len(batch) == 0 {
			if len(unresolved) > 0 {
				h.known = false // an attempt may still land: read the head again next time
			}
			return
		}
		latest := batch[0].dl
		for _, j := range batch {
			if j.dl.After(latest) {
				latest = j.dl
			}
		}
		ctx, cancel := context.WithDeadline(s.ctx, latest)
		ctx, cancel2 := context.WithTimeout(ctx, s.attemptTimeout())
		cancel = func(c1, c2 context.CancelFunc) context.CancelFunc { return func() { c2(); c1() } }(cancel, cancel2)

		if len(unresolved) == 0 {
			// Another node's append, seen by the head watch, saves the
			// first attempt's conflict.
			if w := s.watchedHead.Load(); w != nil && h.known && w.rev > h.rev {
				*h = *w
			}
		}
		if !h.known {
			ob, err := s.observe(ctx, unresolved)
			if err != nil {
				cancel()
				lastErr = err
				pause()
				continue
			}
			*h = ob.h
			var landed *attempt
			landed, unresolved = resolve(unresolved, h.rev, ob.recs)
			if landed != nil {
				cancel()
				s.log.Debug("audit append: the attempt of unknown outcome had landed", "last_seq", landed.lastSeq)
				deliver(landed)
				return
			}
		}

		t, err := s.sealBatch(h, batch, unresolved)
		if err != nil { // never for a Record; answer rather than loop
			cancel()
			for _, j := range batch {
				j.answer(fmt.Errorf("%w: %s: %w", wire.ErrStore, j.what, err))
			}
			return
		}
		nUnres := len(unresolved)
		resp, err := s.cli.Txn(ctx).If(t.cmps...).Then(t.then...).Else(t.els...).Commit()
		cancel()
		if err != nil {
			// Unknown outcome: remember the attempt, read the head again.
			unresolved = append(unresolved, attempt{headRev: h.rev, lastSeq: t.nh.Seq, lastHash: t.nh.Hash, jobs: append([]*job(nil), batch...), sealed: t.sealed})
			h.known = false
			lastErr = err
			s.log.Debug("audit append: outcome unknown, re-reading the head", "err", err)
			pause()
			continue
		}
		sleep = retryFirstSleep
		if resp.Succeeded {
			*h = head{headValue: t.nh, rev: resp.Header.Revision, known: true}
			deliver(&attempt{jobs: batch, sealed: t.sealed})
			return
		}
		// Another node appended (or a compared key changed).
		rs := resp.Responses
		hd, err := parseHead(rs[0].GetResponseRange().Kvs)
		if err != nil {
			h.known = false
			lastErr = err
			pause()
			continue
		}
		moved := hd.rev != h.rev
		*h = hd
		recs := map[uint64][]byte{}
		for i, a := range unresolved {
			if kvs := rs[1+i].GetResponseRange().Kvs; len(kvs) == 1 {
				recs[a.lastSeq] = kvs[0].Value
			}
		}
		var landed *attempt
		landed, unresolved = resolve(unresolved, h.rev, recs)
		if landed != nil {
			s.log.Debug("audit append: the attempt of unknown outcome had landed", "last_seq", landed.lastSeq)
			deliver(landed)
			return
		}
		if markConflicts(rs[1+nUnres:], batch) { // the watched keys follow the head and the records
			moved = true
		}
		if !moved { // a compare failed that no read explains: never spin
			s.log.Warn("audit append: transaction refused with no visible change, retrying")
			pause()
		}
	}
}

// batchTxn is one attempt's transaction: the batch sealed after a head.
type batchTxn struct {
	cmps   []clientv3.Cmp
	then   []clientv3.Op
	els    []clientv3.Op
	sealed [][]audit.Record // per job
	nh     headValue        // the head after the batch
}

// sealBatch seals batch's records after h (on copies) and builds the
// transaction: If(head unchanged, the jobs' compares) Then(records, the
// jobs' puts, head) Else(head, the unresolved attempts' last records, the
// jobs' compared keys).
func (s *Store) sealBatch(h *head, batch []*job, unresolved []attempt) (batchTxn, error) {
	t := batchTxn{sealed: make([][]audit.Record, len(batch)), cmps: []clientv3.Cmp{headCmp(s.k(keyHead), h.rev)}}
	seq, prev := h.Seq, h.Hash
	if seq == 0 {
		prev = audit.Genesis
	}
	for i, j := range batch {
		t.sealed[i] = make([]audit.Record, len(j.tmpl))
		for r := range j.tmpl {
			rec := j.tmpl[r]
			rec.Seal(seq, prev)
			seq, prev = rec.Seq, rec.Hash
			v, err := rec.Marshal()
			if err != nil {
				return batchTxn{}, fmt.Errorf("encode audit record: %w", err)
			}
			t.sealed[i][r] = rec
			t.then = append(t.then, clientv3.OpPut(recKey(s.p, rec.Seq), string(v)))
		}
		t.then = append(t.then, j.ops...)
		t.cmps = append(t.cmps, j.cmps...)
	}
	t.nh = headValue{Seq: seq, Hash: prev, Node: s.cfg.Node}
	hv, err := json.Marshal(t.nh)
	if err != nil {
		return batchTxn{}, fmt.Errorf("encode audit head: %w", err)
	}
	t.then = append(t.then, clientv3.OpPut(s.k(keyHead), string(hv)))
	t.els = []clientv3.Op{clientv3.OpGet(s.k(keyHead))}
	for _, a := range unresolved {
		t.els = append(t.els, clientv3.OpGet(recKey(s.p, a.lastSeq)))
	}
	for _, j := range batch {
		for _, w := range j.watch {
			t.els = append(t.els, clientv3.OpGet(w.key))
		}
	}
	return t, nil
}

// markConflicts answers errConflict to each job of batch whose compared key
// changed, given the Else branch's reads of those keys (in batch order); it
// reports whether any did.
func markConflicts(rs []*etcdserverpb.ResponseOp, batch []*job) bool {
	found := false
	idx := 0
	for _, j := range batch {
		conflict := false
		for _, w := range j.watch {
			kvs := rs[idx].GetResponseRange().Kvs
			idx++
			var rev int64
			if len(kvs) == 1 {
				rev = kvs[0].ModRevision
			}
			if rev != w.rev {
				conflict = true
			}
		}
		if conflict {
			j.answer(errConflict)
			found = true
		}
	}
	return found
}

func inAttempts(as []attempt, j *job) bool {
	for _, a := range as {
		for _, x := range a.jobs {
			if x == j {
				return true
			}
		}
	}
	return false
}

func (s *Store) timeoutErr(j *job, last error, unknown bool) error {
	if unknown {
		return fmt.Errorf("%w: %s: etcd did not confirm the write within %s (it may still be applied when the cluster recovers): %w", wire.ErrStore, j.what, s.cfg.RequestTimeout, last)
	}
	if last == nil {
		return fmt.Errorf("%w: %s: no commit within %s (etcd slow, or the key kept changing under other nodes)", wire.ErrStore, j.what, s.cfg.RequestTimeout)
	}
	return fmt.Errorf("%w: %s: etcd did not answer within %s (no quorum?): %w", wire.ErrStore, j.what, s.cfg.RequestTimeout, last)
}

// resolve looks for a landed attempt among unresolved, given the head's
// revision now and the records read at the attempts' last seqs; it returns
// the landed one, or the attempts that may still apply (made on the
// current head).
func resolve(unresolved []attempt, headRev int64, recs map[uint64][]byte) (*attempt, []attempt) {
	var still []attempt
	for i := range unresolved {
		a := &unresolved[i]
		if a.headRev == headRev {
			still = append(still, *a) // not applied (it would have moved the head), may still apply
			continue
		}
		if v, ok := recs[a.lastSeq]; ok {
			if r, err := audit.Unmarshal(v); err == nil && r.Seq == a.lastSeq && bytes.Equal(r.Hash, a.lastHash) {
				return a, nil
			}
		}
		// The head moved and the record is not ours: it never applied, and never will.
	}
	return nil, still
}

// deliver hands a committed attempt's sealed records to its callers.
func deliver(a *attempt) {
	for i, j := range a.jobs {
		if j.state != jobLive {
			continue
		}
		for r := range j.out {
			if j.out[r] != nil {
				*j.out[r] = a.sealed[i][r]
			}
		}
		j.answer(nil)
	}
}

// observation is the head and the records at the unresolved attempts' last seqs.
type observation struct {
	h    head
	recs map[uint64][]byte
}

// observe reads the head and the records of the unresolved attempts in one
// read (a linearizable read-only transaction).
func (s *Store) observe(ctx context.Context, unresolved []attempt) (observation, error) {
	ops := []clientv3.Op{clientv3.OpGet(s.k(keyHead))}
	for _, a := range unresolved {
		ops = append(ops, clientv3.OpGet(recKey(s.p, a.lastSeq)))
	}
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return observation{}, err
	}
	h, err := parseHead(resp.Responses[0].GetResponseRange().Kvs)
	if err != nil {
		return observation{}, err
	}
	ob := observation{h: h, recs: map[uint64][]byte{}}
	for i, a := range unresolved {
		if kvs := resp.Responses[1+i].GetResponseRange().Kvs; len(kvs) == 1 {
			ob.recs[a.lastSeq] = kvs[0].Value
		}
	}
	return ob, nil
}

func parseHead(kvs []*mvccpb.KeyValue) (head, error) {
	if len(kvs) == 0 {
		return head{headValue: headValue{Hash: audit.Genesis}, known: true}, nil
	}
	var hv headValue
	if err := json.Unmarshal(kvs[0].Value, &hv); err != nil || hv.Seq == 0 || len(hv.Hash) == 0 {
		return head{}, fmt.Errorf("%w: audit/head does not decode (%d bytes)", audit.ErrTampered, len(kvs[0].Value))
	}
	return head{headValue: hv, rev: kvs[0].ModRevision, known: true}, nil
}

// headCmp compares audit/head's revision with rev (0: absent).
func headCmp(key string, rev int64) clientv3.Cmp {
	if rev == 0 {
		return clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	return clientv3.Compare(clientv3.ModRevision(key), "=", rev)
}

// watchHead keeps watchedHead at the newest audit/head any node wrote, so
// the flusher seals on it rather than learning it from a failed attempt.
// It is only a hint: every attempt still compares the head's revision.
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
				if old := s.watchedHead.Load(); old == nil || h.rev > old.rev {
					s.watchedHead.Store(&h)
				}
			}
		}
		sleepCtx(s.ctx, 100*time.Millisecond)
	}
}
