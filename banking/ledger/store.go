package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/keyward/keyward/banking/internal/kv"
	"github.com/keyward/keyward/banking/store"
)

// Storage helpers: records in the ledger's buckets (layout in the
// package documentation).

func getAccount(tx store.Tx, id string) (Account, error) {
	var a Account
	v := tx.Bucket(bucketAccounts).Get([]byte(id))
	if v == nil {
		return a, fmt.Errorf("%w: %s", ErrAccountNotFound, truncate(id, 24))
	}
	err := decodeAccount(v, &a)
	return a, err
}

// putJSON and decodeJSON are banking/internal/kv's record codec with the
// ledger's ErrCorrupt.
func putJSON(b store.Bucket, k []byte, v any) error {
	buf, err := kv.Encode(v)
	if err != nil {
		return fmt.Errorf("%w: %x: %w", ErrCorrupt, k, err)
	}
	return b.Put(k, buf)
}

func decodeJSON(v []byte, dst any) error {
	if err := kv.Decode(v, dst); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return nil
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func ownerKey(owner, id string) []byte {
	return append(append([]byte(owner), 0), id...)
}

// entryRecord is one leg of a posting as stored; Prev links an account's
// entries newest to oldest, starting at Account.LastSeq.
type entryRecord struct {
	Account string `json:"account"`
	Amount  int64  `json:"amount"`  // negative: debit
	Balance int64  `json:"balance"` // the account's balance after the posting
	Prev    uint64 `json:"prev"`    // the account's previous posting (0: none)
}

// Legs of a posting in the entries bucket.
const (
	legDebit  byte = 0
	legCredit byte = 1
)

// entryKey is seq ‖ leg: entries are appended in journal order.
func entryKey(seq uint64, leg byte) []byte {
	k := make([]byte, 9)
	binary.BigEndian.PutUint64(k, seq)
	k[8] = leg
	return k
}

// legOf reads posting seq and the entry of account id in it. The errors
// carry no sentinel; callers decide whether a miss is corruption.
func legOf(tx store.Tx, seq uint64, id string) (Receipt, entryRecord, error) {
	var r Receipt
	var e entryRecord
	v := tx.Bucket(bucketJournal).Get(u64(seq))
	if v == nil {
		return r, e, fmt.Errorf("no posting %d", seq)
	}
	if err := kv.Decode(v, &r); err != nil {
		return r, e, fmt.Errorf("posting %d: %w", seq, err)
	}
	leg := legDebit
	switch id {
	case r.From:
	case r.To:
		leg = legCredit
	default:
		return r, e, fmt.Errorf("posting %d does not touch account %s", seq, id)
	}
	ev := tx.Bucket(bucketEntries).Get(entryKey(seq, leg))
	if ev == nil {
		return r, e, fmt.Errorf("posting %d has no entry for %s", seq, id)
	}
	if err := kv.Decode(ev, &e); err != nil || e.Account != id {
		return r, e, fmt.Errorf("entry %d/%d is not %s's (%v)", seq, leg, id, err)
	}
	return r, e, nil
}

// storeErr leaves the ledger's own errors and context errors as they are
// and marks anything else (the store's faults, I/O) ErrStore.
func storeErr(op string, err error) error {
	if err == nil {
		return nil
	}
	for _, c := range ErrorCodes {
		if errors.Is(err, c.Err) {
			return err
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrStore, op, err)
}

// appendOnly tells a bbolt bucket that this transaction writes only at
// its end (pack pages full); other backends have no pages to pack.
func appendOnly(b store.Bucket) {
	if a, ok := b.(store.AppendOnly); ok {
		a.AppendOnly()
	}
}
