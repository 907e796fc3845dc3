package memtoken

import (
	"context"
	"crypto/aes"
	"fmt"
	"slices"

	"github.com/keyward/keyward/token"
)

// Replication as token.Store does it (ExportReplica, ImportReplica,
// Replicable), for unit tests of token.Set: a key generated Extractable
// leaves wrapped (AES key wrap with padding) under the replication key,
// which InstallReplicationKey puts in the token, and only there.

// InstallReplicationKey installs the replication key (32 bytes), as the
// officers' `ceremony replication-key` does in a real token.
func (t *Token) InstallReplicationKey(value []byte) {
	t.mu.Lock()
	t.repl = slices.Clone(value)
	t.mu.Unlock()
}

// Replicable reports whether the replication key is installed.
func (t *Token) Replicable(context.Context) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down != nil {
		return false, t.down
	}
	return t.repl != nil, nil
}

// ExportReplica wraps an extractable key under the replication key.
func (t *Token) ExportReplica(_ context.Context, ref token.KeyRef) (token.Replica, error) {
	k, err := t.held(ref)
	if err != nil {
		return token.Replica{}, err
	}
	t.mu.Lock()
	repl := t.repl
	t.mu.Unlock()
	if repl == nil {
		return token.Replica{}, fmt.Errorf("%w: token %q has no replication key", token.ErrKeyNotFound, t.label)
	}
	if !k.extractable {
		return token.Replica{}, fmt.Errorf("%w: %q is not extractable under a trusted key", token.ErrKeyUnextractable, k.label)
	}
	raw, err := k.marshal()
	if err != nil {
		return token.Replica{}, err
	}
	blob, err := wrapKWP(repl, raw)
	if err != nil {
		return token.Replica{}, err
	}
	pub, _ := k.public()
	return token.Replica{Label: k.label, ID: slices.Clone(k.id), Type: k.typ, Usage: k.usage, Blob: blob, Public: pub}, nil
}

// ImportReplica unwraps a replica under the replication key as a new key
// (a label in use is token.ErrDuplicateLabel).
func (t *Token) ImportReplica(_ context.Context, r token.Replica) (token.KeyRef, error) {
	t.mu.Lock()
	repl, down := t.repl, t.down
	_, dup := t.keys[r.Label]
	t.mu.Unlock()
	switch {
	case down != nil:
		return nil, down
	case repl == nil:
		return nil, fmt.Errorf("%w: token %q has no replication key", token.ErrKeyNotFound, t.label)
	case dup:
		return nil, fmt.Errorf("%w: %q", token.ErrDuplicateLabel, r.Label)
	}
	raw, err := unwrapKWP(repl, r.Blob)
	if err != nil {
		return nil, err
	}
	k, err := unmarshalKey(raw, token.KeySpec{Type: r.Type, Label: r.Label, Usage: r.Usage})
	if err != nil {
		return nil, err
	}
	k.id, k.extractable = slices.Clone(r.ID), true
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.keys[r.Label]; ok {
		return nil, fmt.Errorf("%w: %q", token.ErrDuplicateLabel, r.Label)
	}
	t.keys[r.Label] = k
	return k, nil
}

// ReplicationCheckValue identifies the replication key (AES of a zero
// block), as token.Store's does: equal on two tokens exactly when they hold
// the same key.
func (t *Token) ReplicationCheckValue(context.Context) ([]byte, error) {
	t.mu.Lock()
	repl := t.repl
	t.mu.Unlock()
	if repl == nil {
		return nil, fmt.Errorf("%w: token %q has no replication key", token.ErrKeyNotFound, t.label)
	}
	b, err := aes.NewCipher(repl)
	if err != nil {
		return nil, err
	}
	out := make([]byte, aes.BlockSize)
	b.Encrypt(out, out)
	return out, nil
}
