package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/keyward/keyward/banking/store"
)

const (
	beginRW = "BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE"
	beginRO = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

	qBucket = `SELECT id FROM kw_buckets WHERE name = $1`
	qGet    = `SELECT v FROM kw_kv WHERE bucket = $1 AND k = $2`
	qSeq    = `SELECT seq FROM kw_buckets WHERE id = $1`
	qCount  = `SELECT count(*) FROM kw_kv WHERE bucket = $1`
	qGetAny = `SELECT k, v FROM kw_kv WHERE bucket = $1 AND k = ANY($2::bytea[])`
	qUpsert = `INSERT INTO kw_kv (bucket, k, v) SELECT * FROM unnest($1::integer[], $2::bytea[], $3::bytea[])
		ON CONFLICT (bucket, k) DO UPDATE SET v = EXCLUDED.v`
	qDelete = `DELETE FROM kw_kv USING unnest($1::integer[], $2::bytea[]) AS d(b, k)
		WHERE kw_kv.bucket = d.b AND kw_kv.k = d.k`
	qSetSeq = `UPDATE kw_buckets SET seq = d.s FROM unnest($1::integer[], $2::bigint[]) AS d(id, s)
		WHERE kw_buckets.id = d.id`

	// pageSize is how many rows a cursor fetches at a time.
	pageSize = 128
)

// tx is one attempt of one transaction. Its connection is taken from the
// pool at the first statement, and BEGIN travels in the same pipelined
// batch as that statement. Writes are kept in per-bucket overlays and sent
// with COMMIT (or before KeyN), so a transaction that reads r distinct keys
// costs about r+1 round trips.
type tx struct {
	db       *DB
	ctx      context.Context
	op       string
	writable bool

	conn       *pgxpool.Conn
	begun      bool
	committed  bool
	commitSent bool
	err        *Error // sticky: the first backend fault

	buckets map[string]*bucket
	order   []*bucket // in first-use order, for a deterministic flush
}

var (
	_ store.Tx         = (*tx)(nil)
	_ store.Prefetcher = (*tx)(nil)
)

// Prefetch reads keys of several buckets in one round trip into the
// transaction's read cache (store.Prefetcher). Keys this transaction wrote
// or already read are not asked for.
func (t *tx) Prefetch(keys ...store.Keys) {
	type ask struct {
		b    *bucket
		keys [][]byte
	}
	var asks []ask
	for _, k := range keys {
		b := t.bucket(k.Bucket)
		if b == nil || t.err != nil {
			return // a missing bucket: its Gets say so; a fault is sticky
		}
		var want [][]byte
		for _, key := range k.Keys {
			if _, ok := b.over[string(key)]; ok {
				continue
			}
			if _, ok := b.reads[string(key)]; ok {
				continue
			}
			want = append(want, key)
		}
		if len(want) > 0 {
			asks = append(asks, ask{b, want})
		}
	}
	if len(asks) == 0 {
		return
	}
	t.roundTrip(func(q *pgx.Batch) {
		for _, a := range asks {
			q.Queue(qGetAny, a.b.id, a.keys)
		}
	}, func(br pgx.BatchResults) error {
		for _, a := range asks {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			got := map[string][]byte{}
			for rows.Next() {
				var k, v []byte
				if err := rows.Scan(&k, &v); err != nil {
					rows.Close()
					return err
				}
				if v == nil {
					v = []byte{} // an empty value is present, not absent
				}
				got[string(k)] = v
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if a.b.reads == nil {
				a.b.reads = make(map[string]cached)
			}
			for _, key := range a.keys {
				v, found := got[string(key)]
				a.b.reads[string(key)] = cached{v: v, found: found}
			}
		}
		return nil
	})
}

func (t *tx) Writable() bool { return t.writable }

// Bucket returns the named bucket or nil.
func (t *tx) Bucket(name []byte) store.Bucket {
	if b := t.bucket(name); b != nil {
		return b
	}
	return nil
}

func (t *tx) bucket(name []byte) *bucket {
	if b, ok := t.buckets[string(name)]; ok {
		return b
	}
	var id int32
	if v, ok := t.db.bucketIDs.Load(string(name)); ok {
		id = v.(int32)
	} else {
		found := false
		t.roundTrip(func(b *pgx.Batch) { b.Queue(qBucket, name) }, func(br pgx.BatchResults) error {
			err := br.QueryRow().Scan(&id)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			found = err == nil
			return err
		})
		if !found {
			return nil
		}
		t.db.bucketIDs.Store(string(name), id)
	}
	if t.buckets == nil {
		t.buckets = make(map[string]*bucket)
	}
	b := &bucket{tx: t, id: id}
	t.buckets[string(name)] = b
	t.order = append(t.order, b)
	return b
}

// fail records the first backend fault; reads return nil from then on.
func (t *tx) fail(err error) *Error {
	if t.err == nil {
		e := classify(t.op, err, t.commitSent, t.ctx)
		if t.conn != nil && connLost(err) && t.ctx.Err() == nil {
			// A lost connection is rarely alone (a failover, a restart):
			// drop every pooled connection so that the next transactions
			// connect afresh and find the writable primary.
			t.db.stats.connLost.Add(1)
			t.db.log.Info("pgstore: connection lost; resetting the pool", "op", t.op, "err", err)
			t.db.pool.Reset()
		}
		t.err = e
	}
	return t.err
}

// roundTrip sends one pipelined batch built by build (preceded by BEGIN on
// the transaction's first trip) and hands its results to read.
func (t *tx) roundTrip(build func(*pgx.Batch), read func(pgx.BatchResults) error) error {
	if t.err != nil {
		return t.err
	}
	if t.conn == nil {
		c, err := t.db.pool.Acquire(t.ctx)
		if err != nil {
			return t.fail(err)
		}
		t.conn = c
	}
	b := &pgx.Batch{}
	begin := !t.begun
	if begin {
		if t.writable {
			b.Queue(beginRW)
		} else {
			b.Queue(beginRO)
		}
	}
	build(b)
	br := t.conn.SendBatch(t.ctx, b)
	if begin {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return t.fail(err)
		}
		t.begun = true
	}
	if err := read(br); err != nil {
		br.Close()
		return t.fail(err)
	}
	if err := br.Close(); err != nil {
		return t.fail(err)
	}
	return nil
}

// flush builds the statements that send every write not yet sent.
func (t *tx) flush(b *pgx.Batch) (n int, sent func()) {
	var ids, delIDs, seqIDs []int32
	var ks, vs, delKs [][]byte
	var seqs []int64
	var done []*entry
	var seqDone []*bucket
	for _, bk := range t.order {
		for k, e := range bk.over {
			if !e.dirty {
				continue
			}
			if e.del {
				delIDs = append(delIDs, bk.id)
				delKs = append(delKs, []byte(k))
			} else {
				ids = append(ids, bk.id)
				ks = append(ks, []byte(k))
				vs = append(vs, e.v)
			}
			done = append(done, e)
		}
		if bk.seqDirty {
			seqIDs = append(seqIDs, bk.id)
			seqs = append(seqs, int64(bk.seq))
			seqDone = append(seqDone, bk)
		}
	}
	if len(ids) > 0 {
		b.Queue(qUpsert, ids, ks, vs)
		n++
	}
	if len(delIDs) > 0 {
		b.Queue(qDelete, delIDs, delKs)
		n++
	}
	if len(seqIDs) > 0 {
		b.Queue(qSetSeq, seqIDs, seqs)
		n++
	}
	return n, func() {
		for _, e := range done {
			e.dirty = false
		}
		for _, bk := range seqDone {
			bk.seqDirty = false
		}
	}
}

// commit sends the buffered writes and COMMIT in one pipelined batch.
func (t *tx) commit() error {
	if t.err != nil {
		return t.err
	}
	probe := &pgx.Batch{}
	n, _ := t.flush(probe)
	if n == 0 && !t.begun {
		t.committed = true // nothing read, nothing written: nothing to do
		return nil
	}
	t.commitSent = true
	err := t.roundTrip(func(b *pgx.Batch) {
		for _, q := range probe.QueuedQueries {
			b.Queue(q.SQL, q.Arguments...)
		}
		b.Queue("COMMIT")
	}, func(br pgx.BatchResults) error {
		for range n {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		tag, err := br.Exec()
		if err != nil {
			return err
		}
		if tag.String() != "COMMIT" {
			return fmt.Errorf("COMMIT answered %q", tag.String())
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.committed = true
	return nil
}

// end finishes the attempt: a transaction not committed is rolled back and
// its connection returned (or dropped when it is in doubt).
func (t *tx) end() {
	if t.conn == nil {
		return
	}
	c := t.conn
	t.conn = nil
	if !t.committed && t.begun && !c.Conn().IsClosed() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if _, err := c.Exec(ctx, "ROLLBACK"); err != nil {
			c.Conn().PgConn().Close(ctx) // in doubt: never lend it again
		}
		cancel()
	}
	c.Release() // pgxpool drops a connection that is closed or still in a transaction
}
