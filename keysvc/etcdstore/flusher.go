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
	unknown bool // an attempt's outcome was unknown
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

// inboxEntry is the value of audit/in/<node>/<id>: the records of one
// flusher transaction, unsealed, in the order their calls queued, and
// when the node first tried to commit them (for operators).
type inboxEntry struct {
	Recs []audit.Record `json:"recs"`
	Node string         `json:"node"`
	At   time.Time      `json:"at"`
}

// commit puts batch's records into this node's inbox — one inbox key for
// the whole batch — with the jobs' own changes in one transaction,
// retrying on unknown outcomes until every job is answered. The
// transaction compares the inbox key absent, so a retry of a transaction
// that had landed fails that compare and the Else branch shows the key:
// landed. No compare on the audit head: nodes never conflict over the
// chain.
func (s *Store) commit(batch []*job) {
	var (
		lastErr error
		sleep   = retryFirstSleep
		key     = s.inboxKey(nonce())
		at      = time.Now().UTC()
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
		// The jobs still live: a retry after a conflict carries fewer
		// records under the same key (nothing had landed).
		e := inboxEntry{Node: s.cfg.Node, At: at}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
		var then []clientv3.Op
		els := []clientv3.Op{clientv3.OpGet(key, clientv3.WithKeysOnly())}
		for _, j := range batch {
			for _, r := range j.tmpl {
				r.Seq, r.Prev, r.Hash = 0, nil, nil
				e.Recs = append(e.Recs, r)
			}
			cmps = append(cmps, j.cmps...)
			then = append(then, j.ops...)
			for _, w := range j.watch {
				els = append(els, clientv3.OpGet(w.key, clientv3.WithKeysOnly()))
			}
		}
		v, err := json.Marshal(e)
		if err != nil { // never for Records
			for _, j := range batch {
				j.answer(fmt.Errorf("%w: %s: encode audit records: %w", wire.ErrStore, j.what, err))
			}
			return
		}
		then = append(then, clientv3.OpPut(key, string(v)))
		ctx, cancel := context.WithDeadline(s.ctx, latest)
		ctx, cancel2 := context.WithTimeout(ctx, s.attemptTimeout())
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
		cancel2()
		cancel()
		if err != nil {
			// Unknown outcome: the same key again tells.
			for _, j := range batch {
				j.unknown = true
			}
			lastErr = err
			s.log.Debug("audit append: outcome unknown, retrying under the same inbox key", "err", err)
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
		if len(resp.Responses[0].GetResponseRange().Kvs) == 1 {
			s.log.Debug("audit append: the attempt of unknown outcome had landed", "jobs", len(batch))
			for _, j := range batch {
				j.answer(nil)
			}
			return
		}
		if !settle(resp.Responses[1:], batch) { // a compare failed that no read explains: never spin
			s.log.Warn("audit append: transaction refused with no visible change, retrying")
			pause()
		}
	}
}

// settle answers errConflict, from a refused transaction's Else reads of
// the compared keys (in batch order), to every job whose compared key
// changed; it reports whether any did.
func settle(rs []*etcdserverpb.ResponseOp, batch []*job) bool {
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

func (s *Store) timeoutErr(j *job, last error, unknown bool) error {
	if unknown {
		return fmt.Errorf("%w: %s: etcd did not confirm the write within %s (it may still be applied when the cluster recovers): %w", wire.ErrStore, j.what, s.cfg.RequestTimeout, last)
	}
	if last == nil {
		return fmt.Errorf("%w: %s: no commit within %s (etcd slow, or the key kept changing under other nodes)", wire.ErrStore, j.what, s.cfg.RequestTimeout)
	}
	return fmt.Errorf("%w: %s: etcd did not answer within %s (no quorum?): %w", wire.ErrStore, j.what, s.cfg.RequestTimeout, last)
}
