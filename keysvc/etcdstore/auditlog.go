package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
)

// auditChunk is how many records AuditRecords reads per range request.
const auditChunk = 1000

// Audit appends rec durably: it is group-committed with this node's
// concurrent appends into the node's inbox by the flusher, and chained a
// moment later by the cluster's sequencer (package doc). rec is never
// changed: its Seq, Prev and Hash are decided by the sequencer
// (SyncAudit, then AuditRecords, shows them). On failure (wire.ErrStore,
// after RequestTimeout at most) the caller must fail its operation.
func (s *Store) Audit(rec *audit.Record) error {
	if rec == nil {
		return fmt.Errorf("%w: nil audit record", wire.ErrInvalidArgument)
	}
	return s.submit(&job{
		tmpl: []audit.Record{*rec},
		what: "append audit record",
		dl:   time.Now().Add(s.cfg.RequestTimeout),
	})
}

// AuditRecords calls fn for each chained record in order, from seq from (0 and 1
// both mean the whole log), reading auditChunk records per request; fn
// runs between requests, and records appended during the walk are
// included. An error from fn stops the walk and is returned as is. A
// record that does not decode, or stored under another seq, is reported
// as wire.ErrStore and audit.ErrTampered.
func (s *Store) AuditRecords(from uint64, fn func(audit.Record) error) error {
	if err := s.closedErr(); err != nil {
		return err
	}
	next := max(from, 1)
	end := clientv3.GetPrefixRangeEnd(s.k(keyRecPrefix))
	for {
		var kvs []*mvccpb.KeyValue
		var more bool
		err := s.retry(context.Background(), func(ctx context.Context) error {
			g, err := s.cli.Get(ctx, recKey(s.p, next), clientv3.WithRange(end), clientv3.WithLimit(auditChunk))
			if err != nil {
				return err
			}
			kvs, more = g.Kvs, g.More
			return nil
		})
		if err != nil {
			return fmt.Errorf("%w: read audit log: %w", wire.ErrStore, err)
		}
		for _, kv := range kvs {
			seq, perr := strconv.ParseUint(string(kv.Key[len(s.k(keyRecPrefix)):]), 10, 64)
			r, err := audit.Unmarshal(kv.Value)
			switch {
			case perr != nil:
				return fmt.Errorf("%w: %w: malformed audit key %q", wire.ErrStore, audit.ErrTampered, kv.Key)
			case err != nil:
				return fmt.Errorf("%w: %w: audit record stored under %d does not decode: %w", wire.ErrStore, audit.ErrTampered, seq, err)
			}
			if err := fn(r); err != nil {
				return err
			}
			next = seq + 1
		}
		if !more || len(kvs) == 0 {
			return nil
		}
	}
}

// LastAudit returns the sequence number and hash of the newest chained
// record (0 and audit.Genesis when the log is empty), by a linearizable
// read. Records acknowledged but not yet chained are not covered: call
// SyncAudit first for that.
func (s *Store) LastAudit() (uint64, []byte, error) {
	if err := s.closedErr(); err != nil {
		return 0, nil, err
	}
	h, err := s.readHead(context.Background())
	if err != nil {
		return 0, nil, fmt.Errorf("%w: read audit head: %w", wire.ErrStore, err)
	}
	return h.Seq, bytes.Clone(h.Hash), nil
}

func cpKey(p string, seq uint64) string {
	return fmt.Sprintf("%s%s%0*d", p, keyCPPrefix, seqDigits, seq)
}

// AddCheckpoint stores a signed checkpoint. Like boltstore, a checkpoint
// that does not name a record of the log (Seq 0, beyond the newest record,
// or a hash other than the record's) or does not follow the newest stored
// checkpoint is refused with wire.ErrInvalidArgument. Several nodes may
// race: checkpoints are keyed by seq; a second checkpoint of the same seq
// is ignored when identical and refused otherwise; the newest-checkpoint
// marker (audit/checkpoint-last) is compared, so two checkpoints never
// both chain to the same predecessor.
func (s *Store) AddCheckpoint(c audit.Checkpoint) error {
	if err := s.closedErr(); err != nil {
		return err
	}
	v, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("%w: encode checkpoint %d: %w", wire.ErrStore, c.Seq, err)
	}
	refuse := func(format string, a ...any) error {
		return permanent(fmt.Errorf("%w: "+format, append([]any{wire.ErrInvalidArgument}, a...)...))
	}
	var ignored bool
	err = s.retry(context.Background(), func(ctx context.Context) error {
		resp, err := s.cli.Txn(ctx).Then(
			clientv3.OpGet(s.k(keyHead)),
			clientv3.OpGet(recKey(s.p, c.Seq)),
			clientv3.OpGet(cpKey(s.p, c.Seq)),
			clientv3.OpGet(s.k(keyCPLast)),
		).Commit()
		if err != nil {
			return err
		}
		rs := resp.Responses
		h, err := parseHead(rs[0].GetResponseRange().Kvs)
		if err != nil {
			return permanent(err)
		}
		if same := rs[2].GetResponseRange().Kvs; len(same) == 1 {
			if bytes.Equal(same[0].Value, v) {
				ignored = true
				return nil // the same checkpoint, stored already (our own earlier attempt, or a retry)
			}
			return refuse("audit record %d has a checkpoint already (another node's)", c.Seq)
		}
		var rec []byte
		if recs := rs[1].GetResponseRange().Kvs; len(recs) == 1 {
			rec = append([]byte{}, recs[0].Value...) // never nil: nil means missing
		}
		if no, err := c.NamesRecord(h.Seq, rec); no != nil || err != nil {
			if no != nil {
				return refuse("%w", no)
			}
			return permanent(err)
		}
		var prev *audit.Checkpoint
		var lastRev int64
		if last := rs[3].GetResponseRange().Kvs; len(last) == 1 {
			lastRev = last[0].ModRevision
			seq, err := strconv.ParseUint(string(last[0].Value), 10, 64)
			if err != nil {
				return permanent(fmt.Errorf("%w: audit/checkpoint-last holds %q", audit.ErrTampered, last[0].Value))
			}
			g, err := s.cli.Get(ctx, cpKey(s.p, seq), clientv3.WithRev(resp.Header.Revision))
			if err != nil {
				return err
			}
			if len(g.Kvs) != 1 {
				return permanent(fmt.Errorf("%w: the newest checkpoint %d is missing", audit.ErrTampered, seq))
			}
			p, err := audit.UnmarshalCheckpoint(g.Kvs[0].Value)
			if err != nil {
				return permanent(fmt.Errorf("%w: checkpoint %d: %w", audit.ErrTampered, seq, err))
			}
			prev = &p
		}
		if err := c.Follows(prev); err != nil {
			return refuse("the checkpoint does not chain to the newest stored one: %w", err)
		}
		t, err := s.cli.Txn(ctx).If(revCmp(s.k(keyCPLast), lastRev), clientv3.Compare(clientv3.CreateRevision(cpKey(s.p, c.Seq)), "=", 0)).
			Then(clientv3.OpPut(cpKey(s.p, c.Seq), string(v)), clientv3.OpPut(s.k(keyCPLast), strconv.FormatUint(c.Seq, 10))).Commit()
		if err != nil {
			return err // unknown outcome: the next run finds it stored (identical) or not
		}
		if !t.Succeeded {
			return errors.New("another checkpoint was stored meanwhile") // read again
		}
		return nil
	})
	var pe permanentError
	switch {
	case errors.As(err, &pe) && errors.Is(err, wire.ErrInvalidArgument):
		return pe.error
	case err != nil:
		return fmt.Errorf("%w: add checkpoint %d: %w", wire.ErrStore, c.Seq, err)
	}
	if ignored {
		s.log.Debug("checkpoint already stored", "seq", c.Seq)
	}
	return nil
}

// Checkpoints lists the stored checkpoints by Seq.
func (s *Store) Checkpoints() ([]audit.Checkpoint, error) {
	if err := s.closedErr(); err != nil {
		return nil, err
	}
	var out []audit.Checkpoint
	err := s.retry(context.Background(), func(ctx context.Context) error {
		g, err := s.cli.Get(ctx, s.k(keyCPPrefix), clientv3.WithPrefix())
		if err != nil {
			return err
		}
		out = out[:0]
		for _, kv := range g.Kvs {
			c, err := audit.UnmarshalCheckpoint(kv.Value)
			if err != nil {
				return permanent(fmt.Errorf("%w: checkpoint %s: %w", audit.ErrTampered, kv.Key, err))
			}
			out = append(out, c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: list checkpoints: %w", wire.ErrStore, err)
	}
	audit.SortCheckpoints(out)
	return out, nil
}

// AuditFormat reports the log's format. A cluster store starts in
// keysvc.AuditFormat (Open), so it is never 1 unless written so by hand.
func (s *Store) AuditFormat() (int, error) {
	if err := s.closedErr(); err != nil {
		return 0, err
	}
	var f int
	err := s.retry(context.Background(), func(ctx context.Context) error {
		g, err := s.cli.Get(ctx, s.k(keyFormat))
		if err != nil {
			return err
		}
		if len(g.Kvs) == 0 {
			f = 1
			return nil
		}
		f, err = strconv.Atoi(string(g.Kvs[0].Value))
		if err != nil || f < 1 {
			return permanent(fmt.Errorf("audit/format holds a malformed format %q", g.Kvs[0].Value))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("%w: read audit format: %w", wire.ErrStore, err)
	}
	return f, nil
}

// MigrateAudit refuses: a cluster store's log is born in
// keysvc.AuditFormat (there is no format-1 etcd log to migrate), and a
// migration rewrites the whole chain, which does not fit one etcd
// transaction. A format-1 bbolt log is migrated by a bbolt keysvc before
// its keys move to a cluster.
func (s *Store) MigrateAudit(m keysvc.AuditMigration) error {
	if m.Final == nil || m.Rekey == nil || m.Sign == nil {
		return fmt.Errorf("%w: an audit migration needs Rekey, Final and Sign", wire.ErrInvalidArgument)
	}
	f, err := s.AuditFormat()
	if err != nil {
		return err
	}
	if f != 1 {
		return fmt.Errorf("%w: migrate audit log: the log is already in format %d", wire.ErrStore, f)
	}
	return fmt.Errorf("%w: migrate audit log: a format-1 log in etcd cannot be migrated in one transaction; migrate it with a bbolt keysvc first", wire.ErrStore)
}
