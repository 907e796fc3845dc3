package boltstore_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/boltstore/boltsurgeon"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
)

// --- helpers ---

func openStore(t testing.TB, opts boltstore.Options) (*boltstore.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keyward.db")
	s, err := boltstore.Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589793238, time.UTC)

func testKey(name string) *keysvc.Key {
	destroyAt := t0.Add(48 * time.Hour)
	return &keysvc.Key{
		Name:           name,
		Purpose:        wire.PurposeSign,
		Algorithm:      wire.AlgECP256,
		Protection:     wire.ProtectionWrapped,
		Primary:        2,
		MinVersion:     1,
		RotationPeriod: wire.Duration(720 * time.Hour),
		LastRotated:    t0.Add(time.Hour),
		Policy: wire.Policy{Grants: []wire.Grant{
			{Client: "payments", Ops: []wire.Op{wire.OpSign, wire.OpVerify}},
			{Client: "auditor", Ops: []wire.Op{wire.OpRead}},
		}},
		Versions: []keysvc.Version{
			{Version: 1, State: wire.StateDestroyScheduled, CreatedAt: t0, DestroyAt: &destroyAt,
				PublicKey: []byte{0x30, 0x59, 1, 2, 3}, Wrapped: []byte("blob-1")},
			{Version: 2, State: wire.StateEnabled, CreatedAt: t0.Add(time.Hour),
				PublicKey: []byte{0x30, 0x59, 4, 5, 6}, Wrapped: []byte("blob-2")},
		},
		CreatedAt: t0,
	}
}

func newRec(op, key string) *audit.Record {
	return &audit.Record{Time: time.Now(), Client: "admin", Key: key, Version: 1, Op: op, Result: "ok",
		RequestDigest: audit.DigestScheme + ":" + strings.Repeat("ab", 32)}
}

// allRecords reads the whole log.
func allRecords(t testing.TB, s *boltstore.Store) []audit.Record {
	t.Helper()
	var out []audit.Record
	if err := s.AuditRecords(0, func(r audit.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatalf("AuditRecords: %v", err)
	}
	return out
}

// verify runs audit.Verify over the store, as `keysvc audit verify` does.
func verify(s *boltstore.Store, pub *ecdsa.PublicKey) (audit.Report, error) {
	var recs []audit.Record
	if err := s.AuditRecords(0, func(r audit.Record) error { recs = append(recs, r); return nil }); err != nil {
		return audit.Report{}, err
	}
	cps, err := s.Checkpoints()
	if err != nil {
		return audit.Report{}, err
	}
	i := 0
	next := func() (audit.Record, error) {
		if i == len(recs) {
			return audit.Record{}, io.EOF
		}
		i++
		return recs[i-1], nil
	}
	rep, err := audit.Verify(next, cps, pub)
	if len(cps) == 0 && errors.Is(err, audit.ErrNoCheckpoint) {
		err = nil // these tests are about the record chain; audit's own tests cover checkpoint-less logs
	}
	return rep, err
}

func checkpoint(t testing.TB, s *boltstore.Store, signer *ecdsa.PrivateKey) audit.Checkpoint {
	t.Helper()
	seq, hash, err := s.LastAudit()
	if err != nil {
		t.Fatal(err)
	}
	c, err := audit.SignCheckpoint(signer, newestCheckpoint(t, s), seq, hash, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddCheckpoint(c); err != nil {
		t.Fatalf("AddCheckpoint(%d): %v", seq, err)
	}
	return c
}

// newestCheckpoint is the store's newest checkpoint, nil when none.
func newestCheckpoint(t testing.TB, s *boltstore.Store) *audit.Checkpoint {
	t.Helper()
	cps, err := s.Checkpoints()
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) == 0 {
		return nil
	}
	return &cps[len(cps)-1]
}

func newSigner(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustLast(t testing.TB, s *boltstore.Store) uint64 {
	t.Helper()
	seq, _, err := s.LastAudit()
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// appendConcurrently appends n records from g goroutines and returns the
// callers' records.
func appendConcurrently(t testing.TB, s *boltstore.Store, g, n int) []*audit.Record {
	t.Helper()
	recs := make([]*audit.Record, n)
	for i := range recs {
		recs[i] = &audit.Record{Time: time.Now(), Client: fmt.Sprintf("signer-%d", i%g), Key: "k",
			Op: "sign", Result: "ok", Detail: fmt.Sprintf("i=%d", i)}
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range g {
		wg.Go(func() {
			for i := w; i < n; i += g {
				if err := s.Audit(recs[i]); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Audit: %v", err)
	}
	return recs
}

// --- keys ---

func TestKeyRoundTrip(t *testing.T) {
	s, _ := openStore(t, boltstore.Options{})
	k := testKey("payments-sign")
	k.LastRotated = k.LastRotated.In(time.FixedZone("CET", 3600)) // stored as an instant
	rec := newRec("create", k.Name)
	if err := s.CreateKey(k, rec); err != nil {
		t.Fatal(err)
	}
	if rec.Seq != 1 || len(rec.Hash) != 32 || len(rec.Prev) != 32 {
		t.Fatalf("create record not filled: seq %d prev %x hash %x", rec.Seq, rec.Prev, rec.Hash)
	}
	k.Versions[0].State = wire.StateEnabled // the store must have its own copy

	got, err := s.GetKey("payments-sign")
	if err != nil {
		t.Fatal(err)
	}
	want := testKey("payments-sign")
	if !got.LastRotated.Equal(want.LastRotated) {
		t.Errorf("LastRotated = %v, want %v", got.LastRotated, want.LastRotated)
	}
	got.LastRotated = want.LastRotated
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("GetKey:\n got %+v\nwant %+v", got, want)
	}
	if time.Duration(got.RotationPeriod) != 720*time.Hour || got.Versions[0].DestroyAt == nil ||
		got.Versions[0].DestroyAt.Nanosecond() != 589793238 {
		t.Fatalf("duration or times lost: %+v", got)
	}

	// Copies: editing what GetKey returned changes nothing.
	got.Versions[1].State = wire.StateDisabled
	got.Policy.Grants[0].Ops[0] = wire.OpManage
	again, _ := s.GetKey("payments-sign")
	again.LastRotated = want.LastRotated
	if !reflect.DeepEqual(again, want) {
		t.Fatal("GetKey returned the store's own memory")
	}

	// Update: add a version and change the period and times.
	rotated := t0.Add(30 * 24 * time.Hour)
	urec := newRec("rotate", "payments-sign")
	upd, err := s.UpdateKey("payments-sign", func(k *keysvc.Key) error {
		k.Versions = append(k.Versions, keysvc.Version{Version: 3, State: wire.StateEnabled, CreatedAt: rotated})
		k.Primary = 3
		k.RotationPeriod = wire.Duration(90 * time.Minute)
		k.LastRotated = rotated
		now := rotated.Add(time.Second)
		k.Versions[0].State, k.Versions[0].DestroyedAt, k.Versions[0].Wrapped = wire.StateDestroyed, &now, nil
		return nil
	}, urec)
	if err != nil {
		t.Fatal(err)
	}
	if urec.Seq != 2 || !reflect.DeepEqual(urec.Prev, rec.Hash) {
		t.Fatalf("update record seq %d prev %x, want 2 after %x", urec.Seq, urec.Prev, rec.Hash)
	}
	stored, err := s.GetKey("payments-sign")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(upd, stored) {
		t.Fatalf("UpdateKey returned\n %+v\nstored\n %+v", upd, stored)
	}
	if stored.Primary != 3 || len(stored.Versions) != 3 || time.Duration(stored.RotationPeriod) != 90*time.Minute ||
		!stored.LastRotated.Equal(rotated) || stored.Versions[0].State != wire.StateDestroyed ||
		stored.Versions[0].Wrapped != nil || !stored.Versions[0].DestroyedAt.Equal(rotated.Add(time.Second)) {
		t.Fatalf("update not stored: %+v", stored)
	}
	upd.Primary = 1
	if k, _ := s.GetKey("payments-sign"); k.Primary != 3 {
		t.Fatal("UpdateKey returned the store's own memory")
	}

	// A nil record updates without auditing.
	if _, err := s.UpdateKey("payments-sign", func(k *keysvc.Key) error { k.MinVersion = 2; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if k, _ := s.GetKey("payments-sign"); k.MinVersion != 2 {
		t.Fatal("update without record not stored")
	}
	if seq := mustLast(t, s); seq != 2 {
		t.Fatalf("last seq %d after an unaudited update, want 2", seq)
	}
}

func TestListKeys(t *testing.T) {
	s, _ := openStore(t, boltstore.Options{})
	if ks, err := s.ListKeys("", 0); err != nil || len(ks) != 0 {
		t.Fatalf("empty ListKeys = %v, %v", ks, err)
	}
	for _, n := range []string{"b", "a", "c-2", "A", "c-10"} {
		if err := s.CreateKey(testKey(n), nil); err != nil {
			t.Fatal(err)
		}
	}
	ks, err := s.ListKeys("", 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range ks {
		names = append(names, k.Name)
		if !reflect.DeepEqual(k, testKey(k.Name)) {
			t.Errorf("ListKeys %s = %+v", k.Name, k)
		}
	}
	if want := []string{"A", "a", "b", "c-10", "c-2"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("ListKeys names = %v, want %v", names, want)
	}
	ks[0].Primary = 99
	if k, _ := s.GetKey("A"); k.Primary == 99 {
		t.Fatal("ListKeys returned the store's own memory")
	}
	// Pages: after is exclusive, whether or not it names a key.
	for _, c := range []struct {
		after string
		limit int
		want  []string
	}{
		{"", 2, []string{"A", "a"}},
		{"a", 2, []string{"b", "c-10"}},
		{"c-10", 2, []string{"c-2"}},
		{"c-2", 2, nil},
		{"aa", 0, []string{"b", "c-10", "c-2"}},
		{"0", 1, []string{"A"}},
	} {
		ks, err := s.ListKeys(c.after, c.limit)
		var got []string
		for _, k := range ks {
			got = append(got, k.Name)
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ListKeys(%q, %d) = %v, %v; want %v", c.after, c.limit, got, err, c.want)
		}
	}
}

func TestCreateKeyRefused(t *testing.T) {
	tests := []struct {
		name    string
		key     *keysvc.Key
		want    error
		inError string
	}{
		{"duplicate name", testKey("taken"), wire.ErrKeyExists, `"taken"`},
		{"nil key", nil, wire.ErrInvalidArgument, ""},
		{"empty name", testKey(""), wire.ErrInvalidArgument, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openStore(t, boltstore.Options{})
			orig := testKey("taken")
			orig.Primary = 1
			if err := s.CreateKey(orig, newRec("create", "taken")); err != nil {
				t.Fatal(err)
			}
			rec := newRec("create", "taken")
			err := s.CreateKey(tt.key, rec)
			if !errors.Is(err, tt.want) {
				t.Fatalf("CreateKey error %v, want %v", err, tt.want)
			}
			if errors.Is(err, wire.ErrStore) {
				t.Errorf("refusal %v also wraps ErrStore", err)
			}
			if !strings.Contains(fmt.Sprint(err), tt.inError) {
				t.Errorf("error %q does not name %s", err, tt.inError)
			}
			if rec.Seq != 0 || rec.Hash != nil {
				t.Errorf("refused create filled the record: %+v", rec)
			}
			if seq := mustLast(t, s); seq != 1 {
				t.Errorf("refused create appended an audit record (last seq %d)", seq)
			}
			if k, err := s.GetKey("taken"); err != nil || k.Primary != 1 {
				t.Errorf("existing key changed: %+v, %v", k, err)
			}
		})
	}
}

func TestKeyNotFound(t *testing.T) {
	s, _ := openStore(t, boltstore.Options{})
	if err := s.CreateKey(testKey("present"), nil); err != nil {
		t.Fatal(err)
	}
	called := false
	rec := newRec("disable", "absent")
	tests := []struct {
		name string
		op   func() error
	}{
		{"GetKey", func() error { _, err := s.GetKey("absent"); return err }},
		{"UpdateKey", func() error {
			_, err := s.UpdateKey("absent", func(*keysvc.Key) error { called = true; return nil }, rec)
			return err
		}},
		{"GetKey empty name", func() error { _, err := s.GetKey(""); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			if !errors.Is(err, wire.ErrKeyNotFound) || errors.Is(err, wire.ErrStore) {
				t.Fatalf("error %v, want ErrKeyNotFound only", err)
			}
			if !strings.Contains(err.Error(), "absent") && tt.name != "GetKey empty name" {
				t.Errorf("error %q does not name the key", err)
			}
		})
	}
	if called {
		t.Error("UpdateKey called fn for a missing key")
	}
	if rec.Seq != 0 || mustLast(t, s) != 0 {
		t.Error("UpdateKey of a missing key appended an audit record")
	}
}

func TestUpdateKeyAborts(t *testing.T) {
	errPlain := errors.New("policy says no")
	errWrapped := fmt.Errorf("version 1 is destroyed: %w", wire.ErrIllegalTransition)
	tests := []struct {
		name    string
		fn      func(k *keysvc.Key) error
		same    error // returned as is
		wantErr error // errors.Is
	}{
		{"plain error", func(k *keysvc.Key) error { return errPlain }, errPlain, errPlain},
		{"wrapped sentinel after edits", func(k *keysvc.Key) error {
			k.Primary = 7
			k.Versions = nil
			k.Policy.Grants = nil
			return errWrapped
		}, errWrapped, wire.ErrIllegalTransition},
		{"sentinel of the store's own", func(k *keysvc.Key) error { return wire.ErrKeyNotFound }, wire.ErrKeyNotFound, wire.ErrKeyNotFound},
		{"rename", func(k *keysvc.Key) error { k.Name = "other"; return nil }, nil, wire.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openStore(t, boltstore.Options{})
			if err := s.CreateKey(testKey("k"), newRec("create", "k")); err != nil {
				t.Fatal(err)
			}
			seq0, hash0, _ := s.LastAudit()
			rec := newRec("update", "k")
			got, err := s.UpdateKey("k", tt.fn, rec)
			if got != nil {
				t.Errorf("UpdateKey returned a key with error %v", err)
			}
			if tt.same != nil && err != tt.same {
				t.Errorf("error %#v, want exactly %#v", err, tt.same)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if errors.Is(err, wire.ErrStore) {
				t.Errorf("fn's error %v wrapped in ErrStore", err)
			}
			if k, err := s.GetKey("k"); err != nil || !reflect.DeepEqual(k, testKey("k")) {
				t.Errorf("aborted update stored something: %+v, %v", k, err)
			}
			if _, err := s.GetKey("other"); !errors.Is(err, wire.ErrKeyNotFound) {
				t.Errorf("renamed key stored: %v", err)
			}
			seq, hash, _ := s.LastAudit()
			if seq != seq0 || !reflect.DeepEqual(hash, hash0) || len(allRecords(t, s)) != 1 {
				t.Errorf("aborted update appended an audit record (last seq %d)", seq)
			}
			if rec.Seq != 0 || rec.Hash != nil || rec.Prev != nil {
				t.Errorf("aborted update filled the record: %+v", rec)
			}
		})
	}
}

// --- audit chain ---

func TestAuditEmpty(t *testing.T) {
	s, _ := openStore(t, boltstore.Options{})
	seq, hash, err := s.LastAudit()
	if err != nil || seq != 0 || !reflect.DeepEqual(hash, audit.Genesis) {
		t.Fatalf("LastAudit = %d, %x, %v; want 0, Genesis", seq, hash, err)
	}
	hash[0] = 0xff // must be a copy
	if audit.Genesis[0] != 0 {
		t.Fatal("LastAudit returned audit.Genesis itself")
	}
	if rs := allRecords(t, s); len(rs) != 0 {
		t.Fatalf("records in an empty log: %v", rs)
	}
	if cps, err := s.Checkpoints(); err != nil || len(cps) != 0 {
		t.Fatalf("Checkpoints = %v, %v", cps, err)
	}
	if err := s.Audit(nil); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Fatalf("Audit(nil) = %v", err)
	}
	rep, err := verify(s, &newSigner(t).PublicKey)
	if err != nil || rep.Records != 0 {
		t.Fatalf("Verify(empty) = %+v, %v", rep, err)
	}
}

func TestAuditConcurrent(t *testing.T) {
	s, _ := openStore(t, boltstore.Options{})
	const goroutines, n = 50, 1000
	recs := appendConcurrently(t, s, goroutines, n)

	stored := allRecords(t, s)
	if len(stored) != n {
		t.Fatalf("%d records stored, want %d", len(stored), n)
	}
	ck := audit.NewChecker()
	for i, r := range stored {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i+1, r.Seq)
		}
		if err := ck.Next(r); err != nil {
			t.Fatalf("Checker: %v", err)
		}
	}
	seen := make(map[uint64]bool)
	for _, r := range recs {
		if r.Seq < 1 || r.Seq > n || seen[r.Seq] {
			t.Fatalf("caller got seq %d (duplicate or out of range)", r.Seq)
		}
		seen[r.Seq] = true
		c := stored[r.Seq-1]
		if c.Detail != r.Detail || c.Client != r.Client || !reflect.DeepEqual(c.Hash, r.Hash) ||
			!reflect.DeepEqual(c.Prev, r.Prev) || !c.Time.Equal(r.Time) {
			t.Fatalf("caller's record %+v differs from the committed %+v", r, c)
		}
	}
	seq, hash, err := s.LastAudit()
	if err != nil || seq != n || !reflect.DeepEqual(hash, stored[n-1].Hash) {
		t.Fatalf("LastAudit = %d, %x, %v; want %d, %x", seq, hash, err, n, stored[n-1].Hash)
	}
}

// TestAuditBatchRetry runs audit appends while other users of the shared
// database fail their own db.Batch functions and key changes commit in
// between: each caller must end up with exactly what was committed.
func TestAuditBatchRetry(t *testing.T) {
	s, _ := openStore(t, boltstore.Options{MaxBatchSize: 1000})
	boom := errors.New("boom")
	const appends, failures, creates = 300, 30, 30
	recs := make([]*audit.Record, appends)
	crecs := make([]*audit.Record, creates)
	var wg sync.WaitGroup
	errs := make(chan error, appends+failures+creates)
	for i := range recs {
		recs[i] = &audit.Record{Time: time.Now(), Client: "c", Op: "sign", Result: "ok", Detail: fmt.Sprintf("a%d", i)}
		wg.Go(func() {
			if err := s.Audit(recs[i]); err != nil {
				errs <- err
			}
		})
		if i%(appends/failures) == 0 {
			wg.Go(func() {
				if err := s.DB().Batch(func(*bolt.Tx) error { return boom }); err != boom {
					errs <- fmt.Errorf("failing batch returned %v", err)
				}
			})
		}
		if i%(appends/creates) == 0 {
			j := i / (appends / creates)
			crecs[j] = newRec("create", fmt.Sprintf("key-%d", j))
			wg.Go(func() {
				if err := s.CreateKey(testKey(crecs[j].Key), crecs[j]); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	stored := allRecords(t, s)
	if len(stored) != appends+creates {
		t.Fatalf("%d records, want %d", len(stored), appends+creates)
	}
	ck := audit.NewChecker()
	for _, r := range stored {
		if err := ck.Next(r); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range append(recs, crecs...) {
		c := stored[r.Seq-1]
		if c.Detail != r.Detail || c.Key != r.Key || !reflect.DeepEqual(c.Hash, r.Hash) || !reflect.DeepEqual(c.Prev, r.Prev) {
			t.Fatalf("caller's record %+v is not the committed %+v", r, c)
		}
	}
}

func TestAuditChainMixesKeyChanges(t *testing.T) {
	s, _ := openStore(t, boltstore.Options{})
	r1 := newRec("create", "k")
	if err := s.CreateKey(testKey("k"), r1); err != nil {
		t.Fatal(err)
	}
	r2 := newRec("sign", "k")
	if err := s.Audit(r2); err != nil {
		t.Fatal(err)
	}
	r3 := newRec("disable", "k")
	if _, err := s.UpdateKey("k", func(k *keysvc.Key) error { k.Versions[1].State = wire.StateDisabled; return nil }, r3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateKey("k", func(k *keysvc.Key) error { return nil }, nil); err != nil {
		t.Fatal(err)
	}
	r4 := newRec("create", "k2")
	if err := s.CreateKey(testKey("k2"), r4); err != nil {
		t.Fatal(err)
	}
	stored := allRecords(t, s)
	want := []*audit.Record{r1, r2, r3, r4}
	if len(stored) != len(want) {
		t.Fatalf("%d records, want %d", len(stored), len(want))
	}
	ck := audit.NewChecker()
	for i, r := range stored {
		if err := ck.Next(r); err != nil {
			t.Fatal(err)
		}
		if w := want[i]; r.Seq != uint64(i+1) || w.Seq != r.Seq || r.Op != w.Op || r.Key != w.Key || !reflect.DeepEqual(r.Hash, w.Hash) {
			t.Errorf("record %d = %+v, caller has %+v", i+1, r, w)
		}
	}
	if !reflect.DeepEqual(r1.Prev, audit.Genesis) {
		t.Errorf("first record's Prev %x, want Genesis", r1.Prev)
	}
}

func TestAuditRecordsFrom(t *testing.T) {
	s, _ := openStore(t, boltstore.Options{})
	const n = 2345 // three read chunks
	appendConcurrently(t, s, 64, n)
	tests := []struct {
		from        uint64
		first, want uint64 // first seq seen, number of records
	}{
		{0, 1, n}, {1, 1, n}, {2, 2, n - 1}, {999, 999, n - 998}, {1000, 1000, n - 999},
		{1001, 1001, n - 1000}, {2001, 2001, n - 2000}, {n, n, 1}, {n + 1, 0, 0}, {1 << 62, 0, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("from=", tt.from), func(t *testing.T) {
			var got []uint64
			err := s.AuditRecords(tt.from, func(r audit.Record) error { got = append(got, r.Seq); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if uint64(len(got)) != tt.want {
				t.Fatalf("%d records, want %d", len(got), tt.want)
			}
			for i, seq := range got {
				if seq != tt.first+uint64(i) {
					t.Fatalf("record %d has seq %d, want %d", i, seq, tt.first+uint64(i))
				}
			}
		})
	}

	t.Run("fn error stops", func(t *testing.T) {
		stop := errors.New("stop")
		calls := 0
		err := s.AuditRecords(0, func(r audit.Record) error {
			calls++
			if r.Seq == 1500 {
				return stop
			}
			return nil
		})
		if err != stop || calls != 1500 {
			t.Fatalf("AuditRecords = %v after %d calls, want stop after 1500", err, calls)
		}
	})

	t.Run("fn may write", func(t *testing.T) {
		count := 0
		err := s.AuditRecords(0, func(r audit.Record) error {
			count++
			if r.Seq == 10 {
				return s.Audit(newRec("written-during-walk", ""))
			}
			return nil
		})
		if err != nil || count != n+1 {
			t.Fatalf("AuditRecords = %v, %d records; want %d including the one appended", err, count, n+1)
		}
	})
}

// --- checkpoints and tampering ---

func TestAddCheckpoint(t *testing.T) {
	s, _ := openStore(t, boltstore.Options{})
	signer := newSigner(t)
	if c, _ := audit.SignCheckpoint(signer, nil, 1, audit.Genesis, time.Now()); !errors.Is(s.AddCheckpoint(c), wire.ErrInvalidArgument) {
		t.Fatal("checkpoint on an empty log accepted")
	}
	appendConcurrently(t, s, 5, 5)
	stored := allRecords(t, s)
	if err := boltsurgeon.DeleteAudit(s.DB(), 4); err != nil {
		t.Fatal(err)
	}
	first, _ := audit.SignCheckpoint(signer, nil, 1, stored[0].Hash, time.Now())
	tests := []struct {
		name    string
		seq     uint64
		hash    []byte
		unchain bool // sign it as a first checkpoint, whatever is stored
		v1      bool // a v1 (unchained, index 0) checkpoint
		want    error
	}{
		{"seq 0", 0, audit.Genesis, false, false, wire.ErrInvalidArgument},
		{"beyond the log", 6, stored[4].Hash, false, false, wire.ErrInvalidArgument},
		{"far beyond the log", 1 << 40, stored[4].Hash, false, false, wire.ErrInvalidArgument},
		{"wrong hash", 3, stored[2].Prev, false, false, wire.ErrInvalidArgument},
		{"deleted record", 4, stored[3].Hash, false, false, wire.ErrInvalidArgument},
		{"v1 checkpoint", 2, stored[1].Hash, false, true, wire.ErrInvalidArgument},
		{"first", 2, stored[1].Hash, false, false, nil},
		{"same record again", 2, stored[1].Hash, false, false, wire.ErrInvalidArgument},
		{"second, not chained", 5, stored[4].Hash, true, false, wire.ErrInvalidArgument},
		{"second", 5, stored[4].Hash, false, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev := newestCheckpoint(t, s)
			if tt.unchain {
				prev = &first
			}
			if tt.seq == 2 && prev != nil && prev.Seq == 2 { // "same record again": SignCheckpoint refuses it, so forge the link
				c := *prev
				c.Index, c.Prev = prev.Index+1, prev.Digest()
				if err := s.AddCheckpoint(c); !errors.Is(err, tt.want) {
					t.Fatalf("AddCheckpoint = %v, want %v", err, tt.want)
				}
				return
			}
			c, err := audit.SignCheckpoint(signer, prev, tt.seq, tt.hash, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if tt.v1 {
				c.Index, c.Prev = 0, nil
			}
			if err := s.AddCheckpoint(c); !errors.Is(err, tt.want) || (tt.want != nil && errors.Is(err, wire.ErrStore)) {
				t.Fatalf("AddCheckpoint = %v, want %v", err, tt.want)
			}
		})
	}
	cps, err := s.Checkpoints()
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != 2 || cps[0].Seq != 2 || cps[1].Seq != 5 {
		t.Fatalf("Checkpoints = %+v, want seqs 2, 5", cps)
	}
	for _, c := range cps {
		if err := c.VerifySignature(&signer.PublicKey); err != nil {
			t.Fatal(err)
		}
	}
}

// rewriteChain re-seals every record from seq from on, after applying edit
// to each: what an attacker who knows the format does to hide an edit.
func rewriteChain(t *testing.T, s *boltstore.Store, from uint64, edit func(r *audit.Record)) {
	t.Helper()
	recs := allRecords(t, s)
	prevSeq, prevHash := from-1, audit.Genesis
	if from > 1 {
		prevHash = recs[from-2].Hash
	}
	for _, r := range recs[from-1:] {
		err := boltsurgeon.TamperAudit(s.DB(), r.Seq, func([]byte) []byte {
			edit(&r)
			r.Seal(prevSeq, prevHash)
			b, _ := r.Marshal()
			return b
		})
		if err != nil {
			t.Fatal(err)
		}
		prevSeq, prevHash = r.Seq, r.Hash
	}
}

func editJSON(t *testing.T, field string, value any) func([]byte) []byte {
	return func(raw []byte) []byte {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		m[field] = value
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

func TestTamperDetected(t *testing.T) {
	signer := newSigner(t)
	attacker := newSigner(t)
	tests := []struct {
		name   string
		tamper func(t *testing.T, s *boltstore.Store)
	}{
		{"edit result", func(t *testing.T, s *boltstore.Store) {
			if err := boltsurgeon.TamperAudit(s.DB(), 5, editJSON(t, "result", "forbidden")); err != nil {
				t.Fatal(err)
			}
		}},
		{"edit client of the newest record", func(t *testing.T, s *boltstore.Store) {
			if err := boltsurgeon.TamperAudit(s.DB(), 20, editJSON(t, "client", "someone-else")); err != nil {
				t.Fatal(err)
			}
		}},
		{"edit time", func(t *testing.T, s *boltstore.Store) {
			if err := boltsurgeon.TamperAudit(s.DB(), 12, editJSON(t, "time", t0.Format(time.RFC3339Nano))); err != nil {
				t.Fatal(err)
			}
		}},
		{"edit and rehash one record", func(t *testing.T, s *boltstore.Store) {
			err := boltsurgeon.TamperAudit(s.DB(), 7, func(raw []byte) []byte {
				r, err := audit.Unmarshal(raw)
				if err != nil {
					t.Fatal(err)
				}
				r.Detail = "nothing to see"
				r.Hash = r.ComputeHash()
				b, _ := r.Marshal()
				return b
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage", func(t *testing.T, s *boltstore.Store) {
			if err := boltsurgeon.TamperAudit(s.DB(), 3, func([]byte) []byte { return []byte("{not json") }); err != nil {
				t.Fatal(err)
			}
		}},
		{"delete first", func(t *testing.T, s *boltstore.Store) {
			if err := boltsurgeon.DeleteAudit(s.DB(), 1); err != nil {
				t.Fatal(err)
			}
		}},
		{"delete middle", func(t *testing.T, s *boltstore.Store) {
			if err := boltsurgeon.DeleteAudit(s.DB(), 11); err != nil {
				t.Fatal(err)
			}
		}},
		{"delete newest then append", func(t *testing.T, s *boltstore.Store) {
			if err := boltsurgeon.DeleteAudit(s.DB(), 20); err != nil {
				t.Fatal(err)
			}
			r := newRec("sign", "k")
			if err := s.Audit(r); err != nil || r.Seq != 21 {
				t.Fatalf("append after deletion: seq %d, %v", r.Seq, err)
			}
		}},
		{"truncate past the last checkpoint", func(t *testing.T, s *boltstore.Store) {
			for seq := uint64(20); seq > 15; seq-- {
				if err := boltsurgeon.DeleteAudit(s.DB(), seq); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"swap", func(t *testing.T, s *boltstore.Store) {
			if err := boltsurgeon.SwapAudit(s.DB(), 3, 4); err != nil {
				t.Fatal(err)
			}
		}},
		{"swap far apart", func(t *testing.T, s *boltstore.Store) {
			if err := boltsurgeon.SwapAudit(s.DB(), 2, 19); err != nil {
				t.Fatal(err)
			}
		}},
		{"rewrite the chain after an edit", func(t *testing.T, s *boltstore.Store) {
			rewriteChain(t, s, 5, func(r *audit.Record) {
				if r.Seq == 5 {
					r.Result = "forbidden"
				}
			})
		}},
		{"rewrite the tail after the last checkpoint was signed", func(t *testing.T, s *boltstore.Store) {
			rewriteChain(t, s, 11, func(r *audit.Record) { r.Client = "nobody" })
		}},
		{"rewrite the chain and sign checkpoints with another key", func(t *testing.T, s *boltstore.Store) {
			rewriteChain(t, s, 1, func(r *audit.Record) { r.Detail = "rewritten" })
			if _, err := boltsurgeon.DeleteCheckpointsAfter(s.DB(), 0); err != nil {
				t.Fatal(err)
			}
			recs := allRecords(t, s)
			for _, seq := range []uint64{10, 20} {
				c, err := audit.SignCheckpoint(attacker, newestCheckpoint(t, s), seq, recs[seq-1].Hash, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				if err := s.AddCheckpoint(c); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openStore(t, boltstore.Options{})
			// 20 records: key changes and operations, checkpoints at 10 and 20.
			if err := s.CreateKey(testKey("k"), newRec("create", "k")); err != nil {
				t.Fatal(err)
			}
			appendConcurrently(t, s, 4, 8)
			if _, err := s.UpdateKey("k", func(k *keysvc.Key) error { k.Primary = 1; return nil }, newRec("rotate", "k")); err != nil {
				t.Fatal(err)
			}
			checkpoint(t, s, signer)
			appendConcurrently(t, s, 5, 10)
			checkpoint(t, s, signer)
			rep, err := verify(s, &signer.PublicKey)
			if err != nil || rep.Records != 20 || rep.Checkpoints != 2 || rep.LastSeq != 20 || rep.LastCheckpoint != 20 || rep.Unsigned != 0 {
				t.Fatalf("Verify before tampering = %+v, %v", rep, err)
			}

			tt.tamper(t, s)
			rep, err = verify(s, &signer.PublicKey)
			if !errors.Is(err, audit.ErrTampered) {
				t.Fatalf("Verify after tampering = %+v, %v; want ErrTampered", rep, err)
			}
			t.Logf("caught: %v", err)
		})
	}
}

func TestSurgeonRefusesMissingRecords(t *testing.T) {
	s, _ := openStore(t, boltstore.Options{})
	appendConcurrently(t, s, 2, 2)
	tests := []struct {
		name string
		op   func() error
	}{
		{"TamperAudit", func() error { return boltsurgeon.TamperAudit(s.DB(), 3, func(b []byte) []byte { return b }) }},
		{"DeleteAudit", func() error { return boltsurgeon.DeleteAudit(s.DB(), 0) }},
		{"SwapAudit first", func() error { return boltsurgeon.SwapAudit(s.DB(), 9, 1) }},
		{"SwapAudit second", func() error { return boltsurgeon.SwapAudit(s.DB(), 1, 9) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, boltsurgeon.ErrNoRecord) {
				t.Fatalf("error %v, want ErrNoRecord", err)
			}
		})
	}
	if rep, err := verify(s, nil); err != nil || rep.Records != 2 {
		t.Fatalf("refused hooks changed the log: %+v, %v", rep, err)
	}
}

// --- lifecycle of the file ---

func TestReopen(t *testing.T) {
	signer := newSigner(t)
	path := filepath.Join(t.TempDir(), "keyward.db")
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateKey(testKey("k"), newRec("create", "k")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateKey("k", func(k *keysvc.Key) error { k.MinVersion = 2; return nil }, newRec("update", "k")); err != nil {
		t.Fatal(err)
	}
	appendConcurrently(t, s, 3, 3)
	cp := checkpoint(t, s, signer)
	seq0, hash0, _ := s.LastAudit()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := testKey("k")
	want.MinVersion = 2
	if k, err := s.GetKey("k"); err != nil || !reflect.DeepEqual(k, want) {
		t.Fatalf("key after reopen: %+v, %v", k, err)
	}
	if seq, hash, err := s.LastAudit(); err != nil || seq != seq0 || seq != 5 || !reflect.DeepEqual(hash, hash0) {
		t.Fatalf("LastAudit after reopen = %d, %x, %v; want %d, %x", seq, hash, err, seq0, hash0)
	}
	if cps, err := s.Checkpoints(); err != nil || len(cps) != 1 || !reflect.DeepEqual(cps[0].Signature, cp.Signature) ||
		!cps[0].Time.Equal(cp.Time) {
		t.Fatalf("checkpoints after reopen: %+v, %v", cps, err)
	}
	r := newRec("sign", "k")
	if err := s.Audit(r); err != nil || r.Seq != 6 || !reflect.DeepEqual(r.Prev, hash0) {
		t.Fatalf("append after reopen: seq %d prev %x, %v", r.Seq, r.Prev, err)
	}
	if rep, err := verify(s, &signer.PublicKey); err != nil || rep.Records != 6 || rep.Checkpoints != 1 {
		t.Fatalf("Verify after reopen = %+v, %v", rep, err)
	}
}

func TestOpenOptions(t *testing.T) {
	for _, opts := range []boltstore.Options{{}, {MaxBatchSize: -1}, {MaxBatchSize: 1}} {
		s, path := openStore(t, opts)
		for i := 0; i < 3; i++ {
			if err := s.Audit(&audit.Record{Time: time.Now(), Client: "c", Op: "sign", Result: "ok"}); err != nil {
				t.Fatalf("%+v: %v", opts, err)
			}
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&^0o600 != 0 {
			t.Fatalf("file mode %v, want 0600", perm)
		}
	}
}

func TestOpenLocked(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 5 s lock timeout")
	}
	t.Parallel()
	_, path := openStore(t, boltstore.Options{})
	start := time.Now()
	s2, err := boltstore.Open(path, boltstore.Options{})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if !errors.Is(err, wire.ErrStore) || !errors.Is(err, bolt.ErrTimeout) {
		t.Fatalf("second Open = %v, want ErrStore and bolt.ErrTimeout", err)
	}
	if d := time.Since(start); d < 4*time.Second || d > 15*time.Second {
		t.Fatalf("second Open gave up after %v, want about 5 s", d)
	}
}

func TestSharedWithPINGuard(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyward.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	guard, err := token.NewBoltStore(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := guard.Update("tok-1", func(st *token.PINState) error { st.Failures = 2; return nil }); err != nil {
		t.Fatal(err)
	}
	s, err := boltstore.New(db)
	if err != nil {
		t.Fatal(err)
	}
	if s.DB() != db {
		t.Fatal("DB() is not the shared database")
	}
	if err := s.CreateKey(testKey("k"), newRec("create", "k")); err != nil {
		t.Fatal(err)
	}
	if _, err := boltstore.New(db); err != nil { // idempotent
		t.Fatal(err)
	}
	if st, err := guard.Get("tok-1"); err != nil || st.Failures != 2 {
		t.Fatalf("PIN guard state %+v, %v", st, err)
	}
	if _, err := s.GetKey("k"); err != nil {
		t.Fatal(err)
	}
	var buckets []string
	db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error { buckets = append(buckets, string(name)); return nil })
	})
	want := []string{"audit", "audit-meta", "checkpoints", "keys", "pin-guard", "pin-guard-events", "probe"}
	if !reflect.DeepEqual(buckets, want) {
		t.Fatalf("buckets %v, want %v", buckets, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := guard.Get("tok-1"); err == nil {
		t.Fatal("Close left the shared database open")
	}
}

func TestWritableAndClosed(t *testing.T) {
	s, _ := openStore(t, boltstore.Options{})
	if err := s.CreateKey(testKey("k"), newRec("create", "k")); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := s.Writable(); err != nil {
			t.Fatalf("Writable on an open store: %v", err)
		}
	}
	if mustLast(t, s) != 1 {
		t.Fatal("Writable appended an audit record")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := audit.SignCheckpoint(newSigner(t), nil, 1, audit.Genesis, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	called := false
	tests := []struct {
		name string
		op   func() error
	}{
		{"Writable", s.Writable},
		{"GetKey", func() error { _, err := s.GetKey("k"); return err }},
		{"ListKeys", func() error { _, err := s.ListKeys("", 0); return err }},
		{"CreateKey", func() error { return s.CreateKey(testKey("k2"), newRec("create", "k2")) }},
		{"UpdateKey", func() error {
			_, err := s.UpdateKey("k", func(*keysvc.Key) error { called = true; return nil }, nil)
			return err
		}},
		{"Audit", func() error { return s.Audit(newRec("sign", "k")) }},
		{"AuditRecords", func() error { return s.AuditRecords(0, func(audit.Record) error { called = true; return nil }) }},
		{"LastAudit", func() error { _, _, err := s.LastAudit(); return err }},
		{"AddCheckpoint", func() error { return s.AddCheckpoint(c) }},
		{"Checkpoints", func() error { _, err := s.Checkpoints(); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, wire.ErrStore) || !errors.Is(err, bolt.ErrDatabaseNotOpen) {
				t.Fatalf("%s after Close = %v, want ErrStore", tt.name, err)
			}
		})
	}
	if called {
		t.Error("a callback ran on a closed store")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestOpenReadOnly(t *testing.T) {
	signer := newSigner(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "keyward.db")
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateKey(testKey("k"), newRec("create", "k")); err != nil {
		t.Fatal(err)
	}
	checkpoint(t, s, signer)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	ro, err := boltstore.Open(path, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if k, err := ro.GetKey("k"); err != nil || k.Name != "k" {
		t.Fatalf("GetKey read-only: %+v, %v", k, err)
	}
	if rep, err := verify(ro, &signer.PublicKey); err != nil || rep.Records != 1 || rep.Checkpoints != 1 {
		t.Fatalf("Verify read-only = %+v, %v", rep, err)
	}
	writes := []struct {
		name string
		op   func() error
	}{
		{"Writable", ro.Writable},
		{"CreateKey", func() error { return ro.CreateKey(testKey("k2"), nil) }},
		{"UpdateKey", func() error {
			_, err := ro.UpdateKey("k", func(*keysvc.Key) error { return nil }, nil)
			return err
		}},
		{"Audit", func() error { return ro.Audit(newRec("sign", "k")) }},
	}
	for _, tt := range writes {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, wire.ErrStore) || !errors.Is(err, bolt.ErrDatabaseReadOnly) {
				t.Fatalf("%s on a read-only store = %v, want ErrStore", tt.name, err)
			}
		})
	}

	// Read-only refuses files that are missing or hold no keysvc store.
	if _, err := boltstore.Open(filepath.Join(dir, "absent.db"), boltstore.Options{ReadOnly: true}); !errors.Is(err, wire.ErrStore) {
		t.Fatalf("read-only Open of a missing file = %v", err)
	}
	other := filepath.Join(dir, "other.db")
	db, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := boltstore.Open(other, boltstore.Options{ReadOnly: true}); !errors.Is(err, wire.ErrStore) {
		t.Fatalf("read-only Open of a foreign file = %v", err)
	}
}
