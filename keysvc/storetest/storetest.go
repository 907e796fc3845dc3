// Package storetest is the conformance suite of the keysvc.Store contract
// (keysvc/store.go): every Store — the embedded bbolt one
// (keysvc/boltstore), the clustered etcd one (keysvc/etcdstore) — runs it
// from its own tests:
//
//	func TestStoreConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) keysvc.Store { return openFresh(t) })
//	}
//
// open is called once per subtest and must return an empty store (a log
// with no record, no key, no checkpoint); it registers its own cleanup
// with t.Cleanup (Close may then run on a store the suite closed already).
//
// # What it checks
//
//   - CreateKey stores the key and its audit record in one transaction (the
//     record sealed, Seq/Prev/Hash handed back, the head moved — except by
//     a store that chains after acknowledging, keysvc.AuditSyncer, whose
//     log the suite reads after SyncAudit); a taken
//     name is refused with wire.ErrKeyExists and appends nothing.
//   - GetKey returns copies; an unknown name is wire.ErrKeyNotFound.
//   - ListKeys pages by name (after, limit) in byte order.
//   - UpdateKey stores fn's result with the record fn filled in; an error
//     from fn stores nothing, appends nothing and is returned as is; a
//     rename is refused; an unknown key is wire.ErrKeyNotFound.
//   - Audit under 32 concurrent appenders: every append gets its own seq,
//     the chain verifies with audit.Checker from Genesis, no gap, no
//     duplicate, count equals appends; AuditRecords from a seq; LastAudit.
//   - Checkpoints: AddCheckpoint chains, refuses a seq beyond the log, a
//     wrong hash and a checkpoint that does not follow; audit.Verify passes.
//   - ServiceKeys/SetServiceKeys and KEKEpochs/SetKEKEpochs round-trip and
//     append their record; AuditFormat is keysvc.AuditFormat for a fresh
//     store; Writable.
//   - A closed store fails every call with wire.ErrStore, without hanging.
package storetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/wire"
)

// Appenders is how many goroutines append concurrently in the chain test.
const Appenders = 32

// AppendsEach is how many records each appender appends.
var AppendsEach = 8

// Run runs the suite; open returns a fresh, empty store per subtest.
func Run(t *testing.T, open func(t *testing.T) keysvc.Store) {
	t.Run("CreateGet", func(t *testing.T) { testCreateGet(t, open(t)) })
	t.Run("List", func(t *testing.T) { testList(t, open(t)) })
	t.Run("Update", func(t *testing.T) { testUpdate(t, open(t)) })
	t.Run("UpdateErrorStoresNothing", func(t *testing.T) { testUpdateError(t, open(t)) })
	t.Run("ConcurrentAppends", func(t *testing.T) { testConcurrentAppends(t, open(t)) })
	t.Run("Checkpoints", func(t *testing.T) { testCheckpoints(t, open(t)) })
	t.Run("ServiceRecords", func(t *testing.T) { testServiceRecords(t, open(t)) })
	t.Run("FormatWritable", func(t *testing.T) { testFormatWritable(t, open(t)) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, open(t)) })
}

var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589793238, time.UTC)

// Key returns a test key record named name.
func Key(name string) *keysvc.Key {
	return &keysvc.Key{
		Name: name, Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionWrapped,
		Primary: 1, MinVersion: 1, RotationPeriod: wire.Duration(720 * time.Hour), LastRotated: t0,
		Policy: wire.Policy{Grants: []wire.Grant{{Client: "payments", Ops: []wire.Op{wire.OpSign}}}},
		Versions: []keysvc.Version{{Version: 1, State: wire.StateEnabled, CreatedAt: t0,
			PublicKey: []byte{0x30, 0x59, 1, 2, 3}, Wrapped: []byte("blob-1")}},
		CreatedAt: t0,
		Revision:  1,
	}
}

// Rec returns an unsealed audit record of op on key.
func Rec(op, key string) *audit.Record {
	return &audit.Record{Time: time.Now(), Client: "admin", Key: key, Version: 1, Op: op, Result: "ok",
		RequestDigest: audit.DigestScheme + ":" + strings.Repeat("ab", 32)}
}

// Sync waits, for a store that chains after acknowledging
// (keysvc.AuditSyncer), until every acknowledged record is chained; for
// any other store it does nothing.
func Sync(t testing.TB, s keysvc.Store) {
	t.Helper()
	if sy, ok := s.(keysvc.AuditSyncer); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := sy.SyncAudit(ctx); err != nil {
			t.Fatalf("SyncAudit: %v", err)
		}
	}
}

// deferred reports whether s seals records after acknowledging them
// (keysvc.AuditSyncer): it hands back no Seq, Prev and Hash.
func deferred(s keysvc.Store) bool {
	_, ok := s.(keysvc.AuditSyncer)
	return ok
}

// All reads the whole log (after Sync).
func All(t testing.TB, s keysvc.Store) []audit.Record {
	t.Helper()
	Sync(t, s)
	var out []audit.Record
	if err := s.AuditRecords(0, func(r audit.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatalf("AuditRecords: %v", err)
	}
	return out
}

// CheckChain verifies recs with audit.Checker from Genesis: no gap, no
// duplicate, every hash and link; and that the store's head is the last.
func CheckChain(t testing.TB, s keysvc.Store, recs []audit.Record) {
	t.Helper()
	ck := audit.NewChecker()
	for _, r := range recs {
		if err := ck.Next(r); err != nil {
			t.Fatalf("audit chain: %v", err)
		}
	}
	seq, hash, err := s.LastAudit()
	if err != nil {
		t.Fatalf("LastAudit: %v", err)
	}
	ls, lh := ck.Last()
	if seq != ls || string(hash) != string(lh) {
		t.Fatalf("LastAudit = %d %x, the log ends at %d %x", seq, hash, ls, lh)
	}
}

func testCreateGet(t *testing.T, s keysvc.Store) {
	k := Key("alpha")
	rec := Rec("create", "alpha")
	if err := s.CreateKey(k, rec); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if !deferred(s) && (rec.Seq != 1 || len(rec.Hash) == 0 || string(rec.Prev) != string(audit.Genesis)) {
		t.Fatalf("CreateKey did not hand back the sealed record: seq %d prev %x hash %x", rec.Seq, rec.Prev, rec.Hash)
	}
	got, err := s.GetKey("alpha")
	if err != nil {
		t.Fatalf("GetKey: %v", err)
	}
	if !reflect.DeepEqual(got, k) {
		t.Fatalf("GetKey = %+v\nwant %+v", got, k)
	}
	got.Versions[0].State = wire.StateDisabled // a copy: the store must not see it
	if again, _ := s.GetKey("alpha"); again == nil || again.Versions[0].State != wire.StateEnabled {
		t.Fatalf("changing a returned key changed the stored one")
	}
	if _, err := s.GetKey("nosuch"); !errors.Is(err, wire.ErrKeyNotFound) {
		t.Fatalf("GetKey(unknown) = %v, want wire.ErrKeyNotFound", err)
	}
	dup := Rec("create", "alpha")
	if err := s.CreateKey(Key("alpha"), dup); !errors.Is(err, wire.ErrKeyExists) {
		t.Fatalf("CreateKey(taken) = %v, want wire.ErrKeyExists", err)
	}
	if dup.Seq != 0 {
		t.Fatalf("a refused CreateKey sealed its record (seq %d)", dup.Seq)
	}
	if err := s.CreateKey(&keysvc.Key{}, Rec("create", "")); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Fatalf("CreateKey(no name) = %v, want wire.ErrInvalidArgument", err)
	}
	// A key without a record: stored, nothing appended.
	if err := s.CreateKey(Key("beta"), nil); err != nil {
		t.Fatalf("CreateKey(nil record): %v", err)
	}
	recs := All(t, s)
	if len(recs) != 1 || recs[0].Op != "create" || recs[0].Key != "alpha" || (!deferred(s) && string(recs[0].Hash) != string(rec.Hash)) {
		t.Fatalf("log after one audited create, one refused, one unaudited = %d records: %+v", len(recs), recs)
	}
	CheckChain(t, s, recs)
}

func testList(t *testing.T, s keysvc.Store) {
	names := []string{"b", "a", "c/1", "c", "d", "a-b", "e"}
	for _, n := range names {
		if err := s.CreateKey(Key(n), Rec("create", n)); err != nil {
			t.Fatalf("CreateKey(%s): %v", n, err)
		}
	}
	want := []string{"a", "a-b", "b", "c", "c/1", "d", "e"} // byte order
	list := func(after string, limit int) []string {
		t.Helper()
		ks, err := s.ListKeys(after, limit)
		if err != nil {
			t.Fatalf("ListKeys(%q, %d): %v", after, limit, err)
		}
		var out []string
		for _, k := range ks {
			out = append(out, k.Name)
		}
		return out
	}
	if got := list("", 0); !reflect.DeepEqual(got, want) {
		t.Fatalf("ListKeys(all) = %v, want %v", got, want)
	}
	var paged []string
	after := ""
	for {
		page := list(after, 3)
		if len(page) == 0 {
			break
		}
		if len(page) > 3 {
			t.Fatalf("ListKeys(%q, 3) returned %d keys", after, len(page))
		}
		paged = append(paged, page...)
		after = page[len(page)-1]
	}
	if !reflect.DeepEqual(paged, want) {
		t.Fatalf("paged ListKeys = %v, want %v", paged, want)
	}
	if got := list("c", 2); !reflect.DeepEqual(got, []string{"c/1", "d"}) {
		t.Fatalf("ListKeys(c, 2) = %v", got)
	}
	if got := list("bb", 1); !reflect.DeepEqual(got, []string{"c"}) {
		t.Fatalf("ListKeys(bb, 1) (after a name not stored) = %v", got)
	}
	if got := list("e", 0); len(got) != 0 {
		t.Fatalf("ListKeys(after the last) = %v", got)
	}
}

func testUpdate(t *testing.T, s keysvc.Store) {
	if err := s.CreateKey(Key("k"), Rec("create", "k")); err != nil {
		t.Fatal(err)
	}
	rec := Rec("disable", "k")
	got, err := s.UpdateKey("k", func(k *keysvc.Key) error {
		k.Versions[0].State = wire.StateDisabled
		k.Revision++
		rec.Detail = "filled in by fn"
		return nil
	}, rec)
	if err != nil {
		t.Fatalf("UpdateKey: %v", err)
	}
	if got.Versions[0].State != wire.StateDisabled || got.Revision != 2 {
		t.Fatalf("UpdateKey returned %+v", got)
	}
	if !deferred(s) && rec.Seq != 2 {
		t.Fatalf("UpdateKey's record has seq %d, want 2", rec.Seq)
	}
	stored, err := s.GetKey("k")
	if err != nil || stored.Versions[0].State != wire.StateDisabled || stored.Revision != 2 {
		t.Fatalf("GetKey after UpdateKey = %+v, %v", stored, err)
	}
	recs := All(t, s)
	if len(recs) != 2 || recs[1].Op != "disable" || recs[1].Detail != "filled in by fn" {
		t.Fatalf("log after create and update = %+v", recs)
	}
	CheckChain(t, s, recs)
	// Unaudited update.
	if _, err := s.UpdateKey("k", func(k *keysvc.Key) error { k.Revision++; return nil }, nil); err != nil {
		t.Fatalf("UpdateKey(nil record): %v", err)
	}
	if k, _ := s.GetKey("k"); k == nil || k.Revision != 3 {
		t.Fatalf("unaudited update not stored: %+v", k)
	}
	if n := len(All(t, s)); n != 2 {
		t.Fatalf("an unaudited update appended (%d records)", n)
	}
	if _, err := s.UpdateKey("nosuch", func(*keysvc.Key) error { return nil }, Rec("x", "nosuch")); !errors.Is(err, wire.ErrKeyNotFound) {
		t.Fatalf("UpdateKey(unknown) = %v, want wire.ErrKeyNotFound", err)
	}
	if _, err := s.UpdateKey("k", func(k *keysvc.Key) error { k.Name = "other"; return nil }, Rec("x", "k")); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Fatalf("UpdateKey renaming = %v, want wire.ErrInvalidArgument", err)
	}
	if _, err := s.GetKey("other"); !errors.Is(err, wire.ErrKeyNotFound) {
		t.Fatalf("a refused rename stored key other: %v", err)
	}
}

func testUpdateError(t *testing.T, s keysvc.Store) {
	if err := s.CreateKey(Key("k"), Rec("create", "k")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	rec := Rec("disable", "k")
	got, err := s.UpdateKey("k", func(k *keysvc.Key) error {
		k.Versions[0].State = wire.StateDisabled
		return boom
	}, rec)
	if err != boom || got != nil { //nolint:errorlint // "returned as is"
		t.Fatalf("UpdateKey with failing fn = %v, %v; want nil and the error as is", got, err)
	}
	if rec.Seq != 0 {
		t.Fatalf("a failed update sealed its record (seq %d)", rec.Seq)
	}
	if k, _ := s.GetKey("k"); k == nil || k.Versions[0].State != wire.StateEnabled {
		t.Fatalf("failing fn stored its change: %+v", k)
	}
	if recs := All(t, s); len(recs) != 1 {
		t.Fatalf("failing fn appended: %d records", len(recs))
	}
}

func testConcurrentAppends(t *testing.T, s keysvc.Store) {
	if err := s.CreateKey(Key("k"), Rec("create", "k")); err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		seqs  = map[uint64]string{}
		acked = map[string]bool{} // a deferred store's acknowledged records
		errs  []error
	)
	for a := range Appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range AppendsEach {
				r := Rec("sign", "k")
				r.Detail = fmt.Sprintf("appender=%d i=%d", a, i)
				var err error
				if i%4 == 3 { // some appends ride on key updates
					_, err = s.UpdateKey("k", func(k *keysvc.Key) error { k.Revision++; return nil }, r)
				} else {
					err = s.Audit(r)
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if deferred(s) {
					acked[r.Detail] = true
				} else if prev, dup := seqs[r.Seq]; dup {
					errs = append(errs, fmt.Errorf("seq %d handed to %q and %q", r.Seq, prev, r.Detail))
				} else {
					seqs[r.Seq] = r.Detail
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	recs := All(t, s)
	want := 1 + Appenders*AppendsEach
	if len(recs) != want {
		t.Fatalf("log holds %d records after %d appends", len(recs), want)
	}
	CheckChain(t, s, recs)
	details := map[string]bool{}
	for _, r := range recs[1:] {
		if details[r.Detail] {
			t.Fatalf("record %q stored twice", r.Detail)
		}
		details[r.Detail] = true
		if deferred(s) {
			if !acked[r.Detail] {
				t.Fatalf("record %d is %q, which no append was acknowledged for", r.Seq, r.Detail)
			}
			continue
		}
		if seqs[r.Seq] != r.Detail {
			t.Fatalf("record %d is %q, but the store handed seq %d to %q", r.Seq, r.Detail, r.Seq, seqs[r.Seq])
		}
	}
	if k, _ := s.GetKey("k"); k == nil || k.Revision != uint64(1+Appenders*AppendsEach/4) {
		t.Fatalf("key revision after %d concurrent updates = %+v", Appenders*AppendsEach/4, k)
	}
	// AuditRecords from a seq.
	var from []uint64
	if err := s.AuditRecords(uint64(want-2), func(r audit.Record) error { from = append(from, r.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(from, []uint64{uint64(want - 2), uint64(want - 1), uint64(want)}) {
		t.Fatalf("AuditRecords(%d) = %v", want-2, from)
	}
	stop := errors.New("stop")
	n := 0
	if err := s.AuditRecords(0, func(audit.Record) error { n++; return stop }); err != stop { //nolint:errorlint
		t.Fatalf("AuditRecords with fn failing = %v, want fn's error as is", err)
	}
	if n != 1 {
		t.Fatalf("AuditRecords went on after fn failed (%d calls)", n)
	}
}

func testCheckpoints(t *testing.T, s keysvc.Store) {
	signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.Audit(Rec("sign", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	Sync(t, s)
	seq, hash, err := s.LastAudit()
	if err != nil || seq != 3 {
		t.Fatalf("LastAudit = %d, %v", seq, err)
	}
	c1, err := audit.SignCheckpoint(signer, nil, seq, hash, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddCheckpoint(c1); err != nil {
		t.Fatalf("AddCheckpoint: %v", err)
	}
	// Beyond the log, a wrong hash, not following: refused.
	beyond, _ := audit.SignCheckpoint(signer, &c1, 4, hash, time.Now())
	if err := s.AddCheckpoint(beyond); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Fatalf("AddCheckpoint(beyond the log) = %v, want wire.ErrInvalidArgument", err)
	}
	if err := s.Audit(Rec("sign", "x")); err != nil {
		t.Fatal(err)
	}
	Sync(t, s)
	seq2, hash2, _ := s.LastAudit()
	wrong, _ := audit.SignCheckpoint(signer, &c1, seq2, hash, time.Now())
	if err := s.AddCheckpoint(wrong); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Fatalf("AddCheckpoint(wrong hash) = %v, want wire.ErrInvalidArgument", err)
	}
	unchained, _ := audit.SignCheckpoint(signer, nil, seq2, hash2, time.Now())
	if err := s.AddCheckpoint(unchained); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Fatalf("AddCheckpoint(not following the newest) = %v, want wire.ErrInvalidArgument", err)
	}
	c2, _ := audit.SignCheckpoint(signer, &c1, seq2, hash2, time.Now())
	if err := s.AddCheckpoint(c2); err != nil {
		t.Fatalf("AddCheckpoint(second): %v", err)
	}
	cps, err := s.Checkpoints()
	if err != nil || len(cps) != 2 || cps[0].Seq != 3 || cps[1].Seq != 4 {
		t.Fatalf("Checkpoints = %+v, %v", cps, err)
	}
	recs := All(t, s)
	i := 0
	rep, err := audit.Verify(func() (audit.Record, error) {
		if i == len(recs) {
			return audit.Record{}, io.EOF
		}
		i++
		return recs[i-1], nil
	}, cps, &signer.PublicKey)
	if err != nil {
		t.Fatalf("audit.Verify: %v", err)
	}
	if rep.Records != 4 || rep.Checkpoints != 2 {
		t.Fatalf("audit.Verify report = %+v", rep)
	}
}

func testServiceRecords(t *testing.T, s keysvc.Store) {
	if r, err := s.ServiceKeys(); err != nil || r != nil {
		t.Fatalf("ServiceKeys on a fresh store = %+v, %v; want nil, nil", r, err)
	}
	if e, err := s.KEKEpochs(); err != nil || e != nil {
		t.Fatalf("KEKEpochs on a fresh store = %+v, %v; want nil, nil", e, err)
	}
	sk := &keysvc.ServiceKeyRecord{TokenLabel: "keyward", TokenSerial: "0001", RecordedAt: t0,
		Keys: []keysvc.ServiceKey{{Label: "kek", ID: []byte{1, 2}, Type: "aes", CheckMethod: "cmac", Check: []byte{3, 4}}}}
	rec := Rec("service-keys", "")
	if err := s.SetServiceKeys(sk, rec); err != nil {
		t.Fatalf("SetServiceKeys: %v", err)
	}
	if !deferred(s) && rec.Seq != 1 {
		t.Fatalf("SetServiceKeys's record seq %d", rec.Seq)
	}
	if got, err := s.ServiceKeys(); err != nil || !reflect.DeepEqual(got, sk) {
		t.Fatalf("ServiceKeys = %+v, %v; want %+v", got, err, sk)
	}
	started := t0.Add(time.Hour)
	e := &keysvc.KEKEpochs{Current: 1, Target: 2, StartedAt: &started, StartedBy: "officer"}
	sk2 := *sk
	sk2.TokenSerial = "0002"
	if err := s.SetKEKEpochs(e, &sk2, Rec("kek-rotate", "")); err != nil {
		t.Fatalf("SetKEKEpochs: %v", err)
	}
	if got, err := s.KEKEpochs(); err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("KEKEpochs = %+v, %v; want %+v", got, err, e)
	}
	if got, _ := s.ServiceKeys(); got == nil || got.TokenSerial != "0002" {
		t.Fatalf("SetKEKEpochs did not store the service-key record: %+v", got)
	}
	e2 := &keysvc.KEKEpochs{Current: 2}
	if err := s.SetKEKEpochs(e2, nil, nil); err != nil {
		t.Fatalf("SetKEKEpochs(no record): %v", err)
	}
	if got, _ := s.KEKEpochs(); got == nil || got.Current != 2 || got.Target != 0 {
		t.Fatalf("KEKEpochs after the unaudited set = %+v", got)
	}
	if got, _ := s.ServiceKeys(); got == nil || got.TokenSerial != "0002" {
		t.Fatalf("SetKEKEpochs with sk nil changed the service-key record: %+v", got)
	}
	recs := All(t, s)
	if len(recs) != 2 || recs[0].Op != "service-keys" || recs[1].Op != "kek-rotate" {
		t.Fatalf("log = %+v", recs)
	}
	CheckChain(t, s, recs)
}

func testFormatWritable(t *testing.T, s keysvc.Store) {
	if f, err := s.AuditFormat(); err != nil || f != keysvc.AuditFormat {
		t.Fatalf("AuditFormat of a fresh store = %d, %v; want %d", f, err, keysvc.AuditFormat)
	}
	if seq, hash, err := s.LastAudit(); err != nil || seq != 0 || string(hash) != string(audit.Genesis) {
		t.Fatalf("LastAudit of a fresh store = %d %x %v", seq, hash, err)
	}
	if err := s.Writable(); err != nil {
		t.Fatalf("Writable: %v", err)
	}
	// A migration of a log already in the current format is refused and
	// changes nothing.
	final := Rec("migrate", "")
	err := s.MigrateAudit(keysvc.AuditMigration{Rekey: func(o string) (string, error) { return o, nil }, Final: final,
		Sign: func(uint64, []byte) (audit.Checkpoint, error) { return audit.Checkpoint{}, nil }})
	if err == nil {
		t.Fatal("MigrateAudit of a current-format log succeeded")
	}
	if seq, _, _ := s.LastAudit(); seq != 0 {
		t.Fatalf("a refused migration appended (head %d)", seq)
	}
}

func testClosed(t *testing.T, s keysvc.Store) {
	if err := s.CreateKey(Key("k"), Rec("create", "k")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		calls := map[string]error{
			"CreateKey": s.CreateKey(Key("n"), Rec("create", "n")),
			"Audit":     s.Audit(Rec("sign", "k")),
			"Writable":  s.Writable(),
		}
		_, calls["GetKey"] = s.GetKey("k")
		_, calls["ListKeys"] = s.ListKeys("", 0)
		_, calls["UpdateKey"] = s.UpdateKey("k", func(*keysvc.Key) error { return nil }, Rec("x", "k"))
		calls["AuditRecords"] = s.AuditRecords(0, func(audit.Record) error { return nil })
		_, _, calls["LastAudit"] = s.LastAudit()
		_, calls["Checkpoints"] = s.Checkpoints()
		_, calls["ServiceKeys"] = s.ServiceKeys()
		calls["SetServiceKeys"] = s.SetServiceKeys(&keysvc.ServiceKeyRecord{}, Rec("x", ""))
		_, calls["KEKEpochs"] = s.KEKEpochs()
		for name, err := range calls {
			if !errors.Is(err, wire.ErrStore) {
				t.Errorf("%s on a closed store = %v, want wire.ErrStore", name, err)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("calls on a closed store hang")
	}
}
