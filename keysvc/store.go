package keysvc

import (
	"context"

	"github.com/keyward/keyward/keysvc/audit"
)

// AuditFormat is the current audit log format: keyed request digests
// (audit.DigestScheme) and chained checkpoints.
const AuditFormat = 2

// AuditMigration is what Store.MigrateAudit does, in one transaction, to
// a format-1 log whose chain ends at (Last, LastHash) — the head the caller
// verified; any other head aborts it:
//
//  1. check the old chain again while reading it;
//  2. replace each record's RequestDigest with Rekey(old) and reseal the
//     chain (new Prev and Hash for every record);
//  3. drop every checkpoint (they sign hashes of the old digests);
//  4. append Final, its Detail set to the counts
//     ("records=… digests_rekeyed=… checkpoints_dropped=…");
//  5. store Sign(Final's seq, hash), the new chain's first checkpoint;
//  6. mark the log AuditFormat.
type AuditMigration struct {
	Last     uint64
	LastHash []byte
	Rekey    func(old string) (string, error)
	Final    *audit.Record
	Sign     func(seq uint64, hash []byte) (audit.Checkpoint, error)
}

// AuditSyncer is implemented by a Store whose appends are durable before
// they are chained: etcdstore's nodes put records into an inbox and one
// elected sequencer seals them onto the chain a moment later, so Audit
// (and the other appends) leave the record's Seq, Prev and Hash zero.
// SyncAudit returns once every record acknowledged before the call is
// chained (readable by AuditRecords and covered by LastAudit), or fails
// with wire.ErrStore when ctx ends first. The Service calls it before it signs
// a checkpoint; readers of the log (audit verify) call it before reading.
type AuditSyncer interface {
	SyncAudit(ctx context.Context) error
}

// Store keeps keys and the audit log. The bbolt implementation
// (keysvc/boltstore) is the embedded default; a clustered backend (etcd,
// R-AV-4) implements the same interface, so the lifecycle code never
// changes with the backend.
//
// Every method that takes an audit record appends it in the same
// transaction as the change: either both are durable or neither is.
type Store interface {
	// CreateKey stores a new key; ErrKeyExists if the name is taken.
	CreateKey(k *Key, rec *audit.Record) error
	// GetKey returns a copy of the key; ErrKeyNotFound if absent.
	GetKey(name string) (*Key, error)
	// ListKeys returns copies of the keys whose names sort after after
	// ("" = from the first), by name, at most limit of them (0 = all).
	ListKeys(after string, limit int) ([]*Key, error)
	// UpdateKey runs fn on a copy of the key inside one transaction and
	// stores the result with rec (which may be nil; fn may fill in its
	// Result and Detail). An error from fn aborts without storing
	// anything, and is returned as is.
	UpdateKey(name string, fn func(k *Key) error, rec *audit.Record) (*Key, error)
	// Audit appends one record durably (group-committed with concurrent
	// appends). When it fails, the caller must fail the operation.
	Audit(rec *audit.Record) error
	// AuditRecords calls fn for each record in order, from seq from.
	AuditRecords(from uint64, fn func(audit.Record) error) error
	// LastAudit returns the sequence number and hash of the newest record
	// (0 and audit.Genesis when empty).
	LastAudit() (uint64, []byte, error)
	// AddCheckpoint stores a signed checkpoint; Checkpoints lists them by Seq.
	AddCheckpoint(c audit.Checkpoint) error
	Checkpoints() ([]audit.Checkpoint, error)
	// AuditFormat is the log's format: 1 for a log written before keyed
	// request digests and chained checkpoints, AuditFormat after.
	AuditFormat() (int, error)
	// MigrateAudit moves a format-1 log to AuditFormat in one
	// transaction (AuditMigration).
	MigrateAudit(m AuditMigration) error
	// ServiceKeys returns the recorded identities of keysvc's own keys in
	// the token (nil before the first record); SetServiceKeys replaces
	// the record and appends rec in the same transaction.
	ServiceKeys() (*ServiceKeyRecord, error)
	SetServiceKeys(r *ServiceKeyRecord, rec *audit.Record) error
	// KEKEpochs returns the KEK epoch record (nil before the first
	// rotation: every blob is under epoch 1). SetKEKEpochs replaces it,
	// and the service-key record too when sk is not nil, and appends rec,
	// all in one transaction (kekepoch.go).
	KEKEpochs() (*KEKEpochs, error)
	SetKEKEpochs(e *KEKEpochs, sk *ServiceKeyRecord, rec *audit.Record) error
	// Writable checks that a write transaction commits (readiness).
	Writable() error
	Close() error
}
