package keysvc

import "github.com/keyward/keyward/keysvc/audit"

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
	// Writable checks that a write transaction commits (readiness).
	Writable() error
	Close() error
}
