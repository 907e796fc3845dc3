package keysvc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/memtoken"
)

// The KEK rotation (keysvc/kekrotation.go) on token/memtoken and a real
// bbolt store: epochs recorded, every live blob re-wrapped, concurrent
// lifecycle changes kept, a restart resumes, retired epochs refused.
// softhsm-tests/kekrotation_test.go runs it on SoftHSM2 under load.

// hookedKeys is a memtoken whose Rewrap and DestroyKey a test can hold.
type hookedKeys struct {
	*memtoken.Token
	rewraps   atomic.Int64
	onRewrap  func(ctx context.Context, ks token.KeySpec) error // nil: no hook
	onDestroy func(ctx context.Context, label string) error
}

func (h *hookedKeys) Rewrap(ctx context.Context, from, to token.KeyRef, blob []byte, ks token.KeySpec) ([]byte, error) {
	h.rewraps.Add(1)
	if h.onRewrap != nil {
		if err := h.onRewrap(ctx, ks); err != nil {
			return nil, err
		}
	}
	return h.Token.Rewrap(ctx, from, to, blob, ks)
}

func (h *hookedKeys) DestroyKey(ctx context.Context, ref token.KeyRef) error {
	if h.onDestroy != nil {
		if err := h.onDestroy(ctx, ref.Label()); err != nil {
			return err
		}
	}
	return h.Token.DestroyKey(ctx, ref)
}

type kekEnv struct {
	t    *testing.T
	keys *hookedKeys
	path string
	st   *boltstore.Store
	svc  *keysvc.Service
}

func newKEKEnv(t *testing.T) *kekEnv {
	e := &kekEnv{t: t, keys: &hookedKeys{Token: memtoken.New("mem", "0001")}, path: filepath.Join(t.TempDir(), "keysvc.db")}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *kekEnv) start() {
	e.t.Helper()
	var err error
	if e.st, err = boltstore.Open(e.path, boltstore.Options{}); err != nil {
		e.t.Fatal(err)
	}
	e.svc, err = keysvc.New(context.Background(), keysvc.Config{Keys: e.keys, Store: e.st, MinDestroyDelay: time.Hour,
		CreateKEKEpochs: true, KEKRewrapWorkers: 3, KEKProgressEvery: 10})
	if err != nil {
		e.st.Close()
		e.st = nil
		e.t.Fatal(err)
	}
}

func (e *kekEnv) stop() {
	if e.svc != nil {
		e.svc.Close()
		e.svc = nil
	}
	if e.st != nil {
		e.st.Close()
		e.st = nil
	}
}

func (e *kekEnv) create(name string, purpose wire.Purpose, alg wire.Algorithm, prot wire.Protection, ops ...wire.Op) {
	e.t.Helper()
	_, err := e.svc.CreateKey(context.Background(), officer, wire.CreateKeyRequest{Name: name, Purpose: purpose, Algorithm: alg, Protection: prot,
		Policy: wire.Policy{Grants: []wire.Grant{{Client: bank.Name, Ops: ops}}}})
	if err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
}

// use signs (sign keys) or encrypts and decrypts (encrypt keys) with key
// name's primary and checks the result.
func (e *kekEnv) use(name string, purpose wire.Purpose) error {
	ctx := context.Background()
	if purpose == wire.PurposeSign {
		r, err := e.svc.Sign(ctx, bank, name, wire.SignRequest{Message: wire.Base64("kek " + name)})
		if err != nil {
			return err
		}
		ok, err := e.svc.Verify(ctx, bank, name, wire.VerifyRequest{Message: wire.Base64("kek " + name), Signature: r.Signature})
		if err != nil || !ok {
			return fmt.Errorf("verify %s: %v %v", name, ok, err)
		}
		return nil
	}
	ct, _, err := e.svc.Encrypt(ctx, bank, name, []byte("secret of "+name), nil)
	if err != nil {
		return err
	}
	pt, err := e.svc.Decrypt(ctx, bank, name, ct, nil)
	if err != nil {
		return err
	}
	if string(pt) != "secret of "+name {
		return fmt.Errorf("decrypt %s: wrong plaintext", name)
	}
	return nil
}

func (e *kekEnv) status() wire.KEKRotationStatus {
	e.t.Helper()
	st, err := e.svc.KEKRotation(context.Background(), officer)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// waitState waits (at most 30 s) until the rotation's state is want.
func (e *kekEnv) waitState(want string) wire.KEKRotationStatus {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := e.status()
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("KEK rotation still %s after 30 s, want %s: %+v", st.State, want, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *kekEnv) key(name string) *keysvc.Key {
	e.t.Helper()
	k, err := e.st.GetKey(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return k
}

func (e *kekEnv) auditOps() map[string][]audit.Record {
	e.t.Helper()
	out := map[string][]audit.Record{}
	if err := e.st.AuditRecords(0, func(r audit.Record) error { out[r.Op] = append(out[r.Op], r); return nil }); err != nil {
		e.t.Fatal(err)
	}
	return out
}

type kekTestKey struct {
	name    string
	purpose wire.Purpose
	alg     wire.Algorithm
	prot    wire.Protection
}

// fill creates n keys of each kind the rotation touches, and one of each
// it leaves alone (hsm).
func (e *kekEnv) fill(n int) []kekTestKey {
	kinds := []kekTestKey{
		{"w-ec", wire.PurposeSign, wire.AlgECP256, wire.ProtectionWrapped},
		{"w-aes", wire.PurposeEncrypt, wire.AlgAES256, wire.ProtectionWrapped},
		{"w-sm2", wire.PurposeSign, wire.AlgSM2, wire.ProtectionWrapped},
		{"w-sm4", wire.PurposeEncrypt, wire.AlgSM4, wire.ProtectionWrapped},
	}
	var out []kekTestKey
	for i := range n {
		for _, k := range kinds {
			k.name = fmt.Sprintf("%s-%03d", k.name, i)
			out = append(out, k)
		}
	}
	out = append(out, kekTestKey{"h-ec", wire.PurposeSign, wire.AlgECP256, wire.ProtectionHSM})
	for _, k := range out {
		op := wire.OpEncrypt
		if k.purpose == wire.PurposeSign {
			op = wire.OpSign
		}
		e.create(k.name, k.purpose, k.alg, k.prot, op, wire.OpDecrypt, wire.OpVerify)
	}
	return out
}

// TestMemKEKEpochLabels: the epoch labels, and what a new blob records.
func TestMemKEKEpochLabels(t *testing.T) {
	for epoch, want := range map[int][2]string{0: {"keysvc-kek", "keysvc-sm-kek"}, 1: {"keysvc-kek", "keysvc-sm-kek"}, 2: {"keysvc-kek-e2", "keysvc-sm-kek-e2"}, 17: {"keysvc-kek-e17", "keysvc-sm-kek-e17"}} {
		if got := [2]string{keysvc.KEKLabelFor(epoch), keysvc.SMKEKLabelFor(epoch)}; got != want {
			t.Errorf("epoch %d: labels %v, want %v", epoch, got, want)
		}
	}
	for label, want := range map[string]bool{"keysvc-kek": true, "keysvc-sm-kek-e3": true, "keysvc-kek-e12": true, "keysvc-pin-mac": true,
		"keysvc-kek-e1": false, "keysvc-kek-e02": false, "keysvc-kek-ex": false, "keysvc-kek2": false, "kw/keysvc-kek/v1": false} {
		if got := keysvc.IsServiceKeyLabel(label); got != want {
			t.Errorf("IsServiceKeyLabel(%q) = %v, want %v", label, got, want)
		}
	}
	e := newKEKEnv(t)
	e.create("w", wire.PurposeSign, wire.AlgECP256, wire.ProtectionWrapped, wire.OpSign)
	e.create("s", wire.PurposeEncrypt, wire.AlgSM4, wire.ProtectionWrapped, wire.OpEncrypt)
	for _, n := range []string{"w", "s"} {
		if v := e.key(n).Versions[0]; v.KEKEpoch != 1 || len(v.Wrapped) == 0 {
			t.Errorf("key %s v1: epoch %d, blob %d bytes; want epoch 1 and a blob", n, v.KEKEpoch, len(v.Wrapped))
		}
	}
	if st := e.status(); st.Current != 1 || st.State != wire.KEKIdle || st.Target != 0 {
		t.Errorf("status of a new store: %+v, want epoch 1 idle", st)
	}
	if st := e.svc.Stats(); st.KEKEpoch != 1 || st.KEKRotating {
		t.Errorf("stats: epoch %d rotating %v, want 1 and false", st.KEKEpoch, st.KEKRotating)
	}
}

// TestMemKEKRotation: a rotation re-wraps every live blob (wrapped EC and
// AES, SM2, SM4) to epoch 2 and destroys epoch 1's KEKs; every key still
// works; a blob of a version destroyed before the rotation opens under no
// key the token still holds; the audit log has the start, each key, each
// KEK destroyed and the finish; a blob of the retired epoch put back in
// the store is refused as version_not_usable.
func TestMemKEKRotation(t *testing.T) {
	e := newKEKEnv(t)
	keys := e.fill(10)
	ctx := context.Background()
	// A version destroyed before the rotation, its blob kept as a copy
	// of the store would keep it.
	if _, err := e.svc.Rotate(ctx, officer, "w-ec-000"); err != nil {
		t.Fatal(err)
	}
	oldBlob := bytes.Clone(e.key("w-ec-000").Versions[0].Wrapped)
	oldSpec := token.KeySpec{Type: token.KeyECP256, Label: "kw/w-ec-000/v1", Usage: token.UsageSign}
	if _, err := e.svc.SetVersionState(ctx, officer, "w-ec-000", 1, wire.ActionScheduleDestroy, time.Hour); err != nil {
		t.Fatal(err)
	}
	destroyAt := time.Now().Add(2 * time.Hour)
	e.stop()
	e.svc, e.st = nil, nil
	var err error
	if e.st, err = boltstore.Open(e.path, boltstore.Options{}); err != nil {
		t.Fatal(err)
	}
	if e.svc, err = keysvc.New(ctx, keysvc.Config{Keys: e.keys, Store: e.st, MinDestroyDelay: time.Hour, CreateKEKEpochs: true, Now: func() time.Time { return destroyAt }}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if v := e.key("w-ec-000").Versions[0]; v.State != wire.StateDestroyed || len(v.Wrapped) != 0 {
		t.Fatalf("w-ec-000 v1 after the scheduler: %s, %d blob bytes; want destroyed, none", v.State, len(v.Wrapped))
	}
	oldKEK, err := e.keys.FindKey(ctx, keysvc.KEKLabel)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.keys.Use(ctx, token.Material{KEK: oldKEK, Wrapped: oldBlob, Spec: oldSpec}, func(token.KeyUse) error { return nil }); err != nil {
		t.Fatalf("before the rotation the destroyed version's old blob still opens under %s (the point of the rotation): %v", keysvc.KEKLabel, err)
	}

	if _, err := e.svc.StartKEKRotation(ctx, bank); !errors.Is(err, wire.ErrForbidden) {
		t.Fatalf("a non-admin starts a KEK rotation: %v, want forbidden", err)
	}
	st, err := e.svc.StartKEKRotation(ctx, officer)
	if err != nil {
		t.Fatal(err)
	}
	if st.Current != 1 || st.Target != 2 || st.StartedBy != officer.Name {
		t.Fatalf("status after start: %+v", st)
	}
	st = e.waitState(wire.KEKIdle)
	want := 4 * 10 // every wrapped and SM key (w-ec-000's live v2 among them)
	if st.Current != 2 || st.Done != want || st.Total != want || !slices.Equal(st.Retired, []int{1}) ||
		!slices.Equal(st.DestroyedKEKs, []string{"keysvc-kek", "keysvc-sm-kek"}) || st.FinishedAt == nil {
		t.Fatalf("status after the rotation: %+v", st)
	}
	if got := e.keys.rewraps.Load(); got != 2*10 { // the live wrapped (non-SM) versions: 10 EC + 10 AES
		t.Errorf("KeyStore.Rewrap calls: %d, want %d", got, 2*10)
	}
	labels := e.keys.Labels()
	for _, l := range []string{"keysvc-kek", "keysvc-sm-kek"} {
		if slices.Contains(labels, l) {
			t.Errorf("old KEK %s still in the token after the rotation", l)
		}
	}
	for _, l := range []string{"keysvc-kek-e2", "keysvc-sm-kek-e2"} {
		if !slices.Contains(labels, l) {
			t.Errorf("new KEK %s missing from the token", l)
		}
	}
	for _, k := range keys {
		stored := e.key(k.name)
		for _, v := range stored.Versions {
			if len(v.Wrapped) > 0 && v.KEKEpoch != 2 {
				t.Errorf("%s v%d: epoch %d after the rotation, want 2", k.name, v.Version, v.KEKEpoch)
			}
		}
		if err := e.use(k.name, k.purpose); err != nil {
			t.Errorf("%s after the rotation: %v", k.name, err)
		}
	}
	// The destroyed version's old blob opens under no key the token holds.
	for _, l := range e.keys.Labels() {
		ref, err := e.keys.FindKey(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.keys.Use(ctx, token.Material{KEK: ref, Wrapped: oldBlob, Spec: oldSpec}, func(token.KeyUse) error { return nil }); err == nil {
			t.Errorf("the blob of a version destroyed before the rotation opens under %s", l)
		}
	}
	ops := e.auditOps()
	ops["kek_rotation_start"] = slices.DeleteFunc(ops["kek_rotation_start"], func(r audit.Record) bool { return r.Result != "ok" }) // the refused non-admin
	if len(ops["kek_rotation_start"]) != 1 || len(ops["kek_rotation_rewrapped"]) != 1 || len(ops["kek_rotation_finish"]) != 1 || len(ops["kek_destroy"]) != 2 || len(ops["kek_rewrap"]) != want {
		t.Errorf("audit records: start %d, rewrapped %d, finish %d, kek_destroy %d, kek_rewrap %d; want 1, 1, 1, 2, %d",
			len(ops["kek_rotation_start"]), len(ops["kek_rotation_rewrapped"]), len(ops["kek_rotation_finish"]), len(ops["kek_destroy"]), len(ops["kek_rewrap"]), want)
	}
	if r := ops["kek_rotation_start"]; len(r) == 1 && (r[0].Client != officer.Name || !strings.Contains(r[0].Detail, "keysvc-kek-e2")) {
		t.Errorf("start record: %+v", r[0])
	}

	// A blob of the retired epoch back in the store (an old backup's
	// record) is refused by name.
	e.stop()
	e.svc, e.st = nil, nil
	st2, err := boltstore.Open(e.path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st2.UpdateKey("w-ec-000", func(k *keysvc.Key) error {
		k.Versions[0].State, k.Versions[0].Wrapped, k.Versions[0].KEKEpoch, k.Primary = wire.StateEnabled, oldBlob, 0, 1
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	st2.Close()
	e.start()
	_, err = e.svc.Sign(ctx, bank, "w-ec-000", wire.SignRequest{Message: wire.Base64("x")})
	if !errors.Is(err, wire.ErrVersionNotUsable) || !strings.Contains(err.Error(), "epoch 1") || !strings.Contains(err.Error(), "destroyed") {
		t.Fatalf("sign with a blob of the retired epoch: %v; want version_not_usable naming epoch 1 and its destroyed KEKs", err)
	}
}

// TestMemKEKRotationRefusals: a second start while one runs, and a next
// epoch whose KEKs the token lacks (without CreateKEKEpochs), are refused
// by name and audited.
func TestMemKEKRotationRefusals(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys := &hookedKeys{Token: memtoken.New("mem", "0001")}
	svc, err := keysvc.New(context.Background(), keysvc.Config{Keys: keys, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	_, err = svc.StartKEKRotation(context.Background(), officer)
	if !errors.Is(err, wire.ErrIllegalTransition) || !strings.Contains(err.Error(), "keysvc-kek-e2 and keysvc-sm-kek-e2") || !strings.Contains(err.Error(), "ceremony keygen") {
		t.Fatalf("start without the next KEKs: %v", err)
	}
	// Officers made them (here: the test); the rotation can start, and a
	// second start is refused while it runs.
	release := make(chan struct{})
	keys.onRewrap = func(ctx context.Context, _ token.KeySpec) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	defer close(release)
	for _, ks := range []token.KeySpec{{Type: token.KeyAES256, Label: "keysvc-kek-e2", Usage: token.UsageWrap}, {Type: token.KeyAES256, Label: "keysvc-sm-kek-e2", Usage: token.UsageEncrypt}} {
		if _, err := keys.GenerateKey(context.Background(), ks); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.CreateKey(context.Background(), officer, wire.CreateKeyRequest{Name: "w", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionWrapped}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.StartKEKRotation(context.Background(), officer); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.StartKEKRotation(context.Background(), officer); !errors.Is(err, wire.ErrIllegalTransition) || !strings.Contains(err.Error(), "already rewrapping") {
		t.Fatalf("a second start: %v", err)
	}
	var results []string
	if err := st.AuditRecords(0, func(r audit.Record) error {
		if r.Op == "kek_rotation_start" {
			results = append(results, r.Result)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(results, []string{"illegal_transition", "ok", "illegal_transition"}) {
		t.Errorf("kek_rotation_start audit results: %v", results)
	}
}

// TestMemKEKRotationKeepsConcurrentChanges: while a key's blob is being
// re-wrapped, a disable through keysvc waits for the key's lock and is
// kept; a version destroyed in the store meanwhile is not brought back by
// the re-wrap.
func TestMemKEKRotationKeepsConcurrentChanges(t *testing.T) {
	e := newKEKEnv(t)
	ctx := context.Background()
	e.create("victim", wire.PurposeSign, wire.AlgECP256, wire.ProtectionWrapped, wire.OpSign)
	if _, err := e.svc.Rotate(ctx, officer, "victim"); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.keys.onRewrap = func(ctx context.Context, ks token.KeySpec) error {
		if ks.Label != "kw/victim/v1" {
			return nil
		}
		once.Do(func() { close(entered) })
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	if _, err := e.svc.StartKEKRotation(ctx, officer); err != nil {
		t.Fatal(err)
	}
	<-entered
	// Meanwhile: v1 is destroyed in the store behind keysvc's back (as a
	// change that does not take the key's lock would), and an officer
	// disables v2 through keysvc (which waits for the key's lock).
	if _, err := e.st.UpdateKey("victim", func(k *keysvc.Key) error {
		now := time.Now()
		k.Versions[0].State, k.Versions[0].Wrapped, k.Versions[0].DestroyedAt = wire.StateDestroyed, nil, &now
		k.Revision++
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	disabled := make(chan error, 1)
	go func() {
		_, err := e.svc.SetVersionState(ctx, officer, "victim", 2, wire.ActionDisable, 0)
		disabled <- err
	}()
	select {
	case err := <-disabled:
		t.Fatalf("disable finished while the re-wrap held the key's lock: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-disabled; err != nil {
		t.Fatal(err)
	}
	e.waitState(wire.KEKIdle)
	k := e.key("victim")
	if v := k.Versions[0]; v.State != wire.StateDestroyed || len(v.Wrapped) != 0 {
		t.Errorf("v1 destroyed during its re-wrap: now %s with %d blob bytes; want destroyed, no blob", v.State, len(v.Wrapped))
	}
	if v := k.Versions[1]; v.State != wire.StateDisabled || v.KEKEpoch != 2 || len(v.Wrapped) == 0 {
		t.Errorf("v2 disabled during the rotation: %s, epoch %d, %d blob bytes; want disabled, epoch 2, a blob", v.State, v.KEKEpoch, len(v.Wrapped))
	}
}

// TestMemKEKRotationResumes: a keysvc stopped in the middle of the re-wrap
// resumes at its next start, from what the store says is left; one stopped
// while destroying the old KEKs finishes that at its next start.
func TestMemKEKRotationResumes(t *testing.T) {
	e := newKEKEnv(t)
	ctx := context.Background()
	keys := e.fill(15)
	// Hold the re-wrap after 12 keys.
	held := make(chan struct{})
	var n atomic.Int64
	var once sync.Once
	e.keys.onRewrap = func(ctx context.Context, _ token.KeySpec) error {
		if n.Add(1) <= 12 {
			return nil
		}
		once.Do(func() { close(held) })
		<-ctx.Done()
		return ctx.Err()
	}
	if _, err := e.svc.StartKEKRotation(ctx, officer); err != nil {
		t.Fatal(err)
	}
	<-held
	e.stop() // Close stops the worker; the store says "rewrapping"
	countEpochs := func() (old, new int) {
		st, err := boltstore.Open(e.path, boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		ks, err := st.ListKeys("", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range ks {
			for _, v := range k.Versions {
				switch {
				case len(v.Wrapped) == 0:
				case v.KEKEpoch == 2:
					new++
				default:
					old++
				}
			}
		}
		return old, new
	}
	old, moved := countEpochs()
	if moved == 0 || old == 0 {
		t.Fatalf("after stopping mid-rotation: %d blobs under epoch 1, %d under 2; want some of each", old, moved)
	}

	// Restart: the rotation resumes; hold it at the first KEK destruction
	// and stop again.
	e.keys.onRewrap = nil
	destroying := make(chan struct{})
	var donce sync.Once
	e.keys.onDestroy = func(ctx context.Context, label string) error {
		donce.Do(func() { close(destroying) })
		<-ctx.Done()
		return ctx.Err()
	}
	e.start()
	<-destroying
	if st := e.status(); st.State != wire.KEKRetiring || st.Current != 2 || st.Retiring != 1 {
		t.Fatalf("status while destroying the old KEKs: %+v", st)
	}
	e.stop()
	if old, _ := countEpochs(); old != 0 {
		t.Fatalf("%d blobs still under epoch 1 once retiring began", old)
	}

	// Restart: the start checks epoch 2's KEKs only and finishes.
	e.keys.onDestroy = nil
	e.start()
	st := e.waitState(wire.KEKIdle)
	if st.Current != 2 || !slices.Equal(st.Retired, []int{1}) || len(st.DestroyedKEKs) != 2 {
		t.Fatalf("status after the resumed rotation: %+v", st)
	}
	for _, l := range e.keys.Labels() {
		if l == "keysvc-kek" || l == "keysvc-sm-kek" {
			t.Errorf("old KEK %s still in the token", l)
		}
	}
	for _, k := range keys {
		if err := e.use(k.name, k.purpose); err != nil {
			t.Errorf("%s after the resumed rotation: %v", k.name, err)
		}
	}
	// A second rotation goes from 2 to 3.
	if _, err := e.svc.StartKEKRotation(ctx, officer); err != nil {
		t.Fatal(err)
	}
	if st := e.waitState(wire.KEKIdle); st.Current != 3 || !slices.Equal(st.Retired, []int{1, 2}) ||
		!slices.Equal(st.DestroyedKEKs, []string{"keysvc-kek-e2", "keysvc-sm-kek-e2"}) {
		t.Fatalf("status after the second rotation: %+v", st)
	}
	for _, k := range keys {
		if err := e.use(k.name, k.purpose); err != nil {
			t.Errorf("%s after the second rotation: %v", k.name, err)
		}
	}
}
