package keysvc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
)

// KEK epochs on a token set (issue 15). A KEK rotation is only as good as
// its weakest token: destruction of the old epoch is cryptographic only
// once its KEKs are gone from EVERY token, and the new epoch serves only
// if every token holds the same new KEKs. So, when keysvc's key store is a
// token set (token.Set, which offers UpMembers):
//
//   - StartKEKRotation first compares the next epoch's KEKs on every member
//     that is up (CheckServiceKeysAgree's comparison: type, usage, CKA_ID,
//     check value) and refuses, naming the key and the token, when one
//     lacks them or holds different ones.
//   - Retirement destroys the old KEKs through the set's DestroyKey, on
//     every member that is up. A member that was DOWN then still holds
//     them: before the set re-admits a member (its Admit hook →
//     AdmitMember), keysvc destroys every KEK of a retired (or retiring)
//     epoch found on it, one kek_destroy audit record each, and then checks
//     its service keys against the store's record. A member that was away
//     for a whole rotation comes back with the retired epoch's KEKs only:
//     they are destroyed and it is refused (ErrRetiredKEKs), with what to
//     do — restore the current epoch's KEKs by ceremony — until it holds
//     them.
//   - At start (New), every member that is up (or the one token) loses
//     the KEKs of retired epochs it holds, the same way.
//
// A retired KEK a token refuses to destroy (CKA_DESTROYABLE false) keeps
// that token out of the set, and keeps keysvc from starting on it: while
// it exists, copies of blobs sealed under it still open.
//
// The set's own events — a member taken out, re-admitted, brought level
// at start — are written to the audit log too (RecordTokenSetEvent, which
// cmd/keysvc gives the set as its OnEvent hook).

// ErrRetiredKEKs refuses a token that holds KEKs of a retired epoch it
// cannot be rid of, or only those and not the current epoch's. It is an
// error of AdmitMember and of New, never an HTTP answer.
var ErrRetiredKEKs = errors.New("keysvc: the token holds KEKs of a retired epoch")

// upMemberLister is the optional ability of a key store made of several
// tokens (token.Set) to list the members in service.
type upMemberLister interface {
	UpMembers() []token.Member
}

// retiredSeen remembers, per token, the retired epochs whose KEKs keysvc
// destroyed on it before refusing it, so later refusals still say why.
type retiredSeen struct {
	mu sync.Mutex
	m  map[string][]int
}

func (r *retiredSeen) add(tok string, epochs []int) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string][]int{}
	}
	for _, e := range epochs {
		if !slices.Contains(r.m[tok], e) {
			r.m[tok] = append(r.m[tok], e)
		}
	}
	slices.Sort(r.m[tok])
	return slices.Clone(r.m[tok])
}

func (r *retiredSeen) forget(tok string) {
	r.mu.Lock()
	delete(r.m, tok)
	r.mu.Unlock()
}

// kekMembers are the key stores whose KEKs keysvc looks after one by one:
// a token set's members that are up, or the one key store. set says
// whether keys is a set.
func (s *Service) kekMembers() (members []KeyStore, set bool, err error) {
	ul, ok := s.keys.(upMemberLister)
	if !ok {
		return []KeyStore{s.keys}, false, nil
	}
	for _, m := range ul.UpMembers() {
		ks, ok := m.(KeyStore)
		if !ok {
			return nil, true, fmt.Errorf("keysvc: token set member %T is not a key store keysvc can check", m)
		}
		members = append(members, ks)
	}
	return members, true, nil
}

// checkNextKEKsAgree refuses to start a rotation to epoch n unless every
// member of the set that is up holds the same epoch-n KEKs.
func (s *Service) checkNextKEKsAgree(ctx context.Context, n int) error {
	members, set, err := s.kekMembers()
	if err != nil || !set || len(members) < 2 {
		return err
	}
	faults, err := serviceKeyFaults(ctx, members, epochKEKSpecs(n), nil)
	if err != nil {
		return err
	}
	if len(faults) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w: epoch %d's KEKs are not the same in every token of the set: %s. Every token must hold the same %s and %s, restored from one ceremony backup: `ceremony restore` that backup into the token named (zeroize it first if it holds other keys under these labels), then start the rotation again",
		wire.ErrIllegalTransition, ErrServiceKeysDiffer, n, strings.Join(faults, "; "), KEKLabelFor(n), SMKEKLabelFor(n))
}

// retiredEpochs are the epochs whose KEKs must be in no token: the retired
// ones and, with retiring, the one being retired now (its KEKs left the
// record and keysvc's hands before they are destroyed).
func retiredEpochs(e KEKEpochs, retiring bool) []int {
	out := slices.Clone(e.Retired)
	if retiring && e.Retiring > 0 && !slices.Contains(out, e.Retiring) {
		out = append(out, e.Retiring)
	}
	return out
}

// destroyRetiredKEKs destroys on m every KEK of the given epochs it holds,
// logged and audited (kek_destroy) one by one; when says on what occasion.
// It returns the epochs it found KEKs of.
func (s *Service) destroyRetiredKEKs(ctx context.Context, m KeyStore, epochs []int, when string) (found []int, err error) {
	label, serial := m.Identity()
	for _, ep := range epochs {
		for _, kl := range []string{KEKLabelFor(ep), SMKEKLabelFor(ep)} {
			ref, err := m.FindKey(ctx, kl)
			if errors.Is(err, token.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return found, fmt.Errorf("keysvc: look for the retired KEK %s on %s: %w", kl, tokenName(m), tokenErr(err))
			}
			if !slices.Contains(found, ep) {
				found = append(found, ep)
			}
			if err := m.DestroyKey(ctx, ref); err != nil && !errors.Is(err, token.ErrKeyNotFound) {
				return found, fmt.Errorf("%w: %s holds %s, a KEK of epoch %d, which a KEK rotation retired, and refuses to destroy it (%v): while it exists, copies of blobs sealed under it (store backups, freed pages) can still be opened. A security officer zeroizes that token (`ceremony zeroize`) and restores the current service keys into it (`ceremony restore`)",
					ErrRetiredKEKs, tokenName(m), kl, ep, tokenErr(err))
			}
			if err := s.audit(&audit.Record{Time: s.now(), Client: "keysvc", Op: "kek_destroy", Result: "ok",
				Detail: fmt.Sprintf("%s (epoch %d, retired) destroyed on %s %s", kl, ep, tokenName(m), when)}); err != nil {
				return found, err
			}
			s.log.Warn("a KEK of a retired epoch was found on a token and destroyed", "label", kl, "epoch", ep, "token", label, "serial", serial, "when", when)
		}
	}
	return found, nil
}

// destroyRetiredKEKsAtStart is New's part: the members that are up (or
// the one token) lose the KEKs of retired epochs they hold. A rotation
// still retiring is left to its worker, which destroys those itself.
func (s *Service) destroyRetiredKEKsAtStart(ctx context.Context) error {
	e := s.epochsNow()
	if len(e.Retired) == 0 {
		return nil
	}
	members, _, err := s.kekMembers()
	if err != nil {
		return err
	}
	for _, m := range members {
		if _, err := s.destroyRetiredKEKs(ctx, m, e.Retired, "at keysvc's start (it was out of the set, or the KEK was restored into it, after the rotation that retired it)"); err != nil {
			return err
		}
	}
	return nil
}

// AdmitMember is what a token set asks before it re-admits a member (or
// lets a new token join): the KEKs of retired epochs found on it are
// destroyed (logged, audited), then its service keys are checked against
// the store's record (CheckMemberServiceKeys). A member that held retired
// KEKs and lacks the current epoch's — it was away for a whole rotation —
// is refused with ErrRetiredKEKs (which also matches
// ErrServiceKeysDiffer), saying so and what to do.
func (s *Service) AdmitMember(ctx context.Context, m KeyStore) error {
	e := s.epochsNow()
	name := tokenName(m)
	found, err := s.destroyRetiredKEKs(ctx, m, retiredEpochs(e, true), "before its re-admission to the token set (it was out of the set when the KEK rotation destroyed it on the others)")
	if err != nil {
		return err
	}
	err = s.CheckMemberServiceKeys(ctx, m)
	if err == nil {
		s.retired.forget(name)
		return nil
	}
	if !errors.Is(err, ErrServiceKeysDiffer) {
		return err
	}
	seen := s.retired.add(name, found)
	if len(seen) == 0 {
		return err
	}
	var missing []string
	for _, ks := range s.kekSpecs() {
		if _, ferr := m.FindKey(ctx, ks.Label); errors.Is(ferr, token.ErrKeyNotFound) {
			missing = append(missing, ks.Label)
		}
	}
	if len(missing) == 0 {
		return err
	}
	return fmt.Errorf("%w: %s held the KEKs of retired epoch %s (keysvc destroyed them on it) and lacks %s of epoch %d, which is in service: it was out of the set during the KEK rotation, so it cannot open keysvc's blobs and is not re-admitted. Restore the current KEKs into it by ceremony (`ceremony restore` of the backup of %s, M-of-N shares); the set re-admits it at its next probe once its service keys agree. (%w)",
		ErrRetiredKEKs, name, joinInts(seen), strings.Join(missing, " and "), e.sealEpoch(), strings.Join(missing, " and "), err)
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

// RecordTokenSetEvent writes a token set's event to the audit log (client
// "keysvc"): token_member_down (with the cause), token_member_readmitted
// (how long it was out, keys its catch-up copied and destroyed),
// token_member_synced (keys copied and destroyed at start). cmd/keysvc
// gives it to the set as SetConfig.OnEvent.
func (s *Service) RecordTokenSetEvent(ev token.SetEvent) error {
	who := fmt.Sprintf("member %s: token %q (serial %s)", ev.Member, ev.TokenLabel, ev.Serial)
	var op, detail string
	switch ev.Kind {
	case token.SetMemberDown:
		op, detail = "token_member_down", fmt.Sprintf("%s taken out of service: %s", who, clip(ev.Cause, 300))
	case token.SetMemberReadmitted:
		op, detail = "token_member_readmitted", fmt.Sprintf("%s re-admitted after %s out (%s); catch-up copied %d keys into it and destroyed %d",
			who, ev.DownFor.Round(time.Millisecond), clip(ev.Cause, 200), ev.Copied, ev.Destroyed)
	case token.SetMemberSynced:
		op, detail = "token_member_synced", fmt.Sprintf("%s brought level at keysvc's start: copied %d keys into it and destroyed %d", who, ev.Copied, ev.Destroyed)
	default:
		return fmt.Errorf("keysvc: unknown token set event %v", ev.Kind)
	}
	return s.audit(&audit.Record{Time: s.now(), Client: "keysvc", Op: op, Result: "ok", Detail: detail})
}

// clip cuts s to at most n bytes, at a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
