// Package kv holds the few store and identifier helpers the banking
// packages share (banking, banking/auth/... and banking/ledger):
// identifier checks, composite keys, and the one JSON form of a stored
// record (Encode, Decode, and Get and Put over a bucket).
package kv

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/keyward/keyward/banking/store"
)

// MaxIDLen is the longest customer id, purpose, account name or device id
// accepted (bytes).
const MaxIDLen = 128

// ErrBadID is returned for an empty, over-long or control-character id.
// Callers wrap it in their own sentinel.
var ErrBadID = errors.New("invalid identifier")

// CheckID refuses an id that could not be a key part: empty, longer than
// MaxIDLen, not UTF-8, or holding a control character (0x00 separates key
// parts). The id itself is never echoed in the error: it may be personal.
func CheckID(field, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrBadID, field)
	}
	if len(s) > MaxIDLen {
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrBadID, field, MaxIDLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrBadID, field)
	}
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return fmt.Errorf("%w: %s holds a control character", ErrBadID, field)
	}
	return nil
}

// Key joins parts with 0x00, which CheckID keeps out of every part, so
// ("a","bc") and ("ab","c") never collide.
func Key(parts ...string) []byte {
	n := len(parts)
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			k = append(k, 0)
		}
		k = append(k, p...)
	}
	return k
}

// Prefix is Key(parts...) followed by the separator: every key that starts
// with these parts and has one more.
func Prefix(parts ...string) []byte { return append(Key(parts...), 0) }

// Ensure creates the buckets if missing.
func Ensure(db store.DB, names ...[]byte) error {
	if err := db.Ensure(names...); err != nil {
		return fmt.Errorf("create buckets: %w", err)
	}
	return nil
}

// Encode is the stored form of a record: its JSON. Every JSON record the
// banking packages keep in the store (banking/store) goes through Encode and Decode (the
// ledger's account records have a binary codec of their own, for speed).
func Encode(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return raw, nil
}

// Decode reads a record Encode wrote into v.
func Decode(raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	return nil
}

// Get decodes the record at key into v; found is false when absent.
func Get(b store.Bucket, key []byte, v any) (found bool, err error) {
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	return true, Decode(raw, v)
}

// Put stores v at key in its Encode form.
func Put(b store.Bucket, key []byte, v any) error {
	raw, err := Encode(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}
