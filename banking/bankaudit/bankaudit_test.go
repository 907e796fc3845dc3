package bankaudit_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/bankaudit"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/dbtest"
	"github.com/keyward/keyward/keysvc/audit"
)

// keySigner signs checkpoint digests with an in-memory P-256 key (the
// bank-audit key's stand-in; the keysvc path is KMSSigner, tested in
// banking's harness and softhsm-tests).
type keySigner struct{ k *ecdsa.PrivateKey }

func newKeySigner(t testing.TB) keySigner {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keySigner{k}
}

func (s keySigner) SignDigest(_ context.Context, d []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, s.k, d)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openTrail(t testing.TB, db store.DB, s bankaudit.Signer) *bankaudit.Trail {
	t.Helper()
	tr, err := bankaudit.Open(bankaudit.Config{DB: db, Signer: s, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func appendN(t testing.TB, tr *bankaudit.Trail, n int, tag string) {
	t.Helper()
	for i := range n {
		if _, err := tr.Append(bankaudit.Event{Actor: "customer:c" + tag, Op: "login", Result: "ok", Detail: fmt.Sprintf("n=%d", i), Source: "192.0.2.7"}); err != nil {
			t.Fatal(err)
		}
	}
}

func mustCheckpoint(t testing.TB, tr *bankaudit.Trail) audit.Checkpoint {
	t.Helper()
	cp, err := tr.Checkpoint(context.Background())
	if err != nil || cp == nil {
		t.Fatalf("checkpoint: %v %v", cp, err)
	}
	return *cp
}

func TestAppendVerify(t *testing.T) {
	db := dbtest.New(t).Open()
	sig := newKeySigner(t)
	tr := openTrail(t, db, sig)
	if rep, err := bankaudit.Verify(db, &sig.k.PublicKey); err != nil || !rep.Empty {
		t.Fatalf("empty trail: %+v %v", rep, err)
	}
	rec, err := tr.Append(bankaudit.Event{Actor: "login:alice", Subject: "", Op: "login", Result: "login_failed", Detail: "device=d1", Source: "198.51.100.4"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Seq != 1 || rec.Client != "login:alice" || rec.Detail != "device=d1 source=198.51.100.4" || rec.Result != "login_failed" {
		t.Fatalf("record %+v", rec)
	}
	appendN(t, tr, 9, "1")
	// Records without a checkpoint: the chain holds, but nothing signed vouches.
	if _, err := bankaudit.Verify(db, &sig.k.PublicKey); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("unsigned log: %v", err)
	}
	cp := mustCheckpoint(t, tr)
	if cp.Seq != 10 || cp.Index != 1 {
		t.Fatalf("checkpoint %+v", cp)
	}
	if again := mustCheckpoint(t, tr); again.Seq != 10 {
		t.Fatalf("a checkpoint with nothing new: %+v", again)
	}
	appendN(t, tr, 3, "2")
	rep, err := bankaudit.Verify(db, &sig.k.PublicKey, audit.Anchor{Seq: cp.Seq, Hash: cp.Hash})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 13 || rep.Checkpoints != 1 || rep.Unsigned != 3 || rep.Anchors != 1 || rep.LastSeq != 13 {
		t.Fatalf("report %+v", rep)
	}
	// Another key's public key does not verify the checkpoint.
	other := newKeySigner(t)
	if _, err := bankaudit.Verify(db, &other.k.PublicKey); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("wrong public key: %v", err)
	}
	tail, err := bankaudit.Tail(db, 2)
	if err != nil || len(tail) != 2 || tail[0].Seq != 12 || tail[1].Seq != 13 {
		t.Fatalf("tail %+v %v", tail, err)
	}
}

// rawKey is a record's or checkpoint's key in the store.
func rawKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// tamper changes the store directly, as someone with write access to
// the database would.
func tamper(t *testing.T, db store.DB, fn func(recs, cps store.Bucket) error) {
	t.Helper()
	if err := db.Update(func(tx store.Tx) error {
		return fn(tx.Bucket([]byte("bank-audit-records")), tx.Bucket([]byte("bank-audit-checkpoints")))
	}); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	cases := []struct {
		name string
		fn   func(recs, cps store.Bucket) error
		want string
	}{
		{"edited", func(recs, _ store.Bucket) error {
			v := strings.Replace(string(recs.Get(rawKey(5))), `"result":"ok"`, `"result":"login_failed"`, 1)
			return recs.Put(rawKey(5), []byte(v))
		}, "at record 5: contents do not match its hash"},
		{"deleted", func(recs, _ store.Bucket) error { return recs.Delete(rawKey(4)) }, "at record 5: expected sequence number 4"},
		{"reordered", func(recs, _ store.Bucket) error {
			a, b := append([]byte(nil), recs.Get(rawKey(3))...), append([]byte(nil), recs.Get(rawKey(6))...)
			return errors.Join(recs.Put(rawKey(3), b), recs.Put(rawKey(6), a))
		}, "at record 6: expected sequence number 3"},
		{"deleted tail", func(recs, _ store.Bucket) error { return recs.Delete(rawKey(12)) }, "head names record 12"},
		{"forged checkpoint", func(recs, cps store.Bucket) error {
			// A checkpoint over record 12, chained correctly to the
			// real one but signed by another key.
			prev, err := audit.UnmarshalCheckpoint(cps.Get(rawKey(8)))
			if err != nil {
				return err
			}
			r12, err := audit.Unmarshal(recs.Get(rawKey(12)))
			if err != nil {
				return err
			}
			forger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			c, err := audit.SignCheckpoint(forger, &prev, 12, r12.Hash, time.Now())
			if err != nil {
				return err
			}
			v, err := json.Marshal(c)
			if err != nil {
				return err
			}
			return cps.Put(rawKey(12), v)
		}, "checkpoint at record 12 has a bad signature"},
		{"replaced checkpoint", func(recs, cps store.Bucket) error {
			// The real checkpoint's record hash swapped for record 7's.
			c, err := audit.UnmarshalCheckpoint(cps.Get(rawKey(8)))
			if err != nil {
				return err
			}
			r7, err := audit.Unmarshal(recs.Get(rawKey(7)))
			if err != nil {
				return err
			}
			c.Hash = r7.Hash
			v, err := json.Marshal(c)
			if err != nil {
				return err
			}
			return cps.Put(rawKey(8), v)
		}, "checkpoint at record 8 has a bad signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := dbtest.New(t).Open()
			sig := newKeySigner(t)
			tr := openTrail(t, db, sig)
			appendN(t, tr, 8, "a")
			mustCheckpoint(t, tr)
			appendN(t, tr, 4, "b")
			if seq, _, err := bankaudit.Head(db); err != nil || seq != 12 {
				t.Fatal(seq, err)
			}
			if _, err := bankaudit.Verify(db, &sig.k.PublicKey); err != nil {
				t.Fatalf("before tampering: %v", err)
			}
			tamper(t, db, tc.fn)
			_, err := bankaudit.Verify(db, &sig.k.PublicKey)
			if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("after %s: %v, want %q", tc.name, err, tc.want)
			}
		})
	}
}

// TestConcurrentAppenders: 32 goroutines appending at once give one chain
// with no gap and no duplicate (Verify checks each sequence number and
// link), checkpointed while they run.
func TestConcurrentAppenders(t *testing.T) {
	db := dbtest.New(t).Open()
	sig := newKeySigner(t)
	tr := openTrail(t, db, sig)
	const workers, each = 32, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := tr.Append(bankaudit.Event{Actor: fmt.Sprintf("customer:c%d", w), Op: "stepup", Result: "ok", Detail: fmt.Sprintf("i=%d", i)}); err != nil {
					errs <- err
					return
				}
				if i == each/2 && w%8 == 0 {
					if _, err := tr.Checkpoint(context.Background()); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	mustCheckpoint(t, tr)
	rep, err := bankaudit.Verify(db, &sig.k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != workers*each || rep.LastSeq != workers*each || rep.Unsigned != 0 {
		t.Fatalf("report %+v", rep)
	}
	seen := map[string]int{}
	if err := bankaudit.Records(db, 0, func(r audit.Record) error { seen[r.Client+"/"+r.Detail]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("%s recorded %d times", k, n)
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct records, want %d", len(seen), workers*each)
	}
}

// TestTwoNodesOneChain: two Trails on one shared store (on PostgreSQL two
// stores with their own connections, as two banking nodes) append and
// checkpoint at once; the result is one chain, and the checkpoints they
// race to write form one chain too.
func TestTwoNodesOneChain(t *testing.T) {
	dbs := dbtest.New(t).Nodes(2)
	sig := newKeySigner(t)
	trails := []*bankaudit.Trail{openTrail(t, dbs[0], sig), openTrail(t, dbs[1], sig)}
	const perNode, workers = 60, 4
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for n, tr := range trails {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perNode / workers {
					if _, err := tr.Append(bankaudit.Event{Actor: fmt.Sprintf("staff:n%d", n), Op: "staff.deposit", Result: "ok", Detail: fmt.Sprintf("w=%d i=%d", w, i)}); err != nil {
						errs <- err
						return
					}
					if i%5 == 4 {
						if _, err := tr.Checkpoint(context.Background()); err != nil {
							errs <- err
							return
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	mustCheckpoint(t, trails[1])
	rep, err := bankaudit.Verify(dbs[0], &sig.k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 2*perNode || rep.Unsigned != 0 || rep.Checkpoints < 2 {
		t.Fatalf("report %+v", rep)
	}
	t.Logf("%d records, %d checkpoints from two nodes (%s)", rep.Records, rep.Checkpoints, dbs[0].Backend())
}

// TestCheckpointRace: two nodes that read the same head and the same
// newest checkpoint both sign; one checkpoint is stored, and both return it.
func TestCheckpointRace(t *testing.T) {
	dbs := dbtest.New(t).Nodes(2)
	sig := newKeySigner(t)
	a, b := openTrail(t, dbs[0], sig), openTrail(t, dbs[1], sig)
	appendN(t, a, 5, "x")
	mustCheckpoint(t, a)
	appendN(t, b, 5, "y")
	gate := make(chan struct{})
	slow := gatedSigner{sig, gate}
	c := openTrail(t, dbs[1], slow)
	var got *audit.Checkpoint
	var cerr error
	done := make(chan struct{})
	go func() { got, cerr = c.Checkpoint(context.Background()); close(done) }()
	time.Sleep(50 * time.Millisecond) // c has read the head and waits in its signer
	first := mustCheckpoint(t, a)
	close(gate)
	<-done
	if cerr != nil || got == nil || got.Index != first.Index || got.Seq != first.Seq {
		t.Fatalf("the racing node: %+v %v; stored %+v", got, cerr, first)
	}
	cps, err := bankaudit.Checkpoints(dbs[0])
	if err != nil || len(cps) != 2 {
		t.Fatalf("checkpoints %d %v", len(cps), err)
	}
	if _, err := bankaudit.Verify(dbs[0], &sig.k.PublicKey); err != nil {
		t.Fatal(err)
	}
}

type gatedSigner struct {
	s    keySigner
	gate chan struct{}
}

func (g gatedSigner) SignDigest(ctx context.Context, d []byte) ([]byte, error) {
	<-g.gate
	return g.s.SignDigest(ctx, d)
}

// TestPrune: records younger than the retention are refused; an older
// part of the log goes up to a signed checkpoint, which stays as the base
// the rest verifies from; tampering after the base is still caught.
func TestPrune(t *testing.T) {
	db := dbtest.New(t).Open()
	sig := newKeySigner(t)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr, err := bankaudit.Open(bankaudit.Config{DB: db, Signer: sig, Logger: quiet, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, tr, 10, "old")
	mustCheckpoint(t, tr) // at record 10, January
	clock = clock.AddDate(0, 3, 0)
	appendN(t, tr, 5, "mid")
	mustCheckpoint(t, tr) // at record 15, April
	clock = clock.AddDate(0, 9, 0)
	appendN(t, tr, 5, "new")
	mustCheckpoint(t, tr) // at record 20, next January
	now := clock
	pub := &sig.k.PublicKey
	if _, err := bankaudit.Prune(db, pub, now.AddDate(0, -1, 0), bankaudit.MinRetention, now); !errors.Is(err, bankaudit.ErrTooYoung) {
		t.Fatalf("a prune within the retention: %v", err)
	}
	if _, err := bankaudit.Prune(db, pub, now.AddDate(-1, 0, 0), 90*24*time.Hour, now); err == nil {
		t.Fatal("a 90-day retention was accepted")
	}
	// Before May: the newest checkpoint older than that is record 15's.
	res, err := bankaudit.Prune(db, pub, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), bankaudit.MinRetention, now)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 14 || res.Base.Seq != 15 {
		t.Fatalf("prune %+v", res)
	}
	rep, err := bankaudit.Verify(db, pub)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Base == nil || rep.Base.Seq != 15 || rep.Records != 6 || rep.LastSeq != 20 || rep.Checkpoints != 2 {
		t.Fatalf("after prune: %+v", rep)
	}
	appendN(t, tr, 2, "after")
	mustCheckpoint(t, tr)
	if _, err := bankaudit.Verify(db, pub); err != nil {
		t.Fatalf("appending after a prune: %v", err)
	}
	tamper(t, db, func(recs, _ store.Bucket) error { return recs.Delete(rawKey(17)) })
	if _, err := bankaudit.Verify(db, pub); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("a record deleted after the base: %v", err)
	}
	tamper(t, db, func(recs, _ store.Bucket) error { return recs.Delete(rawKey(15)) })
	if _, err := bankaudit.Verify(db, pub); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("the base record deleted: %v", err)
	}
}

// TestRunCheckpointsEveryN: Run signs a checkpoint once Every records
// were appended (the interval is an hour, so only the count can trigger
// it) and a last one when it stops.
func TestRunCheckpointsEveryN(t *testing.T) {
	db := dbtest.New(t).Open()
	sig := newKeySigner(t)
	tr, err := bankaudit.Open(bankaudit.Config{DB: db, Signer: sig, Every: 5, Interval: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	appendN(t, tr, 5, "a")
	deadline := time.Now().Add(10 * time.Second)
	for {
		cps, err := bankaudit.Checkpoints(db)
		if err != nil {
			t.Fatal(err)
		}
		if len(cps) == 1 && cps[0].Seq == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint after 5 records (Every 5): %+v", cps)
		}
		time.Sleep(10 * time.Millisecond)
	}
	appendN(t, tr, 2, "b") // fewer than Every: only the stop signs them
	stop()
	<-done
	rep, err := bankaudit.Verify(db, &sig.k.PublicKey)
	if err != nil || rep.Records != 7 || rep.Checkpoints != 2 || rep.Unsigned != 0 {
		t.Fatalf("after Run stopped: %+v %v", rep, err)
	}
}

// TestAppendFailureExposed: an append the store refuses is an error,
// counted, and Healthy reports it until an append succeeds again.
func TestAppendFailureExposed(t *testing.T) {
	db := &flakyDB{DB: dbtest.New(t).Open()}
	tr := openTrail(t, db, nil)
	appendN(t, tr, 1, "a")
	db.fail.Store(true)
	if _, err := tr.Append(bankaudit.Event{Actor: "system", Op: "x", Result: "ok"}); !errors.Is(err, bankaudit.ErrStore) || !errors.Is(err, errInjected) {
		t.Fatalf("append on a failing store: %v", err)
	}
	if tr.Failures() != 1 || !errors.Is(tr.Healthy(), errInjected) {
		t.Fatalf("failures %d, healthy %v", tr.Failures(), tr.Healthy())
	}
	db.fail.Store(false)
	appendN(t, tr, 1, "b")
	if tr.Healthy() != nil || tr.Failures() != 1 {
		t.Fatalf("after a good append: failures %d, healthy %v", tr.Failures(), tr.Healthy())
	}
	if seq, _, _ := bankaudit.Head(db); seq != 2 {
		t.Fatalf("head %d, want 2: the failed append left nothing", seq)
	}
}

var errInjected = errors.New("injected store failure")

// flakyDB fails every Batch while fail is set.
type flakyDB struct {
	store.DB
	fail atomic.Bool
}

func (f *flakyDB) Batch(fn func(store.Tx) error) error {
	if f.fail.Load() {
		return errInjected
	}
	return f.DB.Batch(fn)
}

// TestCheckpointNoticesCutBack: a node that signed checkpoint 2 refuses
// to go on when the store's newest checkpoint is suddenly checkpoint 1
// (checkpoints deleted under it).
func TestCheckpointNoticesCutBack(t *testing.T) {
	db := dbtest.New(t).Open()
	sig := newKeySigner(t)
	tr := openTrail(t, db, sig)
	appendN(t, tr, 3, "a")
	mustCheckpoint(t, tr)
	appendN(t, tr, 3, "b")
	if cp := mustCheckpoint(t, tr); cp.Index != 2 {
		t.Fatalf("checkpoint %+v", cp)
	}
	tamper(t, db, func(_, cps store.Bucket) error { return cps.Delete(rawKey(6)) })
	appendN(t, tr, 1, "c")
	if _, err := tr.Checkpoint(context.Background()); !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "checkpoints were deleted") {
		t.Fatalf("checkpoint after the newest was deleted: %v", err)
	}
}
