package keysvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/smcrypto"
)

// KEK rotation (issue 15 item 2): StartKEKRotation moves keysvc from KEK
// epoch n to n+1.
//
//  1. Start (an admin call; `ceremony kek-rotate`): epoch n+1's KEKs must
//     be in the token already — security officers generate them with
//     `ceremony keygen` as keysvc-kek-e<n+1> (AES-256, wrap/unwrap) and
//     keysvc-sm-kek-e<n+1> (AES-256, encrypt/decrypt), destroyable, and
//     back them up; Config.CreateKEKEpochs lets a development keysvc
//     create them itself. keysvc checks that they work and differ from
//     epoch n's, records them as service keys and the rotation as started
//     (one transaction with the audit record), and from then on seals new
//     blobs under n+1.
//  2. Re-wrap: a background worker moves every live blob of epoch n to
//     n+1, key by key: wrapped versions by KeyStore.Rewrap (unwrapped and
//     wrapped again inside the token, never in clear outside it), SM
//     material opened under the old SM KEK and sealed under the new. Each
//     key's update is one store transaction under the key's lifecycle
//     lock, and replaces a blob only if it is still the one re-wrapped: a
//     concurrent rotate, disable or destroy is kept. keysvc serves
//     throughout; a request that read a key just before its update finds
//     the new blob (freshVersion). Progress is in Stats (metrics) and in
//     the log every Config.KEKProgressEvery keys.
//  3. Retire: when a pass finds nothing live left under epoch n, the
//     epoch is marked retiring (its KEKs leave the service-key record),
//     keysvc stops holding its KEKs once every operation still using them
//     has finished, and destroys them in the token (KeyStore.DestroyKey;
//     on a token set, in every member that is up — a member that is down
//     loses them before it is re-admitted, kekmembers.go), one audit
//     record each; then the rotation is recorded finished.
//
// The work is "live blobs whose epoch is below the target", read from the
// store on every pass, so a restart simply continues: New resumes a
// rotation the store records as running (rewrapping or retiring). A key
// whose blob cannot be re-wrapped (counted in Failed, named in LastError)
// is retried on the next pass; the rotation does not finish while it
// remains. After retirement a blob of the old epoch — from a backup of the
// store, freed pages of the bbolt file, or a version destroyed before —
// opens under no KEK the token holds.

// Defaults of the rotation's Config fields.
const (
	DefaultKEKRewrapWorkers = 4
	DefaultKEKProgressEvery = 1000
)

// kekRotation is the worker's state in this process.
type kekRotation struct {
	startMu sync.Mutex // one start at a time

	mu      sync.Mutex // guards the fields below
	running bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
	lastErr string
	began   time.Time // of this process's first pass

	processed atomic.Int64 // keys re-wrapped by this process in this rotation
	total     atomic.Int64 // processed + keys left at the start of the last pass
	failed    atomic.Int64 // keys that failed in the last pass
}

// KEKRotation reports the KEK epochs and the progress of a rotation
// (admin callers only).
func (s *Service) KEKRotation(_ context.Context, c Caller) (wire.KEKRotationStatus, error) {
	if !c.Admin {
		return wire.KEKRotationStatus{}, s.finish(c, "", 0, "kek_rotation_status", errKEKAdmin(c))
	}
	return s.kekStatus(), nil
}

func errKEKAdmin(c Caller) error {
	return fmt.Errorf("%w: client %q may not rotate or read the KEK epochs: admin clients only", wire.ErrForbidden, c.Name)
}

func (s *Service) epochsNow() KEKEpochs {
	s.kekst.mu.RLock()
	defer s.kekst.mu.RUnlock()
	return s.kekst.epochs.clone()
}

func (s *Service) kekStatus() wire.KEKRotationStatus {
	e := s.epochsNow()
	st := wire.KEKRotationStatus{Current: e.Current, Target: e.Target, Retiring: e.Retiring, State: e.state(),
		StartedAt: e.StartedAt, StartedBy: e.StartedBy, FinishedAt: e.FinishedAt, Retired: e.Retired, DestroyedKEKs: e.DestroyedKEKs}
	st.Done, st.Total = int(s.rot.processed.Load()), int(s.rot.total.Load()) // after the end: the last rotation's, in this process
	if st.State != wire.KEKIdle {
		st.Failed = int(s.rot.failed.Load())
		s.rot.mu.Lock()
		st.LastError = s.rot.lastErr
		s.rot.mu.Unlock()
	}
	return st
}

// StartKEKRotation starts the rotation to the next KEK epoch (admin
// callers only) and returns its status; the work goes on in the
// background. A rotation already running is wire.ErrIllegalTransition, and
// so is a next epoch whose KEKs the token lacks (named in the message).
func (s *Service) StartKEKRotation(ctx context.Context, c Caller) (wire.KEKRotationStatus, error) {
	if !c.Admin {
		return wire.KEKRotationStatus{}, s.finish(c, "", 0, "kek_rotation_start", errKEKAdmin(c))
	}
	if err := s.startKEKRotation(ctx, c); err != nil {
		return wire.KEKRotationStatus{}, s.finish(c, "", 0, "kek_rotation_start", err)
	}
	return s.kekStatus(), nil
}

func (s *Service) startKEKRotation(ctx context.Context, c Caller) error {
	s.rot.startMu.Lock()
	defer s.rot.startMu.Unlock()
	e := s.epochsNow()
	if e.state() != wire.KEKIdle {
		return fmt.Errorf("%w: a KEK rotation is already %s (epoch %d to %d); follow it with GET /v1/admin/kek-rotation", wire.ErrIllegalTransition, e.state(), e.Current, max(e.Target, e.Current))
	}
	n := e.Current + 1
	p, err := s.nextKEKs(ctx, n)
	if err != nil {
		return err
	}
	if err := s.checkNextKEKsAgree(ctx, n); err != nil { // on a token set: the same KEKs in every token that is up
		return err
	}
	if err := s.checkNextKEKs(ctx, e.Current, p); err != nil {
		return err
	}
	sk, err := s.store.ServiceKeys()
	if err != nil {
		return err
	}
	sk = cloneServiceKeys(sk)
	var checks []string
	for _, ks := range epochKEKSpecs(n) {
		ref := p.wrap
		if ks.Label == SMKEKLabelFor(n) {
			ref = p.sm
		}
		cur, fault, err := serviceKeyIdentity(ctx, s.keys, ks, ref)
		if err != nil {
			return err
		}
		if fault != "" {
			return fmt.Errorf("%w: %s: %s", wire.ErrIllegalTransition, ks.Label, fault)
		}
		sk.Keys = slices.DeleteFunc(sk.Keys, func(k ServiceKey) bool { return k.Label == ks.Label })
		sk.Keys = append(sk.Keys, cur)
		checks = append(checks, fmt.Sprintf("%s (CKA_ID %x, %s %s…)", ks.Label, cur.ID, cur.CheckMethod, short(cur.Check)))
	}
	now := s.now()
	next := e.clone()
	next.Target, next.StartedAt, next.StartedBy, next.FinishedAt, next.DestroyedKEKs = n, &now, c.Name, nil, nil
	rec := s.record(c, "", 0, "kek_rotation_start", nil)
	rec.Detail = fmt.Sprintf("epoch %d to %d; new KEKs %s", e.Current, n, strings.Join(checks, ", "))

	// Switch the sealing epoch once no creation that sealed under the old
	// one is still unstored (kekState).
	s.kekst.sealMu.Lock()
	if err := s.store.SetKEKEpochs(&next, sk, rec); err != nil {
		s.kekst.sealMu.Unlock()
		return err
	}
	s.kekst.mu.Lock()
	s.kekst.keks[n] = p
	s.kekst.epochs = next
	s.kekst.mu.Unlock()
	s.kekst.sealMu.Unlock()

	s.rot.processed.Store(0)
	s.rot.total.Store(0)
	s.rot.failed.Store(0)
	s.rot.mu.Lock()
	s.rot.lastErr, s.rot.began = "", time.Time{}
	s.rot.mu.Unlock()
	s.log.Info("KEK rotation started", "from_epoch", e.Current, "to_epoch", n, "client", c.Name)
	s.startKEKWorker()
	return nil
}

// nextKEKs finds epoch n's KEKs in the token, or creates them when
// Config.CreateKEKEpochs allows it (development and tests).
func (s *Service) nextKEKs(ctx context.Context, n int) (kekPair, error) {
	specs := []token.KeySpec{
		{Type: token.KeyAES256, Label: KEKLabelFor(n), Usage: token.UsageWrap},
		{Type: token.KeyAES256, Label: SMKEKLabelFor(n), Usage: token.UsageEncrypt},
	}
	var missing []string
	for _, ks := range specs {
		_, err := s.keys.FindKey(ctx, ks.Label)
		switch {
		case errors.Is(err, token.ErrKeyNotFound):
			missing = append(missing, ks.Label)
		case err != nil:
			return kekPair{}, fmt.Errorf("keysvc: KEK %s: %w", ks.Label, tokenErr(err))
		}
	}
	if len(missing) > 0 && !s.cfg.CreateKEKEpochs {
		return kekPair{}, fmt.Errorf("%w: the token holds no %s: security officers generate epoch %d's KEKs with `ceremony keygen` (%s: aes-256, usage wrap and unwrap; %s: aes-256, usage encrypt and decrypt; both backup: true and destroyable: true) and restore them into every token of keysvc, then start the rotation again",
			wire.ErrIllegalTransition, strings.Join(missing, " and "), n, KEKLabelFor(n), SMKEKLabelFor(n))
	}
	for _, ks := range specs {
		if !slices.Contains(missing, ks.Label) {
			continue
		}
		s.log.Info("creating the next epoch's KEK in the token (create_kek_epochs)", "label", ks.Label)
		if _, err := s.keys.GenerateKey(ctx, ks); err != nil {
			return kekPair{}, fmt.Errorf("keysvc: create KEK %s: %w", ks.Label, tokenErr(err))
		}
	}
	return s.findKEKPair(ctx, n)
}

// checkNextKEKs proves the new KEKs do their jobs (wrap and unwrap a
// probe key; seal and open a probe) and are not the old epoch's keys
// under new labels (their check values differ).
func (s *Service) checkNextKEKs(ctx context.Context, old int, p kekPair) error {
	probe := token.KeySpec{Type: token.KeyAES256, Label: "keysvc-kek-probe", Usage: token.UsageEncrypt}
	blob, _, err := s.keys.GenerateWrapped(ctx, p.wrap, probe)
	if err == nil {
		err = s.keys.Use(ctx, token.Material{KEK: p.wrap, Wrapped: blob, Spec: probe}, func(u token.KeyUse) error {
			_, err := u.EncryptGCM([]byte("probe"), nil)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("%w: %s does not wrap and unwrap keys (it must be AES-256 with wrap and unwrap usage): %w", wire.ErrIllegalTransition, p.wrap.Label(), tokenErr(err))
	}
	aad := []byte("keyward kek probe")
	sealed, err := s.sealGCM(ctx, p.sm, []byte("probe"), aad)
	if err == nil {
		_, err = s.openGCM(ctx, p.sm, sealed, aad)
	}
	if err != nil {
		return fmt.Errorf("%w: %s does not encrypt and decrypt (it must be AES-256 with encrypt and decrypt usage): %w", wire.ErrIllegalTransition, p.sm.Label(), tokenErr(err))
	}
	s.kekst.mu.RLock()
	cur := s.kekst.keks[old]
	s.kekst.mu.RUnlock()
	for _, pair := range [][2]token.KeyRef{{cur.wrap, p.wrap}, {cur.sm, p.sm}} {
		_, a, err := s.keys.CheckValue(ctx, pair[0])
		if err != nil {
			return tokenErr(err)
		}
		_, b, err := s.keys.CheckValue(ctx, pair[1])
		if err != nil {
			return tokenErr(err)
		}
		if bytes.Equal(a, b) {
			return fmt.Errorf("%w: %s is the same key as %s (equal check values): a rotation needs a new key", wire.ErrIllegalTransition, pair[1].Label(), pair[0].Label())
		}
	}
	return nil
}

func cloneServiceKeys(r *ServiceKeyRecord) *ServiceKeyRecord {
	if r == nil {
		return &ServiceKeyRecord{}
	}
	c := *r
	c.Keys = slices.Clone(r.Keys)
	return &c
}

// resumeKEKRotation starts the worker at New when the store records a
// rotation in progress.
func (s *Service) resumeKEKRotation() {
	e := s.epochsNow()
	if e.state() == wire.KEKIdle {
		return
	}
	s.log.Info("resuming the KEK rotation recorded in the store", "state", e.state(), "current", e.Current, "target", e.Target, "retiring", e.Retiring)
	s.startKEKWorker()
}

// startKEKWorker runs the worker unless it runs already (or the Service
// is closed).
func (s *Service) startKEKWorker() {
	s.rot.mu.Lock()
	defer s.rot.mu.Unlock()
	if s.rot.running || s.rot.closed {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.rot.running, s.rot.cancel, s.rot.done = true, cancel, done
	go func() {
		defer close(done)
		s.kekWorker(ctx)
	}()
}

// stopKEKRotation stops the worker and waits for it (Close); a later
// start resumes the rotation from the store.
func (s *Service) stopKEKRotation() {
	s.rot.mu.Lock()
	s.rot.closed = true
	cancel, done := s.rot.cancel, s.rot.done
	s.rot.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// kekWorker drives the rotation to its end: re-wrap passes until one finds
// nothing left, then retirement. Failures are logged and retried with a
// growing pause (at most a minute).
func (s *Service) kekWorker(ctx context.Context) {
	pause := time.Second
	for ctx.Err() == nil {
		var err error
		e := s.epochsNow()
		switch e.state() {
		case wire.KEKIdle:
			s.rot.mu.Lock()
			if cur := s.epochsNow(); cur.state() == wire.KEKIdle { // else a start came in meanwhile: go on
				s.rot.running = false
				s.rot.mu.Unlock()
				return
			}
			s.rot.mu.Unlock()
			continue
		case wire.KEKRewrapping:
			var left int
			if left, err = s.rewrapPass(ctx, e.Current, e.Target); err == nil && left == 0 {
				err = s.beginRetire(e)
			}
		case wire.KEKRetiring:
			err = s.finishRetire(ctx, e)
		}
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			pause = time.Second
			continue
		}
		s.rot.mu.Lock()
		s.rot.lastErr = err.Error()
		s.rot.mu.Unlock()
		s.log.Error("KEK rotation: retrying", "pause", pause, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Minute)
	}
	s.rot.mu.Lock()
	s.rot.running = false
	s.rot.mu.Unlock()
}

// needsRewrap says whether k holds a live blob under an epoch below target.
func needsRewrap(k *Key, target int) bool {
	if k.Protection != wire.ProtectionWrapped {
		return false
	}
	for i := range k.Versions {
		if v := &k.Versions[i]; len(v.Wrapped) > 0 && v.epoch() < target {
			return true
		}
	}
	return false
}

// rewrapPass re-wraps every key found holding a blob under an epoch below
// target, on Config.KEKRewrapWorkers goroutines. It returns how many keys
// it found to do; an error when any failed (they are retried next pass).
func (s *Service) rewrapPass(ctx context.Context, from, target int) (int, error) {
	var names []string
	if err := s.eachKey(func(k *Key) {
		if needsRewrap(k, target) {
			names = append(names, k.Name)
		}
	}); err != nil {
		return 0, err
	}
	if len(names) == 0 {
		return 0, nil
	}
	s.rot.total.Store(s.rot.processed.Load() + int64(len(names)))
	s.rot.failed.Store(0)
	s.rot.mu.Lock()
	if s.rot.began.IsZero() {
		s.rot.began = time.Now()
	}
	began := s.rot.began
	s.rot.mu.Unlock()
	s.log.Info("KEK rotation pass", "from_epoch", from, "to_epoch", target, "keys", len(names))

	work := make(chan string)
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	every := int64(s.cfg.KEKProgressEvery)
	for range s.cfg.KEKRewrapWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				if err := s.rewrapKey(ctx, name, target); err != nil {
					if ctx.Err() != nil {
						continue
					}
					s.rot.failed.Add(1)
					s.log.Error("KEK rotation: a key could not be re-wrapped; it is retried in the next pass", "key", name, "err", err)
					errMu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("key %q: %w", name, err)
					}
					errMu.Unlock()
					continue
				}
				if n := s.rot.processed.Add(1); n%every == 0 {
					secs := time.Since(began).Seconds()
					s.log.Info("KEK rotation progress", "done", n, "total", s.rot.total.Load(), "to_epoch", target,
						"keys_per_second", strconv.FormatFloat(float64(n)/max(secs, 1e-9), 'f', 0, 64))
				}
			}
		}()
	}
feed:
	for _, name := range names {
		select {
		case work <- name:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if f := s.rot.failed.Load(); f > 0 {
		return len(names), fmt.Errorf("keysvc: %d of %d keys could not be re-wrapped (first: %w)", f, len(names), firstErr)
	}
	return len(names), ctx.Err()
}

// rewrapped is one version's new blob.
type rewrapped struct {
	version  int
	old, new []byte
}

// rewrapKey moves key name's live blobs under epochs below target to
// target, in one store update under the key's lifecycle lock; a blob
// changed or dropped meanwhile is left as the store has it.
func (s *Service) rewrapKey(ctx context.Context, name string, target int) error {
	defer s.lock(name)()
	k, err := s.store.GetKey(name)
	if errors.Is(err, wire.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var changes []rewrapped
	for i := range k.Versions {
		v := &k.Versions[i]
		if k.Protection != wire.ProtectionWrapped || len(v.Wrapped) == 0 || v.epoch() >= target {
			continue
		}
		blob, err := s.rewrapBlob(ctx, k, v, target)
		if err != nil {
			return fmt.Errorf("version %d (epoch %d): %w", v.Version, v.epoch(), err)
		}
		changes = append(changes, rewrapped{version: v.Version, old: v.Wrapped, new: blob})
	}
	if len(changes) == 0 {
		return nil
	}
	vs := make([]string, len(changes))
	for i, c := range changes {
		vs[i] = "v" + strconv.Itoa(c.version)
	}
	rec := &audit.Record{Time: s.now(), Client: "keysvc", Key: name, Op: "kek_rewrap", Result: "ok",
		Detail: fmt.Sprintf("to epoch %d: %s", target, strings.Join(vs, ","))}
	_, err = s.updateKey(name, func(k *Key) error {
		for _, c := range changes {
			if v := k.Version(c.version); v != nil && bytes.Equal(v.Wrapped, c.old) {
				v.Wrapped, v.KEKEpoch = c.new, target
			}
		}
		return nil
	}, rec)
	return err
}

// rewrapBlob is v's blob moved from its epoch's KEK to target's.
func (s *Service) rewrapBlob(ctx context.Context, k *Key, v *Version, target int) ([]byte, error) {
	s.kekst.mu.RLock()
	defer s.kekst.mu.RUnlock()
	from, ok := s.kekst.keks[v.epoch()]
	to, ok2 := s.kekst.keks[target]
	if !ok || !ok2 {
		return nil, fmt.Errorf("%w: %w: keysvc holds the KEKs of epochs %v only", wire.ErrVersionNotUsable, errEpochGone, slices.Sorted(mapKeys(s.kekst.keks)))
	}
	if isSM(k.Algorithm) {
		aad := smAAD(k, v.Version)
		material, err := s.openGCM(ctx, from.sm, v.Wrapped, aad)
		if err != nil {
			return nil, tokenErr(err)
		}
		defer smcrypto.Wipe(material)
		out, err := s.sealGCM(ctx, to.sm, material, aad)
		return out, tokenErr(err)
	}
	out, err := s.keys.Rewrap(ctx, from.wrap, to.wrap, v.Wrapped, spec(k, v.Version))
	return out, tokenErr(err)
}

func mapKeys(m map[int]kekPair) func(func(int) bool) {
	return func(yield func(int) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// beginRetire records that nothing live remains under e.Current: the epoch
// is retiring and its KEKs leave the service-key record, in one
// transaction with the audit record; then keysvc stops holding them once
// every operation still using them has finished.
func (s *Service) beginRetire(e KEKEpochs) error {
	old, n := e.Current, e.Target
	sk, err := s.store.ServiceKeys()
	if err != nil {
		return err
	}
	sk = cloneServiceKeys(sk)
	sk.Keys = slices.DeleteFunc(sk.Keys, func(k ServiceKey) bool {
		ep, _, ok := kekLabelEpoch(k.Label)
		return ok && ep == old
	})
	next := e.clone()
	next.Current, next.Target, next.Retiring = n, 0, old
	rec := &audit.Record{Time: s.now(), Client: "keysvc", Op: "kek_rotation_rewrapped", Result: "ok",
		Detail: fmt.Sprintf("no live blob remains under epoch %d (%d keys re-wrapped to epoch %d by this process); retiring %s and %s", old, s.rot.processed.Load(), n, KEKLabelFor(old), SMKEKLabelFor(old))}
	if err := s.store.SetKEKEpochs(&next, sk, rec); err != nil {
		return err
	}
	s.kekst.mu.Lock() // waits for every operation still using the old KEKs
	delete(s.kekst.keks, old)
	s.kekst.epochs = next
	s.kekst.mu.Unlock()
	s.log.Info("KEK rotation: every live blob re-wrapped; destroying the old epoch's KEKs", "epoch", old, "keys", s.rot.processed.Load())
	return nil
}

// finishRetire destroys the retiring epoch's KEKs in the token, one audit
// record each (a KEK already gone — destroyed before a restart — is
// recorded as such), and records the rotation finished.
func (s *Service) finishRetire(ctx context.Context, e KEKEpochs) error {
	old := e.Retiring
	var destroyed []string
	for _, label := range []string{KEKLabelFor(old), SMKEKLabelFor(old)} {
		detail := "destroyed in the token"
		ref, err := s.keys.FindKey(ctx, label)
		switch {
		case errors.Is(err, token.ErrKeyNotFound):
			detail = "already gone from the token (destroyed before a restart)"
		case err != nil:
			return fmt.Errorf("keysvc: find retiring KEK %s: %w", label, tokenErr(err))
		default:
			if err := s.keys.DestroyKey(ctx, ref); err != nil && !errors.Is(err, token.ErrKeyNotFound) {
				return fmt.Errorf("keysvc: the token refused to destroy the retiring KEK %s (a key made not destroyable — CKA_DESTROYABLE false — can only be removed by a security officer; make the next epoch's KEKs with destroyable: true): %w", label, tokenErr(err))
			}
		}
		if err := s.audit(&audit.Record{Time: s.now(), Client: "keysvc", Op: "kek_destroy", Result: "ok",
			Detail: fmt.Sprintf("%s (epoch %d) %s", label, old, detail)}); err != nil {
			return err
		}
		s.log.Info("KEK rotation: old KEK destroyed", "label", label, "epoch", old, "detail", detail)
		destroyed = append(destroyed, label)
	}
	now := s.now()
	next := e.clone()
	next.Retiring, next.FinishedAt, next.DestroyedKEKs = 0, &now, destroyed
	if !slices.Contains(next.Retired, old) {
		next.Retired = append(next.Retired, old)
	}
	rec := &audit.Record{Time: now, Client: "keysvc", Op: "kek_rotation_finish", Result: "ok",
		Detail: fmt.Sprintf("epoch %d in service; epoch %d retired (%s destroyed)", next.Current, old, strings.Join(destroyed, ", "))}
	if err := s.store.SetKEKEpochs(&next, nil, rec); err != nil {
		return err
	}
	s.kekst.mu.Lock()
	s.kekst.epochs = next
	s.kekst.mu.Unlock()
	s.rot.mu.Lock()
	s.rot.lastErr = ""
	s.rot.mu.Unlock()
	s.log.Info("KEK rotation finished", "epoch", next.Current, "retired", old, "destroyed", strings.Join(destroyed, ","), "keys", s.rot.processed.Load())
	return nil
}

// kekStats fills the KEK fields of Stats.
func (s *Service) kekStats(st *Stats) {
	e := s.epochsNow()
	st.KEKEpoch = e.Current
	if e.state() != wire.KEKIdle {
		st.KEKRotating = true
		st.KEKRotationDone, st.KEKRotationTotal = int(s.rot.processed.Load()), int(s.rot.total.Load())
	}
}
