package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
)

// listPage is how many keys ListKeys reads per range request.
const listPage = 500

func (s *Store) keyKey(name string) string { return s.k(keyKeysPrefix + name) }

// CreateKey stores a new key and puts rec (when not nil) into the node's
// audit inbox in the same transaction (the sequencer chains it; rec is
// not changed). A taken name is refused with wire.ErrKeyExists.
func (s *Store) CreateKey(k *keysvc.Key, rec *audit.Record) error {
	if k == nil || k.Name == "" {
		return fmt.Errorf("%w: a key needs a name", wire.ErrInvalidArgument)
	}
	if err := s.closedErr(); err != nil {
		return err
	}
	v, err := json.Marshal(k)
	if err != nil {
		return fmt.Errorf("%w: encode key %q: %w", wire.ErrStore, k.Name, err)
	}
	key := s.keyKey(k.Name)
	exists := fmt.Errorf("%w: %q", wire.ErrKeyExists, k.Name)
	if rec == nil {
		return s.casPut(key, 0, v, exists, "create key "+k.Name)
	}
	j := &job{
		tmpl:  []audit.Record{*rec},
		cmps:  []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		watch: []watchKey{{key, 0}},
		ops:   []clientv3.Op{clientv3.OpPut(key, string(v))},
		keys:  []string{key},
		what:  fmt.Sprintf("create key %q", k.Name),
		dl:    time.Now().Add(s.cfg.RequestTimeout),
	}
	switch err := s.submit(j); {
	case errors.Is(err, errConflict):
		return exists
	default:
		return err
	}
}

// casPut writes v at key if its ModRevision is rev (0: absent), with no
// audit record. An unknown outcome is resolved by reading the key back:
// our bytes there mean it landed. refused is returned when the compare
// fails for another writer.
func (s *Store) casPut(key string, rev int64, v []byte, refused error, what string) error {
	tried := false
	err := s.retry(context.Background(), func(ctx context.Context) error {
		if tried {
			g, err := s.cli.Get(ctx, key)
			if err != nil {
				return err
			}
			if len(g.Kvs) == 1 && g.Kvs[0].ModRevision != rev && bytes.Equal(g.Kvs[0].Value, v) {
				return nil // our earlier attempt landed
			}
		}
		tried = true
		resp, err := s.cli.Txn(ctx).If(revCmp(key, rev)).Then(clientv3.OpPut(key, string(v))).Commit()
		if err != nil {
			return err
		}
		if !resp.Succeeded {
			return permanent(refused)
		}
		return nil
	})
	switch {
	case errors.Is(err, refused):
		return refused
	case err != nil:
		return fmt.Errorf("%w: %s: %w", wire.ErrStore, what, err)
	}
	return nil
}

// GetKey returns the key; wire.ErrKeyNotFound if absent.
func (s *Store) GetKey(name string) (*keysvc.Key, error) {
	k, _, err := s.getKey(name)
	return k, err
}

func (s *Store) getKey(name string) (*keysvc.Key, int64, error) {
	if err := s.closedErr(); err != nil {
		return nil, 0, err
	}
	var kv *mvccpb.KeyValue
	err := s.retry(context.Background(), func(ctx context.Context) error {
		g, err := s.cli.Get(ctx, s.keyKey(name))
		if err != nil {
			return err
		}
		kv = nil
		if len(g.Kvs) == 1 {
			kv = g.Kvs[0]
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("%w: read key %q: %w", wire.ErrStore, name, err)
	}
	if kv == nil {
		return nil, 0, fmt.Errorf("%w: %q", wire.ErrKeyNotFound, name)
	}
	k, err := decodeKey(kv.Value)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: read key %q: %w", wire.ErrStore, name, err)
	}
	return k, kv.ModRevision, nil
}

// ListKeys returns the keys named after after, by name, at most limit (0:
// all), reading listPage keys per request at one revision.
func (s *Store) ListKeys(after string, limit int) ([]*keysvc.Key, error) {
	if err := s.closedErr(); err != nil {
		return nil, err
	}
	var out []*keysvc.Key
	from := s.keyKey("")
	if after != "" {
		from = s.keyKey(after) + "\x00"
	}
	end := clientv3.GetPrefixRangeEnd(s.keyKey(""))
	var rev int64 // the first page's revision: one snapshot for the whole list
	for {
		page := int64(listPage)
		if limit > 0 && limit-len(out) < listPage {
			page = int64(limit - len(out))
		}
		var g *clientv3.GetResponse
		err := s.retry(context.Background(), func(ctx context.Context) error {
			opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(page)}
			if rev != 0 {
				opts = append(opts, clientv3.WithRev(rev))
			}
			var err error
			g, err = s.cli.Get(ctx, from, opts...)
			if errors.Is(err, rpctypes.ErrCompacted) {
				return permanent(err)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("%w: list keys: %w", wire.ErrStore, err)
		}
		if rev == 0 {
			rev = g.Header.Revision
		}
		for _, kv := range g.Kvs {
			k, err := decodeKey(kv.Value)
			if err != nil {
				return nil, fmt.Errorf("%w: list keys: key %q: %w", wire.ErrStore, kv.Key, err)
			}
			out = append(out, k)
		}
		if !g.More || len(g.Kvs) == 0 || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		from = string(g.Kvs[len(g.Kvs)-1].Key) + "\x00"
	}
}

// UpdateKey runs fn on a copy of the key and stores the result with rec
// (when not nil) in one transaction that compares the key's ModRevision
// (and nothing else: the record goes to the node's audit inbox, chained
// later by the sequencer; rec is not changed): when another node changed
// the key meanwhile, it reads the key again and runs fn again, so fn may
// run more than once. An error from fn stores nothing and is returned as
// is. fn must not rename the key.
func (s *Store) UpdateKey(name string, fn func(k *keysvc.Key) error, rec *audit.Record) (*keysvc.Key, error) {
	dl := time.Now().Add(s.cfg.RequestTimeout)
	// This node's updates of one key go one at a time: concurrent ones
	// would only conflict with each other. Other nodes' still may.
	l, _ := s.keyLocks.LoadOrStore(name, new(sync.Mutex))
	l.(*sync.Mutex).Lock()
	defer l.(*sync.Mutex).Unlock()
	for {
		k, rev, err := s.getKey(name)
		if err != nil {
			return nil, err
		}
		if err := fn(k); err != nil {
			return nil, err
		}
		if k.Name != name {
			return nil, fmt.Errorf("%w: an update of key %q must not rename it (to %q)", wire.ErrInvalidArgument, name, k.Name)
		}
		v, err := json.Marshal(k)
		if err != nil {
			return nil, fmt.Errorf("%w: update key %q: encode: %w", wire.ErrStore, name, err)
		}
		key := s.keyKey(name)
		if rec == nil {
			err = s.casPut(key, rev, v, errConflict, fmt.Sprintf("update key %q", name))
		} else {
			err = s.submit(&job{
				tmpl:  []audit.Record{*rec}, // after fn, which may fill in the record's result
				cmps:  []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)},
				watch: []watchKey{{key, rev}},
				ops:   []clientv3.Op{clientv3.OpPut(key, string(v))},
				keys:  []string{key},
				what:  fmt.Sprintf("update key %q", name),
				dl:    dl,
			})
		}
		switch {
		case errors.Is(err, errConflict):
			if time.Now().After(dl) {
				return nil, fmt.Errorf("%w: update key %q: still changing under other writers after %s", wire.ErrStore, name, s.cfg.RequestTimeout)
			}
			continue
		case err != nil:
			return nil, err
		}
		return decodeKey(v)
	}
}

func decodeKey(v []byte) (*keysvc.Key, error) {
	k := new(keysvc.Key)
	if err := json.Unmarshal(v, k); err != nil {
		return nil, fmt.Errorf("decode key: %w", err)
	}
	return k, nil
}

// WatchKeys calls put with every key record committed after the call, by
// any node, in commit order, until ctx ends (keysvc.KeyFeed). It watches
// the keys prefix from the revision after a consistent read, and calls
// reset right after that read (before the first put): every change
// committed after the read is delivered, so the caller may cache from
// then on. A broken watch resumes from the revision after the last event
// it delivered (so nothing is missed and reset is not called); a
// compacted history starts again from a new consistent read, followed by
// reset; a record that does not decode calls reset. Deleted key records
// (keysvc never deletes one) are skipped.
func (s *Store) WatchKeys(ctx context.Context, put func(*keysvc.Key), reset func()) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	prefix := s.keyKey("")
	var next int64 // revision to watch from; 0: take a consistent read first
	sleep := retryFirstSleep
	for ctx.Err() == nil {
		if next == 0 {
			rctx, rcancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
			g, err := s.cli.Get(rctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			rcancel()
			if err != nil {
				s.log.Warn("key feed: cannot read etcd, retrying", "err", err)
				sleepCtx(ctx, sleep)
				sleep = min(2*sleep, time.Second)
				continue
			}
			next = g.Header.Revision + 1
			// The watch's start is fixed: every put after the read is
			// delivered, so the caller may cache from now on.
			reset()
		}
		wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(next))
		lost := false
		for wr := range wch {
			if wr.CompactRevision != 0 || errors.Is(wr.Err(), rpctypes.ErrCompacted) {
				s.log.Warn("key feed: history compacted, the key cache starts again", "compact_revision", wr.CompactRevision)
				next = 0 // reset follows the next consistent read
				lost = true
				break
			}
			if err := wr.Err(); err != nil {
				s.log.Warn("key feed: watch lost, resuming", "err", err, "from_revision", next)
				lost = true
				break
			}
			sleep = retryFirstSleep
			for _, ev := range wr.Events {
				next = ev.Kv.ModRevision + 1
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				k, err := decodeKey(ev.Kv.Value)
				if err != nil {
					s.log.Error("key feed: a key record does not decode, the key cache starts again", "key", string(ev.Kv.Key), "err", err)
					reset()
					continue
				}
				put(k)
			}
		}
		if !lost && ctx.Err() == nil {
			// The channel closed without an error (e.g. the leader was lost
			// under WithRequireLeader): resume.
			s.log.Warn("key feed: watch closed, resuming", "from_revision", next)
		}
		sleepCtx(ctx, sleep)
		sleep = min(2*sleep, time.Second)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
