package audit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"
)

// Checkpoint vouches for the chain up to record Seq: its Signature, made by
// the audit key inside the token, covers Seq, Hash and Time.
type Checkpoint struct {
	Seq       uint64    `json:"seq"`
	Hash      []byte    `json:"hash"`
	Time      time.Time `json:"time"`
	Signature []byte    `json:"signature"` // ASN.1 DER ECDSA over Digest()
}

// Digest is the SHA-256 the audit key signs.
func (c *Checkpoint) Digest() []byte {
	h := sha256.New()
	h.Write([]byte("keyward-audit-checkpoint-v1"))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], c.Seq)
	h.Write(n[:])
	h.Write(c.Hash)
	h.Write([]byte(c.Time.UTC().Format(time.RFC3339Nano)))
	return h.Sum(nil)
}

// SignCheckpoint makes a checkpoint for (seq, hash) with signer.
func SignCheckpoint(signer crypto.Signer, seq uint64, hash []byte, now time.Time) (Checkpoint, error) {
	c := Checkpoint{Seq: seq, Hash: append([]byte(nil), hash...), Time: now.UTC()}
	sig, err := signer.Sign(nil, c.Digest(), crypto.SHA256)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	c.Signature = sig
	return c, nil
}

// VerifySignature checks the checkpoint's signature with pub.
func (c *Checkpoint) VerifySignature(pub *ecdsa.PublicKey) error {
	if !ecdsa.VerifyASN1(pub, c.Digest(), c.Signature) {
		return fmt.Errorf("%w: checkpoint at record %d has a bad signature", ErrTampered, c.Seq)
	}
	return nil
}

// Report is what Verify found.
type Report struct {
	Records     uint64 // records checked
	Checkpoints int    // checkpoints whose signature and hash matched
	LastSeq     uint64
	// Unsigned counts the records after the last signed checkpoint: the
	// chain links them, but nothing outside the file vouches for them yet.
	// Someone with write access to the file can truncate or rewrite records
	// newer than the last checkpoint undetected; compare LastCheckpoint with
	// a copy kept elsewhere to catch deleted checkpoints.
	Unsigned       uint64
	LastCheckpoint uint64
}

// Verifier checks a log pushed to it record by record (Add, in stored
// order) against signed checkpoints: every record must chain to the
// previous one, every checkpoint must carry a valid signature by the audit
// key and name the hash of its record, and no checkpoint may lie beyond the
// last record (a truncated log; Finish).
type Verifier struct {
	ck          *Checker
	pub         *ecdsa.PublicKey
	checkpoints []Checkpoint // sorted by Seq
	next        int          // index of the next checkpoint to meet
	rep         Report
}

// NewVerifier prepares a Verifier; checkpoints may come in any order.
func NewVerifier(checkpoints []Checkpoint, pub *ecdsa.PublicKey) (*Verifier, error) {
	if len(checkpoints) > 0 && pub == nil {
		return nil, errors.New("audit: checkpoints present but no audit public key to check them")
	}
	cps := append([]Checkpoint(nil), checkpoints...)
	sort.Slice(cps, func(i, j int) bool { return cps[i].Seq < cps[j].Seq })
	if len(cps) > 0 && cps[0].Seq == 0 {
		return nil, fmt.Errorf("%w: a checkpoint names record 0", ErrTampered)
	}
	return &Verifier{ck: NewChecker(), pub: pub, checkpoints: cps}, nil
}

// Add checks the next record and the checkpoints that name it.
func (v *Verifier) Add(r Record) error {
	if err := v.ck.Next(r); err != nil {
		return err
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
	return nil
}

// Finish reports, and fails if a checkpoint names a record past the end.
func (v *Verifier) Finish() (Report, error) {
	rep := v.rep
	rep.LastSeq, _ = v.ck.Last()
	if n := len(v.checkpoints); n > 0 {
		rep.LastCheckpoint = v.checkpoints[n-1].Seq
	}
	if rep.LastSeq > rep.LastCheckpoint {
		rep.Unsigned = rep.LastSeq - rep.LastCheckpoint
	}
	if v.next < len(v.checkpoints) {
		return rep, fmt.Errorf("%w: a signed checkpoint names record %d but the log ends at %d (records were deleted from the end)", ErrTampered, v.checkpoints[v.next].Seq, rep.LastSeq)
	}
	return rep, nil
}

// Verify is the pull form of Verifier: next returns io.EOF after the last
// record.
func Verify(next func() (Record, error), checkpoints []Checkpoint, pub *ecdsa.PublicKey) (Report, error) {
	v, err := NewVerifier(checkpoints, pub)
	if err != nil {
		return Report{}, err
	}
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
