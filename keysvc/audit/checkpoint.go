package audit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm3"
)

// Checkpoint vouches for the chain up to record Seq: its Signature, made by
// the audit key inside the token, covers Seq, Hash and Time, its Index (1
// for a log's first checkpoint, then one more each time) and Prev, the
// Digest of checkpoint Index-1. Checkpoints therefore chain like records:
// deleting one, or inserting one, breaks every later link (issue 12).
//
// Index 0 marks a v1 checkpoint, written before checkpoints chained; only
// the migration reads those (NewV1Verifier).
type Checkpoint struct {
	Seq       uint64    `json:"seq"`
	Hash      []byte    `json:"hash"`
	Time      time.Time `json:"time"`
	Index     uint64    `json:"index,omitempty"`
	Prev      []byte    `json:"prev,omitempty"`
	Signature []byte    `json:"signature"` // ASN.1 DER ECDSA over Digest()
}

// Errors of checkpoint verification besides ErrTampered.
var (
	// ErrNoCheckpoint: the log has no signed checkpoint, so nothing but
	// the file itself vouches for it.
	ErrNoCheckpoint = errors.New("audit: no signed checkpoint")
	// ErrUnmigrated: the log was written before keyed request digests and
	// chained checkpoints; keysvc migrates it on start.
	ErrUnmigrated = errors.New("audit: log in the format before keyed digests and chained checkpoints")
)

// Digest is the SHA-256 the audit key signs; it is also what the next
// checkpoint names as Prev.
func (c *Checkpoint) Digest() []byte {
	h := sha256.New()
	var n [8]byte
	if c.Index == 0 { // v1: kept bit for bit, so the migration can check old logs
		h.Write([]byte("keyward-audit-checkpoint-v1"))
		binary.BigEndian.PutUint64(n[:], c.Seq)
		h.Write(n[:])
		h.Write(c.Hash)
		h.Write([]byte(c.Time.UTC().Format(time.RFC3339Nano)))
		return h.Sum(nil)
	}
	h.Write([]byte("keyward-audit-checkpoint-v2"))
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field(binary.BigEndian.AppendUint64(nil, c.Index))
	field(binary.BigEndian.AppendUint64(nil, c.Seq))
	field(c.Hash)
	field([]byte(c.Time.UTC().Format(time.RFC3339Nano)))
	field(c.Prev)
	return h.Sum(nil)
}

// SignCheckpoint makes the checkpoint for (seq, hash) that follows prev
// (nil for a log's first checkpoint) and signs it with signer.
func SignCheckpoint(signer crypto.Signer, prev *Checkpoint, seq uint64, hash []byte, now time.Time) (Checkpoint, error) {
	c := Checkpoint{Seq: seq, Hash: append([]byte(nil), hash...), Time: now.UTC(), Index: 1}
	if prev != nil {
		if prev.Index == 0 {
			return Checkpoint{}, fmt.Errorf("%w: cannot chain to a v1 checkpoint", ErrUnmigrated)
		}
		if seq <= prev.Seq {
			return Checkpoint{}, fmt.Errorf("audit: a checkpoint at record %d cannot follow one at record %d", seq, prev.Seq)
		}
		c.Index, c.Prev = prev.Index+1, prev.Digest()
	}
	sig, err := signer.Sign(nil, c.Digest(), crypto.SHA256)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	c.Signature = sig
	return c, nil
}

// Follows checks that c is the checkpoint right after prev (nil: c is the
// first): the next Index, Prev naming prev's Digest, a later record. It
// does not check signatures.
func (c *Checkpoint) Follows(prev *Checkpoint) error {
	switch {
	case c.Index == 0:
		return fmt.Errorf("%w: checkpoint at record %d is a v1 checkpoint; start keysvc once to migrate the log", ErrUnmigrated, c.Seq)
	case prev == nil && (c.Index != 1 || len(c.Prev) != 0):
		return fmt.Errorf("%w: the first stored checkpoint (at record %d) is number %d: checkpoints before it were deleted", ErrTampered, c.Seq, c.Index)
	case prev == nil:
		return nil
	case c.Index != prev.Index+1:
		return fmt.Errorf("%w: checkpoint %d (at record %d) follows checkpoint %d: checkpoints were deleted or inserted", ErrTampered, c.Index, c.Seq, prev.Index)
	case !bytes.Equal(c.Prev, prev.Digest()):
		return fmt.Errorf("%w: checkpoint %d (at record %d) does not name checkpoint %d as its predecessor (a checkpoint was replaced)", ErrTampered, c.Index, c.Seq, prev.Index)
	case c.Seq <= prev.Seq:
		return fmt.Errorf("%w: checkpoint %d names record %d, not after record %d of checkpoint %d", ErrTampered, c.Index, c.Seq, prev.Seq, prev.Index)
	}
	return nil
}

// NamesRecord checks, before c is stored, that it names a record of a log
// whose newest record is last: Seq between 1 and last, rec (the stored
// record at Seq, nil when there is none) present, and its hash c.Hash.
// refusal says why c would not fit (a store returns it as an invalid
// argument: stored, c would make every later verification report
// tampering); err is a stored record that does not decode. The two
// stores check this, then c.Follows(newest stored checkpoint), in the
// same order, so they refuse the same checkpoints with the same words.
func (c *Checkpoint) NamesRecord(last uint64, rec []byte) (refusal, err error) {
	switch {
	case c.Seq == 0 || c.Seq > last:
		return fmt.Errorf("checkpoint names audit record %d but the log ends at %d", c.Seq, last), nil
	case rec == nil:
		return fmt.Errorf("checkpoint names audit record %d, which is missing", c.Seq), nil
	}
	r, err := Unmarshal(rec)
	if err != nil {
		return nil, fmt.Errorf("audit record %d: %w", c.Seq, err)
	}
	if !bytes.Equal(r.Hash, c.Hash) {
		return fmt.Errorf("checkpoint hash differs from that of audit record %d", c.Seq), nil
	}
	return nil, nil
}

// SortCheckpoints sorts cps by Seq (stable), the order Verify and
// VerifyChain expect; stores list checkpoints through it.
func SortCheckpoints(cps []Checkpoint) {
	slices.SortStableFunc(cps, func(a, b Checkpoint) int { return cmpSeq(a.Seq, b.Seq) })
}

// VerifyChain checks that checkpoints (sorted by Seq) form one unbroken
// chain from the first and that the newest carries a valid signature by
// pub. As each Digest covers Prev, the newest signature vouches for every
// earlier checkpoint's contents: this is the cheap start-up check.
func VerifyChain(cps []Checkpoint, pub *ecdsa.PublicKey) error {
	for i := range cps {
		var prev *Checkpoint
		if i > 0 {
			prev = &cps[i-1]
		}
		if err := cps[i].Follows(prev); err != nil {
			return err
		}
	}
	if n := len(cps); n > 0 {
		return cps[n-1].VerifySignature(pub)
	}
	return nil
}

// VerifySignature checks the checkpoint's signature with pub.
func (c *Checkpoint) VerifySignature(pub *ecdsa.PublicKey) error {
	if pub == nil || !ecdsa.VerifyASN1(pub, c.Digest(), c.Signature) {
		return fmt.Errorf("%w: checkpoint at record %d has a bad signature", ErrTampered, c.Seq)
	}
	return nil
}

// UnmarshalCheckpoint decodes a stored checkpoint.
func UnmarshalCheckpoint(b []byte) (Checkpoint, error) {
	var c Checkpoint
	if err := json.Unmarshal(b, &c); err != nil {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint does not decode: %w", err)
	}
	return c, nil
}

// Anchor is a record hash known from outside the machine: the sequence
// number and hash keysvc logs at each checkpoint ("audit checkpoint …
// expect=<seq>:<hash>"), copied by officers into a transcript or log they
// keep. A verification with an anchor fails unless the chain holds exactly
// that record, so a log cut back and given a new tail cannot pass.
type Anchor struct {
	Seq  uint64
	Hash []byte
}

// ParseAnchor reads "<seq>:<hex hash>".
func ParseAnchor(s string) (Anchor, error) {
	seqStr, hashHex, ok := strings.Cut(strings.TrimSpace(s), ":")
	seq, err := strconv.ParseUint(seqStr, 10, 64)
	if !ok || err != nil || seq == 0 {
		return Anchor{}, fmt.Errorf("audit: anchor %q: want <sequence number>:<hex hash>, as keysvc logs at each checkpoint", s)
	}
	hash, err := hex.DecodeString(hashHex)
	if err != nil || len(hash) != sm3.Size {
		return Anchor{}, fmt.Errorf("audit: anchor %q: the hash must be %d hex digits", s, 2*sm3.Size)
	}
	return Anchor{Seq: seq, Hash: hash}, nil
}

// String is the form ParseAnchor reads.
func (a Anchor) String() string { return fmt.Sprintf("%d:%x", a.Seq, a.Hash) }

// Report is what Verify found.
type Report struct {
	Records     uint64 // records checked
	Checkpoints int    // checkpoints whose signature and hash matched
	Anchors     int    // anchors found in the chain
	LastSeq     uint64
	LastHash    []byte
	// Unsigned counts the records after the last signed checkpoint: the
	// chain links them, but nothing outside the file vouches for them yet.
	// Someone with write access to the file can cut the log back to any
	// checkpoint and write a new tail; only an Anchor from outside the
	// machine catches that.
	Unsigned       uint64
	LastCheckpoint uint64
	// LastCheckpointHash is the record hash the newest checkpoint signs:
	// with LastCheckpoint, the anchor to keep.
	LastCheckpointHash []byte
}

// Verifier checks a log pushed to it record by record (Add, in stored
// order) against signed checkpoints: every record must chain to the
// previous one and carry a keyed request digest, the checkpoints must
// chain (Follows), every checkpoint must carry a valid signature by the
// audit key and name the hash of its record, no checkpoint or anchor may
// lie beyond the last record, and a log must have a checkpoint (Finish).
type Verifier struct {
	ck          *Checker
	pub         *ecdsa.PublicKey
	checkpoints []Checkpoint // sorted by Seq
	next        int          // index of the next checkpoint to meet
	anchors     []Anchor     // sorted by Seq
	nextAnchor  int
	v1          bool
	rep         Report
}

// NewVerifier prepares a Verifier; checkpoints and anchors may come in any
// order. A v1 checkpoint is refused with ErrUnmigrated.
func NewVerifier(checkpoints []Checkpoint, pub *ecdsa.PublicKey, anchors ...Anchor) (*Verifier, error) {
	v, err := newVerifier(checkpoints, pub)
	if err != nil {
		return nil, err
	}
	for i := range v.checkpoints {
		var prev *Checkpoint
		if i > 0 {
			prev = &v.checkpoints[i-1]
		}
		if err := v.checkpoints[i].Follows(prev); err != nil {
			return nil, err
		}
	}
	v.anchors = slices.Clone(anchors)
	slices.SortFunc(v.anchors, func(a, b Anchor) int { return cmpSeq(a.Seq, b.Seq) })
	return v, nil
}

// From makes v start mid-chain at record seq (NewCheckerFrom). Checkpoints
// before seq are left to the checkpoint chain (NewVerifier checked their
// links; VerifyChain checks the newest signature, which covers them), so
// seq should be at most the newest checkpoint's and every anchor's.
func (v *Verifier) From(seq uint64) *Verifier {
	v.ck = NewCheckerFrom(seq)
	for v.next < len(v.checkpoints) && v.checkpoints[v.next].Seq < seq {
		v.next++
	}
	for v.nextAnchor < len(v.anchors) && v.anchors[v.nextAnchor].Seq < seq {
		v.nextAnchor++
	}
	return v
}

// NewV1Verifier checks a log written before keyed digests and chained
// checkpoints, for its migration: records chain as always, checkpoints
// must all be v1, and unkeyed digests are accepted.
func NewV1Verifier(checkpoints []Checkpoint, pub *ecdsa.PublicKey) (*Verifier, error) {
	v, err := newVerifier(checkpoints, pub)
	if err != nil {
		return nil, err
	}
	for _, c := range v.checkpoints {
		if c.Index != 0 {
			return nil, fmt.Errorf("%w: a chained checkpoint (number %d) in a v1 log", ErrTampered, c.Index)
		}
	}
	v.v1 = true
	return v, nil
}

func newVerifier(checkpoints []Checkpoint, pub *ecdsa.PublicKey) (*Verifier, error) {
	if len(checkpoints) > 0 && pub == nil {
		return nil, errors.New("audit: checkpoints present but no audit public key to check them")
	}
	cps := slices.Clone(checkpoints)
	SortCheckpoints(cps)
	if len(cps) > 0 && cps[0].Seq == 0 {
		return nil, fmt.Errorf("%w: a checkpoint names record 0", ErrTampered)
	}
	return &Verifier{ck: NewChecker(), pub: pub, checkpoints: cps}, nil
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Add checks the next record and the checkpoints and anchors that name it.
func (v *Verifier) Add(r Record) error {
	if err := v.ck.Next(r); err != nil {
		return err
	}
	if !v.v1 {
		if err := r.checkDigest(); err != nil {
			return err
		}
	}
	v.rep.Records++
	for v.next < len(v.checkpoints) && v.checkpoints[v.next].Seq == r.Seq {
		cp := v.checkpoints[v.next]
		if err := cp.VerifySignature(v.pub); err != nil {
			return err
		}
		if !bytes.Equal(cp.Hash, r.Hash) {
			return fmt.Errorf("%w at record %d: the signed checkpoint names a different hash (the chain was rewritten)", ErrTampered, r.Seq)
		}
		v.rep.Checkpoints++
		v.next++
	}
	for v.nextAnchor < len(v.anchors) && v.anchors[v.nextAnchor].Seq == r.Seq {
		if !bytes.Equal(v.anchors[v.nextAnchor].Hash, r.Hash) {
			return fmt.Errorf("%w at record %d: its hash %x is not the expected %x (the log was cut back and rewritten)", ErrTampered, r.Seq, r.Hash, v.anchors[v.nextAnchor].Hash)
		}
		v.rep.Anchors++
		v.nextAnchor++
	}
	return nil
}

// Finish reports, and fails if a checkpoint or anchor names a record past
// the end, or (outside v1) when a log has no checkpoint: ErrNoCheckpoint.
func (v *Verifier) Finish() (Report, error) {
	rep := v.rep
	rep.LastSeq, rep.LastHash = v.ck.Last()
	rep.LastHash = bytes.Clone(rep.LastHash)
	if n := len(v.checkpoints); n > 0 {
		rep.LastCheckpoint = v.checkpoints[n-1].Seq
		rep.LastCheckpointHash = bytes.Clone(v.checkpoints[n-1].Hash)
	}
	if rep.LastSeq > rep.LastCheckpoint {
		rep.Unsigned = rep.LastSeq - rep.LastCheckpoint
	}
	switch {
	case v.next < len(v.checkpoints):
		return rep, fmt.Errorf("%w: a signed checkpoint names record %d but the log ends at %d (records were deleted from the end)", ErrTampered, v.checkpoints[v.next].Seq, rep.LastSeq)
	case v.nextAnchor < len(v.anchors):
		return rep, fmt.Errorf("%w: the expected record %d is not in the log, which ends at %d (the log shrank)", ErrTampered, v.anchors[v.nextAnchor].Seq, rep.LastSeq)
	case !v.v1 && len(v.checkpoints) == 0:
		return rep, fmt.Errorf("%w: %d records and no signed checkpoint vouch for this log (keysvc makes one every scheduler interval and at shutdown; if it made any, they were deleted)", ErrNoCheckpoint, rep.Records)
	}
	return rep, nil
}

// Verify is the pull form of Verifier: next returns io.EOF after the last
// record.
func Verify(next func() (Record, error), checkpoints []Checkpoint, pub *ecdsa.PublicKey, anchors ...Anchor) (Report, error) {
	v, err := NewVerifier(checkpoints, pub, anchors...)
	if err != nil {
		return Report{}, err
	}
	return v.Run(next)
}

// Run feeds the records next returns (io.EOF after the last) to Add, then
// Finishes.
func (v *Verifier) Run(next func() (Record, error)) (Report, error) {
	for {
		r, err := next()
		if err == io.EOF {
			return v.Finish()
		}
		if err != nil {
			return v.rep, err
		}
		if err := v.Add(r); err != nil {
			return v.rep, err
		}
	}
}
