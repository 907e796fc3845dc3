package token

import (
	"context"
	"errors"

	"github.com/keyward/keyward/pkcs11shim"
)

// Replicating hsm keys between the tokens of a set (issue 15 items 4 and
// 5): a key generated replicable (KeySpec.Extractable on a token key, which
// gives it CKA_WRAP_WITH_TRUSTED) is exported from one token wrapped under
// that token's replication key and imported into another under the same
// key, installed there by the security officers (cmd/ceremony
// replication-key). The key is never in clear outside a token.

// Replica is one key wrapped under the replication key, with what the
// importing token needs to re-create it (pkcs11shim.Replica).
type Replica = pkcs11shim.Replica

// ReplicationKeyLabel is the replication key's CKA_LABEL.
const ReplicationKeyLabel = pkcs11shim.ReplicationKeyLabel

// Replication errors, pkcs11shim's sentinels under token's names.
var (
	// ErrNotTrustedOnly: the key is extractable without
	// CKA_WRAP_WITH_TRUSTED; it is not replicated (a replica must stay
	// trusted-only).
	ErrNotTrustedOnly = pkcs11shim.ErrNotTrustedOnly
	// ErrKeyUnextractable: the key may not leave the token at all (made
	// without KeySpec.Extractable): it cannot be replicated.
	ErrKeyUnextractable = pkcs11shim.ErrKeyUnextractable
	// ErrUntrustedReplicationKey: a key labelled ReplicationKeyLabel is on
	// the token but is not the officers' (no CKA_TRUSTED).
	ErrUntrustedReplicationKey = pkcs11shim.ErrUntrustedReplicationKey
)

// ExportReplica wraps the key under this token's replication key
// (pkcs11shim.Pool.ExportReplica). A token without one is ErrKeyNotFound.
func (s *Store) ExportReplica(ctx context.Context, ref KeyRef) (Replica, error) {
	k, err := s.key(ref)
	if err != nil {
		return Replica{}, err
	}
	return s.pool.ExportReplica(ctx, k)
}

// ImportReplica re-creates r in this token under its replication key
// (pkcs11shim.Pool.ImportReplica): same label, CKA_ID, type and usage. A
// label already on the token is ErrDuplicateLabel; a blob made under
// another replication key is ErrDecrypt.
func (s *Store) ImportReplica(ctx context.Context, r Replica) (KeyRef, error) {
	k, err := s.pool.ImportReplica(ctx, r)
	if err != nil {
		return nil, err
	}
	return p11Ref{k}, nil
}

// Replicable reports whether the token holds the officers' replication key.
// A key with its label that is not trusted is ErrUntrustedReplicationKey,
// not false: someone put it there.
func (s *Store) Replicable(ctx context.Context) (bool, error) {
	_, err := s.pool.ReplicationKey(ctx)
	if errors.Is(err, ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// ReplicationCheckValue is the check value of the token's replication key
// (method pkcs11shim.CheckAESKWPFixed): equal on two tokens exactly when
// they hold the same replication key.
func (s *Store) ReplicationCheckValue(ctx context.Context) ([]byte, error) {
	k, err := s.pool.ReplicationKey(ctx)
	if err != nil {
		return nil, err
	}
	_, v, err := s.pool.CheckValue(ctx, k)
	return v, err
}

// InstallReplicationKey creates the replication key from value (32 bytes)
// on the token as the SO, for the replication-key ceremony: the SO login
// with soPIN is a guarded attempt on the SO counter (as Unlock's). No pool
// of this process may be logged in to the token (pkcs11shim.ErrLoggedIn,
// before any PIN is tried). It returns the key's check value. See
// pkcs11shim.Module.InstallReplicationKey.
func (t *Admin) InstallReplicationKey(soPIN, value []byte) ([]byte, error) {
	so := func(login pkcs11shim.LoginFunc) error {
		return t.guard.Attempt(t.soID(), func() error { return login(soPIN) })
	}
	return t.mod.InstallReplicationKey(t.sel, value, so)
}
