// Package etcdstore is keysvc's clustered Store: keys, the audit chain,
// checkpoints, the service-key and KEK-epoch records, the PIN-guard
// counters and pending confirmations in an etcd cluster that several
// keysvc nodes share (issue 16, R-AV-1, R-AV-4). The embedded store
// (keysvc/boltstore) stays the default for one node; this one is for a
// cluster, where no single keysvc node or etcd member failing stops
// signing.
//
// # Layout
//
// Every key lives under Config.Prefix (default "/keyward/"):
//
//	keys/<name>                JSON of keysvc.Key, one etcd key per key record
//	audit/head                 JSON {seq, hash, node, cursor}: the chain's newest record and
//	                           the highest inbox revision chained
//	audit/rec/<seq>            JSON of audit.Record; seq is 20 decimal digits, zero-padded
//	audit/in/<node>/<id>       JSON {recs, node, at}: the records of one node transaction,
//	                           acknowledged, not yet chained (or chained less than a minute
//	                           ago); id is 24 random hex digits
//	audit/format               the log format in decimal ("2" = keysvc.AuditFormat)
//	audit/checkpoint/<seq>     JSON of audit.Checkpoint (chained)
//	audit/checkpoint-last      the seq of the newest checkpoint (what AddCheckpoint compares on)
//	service/keys               JSON of keysvc.ServiceKeyRecord
//	service/kek-epochs         JSON of keysvc.KEKEpochs
//	probe/<node>               what Writable writes
//	election/…                 the scheduler's election (concurrency.Election; leased)
//	election-audit/…           the audit sequencer's election (leased)
//	confirm/id/<id>            JSON of keysvc.ConfirmRecord (leased: ExpiresAt + keep)
//	confirm/holder/<hex>       → id (leased like the record)
//	confirm/key/<key>          → id of the pending confirmation holding the key (leased: ExpiresAt)
//	pin/state/<id>             JSON {state, op}: one token.PINState (id path-escaped)
//	pin/events/<id>/<ns>-<node> JSON of token.Event
//
// # The audit chain
//
// One chain for the whole cluster, written in two steps so that nodes
// never contend for it.
//
// Acknowledging. Every change that carries an audit record (CreateKey,
// UpdateKey, SetServiceKeys, SetKEKEpochs, Audit) goes through one flusher
// goroutine per Store, which commits whatever has queued (up to 100 etcd
// operations, under etcd's default max-txn-ops of 128) in ONE transaction
// into this node's inbox, all its records under ONE new inbox key:
//
//	If(CreateRevision(audit/in/<node>/<id>) == 0, <each change's own compares>)
//	Then(put audit/in/<node>/<id> {recs…}, put the changes)
//	Else(get the inbox key, get each compared key)
//
// No compare on audit/head: a node's appends conflict with nobody, and a
// key change conflicts only with changes of the same key (its caller then
// reads the key again and runs its function again). When the transaction
// commits, the record is durable (replicated by etcd's raft, as a bbolt
// fsync is on one node) and the call returns — with the record's Seq,
// Prev and Hash left zero: they are not known yet.
//
// Chaining. One node at a time — the leader of the election-audit/
// election, in which every open Store campaigns (a tool's too, such as
// keysvc audit verify: it then chains what is waiting if no keysvc node
// does, which changes nothing, since the inbox's commit order decides the
// chain) — is the sequencer. It
// reads the head (whose cursor is the highest inbox ModRevision chained),
// watches the inbox from cursor+1 (a watch delivers every commit from that
// revision on, in commit order: nothing is skipped), seals the entries'
// records (audit.Record.Seal) in ModRevision order, each entry's in order, and commits, per batch of whole
// revisions (at most 120 records):
//
//	If(ModRevision(audit/head) == cached)
//	Then(put audit/rec/<seq>…, put audit/head {seq, hash, node, cursor})
//
// Any failure — the compare refused (another sequencer chained:
// leadership moved), an outcome unknown, the watch lost or compacted —
// starts again from a fresh read of the head: its cursor says exactly
// what is chained, so an entry is never chained twice nor skipped, with
// or without the election (which only spares the contention). A
// sequencer that finds its history compacted reads the inbox (entries
// above the cursor, by ModRevision) instead of watching.
//
// The window. Between its inbox commit and its chaining a record is
// durable but not yet tamper-evident, and readers (AuditRecords,
// LastAudit, checkpoints) do not see it; ChainLag reports the window as
// this node sees it (milliseconds under load: ARCHITECTURE.md, "The etcd
// store"). SyncAudit (keysvc.AuditSyncer) waits until every record
// acknowledged before the call is chained: the Service calls it before
// signing a checkpoint, audit verify before reading.
//
// Clean-up. The sequencer deletes chained inbox entries once they have
// been chained for DefaultInboxKeep (a minute, or 4×RequestTimeout if
// more), in transactions of up to 120 deletes; a new sequencer adopts the
// chained entries its predecessor left.
//
// Writes of unknown outcome (the member died under it: Unavailable or EOF;
// a deadline) are never simply retried as new writes: the flusher sends
// the same transaction again — same inbox key — until it is answered.
// If the earlier attempt had landed, the compare on the inbox key
// fails and the Else branch shows the key: landed, answered success; if
// not, the retry applies. Since a job retries only within its
// RequestTimeout and an inbox entry lives at least a minute after it is
// chained, the key is always still there to be found. For a key change
// carrying a record, the same check tells whether the whole transaction
// (the key with its record) landed. etcd's client never retries a write
// by itself; this is where it is done.
//
// A caller's request fails (wire.ErrStore) only when Config.RequestTimeout
// passed without success. Killing one etcd member, even the leader (writes
// stall for an election, about 2 s), fails no request; losing quorum fails
// requests after RequestTimeout, and writes resume by themselves when
// quorum returns. A request that timed out while its attempt's outcome
// was unknown is answered wire.ErrStore saying so: its record may still
// land when quorum returns (as a record written just before a crash of
// the embedded store's process).
//
// # Leases
//
// The election keys (session TTL 5 s), and each confirmation: its key lock
// lives until the confirmation's ExpiresAt, its record and holder index
// until ExpiresAt + keep, so a dead node's confirmation frees its key
// cluster-wide by itself. Nothing else is leased.
//
// # Concurrency
//
// Every method is safe for concurrent use by many goroutines and by many
// nodes (Stores, each with its own etcd client) on one prefix. Within a
// node, the flusher batches appends (one transaction per batch) and
// UpdateKey takes a per-key lock (the node's own updates of a key would
// only conflict with each other); across nodes, compares on ModRevision
// decide, and the loser reads again. Appends of different nodes never
// conflict (the inbox); one sequencer chains. A function passed to UpdateKey,
// ConfirmStore.Update or a PIN counter's Update may run more than once.
//
// # Limitations
//
//   - A record is acknowledged before it is chained: Audit and the other
//     appends hand back no Seq, Prev or Hash, and readers see a record
//     only once the sequencer chained it (SyncAudit waits for that). If
//     no node can sequence (no quorum), acknowledged records wait in the
//     inbox, durable, until one can.
//   - An inbox entry that does not decode (only a hand-written one) is
//     chained as an "audit-inbox-fault" record naming its key, so the
//     loss shows in the log.
//   - Chained inbox entries are deleted one key per operation (etcd has no
//     delete-by-revision): one delete per node transaction, in batches of
//     120, a minute after it is chained.
//   - Every append costs two raft rounds (inbox, then chain); the second is
//     shared by up to 120 records of all nodes.
//   - The clean-up's keep time follows the sequencer's RequestTimeout
//     (at least a minute, 4×RequestTimeout if more): a node whose own
//     RequestTimeout is far longer than the sequencer's could retry after
//     its entry was deleted. Give every node the same RequestTimeout.
//   - A request that timed out while its write's outcome was unknown may
//     still land when quorum returns (its error says so).
//   - An unaudited UpdateKey (rec nil) whose write's outcome was unknown
//     takes our bytes back at the key as proof it landed: a function that
//     writes the very bytes another node wrote meanwhile is taken as landed.
//   - MigrateAudit refuses: a cluster log is born in keysvc.AuditFormat.
//   - WatchKeys skips deletions (keysvc never deletes a key record).
//
// Files: etcdstore.go (config, open, close, retries), flusher.go (the
// group commit into the inbox), sequencer.go (the chaining, its election,
// clean-up, SyncAudit, ChainLag), keys.go (keys and the key feed), auditlog.go (reading the
// chain, checkpoints, format), service.go (service-key and KEK-epoch
// records), elector.go, confirm.go, pincounters.go.
package etcdstore

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/wire"
)

// Defaults of Config.
const (
	DefaultPrefix         = "/keyward/"
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	// maxBatchOps is the most etcd operations one flusher transaction
	// holds (etcd's default --max-txn-ops is 128; the head put and a
	// margin stay free).
	maxBatchOps = 100
)

// Config configures Open.
type Config struct {
	Endpoints []string
	// TLS is the mutual-TLS configuration to etcd (CA, client
	// certificate). nil means plain TCP, refused unless AllowInsecure.
	TLS           *tls.Config
	AllowInsecure bool
	// Prefix is where every key lives (default "/keyward/"); two
	// clusters of keysvc may share an etcd under two prefixes.
	Prefix string
	// Node is this keysvc node's name: the election value, busy marks,
	// probe key and logs.
	Node string
	// DialTimeout bounds the first connection (default 5 s).
	DialTimeout time.Duration
	// RequestTimeout is how long one keysvc request may wait for etcd
	// before it fails with wire.ErrStore (default 5 s: longer than an
	// etcd leader election, so a killed etcd leader fails no request).
	RequestTimeout time.Duration
	Logger         *slog.Logger
}

// Store is the etcd keysvc.Store, shared by the nodes of a keysvc cluster.
type Store struct {
	cli     *clientv3.Client
	cfg     Config
	log     *slog.Logger
	p       string // the prefix
	closing chan struct{}
	once    sync.Once
	ctx     context.Context // ends at Close
	cancel  context.CancelFunc

	jobs       chan *job
	flusherOut chan struct{}

	sessMu   sync.Mutex
	sessions map[*sessionHandle]struct{}

	keyLocks sync.Map // key name → *sync.Mutex: UpdateKey's per-key lock on this node

	seqOut       chan struct{} // closed when the sequencer goroutine ended
	inboxKeep    atomic.Int64  // time.Duration: how long chained inbox entries stay
	inboxDeleted atomic.Int64  // chained inbox entries this node's sequencer deleted

	watchedHead atomic.Pointer[head] // the newest audit/head this node saw
	lagMu       sync.Mutex
	headMoved   chan struct{}   // closed and replaced when watchedHead moves
	lags        []time.Duration // ring of ChainLag samples
	lagNext     int
	lagPending  []lagMark // this node's inbox commits not yet seen chained
}

var (
	_ keysvc.Store         = (*Store)(nil)
	_ keysvc.KeyFeed       = (*Store)(nil)
	_ keysvc.Elector       = (*Store)(nil)
	_ keysvc.ConfirmStorer = (*Store)(nil)
)

// ErrClosed is wrapped (with wire.ErrStore) by every call on a closed Store.
var ErrClosed = errors.New("etcdstore: store is closed")

// Open connects to etcd and prepares the store: a cluster store seen for
// the first time starts its log in keysvc.AuditFormat. It fails with
// wire.ErrStore when no endpoint answers within DialTimeout +
// RequestTimeout.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("%w: etcd: no endpoints configured", wire.ErrStore)
	}
	if cfg.TLS == nil && !cfg.AllowInsecure {
		return nil, fmt.Errorf("%w: etcd: no TLS configuration: keysvc talks to etcd over mutual TLS only (set AllowInsecure for a throwaway test cluster)", wire.ErrStore)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if cfg.Node == "" {
		cfg.Node = "keysvc"
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("store", "etcd", "node", cfg.Node)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		TLS:         cfg.TLS,
		DialTimeout: cfg.DialTimeout,
		// Find a dead member fast: its connection is dropped and the
		// balancer sends the next request to another endpoint.
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
		Logger:               zap.NewNop(),
		Context:              context.WithoutCancel(ctx),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: etcd %s: %w", wire.ErrStore, strings.Join(cfg.Endpoints, ","), err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Store{cli: cli, cfg: cfg, log: log, p: cfg.Prefix, closing: make(chan struct{}), ctx: sctx, cancel: cancel,
		jobs: make(chan *job, 4096), flusherOut: make(chan struct{}), sessions: map[*sessionHandle]struct{}{},
		seqOut: make(chan struct{}), headMoved: make(chan struct{}), lags: make([]time.Duration, 8192)}
	s.inboxKeep.Store(int64(max(DefaultInboxKeep, 4*cfg.RequestTimeout)))
	// A log with no head and no format starts in the current format (as
	// boltstore): one transaction, so two nodes starting together agree.
	err = s.retry(ctx, func(ctx context.Context) error {
		_, err := cli.Txn(ctx).If(
			clientv3.Compare(clientv3.CreateRevision(s.k(keyHead)), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(s.k(keyFormat)), "=", 0),
		).Then(clientv3.OpPut(s.k(keyFormat), fmt.Sprint(keysvc.AuditFormat))).Commit()
		return err // idempotent: retried as is
	})
	if err != nil {
		cancel()
		cli.Close()
		return nil, fmt.Errorf("%w: etcd %s: prepare store: %w", wire.ErrStore, strings.Join(cfg.Endpoints, ","), err)
	}
	go s.flusher()
	go s.watchHead()
	go s.sequencer()
	log.Info("etcd store open", "endpoints", strings.Join(cfg.Endpoints, ","), "prefix", cfg.Prefix)
	return s, nil
}

// Close stops the flusher (queued appends fail with wire.ErrStore), ends
// this node's election sessions (so another node leads at once) and
// closes the connection. Every later call fails with wire.ErrStore.
func (s *Store) Close() error {
	first := false
	s.once.Do(func() { first = true; close(s.closing) })
	if !first {
		return nil
	}
	// The flusher's request in flight ends now (its callers are answered
	// wire.ErrStore), as do key feeds and confirmation waits.
	s.cancel()
	<-s.flusherOut
	<-s.seqOut
	s.sessMu.Lock()
	hs := make([]*sessionHandle, 0, len(s.sessions))
	for h := range s.sessions {
		hs = append(hs, h)
	}
	s.sessMu.Unlock()
	for _, h := range hs {
		h.close()
	}
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: close etcd client: %w", wire.ErrStore, err)
	}
	return nil
}

// Client returns the etcd client (for tools and tests).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Node returns this node's name.
func (s *Store) Node() string { return s.cfg.Node }

// Writable checks that a write commits (readiness): it puts this node's
// probe key. It fails (wire.ErrStore) when the cluster has no quorum.
func (s *Store) Writable() error {
	if err := s.closedErr(); err != nil {
		return err
	}
	err := s.retry(context.Background(), func(ctx context.Context) error {
		_, err := s.cli.Put(ctx, s.k("probe/"+s.cfg.Node), time.Now().UTC().Format(time.RFC3339Nano))
		return err
	})
	if err != nil {
		return fmt.Errorf("%w: etcd not writable: %w", wire.ErrStore, err)
	}
	return nil
}

// Key names under the prefix.
const (
	keyHead          = "audit/head"
	keyFormat        = "audit/format"
	keyRecPrefix     = "audit/rec/"
	keyCPPrefix      = "audit/checkpoint/"
	keyCPLast        = "audit/checkpoint-last"
	keyKeysPrefix    = "keys/"
	keyServiceKeys   = "service/keys"
	keyKEKEpochs     = "service/kek-epochs"
	keyElection      = "election/"
	keyElectionAudit = "election-audit/"
	keyInbox         = "audit/in/"
	keyConfirmID     = "confirm/id/"
	keyConfirmHold   = "confirm/holder/"
	keyConfirmKey    = "confirm/key/"
	keyPINState      = "pin/state/"
	keyPINEvents     = "pin/events/"
	seqDigits        = 20
	retryFirstSleep  = 20 * time.Millisecond
	retryMaxSleep    = 250 * time.Millisecond
)

// k returns the full etcd key of name.
func (s *Store) k(name string) string { return s.p + name }

func recKey(p string, seq uint64) string {
	return fmt.Sprintf("%s%s%0*d", p, keyRecPrefix, seqDigits, seq)
}

func (s *Store) closedErr() error {
	select {
	case <-s.closing:
		return fmt.Errorf("%w: %w", wire.ErrStore, ErrClosed)
	default:
		return nil
	}
}

// retry runs op until it succeeds, ctx ends, the store closes or
// RequestTimeout passes; each run gets the time that is left. Only for
// operations that are safe to repeat (reads, idempotent puts, compare-
// and-swap transactions whose caller checks what landed). The last error
// is returned.
func (s *Store) retry(ctx context.Context, op func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	sleep := retryFirstSleep
	var last error
	for {
		actx, acancel := context.WithTimeout(ctx, s.attemptTimeout())
		err := op(actx)
		acancel()
		if err == nil {
			return nil
		}
		last = err
		var pe permanentError
		if ctx.Err() != nil || errors.As(err, &pe) {
			break
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
		sleep = min(2*sleep, retryMaxSleep)
	}
	if s.closedErr() != nil {
		return ErrClosed
	}
	return last
}

// attemptTimeout bounds one request to etcd inside RequestTimeout: a
// write forwarded to a leader that dies is lost without an answer (the
// member answers only after its own request timeout, ~7 s), so a request
// is cut and its outcome resolved well before the caller's deadline.
func (s *Store) attemptTimeout() time.Duration {
	return min(max(s.cfg.RequestTimeout/3, 500*time.Millisecond), 2*time.Second)
}

// permanentError marks an error retry must not retry (a decoding fault,
// a refusal); it reads as the error it wraps.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func permanent(err error) error { return permanentError{err} }

// nonce returns a random hex string (batch and operation marks).
func nonce() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
