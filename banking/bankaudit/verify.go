package bankaudit

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
)

// Report is what Verify found: keysvc/audit's report, and the head.
type Report struct {
	audit.Report
	// Empty: the trail holds no record yet (nothing to verify).
	Empty bool
	// Base is the checkpoint a pruned log starts from (nil: never pruned).
	Base *audit.Checkpoint
}

// Verify checks the whole trail in db against the bank-audit public key
// pub and anchors (audit.Anchor, from outside the machine): every record
// chains to the previous one, every checkpoint chains, is signed by pub
// and names its record's hash, and the head names the last record. The
// error names the first record that breaks (audit.ErrTampered), or says
// that no checkpoint vouches for the log (audit.ErrNoCheckpoint). It
// reads through the store's read transactions only.
func Verify(db store.DB, pub *ecdsa.PublicKey, anchors ...audit.Anchor) (Report, error) {
	var rep Report
	seq, hash, err := Head(db)
	if err != nil {
		return rep, err
	}
	base, err := readBase(db)
	if err != nil {
		return rep, err
	}
	rep.Base = base
	cps, err := Checkpoints(db)
	if err != nil {
		return rep, err
	}
	if seq == 0 && len(cps) == 0 && base == nil {
		n := 0
		if err := Records(db, 0, func(audit.Record) error { n++; return nil }); err != nil {
			return rep, err
		}
		if n == 0 {
			rep.Empty = true
			return rep, nil
		}
	}
	var v *audit.Verifier
	from := uint64(1)
	if base != nil {
		if v, err = baseVerifier(base, cps, pub, anchors); err != nil {
			return rep, err
		}
		from = base.Seq
	} else if v, err = audit.NewVerifier(cps, pub, anchors...); err != nil {
		return rep, err
	}
	first := true
	next := 0 // pruned log: the next checkpoint to meet (Verifier has none)
	err = Records(db, from, func(r audit.Record) error {
		if first && base != nil && (r.Seq != base.Seq || !bytes.Equal(r.Hash, base.Hash)) {
			return fmt.Errorf("%w at record %d: the log starts at record %d, not at the base checkpoint's record %d with its hash (records after the prune point were deleted or edited)", audit.ErrTampered, r.Seq, r.Seq, base.Seq)
		}
		first = false
		if err := v.Add(r); err != nil {
			return err
		}
		for base != nil && next < len(cps) && cps[next].Seq == r.Seq {
			if err := cps[next].VerifySignature(pub); err != nil {
				return err
			}
			if !bytes.Equal(cps[next].Hash, r.Hash) {
				return fmt.Errorf("%w at record %d: the signed checkpoint names a different hash (the chain was rewritten)", audit.ErrTampered, r.Seq)
			}
			next++
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	rep.Report, err = v.Finish()
	if base != nil {
		// The Verifier saw no checkpoint; the base and those after it
		// were checked above.
		if errors.Is(err, audit.ErrNoCheckpoint) {
			err = nil
		}
		if err == nil && next < len(cps) {
			err = fmt.Errorf("%w: a signed checkpoint names record %d but the log ends at %d (records were deleted from the end)", audit.ErrTampered, cps[next].Seq, rep.LastSeq)
		}
		rep.Checkpoints = next
		last := cps[len(cps)-1]
		rep.LastCheckpoint, rep.LastCheckpointHash = last.Seq, last.Hash
		rep.Unsigned = rep.LastSeq - min(rep.LastSeq, last.Seq)
	}
	if err != nil {
		return rep, err
	}
	if rep.LastSeq != seq || !bytes.Equal(rep.LastHash, hash) {
		return rep, fmt.Errorf("%w: the trail's head names record %d but the log ends at record %d (the newest records were deleted, or the head was edited)", audit.ErrTampered, seq, rep.LastSeq)
	}
	return rep, nil
}

// baseVerifier checks a pruned log's checkpoints from its base: the base
// is signed by pub and is the oldest stored checkpoint, every later one
// follows it; the Verifier then starts at the base's record.
func baseVerifier(base *audit.Checkpoint, cps []audit.Checkpoint, pub *ecdsa.PublicKey, anchors []audit.Anchor) (*audit.Verifier, error) {
	if err := base.VerifySignature(pub); err != nil {
		return nil, fmt.Errorf("the base checkpoint of the pruned log: %w", err)
	}
	if len(cps) == 0 || !bytes.Equal(cps[0].Digest(), base.Digest()) {
		return nil, fmt.Errorf("%w: the oldest stored checkpoint is not the base checkpoint %d (record %d) the log was pruned to", audit.ErrTampered, base.Index, base.Seq)
	}
	for i := 1; i < len(cps); i++ {
		if err := cps[i].Follows(&cps[i-1]); err != nil {
			return nil, err
		}
	}
	// The Verifier checks checkpoint links from the first: give it the
	// chain after the base re-based, i.e. only the checkpoints it must
	// meet by record, all of which Follows checked above.
	for _, a := range anchors {
		if a.Seq < base.Seq {
			return nil, fmt.Errorf("the expected record %d was pruned (the log starts at record %d)", a.Seq, base.Seq)
		}
	}
	v, err := audit.NewVerifier(nil, pub, anchors...)
	if err != nil {
		return nil, err
	}
	return v.From(base.Seq), nil
}

func readBase(db store.DB) (*audit.Checkpoint, error) {
	var base *audit.Checkpoint
	err := db.View(func(tx store.Tx) error {
		b, err := bucket(tx, bucketMeta)
		if err != nil {
			return err
		}
		raw := b.Get(keyBase)
		if raw == nil {
			return nil
		}
		c, err := audit.UnmarshalCheckpoint(raw)
		if err != nil {
			return fmt.Errorf("%w: the base checkpoint: %w", audit.ErrTampered, err)
		}
		base = &c
		return nil
	})
	return base, err
}

// KMS is what KMSSigner needs of keysvc (banking.KMS has it).
type KMS interface {
	Sign(ctx context.Context, name string, req wire.SignRequest) (wire.SignResult, error)
}

// KMSSigner signs checkpoints with a keysvc sign key (bank-audit: ec-p256,
// hsm) over the checkpoint's SHA-256 digest, as banking's receipts are
// signed; keysvc answers "kw:v<n>:<DER>" and SignDigest returns the DER.
type KMSSigner struct {
	KMS KMS
	Key string
}

// SignDigest asks keysvc to sign digest.
func (s KMSSigner) SignDigest(ctx context.Context, digest []byte) ([]byte, error) {
	res, err := s.KMS.Sign(ctx, s.Key, wire.SignRequest{Digest: digest})
	if err != nil {
		return nil, fmt.Errorf("bankaudit: keysvc sign with %s: %w", s.Key, err)
	}
	if res.Confirmation != nil {
		return nil, fmt.Errorf("bankaudit: key %s needs a holder's confirmation; the audit key must not be confirm-required", s.Key)
	}
	v, err := wire.ParseVersioned(res.Signature, wire.ErrInvalidSignature)
	if err != nil {
		return nil, fmt.Errorf("bankaudit: keysvc's signature with %s: %w", s.Key, err)
	}
	return v.Bytes, nil
}

// ParsePublicKeyPEM reads the bank-audit public key (PKIX PEM, as keysvc's
// public-key answer and `bankcli`/`keysvc` write it).
func ParsePublicKeyPEM(b []byte) (*ecdsa.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("bankaudit: no PEM block in the audit public key")
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("bankaudit: audit public key: %w", err)
	}
	return PublicKeyFromPKIX(pub)
}
