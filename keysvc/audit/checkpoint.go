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

// Verify walks records (in stored order) and checkpoints (in Seq order):
// every record must chain to the previous one, every checkpoint must carry a
// valid signature by pub and name the hash of its record, and the last
// checkpoint must not be beyond the last record (a truncated log). next
// returns io.EOF after the last record.
func Verify(next func() (Record, error), checkpoints []Checkpoint, pub *ecdsa.PublicKey) (Report, error) {
	var rep Report
	if len(checkpoints) > 0 && pub == nil {
		return rep, errors.New("audit: checkpoints present but no audit public key to check them")
	}
	checkpoints = append([]Checkpoint(nil), checkpoints...)
	sort.Slice(checkpoints, func(i, j int) bool { return checkpoints[i].Seq < checkpoints[j].Seq })
	if len(checkpoints) > 0 && checkpoints[0].Seq == 0 {
		return rep, fmt.Errorf("%w: a checkpoint names record 0", ErrTampered)
	}
	ck := NewChecker()
	ci := 0
	for {
		r, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return rep, err
		}
		if err := ck.Next(r); err != nil {
			return rep, err
		}
		rep.Records++
		for ci < len(checkpoints) && checkpoints[ci].Seq == r.Seq {
			cp := checkpoints[ci]
			if err := cp.VerifySignature(pub); err != nil {
				return rep, err
			}
			if !bytes.Equal(cp.Hash, r.Hash) {
				return rep, fmt.Errorf("%w at record %d: the signed checkpoint names a different hash (the chain was rewritten)", ErrTampered, r.Seq)
			}
			rep.Checkpoints++
			ci++
		}
	}
	rep.LastSeq, _ = ck.Last()
	if n := len(checkpoints); n > 0 {
		rep.LastCheckpoint = checkpoints[n-1].Seq
	}
	if rep.LastSeq > rep.LastCheckpoint {
		rep.Unsigned = rep.LastSeq - rep.LastCheckpoint
	}
	if ci < len(checkpoints) {
		return rep, fmt.Errorf("%w: a signed checkpoint names record %d but the log ends at %d (records were deleted from the end)", ErrTampered, checkpoints[ci].Seq, rep.LastSeq)
	}
	return rep, nil
}
