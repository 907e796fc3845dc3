// Package storetest is the conformance suite of the banking/store contract:
// every backend (bbolt's store.Bolt, PostgreSQL's pgstore) runs the same
// tests, so that banking's packages can rely on the contract and not on a
// backend.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.DB { return openFresh(t) })
//	}
//
// open must return an empty store of its own (a fresh file, a fresh
// database) and close it in t.Cleanup. The suite covers buckets,
// get/put/delete, bytewise order (0x00 and 0xff included), cursors both
// ways with Seek and deletion while walking, sequences, KeyN,
// read-your-writes, rollback on error, View's snapshot, lost updates (32
// concurrent read-modify-write increments must add up exactly, through
// Update and through Batch) and Batch with a failing function.
//
// Faults of a backend (the sticky ErrBackend) cannot be provoked the same
// way on every backend; each backend's own tests prove them.
package storetest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/store"
)

// Run runs the conformance suite against stores made by open.
func Run(t *testing.T, open func(t *testing.T) store.DB) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.DB)
	}{
		{"Buckets", testBuckets},
		{"GetPutDelete", testGetPutDelete},
		{"WritesRefusedInView", testWritesRefusedInView},
		{"BytewiseOrder", testBytewiseOrder},
		{"CursorBothWaysAndSeek", testCursor},
		{"CursorAcrossPagesWithOwnWrites", testCursorOwnWrites},
		{"DeleteDuringCursor", testDeleteDuringCursor},
		{"Sequences", testSequences},
		{"KeyN", testKeyN},
		{"ReadYourWrites", testReadYourWrites},
		{"RollbackOnError", testRollback},
		{"ViewSnapshot", testViewSnapshot},
		{"NoLostUpdates", func(t *testing.T, db store.DB) { testCounter(t, db, db.Update) }},
		{"NoLostUpdatesBatch", func(t *testing.T, db store.DB) { testCounter(t, db, db.Batch) }},
		{"BatchOneFails", testBatchOneFails},
		{"PrefetchChangesNothing", testPrefetch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var (
	bA = []byte("alpha")
	bB = []byte("beta")
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, db store.DB, bucket, key []byte) []byte {
	t.Helper()
	var out []byte
	must(t, db.View(func(tx store.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return store.ErrBucketMissing
		}
		if v := b.Get(key); v != nil {
			out = append([]byte{}, v...)
		}
		return nil
	}))
	return out
}

func put(t *testing.T, db store.DB, bucket []byte, kvs ...string) {
	t.Helper()
	must(t, db.Update(func(tx store.Tx) error {
		b := tx.Bucket(bucket)
		for i := 0; i < len(kvs); i += 2 {
			if err := b.Put([]byte(kvs[i]), []byte(kvs[i+1])); err != nil {
				return err
			}
		}
		return nil
	}))
}

// walk returns the bucket's keys (and values) walking forwards.
func walk(t *testing.T, db store.DB, bucket []byte) (keys, vals []string) {
	t.Helper()
	must(t, db.View(func(tx store.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			keys = append(keys, string(k))
			vals = append(vals, string(v))
			return nil
		})
	}))
	return keys, vals
}

func eq(t *testing.T, what string, got, want []string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(want) {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

func testBuckets(t *testing.T, db store.DB) {
	if db.Backend() == "" {
		t.Fatal("Backend() is empty")
	}
	must(t, db.View(func(tx store.Tx) error {
		if tx.Writable() {
			t.Error("View's transaction says it is writable")
		}
		if b := tx.Bucket(bA); b != nil {
			t.Errorf("Bucket(%q) before Ensure = %v, want nil", bA, b)
		}
		return nil
	}))
	must(t, db.Ensure(bA, bB))
	must(t, db.Ensure(bA)) // idempotent
	put(t, db, bA, "k", "in alpha")
	put(t, db, bB, "k", "in beta")
	if got := string(get(t, db, bA, []byte("k"))); got != "in alpha" {
		t.Fatalf("alpha/k = %q", got)
	}
	if got := string(get(t, db, bB, []byte("k"))); got != "in beta" {
		t.Fatalf("beta/k = %q (buckets must not share keys)", got)
	}
	must(t, db.Ensure(bA)) // Ensure again keeps the contents
	if got := string(get(t, db, bA, []byte("k"))); got != "in alpha" {
		t.Fatalf("alpha/k after a second Ensure = %q", got)
	}
	must(t, db.Update(func(tx store.Tx) error {
		if !tx.Writable() {
			t.Error("Update's transaction says it is not writable")
		}
		if tx.Bucket([]byte("never-made")) != nil {
			t.Error("Bucket of a name never ensured is not nil")
		}
		return nil
	}))
}

func testGetPutDelete(t *testing.T, db store.DB) {
	must(t, db.Ensure(bA))
	if v := get(t, db, bA, []byte("absent")); v != nil {
		t.Fatalf("absent key = %q", v)
	}
	put(t, db, bA, "k1", "v1", "k2", "v2")
	put(t, db, bA, "k1", "v1'") // overwrite
	if got := string(get(t, db, bA, []byte("k1"))); got != "v1'" {
		t.Fatalf("k1 = %q after overwrite", got)
	}
	// An empty value is present, not absent.
	must(t, db.Update(func(tx store.Tx) error { return tx.Bucket(bA).Put([]byte("empty"), []byte{}) }))
	if v := get(t, db, bA, []byte("empty")); v == nil || len(v) != 0 {
		t.Fatalf("empty value read back as %v (nil means absent)", v)
	}
	must(t, db.Update(func(tx store.Tx) error {
		b := tx.Bucket(bA)
		if err := b.Delete([]byte("k2")); err != nil {
			return err
		}
		return b.Delete([]byte("never-there")) // not an error
	}))
	if v := get(t, db, bA, []byte("k2")); v != nil {
		t.Fatalf("k2 = %q after Delete", v)
	}
	keys, _ := walk(t, db, bA)
	eq(t, "keys", keys, []string{"empty", "k1"})
	// An empty key is refused and stores nothing.
	err := db.Update(func(tx store.Tx) error { return tx.Bucket(bA).Put(nil, []byte("x")) })
	if err == nil {
		t.Fatal("Put with an empty key succeeded")
	}
}

func testWritesRefusedInView(t *testing.T, db store.DB) {
	must(t, db.Ensure(bA))
	put(t, db, bA, "k", "v")
	must(t, db.View(func(tx store.Tx) error {
		b := tx.Bucket(bA)
		if err := b.Put([]byte("k"), []byte("w")); err == nil {
			t.Error("Put in View succeeded")
		}
		if err := b.Delete([]byte("k")); err == nil {
			t.Error("Delete in View succeeded")
		}
		if _, err := b.NextSequence(); err == nil {
			t.Error("NextSequence in View succeeded")
		}
		return nil
	}))
	if got := string(get(t, db, bA, []byte("k"))); got != "v" {
		t.Fatalf("k = %q after refused writes", got)
	}
}

// orderKeys are in bytewise order, and would not be in most collations.
var orderKeys = []string{"\x00", "\x00\x00", "\x00\x01", "\x01", "A", "B", "Z", "_", "a", "ab", "b", "\x7f", "\x80", "\xc3\xa9", "\xfe", "\xff", "\xff\x00", "\xff\xff"}

func testBytewiseOrder(t *testing.T, db store.DB) {
	must(t, db.Ensure(bA))
	// Insert in a scrambled order, in two transactions.
	var kvs []string
	for i := len(orderKeys) - 1; i >= 0; i -= 2 {
		kvs = append(kvs, orderKeys[i], "v"+orderKeys[i])
	}
	put(t, db, bA, kvs...)
	kvs = kvs[:0]
	for i := len(orderKeys) - 2; i >= 0; i -= 2 {
		kvs = append(kvs, orderKeys[i], "v"+orderKeys[i])
	}
	put(t, db, bA, kvs...)
	want := append([]string{}, orderKeys...)
	sort.Slice(want, func(i, j int) bool { return bytes.Compare([]byte(want[i]), []byte(want[j])) < 0 })
	eq(t, "the fixture", want, orderKeys) // the list itself is sorted
	keys, vals := walk(t, db, bA)
	eq(t, "ForEach order", keys, orderKeys)
	for i, k := range keys {
		if vals[i] != "v"+k {
			t.Fatalf("value of %q = %q", k, vals[i])
		}
	}
	var back []string
	must(t, db.View(func(tx store.Tx) error {
		c := tx.Bucket(bA).Cursor()
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			back = append(back, string(k))
		}
		return nil
	}))
	for i, j := 0, len(back)-1; i < j; i, j = i+1, j-1 {
		back[i], back[j] = back[j], back[i]
	}
	eq(t, "Last/Prev order reversed", back, orderKeys)
}

func key(i int) []byte { return []byte(fmt.Sprintf("key-%04d", i)) }

func testCursor(t *testing.T, db store.DB) {
	must(t, db.Ensure(bA, bB))
	// 300 keys, even numbers only: crosses any page size below 150.
	must(t, db.Update(func(tx store.Tx) error {
		b := tx.Bucket(bA)
		for i := 0; i < 600; i += 2 {
			if err := b.Put(key(i), []byte(fmt.Sprint(i))); err != nil {
				return err
			}
		}
		return nil
	}))
	must(t, db.View(func(tx store.Tx) error {
		c := tx.Bucket(bA).Cursor()
		n := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if string(k) != string(key(2*n)) || string(v) != fmt.Sprint(2*n) {
				t.Fatalf("forward step %d: %q=%q", n, k, v)
			}
			n++
		}
		if n != 300 {
			t.Fatalf("forward walk saw %d keys, want 300", n)
		}
		if k, v := c.Next(); k != nil || v != nil {
			t.Fatalf("Next past the end = %q, %q", k, v)
		}
		n = 0
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			if string(k) != string(key(598-2*n)) {
				t.Fatalf("backward step %d: %q", n, k)
			}
			n++
		}
		if n != 300 {
			t.Fatalf("backward walk saw %d keys, want 300", n)
		}
		// Seek: exact, between two keys, before the first, past the last.
		for _, s := range []struct {
			seek string
			want string
		}{{"key-0200", "key-0200"}, {"key-0201", "key-0202"}, {"", "key-0000"}, {"a", "key-0000"}, {"key-0598", "key-0598"}, {"key-0599", ""}, {"zzz", ""}} {
			k, v := c.Seek([]byte(s.seek))
			if string(k) != s.want {
				t.Fatalf("Seek(%q) = %q, want %q", s.seek, k, s.want)
			}
			if k != nil && string(v) != fmt.Sprint(atoi(string(k[4:]))) {
				t.Fatalf("Seek(%q) value = %q", s.seek, v)
			}
		}
		// Change direction in the middle, across a page boundary.
		c.Seek(key(300))
		k, _ := c.Next()
		if string(k) != string(key(302)) {
			t.Fatalf("Next after Seek(300) = %q", k)
		}
		k, _ = c.Prev()
		if string(k) != string(key(300)) {
			t.Fatalf("Prev after Next = %q", k)
		}
		k, _ = c.Prev()
		if string(k) != string(key(298)) {
			t.Fatalf("second Prev = %q", k)
		}
		for i := 0; i < 140; i++ {
			k, _ = c.Prev()
		}
		if string(k) != string(key(18)) {
			t.Fatalf("140 Prev later = %q, want key-0018", k)
		}
		if k, _ := c.First(); string(k) != string(key(0)) {
			t.Fatalf("First = %q", k)
		}
		if k, _ := c.Prev(); k != nil {
			t.Fatalf("Prev before the first = %q", k)
		}
		// An empty bucket.
		e := tx.Bucket(bB).Cursor()
		if k, _ := e.First(); k != nil {
			t.Fatalf("First of an empty bucket = %q", k)
		}
		if k, _ := e.Last(); k != nil {
			t.Fatalf("Last of an empty bucket = %q", k)
		}
		if k, _ := e.Seek([]byte("x")); k != nil {
			t.Fatalf("Seek in an empty bucket = %q", k)
		}
		return nil
	}))
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func testCursorOwnWrites(t *testing.T, db store.DB) {
	must(t, db.Ensure(bA))
	must(t, db.Update(func(tx store.Tx) error {
		b := tx.Bucket(bA)
		for i := 0; i < 600; i += 2 {
			if err := b.Put(key(i), []byte("old")); err != nil {
				return err
			}
		}
		return nil
	}))
	// In one transaction: add odd keys, delete multiples of 3, overwrite
	// multiples of 5; every cursor of the transaction must see the result.
	want := map[int]string{}
	for i := 0; i < 600; i += 2 {
		want[i] = "old"
	}
	must(t, db.Update(func(tx store.Tx) error {
		b := tx.Bucket(bA)
		for i := 1; i < 600; i += 2 {
			want[i] = "new"
			if err := b.Put(key(i), []byte("new")); err != nil {
				return err
			}
		}
		for i := 0; i < 600; i += 3 {
			delete(want, i)
			if err := b.Delete(key(i)); err != nil {
				return err
			}
		}
		for i := 5; i < 600; i += 15 { // multiples of 5, not of 3
			want[i] = "five"
			if err := b.Put(key(i), []byte("five")); err != nil {
				return err
			}
		}
		check := func(when string) {
			var ks []int
			for k := range want {
				ks = append(ks, k)
			}
			sort.Ints(ks)
			c := b.Cursor()
			i := 0
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if i >= len(ks) || string(k) != string(key(ks[i])) || string(v) != want[ks[i]] {
					t.Fatalf("%s: forward step %d: %q=%q", when, i, k, v)
				}
				i++
			}
			if i != len(ks) {
				t.Fatalf("%s: forward walk saw %d keys, want %d", when, i, len(ks))
			}
			i = len(ks) - 1
			for k, v := c.Last(); k != nil; k, v = c.Prev() {
				if i < 0 || string(k) != string(key(ks[i])) || string(v) != want[ks[i]] {
					t.Fatalf("%s: backward at %d: %q=%q", when, i, k, v)
				}
				i--
			}
			if i != -1 {
				t.Fatalf("%s: backward walk stopped at %d", when, i)
			}
			if k, _ := c.Seek(key(3)); string(k) != string(key(4)) { // 3 deleted
				t.Fatalf("%s: Seek(key-0003) = %q, want key-0004", when, k)
			}
			if n := b.KeyN(); n != len(ks) {
				t.Fatalf("%s: KeyN = %d, want %d", when, n, len(ks))
			}
		}
		check("before KeyN")
		check("after KeyN") // KeyN may have sent the writes to the server
		return nil
	}))
	keys, vals := walk(t, db, bA)
	if len(keys) != len(want) {
		t.Fatalf("after commit: %d keys, want %d", len(keys), len(want))
	}
	for i, k := range keys {
		if want[atoi(k[4:])] != vals[i] {
			t.Fatalf("after commit: %q = %q", k, vals[i])
		}
	}
}

func testDeleteDuringCursor(t *testing.T, db store.DB) {
	must(t, db.Ensure(bA))
	must(t, db.Update(func(tx store.Tx) error {
		b := tx.Bucket(bA)
		for i := 0; i < 400; i++ {
			if err := b.Put(key(i), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	}))
	// Delete every key whose number is odd, through the cursor, walking.
	seen := 0
	must(t, db.Update(func(tx store.Tx) error {
		c := tx.Bucket(bA).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			seen++
			if atoi(string(k[4:]))%2 == 1 {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	}))
	if seen != 400 {
		t.Fatalf("the walk that deleted saw %d keys, want 400 (a key skipped or repeated)", seen)
	}
	keys, _ := walk(t, db, bA)
	if len(keys) != 200 {
		t.Fatalf("%d keys left, want 200", len(keys))
	}
	for i, k := range keys {
		if k != string(key(2*i)) {
			t.Fatalf("key %d left is %q, want %q", i, k, key(2*i))
		}
	}
	// Delete everything walking backwards.
	must(t, db.Update(func(tx store.Tx) error {
		c := tx.Bucket(bA).Cursor()
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		if k, _ := c.First(); k != nil {
			t.Errorf("First after deleting everything = %q", k)
		}
		return nil
	}))
	if keys, _ := walk(t, db, bA); len(keys) != 0 {
		t.Fatalf("%d keys left after deleting all", len(keys))
	}
}

func testSequences(t *testing.T, db store.DB) {
	must(t, db.Ensure(bA, bB))
	must(t, db.View(func(tx store.Tx) error {
		if s := tx.Bucket(bA).Sequence(); s != 0 {
			t.Errorf("fresh Sequence = %d", s)
		}
		return nil
	}))
	for want := uint64(1); want <= 3; want++ {
		must(t, db.Update(func(tx store.Tx) error {
			s, err := tx.Bucket(bA).NextSequence()
			if err != nil {
				return err
			}
			if s != want {
				t.Errorf("NextSequence = %d, want %d", s, want)
			}
			if got := tx.Bucket(bA).Sequence(); got != want {
				t.Errorf("Sequence in the same transaction = %d, want %d", got, want)
			}
			return nil
		}))
	}
	// Two in one transaction.
	must(t, db.Update(func(tx store.Tx) error {
		b := tx.Bucket(bA)
		s1, _ := b.NextSequence()
		s2, err := b.NextSequence()
		if s1 != 4 || s2 != 5 {
			t.Errorf("two NextSequence = %d, %d; want 4, 5", s1, s2)
		}
		return err
	}))
	// A rolled-back increment is not kept.
	boom := errors.New("boom")
	if err := db.Update(func(tx store.Tx) error {
		if _, err := tx.Bucket(bA).NextSequence(); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	must(t, db.View(func(tx store.Tx) error {
		if s := tx.Bucket(bA).Sequence(); s != 5 {
			t.Errorf("Sequence after a rollback = %d, want 5", s)
		}
		if s := tx.Bucket(bB).Sequence(); s != 0 {
			t.Errorf("other bucket's Sequence = %d, want 0 (sequences are per bucket)", s)
		}
		return nil
	}))
}

func testKeyN(t *testing.T, db store.DB) {
	must(t, db.Ensure(bA))
	must(t, db.View(func(tx store.Tx) error {
		if n := tx.Bucket(bA).KeyN(); n != 0 {
			t.Errorf("KeyN of an empty bucket = %d", n)
		}
		return nil
	}))
	put(t, db, bA, "a", "1", "b", "2", "c", "3")
	must(t, db.Update(func(tx store.Tx) error {
		b := tx.Bucket(bA)
		if n := b.KeyN(); n != 3 {
			t.Errorf("KeyN = %d, want 3", n)
		}
		b.Put([]byte("d"), []byte("4"))
		b.Put([]byte("a"), []byte("1'")) // overwrite: no new key
		b.Delete([]byte("b"))
		b.Delete([]byte("zz")) // absent
		if n := b.KeyN(); n != 3 {
			t.Errorf("KeyN with own writes = %d, want 3", n)
		}
		b.Put([]byte("e"), []byte("5"))
		if n := b.KeyN(); n != 4 {
			t.Errorf("KeyN after one more Put = %d, want 4", n)
		}
		return nil
	}))
	must(t, db.View(func(tx store.Tx) error {
		if n := tx.Bucket(bA).KeyN(); n != 4 {
			t.Errorf("KeyN after commit = %d, want 4", n)
		}
		return nil
	}))
}

func testReadYourWrites(t *testing.T, db store.DB) {
	must(t, db.Ensure(bA))
	put(t, db, bA, "k", "stored")
	must(t, db.Update(func(tx store.Tx) error {
		b := tx.Bucket(bA)
		if got := string(b.Get([]byte("k"))); got != "stored" {
			t.Errorf("Get = %q", got)
		}
		b.Put([]byte("k"), []byte("mine"))
		if got := string(b.Get([]byte("k"))); got != "mine" {
			t.Errorf("Get after Put = %q, want mine", got)
		}
		b.Put([]byte("new"), []byte("n"))
		if got := string(b.Get([]byte("new"))); got != "n" {
			t.Errorf("Get of a new key = %q", got)
		}
		b.Delete([]byte("k"))
		if v := b.Get([]byte("k")); v != nil {
			t.Errorf("Get after Delete = %q", v)
		}
		b.Put([]byte("k"), []byte("again"))
		if got := string(b.Get([]byte("k"))); got != "again" {
			t.Errorf("Get after Delete and Put = %q", got)
		}
		k, v := b.Cursor().First()
		if string(k) != "k" || string(v) != "again" {
			t.Errorf("cursor First = %q=%q", k, v)
		}
		return nil
	}))
	if got := string(get(t, db, bA, []byte("k"))); got != "again" {
		t.Fatalf("after commit k = %q", got)
	}
}

func testRollback(t *testing.T, db store.DB) {
	must(t, db.Ensure(bA))
	put(t, db, bA, "keep", "1")
	boom := errors.New("boom")
	err := db.Update(func(tx store.Tx) error {
		b := tx.Bucket(bA)
		b.Put([]byte("keep"), []byte("changed"))
		b.Put([]byte("new"), []byte("x"))
		b.KeyN() // may send the writes to the server: still rolled back
		b.Delete([]byte("keep"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want the fn's own error", err)
	}
	if errors.Is(err, store.ErrBackend) {
		t.Fatalf("fn's own error was reported as a backend fault: %v", err)
	}
	keys, vals := walk(t, db, bA)
	eq(t, "keys after rollback", keys, []string{"keep"})
	eq(t, "values after rollback", vals, []string{"1"})
	// Batch too.
	if err := db.Batch(func(tx store.Tx) error {
		tx.Bucket(bA).Put([]byte("batch"), []byte("x"))
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Batch = %v, want boom", err)
	}
	if v := get(t, db, bA, []byte("batch")); v != nil {
		t.Fatalf("a failed Batch stored %q", v)
	}
}

func testViewSnapshot(t *testing.T, db store.DB) {
	must(t, db.Ensure(bA))
	put(t, db, bA, "a", "1", "b", "1")
	must(t, db.View(func(tx store.Tx) error {
		b := tx.Bucket(bA)
		if got := string(b.Get([]byte("a"))); got != "1" {
			t.Fatalf("a = %q", got)
		}
		// Another transaction changes both keys and adds one, and commits.
		done := make(chan error, 1)
		go func() {
			done <- db.Update(func(tx store.Tx) error {
				b := tx.Bucket(bA)
				b.Put([]byte("a"), []byte("2"))
				b.Put([]byte("b"), []byte("2"))
				return b.Put([]byte("c"), []byte("2"))
			})
		}()
		if err := <-done; err != nil {
			t.Fatalf("concurrent Update: %v", err)
		}
		// This View still sees its snapshot, in Get and in cursors.
		for _, k := range []string{"a", "b"} {
			if got := string(b.Get([]byte(k))); got != "1" {
				t.Errorf("%s in the View after a concurrent commit = %q, want 1", k, got)
			}
		}
		if v := b.Get([]byte("c")); v != nil {
			t.Errorf("a key added after the snapshot is visible: %q", v)
		}
		var keys []string
		b.ForEach(func(k, v []byte) error { keys = append(keys, string(k)+"="+string(v)); return nil })
		eq(t, "cursor in the snapshot", keys, []string{"a=1", "b=1"})
		if n := b.KeyN(); n != 2 {
			t.Errorf("KeyN in the snapshot = %d, want 2", n)
		}
		return nil
	}))
	keys, vals := walk(t, db, bA)
	eq(t, "after the View", keys, []string{"a", "b", "c"})
	eq(t, "after the View", vals, []string{"2", "2", "2"})
}

// testCounter: 32 goroutines each add 1 to one counter 10 times with a
// read-modify-write; the total must be exact (no lost update).
func testCounter(t *testing.T, db store.DB, run func(func(store.Tx) error) error) {
	const workers, each = 32, 10
	must(t, db.Ensure(bA))
	db.SetBatchLimits(8, 2*time.Millisecond)
	ctr := []byte("counter")
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				errs <- run(func(tx store.Tx) error {
					b := tx.Bucket(bA)
					var n uint64
					if v := b.Get(ctr); v != nil {
						n = binary.BigEndian.Uint64(v)
					}
					return b.Put(ctr, binary.BigEndian.AppendUint64(nil, n+1))
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("increment failed: %v", err)
		}
	}
	v := get(t, db, bA, ctr)
	if got := binary.BigEndian.Uint64(v); got != workers*each {
		t.Fatalf("counter = %d, want %d (lost updates)", got, workers*each)
	}
}

func testBatchOneFails(t *testing.T, db store.DB) {
	const n = 10
	must(t, db.Ensure(bA))
	db.SetBatchLimits(n, time.Second) // the batch starts when all n have joined
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Batch(func(tx store.Tx) error {
				b := tx.Bucket(bA)
				if err := b.Put(key(i), []byte("x")); err != nil {
					return err
				}
				if i == 3 {
					return boom
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		switch {
		case i == 3 && !errors.Is(err, boom):
			t.Errorf("the failing function got %v, want boom", err)
		case i != 3 && err != nil:
			t.Errorf("function %d got %v, want nil (a neighbour's failure must not fail it)", i, err)
		}
	}
	keys, _ := walk(t, db, bA)
	var want []string
	for i := 0; i < n; i++ {
		if i != 3 {
			want = append(want, string(key(i)))
		}
	}
	eq(t, "keys stored by the batch", keys, want)
}

// testPrefetch: where a transaction is a store.Prefetcher, prefetching keys
// of two buckets — present, absent, empty, written earlier in the
// transaction — changes no Get, in a View and in an Update.
func testPrefetch(t *testing.T, db store.DB) {
	must(t, db.Ensure(bA, bB))
	put(t, db, bA, "a1", "one")
	put(t, db, bA, "empty", "")
	put(t, db, bB, "b1", "bee")
	var isPF bool
	must(t, db.View(func(tx store.Tx) error { _, isPF = tx.(store.Prefetcher); return nil }))
	if !isPF {
		t.Skip("this backend's transactions are no Prefetcher")
	}
	check := func(tx store.Tx) error {
		pf := tx.(store.Prefetcher)
		if tx.Writable() {
			tx.Bucket(bA).Put([]byte("a1"), []byte("mine"))
			tx.Bucket(bB).Delete([]byte("b1"))
		}
		pf.Prefetch(store.Keys{Bucket: bA, Keys: [][]byte{[]byte("a1"), []byte("empty"), []byte("absent")}},
			store.Keys{Bucket: bB, Keys: [][]byte{[]byte("b1"), []byte("b2")}})
		a, b := tx.Bucket(bA), tx.Bucket(bB)
		wantA1, wantB1 := "one", "bee"
		if tx.Writable() {
			wantA1, wantB1 = "mine", ""
		}
		if got := string(a.Get([]byte("a1"))); got != wantA1 {
			t.Errorf("a1 = %q, want %q", got, wantA1)
		}
		if v := a.Get([]byte("empty")); v == nil || len(v) != 0 {
			t.Errorf("empty = %v, want present and empty", v)
		}
		if v := a.Get([]byte("absent")); v != nil {
			t.Errorf("absent = %q", v)
		}
		if v := b.Get([]byte("b1")); string(v) != wantB1 || (wantB1 == "" && v != nil) {
			t.Errorf("b1 = %q, want %q", v, wantB1)
		}
		if v := b.Get([]byte("b2")); v != nil {
			t.Errorf("b2 = %q", v)
		}
		if got := string(a.Get([]byte("a2-not-prefetched"))); got != "" {
			t.Errorf("a key not prefetched = %q", got)
		}
		return nil
	}
	must(t, db.View(check))
	must(t, db.Update(check))
	if got := string(get(t, db, bA, []byte("a1"))); got != "mine" {
		t.Errorf("after the Update a1 = %q", got)
	}
}
