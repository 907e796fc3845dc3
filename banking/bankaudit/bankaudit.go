// Package bankaudit is banking's own tamper-evident audit trail (issue 18
// item 3, R-SRV-3): logins, step-ups, one-time codes, password and limit
// changes, staff actions and corporate maker/checker/authoriser steps,
// kept in banking's store (banking/store: one bbolt file, or PostgreSQL
// shared by every banking node: one chain for all of them).
//
// It is keysvc's audit trail again, not a second one: records are
// keysvc/audit.Record (SM3 hash chain, ComputeHash, Seal), checkpoints
// are keysvc/audit.Checkpoint (chained, signed), and verification is
// keysvc/audit's Verifier and Anchor, unchanged. A banking event maps
// onto a record as
//
//	Client = actor ("customer:<id>", "staff:<id>", "login:<name>", "system")
//	Key    = subject (a customer, an account, a corporate order)
//	Op     = the dotted operation ("login", "stepup.verify", "corporate.approve", ...)
//	Result = "ok" or the stable error code clients saw
//	Detail = non-secret context, then " source=<address>"
//
// RequestDigest stays empty: banking keeps no digest of a request body.
//
// # Storage
//
// Three buckets: records under their 8-byte big-endian sequence number,
// checkpoints likewise under the Seq they sign, and a meta bucket with
// the chain's head (sequence number and hash of the newest record) and,
// after a prune, the checkpoint the remaining log starts from (its base).
//
// # Concurrency
//
// Append is group-committed through the store's Batch: each record is
// sealed (Seq, Prev, Hash) inside the transaction from the head read in
// that same transaction, so a re-run of the function (a neighbour failed,
// or PostgreSQL retried a serialisation conflict with another node)
// recomputes it; records are handed back only after the commit. Any
// number of Trails, in one process or on several nodes sharing a
// PostgreSQL store, append to one chain with no gap or duplicate: every
// append reads and writes the head, so two nodes' transactions conflict
// and the store re-runs one of them.
//
// Checkpoints are made every Config.Every records (counted per Trail) or
// Config.Interval, whichever comes first, by Run; each is signed through
// keysvc by the bank-audit key (Signer). Two nodes racing to store the
// checkpoint after the same predecessor store one: the loser finds the
// newest stored checkpoint already follows its predecessor and keeps it.
// A Trail remembers the newest checkpoint it signed or found, and refuses
// to checkpoint (audit.ErrTampered, logged at ERROR by Run) when the
// store's newest is older: checkpoints were deleted under it.
//
// # Verification
//
// Verify walks the log (1000 records per read transaction) through
// keysvc/audit's Verifier with the bank-audit public key: an edited,
// deleted or reordered record, a forged, replaced or deleted checkpoint,
// and a head that does not name the last record are reported with the
// first record that breaks. Records after the newest checkpoint are
// linked but vouched for only by the chain; an Anchor (the "expect="
// value logged at each checkpoint, kept off the machine) catches a log
// cut back and rewritten.
//
// # Retention
//
// Nothing in banking deletes records. Prune (`banking audit prune`) is the
// one way out, for records older than the retention (at least 180 days,
// R-SRV-3) and only up to a signed checkpoint, which stays as the base the
// remaining log is verified from.
//
// # Limitations
//
//   - A checkpoint does not name the bank-audit key version that signed it
//     (keysvc/audit's format, reused unchanged): Verify checks every
//     checkpoint against one public key. After a rotation of bank-audit,
//     verify with the old version's key up to the last checkpoint it
//     signed (an officer keeps each version's PEM), or do not rotate it.
//   - Records after the newest checkpoint are vouched for by the chain
//     alone until the next checkpoint (at most Every records or Interval
//     later, and at shutdown); an Anchor kept off the machine is what
//     catches a log cut back and rewritten.
//   - Every append writes the head, so nodes on one PostgreSQL store
//     serialise their appends (conflicts re-run by the store): about 1400
//     appends/s for two nodes on a loopback server (BenchmarkAppendTwoNodes).
//   - Prune deletes in one write transaction.
package bankaudit

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/keysvc/audit"
)

// Buckets of the trail in banking's store.
var (
	bucketRecords     = []byte("bank-audit-records")
	bucketCheckpoints = []byte("bank-audit-checkpoints")
	bucketMeta        = []byte("bank-audit-meta")
	keyHead           = []byte("head")
	keyBase           = []byte("base")
)

// Defaults of Config.
const (
	DefaultEvery    = 1000
	DefaultInterval = time.Minute
)

// Errors.
var (
	// ErrStore: the store failed; the record was not written.
	ErrStore = errors.New("bankaudit: store failure")
	// ErrNoTrail: the store holds no audit trail (banking never ran on it
	// with one).
	ErrNoTrail = errors.New("bankaudit: this store holds no banking audit trail")
	// ErrNoSigner: checkpoints need Config.Signer.
	ErrNoSigner = errors.New("bankaudit: no checkpoint signer configured")
)

// Signer signs a checkpoint's SHA-256 digest, returning an ASN.1 DER
// ECDSA signature (P-256): the bank-audit key in keysvc (KMSSigner).
type Signer interface {
	SignDigest(ctx context.Context, digest []byte) ([]byte, error)
}

// Config configures a Trail.
type Config struct {
	DB     store.DB
	Signer Signer // nil: no checkpoints (Checkpoint returns ErrNoSigner)
	// Every and Interval: a checkpoint after Every records appended by
	// this Trail, or every Interval (defaults DefaultEvery, DefaultInterval).
	Every    int
	Interval time.Duration
	Now      func() time.Time
	Logger   *slog.Logger
}

// Trail appends to banking's audit chain and checkpoints it.
type Trail struct {
	cfg      Config
	db       store.DB
	log      *slog.Logger
	now      func() time.Time
	cpMu     sync.Mutex
	sinceCP  atomic.Int64
	kick     chan struct{}
	failures atomic.Uint64
	lastErr  atomic.Pointer[error]
	lastCP   *audit.Checkpoint // the newest this Trail signed or found stored (under cpMu)
}

// Open prepares the trail's buckets on cfg.DB.
func Open(cfg Config) (*Trail, error) {
	if cfg.DB == nil {
		return nil, errors.New("bankaudit: Config needs DB")
	}
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.DB.Ensure(bucketRecords, bucketCheckpoints, bucketMeta); err != nil {
		return nil, fmt.Errorf("%w: buckets: %w", ErrStore, err)
	}
	return &Trail{cfg: cfg, db: cfg.DB, log: cfg.Logger, now: cfg.Now, kick: make(chan struct{}, 1)}, nil
}

// Event is what Append records (see the package doc for the mapping).
type Event struct {
	Actor, Subject, Op, Result, Detail, Source string
}

// Record maps ev onto a keysvc/audit record (not yet sealed).
func Record(ev Event, at time.Time) audit.Record {
	detail := ev.Detail
	if ev.Source != "" {
		if detail != "" {
			detail += " "
		}
		detail += "source=" + ev.Source
	}
	return audit.Record{Time: at.UTC(), Client: ev.Actor, Key: ev.Subject, Op: ev.Op, Result: ev.Result, Detail: detail}
}

// Append seals and stores ev durably, group-committed with concurrent
// appends, and returns the committed record. A failure is counted
// (Failures, Healthy) and returned; the record is then not in the chain.
func (t *Trail) Append(ev Event) (audit.Record, error) {
	base := Record(ev, t.now())
	var rec audit.Record
	err := t.db.Batch(func(tx store.Tx) error {
		r := base // a re-run starts again from the unsealed record
		if err := appendRecord(tx, &r); err != nil {
			return err
		}
		rec = r
		return nil
	})
	if err != nil {
		err = fmt.Errorf("%w: append audit record (op %s, actor %s): %w", ErrStore, ev.Op, ev.Actor, err)
		t.failures.Add(1)
		t.lastErr.Store(&err)
		return audit.Record{}, err
	}
	t.lastErr.Store(nil)
	if t.sinceCP.Add(1) >= int64(t.cfg.Every) {
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
	return rec, nil
}

// appendRecord seals r after the head read in tx and stores it.
func appendRecord(tx store.Tx, r *audit.Record) error {
	meta, recs := tx.Bucket(bucketMeta), tx.Bucket(bucketRecords)
	if meta == nil || recs == nil {
		return store.ErrBucketMissing
	}
	seq, hash, err := decodeHead(meta.Get(keyHead))
	if err != nil {
		return err
	}
	r.Seal(seq, hash)
	v, err := r.Marshal()
	if err != nil {
		return err
	}
	if err := recs.Put(seqKey(r.Seq), v); err != nil {
		return err
	}
	return meta.Put(keyHead, encodeHead(r.Seq, r.Hash))
}

// Failures counts appends that failed since the Trail opened.
func (t *Trail) Failures() uint64 { return t.failures.Load() }

// Healthy is nil when the last append succeeded (or none was made), else
// that append's error: an operator's alarm (and /readyz's, if wanted).
func (t *Trail) Healthy() error {
	if p := t.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

type head struct {
	Seq  uint64 `json:"seq"`
	Hash []byte `json:"hash"`
}

func encodeHead(seq uint64, hash []byte) []byte {
	b, _ := json.Marshal(head{seq, hash})
	return b
}

func decodeHead(b []byte) (uint64, []byte, error) {
	if b == nil {
		return 0, audit.Genesis, nil
	}
	var h head
	if err := json.Unmarshal(b, &h); err != nil {
		return 0, nil, fmt.Errorf("%w: the trail's head does not decode: %w", audit.ErrTampered, err)
	}
	return h.Seq, h.Hash, nil
}

// Head returns the sequence number and hash of the newest record (0 and
// audit.Genesis for an empty trail).
func Head(db store.DB) (seq uint64, hash []byte, err error) {
	err = db.View(func(tx store.Tx) error {
		b := tx.Bucket(bucketMeta)
		if b == nil || tx.Bucket(bucketRecords) == nil || tx.Bucket(bucketCheckpoints) == nil {
			return ErrNoTrail
		}
		seq, hash, err = decodeHead(b.Get(keyHead))
		hash = append([]byte(nil), hash...)
		return err
	})
	return seq, hash, err
}

// Run makes checkpoints every Interval, and sooner when Every records
// have been appended, until ctx ends; then it makes a last one. Errors
// are logged at ERROR.
func (t *Trail) Run(ctx context.Context) {
	tick := time.NewTicker(t.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			t.checkpointLogged(cctx)
			cancel()
			return
		case <-tick.C:
		case <-t.kick:
		}
		t.checkpointLogged(ctx)
	}
}

func (t *Trail) checkpointLogged(ctx context.Context) {
	if t.cfg.Signer == nil {
		return
	}
	if _, err := t.Checkpoint(ctx); err != nil && ctx.Err() == nil {
		t.log.ErrorContext(ctx, "banking audit checkpoint failed; records stay chained but unsigned until the next one", "err", err)
	}
}

// Checkpoint signs the chain's head unless the newest stored checkpoint
// already covers it, and stores the checkpoint. Losing a race with
// another node for the same place is not an error: the stored one is
// returned. Each new checkpoint is logged with its anchor
// (expect=<seq>:<hash>) for officers to keep off the machine.
func (t *Trail) Checkpoint(ctx context.Context) (*audit.Checkpoint, error) {
	if t.cfg.Signer == nil {
		return nil, ErrNoSigner
	}
	t.cpMu.Lock()
	defer t.cpMu.Unlock()
	t.sinceCP.Store(0)
	var seq uint64
	var hash []byte
	var prev *audit.Checkpoint
	err := t.db.View(func(tx store.Tx) error {
		var err error
		if seq, hash, err = decodeHead(tx.Bucket(bucketMeta).Get(keyHead)); err != nil {
			return err
		}
		hash = append([]byte(nil), hash...)
		prev, err = newestCheckpoint(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: read head: %w", ErrStore, err)
	}
	// Checkpoints only ever grow: a newest stored checkpoint older than
	// one this Trail saw means checkpoints were deleted under it.
	if t.lastCP != nil && (prev == nil || prev.Index < t.lastCP.Index) {
		return nil, fmt.Errorf("%w: the newest stored checkpoint is older than checkpoint %d (record %d) this node signed or saw: checkpoints were deleted; verify the trail (banking audit verify) and keep the anchors",
			audit.ErrTampered, t.lastCP.Index, t.lastCP.Seq)
	}
	if seq == 0 || (prev != nil && prev.Seq >= seq) {
		t.lastCP = prev
		return prev, nil
	}
	cp, err := audit.SignCheckpoint(signerFunc{ctx, t.cfg.Signer}, prev, seq, hash, t.now())
	if err != nil {
		return nil, err
	}
	var stored *audit.Checkpoint
	var refused error
	err = t.db.Update(func(tx store.Tx) error {
		stored, refused = nil, nil
		last, _, err := decodeHead(tx.Bucket(bucketMeta).Get(keyHead))
		if err != nil {
			return err
		}
		var raw []byte
		if cp.Seq != 0 && cp.Seq <= last {
			raw = tx.Bucket(bucketRecords).Get(seqKey(cp.Seq))
		}
		if no, err := cp.NamesRecord(last, raw); no != nil || err != nil {
			if no != nil {
				refused = no
			}
			return errors.Join(no, err)
		}
		newest, err := newestCheckpoint(tx)
		if err != nil {
			return err
		}
		if ferr := cp.Follows(newest); ferr != nil {
			// Another node stored the checkpoint after prev first?
			if newest != nil && prevMatches(newest, prev) {
				stored = newest
				return nil
			}
			refused = ferr
			return ferr
		}
		v, err := json.Marshal(cp)
		if err != nil {
			return err
		}
		stored = &cp
		return tx.Bucket(bucketCheckpoints).Put(seqKey(cp.Seq), v)
	})
	switch {
	case refused != nil:
		return nil, fmt.Errorf("bankaudit: checkpoint at record %d refused: %w", cp.Seq, refused)
	case err != nil:
		return nil, fmt.Errorf("%w: store checkpoint: %w", ErrStore, err)
	}
	t.lastCP = stored
	if stored == &cp {
		t.log.InfoContext(ctx, "banking audit checkpoint", "index", cp.Index, "seq", cp.Seq,
			"expect", audit.Anchor{Seq: cp.Seq, Hash: cp.Hash}.String())
	}
	return stored, nil
}

// prevMatches reports whether newest was stored after prev (nil: the
// first) by another node since this one read prev: a later index. The
// chain of what is stored is Verify's business, not the checkpointer's.
func prevMatches(newest, prev *audit.Checkpoint) bool {
	return prev == nil || newest.Index > prev.Index
}

func newestCheckpoint(tx store.Tx) (*audit.Checkpoint, error) {
	b := tx.Bucket(bucketCheckpoints)
	if b == nil {
		return nil, store.ErrBucketMissing
	}
	k, v := b.Cursor().Last()
	if k == nil {
		return nil, nil
	}
	c, err := audit.UnmarshalCheckpoint(v)
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint %x: %w", audit.ErrTampered, k, err)
	}
	return &c, nil
}

// signerFunc is a crypto.Signer over Signer for audit.SignCheckpoint.
type signerFunc struct {
	ctx context.Context
	s   Signer
}

func (s signerFunc) Public() crypto.PublicKey { return nil }

func (s signerFunc) Sign(_ io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	return s.s.SignDigest(s.ctx, digest)
}

// Checkpoints lists the stored checkpoints by Seq.
func Checkpoints(db store.DB) ([]audit.Checkpoint, error) {
	var out []audit.Checkpoint
	err := db.View(func(tx store.Tx) error {
		out = out[:0]
		b, err := bucket(tx, bucketCheckpoints)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			c, err := audit.UnmarshalCheckpoint(v)
			if err != nil {
				return fmt.Errorf("%w: checkpoint %x: %w", audit.ErrTampered, k, err)
			}
			out = append(out, c)
			return nil
		})
	})
	audit.SortCheckpoints(out)
	return out, err
}

// chunk is how many records one read transaction walks.
const chunk = 1000

// Records calls fn for each stored record from sequence number from on,
// in storage order, chunk records per read transaction; fn runs outside
// any transaction. A record that does not decode is audit.ErrTampered.
func Records(db store.DB, from uint64, fn func(audit.Record) error) error {
	next := seqKey(from)
	for {
		var batch []audit.Record
		var more bool
		err := db.View(func(tx store.Tx) error {
			batch, more = batch[:0], false
			b, err := bucket(tx, bucketRecords)
			if err != nil {
				return err
			}
			c := b.Cursor()
			for k, v := c.Seek(next); k != nil; k, v = c.Next() {
				if len(batch) == chunk {
					next, more = append([]byte(nil), k...), true
					return nil
				}
				r, err := audit.Unmarshal(v)
				if err != nil {
					return fmt.Errorf("%w: record %x does not decode: %w", audit.ErrTampered, k, err)
				}
				batch = append(batch, r)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range batch {
			if err := fn(r); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
	}
}

// Tail returns the newest n records, oldest first.
func Tail(db store.DB, n int) ([]audit.Record, error) {
	var out []audit.Record
	err := db.View(func(tx store.Tx) error {
		out = out[:0]
		b, err := bucket(tx, bucketRecords)
		if err != nil {
			return err
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			r, err := audit.Unmarshal(v)
			if err != nil {
				return fmt.Errorf("%w: record %x does not decode: %w", audit.ErrTampered, k, err)
			}
			out = append(out, r)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// PublicKeyFromPKIX is a helper for the verifying tool: the bank-audit
// public key must be ECDSA.
func PublicKeyFromPKIX(pub crypto.PublicKey) (*ecdsa.PublicKey, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("bankaudit: the audit public key is %T, want an ECDSA (P-256) key", pub)
	}
	return k, nil
}

// bucket returns the named trail bucket or ErrNoTrail.
func bucket(tx store.Tx, name []byte) (store.Bucket, error) {
	if b := tx.Bucket(name); b != nil {
		return b, nil
	}
	return nil, ErrNoTrail
}
