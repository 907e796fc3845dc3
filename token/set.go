package token

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
)

// Set is a key store over several tokens (HSM partitions) that hold the
// same keys, so that losing one stops nothing (issue 15 items 3 and 4,
// R-AV-4). It implements keysvc.KeyStore.
//
// # Dispatch
//
// Each operation goes to an UP member: the one with the fewest operations
// in flight, ties broken round-robin. When it fails, the error decides:
//
//   - An operation's own error (ErrDecrypt, ErrInputInvalid, ErrKeyMismatch,
//     ErrDuplicateLabel, ErrMechanismInvalid, a PIN error, the caller's
//     context) is returned as it is: another member would answer the same.
//   - A key "not found" on one member is tried on the others (a member that
//     lacks a key the others hold is not down: Store turns a missing key on
//     a vanished token into ErrTokenNotPresent itself).
//   - Anything else (token not present, session closed, pool closed or
//     timed out, device and general errors) may be the member's failure:
//     the set asks the member's Health. If the member does not answer, it
//     is marked DOWN. Either way the operation is retried on another up
//     member before the caller sees anything; a member that answered Health
//     may be tried once more after the others.
//
// Several SoftHSM tokens in one process share ONE module: bringing one back
// takes C_Finalize/C_Initialize (pkcs11shim.Module.Reinitialize), which
// ends every session of the others too. Their pools recover on the next
// call (WithSession retries once on ErrSessionClosed); Health is asked up
// to three times while it answers only ErrSessionClosed, so such a blip
// never marks a healthy member down.
//
// # Probing and catch-up
//
// A prober checks every member each ProbeInterval: an up member whose
// Health fails is marked down; a down member that answers is caught up
// BEFORE it is re-admitted: every label Managed lists (and the set made in
// the last minutes) that it lacks is copied from an up member
// (ExportReplica/ImportReplica, under the replication key, never in clear),
// and every "kw/" key it holds that Managed no longer lists is destroyed.
// The last pass runs with key generation and destruction held off, so no
// key made meanwhile is missed. Every state change is logged with the
// member's name, token label and serial, the cause, how long it was down
// and how many keys were copied and destroyed, and reported to
// SetConfig.OnEvent (keysvc audits it). SetConfig.Admit is asked before a
// member is caught up and re-admitted (keysvc: destroy the KEKs of retired
// epochs on it, then compare its service keys with the store's record).
//
// # Keys
//
// GenerateKey makes the key extractable only under a trusted key
// (KeySpec.Extractable: CKA_WRAP_WITH_TRUSTED) on one member and copies it
// to every other up member before it returns; a member that fails during
// the copy is marked down (catch-up copies later), any other failure
// destroys what was made and returns the error. DestroyKey destroys on
// every up member (down members at their catch-up). The set's KeyRefs are
// its own, resolved per member by label and cached until the member changes
// state.
//
// A Set of one member does what that member does (no replication needed);
// a Set of several refuses members without the replication key.
//
// # Concurrency
//
// A Set is safe for concurrent use. Close stops the prober.
type Set struct {
	cfg       SetConfig
	log       *slog.Logger
	members   []*member
	replicate bool
	rr        atomic.Uint64

	refsMu sync.Mutex
	refs   map[string]*setRef

	// genMu: GenerateKey and DestroyKey hold it shared; a catch-up's last
	// pass and re-admission hold it exclusively.
	genMu sync.RWMutex

	recentMu sync.Mutex
	fresh    map[string]time.Time // labels generated lately (maybe not yet in Managed)
	gone     map[string]time.Time // labels destroyed lately (maybe still in Managed)

	probeMu sync.Mutex // one probe round at a time
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// Member is what a Set needs of each token: keysvc.KeyStore's methods
// (*Store has them). Replication (ExportReplica, ImportReplica,
// Replicable) and Rewrap are found by type assertion.
type Member interface {
	Identity() (label, serial string)
	FindKey(ctx context.Context, label string) (KeyRef, error)
	GenerateKey(ctx context.Context, spec KeySpec) (KeyRef, error)
	GenerateWrapped(ctx context.Context, kek KeyRef, spec KeySpec) (blob []byte, pub crypto.PublicKey, err error)
	Use(ctx context.Context, m Material, fn func(KeyUse) error) error
	CheckValue(ctx context.Context, ref KeyRef) (method string, value []byte, err error)
	KeyLabels(ctx context.Context) ([]string, error)
	DestroyKey(ctx context.Context, ref KeyRef) error
	Random(ctx context.Context, n int) ([]byte, error)
	Health(ctx context.Context) error
	Stats() StoreStats
}

// replicator is a member that copies keys inside the trust boundary.
type replicator interface {
	ExportReplica(ctx context.Context, ref KeyRef) (Replica, error)
	ImportReplica(ctx context.Context, r Replica) (KeyRef, error)
	Replicable(ctx context.Context) (bool, error)
}

// replicationChecker is a member that tells its replication key's check
// value (*Store: ReplicationCheckValue).
type replicationChecker interface {
	ReplicationCheckValue(ctx context.Context) ([]byte, error)
}

// rewrapper is a member that re-wraps a blob from one KEK to another
// (keysvc.KeyStore's Rewrap, for KEK rotation).
type rewrapper interface {
	Rewrap(ctx context.Context, from, to KeyRef, blob []byte, spec KeySpec) ([]byte, error)
}

var (
	_ Member     = (*Store)(nil)
	_ replicator = (*Store)(nil)
)

// SetMember is one token of a Set.
type SetMember struct {
	Name  string // the operator's name for it (config tokens[].name), in logs and metrics
	Store Member
}

// SetConfig configures a Set.
type SetConfig struct {
	Members []SetMember
	// ProbeInterval is how often members are checked (default 2 s).
	ProbeInterval time.Duration
	// Managed returns the labels of the token objects that must exist on
	// every member (keysvc.Service.ManagedLabels: its live hsm versions).
	// Until it answers, no member is re-admitted (nor caught up).
	Managed func(ctx context.Context) ([]string, error)
	// Admit, when set, is asked about a member before it is re-admitted,
	// before its catch-up copies anything into it (keysvc: the member's
	// service keys against the store's record); an error keeps it out,
	// logged, until a later probe.
	Admit func(ctx context.Context, m Member) error
	// OnEvent, when set, is told of every change of a member's state and of
	// every catch-up at start that changed a token (keysvc writes each to
	// its audit log). It is called synchronously from the goroutine that
	// made the change (a request's, the prober's, Sync's caller), possibly
	// while that goroutine holds the set's internal locks: it must not call
	// back into the set, and should be quick.
	OnEvent func(SetEvent)
	Logger  *slog.Logger
}

// SetEventKind says what a SetEvent reports.
type SetEventKind int

// Set event kinds.
const (
	// SetMemberDown: a member was taken out of service (or did not
	// answer at start); Cause says why.
	SetMemberDown SetEventKind = iota + 1
	// SetMemberReadmitted: a member was caught up and put back in
	// service; Copied and Destroyed count the keys its catch-up changed,
	// DownFor how long it was out.
	SetMemberReadmitted
	// SetMemberSynced: Sync (keysvc's start) brought an up member level
	// with keysvc's records; only reported when it changed something.
	SetMemberSynced
)

func (k SetEventKind) String() string {
	switch k {
	case SetMemberDown:
		return "member-down"
	case SetMemberReadmitted:
		return "member-readmitted"
	case SetMemberSynced:
		return "member-synced"
	}
	return "unknown"
}

// SetEvent is one change in a Set, for SetConfig.OnEvent. It names the
// member and its token; it never holds key material or a PIN.
type SetEvent struct {
	Kind              SetEventKind
	Time              time.Time
	Member            string // the operator's name for it
	TokenLabel        string
	Serial            string
	Cause             string        // why it went down (SetMemberDown, SetMemberReadmitted)
	DownFor           time.Duration // SetMemberReadmitted: how long it was out
	Copied, Destroyed int           // keys its catch-up copied into it and destroyed on it
}

// emit reports ev to SetConfig.OnEvent.
func (s *Set) emit(ev SetEvent) {
	if s.cfg.OnEvent == nil {
		return
	}
	ev.Time = time.Now()
	s.cfg.OnEvent(ev)
}

func (s *Set) event(kind SetEventKind, m *member) SetEvent {
	return SetEvent{Kind: kind, Member: m.name, TokenLabel: m.label, Serial: m.serial}
}

// DefaultProbeInterval is SetConfig.ProbeInterval's default.
const DefaultProbeInterval = 2 * time.Second

// ErrNoMemberUp is returned when no member of a Set is up; it wraps
// ErrTokenNotPresent (keysvc answers token_unavailable).
var ErrNoMemberUp = fmt.Errorf("%w: no token of the set is up", ErrTokenNotPresent)

// recentTTL is how long the set remembers labels it made or destroyed, for
// catch-ups that run before keysvc's store records the change.
const recentTTL = 10 * time.Minute

// MemberState is a member's state in its Set.
type MemberState int

// Member states.
const (
	MemberUp         MemberState = iota + 1 // serving
	MemberDown                              // out of service, probed
	MemberCatchingUp                        // answering again, being brought up to date
)

func (s MemberState) String() string {
	switch s {
	case MemberUp:
		return "up"
	case MemberDown:
		return "down"
	case MemberCatchingUp:
		return "catching-up"
	}
	return "unknown"
}

// MemberStats is one member's state, for metrics and /readyz.
type MemberStats struct {
	Name, TokenLabel, Serial   string
	State                      MemberState
	Since                      time.Time // last state change
	Cause                      string    // why it went down (empty while up)
	SessionsInUse, MaxSessions int
	PINLocked                  bool
	Readmissions               int
}

type member struct {
	idx           int
	name          string
	st            Member
	label, serial string
	busy          atomic.Int64
	epoch         atomic.Uint64 // bumped at each state change: cached refs are dropped

	mu           sync.Mutex
	state        MemberState
	since        time.Time
	cause        string
	readmissions int
	downGen      uint64 // its module's generation when it went down
}

// moduleMember is a member on a PKCS#11 module (*Store), which may be
// shared with other members.
type moduleMember interface {
	moduleGeneration() uint64
	reinitializeModule(seen uint64) error
}

func (s *Store) moduleGeneration() uint64 { return s.pool.Module().Generation() }
func (s *Store) reinitializeModule(seen uint64) error {
	return s.pool.Module().Reinitialize(seen)
}

func (m *member) State() MemberState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// NewSet builds a Set and starts its prober. Members that do not answer
// now start DOWN; at least one must answer. With more than one member,
// every member that answers must hold the replication key.
func NewSet(ctx context.Context, cfg SetConfig) (*Set, error) {
	if len(cfg.Members) == 0 {
		return nil, errors.New("token: a token set needs at least one member")
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Set{cfg: cfg, log: cfg.Logger, replicate: len(cfg.Members) > 1, refs: map[string]*setRef{},
		fresh: map[string]time.Time{}, gone: map[string]time.Time{}, stop: make(chan struct{}), done: make(chan struct{})}
	names := map[string]bool{}
	up := 0
	now := time.Now()
	for i, sm := range cfg.Members {
		if sm.Name == "" || sm.Store == nil {
			return nil, fmt.Errorf("token: token set member %d needs a name and a store", i)
		}
		if names[sm.Name] {
			return nil, fmt.Errorf("token: token set member name %q is used twice", sm.Name)
		}
		names[sm.Name] = true
		label, serial := sm.Store.Identity()
		m := &member{idx: i, name: sm.Name, st: sm.Store, label: label, serial: serial, state: MemberUp, since: now}
		s.members = append(s.members, m)
		if err := sm.Store.Health(ctx); err != nil {
			m.state, m.cause = MemberDown, err.Error()
			s.log.Warn("token set: member does not answer at start; it stays out until it answers and is caught up",
				"member", m.name, "token", label, "serial", serial, "err", err)
			ev := s.event(SetMemberDown, m)
			ev.Cause = "does not answer at start: " + err.Error()
			s.emit(ev)
			continue
		}
		if s.replicate {
			if err := replicable(ctx, m); err != nil {
				return nil, err
			}
		}
		up++
	}
	if up == 0 {
		return nil, fmt.Errorf("%w: none of the %d tokens answers at start", ErrNoMemberUp, len(s.members))
	}
	if s.replicate {
		for _, m := range s.members {
			if m.State() == MemberUp {
				if err := s.sameReplicationKey(ctx, m); err != nil {
					return nil, err
				}
			}
		}
	}
	go s.prober()
	return s, nil
}

// replicable checks that m can take part in replication.
func replicable(ctx context.Context, m *member) error {
	r, ok := m.st.(replicator)
	if !ok {
		return fmt.Errorf("token: token set member %q (token %q, serial %s) cannot copy keys (%T has no replication)", m.name, m.label, m.serial, m.st)
	}
	ok, err := r.Replicable(ctx)
	if err != nil {
		return fmt.Errorf("token: token set member %q (token %q, serial %s): looking for the replication key: %w", m.name, m.label, m.serial, err)
	}
	if !ok {
		return fmt.Errorf("token: token set member %q (token %q, serial %s) has no replication key %q: security officers install it in every token of the set with `ceremony replication-key`", m.name, m.label, m.serial, ReplicationKeyLabel)
	}
	return nil
}

// sameReplicationKey checks that m holds the same replication key as the
// first other up member (equal check values), when both can tell: a copy
// made under one replication key does not unwrap under another.
func (s *Set) sameReplicationKey(ctx context.Context, m *member) error {
	mc, ok := m.st.(replicationChecker)
	if !ok {
		return nil
	}
	for _, o := range s.members {
		oc, ok := o.st.(replicationChecker)
		if o == m || !ok || o.State() != MemberUp {
			continue
		}
		mine, err := mc.ReplicationCheckValue(ctx)
		if err != nil {
			return fmt.Errorf("token set member %q (token %q): replication key check value: %w", m.name, m.label, err)
		}
		theirs, err := oc.ReplicationCheckValue(ctx)
		if err != nil {
			return fmt.Errorf("token set member %q (token %q): replication key check value: %w", o.name, o.label, err)
		}
		if string(mine) != string(theirs) {
			return fmt.Errorf("token: token set members %q (token %q, serial %s) and %q (token %q, serial %s) hold different replication keys (check values %x and %x): install the same one in both with `ceremony replication-key` (mode install, from the generate ceremony's shares)",
				m.name, m.label, m.serial, o.name, o.label, o.serial, mine, theirs)
		}
		return nil
	}
	return nil
}

// Close stops the prober. It does not close the members.
func (s *Set) Close() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

// ---- references ----

// setRef is a Set's KeyRef: a label, resolved per member and cached.
type setRef struct {
	label string
	typ   KeyType
	id    []byte

	mu  sync.Mutex
	per []memberRef
}

type memberRef struct {
	epoch uint64
	ref   KeyRef
}

func (r *setRef) Label() string    { return r.label }
func (r *setRef) KeyType() KeyType { return r.typ }
func (r *setRef) ID() []byte       { return slices.Clone(r.id) }
func (r *setRef) String() string   { return r.label }

func (s *Set) asRef(ref KeyRef) (*setRef, error) {
	if r, ok := ref.(*setRef); ok && r != nil && len(r.per) == len(s.members) {
		return r, nil
	}
	return nil, fmt.Errorf("%w: %T is not a reference made by this token set", ErrKeyMismatch, ref)
}

// refFor returns the set's reference for a key a member just found or
// made, caching the member's reference.
func (s *Set) refFor(m *member, k KeyRef) *setRef {
	s.refsMu.Lock()
	r, ok := s.refs[k.Label()]
	if !ok {
		r = &setRef{label: k.Label(), typ: k.KeyType(), id: k.ID(), per: make([]memberRef, len(s.members))}
		s.refs[k.Label()] = r
	}
	s.refsMu.Unlock()
	r.mu.Lock()
	r.per[m.idx] = memberRef{epoch: m.epoch.Load(), ref: k}
	r.mu.Unlock()
	return r
}

// resolve is r on member m.
func (s *Set) resolve(ctx context.Context, m *member, r *setRef) (KeyRef, error) {
	ep := m.epoch.Load()
	r.mu.Lock()
	c := r.per[m.idx]
	r.mu.Unlock()
	if c.ref != nil && c.epoch == ep {
		return c.ref, nil
	}
	k, err := m.st.FindKey(ctx, r.label)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.per[m.idx] = memberRef{epoch: ep, ref: k}
	r.mu.Unlock()
	return k, nil
}

func (r *setRef) forget(m *member) {
	r.mu.Lock()
	r.per[m.idx] = memberRef{}
	r.mu.Unlock()
}

// ---- dispatch ----

// ownError reports errors that belong to the operation, not the member:
// any member would answer the same.
func ownError(err error) bool {
	for _, e := range []error{ErrDecrypt, ErrInputInvalid, ErrKeyMismatch, ErrDuplicateLabel, ErrMechanismInvalid,
		pkcs11shim.ErrPINIncorrect, pkcs11shim.ErrPINLocked, pkcs11shim.ErrPINInvalid, pkcs11shim.ErrKeyUnextractable,
		pkcs11shim.ErrSignatureInvalid, pkcs11shim.ErrPINSourceSyntax, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// dispatch runs fn on up members until one succeeds or the error is the
// operation's own. Each member is tried at most twice, and a second time
// only after every other has been tried and only if it answered Health.
func (s *Set) dispatch(ctx context.Context, fn func(m *member) error) error {
	attempts := make([]int, len(s.members))
	var lastErr error
	for {
		m := s.pick(attempts)
		if m == nil {
			if lastErr == nil {
				return s.noMember()
			}
			return lastErr
		}
		attempts[m.idx]++
		m.busy.Add(1)
		err := fn(m)
		m.busy.Add(-1)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if ownError(err) {
			// ErrDecrypt also stands for a C_UnwrapKey or C_Decrypt that
			// failed with CKR_GENERAL_ERROR, which is what SoftHSM2 answers
			// when the token vanishes mid-operation: ask the member.
			if !errors.Is(err, ErrDecrypt) || s.confirm(m, err) {
				return err
			}
			lastErr = err
			attempts[m.idx] = 2
			continue
		}
		lastErr = err
		if errors.Is(err, ErrKeyNotFound) {
			attempts[m.idx] = 2 // a healthy member without the key: try the others
			continue
		}
		if !s.confirm(m, err) {
			attempts[m.idx] = 2
		}
	}
}

// pick returns the up member with the fewest attempts, then the fewest
// operations in flight, round-robin among equals; nil when none is left.
func (s *Set) pick(attempts []int) *member {
	n := len(s.members)
	start := int(s.rr.Add(1) % uint64(n))
	var best *member
	var bestBusy int64
	for i := 0; i < n; i++ {
		m := s.members[(start+i)%n]
		if attempts[m.idx] >= 2 || m.State() != MemberUp {
			continue
		}
		b := m.busy.Load()
		if best == nil || attempts[m.idx] < attempts[best.idx] || attempts[m.idx] == attempts[best.idx] && b < bestBusy {
			best, bestBusy = m, b
		}
	}
	return best
}

func (s *Set) noMember() error {
	var parts []string
	for _, m := range s.members {
		m.mu.Lock()
		parts = append(parts, fmt.Sprintf("%s (token %q): %s since %s", m.name, m.label, m.state, m.since.UTC().Format(time.RFC3339)))
		m.mu.Unlock()
	}
	return fmt.Errorf("%w: %s", ErrNoMemberUp, strings.Join(parts, "; "))
}

// confirm asks m's Health after cause; it marks m down and reports false
// when m does not answer. Health answering only ErrSessionClosed (the
// module was just re-initialised for another token) is asked again.
//
// The member's state may change while Health is asked (the prober
// re-admits it): m is marked down only if its epoch has not moved since
// this check began, so a failure seen before a re-admission never takes
// out the member the re-admission just put back (its own checks were
// newer).
func (s *Set) confirm(m *member, cause error) bool {
	epoch := m.epoch.Load()
	var err error
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = s.health(ctx, m)
		cancel()
		if err == nil {
			return true
		}
		if !errors.Is(err, ErrSessionClosed) || errors.Is(err, ErrTokenNotPresent) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.markDownAt(m, epoch, fmt.Errorf("%w (health: %w)", cause, err))
	return false
}

// health asks whether m answers now (its Health) and, in a replicating
// set, still holds the officers' replication key: a member that lost it
// could take no copies, so it must not serve.
func (s *Set) health(ctx context.Context, m *member) error {
	if err := m.st.Health(ctx); err != nil {
		return err
	}
	if s.replicate {
		return replicable(ctx, m)
	}
	return nil
}

// markDownAt takes m out of service, unless its state changed since
// epoch (m.epoch when the failure was confirmed began).
func (s *Set) markDownAt(m *member, epoch uint64, cause error) {
	m.mu.Lock()
	if m.state == MemberDown || m.epoch.Load() != epoch {
		m.mu.Unlock()
		return
	}
	was, upFor := m.state, time.Since(m.since)
	m.state, m.since, m.cause = MemberDown, time.Now(), cause.Error()
	if mm, ok := m.st.(moduleMember); ok {
		m.downGen = mm.moduleGeneration()
	}
	m.epoch.Add(1)
	m.mu.Unlock()
	s.log.Error("token set: member DOWN; operations go to the other tokens, and it is probed every "+s.cfg.ProbeInterval.String(),
		"member", m.name, "token", m.label, "serial", m.serial, "was", was.String(), "for", upFor.Round(time.Millisecond).String(), "cause", cause)
	ev := s.event(SetMemberDown, m)
	ev.Cause = cause.Error()
	s.emit(ev)
}

// ---- keysvc.KeyStore ----

// Identity is the first member's label and serial (the configured order,
// so it does not change with members' states).
func (s *Set) Identity() (label, serial string) {
	return s.members[0].label, s.members[0].serial
}

// FindKey finds a key by label on the up members (ErrKeyNotFound when none
// holds it). A label found before answers from the set's cache.
func (s *Set) FindKey(ctx context.Context, label string) (KeyRef, error) {
	s.refsMu.Lock()
	r, ok := s.refs[label]
	s.refsMu.Unlock()
	if ok {
		return r, nil
	}
	var out KeyRef
	err := s.dispatch(ctx, func(m *member) error {
		k, err := m.st.FindKey(ctx, label)
		if err != nil {
			return err
		}
		out = s.refFor(m, k)
		return nil
	})
	return out, err
}

// GenerateKey makes a key on one up member and, in a replicating set,
// copies it to every other up member before it returns.
func (s *Set) GenerateKey(ctx context.Context, spec KeySpec) (KeyRef, error) {
	if !s.replicate {
		var out KeyRef
		err := s.dispatch(ctx, func(m *member) error {
			k, err := m.st.GenerateKey(ctx, spec)
			if err == nil {
				out = s.refFor(m, k)
			}
			return err
		})
		return out, err
	}
	s.genMu.RLock()
	defer s.genMu.RUnlock()
	s.noteRecent(spec.Label, true)
	spec.Extractable = true // CKA_WRAP_WITH_TRUSTED: it leaves only under the replication key
	var src *member
	var k KeyRef
	err := s.dispatch(ctx, func(m *member) error {
		var err error
		k, err = m.st.GenerateKey(ctx, spec)
		src = m
		return err
	})
	if err != nil {
		return nil, err
	}
	r := s.refFor(src, k)
	made := []struct {
		m *member
		k KeyRef
	}{{src, k}}
	undo := func(cause error) error {
		for _, mk := range made {
			if err := mk.m.st.DestroyKey(context.WithoutCancel(ctx), mk.k); err != nil && !errors.Is(err, ErrKeyNotFound) {
				s.log.Error("token set: could not remove a key whose copy failed", "member", mk.m.name, "label", spec.Label, "err", err)
			}
		}
		s.forgetRef(spec.Label)
		return cause
	}
	rep, err := src.st.(replicator).ExportReplica(ctx, k)
	if err != nil {
		return nil, undo(fmt.Errorf("token set: export %s from %s for copying: %w", spec.Label, src.name, err))
	}
	for _, m := range s.members {
		if m == src || m.State() != MemberUp {
			continue
		}
		mk, err := m.st.(replicator).ImportReplica(ctx, rep)
		if err == nil {
			made = append(made, struct {
				m *member
				k KeyRef
			}{m, mk})
			s.refFor(m, mk)
			continue
		}
		if !ownError(err) && !errors.Is(err, ErrKeyNotFound) && ctx.Err() == nil && !s.confirm(m, err) {
			continue // down now: its catch-up copies the key
		}
		return nil, undo(fmt.Errorf("token set: copy %s to %s: %w", spec.Label, m.name, err))
	}
	return r, nil
}

// GenerateWrapped makes a wrapped key on any up member (the KEK is the same
// key on every member).
func (s *Set) GenerateWrapped(ctx context.Context, kek KeyRef, spec KeySpec) (blob []byte, pub crypto.PublicKey, err error) {
	r, err := s.asRef(kek)
	if err != nil {
		return nil, nil, err
	}
	err = s.dispatch(ctx, func(m *member) error {
		kk, err := s.resolve(ctx, m, r)
		if err == nil {
			blob, pub, err = m.st.GenerateWrapped(ctx, kk, spec)
		}
		s.dropIfMissing(err, m, r)
		return err
	})
	return blob, pub, err
}

// Use runs fn on any up member holding the material's key.
func (s *Set) Use(ctx context.Context, mat Material, fn func(KeyUse) error) error {
	key := mat.Key
	if key == nil {
		key = mat.KEK
	}
	if key == nil {
		return errors.New("token: material names neither a key nor a wrapped blob and its KEK")
	}
	r, err := s.asRef(key)
	if err != nil {
		return err
	}
	return s.dispatch(ctx, func(m *member) error {
		k, err := s.resolve(ctx, m, r)
		if err == nil {
			mm := mat
			if mat.Key != nil {
				mm.Key = k
			} else {
				mm.KEK = k
			}
			err = m.st.Use(ctx, mm, fn)
		}
		s.dropIfMissing(err, m, r)
		return err
	})
}

func (s *Set) dropIfMissing(err error, m *member, r *setRef) {
	if err != nil && !ownError(err) {
		r.forget(m)
	}
}

// CheckValue identifies a key, computed on any up member.
func (s *Set) CheckValue(ctx context.Context, ref KeyRef) (method string, value []byte, err error) {
	r, err := s.asRef(ref)
	if err != nil {
		return "", nil, err
	}
	err = s.dispatch(ctx, func(m *member) error {
		k, err := s.resolve(ctx, m, r)
		if err == nil {
			method, value, err = m.st.CheckValue(ctx, k)
		}
		s.dropIfMissing(err, m, r)
		return err
	})
	return method, value, err
}

// Rewrap re-wraps a blob from one KEK to another on any up member (the
// KEKs are the same keys everywhere).
func (s *Set) Rewrap(ctx context.Context, from, to KeyRef, blob []byte, spec KeySpec) ([]byte, error) {
	rf, err := s.asRef(from)
	if err != nil {
		return nil, err
	}
	rt, err := s.asRef(to)
	if err != nil {
		return nil, err
	}
	var out []byte
	err = s.dispatch(ctx, func(m *member) error {
		rw, ok := m.st.(rewrapper)
		if !ok {
			return fmt.Errorf("%w: token set member %q (%T) cannot re-wrap", ErrMechanismInvalid, m.name, m.st)
		}
		kf, err := s.resolve(ctx, m, rf)
		if err != nil {
			s.dropIfMissing(err, m, rf)
			return err
		}
		kt, err := s.resolve(ctx, m, rt)
		if err != nil {
			s.dropIfMissing(err, m, rt)
			return err
		}
		out, err = rw.Rewrap(ctx, kf, kt, blob, spec)
		return err
	})
	return out, err
}

// KeyLabels lists the labels held by every up member.
func (s *Set) KeyLabels(ctx context.Context) ([]string, error) {
	var lists [][]string
	for _, m := range s.members {
		if m.State() != MemberUp {
			continue
		}
		l, err := m.st.KeyLabels(ctx)
		if err != nil {
			if ownError(err) || ctx.Err() != nil || s.confirm(m, err) {
				return nil, fmt.Errorf("token set member %s: %w", m.name, err)
			}
			continue
		}
		lists = append(lists, l)
	}
	if len(lists) == 0 {
		return nil, s.noMember()
	}
	count := map[string]int{}
	for _, l := range lists {
		for _, x := range dedupe(l) {
			count[x]++
		}
	}
	var out []string
	for _, x := range dedupe(lists[0]) {
		if count[x] == len(lists) {
			out = append(out, x)
		}
	}
	return out, nil
}

func dedupe(l []string) []string {
	l = slices.Clone(l)
	slices.Sort(l)
	return slices.Compact(l)
}

// DestroyKey destroys the key on every up member; down members lose it at
// their catch-up. ErrKeyNotFound only when no up member held it.
func (s *Set) DestroyKey(ctx context.Context, ref KeyRef) error {
	r, err := s.asRef(ref)
	if err != nil {
		return err
	}
	s.genMu.RLock()
	defer s.genMu.RUnlock()
	s.noteRecent(r.label, false)
	defer s.forgetRef(r.label)
	found, ups := false, 0
	var firstErr error
	for _, m := range s.members {
		if m.State() != MemberUp {
			continue
		}
		ups++
		k, err := s.resolve(ctx, m, r)
		if err == nil {
			err = m.st.DestroyKey(ctx, k)
			r.forget(m)
		}
		switch {
		case err == nil:
			found = true
		case errors.Is(err, ErrKeyNotFound):
		case !ownError(err) && ctx.Err() == nil && !s.confirm(m, err):
			// down now: its catch-up destroys the key
		case firstErr == nil:
			firstErr = fmt.Errorf("token set member %s: %w", m.name, err)
		}
	}
	switch {
	case firstErr != nil:
		return firstErr
	case ups == 0:
		return s.noMember()
	case !found:
		return fmt.Errorf("%w: no token of the set holds %q", ErrKeyNotFound, r.label)
	}
	return nil
}

func (s *Set) forgetRef(label string) {
	s.refsMu.Lock()
	delete(s.refs, label)
	s.refsMu.Unlock()
}

// Stores lists the members that are token Stores, in the configured order
// (keysvc compares their service keys at start): a LazyStore only once it
// is open (a member opened later is checked by SetConfig.Admit).
func (s *Set) Stores() []*Store {
	var out []*Store
	for _, m := range s.members {
		switch st := m.st.(type) {
		case *Store:
			out = append(out, st)
		case *LazyStore:
			if o := st.Opened(); o != nil {
				out = append(out, o)
			}
		}
	}
	return out
}

// UpMembers lists the members in service now, in the configured order
// (keysvc checks that the next KEK epoch's keys agree on all of them
// before a KEK rotation, and destroys retired KEKs on them at start).
func (s *Set) UpMembers() []Member {
	var out []Member
	for _, m := range s.members {
		if m.State() == MemberUp {
			out = append(out, m.st)
		}
	}
	return out
}

// KeyUsage reads what a key may do, on any up member that can tell
// (*Store's KeyUsage, an optional ability).
func (s *Set) KeyUsage(ctx context.Context, ref KeyRef) (Usage, error) {
	r, err := s.asRef(ref)
	if err != nil {
		return 0, err
	}
	var u Usage
	err = s.dispatch(ctx, func(m *member) error {
		ku, ok := m.st.(interface {
			KeyUsage(context.Context, KeyRef) (Usage, error)
		})
		if !ok {
			return fmt.Errorf("%w: token set member %q (%T) cannot read a key's usage", ErrMechanismInvalid, m.name, m.st)
		}
		k, err := s.resolve(ctx, m, r)
		if err == nil {
			u, err = ku.KeyUsage(ctx, k)
		}
		s.dropIfMissing(err, m, r)
		return err
	})
	return u, err
}

// Random returns n bytes from any up member's RNG.
func (s *Set) Random(ctx context.Context, n int) ([]byte, error) {
	var out []byte
	err := s.dispatch(ctx, func(m *member) error {
		var err error
		out, err = m.st.Random(ctx, n)
		return err
	})
	return out, err
}

// Health asks every up member now (marking down those that do not answer)
// and answers nil while at least one is up.
func (s *Set) Health(ctx context.Context) error {
	ok := false
	for _, m := range s.members {
		if m.State() != MemberUp {
			continue
		}
		if err := s.health(ctx, m); err == nil || ctx.Err() != nil || s.confirm(m, err) {
			ok = true
		}
	}
	if !ok {
		return s.noMember()
	}
	return nil
}

// Stats aggregates the members' sessions (healthy while one is up, PIN
// failures and lock the worst member's) and lists each member.
func (s *Set) Stats() StoreStats {
	var st StoreStats
	for _, m := range s.members {
		ms := m.st.Stats()
		m.mu.Lock()
		mst := MemberStats{Name: m.name, TokenLabel: m.label, Serial: m.serial, State: m.state, Since: m.since, Cause: m.cause,
			SessionsInUse: ms.SessionsInUse, MaxSessions: ms.MaxSessions, PINLocked: ms.PINLocked, Readmissions: m.readmissions}
		m.mu.Unlock()
		st.Members = append(st.Members, mst)
		st.SessionsInUse += ms.SessionsInUse
		st.MaxSessions += ms.MaxSessions
		st.Healthy = st.Healthy || mst.State == MemberUp
		st.PINFailures = max(st.PINFailures, ms.PINFailures)
		st.PINLocked = st.PINLocked || ms.PINLocked
	}
	return st
}

// ---- probing and catch-up ----

func (s *Set) prober() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-s.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			s.Probe(ctx)
			cancel()
		}
	}
}

// Probe checks every member once, as the prober does each ProbeInterval:
// an up member that does not answer is marked down, a down member that
// answers is caught up and re-admitted.
func (s *Set) Probe(ctx context.Context) {
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	// In three steps, because re-initialising a shared module leaves every
	// other pool with session handles of the old generation, which it
	// closes when it next recovers (pkcs11shim's closeAnchor and drainIdle
	// do not look at the generation); SoftHSM2 numbers sessions afresh
	// after C_Initialize, so such a close can end a session another pool
	// just opened, its login anchor included, and that token then looks
	// empty of private keys. So: (1) re-initialise for the down members
	// that need it, (2) let every up member recover (Health), (3) only
	// then open the down members again and catch them up.
	var down []*member
	for _, m := range s.members {
		if m.State() == MemberDown && s.moduleRenewed(m) {
			down = append(down, m)
		}
	}
	for _, m := range s.members {
		if m.State() != MemberUp {
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.health(hctx, m)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.confirm(m, err)
		}
	}
	for _, m := range down {
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.health(hctx, m)
		cancel()
		if err == nil {
			s.readmit(ctx, m)
		} else {
			s.renewModuleNext(m)
		}
	}
}

// moduleRenewed makes sure m's module was re-initialised since m went
// down, re-initialising it if not (rate-limited by the module): SoftHSM2
// keeps a token whose files vanished marked invalid in memory, and only a
// new C_Initialize reads it again when it is back (until then its objects
// answer with their attributes gone, CKA_TRUSTED included). This ends every
// session of the module's other tokens too; their pools recover on their
// next call, and confirm never takes them out for it. A member on no
// module (memtoken) needs nothing.
func (s *Set) moduleRenewed(m *member) bool {
	mm, ok := m.st.(moduleMember)
	if !ok {
		return true
	}
	m.mu.Lock()
	seen := m.downGen
	m.mu.Unlock()
	if mm.moduleGeneration() != seen {
		return true
	}
	if err := mm.reinitializeModule(seen); err != nil {
		return false // rate-limited: the next probe tries again
	}
	return mm.moduleGeneration() != seen
}

// renewModuleNext asks for a module re-initialisation at m's next probe:
// a down member that answers but fails its checks may be a SoftHSM2 token
// that came back behind a stale in-memory copy.
func (s *Set) renewModuleNext(m *member) {
	if mm, ok := m.st.(moduleMember); ok {
		g := mm.moduleGeneration()
		m.mu.Lock()
		m.downGen = g
		m.mu.Unlock()
	}
}

// Sync brings every up member up to date with Managed (copies what it
// lacks, destroys "kw/" keys Managed no longer lists), for a start after
// some tokens missed changes while keysvc was stopped.
func (s *Set) Sync(ctx context.Context) error {
	if !s.replicate {
		return nil
	}
	s.genMu.Lock()
	defer s.genMu.Unlock()
	for _, m := range s.members {
		if m.State() != MemberUp {
			continue
		}
		copied, destroyed, err := s.catchUp(ctx, m)
		if err != nil {
			return fmt.Errorf("token set: bring member %s up to date: %w", m.name, err)
		}
		if copied+destroyed > 0 {
			s.log.Warn("token set: member brought up to date at start", "member", m.name, "token", m.label, "serial", m.serial,
				"keys_copied", copied, "keys_destroyed", destroyed)
			ev := s.event(SetMemberSynced, m)
			ev.Copied, ev.Destroyed = copied, destroyed
			s.emit(ev)
		}
	}
	return nil
}

// readmit catches m up and puts it back in service.
func (s *Set) readmit(ctx context.Context, m *member) {
	m.mu.Lock()
	downSince, cause := m.since, m.cause
	m.state = MemberCatchingUp
	m.mu.Unlock()
	fail := func(err error) {
		m.mu.Lock()
		m.state, m.cause = MemberDown, err.Error()
		m.mu.Unlock()
		s.renewModuleNext(m)
		s.log.Error("token set: member answers again but cannot be re-admitted yet", "member", m.name, "token", m.label, "serial", m.serial, "err", err)
	}
	if s.replicate {
		err := replicable(ctx, m)
		if err == nil {
			err = s.sameReplicationKey(ctx, m)
		}
		if err != nil {
			fail(err)
			return
		}
	}
	if s.cfg.Admit != nil { // before any key is copied into it: a token from another ceremony gets nothing
		if err := s.cfg.Admit(ctx, m.st); err != nil {
			fail(err)
			return
		}
	}
	c1, d1, err := s.catchUp(ctx, m)
	if err != nil {
		fail(err)
		return
	}
	s.genMu.Lock()
	c2, d2, err := s.catchUp(ctx, m) // what changed during the first pass
	if err != nil {
		s.genMu.Unlock()
		fail(err)
		return
	}
	m.mu.Lock()
	m.state, m.since, m.cause = MemberUp, time.Now(), ""
	m.readmissions++
	m.epoch.Add(1)
	m.mu.Unlock()
	s.genMu.Unlock()
	downFor := time.Since(downSince)
	s.log.Info("token set: member UP again (re-admitted after catch-up)", "member", m.name, "token", m.label, "serial", m.serial,
		"down_for", downFor.Round(time.Millisecond).String(), "down_cause", cause, "keys_copied", c1+c2, "keys_destroyed", d1+d2)
	ev := s.event(SetMemberReadmitted, m)
	ev.DownFor, ev.Copied, ev.Destroyed, ev.Cause = downFor, c1+c2, d1+d2, cause
	s.emit(ev)
}

// catchUp copies to m every wanted label it lacks and destroys every "kw/"
// key it holds that is no longer wanted. Wanted: Managed, plus labels the
// set made lately, minus labels it destroyed lately. Labels the set made
// lately that m holds are compared by check value and replaced when they
// differ (a generation retried elsewhere after m failed mid-way).
func (s *Set) catchUp(ctx context.Context, m *member) (copied, destroyed int, err error) {
	if !s.replicate {
		return 0, 0, nil
	}
	if s.cfg.Managed == nil {
		return 0, 0, errors.New("token set: no Managed function: cannot tell which keys the member must hold")
	}
	managed, err := s.cfg.Managed(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("list the keys every token must hold: %w", err)
	}
	fresh, gone := s.recent()
	want := map[string]bool{}
	for _, l := range managed {
		want[l] = true
	}
	for l := range fresh {
		want[l] = true
	}
	for l := range gone {
		delete(want, l)
	}
	labels, err := m.st.KeyLabels(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("list its keys: %w", err)
	}
	have := map[string]bool{}
	for _, l := range labels {
		have[l] = true
	}
	if _, real := m.st.(moduleMember); real && !have[ReplicationKeyLabel] {
		// The officers' replication key is on every member and never
		// destroyed: a listing without it is a token whose objects cannot
		// be read yet (SoftHSM2 right after its files came back), and
		// copying into it could make a second object under a label it
		// already holds.
		return 0, 0, fmt.Errorf("its key list lacks the replication key %s: its objects are not readable yet", ReplicationKeyLabel)
	}
	for l := range want {
		if have[l] {
			if !fresh[l] {
				continue
			}
			same, err := s.sameKey(ctx, m, l)
			if err != nil {
				return copied, destroyed, fmt.Errorf("compare %s with the other tokens: %w", l, err)
			}
			if same {
				continue
			}
			if err := s.destroyOn(ctx, m, l); err != nil {
				return copied, destroyed, err
			}
		}
		ok, err := s.copyTo(ctx, m, l)
		if err != nil {
			return copied, destroyed, fmt.Errorf("copy %s: %w", l, err)
		}
		if ok {
			copied++
		}
	}
	for l := range have {
		if strings.HasPrefix(l, "kw/") && !want[l] {
			if err := s.destroyOn(ctx, m, l); err != nil {
				return copied, destroyed, err
			}
			destroyed++
		}
	}
	return copied, destroyed, nil
}

// copyTo copies label from an up member to m; false when no up member
// holds it.
func (s *Set) copyTo(ctx context.Context, m *member, label string) (bool, error) {
	for _, src := range s.members {
		if src == m || src.State() != MemberUp {
			continue
		}
		k, err := src.st.FindKey(ctx, label)
		if errors.Is(err, ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("find it on %s: %w", src.name, err)
		}
		rep, err := src.st.(replicator).ExportReplica(ctx, k)
		if err != nil {
			return false, fmt.Errorf("export it from %s: %w", src.name, err)
		}
		if _, err := m.st.(replicator).ImportReplica(ctx, rep); err != nil {
			return false, fmt.Errorf("import it: %w", err)
		}
		return true, nil
	}
	s.log.Warn("token set: a key every token should hold is on no up token; nothing to copy", "member", m.name, "label", label)
	return false, nil
}

// sameKey reports whether m's key under label is the up members' (check
// values agree); true when no up member holds it to compare with. Any
// failure to compute a check value is an error, never "different": only a
// proven difference replaces m's key.
func (s *Set) sameKey(ctx context.Context, m *member, label string) (bool, error) {
	mine, err := m.st.FindKey(ctx, label)
	if err != nil {
		return false, err
	}
	_, cv, err := m.st.CheckValue(ctx, mine)
	if err != nil {
		return false, err
	}
	for _, o := range s.members {
		if o == m || o.State() != MemberUp {
			continue
		}
		k, err := o.st.FindKey(ctx, label)
		if errors.Is(err, ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("on %s: %w", o.name, err)
		}
		_, ov, err := o.st.CheckValue(ctx, k)
		if err != nil {
			return false, fmt.Errorf("on %s: %w", o.name, err)
		}
		return string(ov) == string(cv), nil
	}
	return true, nil
}

func (s *Set) destroyOn(ctx context.Context, m *member, label string) error {
	k, err := m.st.FindKey(ctx, label)
	if errors.Is(err, ErrKeyNotFound) {
		return nil
	}
	if err == nil {
		err = m.st.DestroyKey(ctx, k)
	}
	if err != nil && !errors.Is(err, ErrKeyNotFound) {
		return fmt.Errorf("destroy %s: %w", label, err)
	}
	return nil
}

// noteRecent remembers a label the set made (made) or destroyed.
func (s *Set) noteRecent(label string, made bool) {
	s.recentMu.Lock()
	defer s.recentMu.Unlock()
	now := time.Now()
	if made {
		s.fresh[label] = now
		delete(s.gone, label)
	} else {
		s.gone[label] = now
		delete(s.fresh, label)
	}
}

// recent returns the labels made and destroyed within recentTTL.
func (s *Set) recent() (fresh, gone map[string]bool) {
	s.recentMu.Lock()
	defer s.recentMu.Unlock()
	fresh, gone = map[string]bool{}, map[string]bool{}
	cut := time.Now().Add(-recentTTL)
	for l, t := range s.fresh {
		if t.Before(cut) {
			delete(s.fresh, l)
		} else {
			fresh[l] = true
		}
	}
	for l, t := range s.gone {
		if t.Before(cut) {
			delete(s.gone, l)
		} else {
			gone[l] = true
		}
	}
	return fresh, gone
}
