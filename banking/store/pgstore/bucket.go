package pgstore

import (
	"bytes"
	"errors"
	"sort"

	"github.com/jackc/pgx/v5"
	"github.com/keyward/keyward/banking/store"
)

// entry is a write of this transaction: a value or a deletion.
type entry struct {
	v     []byte
	del   bool
	dirty bool // not yet sent to the server
}

// cached is a value read from the server in this transaction's snapshot.
type cached struct {
	v     []byte
	found bool
}

// bucket is a bucket inside one transaction: the server's snapshot seen
// through this transaction's writes (over), which always win.
type bucket struct {
	tx *tx
	id int32

	over   map[string]*entry
	sorted []string // over's keys in order; nil until a cursor needs them
	reads  map[string]cached

	seqKnown bool
	seq      uint64
	seqDirty bool
}

var _ store.Bucket = (*bucket)(nil)

// Get returns the value at key: this transaction's write if any, else the
// snapshot's (read once per transaction).
func (b *bucket) Get(key []byte) []byte {
	if b.tx.err != nil {
		return nil
	}
	if e, ok := b.over[string(key)]; ok {
		if e.del {
			return nil
		}
		return e.v
	}
	if c, ok := b.reads[string(key)]; ok {
		return c.v
	}
	var v []byte
	found := false
	err := b.tx.roundTrip(func(q *pgx.Batch) { q.Queue(qGet, b.id, key) }, func(br pgx.BatchResults) error {
		err := br.QueryRow().Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil {
		return nil
	}
	if found && v == nil {
		v = []byte{} // an empty value is present, not absent
	}
	if b.reads == nil {
		b.reads = make(map[string]cached)
	}
	b.reads[string(key)] = cached{v: v, found: found}
	return v
}

func (b *bucket) checkWrite(key []byte) error {
	switch {
	case b.tx.err != nil:
		return b.tx.err
	case !b.tx.writable:
		return ErrTxNotWritable
	case len(key) == 0:
		return ErrKeyRequired
	case len(key) > MaxKeySize:
		return ErrKeyTooLarge
	}
	return nil
}

// Put stores value at key; the write reaches the server with COMMIT.
func (b *bucket) Put(key, value []byte) error {
	if err := b.checkWrite(key); err != nil {
		return err
	}
	v := make([]byte, len(value))
	copy(v, value)
	b.write(key, &entry{v: v, dirty: true})
	return nil
}

// Delete removes key.
func (b *bucket) Delete(key []byte) error {
	if err := b.checkWrite(key); err != nil {
		return err
	}
	b.write(key, &entry{del: true, dirty: true})
	return nil
}

func (b *bucket) write(key []byte, e *entry) {
	if b.over == nil {
		b.over = make(map[string]*entry)
	}
	k := string(key)
	if _, ok := b.over[k]; !ok && b.sorted != nil {
		i := sort.SearchStrings(b.sorted, k)
		b.sorted = append(b.sorted, "")
		copy(b.sorted[i+1:], b.sorted[i:])
		b.sorted[i] = k
	}
	b.over[k] = e
}

// sortedKeys returns the overlay's keys in order, building the index on
// first use (writes without cursors never pay for it).
func (b *bucket) sortedKeys() []string {
	if b.sorted == nil {
		b.sorted = make([]string, 0, len(b.over))
		for k := range b.over {
			b.sorted = append(b.sorted, k)
		}
		sort.Strings(b.sorted) // Go strings compare bytewise, as bytea does
	}
	return b.sorted
}

// Cursor returns a cursor over the bucket.
func (b *bucket) Cursor() store.Cursor { return &cursor{b: b} }

// ForEach calls fn for every pair in key order.
func (b *bucket) ForEach(fn func(k, v []byte) error) error {
	c := &cursor{b: b}
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return b.tx.errOrNil()
}

func (t *tx) errOrNil() error {
	if t.err != nil {
		return t.err
	}
	return nil
}

func (b *bucket) loadSeq() bool {
	if b.seqKnown {
		return true
	}
	var s int64
	err := b.tx.roundTrip(func(q *pgx.Batch) { q.Queue(qSeq, b.id) }, func(br pgx.BatchResults) error {
		return br.QueryRow().Scan(&s)
	})
	if err != nil {
		return false
	}
	b.seq, b.seqKnown = uint64(s), true
	return true
}

// Sequence returns the bucket's sequence (0 on a backend fault).
func (b *bucket) Sequence() uint64 {
	if b.tx.err != nil || !b.loadSeq() {
		return 0
	}
	return b.seq
}

// NextSequence increments the sequence; the new value is written with
// COMMIT, and two transactions that both increment it cannot both commit.
func (b *bucket) NextSequence() (uint64, error) {
	if b.tx.err != nil {
		return 0, b.tx.err
	}
	if !b.tx.writable {
		return 0, ErrTxNotWritable
	}
	if !b.loadSeq() {
		return 0, b.tx.err
	}
	b.seq++
	b.seqDirty = true
	return b.seq, nil
}

// KeyN counts the keys: the transaction's writes are sent first, in the
// same round trip as the count.
func (b *bucket) KeyN() int {
	if b.tx.err != nil {
		return 0
	}
	var n int64
	var k int
	var sent func()
	err := b.tx.roundTrip(func(q *pgx.Batch) {
		k, sent = b.tx.flush(q)
		q.Queue(qCount, b.id)
	}, func(br pgx.BatchResults) error {
		for range k {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		return br.QueryRow().Scan(&n)
	})
	if err != nil {
		return 0
	}
	sent()
	return int(n)
}

// kv is one row of a cursor page.
type kv struct{ k, v []byte }

// bound is one end of a key range: none (unbounded), or key with incl
// saying whether key itself is inside.
type bound struct {
	key  []byte
	incl bool
	none bool
}

// cursor walks the snapshot, fetched pageSize rows at a time, merged with
// the transaction's overlay (an overlay entry hides the server's row of
// the same key; deletions are skipped). Writes made while a cursor is open
// — Cursor.Delete included — are seen by its next move, because the
// overlay is consulted at every step.
type cursor struct {
	b   *bucket
	cur []byte // key the cursor is on; nil when unpositioned or past an end

	page []kv // server rows, ascending if asc else descending
	asc  bool
	from bound // the page holds every server row from this bound on …
	more bool  // … up to its last row; more rows may follow when true
	have bool
}

var _ store.Cursor = (*cursor)(nil)

func (c *cursor) First() ([]byte, []byte) { return c.move(true, bound{none: true}) }
func (c *cursor) Last() ([]byte, []byte)  { return c.move(false, bound{none: true}) }
func (c *cursor) Seek(seek []byte) ([]byte, []byte) {
	return c.move(true, bound{key: append([]byte{}, seek...), incl: true})
}

func (c *cursor) Next() ([]byte, []byte) {
	if c.cur == nil {
		return nil, nil
	}
	return c.move(true, bound{key: c.cur})
}

func (c *cursor) Prev() ([]byte, []byte) {
	if c.cur == nil {
		return nil, nil
	}
	return c.move(false, bound{key: c.cur})
}

// Delete removes the pair the cursor is on.
func (c *cursor) Delete() error {
	if c.cur == nil {
		return errors.New("pgstore: cursor is not on a key")
	}
	return c.b.Delete(c.cur)
}

// move finds the first key after from in the direction asc, skipping keys
// this transaction deleted.
func (c *cursor) move(asc bool, from bound) ([]byte, []byte) {
	for {
		if c.b.tx.err != nil {
			c.cur = nil
			return nil, nil
		}
		srv, okS := c.server(asc, from)
		if c.b.tx.err != nil {
			c.cur = nil
			return nil, nil
		}
		ok, okO := c.overlay(asc, from)
		switch {
		case !okS && !okO:
			c.cur = nil
			return nil, nil
		case okO && (!okS || before(asc, ok, srv.k) || bytes.Equal(ok, srv.k)):
			e := c.b.over[string(ok)]
			if e.del {
				from = bound{key: ok}
				continue
			}
			c.cur = ok
			return ok, e.v
		default:
			c.cur = srv.k
			return srv.k, srv.v
		}
	}
}

// before reports whether a comes before b walking in direction asc.
func before(asc bool, a, b []byte) bool {
	if asc {
		return bytes.Compare(a, b) < 0
	}
	return bytes.Compare(a, b) > 0
}

// inside reports whether key lies beyond bound in direction asc.
func inside(asc bool, bd bound, key []byte) bool {
	if bd.none {
		return true
	}
	cmp := bytes.Compare(key, bd.key)
	if !asc {
		cmp = -cmp
	}
	return cmp > 0 || (cmp == 0 && bd.incl)
}

// covers reports whether a page fetched from bound p holds every row from
// bound q on (q at or beyond p).
func covers(asc bool, p, q bound) bool {
	switch {
	case p.none:
		return true
	case q.none:
		return false
	}
	cmp := bytes.Compare(q.key, p.key)
	if !asc {
		cmp = -cmp
	}
	return cmp > 0 || (cmp == 0 && (p.incl || !q.incl))
}

// overlay returns the first overlay key beyond from.
func (c *cursor) overlay(asc bool, from bound) ([]byte, bool) {
	if len(c.b.over) == 0 {
		return nil, false
	}
	keys := c.b.sortedKeys()
	if asc {
		i := 0
		if !from.none {
			i = sort.SearchStrings(keys, string(from.key))
			if i < len(keys) && keys[i] == string(from.key) && !from.incl {
				i++
			}
		}
		if i < len(keys) {
			return []byte(keys[i]), true
		}
		return nil, false
	}
	i := len(keys) - 1
	if !from.none {
		// last index with key < from (or ≤ when incl)
		i = sort.SearchStrings(keys, string(from.key)) - 1
		if j := i + 1; j < len(keys) && keys[j] == string(from.key) && from.incl {
			i = j
		}
	}
	if i >= 0 {
		return []byte(keys[i]), true
	}
	return nil, false
}

// server returns the first server row beyond from, from the page when the
// page answers it, else from a new page.
func (c *cursor) server(asc bool, from bound) (kv, bool) {
	if c.have && c.asc == asc && covers(asc, c.from, from) {
		for _, r := range c.page {
			if inside(asc, from, r.k) {
				return r, true
			}
		}
		if !c.more {
			return kv{}, false
		}
	}
	if !c.fetch(asc, from) {
		return kv{}, false
	}
	if len(c.page) == 0 {
		return kv{}, false
	}
	return c.page[0], true
}

func (c *cursor) fetch(asc bool, from bound) bool {
	var q string
	args := []any{c.b.id}
	switch {
	case asc && from.none:
		q = `SELECT k, v FROM kw_kv WHERE bucket = $1 ORDER BY k LIMIT $2`
	case asc && from.incl:
		q = `SELECT k, v FROM kw_kv WHERE bucket = $1 AND k >= $3 ORDER BY k LIMIT $2`
	case asc:
		q = `SELECT k, v FROM kw_kv WHERE bucket = $1 AND k > $3 ORDER BY k LIMIT $2`
	case from.none:
		q = `SELECT k, v FROM kw_kv WHERE bucket = $1 ORDER BY k DESC LIMIT $2`
	case from.incl:
		q = `SELECT k, v FROM kw_kv WHERE bucket = $1 AND k <= $3 ORDER BY k DESC LIMIT $2`
	default:
		q = `SELECT k, v FROM kw_kv WHERE bucket = $1 AND k < $3 ORDER BY k DESC LIMIT $2`
	}
	args = append(args, pageSize)
	if !from.none {
		args = append(args, from.key)
	}
	page := make([]kv, 0, 16)
	err := c.b.tx.roundTrip(func(b *pgx.Batch) { b.Queue(q, args...) }, func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r kv
			if err := rows.Scan(&r.k, &r.v); err != nil {
				return err
			}
			if r.v == nil {
				r.v = []byte{}
			}
			page = append(page, r)
		}
		return rows.Err()
	})
	c.have = false
	if err != nil {
		return false
	}
	c.page, c.asc, c.from, c.more, c.have = page, asc, from, len(page) == pageSize, true
	return true
}
