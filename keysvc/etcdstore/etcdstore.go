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
//	audit/head                 JSON {seq, hash, batch, node}: the chain's newest record
//	audit/rec/<seq>            JSON of audit.Record; seq is 20 decimal digits, zero-padded
//	audit/format               the log format in decimal ("2" = keysvc.AuditFormat)
//	audit/checkpoint/<seq>     JSON of audit.Checkpoint (chained)
//	audit/checkpoint-last      the seq of the newest checkpoint (what AddCheckpoint compares on)
//	service/keys               JSON of keysvc.ServiceKeyRecord
//	service/kek-epochs         JSON of keysvc.KEKEpochs
//	probe/<node>               what Writable writes
//	election/…                 the scheduler's election (concurrency.Election; leased)
//	confirm/id/<id>            JSON of keysvc.ConfirmRecord (leased: ExpiresAt + keep)
//	confirm/holder/<hex>       → id (leased like the record)
//	confirm/key/<key>          → id of the pending confirmation holding the key (leased: ExpiresAt)
//	pin/state/<id>             JSON {state, op}: one token.PINState (id path-escaped)
//	pin/events/<id>/<ns>-<node> JSON of token.Event
//
// # The audit chain
//
// One chain for the whole cluster. Every change that carries an audit
// record (CreateKey, UpdateKey, SetServiceKeys, SetKEKEpochs, Audit) goes
// through one flusher goroutine per Store, which commits whatever has
// queued (up to ~100 etcd operations, under etcd's default max-txn-ops of
// 128) in ONE transaction:
//
//	If(ModRevision(audit/head) == cached, <each change's own compares>)
//	Then(put records, put changes, put audit/head)
//	Else(get audit/head, get each compared key, get the records of unresolved attempts)
//
// Records are sealed (audit.Record.Seal) from the cached head before the
// transaction. When another node appended meanwhile, the compare fails:
// the flusher adopts the head the Else branch returned, reseals the batch
// and retries at once. A change whose own compare failed (a key updated by
// another node) goes back to its caller, which reads the key again and
// runs its function again.
//
// A write whose outcome is unknown (the member died under it: Unavailable
// or EOF; a deadline) is never simply retried: the batch is frozen (same
// records) and recorded as an unresolved attempt. Every attempt compares
// the head revision it read, so of all attempts made on one head at most
// one applies; and once the head has moved, an unresolved attempt landed
// if and only if the record at its first seq carries its first record's
// hash. The flusher resolves every unresolved attempt before it reseals,
// so a record is never appended twice and never lost. etcd's client never
// retries a write by itself; this is where it is done.
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
// The election key (session TTL 5 s), and each confirmation: its key lock
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
// decide, and the loser reads again. A function passed to UpdateKey,
// ConfirmStore.Update or a PIN counter's Update may run more than once.
//
// # Limitations
//
//   - Appends from several nodes contend on audit/head: a conflict costs a
//     round trip and a reseal, and only one node's batch commits per raft
//     round: three nodes append about a third of what one node appends
//     with the same callers (ARCHITECTURE.md, "The etcd store", has
//     figures).
//   - A request that timed out while its write's outcome was unknown may
//     still land when quorum returns (its error says so).
//   - An unaudited UpdateKey (rec nil) whose write's outcome was unknown
//     takes our bytes back at the key as proof it landed: a function that
//     writes the very bytes another node wrote meanwhile is taken as landed.
//   - MigrateAudit refuses: a cluster log is born in keysvc.AuditFormat.
//   - WatchKeys skips deletions (keysvc never deletes a key record).
//
// Files: etcdstore.go (config, open, close, retries), flusher.go (the
// group commit), keys.go (keys and the key feed), auditlog.go (reading the
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
