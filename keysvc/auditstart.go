package keysvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/token"
)

// auditDigester derives the per-process request-digest key: the token's
// AuditDigestKeyLabel key (a generic secret, created on first start) MACs
// audit.DigestKeyLabel inside the token. The result lives only in this
// process's memory, never on disk; one derivation at start keeps a token
// call off every request (issue 12).
func (s *Service) auditDigester(ctx context.Context) (*audit.Digester, error) {
	k, err := s.ensureKey(ctx, token.KeySpec{Type: token.KeyGenericSecret, Label: AuditDigestKeyLabel})
	if err != nil {
		return nil, err
	}
	sub, err := s.hmac(ctx, k, []byte(audit.DigestKeyLabel))
	if err != nil {
		return nil, fmt.Errorf("keysvc: derive the audit digest key: %w", tokenErr(err))
	}
	defer token.Wipe(sub)
	return audit.NewDigester(sub)
}

// migrateAudit moves a log written before keyed request digests and
// chained checkpoints (format 1) to AuditFormat: it verifies the old
// chain and its checkpoints first and refuses to start on a broken one,
// then has the store rekey every digest (HMAC of the old SHA-256: the
// value a new record of the same request holds), reseal the chain, drop
// the old checkpoints, append an audit_migrated record and store a fresh
// signed checkpoint, all in one transaction.
func (s *Service) migrateAudit() error {
	f, err := s.store.AuditFormat()
	if err != nil || f >= AuditFormat {
		return err
	}
	cps, err := s.store.Checkpoints()
	if err != nil {
		return err
	}
	v, err := audit.NewV1Verifier(cps, s.AuditPublicKey())
	if err == nil {
		err = s.store.AuditRecords(0, v.Add)
	}
	var rep audit.Report
	if err == nil {
		rep, err = v.Finish()
	}
	if err != nil {
		return fmt.Errorf("%w: the log written by the previous keysvc must be migrated, but it does not verify (%w); %s", ErrAuditBroken, err, auditBrokenHelp)
	}
	if rep.Checkpoints == 0 {
		s.log.Warn("migrating an audit log that has no signed checkpoint: only its own chain vouches for it", "records", rep.Records)
	}
	final := &audit.Record{Time: s.now(), Client: "keysvc", Op: "audit_migrated", Result: "ok"}
	err = s.store.MigrateAudit(AuditMigration{Last: rep.LastSeq, LastHash: rep.LastHash, Rekey: s.digester.Rekey, Final: final,
		Sign: func(seq uint64, hash []byte) (audit.Checkpoint, error) {
			cp, err := audit.SignCheckpoint(s.auditKey, nil, seq, hash, s.now())
			return cp, tokenErr(err)
		}})
	if err != nil {
		return err
	}
	s.log.Info("audit log migrated to keyed request digests and chained checkpoints; earlier backups still hold the unkeyed digests",
		"detail", final.Detail, "old_checkpoints_verified", rep.Checkpoints)
	return nil
}

// checkAuditAtStart refuses a log that does not hold together (ErrAuditBroken):
// the checkpoint chain must be unbroken with a valid newest signature, the
// records from the newest checkpoint (or the oldest anchor) to the head
// must chain and match them, and every Config.AuditAnchors must be in the
// log. Older records are covered by the checkpoint chain and checked in
// full by `keysvc audit verify`; reading them all at every start would make
// start-up grow with the log.
func (s *Service) checkAuditAtStart() error {
	cps, err := s.store.Checkpoints()
	if err != nil {
		return err
	}
	if err := audit.VerifyChain(cps, s.AuditPublicKey()); err != nil {
		return fmt.Errorf("%w: %w; %s", ErrAuditBroken, err, auditBrokenHelp)
	}
	head, headHash, err := s.store.LastAudit()
	if err != nil {
		return err
	}
	from := head + 1
	if n := len(cps); n > 0 {
		from = cps[n-1].Seq
	}
	for _, a := range s.cfg.AuditAnchors {
		from = min(from, a.Seq)
	}
	v, err := audit.NewVerifier(cps, s.AuditPublicKey(), s.cfg.AuditAnchors...)
	if err != nil {
		return fmt.Errorf("%w: %w; %s", ErrAuditBroken, err, auditBrokenHelp)
	}
	v.From(from)
	// The head is checked against the record stored at its seq, not
	// against the last record read: on a clustered store the other nodes
	// append between LastAudit and the walk, so the walk may read past the
	// head (every record it reads is verified all the same).
	var atHead []byte
	rep, err := s.walkAudit(from, head, func(r audit.Record) error {
		if r.Seq == head {
			atHead = r.Hash
		}
		return v.Add(r)
	}, v)
	switch {
	case errors.Is(err, audit.ErrNoCheckpoint):
		if head > 0 {
			s.log.Warn("the audit log has no signed checkpoint yet; one is made at the next scheduler tick", "records", head)
		}
	case err != nil:
		return fmt.Errorf("%w: %w; %s", ErrAuditBroken, err, auditBrokenHelp)
	case head > 0 && rep.LastSeq < head:
		return fmt.Errorf("%w: the chain head in audit-meta (record %d) is past the last stored record (%d): records were deleted from the end; %s", ErrAuditBroken, head, rep.LastSeq, auditBrokenHelp)
	case head > 0 && !bytes.Equal(atHead, headHash):
		return fmt.Errorf("%w: the chain head in audit-meta names a hash that stored record %d does not have: the end of the log was rewritten; %s", ErrAuditBroken, head, auditBrokenHelp)
	}
	if n := len(cps); n > 0 {
		s.lastCP = &cps[n-1]
		s.logCheckpoint("audit log checked at start", cps[n-1])
	}
	return nil
}

// walkAudit feeds the records from seq from on to add (which feeds v),
// and returns v's report; from beyond head feeds none.
func (s *Service) walkAudit(from, head uint64, add func(audit.Record) error, v *audit.Verifier) (audit.Report, error) {
	if from <= head {
		if err := s.store.AuditRecords(from, add); err != nil {
			return audit.Report{}, err
		}
	}
	return v.Finish()
}
