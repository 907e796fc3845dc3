package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
)

// ServiceKeys returns the recorded identities of keysvc's service keys,
// or nil when none are recorded yet (keysvc.Store).
func (s *Store) ServiceKeys() (*keysvc.ServiceKeyRecord, error) {
	return readRecord[keysvc.ServiceKeyRecord](s, keyServiceKeys, "the service-key record")
}

// KEKEpochs returns the KEK epoch record, or nil when none is stored.
func (s *Store) KEKEpochs() (*keysvc.KEKEpochs, error) {
	return readRecord[keysvc.KEKEpochs](s, keyKEKEpochs, "the KEK epoch record")
}

// SetServiceKeys stores r as the service-key record and appends rec (when
// not nil) in the same transaction.
func (s *Store) SetServiceKeys(r *keysvc.ServiceKeyRecord, rec *audit.Record) error {
	return s.putRecords("the service-key record", rec, namedValue{keyServiceKeys, r})
}

// SetKEKEpochs stores e, and sk as the service-key record when not nil,
// and appends rec when not nil, in one transaction.
func (s *Store) SetKEKEpochs(e *keysvc.KEKEpochs, sk *keysvc.ServiceKeyRecord, rec *audit.Record) error {
	vals := []namedValue{{keyKEKEpochs, e}}
	if sk != nil {
		vals = append(vals, namedValue{keyServiceKeys, sk})
	}
	return s.putRecords("the KEK epoch record", rec, vals...)
}

type namedValue struct {
	key   string
	value any
}

func readRecord[T any](s *Store, key, what string) (*T, error) {
	if err := s.closedErr(); err != nil {
		return nil, err
	}
	var r *T
	err := s.retry(context.Background(), func(ctx context.Context) error {
		g, err := s.cli.Get(ctx, s.k(key))
		if err != nil {
			return err
		}
		r = nil
		if len(g.Kvs) == 0 {
			return nil
		}
		r = new(T)
		if err := json.Unmarshal(g.Kvs[0].Value, r); err != nil {
			return permanent(err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", wire.ErrStore, what, err)
	}
	return r, nil
}

// putRecords stores vals (last writer wins, as in boltstore) and appends
// rec when not nil, in one transaction.
func (s *Store) putRecords(what string, rec *audit.Record, vals ...namedValue) error {
	if err := s.closedErr(); err != nil {
		return err
	}
	var ops []clientv3.Op
	var keys []string
	for _, nv := range vals {
		v, err := json.Marshal(nv.value)
		if err != nil {
			return fmt.Errorf("%w: encode %s: %w", wire.ErrStore, what, err)
		}
		ops = append(ops, clientv3.OpPut(s.k(nv.key), string(v)))
		keys = append(keys, s.k(nv.key))
	}
	if rec == nil {
		// Idempotent puts: retried as they are.
		err := s.retry(context.Background(), func(ctx context.Context) error {
			_, err := s.cli.Txn(ctx).Then(ops...).Commit()
			return err
		})
		if err != nil {
			return fmt.Errorf("%w: store %s: %w", wire.ErrStore, what, err)
		}
		return nil
	}
	return s.submit(&job{
		tmpl: []audit.Record{*rec},
		ops:  ops,
		keys: keys,
		what: "store " + what,
		dl:   time.Now().Add(s.cfg.RequestTimeout),
	})
}
