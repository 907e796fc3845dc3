package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
)

// job is one change for the flusher: audit records to put into this
// node's inbox, and the change's own puts and compares, all committed in
// one transaction with the rest of its batch.
type job struct {
	tmpl    []audit.Record // the records, unsealed (copies)
	cmps    []clientv3.Cmp // the change's own compares
	watch   []watchKey     // the keys compared: a different ModRevision in Else is a conflict
	ops     []clientv3.Op  // the change's puts
	keys    []string       // the keys ops write: two jobs writing one key never share a batch
	what    string         // names the change in errors
	done    chan error     // buffered: nil, errConflict or a wire.ErrStore error
	dl      time.Time      // the caller's deadline
	state   jobState
	in      []string // the records' inbox keys (set once, kept across attempts)
	inVals  []string // the records' inbox values
	unknown bool     // an attempt's outcome was unknown
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
	var carry []*job
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
		s.commit(batch)
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

// inboxEntry is the value of audit/in/<node>/<id>: the record unsealed,
// and when the node first tried to commit it (for operators).
type inboxEntry struct {
	Rec  audit.Record `json:"rec"`
	Node string       `json:"node"`
	At   time.Time    `json:"at"`
}

// prepare gives j's records their inbox keys and values, once: every
// attempt of j puts the same keys, so an attempt whose outcome was unknown
// is recognised by its first key (module doc).
func (s *Store) prepare(j *job) error {
	if j.in != nil {
		return nil
	}
	now := time.Now().UTC()
	for _, r := range j.tmpl {
		r.Seq, r.Prev, r.Hash = 0, nil, nil
		v, err := json.Marshal(inboxEntry{Rec: r, Node: s.cfg.Node, At: now})
		if err != nil {
			return fmt.Errorf("encode audit record: %w", err)
		}
		j.in = append(j.in, s.inboxKey(nonce()))
		j.inVals = append(j.inVals, string(v))
	}
	return nil
}

// commit puts batch's records into this node's inbox and the jobs' own
// changes in one transaction, retrying on unknown outcomes until every job
// is answered. Each job compares its first inbox key absent, so a retry of
// a transaction that had landed fails that compare and the Else branch
// shows the key: landed. No compare on the audit head: nodes never
// conflict over the chain.
func (s *Store) commit(batch []*job) {
	var (
		lastErr error
		sleep   = retryFirstSleep
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
	for _, j := range batch {
		if err := s.prepare(j); err != nil { // never for a Record
			j.answer(fmt.Errorf("%w: %s: %w", wire.ErrStore, j.what, err))
		}
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
				j.answer(s.timeoutErr(j, lastErr, j.unknown))
			default:
				live = append(live, j)
			}
		}
		batch = live
		if len(batch) == 0 {
			return
		}
		latest := batch[0].dl
		for _, j := range batch {
			if j.dl.After(latest) {
				latest = j.dl
			}
		}
		var cmps []clientv3.Cmp
		var then, els []clientv3.Op
		for _, j := range batch {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(j.in[0]), "=", 0))
			cmps = append(cmps, j.cmps...)
			for i := range j.in {
				then = append(then, clientv3.OpPut(j.in[i], j.inVals[i]))
			}
			then = append(then, j.ops...)
			els = append(els, clientv3.OpGet(j.in[0], clientv3.WithKeysOnly()))
			for _, w := range j.watch {
				els = append(els, clientv3.OpGet(w.key, clientv3.WithKeysOnly()))
			}
		}
		ctx, cancel := context.WithDeadline(s.ctx, latest)
		ctx, cancel2 := context.WithTimeout(ctx, s.attemptTimeout())
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
		cancel2()
		cancel()
		if err != nil {
			// Unknown outcome: the same transaction again tells.
			for _, j := range batch {
				j.unknown = true
			}
			lastErr = err
			s.log.Debug("audit append: outcome unknown, retrying the same inbox keys", "err", err)
			pause()
			continue
		}
		sleep = retryFirstSleep
		if resp.Succeeded {
			s.noteInbox(resp.Header.Revision)
			for _, j := range batch {
				j.answer(nil)
			}
			return
		}
		found, landed := settle(resp.Responses, batch)
		if landed > 0 {
			s.log.Debug("audit append: the attempt of unknown outcome had landed", "jobs", landed)
		}
		if !found { // a compare failed that no read explains: never spin
			s.log.Warn("audit append: transaction refused with no visible change, retrying")
			pause()
		}
	}
}

// settle answers, from a refused transaction's Else reads (in batch
// order: each job's first inbox key, then its compared keys), every job
// whose inbox key is present (an earlier attempt landed: nil) or whose
// compared key changed (errConflict); it reports whether any was, and how
// many had landed.
func settle(rs []*etcdserverpb.ResponseOp, batch []*job) (found bool, landed int) {
	idx := 0
	for _, j := range batch {
		in := len(rs[idx].GetResponseRange().Kvs) == 1
		idx++
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
		switch {
		case in:
			j.answer(nil)
			found = true
			landed++
		case conflict:
			j.answer(errConflict)
			found = true
		}
	}
	return found, landed
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
