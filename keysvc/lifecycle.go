package keysvc

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
)

var keyNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// purposeAlgorithms says which algorithms each purpose accepts.
var purposeAlgorithms = map[wire.Purpose][]wire.Algorithm{
	wire.PurposeSign:    {wire.AlgECP256, wire.AlgECP384, wire.AlgRSA2048, wire.AlgRSA3072, wire.AlgSM2},
	wire.PurposeEncrypt: {wire.AlgAES256, wire.AlgRSA2048, wire.AlgRSA3072, wire.AlgSM2, wire.AlgSM4},
	wire.PurposeWrap:    {wire.AlgAES256, wire.AlgSM4},
	wire.PurposeMAC:     {wire.AlgHMACSM3},
}

func validateCreate(r wire.CreateKeyRequest) error {
	if !keyNameRE.MatchString(r.Name) {
		return fmt.Errorf("%w: key name %q must be 1-64 of a-z 0-9 . _ - and start with a letter or digit", wire.ErrInvalidArgument, r.Name)
	}
	algs, ok := purposeAlgorithms[r.Purpose]
	if !ok {
		return fmt.Errorf("%w: purpose must be sign, encrypt, wrap or mac", wire.ErrInvalidArgument)
	}
	found := false
	for _, a := range algs {
		found = found || a == r.Algorithm
	}
	if !found {
		return fmt.Errorf("%w: algorithm %q is not available for purpose %s (choose one of %v)", wire.ErrInvalidArgument, r.Algorithm, r.Purpose, algs)
	}
	if r.Protection != wire.ProtectionHSM && r.Protection != wire.ProtectionWrapped && r.Protection != wire.ProtectionExternal && r.Protection != wire.ProtectionTPM {
		return fmt.Errorf("%w: protection must be hsm, wrapped, external or tpm", wire.ErrInvalidArgument)
	}
	if r.Protection == wire.ProtectionTPM && (r.Purpose != wire.PurposeSign || r.Algorithm != wire.AlgECP256) {
		return fmt.Errorf("%w: tpm keys are ec-p256 keys for purpose sign", wire.ErrInvalidArgument)
	}
	if (r.Protection == wire.ProtectionExternal) != (r.PublicKey != "") {
		return fmt.Errorf("%w: public_key (PEM) is required with protection external, and only there", wire.ErrInvalidArgument)
	}
	if r.Protection == wire.ProtectionExternal && (r.Purpose != wire.PurposeSign || r.Confirm != "" || r.RotationPeriod != 0) {
		return fmt.Errorf("%w: external keys are for purpose sign (verify only), without confirm or rotation_period", wire.ErrInvalidArgument)
	}
	if isSM(r.Algorithm) && r.Protection == wire.ProtectionHSM {
		return fmt.Errorf("%w: %s keys need protection wrapped: this token has no SM mechanisms, so keysvc keeps SM key material sealed under a token-held KEK", wire.ErrInvalidArgument, r.Algorithm)
	}
	if r.SM2UID != "" && (r.Algorithm != wire.AlgSM2 || len(r.SM2UID) > 64 || !printableASCII(r.SM2UID)) {
		return fmt.Errorf("%w: sm2_uid is for sm2 keys: 1-64 printable ASCII characters", wire.ErrInvalidArgument)
	}
	if r.Confirm != "" && (r.Confirm != wire.ConfirmRequired || r.Purpose != wire.PurposeSign) {
		return fmt.Errorf("%w: confirm must be \"required\" (or absent), and only on keys for purpose sign", wire.ErrInvalidArgument)
	}
	if r.RotationPeriod != 0 && time.Duration(r.RotationPeriod) < time.Hour {
		return fmt.Errorf("%w: rotation_period must be at least 1h", wire.ErrInvalidArgument)
	}
	for _, g := range r.Policy.Grants {
		if g.Client == "" {
			return fmt.Errorf("%w: every policy grant needs a client", wire.ErrInvalidArgument)
		}
		for _, op := range g.Ops {
			switch op {
			case wire.OpSign, wire.OpVerify, wire.OpEncrypt, wire.OpDecrypt, wire.OpDataKey, wire.OpPublic, wire.OpRead, wire.OpRotate, wire.OpManage, wire.OpMAC:
			default:
				return fmt.Errorf("%w: unknown operation %q in the policy for %q", wire.ErrInvalidArgument, op, g.Client)
			}
		}
	}
	return nil
}

// CreateKey makes a key with version 1, its material generated in the
// token. Only admin clients create keys.
func (s *Service) CreateKey(ctx context.Context, c Caller, req wire.CreateKeyRequest) (*Key, error) {
	k, err := s.createKey(ctx, c, req)
	if err != nil {
		return nil, s.finish(c, req.Name, 0, "create", err)
	}
	return k, nil
}

func (s *Service) createKey(ctx context.Context, c Caller, req wire.CreateKeyRequest) (*Key, error) {
	if err := validateCreate(req); err != nil {
		return nil, err
	}
	if !c.Admin {
		if err := c.mayEnrol(req); err != nil {
			return nil, err
		}
	}
	if req.Protection == wire.ProtectionTPM && s.cfg.TPM == nil {
		return nil, fmt.Errorf("%w: this keysvc has no TPM (set tpm in its configuration) for protection tpm", wire.ErrInvalidArgument)
	}
	defer s.lock(req.Name)()
	defer s.holdSealEpoch()() // until the version is stored (kekepoch.go)
	if _, err := s.store.GetKey(req.Name); err == nil {
		return nil, fmt.Errorf("%w: %q", wire.ErrKeyExists, req.Name)
	}
	now := s.now()
	k := &Key{Name: req.Name, Purpose: req.Purpose, Algorithm: req.Algorithm, Protection: req.Protection,
		Primary: 1, MinVersion: 1, RotationPeriod: req.RotationPeriod, LastRotated: now, Policy: req.Policy, CreatedAt: now, SM2UID: req.SM2UID, Confirm: req.Confirm}
	var setupCode string
	if k.Confirm == wire.ConfirmRequired {
		var err error
		if k.Holder, setupCode, err = newHolder(); err != nil {
			return nil, err
		}
	}
	var v Version
	var err error
	if k.Protection == wire.ProtectionExternal {
		v, err = externalVersion(k, req.PublicKey, now)
	} else {
		v, err = s.newVersion(ctx, k, 1)
	}
	if err != nil {
		return nil, err
	}
	k.Versions = []Version{v}
	if err := s.createKeyRecord(k, s.record(c, k.Name, 1, "create", nil)); err != nil {
		s.discardMaterial(ctx, k, &v)
		return nil, err
	}
	s.log.Info("key created", "key", k.Name, "purpose", k.Purpose, "algorithm", k.Algorithm, "protection", k.Protection, "client", c.Name)
	k.setupCode = setupCode
	return k, nil
}

// mayEnrol says whether a non-admin caller may create req: a customer key
// (a name under one of its EnrolPrefixes; protection external, or a
// confirm-required signing key) granted to the caller alone. The banking
// app enrols customers this way without being an admin of every key.
func (c Caller) mayEnrol(req wire.CreateKeyRequest) error {
	prefixed := false
	for _, p := range c.EnrolPrefixes {
		prefixed = prefixed || (p != "" && strings.HasPrefix(req.Name, p))
	}
	switch {
	case !prefixed:
		return fmt.Errorf("%w: only admin clients create keys (or enrolling clients, under their key-name prefixes)", wire.ErrForbidden)
	case req.Purpose != wire.PurposeSign || (req.Protection != wire.ProtectionExternal && req.Confirm != wire.ConfirmRequired) || req.Protection == wire.ProtectionHSM:
		// hsm is refused too: customer keys must not fill the token.
		return fmt.Errorf("%w: an enrolling client creates only customer signing keys: protection external, or wrapped with confirm required", wire.ErrForbidden)
	}
	for _, g := range req.Policy.Grants {
		if g.Client != c.Name {
			return fmt.Errorf("%w: an enrolling client may grant a new key to itself only, not to %q", wire.ErrForbidden, g.Client)
		}
	}
	return nil
}

// GetKey returns a key's metadata (needs read, or admin).
func (s *Service) GetKey(_ context.Context, c Caller, name string) (*Key, error) {
	k, err := s.store.GetKey(name)
	return visible(c, name, wire.OpRead, k, err)
}

// MaxListKeys is the most keys one ListKeys page holds.
const MaxListKeys = 1000

// ListKeys returns a page of the keys the caller may read: those named
// after after, by name, at most limit (1..MaxListKeys; 0 means
// MaxListKeys). next is the name to pass as after for the following page,
// or "" after the last page.
func (s *Service) ListKeys(_ context.Context, c Caller, after string, limit int) (keys []*Key, next string, err error) {
	if limit < 0 || limit > MaxListKeys {
		return nil, "", fmt.Errorf("%w: limit must be between 1 and %d", wire.ErrInvalidArgument, MaxListKeys)
	}
	if limit == 0 {
		limit = MaxListKeys
	}
	for {
		page, err := s.store.ListKeys(after, limit)
		if err != nil {
			return nil, "", err
		}
		for _, k := range page {
			after = k.Name
			if authorize(c, k, wire.OpRead) != nil {
				continue
			}
			keys = append(keys, k)
			if len(keys) == limit {
				return keys, k.Name, nil
			}
		}
		if len(page) < limit {
			return keys, "", nil
		}
	}
}

// Rotate adds a new primary version.
func (s *Service) Rotate(ctx context.Context, c Caller, name string) (*Key, error) {
	k, err := s.rotate(ctx, c, name, func(k *Key) error { return authorize(c, k, wire.OpRotate) })
	if err != nil {
		return nil, s.finish(c, name, 0, "rotate", hideMissing(c, name, wire.OpRotate, err))
	}
	return k, nil
}

// rotate generates version n+1 and makes it primary; check runs first on
// the current key (authorisation, or "is it due" for the scheduler).
func (s *Service) rotate(ctx context.Context, c Caller, name string, check func(*Key) error) (*Key, error) {
	defer s.lock(name)()
	cur, err := s.store.GetKey(name)
	if err != nil {
		return nil, err
	}
	if err := check(cur); err != nil {
		return nil, err
	}
	if cur.Protection == wire.ProtectionExternal {
		return nil, fmt.Errorf("%w: external key %q has no material to rotate; register the holder's new public key as a new key", wire.ErrInvalidArgument, name)
	}
	n := len(cur.Versions) + 1
	defer s.holdSealEpoch()() // until the version is stored (kekepoch.go)
	v, err := s.newVersion(ctx, cur, n)
	if err != nil {
		if errors.Is(err, token.ErrDuplicateLabel) {
			if cerr := s.madeElsewhere(name, check); cerr != nil {
				return nil, cerr
			}
		}
		return nil, err
	}
	k, err := s.updateKey(name, func(k *Key) error {
		if err := check(k); err != nil { // again, on the committed key: another node may have rotated it
			return err
		}
		if len(k.Versions) != n-1 {
			return fmt.Errorf("%w: key %q changed during rotation; try again", wire.ErrIllegalTransition, name)
		}
		k.Versions = append(k.Versions, v)
		k.Primary = n
		k.LastRotated = s.now()
		return nil
	}, s.record(c, name, n, "rotate", nil))
	if err != nil {
		s.discardMaterial(ctx, cur, &v)
		return nil, err
	}
	s.log.Info("key rotated", "key", name, "version", n, "client", c.Name)
	return k, nil
}

// madeElsewhere is rotate's answer to a token that already holds the new
// version's object: another node (sharing the store and the token) is
// rotating the key and commits in a moment. It re-reads the key for up to
// two seconds and returns check's error once the key changed so that check
// fails (for the scheduler, errNotDue); nil if it never did (an orphan
// object from a crash: the caller reports the duplicate label).
func (s *Service) madeElsewhere(name string, check func(*Key) error) error {
	for i := 0; i < 20; i++ {
		if k, err := s.store.GetKey(name); err == nil {
			if cerr := check(k); cerr != nil {
				return cerr
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// UpdateSettings changes the key's minimum version and rotation period
// (needs manage, or admin).
func (s *Service) UpdateSettings(_ context.Context, c Caller, name string, req wire.KeySettingsRequest) (*Key, error) {
	defer s.lock(name)()
	rec := s.record(c, name, 0, "settings", nil)
	k, err := s.updateKey(name, func(k *Key) error {
		if err := authorize(c, k, wire.OpManage); err != nil {
			return err
		}
		if req.MinVersion != nil {
			if m := *req.MinVersion; m < 1 || m > k.Primary {
				return fmt.Errorf("%w: min_version must be between 1 and the primary version %d", wire.ErrInvalidArgument, k.Primary)
			}
			k.MinVersion = *req.MinVersion
		}
		if req.RotationPeriod != nil {
			if p := time.Duration(*req.RotationPeriod); p != 0 && p < time.Hour {
				return fmt.Errorf("%w: rotation_period must be at least 1h, or 0s to stop automatic rotation", wire.ErrInvalidArgument)
			}
			k.RotationPeriod = *req.RotationPeriod
		}
		return nil
	}, rec)
	if err != nil {
		return nil, s.finish(c, name, 0, "settings", hideMissing(c, name, wire.OpManage, err))
	}
	return k, nil
}

// SetVersionState disables, enables, schedules destruction of, or cancels
// the destruction of one version. Illegal transitions are
// ErrIllegalTransition (409).
func (s *Service) SetVersionState(ctx context.Context, c Caller, name string, version int, action wire.VersionAction, delay time.Duration) (*Key, error) {
	k, err := s.setVersionState(c, name, version, action, delay)
	if err != nil {
		return nil, s.finish(c, name, version, string(action), hideMissing(c, name, wire.OpManage, err))
	}
	return k, nil
}

func (s *Service) setVersionState(c Caller, name string, version int, action wire.VersionAction, delay time.Duration) (*Key, error) {
	if action == wire.ActionScheduleDestroy {
		if delay == 0 {
			delay = s.cfg.DefaultDestroyDelay
		}
		if delay < s.cfg.MinDestroyDelay {
			return nil, fmt.Errorf("%w: the destruction delay %v is below the configured minimum %v", wire.ErrInvalidArgument, delay, s.cfg.MinDestroyDelay)
		}
	}
	defer s.lock(name)()
	rec := s.record(c, name, version, string(action), nil)
	return s.updateKey(name, func(k *Key) error {
		if err := authorize(c, k, wire.OpManage); err != nil {
			return err
		}
		v := k.Version(version)
		if v == nil {
			return fmt.Errorf("%w: key %q has no version %d", wire.ErrVersionNotFound, name, version)
		}
		return transition(k, v, action, s.now(), delay)
	}, rec)
}

// transition applies action to v, or says why it can't.
func transition(k *Key, v *Version, action wire.VersionAction, now time.Time, delay time.Duration) error {
	illegal := func(why string) error {
		return fmt.Errorf("%w: cannot %s version %d of %q: it is %s%s", wire.ErrIllegalTransition, action, v.Version, k.Name, v.State, why)
	}
	switch action {
	case wire.ActionDisable:
		if v.State != wire.StateEnabled {
			return illegal("")
		}
		v.State = wire.StateDisabled
	case wire.ActionEnable:
		if v.State != wire.StateDisabled {
			return illegal("")
		}
		v.State = wire.StateEnabled
	case wire.ActionScheduleDestroy:
		if v.State != wire.StateEnabled && v.State != wire.StateDisabled {
			return illegal("")
		}
		if v.Version == k.Primary {
			return illegal(" and the primary version; rotate the key first")
		}
		at := now.Add(delay)
		v.StateBeforeDestroy, v.State, v.DestroyAt = v.State, wire.StateDestroyScheduled, &at
	case wire.ActionCancelDestroy:
		if v.State != wire.StateDestroyScheduled {
			return illegal("")
		}
		if v.DestroyAt != nil && !v.DestroyAt.After(now) {
			// Due: the scheduler (on whichever node leads) may be
			// destroying the material now; a cancel recorded after that
			// would say "restored" of material that is gone.
			return illegal(" and due since " + v.DestroyAt.UTC().Format(time.RFC3339) + ": a due destruction cannot be cancelled")
		}
		v.State, v.StateBeforeDestroy, v.DestroyAt = v.StateBeforeDestroy, "", nil
		if v.State == "" {
			v.State = wire.StateDisabled
		}
	default:
		return fmt.Errorf("%w: unknown action %q (disable, enable, schedule-destroy, cancel-destroy)", wire.ErrInvalidArgument, action)
	}
	return nil
}

// schedulerCaller is who the scheduler's audit records name.
var schedulerCaller = Caller{Name: "scheduler"}

// Tick does the scheduler's work once: destroy versions whose time has
// come, rotate keys whose rotation period has passed, end confirmations
// whose time is up (sweepConfirmations), and checkpoint the audit log. Run it at start-up (to catch up after downtime) and then
// periodically (Run).
func (s *Service) Tick(ctx context.Context) error {
	keys, err := s.store.ListKeys("", 0)
	if err != nil {
		return err
	}
	var errs []error
	now := s.now()
	for _, k := range keys {
		for _, v := range k.Versions {
			if v.State == wire.StateDestroyScheduled && v.DestroyAt != nil && !v.DestroyAt.After(now) {
				if err := s.destroyVersion(ctx, k.Name, v.Version); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if p := time.Duration(k.RotationPeriod); p > 0 && !k.LastRotated.Add(p).After(now) {
			_, err := s.rotate(ctx, schedulerCaller, k.Name, func(cur *Key) error {
				if cur.LastRotated.Add(p).After(s.now()) {
					return errNotDue
				}
				return nil
			})
			if err != nil && !errors.Is(err, errNotDue) {
				errs = append(errs, s.finish(schedulerCaller, k.Name, 0, "rotate", err))
			}
		}
	}
	if err := s.sweepConfirmations(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// destroyVersion destroys a due version's material (the token object, or
// the wrapped blob) and records it. Destroyed cannot be undone; the public
// key stays. Idempotent: material already gone counts as destroyed.
func (s *Service) destroyVersion(ctx context.Context, name string, version int) error {
	defer s.lock(name)()
	k, err := s.store.GetKey(name)
	if err != nil {
		return err
	}
	v := k.Version(version)
	if v == nil || v.State != wire.StateDestroyScheduled || v.DestroyAt == nil || v.DestroyAt.After(s.now()) {
		return nil // cancelled or changed meanwhile
	}
	if err := s.destroyMaterial(ctx, k, v); err != nil {
		return s.finish(schedulerCaller, name, version, "destroy", err)
	}
	rec := &audit.Record{Time: s.now(), Client: schedulerCaller.Name, Key: name, Version: version, Op: "destroy", Result: "ok"}
	_, err = s.updateKey(name, func(k *Key) error {
		v := k.Version(version)
		at := s.now()
		if v == nil || v.State != wire.StateDestroyScheduled || v.DestroyAt == nil || v.DestroyAt.After(at) {
			return errNotDue // another node destroyed it, or it was cancelled, meanwhile
		}
		v.State, v.DestroyedAt, v.Wrapped, v.TPMKey, v.StateBeforeDestroy = wire.StateDestroyed, &at, nil, nil, ""
		return nil
	}, rec)
	switch {
	case errors.Is(err, errNotDue):
		return nil
	case err == nil:
		s.log.Info("key version destroyed", "key", name, "version", version)
	}
	return err
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}
