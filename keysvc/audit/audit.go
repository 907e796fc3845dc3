// Package audit is keysvc's tamper-evident audit trail (R-SRV-3).
//
// Every operation and administrative action becomes a Record. Records form a
// hash chain: each record's Hash covers its own fields and the previous
// record's Hash, so editing, deleting or reordering a record breaks every
// hash after it. Periodically a Checkpoint — the sequence number and hash of
// the latest record — is signed with an audit key held in the token, so an
// attacker who rewrites the whole chain (and recomputes every hash) still
// cannot produce a valid checkpoint signature.
//
// Records never hold plaintext, PINs or key material, nor any unkeyed
// function of request data: only who did what to which key version, the
// result, and a keyed digest of the request (DigestScheme, digest.go).
//
// Checkpoints chain too (checkpoint.go): each signs the previous
// checkpoint's digest and its own count, so a deleted checkpoint breaks
// the chain. What no file can show on its own is a log cut back to an
// earlier checkpoint and given a new tail: officers anchor it from outside
// with the sequence number and hash keysvc logs at each checkpoint
// (Anchor; `keysvc audit verify -expect`).
//
// Storage is not this package's business: keysvc's store appends records
// (computing Seq, Prev and Hash inside its own transaction with Seal) and
// hands them back for Verify.
package audit

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/sm3"
)

// Record is one audited event.
type Record struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Client  string    `json:"client"`            // authenticated caller, or "scheduler"
	Key     string    `json:"key,omitempty"`     // key name
	Version int       `json:"version,omitempty"` // key version, 0 when not applicable
	Op      string    `json:"op"`                // "sign", "rotate", "destroy", ...
	Result  string    `json:"result"`            // "ok" or a stable error code
	Detail  string    `json:"detail,omitempty"`  // non-secret context, e.g. "items=20"
	// RequestDigest is the keyed digest of the request body (DigestScheme
	// ":" hex), so a record can be matched to a request by whoever holds
	// the token, without storing the request or any unkeyed function of
	// it. Stores written before the keyed scheme held a bare hex SHA-256
	// here; keysvc migrates them on start.
	RequestDigest string `json:"request_digest,omitempty"`
	Prev          []byte `json:"prev"` // Hash of record Seq-1 (32 zero bytes for Seq 1)
	Hash          []byte `json:"hash"`
}

// ErrTampered is returned by Verify when the chain does not hold.
var ErrTampered = errors.New("audit: chain broken")

// Genesis is the Prev of the first record.
var Genesis = make([]byte, sm3.Size)

// ComputeHash returns SM3 (GB/T 32905, the national hash the bank's
// standard requires: R-TOK-6) over Prev and a fixed, length-prefixed
// encoding of every other field. It does not look at r.Hash.
func (r *Record) ComputeHash() []byte {
	h := sm3.New()
	h.Write([]byte("keyward-audit-v2-sm3"))
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var v [8]byte // not n: field() reuses n for the length prefix
	binary.BigEndian.PutUint64(v[:], r.Seq)
	field(v[:])
	field([]byte(r.Time.UTC().Format(time.RFC3339Nano)))
	field([]byte(r.Client))
	field([]byte(r.Key))
	binary.BigEndian.PutUint64(v[:], uint64(int64(r.Version)))
	field(v[:])
	field([]byte(r.Op))
	field([]byte(r.Result))
	field([]byte(r.Detail))
	field([]byte(r.RequestDigest))
	field(r.Prev)
	return h.Sum(nil)
}

// Seal sets Seq, Prev and Hash so that r follows a record with sequence
// number prevSeq and hash prevHash (Genesis and 0 for the first record).
func (r *Record) Seal(prevSeq uint64, prevHash []byte) {
	r.Seq = prevSeq + 1
	r.Prev = append([]byte(nil), prevHash...)
	r.Time = r.Time.UTC()
	r.Hash = r.ComputeHash()
}

// Marshal encodes a record for storage.
func (r *Record) Marshal() ([]byte, error) { return json.Marshal(r) }

// Unmarshal decodes a stored record.
func Unmarshal(b []byte) (Record, error) {
	var r Record
	err := json.Unmarshal(b, &r)
	return r, err
}

// Checker verifies a chain record by record, in order. Feed it every record
// with Next; it stops at the first fault.
type Checker struct {
	seq  uint64
	prev []byte
	from bool // the first record may start mid-chain (NewCheckerFrom)
}

// NewChecker starts at the beginning of the log.
func NewChecker() *Checker { return &Checker{prev: Genesis} }

// NewCheckerFrom starts at record seq, mid-chain: the first record must be
// number seq and match its own hash, and its Prev is taken on trust. The
// caller must anchor what it checks (a signed checkpoint or an Anchor at
// or after seq); keysvc's start-up check does, to avoid reading the whole
// log at every start.
func NewCheckerFrom(seq uint64) *Checker {
	if seq <= 1 {
		return NewChecker()
	}
	return &Checker{seq: seq - 1, from: true}
}

// Next checks that r follows the previous record.
func (c *Checker) Next(r Record) error {
	if c.from && r.Seq == c.seq+1 {
		c.prev = r.Prev
	}
	c.from = false
	switch {
	case r.Seq != c.seq+1:
		return fmt.Errorf("%w at record %d: expected sequence number %d (a record was deleted or reordered)", ErrTampered, r.Seq, c.seq+1)
	case !bytes.Equal(r.Prev, c.prev):
		return fmt.Errorf("%w at record %d: previous-hash link does not match record %d", ErrTampered, r.Seq, c.seq)
	case !bytes.Equal(r.Hash, r.ComputeHash()):
		return fmt.Errorf("%w at record %d: contents do not match its hash (the record was edited)", ErrTampered, r.Seq)
	}
	c.seq, c.prev = r.Seq, r.Hash
	return nil
}

// Last returns the sequence number and hash of the last checked record.
func (c *Checker) Last() (uint64, []byte) { return c.seq, c.prev }
