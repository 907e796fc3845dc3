package keysvc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
)

// KEK epochs (issue 15 item 2). Every blob keysvc keeps — a `wrapped`
// version wrapped under the wrapping KEK, SM material sealed under the SM
// KEK — records the epoch of the KEKs that sealed it (Version.KEKEpoch;
// 0 reads as epoch 1, what every blob made before epochs is). Epoch 1's
// KEKs are keysvc-kek and keysvc-sm-kek; epoch n ≥ 2's are
// keysvc-kek-e<n> and keysvc-sm-kek-e<n> (KEKLabelFor, SMKEKLabelFor).
//
// A rotation (kekrotation.go) moves every live blob to the next epoch
// and then destroys the old epoch's KEKs in the token. After that a blob
// of the old epoch — a version destroyed before the rotation, kept in a
// backup of the store or in freed pages of the bbolt file — no longer
// opens anywhere: destruction of a wrapped or SM version is then
// cryptographic, not only the removal of a record. A blob whose epoch is
// retired is refused with wire.ErrVersionNotUsable.
//
// The epoch record (KEKEpochs) sits in the store beside the service-key
// record and changes with it and an audit record in one transaction.

// KEKLabelFor is the label of epoch's wrapping KEK (AES-256, wrap and
// unwrap): keysvc-kek for epoch 1 (and 0), keysvc-kek-e<n> after.
func KEKLabelFor(epoch int) string {
	if epoch <= 1 {
		return KEKLabel
	}
	return KEKLabel + "-e" + strconv.Itoa(epoch)
}

// SMKEKLabelFor is the label of epoch's SM KEK (AES-256, encrypt and
// decrypt; seals SM key material with AES-GCM): keysvc-sm-kek for epoch 1,
// keysvc-sm-kek-e<n> after.
func SMKEKLabelFor(epoch int) string {
	if epoch <= 1 {
		return SMKEKLabel
	}
	return SMKEKLabel + "-e" + strconv.Itoa(epoch)
}

// kekLabelEpoch parses a KEK label: its epoch, and whether it is the SM
// KEK. ok is false for any other label.
func kekLabelEpoch(label string) (epoch int, sm, ok bool) {
	for _, base := range []string{SMKEKLabel, KEKLabel} { // the longer prefix first
		if label == base {
			return 1, base == SMKEKLabel, true
		}
		if rest, found := strings.CutPrefix(label, base+"-e"); found {
			n, err := strconv.Atoi(rest)
			if err != nil || n < 2 || strconv.Itoa(n) != rest {
				return 0, false, false
			}
			return n, base == SMKEKLabel, true
		}
	}
	return 0, false, false
}

// epoch is the KEK epoch that sealed v's blob.
func (v *Version) epoch() int {
	if v.KEKEpoch < 1 {
		return 1
	}
	return v.KEKEpoch
}

// KEKEpochs is the stored record of keysvc's KEK epochs.
type KEKEpochs struct {
	// Current is the epoch in service (the one being left while Target is set).
	Current int `json:"current"`
	// Target is the epoch a running rotation re-wraps to (0: none). New
	// blobs are sealed under it as soon as the rotation starts.
	Target int `json:"target,omitempty"`
	// Retiring is the epoch whose KEKs are being destroyed (0: none).
	Retiring int `json:"retiring,omitempty"`
	// Retired are the epochs whose KEKs were destroyed.
	Retired       []int      `json:"retired,omitempty"`
	StartedAt     *time.Time `json:"started_at,omitempty"`
	StartedBy     string     `json:"started_by,omitempty"`
	FinishedAt    *time.Time `json:"finished_at,omitempty"`
	DestroyedKEKs []string   `json:"destroyed_keks,omitempty"`
}

func (e KEKEpochs) clone() KEKEpochs {
	e.Retired = slices.Clone(e.Retired)
	e.DestroyedKEKs = slices.Clone(e.DestroyedKEKs)
	return e
}

// state is the rotation state of e (wire.KEKIdle, …).
func (e *KEKEpochs) state() string {
	switch {
	case e.Target > 0:
		return wire.KEKRewrapping
	case e.Retiring > 0:
		return wire.KEKRetiring
	}
	return wire.KEKIdle
}

// sealEpoch is the epoch new blobs are sealed under.
func (e *KEKEpochs) sealEpoch() int {
	if e.Target > 0 {
		return e.Target
	}
	return e.Current
}

// live are the epochs whose KEKs keysvc holds and checks at start.
func (e *KEKEpochs) live() []int {
	if e.Target > 0 {
		return []int{e.Current, e.Target}
	}
	return []int{e.Current}
}

// kekPair is one epoch's KEKs in the token.
type kekPair struct{ wrap, sm token.KeyRef }

// kekState is the Service's view of its epochs: the record and the KEKs
// of the live epochs.
//
// mu is held for reading by every use of a KEK for the length of the token
// call (withKEK), and for writing only to install or retire an epoch's
// KEKs: retiring an epoch therefore waits for every operation still using
// its KEKs before they are destroyed. sealMu is held for reading by key
// creation and rotation from before a version's blob is sealed until the
// version is stored (holdSealEpoch); starting a KEK rotation takes it for
// writing to switch the sealing epoch, so no blob sealed under the old
// epoch can be stored after the rotation's first pass began. Order:
// sealMu before mu; neither is taken twice by one goroutine.
type kekState struct {
	sealMu sync.RWMutex
	mu     sync.RWMutex
	epochs KEKEpochs
	keks   map[int]kekPair
}

// ErrKEKMissing is a start-up error of New: the token lacks a KEK of an
// epoch the store's record says is live.
var ErrKEKMissing = errors.New("keysvc: a key-encryption key of a live epoch is missing from the token")

// kekSpecs are the KEK service keys of the live epochs (serviceKeySpecs).
func (s *Service) kekSpecs() []ServiceKeySpec {
	var out []ServiceKeySpec
	e := s.epochsNow() // under the lock: the set's re-admission check runs beside the rotation
	for _, e := range e.live() {
		out = append(out, epochKEKSpecs(e)...)
	}
	return out
}

// epochKEKSpecs are the two KEKs of epoch e: ServiceKeySpecs' keysvc-kek
// and keysvc-sm-kek under e's labels.
func epochKEKSpecs(e int) []ServiceKeySpec {
	var out []ServiceKeySpec
	for _, ks := range ServiceKeySpecs() {
		switch ks.Label {
		case KEKLabel:
			ks.Label = KEKLabelFor(e)
		case SMKEKLabel:
			ks.Label = SMKEKLabelFor(e)
		default:
			continue
		}
		out = append(out, ks)
	}
	return out
}

// loadKEKEpochs reads the epoch record (before checkServiceKeys, which
// checks the live epochs' KEKs).
func (s *Service) loadKEKEpochs() error {
	e, err := s.store.KEKEpochs()
	if err != nil {
		return err
	}
	if e == nil {
		e = &KEKEpochs{Current: 1}
	}
	if e.Current < 1 || (e.Target != 0 && e.Target != e.Current+1) {
		return fmt.Errorf("%w: the store's KEK epoch record is inconsistent (current %d, target %d)", wire.ErrStore, e.Current, e.Target)
	}
	s.kekst.epochs = *e
	s.kekst.keks = map[int]kekPair{}
	return nil
}

// loadKEKs finds the live epochs' KEKs in the token (after
// checkServiceKeys has checked or created them).
func (s *Service) loadKEKs(ctx context.Context) error {
	for _, e := range s.kekst.epochs.live() {
		p, err := s.findKEKPair(ctx, e)
		if err != nil {
			return err
		}
		s.kekst.keks[e] = p
	}
	return nil
}

func (s *Service) findKEKPair(ctx context.Context, epoch int) (kekPair, error) {
	var p kekPair
	var err error
	if p.wrap, err = s.ensureKey(ctx, token.KeySpec{Type: token.KeyAES256, Label: KEKLabelFor(epoch)}); err != nil {
		return p, err
	}
	if p.sm, err = s.ensureKey(ctx, token.KeySpec{Type: token.KeyAES256, Label: SMKEKLabelFor(epoch)}); err != nil {
		return p, err
	}
	return p, nil
}

// holdSealEpoch is held by key creation and rotation while a new
// version's blob is sealed and stored (see kekState).
func (s *Service) holdSealEpoch() func() {
	s.kekst.sealMu.RLock()
	return s.kekst.sealMu.RUnlock
}

// sealKEK runs fn with the KEK new blobs are sealed under and its epoch.
func (s *Service) sealKEK(sm bool, fn func(epoch int, kek token.KeyRef) error) error {
	s.kekst.mu.RLock()
	defer s.kekst.mu.RUnlock()
	e := s.kekst.epochs.sealEpoch()
	p, ok := s.kekst.keks[e]
	if !ok {
		return fmt.Errorf("%w: keysvc holds no KEK of epoch %d", wire.ErrTokenUnavailable, e)
	}
	if sm {
		return fn(e, p.sm)
	}
	return fn(e, p.wrap)
}

// errEpochGone marks a blob whose epoch's KEKs keysvc no longer holds.
var errEpochGone = errors.New("keysvc: KEK epoch not held")

// withKEK runs fn with the KEK that sealed v's blob (the wrapping KEK, or
// the SM KEK when sm). A retired epoch is wire.ErrVersionNotUsable.
func (s *Service) withKEK(k *Key, v *Version, sm bool, fn func(kek token.KeyRef) error) error {
	s.kekst.mu.RLock()
	p, ok := s.kekst.keks[v.epoch()]
	if !ok {
		e := s.kekst.epochs
		s.kekst.mu.RUnlock()
		why := "keysvc does not hold its KEKs"
		if slices.Contains(e.Retired, v.epoch()) || v.epoch() == e.Retiring {
			why = "its KEKs were destroyed in a KEK rotation, so the blob can no longer be opened"
		}
		return fmt.Errorf("%w: %w: version %d of %q is sealed under KEK epoch %d; %s", wire.ErrVersionNotUsable, errEpochGone, v.Version, k.Name, v.epoch(), why)
	}
	defer s.kekst.mu.RUnlock()
	if sm {
		return fn(p.sm)
	}
	return fn(p.wrap)
}

// freshVersion is version v of the newest cached copy of k, when that copy
// is newer than k: a request that read a key just before the KEK rotation
// re-wrapped it finds the re-wrapped blob there.
func (s *Service) freshVersion(k *Key, v *Version) (*Key, *Version, bool) {
	fk, err := s.cachedKey(k.Name)
	if err != nil || fk.Revision <= k.Revision {
		return nil, nil, false
	}
	fv := fk.Version(v.Version)
	if fv == nil || fv.epoch() == v.epoch() {
		return nil, nil, false
	}
	return fk, fv, true
}

// IsServiceKeyLabel reports whether label names one of keysvc's service
// keys: one of ServiceKeyLabels, or a KEK of any epoch (keysvc-kek-e<n>,
// keysvc-sm-kek-e<n>).
func IsServiceKeyLabel(label string) bool {
	_, _, kek := kekLabelEpoch(label)
	return kek || slices.Contains(ServiceKeyLabels, label)
}
