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
// key, the audit keys). The first start on an empty store generates them
// and records their identities in the store (ServiceKeyRecord); every
// later start checks the token against that record and refuses a token
// whose service keys are missing or different (ErrServiceKeysChanged):
// a zeroized or re-initialised token, or another token, is never quietly
// given fresh keys under a store whose blobs, PIN hashes and audit log
// were made with the old ones (issue 13, defect 6).
//
// A store written before the record existed is migrated at its first start:
// what the token holds is recorded. A service key missing at that point is
// generated only when nothing in the store depends on it (serviceKeyUsers);
// otherwise keysvc refuses as above.

// ErrServiceKeysChanged is a start-up error of New (never an HTTP answer):
// the token does not hold the service keys recorded in the store.
var ErrServiceKeysChanged = errors.New("keysvc: the token's service keys do not match this store")

// serviceKeysHelp is what to do about ErrServiceKeysChanged.
const serviceKeysHelp = "keysvc will not create new service keys under an existing store. " +
	"If the token was lost, swapped or re-initialised by mistake, restore the token (the HSM's backup or clone of this partition) or point token.uri at the right one, and start keysvc again. " +
	"If the token was re-initialised on purpose (ceremony zeroize), the keys and audit log in this data directory cannot be used with it: move the data directory aside (keep it as evidence) and start keysvc with a fresh one"

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
func (s *Service) serviceKeySpecs() []token.KeySpec {
	specs := append(s.kekSpecs(), // the KEKs of the live epochs (kekepoch.go)
		token.KeySpec{Type: token.KeyGenericSecret, Label: PINMACLabel},
		token.KeySpec{Type: token.KeyGenericSecret, Label: AuditDigestKeyLabel},
	)
	if s.cfg.AuditSigner == nil {
		specs = append(specs, token.KeySpec{Type: token.KeyECP256, Label: AuditKeyLabel})
	}
	return specs
}

// checkServiceKeys finds the service keys and checks them against the
// store's record, generating only keys that are neither recorded nor
// depended upon. It returns the record to store once the audit log is
// ready for appends (nil when the stored one is up to date).
func (s *Service) checkServiceKeys(ctx context.Context) (*ServiceKeyRecord, error) {
	old, err := s.store.ServiceKeys()
	if err != nil {
		return nil, err
	}
	label, serial := s.keys.Identity()
	next := &ServiceKeyRecord{TokenLabel: label, TokenSerial: serial, RecordedAt: s.now().UTC()}
	var faults []string
	var create []token.KeySpec // generated only once nothing is at fault
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
		cur, fault, err := s.serviceKeyIdentity(ctx, ks, k)
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
	if old != nil && (old.TokenSerial != serial || old.TokenLabel != label) {
		s.log.Warn("the token's label or serial differs from the recorded one, but it holds the recorded service keys",
			"token", label, "serial", serial, "recorded_token", old.TokenLabel, "recorded_serial", old.TokenSerial)
	}
	for _, ks := range create {
		s.log.Info("creating service key in the token", "label", ks.Label)
		k, err := s.keys.GenerateKey(ctx, ks)
		if err != nil {
			return nil, fmt.Errorf("keysvc: service key %s: %w", ks.Label, tokenErr(err))
		}
		cur, _, err := s.serviceKeyIdentity(ctx, ks, k)
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

// serviceKeyIdentity is what the record keeps of k; fault says why k
// cannot be ks.
func (s *Service) serviceKeyIdentity(ctx context.Context, ks token.KeySpec, k token.KeyRef) (cur ServiceKey, fault string, err error) {
	if k.KeyType() != ks.Type {
		return cur, fmt.Sprintf("the token's key is %v, keysvc needs %v", k.KeyType(), ks.Type), nil
	}
	method, check, err := s.keys.CheckValue(ctx, k)
	if err != nil {
		return cur, "", fmt.Errorf("keysvc: service key %s: check value: %w", ks.Label, tokenErr(err))
	}
	return ServiceKey{Label: ks.Label, ID: k.ID(), Type: k.KeyType().String(), CheckMethod: method, Check: check}, "", nil
}

// differs says how cur differs from the recorded key ("" when it is the same key).
func (r *ServiceKey) differs(cur ServiceKey) string {
	switch {
	case r.Type != cur.Type:
		return fmt.Sprintf("the token's key is %s, recorded %s", cur.Type, r.Type)
	case !bytes.Equal(r.ID, cur.ID):
		return fmt.Sprintf("CKA_ID %x on the token, recorded %x: another key under the same label", cur.ID, r.ID)
	case r.CheckMethod != cur.CheckMethod:
		return fmt.Sprintf("check method %s on the token, recorded %s (the key's usage changed)", cur.CheckMethod, r.CheckMethod)
	case !bytes.Equal(r.Check, cur.Check):
		return fmt.Sprintf("another key with the same label and CKA_ID (%s check value %s…, recorded %s…)", cur.CheckMethod, short(cur.Check), short(r.Check))
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
