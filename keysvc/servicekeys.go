package keysvc

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
)

// Service keys are keysvc's own keys in the token (the KEKs, the PIN MAC
// key, the audit keys; ServiceKeySpecs). In production (Config.
// RequireServiceKeys, cmd/keysvc with a config file) they come from a key
// ceremony — `ceremony keygen` with `service_keys: true`, backed up M-of-N
// by `ceremony backup` and put into every other HSM by `ceremony restore` —
// and keysvc refuses to start without them (ErrServiceKeysMissing): keys
// keysvc made itself could never be backed up, so losing the token would
// lose every wrapped customer key, every stored password MAC and every
// sealed ID with it (issue 15). In development (`keysvc -dev`) and in
// library use without RequireServiceKeys, the first start on an empty
// store generates them, non-extractable.
//
// Either way the first start records their identities in the store
// (ServiceKeyRecord); every later start checks the token against that
// record and refuses a token whose service keys are missing or different
// (ErrServiceKeysChanged): a zeroized or re-initialised token, or another
// token, is never quietly given fresh keys under a store whose blobs, PIN
// hashes and audit log were made with the old ones (issue 13, defect 6).
// A key's usage attributes are checked too, where the key store can read
// them (token.Store.KeyUsage): a ceremony-made key must allow exactly what
// keysvc does with it.
//
// keysvc on several tokens (a token set whose key store offers Stores)
// compares every member's service keys with each other and with the
// record before anything else (CheckServiceKeysAgree), and refuses a set
// whose keys differ (ErrServiceKeysDiffer), naming the key and the token.
//
// A store written before the record existed is migrated at its first start:
// what the token holds is recorded. A service key missing at that point is
// generated only when nothing in the store depends on it (serviceKeyUsers)
// and RequireServiceKeys is off; otherwise keysvc refuses as above.

// ErrServiceKeysChanged is a start-up error of New (never an HTTP answer):
// the token does not hold the service keys recorded in the store.
var ErrServiceKeysChanged = errors.New("keysvc: the token's service keys do not match this store")

// ErrServiceKeysMissing is a start-up error of New with RequireServiceKeys
// (never an HTTP answer): the token lacks service keys that keysvc would
// otherwise have generated. The message names each key, its type and usage
// and the ceremony that makes it.
var ErrServiceKeysMissing = errors.New("keysvc: service keys missing from the token")

// ErrServiceKeysDiffer is a start-up error of New on a token set (and of
// CheckServiceKeysAgree): the members do not hold the same service keys.
var ErrServiceKeysDiffer = errors.New("keysvc: the tokens' service keys differ")

// serviceKeysHelp is what to do about ErrServiceKeysChanged.
const serviceKeysHelp = "keysvc will not create new service keys under an existing store. " +
	"If the token was lost, swapped or re-initialised by mistake, restore the token (the HSM's backup or clone of this partition, or `ceremony restore` of the service keys from their ceremony backup) or point token.uri at the right one, and start keysvc again. " +
	"If the token was re-initialised on purpose (ceremony zeroize), the keys and audit log in this data directory cannot be used with it: move the data directory aside (keep it as evidence) and start keysvc with a fresh one"

// serviceKeysCeremonyHelp is what to do about ErrServiceKeysMissing.
const serviceKeysCeremonyHelp = "In production keysvc never makes its own service keys, because keys it made could not be backed up. " +
	"The security officers make them in a ceremony: `ceremony keygen` with `service_keys: true` in keygen.yaml (all five, backup: true), " +
	"then `ceremony backup` of them (M-of-N shares), then `ceremony restore` of that backup into every other HSM keysvc uses; then start keysvc again " +
	"(README, \"Several HSMs\"). `keysvc -dev` makes them itself, for development only"

// serviceKeysDifferHelp is what to do about ErrServiceKeysDiffer.
const serviceKeysDifferHelp = "Every token of the set must hold the same service keys, restored from one ceremony backup: " +
	"zeroize the odd token and `ceremony restore` the service-key backup into it, or take it out of tokens: in the config, and start keysvc again"

// ServiceKeySpec is one of keysvc's service keys: what keysvc needs of it,
// and what `ceremony keygen`'s service_keys preset makes (the one list
// both use).
type ServiceKeySpec struct {
	Label string
	Type  token.KeyType
	// Usage is exactly the usage attributes the key carries (token.UsageExact
	// set): keysvc refuses a key that allows more or less.
	Usage token.Usage
	// Use says what keysvc does with it, for messages and transcripts.
	Use string
}

// KeySpec is the spec keysvc generates the key with when it may (dev mode).
func (s ServiceKeySpec) KeySpec() token.KeySpec {
	return token.KeySpec{Type: s.Type, Label: s.Label, Usage: s.Usage}
}

// String names the key, its type and usage and what it is for.
func (s ServiceKeySpec) String() string {
	return fmt.Sprintf("%s (%v, usage %s: %s)", s.Label, s.Type, UsageNames(s.Usage), s.Use)
}

// UsageNames spells an exact usage as keygen.yaml's usage list does.
func UsageNames(u token.Usage) string {
	var n []string
	for _, x := range []struct {
		u    token.Usage
		name string
	}{{token.UsageSign, "sign"}, {token.UsageEncrypt, "encrypt"}, {token.UsageDecrypt, "decrypt"}, {token.UsageWrap, "wrap"}, {token.UsageUnwrap, "unwrap"}} {
		if u.Has(x.u | token.UsageExact) {
			n = append(n, x.name)
		}
	}
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, ", ")
}

// ServiceKeySpecs are every service key keysvc may use, in the order it
// checks them. keysvc-audit is used only without Config.AuditSigner (a
// TPM-held audit key), but a ceremony makes it anyway: an unused key costs
// nothing and a later switch back to the token's audit key needs it.
func ServiceKeySpecs() []ServiceKeySpec {
	return []ServiceKeySpec{
		{Label: KEKLabel, Type: token.KeyAES256, Usage: token.UsageWrap | token.UsageUnwrap | token.UsageExact,
			Use: "wraps the key versions of protection wrapped, AES key wrap with padding"},
		{Label: SMKEKLabel, Type: token.KeyAES256, Usage: token.UsageEncrypt | token.UsageDecrypt | token.UsageExact,
			Use: "seals SM2/SM4 key material, AES-256-GCM"},
		{Label: PINMACLabel, Type: token.KeyGenericSecret, Usage: token.UsageSign | token.UsageExact,
			Use: "HMAC-SHA256 of holders' PINs, display and confirm"},
		{Label: AuditDigestKeyLabel, Type: token.KeyGenericSecret, Usage: token.UsageSign | token.UsageExact,
			Use: "HMAC-SHA256 key of the audit log's request digests"},
		{Label: AuditKeyLabel, Type: token.KeyECP256, Usage: token.UsageSign | token.UsageExact,
			Use: "ECDSA P-256 signatures of audit checkpoints"},
	}
}

// ServiceKeyLabels are the labels of every service key keysvc may keep in
// its token (the ceremony tool names them when it lists keys).
var ServiceKeyLabels = []string{KEKLabel, SMKEKLabel, PINMACLabel, AuditDigestKeyLabel, AuditKeyLabel}

// ServiceKey is the identity of one service key, as recorded.
type ServiceKey struct {
	Label string `json:"label"`
	ID    []byte `json:"id"`   // CKA_ID
	Type  string `json:"type"` // token.KeyType's name
	// CheckMethod and Check are KeyStore.CheckValue (pkcs11shim.Pool.CheckValue on a token): for pairs the
	// SHA-256 of the public key, for secret keys a value computed in the
	// token with the key (it never leaves it).
	CheckMethod string `json:"check_method"`
	Check       []byte `json:"check"`
}

// ServiceKeyRecord is the record of the service keys in the store.
type ServiceKeyRecord struct {
	TokenLabel  string       `json:"token_label"`
	TokenSerial string       `json:"token_serial"`
	RecordedAt  time.Time    `json:"recorded_at"`
	Keys        []ServiceKey `json:"keys"`
}

func (r *ServiceKeyRecord) key(label string) *ServiceKey {
	if r == nil {
		return nil
	}
	for i := range r.Keys {
		if r.Keys[i].Label == label {
			return &r.Keys[i]
		}
	}
	return nil
}

func (r *ServiceKeyRecord) keysNotIn(o *ServiceKeyRecord) []ServiceKey {
	var out []ServiceKey
	if r == nil {
		return nil
	}
	for _, k := range r.Keys {
		if o.key(k.Label) == nil {
			out = append(out, k)
		}
	}
	return out
}

// serviceKeySpecs are the service keys this configuration uses.
func (s *Service) serviceKeySpecs() []ServiceKeySpec {
	specs := s.kekSpecs() // the KEKs of the live epochs (kekepoch.go)
	for _, ks := range ServiceKeySpecs() {
		switch {
		case ks.Label == KEKLabel || ks.Label == SMKEKLabel: // by epoch, above
			continue
		case ks.Label == AuditKeyLabel && s.cfg.AuditSigner != nil:
			continue
		}
		specs = append(specs, ks)
	}
	return specs
}

// checkServiceKeys finds the service keys and checks them against the
// store's record, generating only keys that are neither recorded nor
// depended upon, and only without RequireServiceKeys. It returns the
// record to store once the audit log is ready for appends (nil when the
// stored one is up to date).
func (s *Service) checkServiceKeys(ctx context.Context) (*ServiceKeyRecord, error) {
	old, err := s.store.ServiceKeys()
	if err != nil {
		return nil, err
	}
	label, serial := s.keys.Identity()
	next := &ServiceKeyRecord{TokenLabel: label, TokenSerial: serial, RecordedAt: s.now().UTC()}
	var faults []string
	var create []ServiceKeySpec // generated only once nothing is at fault
	changed := old == nil
	for _, ks := range s.serviceKeySpecs() {
		rec := old.key(ks.Label)
		k, err := s.keys.FindKey(ctx, ks.Label)
		switch {
		case errors.Is(err, token.ErrKeyNotFound) && rec != nil:
			faults = append(faults, fmt.Sprintf("%s: missing from the token (recorded: %s, CKA_ID %x)", ks.Label, rec.Type, rec.ID))
			continue
		case errors.Is(err, token.ErrKeyNotFound):
			users, uerr := s.serviceKeyUsers(ks.Label)
			if uerr != nil {
				return nil, uerr
			}
			if users != "" {
				faults = append(faults, fmt.Sprintf("%s: missing from the token, and %s", ks.Label, users))
			} else {
				create = append(create, ks)
			}
			continue
		case err != nil:
			return nil, fmt.Errorf("keysvc: service key %s: %w", ks.Label, tokenErr(err))
		}
		cur, fault, err := serviceKeyIdentity(ctx, s.keys, ks, k)
		switch {
		case err != nil:
			return nil, err
		case fault == "" && rec != nil:
			fault = rec.differs(cur)
		}
		if fault != "" {
			faults = append(faults, ks.Label+": "+fault)
			continue
		}
		changed = changed || rec == nil
		next.Keys = append(next.Keys, cur)
	}
	if len(faults) > 0 {
		where := ""
		if old != nil {
			where = fmt.Sprintf("; the store's were recorded %s on token %q serial %s", old.RecordedAt.Format(time.RFC3339), old.TokenLabel, old.TokenSerial)
		}
		return nil, fmt.Errorf("%w: token %q (serial %s%s): %s. %s",
			ErrServiceKeysChanged, label, serial, where, strings.Join(faults, "; "), serviceKeysHelp)
	}
	if len(create) > 0 && s.cfg.RequireServiceKeys {
		missing := make([]string, len(create))
		for i, ks := range create {
			missing[i] = ks.String()
		}
		return nil, fmt.Errorf("%w: token %q (serial %s) holds no %s. %s",
			ErrServiceKeysMissing, label, serial, strings.Join(missing, "; no "), serviceKeysCeremonyHelp)
	}
	if old != nil && (old.TokenSerial != serial || old.TokenLabel != label) {
		s.log.Warn("the token's label or serial differs from the recorded one, but it holds the recorded service keys",
			"token", label, "serial", serial, "recorded_token", old.TokenLabel, "recorded_serial", old.TokenSerial)
	}
	for _, ks := range create {
		s.log.Info("creating service key in the token (development: not extractable, so it cannot be backed up)", "label", ks.Label)
		k, err := s.keys.GenerateKey(ctx, ks.KeySpec())
		if err != nil {
			return nil, fmt.Errorf("keysvc: service key %s: %w", ks.Label, tokenErr(err))
		}
		cur, _, err := serviceKeyIdentity(ctx, s.keys, ks, k)
		if err != nil {
			return nil, err
		}
		next.Keys = append(next.Keys, cur)
		changed = true
	}
	if !changed {
		return nil, nil
	}
	for _, k := range old.keysNotIn(next) { // recorded keys this configuration does not use (audit.signer tpm) stay recorded
		next.Keys = append(next.Keys, k)
	}
	return next, nil
}

// keyUsager is the optional ability of a key store to read a key's usage
// attributes (token.Store has it; token/memtoken does not).
type keyUsager interface {
	KeyUsage(ctx context.Context, ref token.KeyRef) (token.Usage, error)
}

var (
	_ keyUsager = (*token.Store)(nil)
	_ keyUsager = (*token.LazyStore)(nil) // a token of a set opened after keysvc started
)

// serviceKeyIdentity is what the record keeps of k, read from keys; fault
// says why k cannot be ks (its type, or its usage where keys can read it).
func serviceKeyIdentity(ctx context.Context, keys KeyStore, ks ServiceKeySpec, k token.KeyRef) (cur ServiceKey, fault string, err error) {
	if k.KeyType() != ks.Type {
		return cur, fmt.Sprintf("the token's key is %v, keysvc needs %v", k.KeyType(), ks.Type), nil
	}
	if ku, ok := keys.(keyUsager); ok {
		u, err := ku.KeyUsage(ctx, k)
		switch {
		case errors.Is(err, token.ErrMechanismInvalid):
			// A store that cannot read usages after all (a token set of
			// in-memory members): the check value below still identifies the key.
		case err != nil:
			return cur, "", fmt.Errorf("keysvc: service key %s: read its usage: %w", ks.Label, tokenErr(err))
		case !u.Has(ks.Usage) || !ks.Usage.Has(u):
			return cur, fmt.Sprintf("the token's key allows %s, keysvc needs exactly %s (make it with `ceremony keygen` and service_keys: true)", UsageNames(u), UsageNames(ks.Usage)), nil
		}
	}
	method, check, err := keys.CheckValue(ctx, k)
	if err != nil {
		return cur, "", fmt.Errorf("keysvc: service key %s: check value: %w", ks.Label, tokenErr(err))
	}
	return ServiceKey{Label: ks.Label, ID: k.ID(), Type: k.KeyType().String(), CheckMethod: method, Check: check}, "", nil
}

// memberStores is the optional ability of a key store made of several
// tokens (token.Set) to list its members.
type memberStores interface {
	Stores() []*token.Store
}

var _ memberStores = (*token.Set)(nil)

// checkMembers runs CheckServiceKeysAgree over the members of a token set
// that answer now (nothing for a single token). A member that does not
// answer at start is logged and left out: it must not stop the service
// (R-AV-4), and the set checks it when it re-admits it
// (CheckMemberServiceKeys).
func (s *Service) checkMembers(ctx context.Context) error {
	ms, ok := s.keys.(memberStores)
	if !ok {
		return nil
	}
	stores := ms.Stores()
	if len(stores) == 0 { // a set of in-memory members (unit tests): nothing to compare here
		return nil
	}
	var members []KeyStore
	for _, st := range stores {
		if err := st.Health(ctx); err != nil {
			label, serial := st.Identity()
			s.log.Warn("a token of the set does not answer at start: its service keys are checked when it is re-admitted",
				"token", label, "serial", serial, "err", err)
			continue
		}
		members = append(members, st)
	}
	rec, err := s.store.ServiceKeys()
	if err != nil {
		return err
	}
	return CheckServiceKeysAgree(ctx, members, s.serviceKeySpecs(), rec)
}

// CheckMemberServiceKeys checks one token against the store's record of the
// service keys: a member of a token set before it is re-admitted, or a
// token joining the set. It returns ErrServiceKeysDiffer naming the token
// and the key when they differ (CheckServiceKeysAgree).
func (s *Service) CheckMemberServiceKeys(ctx context.Context, member KeyStore) error {
	rec, err := s.store.ServiceKeys()
	if err != nil {
		return err
	}
	if rec == nil {
		return fmt.Errorf("%w: the store holds no record of the service keys yet", ErrServiceKeysDiffer)
	}
	return CheckServiceKeysAgree(ctx, []KeyStore{member}, s.serviceKeySpecs(), rec)
}

// CheckServiceKeysAgree compares the service keys (specs; ServiceKeySpecs
// for all) of every member of a token set with each other and with rec, the
// store's record (nil before the first start): same type and usage, same
// CKA_ID and the same check value, computed in each token (a MAC or
// encryption of a fixed value, or the public key's hash; never the key).
// A key missing from a member, or differing, is an ErrServiceKeysDiffer
// naming the key and the token (label and serial) and what differs; tokens
// restored from one ceremony backup agree.
func CheckServiceKeysAgree(ctx context.Context, members []KeyStore, specs []ServiceKeySpec, rec *ServiceKeyRecord) error {
	if len(members) == 0 {
		return fmt.Errorf("%w: no tokens", ErrServiceKeysDiffer)
	}
	faults, err := serviceKeyFaults(ctx, members, specs, rec)
	if err != nil {
		return err
	}
	if len(faults) > 0 {
		return fmt.Errorf("%w: %s. %s", ErrServiceKeysDiffer, strings.Join(faults, "; "), serviceKeysDifferHelp)
	}
	return nil
}

// tokenName names a key store's token for messages: its label and serial.
func tokenName(m KeyStore) string {
	label, serial := m.Identity()
	return fmt.Sprintf("token %q (serial %s)", label, serial)
}

// serviceKeyFaults is CheckServiceKeysAgree's work: one line per key
// missing from a member or differing, naming the key and the token.
func serviceKeyFaults(ctx context.Context, members []KeyStore, specs []ServiceKeySpec, rec *ServiceKeyRecord) ([]string, error) {
	name := tokenName
	var faults []string
	for _, ks := range specs {
		var ref *ServiceKey // the first member's key, the others' reference
		refName := ""
		for _, m := range members {
			k, err := m.FindKey(ctx, ks.Label)
			switch {
			case errors.Is(err, token.ErrKeyNotFound):
				faults = append(faults, fmt.Sprintf("%s: missing from %s", ks.Label, name(m)))
				continue
			case err != nil:
				return nil, fmt.Errorf("keysvc: service key %s on %s: %w", ks.Label, name(m), tokenErr(err))
			}
			cur, fault, err := serviceKeyIdentity(ctx, m, ks, k)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name(m), err)
			}
			if fault == "" {
				if r := rec.key(ks.Label); r != nil {
					if d := r.differs(cur); d != "" {
						fault = "differs from the store's record: " + d
					}
				}
			}
			if fault == "" && ref != nil {
				if d := ref.differsAs(cur, refName+" has"); d != "" {
					fault = "differs from " + refName + "'s: " + d
				}
			}
			if fault != "" {
				faults = append(faults, fmt.Sprintf("%s on %s: %s", ks.Label, name(m), fault))
				continue
			}
			if ref == nil {
				ref, refName = &cur, name(m)
			}
		}
	}
	return faults, nil
}

// differs says how cur differs from the recorded key ("" when it is the same key).
func (r *ServiceKey) differs(cur ServiceKey) string { return r.differsAs(cur, "recorded") }

// differsAs says how cur differs from r, which ref names ("recorded", or
// another token's "token "A" (serial 1) has").
func (r *ServiceKey) differsAs(cur ServiceKey, ref string) string {
	switch {
	case r.Type != cur.Type:
		return fmt.Sprintf("the token's key is %s, %s %s", cur.Type, ref, r.Type)
	case !bytes.Equal(r.ID, cur.ID):
		return fmt.Sprintf("CKA_ID %x on the token, %s %x: another key under the same label", cur.ID, ref, r.ID)
	case r.CheckMethod != cur.CheckMethod:
		return fmt.Sprintf("check method %s on the token, %s %s (the key's usage changed)", cur.CheckMethod, ref, r.CheckMethod)
	case !bytes.Equal(r.Check, cur.Check):
		return fmt.Sprintf("another key with the same label and CKA_ID (%s check value %s…, %s %s…)", cur.CheckMethod, short(cur.Check), ref, short(r.Check))
	}
	return ""
}

func short(b []byte) string { return hex.EncodeToString(b[:min(len(b), 8)]) }

// serviceKeyUsers says what in the store was made with service key label,
// as a clause of the refusal ("" when nothing): a missing key that something
// depends on is never regenerated.
func (s *Service) serviceKeyUsers(label string) (string, error) {
	switch label {
	case AuditKeyLabel:
		cps, err := s.store.Checkpoints()
		if err != nil || len(cps) == 0 {
			return "", err
		}
		return fmt.Sprintf("the store's %d audit checkpoints were signed by another audit key than a new one would be (keep audit.signer and its token or TPM)", len(cps)), nil
	case AuditDigestKeyLabel:
		f, err := s.store.AuditFormat()
		if err != nil || f < AuditFormat {
			return "", err
		}
		seq, _, err := s.store.LastAudit()
		if err != nil || seq == 0 {
			return "", err
		}
		return fmt.Sprintf("the store holds %d audit records with request digests keyed by it", seq), nil
	}
	epoch, sm, isKEK := kekLabelEpoch(label)
	n, first := 0, ""
	err := s.eachKey(func(k *Key) {
		uses := false
		switch {
		case isKEK:
			for _, v := range k.Versions {
				uses = uses || (k.Protection == wire.ProtectionWrapped && len(v.Wrapped) > 0 && isSM(k.Algorithm) == sm && v.epoch() == epoch)
			}
		case label == PINMACLabel:
			uses = k.Holder != nil && len(k.Holder.PINHash) > 0
		}
		if uses {
			n++
			if first == "" {
				first = k.Name
			}
		}
	})
	if err != nil || n == 0 {
		return "", err
	}
	what := map[bool]string{false: "wrapped key(s)", true: "sealed SM key(s)"}[sm]
	if !isKEK {
		what = "holder PIN hash(es)"
	}
	return fmt.Sprintf("the store holds %d %s (key %q first) made with it", n, what, first), nil
}

// eachKey calls fn for every stored key, a page at a time.
func (s *Service) eachKey(fn func(k *Key)) error {
	after := ""
	for {
		page, err := s.store.ListKeys(after, 1000)
		if err != nil {
			return err
		}
		for _, k := range page {
			fn(k)
		}
		if len(page) < 1000 {
			return nil
		}
		after = page[len(page)-1].Name
	}
}

// recordServiceKeys stores r with an audit record (after the audit log's
// migration, so the record lands in the current format).
func (s *Service) recordServiceKeys(r *ServiceKeyRecord) error {
	if r == nil {
		return nil
	}
	labels := make([]string, len(r.Keys))
	for i, k := range r.Keys {
		labels[i] = k.Label
	}
	// A new store's log starts with its first operation: the record is
	// part of setting the store up. Recording on an existing log (an
	// upgrade, a service key added) is audited.
	var rec *audit.Record
	if seq, _, err := s.store.LastAudit(); err != nil {
		return err
	} else if seq > 0 {
		rec = &audit.Record{Time: s.now(), Client: "keysvc", Op: "service_keys_recorded", Result: "ok",
			Detail: fmt.Sprintf("token=%q serial=%s keys=%s", r.TokenLabel, r.TokenSerial, strings.Join(labels, ","))}
	}
	if err := s.store.SetServiceKeys(r, rec); err != nil {
		return err
	}
	s.log.Info("service keys recorded in the store; later starts refuse a token without them", "token", r.TokenLabel, "serial", r.TokenSerial, "keys", strings.Join(labels, ","))
	return nil
}

// checkManagedKeys reports hsm key versions whose token object is gone
// (destroyed outside keysvc, or a token that lost them): each is logged
// as an error and counted in Stats.MissingTokenKeys. keysvc still starts:
// its other keys keep working and the affected versions fail on use with
// version_not_usable; the count tells monitoring.
func (s *Service) checkManagedKeys(ctx context.Context) error {
	if s.cfg.LevelledAfterStart && !s.levelled.Load() {
		return nil // the token set copies what a member lacks first (CheckManagedKeysAfterSync)
	}
	labels, err := s.keys.KeyLabels(ctx)
	if err != nil {
		return fmt.Errorf("keysvc: list the token's objects: %w", tokenErr(err))
	}
	onToken := make(map[string]bool, len(labels))
	for _, l := range labels {
		onToken[l] = true
	}
	missing := 0
	err = s.eachKey(func(k *Key) {
		if k.Protection != wire.ProtectionHSM {
			return
		}
		for _, v := range k.Versions {
			if v.State == wire.StateDestroyed || v.ObjectLabel == "" || onToken[v.ObjectLabel] {
				continue
			}
			missing++
			s.log.Error("a key version's token object is missing: it cannot be used; a security officer must check the token (restore it from backup, or destroy the version)",
				"key", k.Name, "version", v.Version, "state", v.State, "object_label", v.ObjectLabel)
		}
	})
	if err != nil {
		return err
	}
	s.missingKeys.Store(int64(missing))
	return nil
}
