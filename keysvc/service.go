// Package keysvc is Keyward's key registry and lifecycle: named keys with
// versions, states, policies and an audit trail, whose material lives in a
// PKCS#11 token (package token), either as token objects ("hsm") or as blobs
// wrapped by a token-held KEK ("wrapped").
//
// The Service is what the HTTP API (keysvc/api) calls. Every method takes
// the authenticated Caller, checks the key's policy (deny by default,
// R-SRV-2), does the work, and appends an audit record (R-SRV-3). If the
// audit record cannot be written, the operation fails and its result is
// dropped: nothing happens unaudited.
//
// # Versions
//
// The primary version signs and encrypts; older enabled versions at or above
// the key's MinVersion only verify and decrypt. Disabled and
// destroy-scheduled versions refuse all use; destroyed versions keep only
// their public key, so old signatures still verify. Destruction is scheduled
// with a waiting period and carried out by the scheduler (Tick), which
// catches up after downtime (R-TOK-7, R-TOK-8).
//
// # Key-encryption keys
//
// Wrapped and SM blobs record the KEK epoch that sealed them;
// StartKEKRotation moves every live blob to the next epoch in the
// background while the Service serves, then destroys the old epoch's KEKs,
// after which a destroyed version's blob in any copy of the store opens
// nowhere (kekepoch.go, kekrotation.go). New resumes a rotation the store
// records as running; Close stops it.
//
// # Concurrency
//
// A Service is safe for concurrent use. Lifecycle changes to one key are
// serialised in-process; the store makes each change atomic with its audit
// record. Several nodes may share a clustered store ("Several nodes",
// cluster.go and clusternode.go): every change re-checks its precondition
// inside the store's update, so two nodes doing the same change do it once.
package keysvc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/tpm"
)

// Labels of the service's own keys in the token.
const (
	KEKLabel      = "keysvc-kek"   // AES-256, wraps "wrapped" key versions
	AuditKeyLabel = "keysvc-audit" // ECDSA P-256, signs audit checkpoints
	// AuditDigestKeyLabel is a generic secret (HMAC, sensitive,
	// non-extractable): keysvc derives from it at start the per-process
	// key of audit request digests (audit.DigestScheme).
	AuditDigestKeyLabel = "keysvc-audit-digest"
)

// ErrAuditBroken is a start-up error of New (and of Checkpoint): the
// audit log does not verify, or shrank, so keysvc will not append to it
// nor sign a checkpoint over it (R-SRV-3).
var ErrAuditBroken = errors.New("keysvc: the audit log does not verify")

// auditBrokenHelp is what to do about ErrAuditBroken.
const auditBrokenHelp = "keysvc will not append to it or sign a checkpoint over it. Run `keysvc audit verify` (with -expect and the last checkpoint anchor the officers kept) to see the fault; then restore keysvc.db from a backup that verifies, or move it aside to start a new log, keeping this one as evidence"

// ErrAuditKeyChanged is a start-up error of New (never an HTTP answer, so
// not in SentinelCodes): the audit key differs from the one that signed
// the store's checkpoints.
var ErrAuditKeyChanged = errors.New("keysvc: audit key changed")

// Config configures a Service.
type Config struct {
	// Token holds the keys; keysvc uses it as a KeyStore (token.Store).
	Token *token.Token
	// Keys, when set instead of Token, holds the keys (token/memtoken in
	// unit tests).
	Keys  KeyStore
	Store Store
	// DefaultDestroyDelay is the waiting period of schedule-destroy when
	// the request gives none (default 24 h); MinDestroyDelay is the
	// shortest allowed (default 24 h; test configs lower it).
	DefaultDestroyDelay time.Duration
	MinDestroyDelay     time.Duration
	Now                 func() time.Time
	Logger              *slog.Logger

	// Display and confirm (confirm.go): how long a confirmation waits for
	// its holder (default 60 s), how long its outcome stays readable
	// (default 5 min), and how holders are reached. Without Notify,
	// confirm-required keys refuse to sign (confirmation_unavailable).
	ConfirmTimeout   time.Duration
	ConfirmResultTTL time.Duration
	Notify           Notifier

	// AuditSigner, when set, signs audit checkpoints instead of the
	// token's keysvc-audit key: an ECDSA P-256 key elsewhere, such as the
	// host TPM's (package token/tpm), for a low-volume key that should not
	// share the HSM partition's fate. Its Public() must be *ecdsa.PublicKey.
	AuditSigner crypto.Signer

	// TPM holds the keys of protection "tpm" (nil: such keys are refused).
	TPM TPMKeys

	// RequireServiceKeys makes New refuse to start when a service key
	// (ServiceKeySpecs) is missing from the token, instead of generating it
	// (ErrServiceKeysMissing, naming each key, its type and usage and the
	// ceremony that makes it). cmd/keysvc sets it whenever it runs from a
	// config file (production); `keysvc -dev` and library users that leave
	// it false get keys generated on first start, not extractable and so
	// never backed up. It is an opt-in rather than the inverse so that the
	// zero Config keeps working for tests and tools that start keysvc on
	// an empty throwaway token; the one production caller sets it.
	RequireServiceKeys bool
	// CreateKEKEpochs lets StartKEKRotation create the next epoch's KEKs
	// itself when the token lacks them (development and tests). In
	// production security officers generate them in a ceremony, so they
	// are backed up (kekrotation.go).
	CreateKEKEpochs bool
	// LevelledAfterStart says Keys is a token set that copies hsm keys
	// into its members that lack them only after New returns (cmd/keysvc:
	// token.Set.Sync, once the set can ask the Service which keys it
	// manages). New then does not report hsm versions missing from a
	// member as lost (a token that just joined lacks every one of them);
	// the caller calls CheckManagedKeysAfterSync once the set is level.
	LevelledAfterStart bool
	// KEKRewrapWorkers is how many keys a KEK rotation re-wraps at once
	// (default DefaultKEKRewrapWorkers); KEKProgressEvery how many keys
	// between progress lines in the log (default DefaultKEKProgressEvery).
	KEKRewrapWorkers int
	KEKProgressEvery int

	// Node names this keysvc node in a cluster (default: the host name):
	// the scheduler's election (Elector.Lead) and the approvals it holds
	// busy (ConfirmRecord.BusyNode) name it. Give each node sharing a
	// store its own.
	Node string

	// AuditAnchors are record hashes known from outside the machine
	// (audit.Anchor, from the checkpoint lines keysvc logs): New refuses
	// to start unless the log holds each of them (issue 12).
	AuditAnchors []audit.Anchor
}

// TPMKeys is what keysvc needs of the host TPM for protection "tpm"
// keys; *tpm.TPM implements it.
type TPMKeys interface {
	CreateSigningKey() (*tpm.KeyBlob, error)
	LoadSigner(*tpm.KeyBlob) (*tpm.Signer, error)
}

// Service is the key registry and lifecycle.
type Service struct {
	cfg   Config
	keys  KeyStore
	store Store
	log   *slog.Logger
	now   func() time.Time

	kekst    kekState        // KEK epochs: the KEKs that wrap "wrapped" versions and seal SM material (kekepoch.go)
	rot      kekRotation     // the KEK rotation worker (kekrotation.go)
	retired  retiredSeen     // tokens refused for holding only retired KEKs (kekmembers.go)
	auditKey crypto.Signer   // the token's keysvc-audit key, or Config.AuditSigner
	pinMAC   token.KeyRef    // HMAC key for holder PINs (confirm.go)
	digester *audit.Digester // keyed request digests of audit records

	cpMu     sync.Mutex        // one checkpoint at a time
	lastCP   *audit.Checkpoint // the newest checkpoint this process checked or signed
	confirms *confirmState
	node     string      // Config.Node
	feed     clusterFeed // the key feed's watcher (clusternode.go)
	leading  atomic.Bool // the scheduler runs here (Run; always, without an Elector)

	missingKeys atomic.Int64 // hsm versions whose token object was missing at start (checkManagedKeys)
	levelled    atomic.Bool  // Config.LevelledAfterStart: the set has been brought level (CheckManagedKeysAfterSync)

	locks [64]sync.Mutex // lifecycle changes, striped by key name
	tpmMu sync.Mutex     // one tpm-protected key loaded at a time (a TPM holds few objects)
	cache keyCache

	backups backupSlot // one hot backup at a time (backup.go)
}

// New prepares the service: it finds its service keys in the token (or
// creates them on first start, unless Config.RequireServiceKeys:
// ErrServiceKeysMissing) and refuses a token whose service keys do not
// match the store's record (ErrServiceKeysChanged), and a token set whose
// members' service keys differ (ErrServiceKeysDiffer; servicekeys.go).
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Keys == nil && cfg.Token != nil {
		cfg.Keys = cfg.Token.Store()
	}
	if cfg.Keys == nil || cfg.Store == nil {
		return nil, errors.New("keysvc: a token (or key store) and a store are required")
	}
	if cfg.DefaultDestroyDelay == 0 {
		cfg.DefaultDestroyDelay = 24 * time.Hour
	}
	if cfg.MinDestroyDelay == 0 {
		cfg.MinDestroyDelay = 24 * time.Hour
	}
	if cfg.DefaultDestroyDelay < cfg.MinDestroyDelay {
		return nil, fmt.Errorf("keysvc: default destroy delay %v is below the minimum %v", cfg.DefaultDestroyDelay, cfg.MinDestroyDelay)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ConfirmTimeout <= 0 {
		cfg.ConfirmTimeout = DefaultConfirmTimeout
	}
	if cfg.ConfirmResultTTL <= 0 {
		cfg.ConfirmResultTTL = DefaultConfirmResultTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.KEKRewrapWorkers <= 0 {
		cfg.KEKRewrapWorkers = DefaultKEKRewrapWorkers
	}
	if cfg.KEKProgressEvery <= 0 {
		cfg.KEKProgressEvery = DefaultKEKProgressEvery
	}
	if cfg.Node == "" {
		cfg.Node, _ = os.Hostname()
	}
	s := &Service{cfg: cfg, keys: cfg.Keys, store: cfg.Store, log: cfg.Logger, now: cfg.Now, confirms: newConfirmState(cfg.Store, cfg.Now), node: cfg.Node}
	s.startFeed() // first: nothing is cached before the feed watches
	ok := false
	defer func() {
		if !ok {
			s.stopCluster()
		}
	}()
	if err := s.loadKEKEpochs(); err != nil { // first: the live epochs say which KEKs are service keys
		return nil, err
	}
	if err := s.checkMembers(ctx); err != nil {
		return nil, err
	}
	pending, err := s.checkServiceKeys(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.loadKEKs(ctx); err != nil {
		return nil, err
	}
	if s.pinMAC, err = s.ensurePINMAC(ctx); err != nil {
		return nil, err
	}
	if s.auditKey, err = s.auditSigner(ctx); err != nil {
		return nil, err
	}
	if s.digester, err = s.auditDigester(ctx); err != nil {
		return nil, err
	}
	if err := s.migrateAudit(); err != nil {
		return nil, err
	}
	if err := s.checkAuditAtStart(); err != nil {
		return nil, err
	}
	if err := s.recordServiceKeys(pending); err != nil {
		return nil, err
	}
	if err := s.destroyRetiredKEKsAtStart(ctx); err != nil { // the audit log takes appends from here
		return nil, err
	}
	if err := s.checkManagedKeys(ctx); err != nil {
		return nil, err
	}
	s.resumeKEKRotation()
	ok = true
	return s, nil
}

// auditSigner is Config.AuditSigner or the token's keysvc-audit key. It
// must verify the store's newest checkpoint: an audit key that changed
// under an existing log (another token, another TPM, a switch of
// audit.signer) would make every earlier checkpoint unverifiable with the
// published key, so keysvc refuses to start rather than fork the trail.
func (s *Service) auditSigner(ctx context.Context) (crypto.Signer, error) {
	signer := s.cfg.AuditSigner
	if signer == nil {
		ak, err := s.ensureKey(ctx, token.KeySpec{Type: token.KeyECP256, Label: AuditKeyLabel})
		if err != nil {
			return nil, err
		}
		ps, err := newRefSigner(ctx, s.keys, ak)
		if err != nil {
			return nil, tokenErr(err)
		}
		signer = ps
	}
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("keysvc: the audit signer's key is %T, want an ECDSA P-256 key", signer.Public())
	}
	cps, err := s.store.Checkpoints()
	if err != nil {
		return nil, err
	}
	if n := len(cps); n > 0 {
		if err := cps[n-1].VerifySignature(pub); err != nil {
			return nil, fmt.Errorf("%w: the store's audit checkpoints were signed by another audit key than this one (%s); keep the audit key of an existing store (audit.signer and its token or TPM) or start a new store", ErrAuditKeyChanged, auditKeyName(s.cfg.AuditSigner))
		}
	}
	return signer, nil
}

func auditKeyName(custom crypto.Signer) string {
	if custom != nil {
		return "a configured audit signer"
	}
	return "the token's " + AuditKeyLabel
}

// ensureKey finds a service key by label (checkServiceKeys, which runs
// first, generated it if that was allowed).
func (s *Service) ensureKey(ctx context.Context, ks token.KeySpec) (token.KeyRef, error) {
	k, err := s.keys.FindKey(ctx, ks.Label)
	if err != nil {
		return nil, fmt.Errorf("keysvc: service key %s: %w", ks.Label, tokenErr(err))
	}
	if k.KeyType() != ks.Type {
		return nil, fmt.Errorf("keysvc: token object %q is %v, want %v", ks.Label, k.KeyType(), ks.Type)
	}
	return k, nil
}

// AuditPublicKey is the key that verifies audit checkpoints.
func (s *Service) AuditPublicKey() *ecdsa.PublicKey { return s.auditKey.Public().(*ecdsa.PublicKey) }

// lock serialises lifecycle changes to one key.
func (s *Service) lock(name string) func() {
	h := fnv.New32a()
	h.Write([]byte(name))
	m := &s.locks[h.Sum32()%uint32(len(s.locks))]
	m.Lock()
	return m.Unlock
}

// authorize applies the key's policy. Admin callers may read, rotate and
// manage every key; every other use needs a grant (deny by default).
func authorize(c Caller, k *Key, op wire.Op) error {
	if c.Admin && (op == wire.OpRead || op == wire.OpManage || op == wire.OpRotate) {
		return nil
	}
	if k.Policy.Allows(c.Name, op) {
		return nil
	}
	return forbidden(c, op, k.Name)
}

// forbidden is the one refusal for a key the caller may not use, worded
// alike whether the key exists or not (visible).
func forbidden(c Caller, op wire.Op, name string) error {
	return fmt.Errorf("%w: client %q may not %s with key %q (it holds no grant for it, or there is no such key)", wire.ErrForbidden, c.Name, op, name)
}

// visible authorises c to op on the key name that a lookup returned (k,
// err) before saying whether the key exists: a caller the key's policy
// does not admit gets the same ErrForbidden whether the key exists or not,
// so key names (customer ids) cannot be probed. Admin callers, who may
// list every key anyway, learn ErrKeyNotFound.
func visible(c Caller, name string, op wire.Op, k *Key, err error) (*Key, error) {
	switch {
	case err == nil && authorize(c, k, op) == nil:
		return k, nil
	case err != nil && !errors.Is(err, wire.ErrKeyNotFound):
		return nil, err
	case errors.Is(err, wire.ErrKeyNotFound) && c.Admin:
		return nil, err
	}
	return nil, forbidden(c, op, name)
}

// hideMissing gives a non-admin caller's ErrKeyNotFound, from an operation
// that looked the key up before authorising, the answer visible gives:
// the same ErrForbidden as for a key the caller may not use.
func hideMissing(c Caller, name string, op wire.Op, err error) error {
	if !errors.Is(err, wire.ErrKeyNotFound) {
		return err
	}
	_, err = visible(c, name, op, nil, err)
	return err
}

// record builds an audit record for caller c.
func (s *Service) record(c Caller, key string, version int, op string, err error) *audit.Record {
	return &audit.Record{Time: s.now(), Client: c.Name, Key: key, Version: version, Op: op, Result: ResultCode(err), RequestDigest: s.digester.Digest(c.BodySHA256)}
}

// audit appends a record; when it can't, the operation must fail.
func (s *Service) audit(rec *audit.Record) error {
	if err := s.store.Audit(rec); err != nil {
		s.log.Error("audit append failed; refusing the operation", "op", rec.Op, "key", rec.Key, "err", err)
		return fmt.Errorf("%w: the operation was not performed", wire.ErrAuditUnavailable)
	}
	return nil
}

// finish audits the outcome of an operation and returns the error to give
// the caller (the operation's own, or the audit failure).
func (s *Service) finish(c Caller, key string, version int, op string, err error) error {
	if aerr := s.audit(s.record(c, key, version, op, err)); aerr != nil {
		return aerr
	}
	return err
}

// ResultCode is the audit "result" for err: "ok", the sentinel's code
// from SentinelCodes, or "internal".
func ResultCode(err error) string {
	if err == nil {
		return "ok"
	}
	for _, e := range wire.SentinelCodes {
		if errors.Is(err, e.Err) {
			return e.Code
		}
	}
	return "internal"
}

// tokenErr maps token-layer failures to the service's sentinels.
func tokenErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, token.ErrPINLocked):
		return fmt.Errorf("%w: a security officer must unlock the token", wire.ErrTokenLocked)
	case errors.Is(err, token.ErrTokenNotPresent), errors.Is(err, token.ErrSessionClosed),
		errors.Is(err, token.ErrPoolTimeout), errors.Is(err, token.ErrPINIncorrect), errors.Is(err, token.ErrTokenBusy):
		return fmt.Errorf("%w: %w", wire.ErrTokenUnavailable, err)
	case errors.Is(err, token.ErrDecrypt):
		return wire.ErrDecrypt
	case errors.Is(err, token.ErrKeyNotFound):
		return fmt.Errorf("%w: the key material is missing from the token; a security officer must check the token", wire.ErrVersionNotUsable)
	}
	return err
}

// Stats reports pool and PIN state for metrics.
func (s *Service) Stats() Stats {
	ks := s.keys.Stats()
	st := Stats{PoolInUse: ks.SessionsInUse, PoolMax: ks.MaxSessions, TokenHealthy: ks.Healthy, MissingTokenKeys: int(s.missingKeys.Load()),
		PINFailures: ks.PINFailures, PINLocked: ks.PINLocked, Tokens: ks.Members, SchedulerLeader: s.leading.Load()}
	s.kekStats(&st)
	return st
}

// Ready checks that the token answers and the store takes writes.
func (s *Service) Ready(ctx context.Context) error {
	if err := s.keys.Health(ctx); err != nil {
		return tokenErr(err)
	}
	if err := s.store.Writable(); err != nil {
		if errors.Is(err, wire.ErrStore) {
			return err
		}
		return fmt.Errorf("%w: %w", wire.ErrStore, err)
	}
	return nil
}

// Checkpoint signs the newest audit record with the audit key, chained to
// the newest checkpoint, if there is anything new since it. It refuses
// (ErrAuditBroken) when the newest stored checkpoint is not the one this
// process last checked or signed: the log was cut back under it. Each
// checkpoint is logged with its anchor ("expect=<seq>:<hash>") for
// officers to keep outside the machine.
func (s *Service) Checkpoint(ctx context.Context) error {
	s.cpMu.Lock()
	defer s.cpMu.Unlock()
	// A store that chains after acknowledging (etcdstore's sequencer):
	// cover every record acknowledged so far.
	if sy, ok := s.store.(AuditSyncer); ok {
		if err := sy.SyncAudit(ctx); err != nil {
			return err
		}
	}
	seq, hash, err := s.store.LastAudit()
	if err != nil || seq == 0 {
		return err
	}
	cps, err := s.store.Checkpoints()
	if err != nil {
		return err
	}
	var prev *audit.Checkpoint
	if n := len(cps); n > 0 {
		prev = &cps[n-1]
	}
	if s.lastCP != nil && prev != nil && s.othersCheckpointed(cps) {
		s.lastCP = prev // another node, leader before this one, signed after it
	}
	if s.lastCP != nil && (prev == nil || !bytes.Equal(prev.Digest(), s.lastCP.Digest())) {
		err := fmt.Errorf("%w: the newest stored checkpoint is not checkpoint %d (record %d) that this process signed or checked last; %s", ErrAuditBroken, s.lastCP.Index, s.lastCP.Seq, auditBrokenHelp)
		s.log.Error("audit checkpoint refused", "err", err)
		return err
	}
	if prev != nil && prev.Seq >= seq {
		return nil
	}
	cp, err := audit.SignCheckpoint(s.auditKey, prev, seq, hash, s.now())
	if err != nil {
		return tokenErr(err)
	}
	if err := s.store.AddCheckpoint(cp); err != nil {
		if s.lostCheckpointRace(prev) {
			return nil // another node checkpointed first (two leaders for a moment)
		}
		return err
	}
	s.lastCP = &cp
	s.logCheckpoint("audit checkpoint", cp)
	return nil
}

// othersCheckpointed reports whether, on a shared store, the checkpoints
// after the one this process signed or checked last are other nodes'
// work: that one is still in cps, and each later one chains to it and
// verifies with the audit key all nodes share. A log cut back under it
// fails this (the one it signed is gone, or the chain does not hold).
func (s *Service) othersCheckpointed(cps []audit.Checkpoint) bool {
	if _, ok := s.store.(Elector); !ok {
		return false
	}
	i := slices.IndexFunc(cps, func(c audit.Checkpoint) bool { return bytes.Equal(c.Digest(), s.lastCP.Digest()) })
	if i < 0 {
		return false
	}
	for j := i + 1; j < len(cps); j++ {
		if cps[j].Follows(&cps[j-1]) != nil {
			return false
		}
	}
	return cps[len(cps)-1].VerifySignature(s.AuditPublicKey()) == nil // it vouches for every earlier one
}

// lostCheckpointRace reports whether, on a shared store, AddCheckpoint
// failed because another node stored the checkpoint after prev first: the
// newest stored checkpoint now follows prev and verifies. It becomes the
// one this process last checked.
func (s *Service) lostCheckpointRace(prev *audit.Checkpoint) bool {
	if _, ok := s.store.(Elector); !ok {
		return false
	}
	cps, err := s.store.Checkpoints()
	if err != nil || len(cps) == 0 {
		return false
	}
	i := len(cps) - 1
	if prev != nil {
		i = slices.IndexFunc(cps, func(c audit.Checkpoint) bool { return bytes.Equal(c.Digest(), prev.Digest()) })
		if i < 0 || i == len(cps)-1 {
			return false
		}
		i++
	} else if cps[0].Follows(nil) != nil {
		return false
	} else {
		i = 0
	}
	for j := i + 1; j < len(cps); j++ {
		if cps[j].Follows(&cps[j-1]) != nil {
			return false
		}
	}
	if (prev != nil && cps[i].Follows(prev) != nil) || cps[len(cps)-1].VerifySignature(s.AuditPublicKey()) != nil {
		return false
	}
	newest := cps[len(cps)-1]
	s.lastCP = &newest
	return true
}

// logCheckpoint logs a checkpoint with the anchor officers keep.
func (s *Service) logCheckpoint(msg string, cp audit.Checkpoint) {
	s.log.Info(msg, "index", cp.Index, "seq", cp.Seq, "hash", hex.EncodeToString(cp.Hash),
		"expect", audit.Anchor{Seq: cp.Seq, Hash: cp.Hash}.String())
}

// VerifyAudit checks the whole audit chain and every checkpoint.
func (s *Service) VerifyAudit(anchors ...audit.Anchor) (audit.Report, error) {
	return VerifyAudit(s.store, s.AuditPublicKey(), anchors...)
}

// VerifyAudit checks store's whole audit chain, its checkpoint chain and
// every checkpoint signature with the audit public key, and that the log
// holds each anchor (usable offline, e.g. by `keysvc audit verify
// -expect`). A log with no checkpoint fails (audit.ErrNoCheckpoint), and
// so does one not yet migrated (audit.ErrUnmigrated).
func VerifyAudit(store Store, pub *ecdsa.PublicKey, anchors ...audit.Anchor) (audit.Report, error) {
	if f, err := store.AuditFormat(); err != nil {
		return audit.Report{}, err
	} else if f < AuditFormat {
		return audit.Report{}, fmt.Errorf("%w: this store is in audit format %d; start keysvc once to migrate it, or verify it with the keysvc release that wrote it", audit.ErrUnmigrated, f)
	}
	cps, err := store.Checkpoints()
	if err != nil {
		return audit.Report{}, err
	}
	v, err := audit.NewVerifier(cps, pub, anchors...)
	if err != nil {
		return audit.Report{}, err
	}
	if err := store.AuditRecords(0, v.Add); err != nil {
		rep, _ := v.Finish()
		return rep, err
	}
	return v.Finish()
}
