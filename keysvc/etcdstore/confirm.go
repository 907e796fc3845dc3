package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/wire"
)

// Confirmations returns the cluster's confirmation store
// (keysvc.ConfirmStorer): a confirmation opened on one node is approved
// through another and collected on a third.
func (s *Store) Confirmations() keysvc.ConfirmStore { return confirmStore{s} }

// confirmStore keeps confirmations under confirm/ (package doc):
//
//	confirm/id/<id>        the record        lease: ExpiresAt − now + keep
//	confirm/holder/<hex>   → id              the same lease
//	confirm/key/<key>      → id (pending)    lease: ExpiresAt − now
//
// The key lock is what makes one pending confirmation per key: Open
// creates it only if absent; an Update that ends the confirmation deletes
// it in the same transaction; its lease frees the key at ExpiresAt even
// when the node that opened the confirmation died.
type confirmStore struct{ s *Store }

var _ keysvc.ConfirmStore = confirmStore{}

func (c confirmStore) idKey(id string) string { return c.s.k(keyConfirmID + url.PathEscape(id)) }
func (c confirmStore) holderKey(h string) string {
	return c.s.k(keyConfirmHold + url.PathEscape(h))
}
func (c confirmStore) lockKey(key string) string { return c.s.k(keyConfirmKey + url.PathEscape(key)) }

// leaseSeconds rounds d up to whole seconds (at least 1): a lease never
// ends before the instant it stands for.
func leaseSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

// Open stores rec, pending, unless its key has a pending confirmation: then
// it stores nothing and returns that one.
func (c confirmStore) Open(ctx context.Context, rec *keysvc.ConfirmRecord, keep time.Duration) (*keysvc.ConfirmRecord, error) {
	if err := c.s.closedErr(); err != nil {
		return nil, err
	}
	if rec == nil || rec.View.ID == "" || rec.View.Key == "" {
		return nil, fmt.Errorf("%w: a confirmation needs an id and a key", wire.ErrInvalidArgument)
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("%w: encode confirmation: %w", wire.ErrStore, err)
	}
	id := rec.View.ID
	var other *keysvc.ConfirmRecord
	tried := false
	err = c.s.retry(ctx, func(ctx context.Context) error {
		other = nil
		if tried { // an earlier attempt's outcome is unknown: did it land?
			g, err := c.s.cli.Get(ctx, c.idKey(id))
			if err != nil {
				return err
			}
			if len(g.Kvs) == 1 && bytes.Equal(g.Kvs[0].Value, v) {
				return nil
			}
		}
		now := time.Now()
		lockLease, err := c.s.cli.Grant(ctx, leaseSeconds(rec.View.ExpiresAt.Sub(now)))
		if err != nil {
			return err
		}
		keepLease, err := c.s.cli.Grant(ctx, leaseSeconds(rec.View.ExpiresAt.Sub(now)+keep))
		if err != nil {
			return err
		}
		puts := []clientv3.Op{
			clientv3.OpPut(c.lockKey(rec.View.Key), id, clientv3.WithLease(lockLease.ID)),
			clientv3.OpPut(c.idKey(id), string(v), clientv3.WithLease(keepLease.ID)),
			clientv3.OpPut(c.holderKey(rec.Holder), id, clientv3.WithLease(keepLease.ID)),
		}
		tried = true
		resp, err := c.s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(c.lockKey(rec.View.Key)), "=", 0)).
			Then(puts...).Else(clientv3.OpGet(c.lockKey(rec.View.Key))).Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
		// The key is locked. Held by a confirmation that is still pending
		// and not past its ExpiresAt (the lease may outlive it by up to a
		// second), it refuses this one; otherwise the lock is stale and is
		// taken over, compared on its revision.
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			tried = false
			return errors.New("the key lock went away meanwhile") // retry at once
		}
		lock := kvs[0]
		held, _, err := c.get(ctx, string(lock.Value))
		if err != nil {
			return err
		}
		if held != nil && held.Pending() && time.Now().Before(held.View.ExpiresAt) {
			other = held
			c.s.cli.Revoke(ctx, lockLease.ID) //nolint:errcheck // unused: it expires anyway
			c.s.cli.Revoke(ctx, keepLease.ID) //nolint:errcheck
			return nil
		}
		t, err := c.s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(c.lockKey(rec.View.Key)), "=", lock.ModRevision)).
			Then(puts...).Commit()
		if err != nil {
			return err
		}
		if !t.Succeeded {
			tried = false
			return errors.New("the key lock changed meanwhile") // read again
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: open confirmation %s: %w", wire.ErrStore, id, err)
	}
	return other, nil
}

// get reads id's record and its ModRevision (nil, 0 when there is none).
func (c confirmStore) get(ctx context.Context, id string) (*keysvc.ConfirmRecord, int64, error) {
	g, err := c.s.cli.Get(ctx, c.idKey(id))
	if err != nil {
		return nil, 0, err
	}
	if len(g.Kvs) == 0 {
		return nil, 0, nil
	}
	r := new(keysvc.ConfirmRecord)
	if err := json.Unmarshal(g.Kvs[0].Value, r); err != nil {
		return nil, 0, permanent(fmt.Errorf("confirmation %s does not decode: %w", id, err))
	}
	return r, g.Kvs[0].ModRevision, nil
}

// Get returns id's record (nil, nil when there is none).
func (c confirmStore) Get(ctx context.Context, id string) (*keysvc.ConfirmRecord, error) {
	if err := c.s.closedErr(); err != nil {
		return nil, err
	}
	var r *keysvc.ConfirmRecord
	err := c.s.retry(ctx, func(ctx context.Context) error {
		var err error
		r, _, err = c.get(ctx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: read confirmation %s: %w", wire.ErrStore, id, err)
	}
	return r, nil
}

// ByHolder returns the record whose Holder is holder (nil, nil when none).
func (c confirmStore) ByHolder(ctx context.Context, holder string) (*keysvc.ConfirmRecord, error) {
	if err := c.s.closedErr(); err != nil {
		return nil, err
	}
	var r *keysvc.ConfirmRecord
	err := c.s.retry(ctx, func(ctx context.Context) error {
		r = nil
		g, err := c.s.cli.Get(ctx, c.holderKey(holder))
		if err != nil || len(g.Kvs) == 0 {
			return err
		}
		r, _, err = c.get(ctx, string(g.Kvs[0].Value))
		if r != nil && r.Holder != holder {
			r = nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: find confirmation by holder: %w", wire.ErrStore, err)
	}
	return r, nil
}

// Update runs fn on a copy of id's record and stores the result if the
// record did not change meanwhile (compared on its ModRevision; it keeps
// its lease); otherwise it reads again and runs fn again. A record that
// leaves pending deletes its key lock in the same transaction.
func (c confirmStore) Update(ctx context.Context, id string, fn func(r *keysvc.ConfirmRecord) error) (*keysvc.ConfirmRecord, error) {
	if err := c.s.closedErr(); err != nil {
		return nil, err
	}
	var (
		out     *keysvc.ConfirmRecord
		fnErr   error
		written []byte // what our last attempt of unknown outcome wrote
	)
	err := c.s.retry(ctx, func(ctx context.Context) error {
		r, rev, err := c.get(ctx, id)
		if err != nil {
			return err
		}
		if r == nil {
			out = nil
			return nil
		}
		if written != nil {
			raw, _ := json.Marshal(r)
			if bytes.Equal(raw, written) {
				out = r // our earlier attempt landed
				return nil
			}
			written = nil
		}
		if err := fn(r); err != nil {
			fnErr = err
			return permanent(err)
		}
		v, err := json.Marshal(r)
		if err != nil {
			return permanent(err)
		}
		then := []clientv3.Op{clientv3.OpPut(c.idKey(id), string(v), clientv3.WithIgnoreLease())}
		if !r.Pending() {
			lock := c.lockKey(r.View.Key)
			then = append(then, clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.Value(lock), "=", id)},
				[]clientv3.Op{clientv3.OpDelete(lock)}, nil))
		}
		resp, err := c.s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(c.idKey(id)), "=", rev)).Then(then...).Commit()
		if err != nil {
			written = v
			return err
		}
		if !resp.Succeeded {
			return errors.New("changed meanwhile") // read again
		}
		out = r
		return nil
	})
	switch {
	case fnErr != nil:
		return nil, fnErr
	case err != nil:
		return nil, fmt.Errorf("%w: update confirmation %s: %w", wire.ErrStore, id, err)
	}
	return out, nil
}

// Wait returns when id's record is no longer pending (or is gone), or
// when ctx ends (ctx.Err()). It watches the record from the revision of
// the read that found it pending.
func (c confirmStore) Wait(ctx context.Context, id string) error {
	for {
		if err := c.s.closedErr(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var (
			r   *keysvc.ConfirmRecord
			rev int64
		)
		err := c.s.retry(ctx, func(ctx context.Context) error {
			g, err := c.s.cli.Get(ctx, c.idKey(id))
			if err != nil {
				return err
			}
			rev, r = g.Header.Revision, nil
			if len(g.Kvs) == 1 {
				r = new(keysvc.ConfirmRecord)
				if err := json.Unmarshal(g.Kvs[0].Value, r); err != nil {
					return permanent(err)
				}
			}
			return nil
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			var pe permanentError
			if errors.As(err, &pe) || c.s.closedErr() != nil {
				return fmt.Errorf("%w: wait for confirmation %s: %w", wire.ErrStore, id, err)
			}
			continue // etcd unreachable for RequestTimeout: keep waiting until ctx ends
		}
		if r == nil || !r.Pending() {
			return nil
		}
		wctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(c.s.ctx, cancel)
		ended := false
		for wr := range c.s.cli.Watch(clientv3.WithRequireLeader(wctx), c.idKey(id), clientv3.WithRev(rev+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					ended = true
					continue
				}
				var nr keysvc.ConfirmRecord
				if json.Unmarshal(ev.Kv.Value, &nr) == nil && !nr.Pending() {
					ended = true
				}
			}
			if ended {
				break
			}
		}
		stop()
		cancel()
		if ended {
			return nil
		}
		sleepCtx(ctx, retryFirstSleep) // the watch broke: read again
	}
}

// Pending lists the pending confirmations, expired ones that no node ended
// included (the sweep's work).
func (c confirmStore) Pending(ctx context.Context) ([]*keysvc.ConfirmRecord, error) {
	if err := c.s.closedErr(); err != nil {
		return nil, err
	}
	var out []*keysvc.ConfirmRecord
	err := c.s.retry(ctx, func(ctx context.Context) error {
		out = nil
		g, err := c.s.cli.Get(ctx, c.s.k(keyConfirmID), clientv3.WithPrefix())
		if err != nil {
			return err
		}
		for _, kv := range g.Kvs {
			r := new(keysvc.ConfirmRecord)
			if err := json.Unmarshal(kv.Value, r); err != nil {
				return permanent(fmt.Errorf("confirmation %s does not decode: %w", kv.Key, err))
			}
			if r.Pending() {
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: list pending confirmations: %w", wire.ErrStore, err)
	}
	return out, nil
}
