package banking

import (
	"context"
	"sync"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
)

// receiptSigner signs receipt bodies through keysvc's sign-batch: requests
// arriving together share one call (and one keysvc audit record) instead
// of one call each, which halves banking's keysvc round trips per
// transfer. A few workers keep calls in flight while the next batch
// gathers. Each caller still waits for its own signature.
type receiptSigner struct {
	kms     KMS
	seen    func(version int) // told each signature's key version
	jobs    chan signJob
	max     int
	gather  time.Duration
	stop    chan struct{}
	wg      sync.WaitGroup
	stopped sync.Once
}

type signJob struct {
	ctx  context.Context
	body []byte
	done chan signResult // buffered 1
}

type signResult struct {
	sig string // "kw:v<n>:<b64>"
	err error
}

const (
	receiptWorkers  = 4
	receiptBatchMax = 64
	receiptGather   = time.Millisecond
)

func newReceiptSigner(kms KMS, seen func(version int)) *receiptSigner {
	r := &receiptSigner{kms: kms, seen: seen, jobs: make(chan signJob, 1024), max: receiptBatchMax, gather: receiptGather, stop: make(chan struct{})}
	for range receiptWorkers {
		r.wg.Add(1)
		go r.work()
	}
	return r
}

// sign returns the signature of body, batched with concurrent callers.
func (r *receiptSigner) sign(ctx context.Context, body []byte) (string, error) {
	j := signJob{ctx: ctx, body: body, done: make(chan signResult, 1)}
	select {
	case r.jobs <- j:
	case <-ctx.Done():
		return "", ctx.Err()
	case <-r.stop:
		return "", ErrUnavailable
	}
	select {
	case res := <-j.done:
		return res.sig, res.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (r *receiptSigner) work() {
	defer r.wg.Done()
	for {
		var batch []signJob
		select {
		case j := <-r.jobs:
			batch = append(batch, j)
		case <-r.stop:
			return
		}
		t := time.NewTimer(r.gather)
	gather:
		for len(batch) < r.max {
			select {
			case j := <-r.jobs:
				batch = append(batch, j)
			case <-t.C:
				break gather
			}
		}
		t.Stop()
		r.flush(batch)
	}
}

// flush signs one batch; callers whose context ended are left out.
func (r *receiptSigner) flush(batch []signJob) {
	live := batch[:0]
	for _, j := range batch {
		if j.ctx.Err() == nil {
			live = append(live, j)
		} else {
			j.done <- signResult{err: j.ctx.Err()}
		}
	}
	if len(live) == 0 {
		return
	}
	reqs := make([]wire.SignRequest, len(live))
	for i, j := range live {
		reqs[i] = wire.SignRequest{Message: j.body}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := r.kms.SignBatch(ctx, KeyReceipt, reqs)
	if err == nil && len(res) != len(live) {
		err = ErrUnavailable
	}
	for i, j := range live {
		if err != nil {
			j.done <- signResult{err: kmsErr(err)}
			continue
		}
		j.done <- signResult{sig: res[i].Signature}
	}
	if err == nil {
		if v, verr := wire.VersionOf(res[0].Signature); verr == nil {
			r.seen(v) // a rotated receipt key refreshes the served public key
		}
	}
}

// close stops the workers; callers waiting get ErrUnavailable or their
// context's end.
func (r *receiptSigner) close() {
	r.stopped.Do(func() { close(r.stop) })
	r.wg.Wait()
}
