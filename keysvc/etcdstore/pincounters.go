package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
)

// PINCounters returns the token PIN guard's counters, shared by every node
// of the cluster (token.CounterStore): with it, six wrong PINs lock a
// token across the whole cluster, not per node.
func (s *Store) PINCounters() token.CounterStore { return pinCounters{s} }

type pinCounters struct{ s *Store }

// pinValue is what pin/state/<id> holds: the state and the mark of the
// update that wrote it (to tell whether an update of unknown outcome
// landed).
type pinValue struct {
	State token.PINState `json:"state"`
	Op    string         `json:"op"`
}

func (p pinCounters) key(id string) string { return p.s.k(keyPINState + url.PathEscape(id)) }

// Get returns the state of id (zero when none is stored).
func (p pinCounters) Get(id string) (token.PINState, error) {
	st, _, _, err := p.read(context.Background(), id)
	return st, err
}

func (p pinCounters) read(ctx context.Context, id string) (token.PINState, int64, string, error) {
	if err := p.s.closedErr(); err != nil {
		return token.PINState{}, 0, "", err
	}
	var (
		v   pinValue
		rev int64
	)
	err := p.s.retry(ctx, func(ctx context.Context) error {
		g, err := p.s.cli.Get(ctx, p.key(id))
		if err != nil {
			return err
		}
		v, rev = pinValue{}, 0
		if len(g.Kvs) == 1 {
			rev = g.Kvs[0].ModRevision
			if err := json.Unmarshal(g.Kvs[0].Value, &v); err != nil {
				return permanent(fmt.Errorf("PIN state of %s does not decode: %w", id, err))
			}
		}
		return nil
	})
	if err != nil {
		return token.PINState{}, 0, "", fmt.Errorf("%w: read PIN state: %w", wire.ErrStore, err)
	}
	return v.State, rev, v.Op, nil
}

// Update runs fn on id's state and stores the result in one compare-and-
// swap on the state's ModRevision, reading and running fn again when
// another node changed it meanwhile: the guard's check-and-count is
// atomic across the cluster. It has committed (a quorum of etcd members)
// when it returns nil. An update of unknown outcome is resolved by its
// mark, so fn's effect is never applied twice.
func (p pinCounters) Update(id string, fn func(st *token.PINState) error) error {
	dl := time.Now().Add(p.s.cfg.RequestTimeout)
	op := nonce()
	key := p.key(id)
	for {
		if time.Now().After(dl) {
			return fmt.Errorf("%w: update PIN state: no commit within %s", wire.ErrStore, p.s.cfg.RequestTimeout)
		}
		ctx, cancel := context.WithDeadline(context.Background(), dl)
		st, rev, mark, err := p.read(ctx, id)
		cancel()
		if err != nil {
			return err
		}
		if mark == op {
			return nil // an earlier attempt of ours landed
		}
		if err := fn(&st); err != nil {
			return err
		}
		v, err := json.Marshal(pinValue{State: st, Op: op})
		if err != nil {
			return fmt.Errorf("%w: encode PIN state: %w", wire.ErrStore, err)
		}
		ctx, cancel = context.WithDeadline(p.s.ctx, dl)
		ctx, cancel2 := context.WithTimeout(ctx, p.s.attemptTimeout())
		resp, err := p.s.cli.Txn(ctx).If(revCmp(key, rev)).Then(clientv3.OpPut(key, string(v))).Commit()
		cancel2()
		cancel()
		switch {
		case err != nil:
			// Unknown outcome: the next read tells by the mark.
			if p.s.closedErr() != nil {
				return p.s.closedErr()
			}
			if time.Now().After(dl) {
				return fmt.Errorf("%w: update PIN state: %w", wire.ErrStore, err)
			}
			time.Sleep(retryFirstSleep)
		case resp.Succeeded:
			return nil
		}
	}
}

// Record stores a PIN-guard event under pin/events/<id>/.
func (p pinCounters) Record(ev token.Event) error {
	if err := p.s.closedErr(); err != nil {
		return err
	}
	v, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("%w: encode PIN event: %w", wire.ErrStore, err)
	}
	key := p.s.k(fmt.Sprintf("%s%s/%020d-%s-%s", keyPINEvents, url.PathEscape(ev.Token), ev.At.UnixNano(), url.PathEscape(p.s.cfg.Node), nonce()[:8]))
	err = p.s.retry(context.Background(), func(ctx context.Context) error {
		_, err := p.s.cli.Put(ctx, key, string(v)) // idempotent: one key per event
		return err
	})
	if err != nil {
		return fmt.Errorf("%w: record PIN event: %w", wire.ErrStore, err)
	}
	return nil
}

// Events returns id's events, oldest first.
func (p pinCounters) Events(id string) ([]token.Event, error) {
	if err := p.s.closedErr(); err != nil {
		return nil, err
	}
	var out []token.Event
	err := p.s.retry(context.Background(), func(ctx context.Context) error {
		g, err := p.s.cli.Get(ctx, p.s.k(keyPINEvents+url.PathEscape(id)+"/"), clientv3.WithPrefix())
		if err != nil {
			return err
		}
		out = out[:0]
		for _, kv := range g.Kvs {
			var ev token.Event
			if err := json.Unmarshal(kv.Value, &ev); err != nil {
				return permanent(fmt.Errorf("PIN event %s does not decode: %w", kv.Key, err))
			}
			out = append(out, ev)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: read PIN events: %w", wire.ErrStore, err)
	}
	return out, nil
}
