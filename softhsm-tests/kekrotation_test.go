package softhsmtests

// KEK rotation on SoftHSM2 (issue 15 item 2): KEYWARD_KEK_KEYS wrapped
// keys (default 2,000; 400 with -short; `make scale` runs 100,000) — EC
// P-256 and AES-256 wrapped, SM2 and SM4 sealed — are moved from epoch 1
// to epoch 2 while clients sign, encrypt and decrypt over HTTP from
// several goroutines. Then every key still works with its existing
// versions, the old KEKs are gone from the token, and the blob of a
// version destroyed before the rotation, read from a copy of the store
// made before it, opens under no key the token still holds.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

type kekKey struct {
	name string
	alg  wire.Algorithm
	sign bool
	ct   string // encrypt keys: a ciphertext made before the rotation
	pt   string
}

// kekHTTP is a small client for the load goroutines: it never calls
// t.Fatal off the test goroutine, it returns what went wrong.
type kekHTTP struct {
	base string
	hc   *http.Client
}

func (c kekHTTP) post(path, bearer string, body any) (map[string]any, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequest("POST", c.base+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	if resp.StatusCode != 200 {
		return out, fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, raw)
	}
	return out, nil
}

// exercise signs and verifies (sign keys) or decrypts the ciphertext made
// before the rotation and encrypts and decrypts anew (encrypt keys).
func (c kekHTTP) exercise(k *kekKey, i int) error {
	if k.sign {
		msg := base64.StdEncoding.EncodeToString([]byte("kek " + k.name + " " + strconv.Itoa(i)))
		out, err := c.post("/v1/keys/"+k.name+"/sign", bankingToken, map[string]any{"message": msg})
		if err != nil {
			return err
		}
		v, err := c.post("/v1/keys/"+k.name+"/verify", bankingToken, map[string]any{"message": msg, "signature": out["signature"]})
		if err != nil {
			return err
		}
		if v["valid"] != true {
			return fmt.Errorf("%s: signature does not verify: %v", k.name, v)
		}
		return nil
	}
	out, err := c.post("/v1/keys/"+k.name+"/decrypt", bankingToken, map[string]any{"ciphertext": k.ct})
	if err != nil {
		return err
	}
	if got, _ := base64.StdEncoding.DecodeString(fmt.Sprint(out["plaintext"])); string(got) != k.pt {
		return fmt.Errorf("%s: the old ciphertext decrypts to something else", k.name)
	}
	pt := base64.StdEncoding.EncodeToString([]byte("fresh " + strconv.Itoa(i)))
	enc, err := c.post("/v1/keys/"+k.name+"/encrypt", bankingToken, map[string]any{"plaintext": pt})
	if err != nil {
		return err
	}
	dec, err := c.post("/v1/keys/"+k.name+"/decrypt", bankingToken, map[string]any{"ciphertext": enc["ciphertext"]})
	if err != nil {
		return err
	}
	if dec["plaintext"] != pt {
		return fmt.Errorf("%s: a new ciphertext decrypts to something else", k.name)
	}
	return nil
}

func TestKEKRotation(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 400
	}
	if v := os.Getenv("KEYWARD_KEK_KEYS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 10 {
			t.Fatalf("KEYWARD_KEK_KEYS=%q: want a number of at least 10", v)
		}
	}
	e := newKeysvcEnv(t)
	ctx := context.Background()
	officer := keysvc.Caller{Name: "officer", Admin: true}
	c := kekHTTP{base: e.url, hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}

	// The keys: 4 in 10 EC P-256 signing, 4 in 10 AES-256 encryption
	// (wrapped under keysvc-kek), 1 in 10 SM2 signing and 1 in 10 SM4
	// encryption (sealed under keysvc-sm-kek).
	keys := make([]*kekKey, n)
	start := time.Now()
	var wg sync.WaitGroup
	var next atomic.Int64
	var failed atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				k := &kekKey{name: fmt.Sprintf("kek-%06d", i), sign: true}
				purpose, ops := wire.PurposeSign, []wire.Op{wire.OpSign, wire.OpVerify}
				switch i % 10 {
				case 0, 1, 2, 3:
					k.alg = wire.AlgECP256
				case 4, 5, 6, 7:
					k.alg, k.sign = wire.AlgAES256, false
				case 8:
					k.alg = wire.AlgSM2
				case 9:
					k.alg, k.sign = wire.AlgSM4, false
				}
				if !k.sign {
					purpose, ops = wire.PurposeEncrypt, []wire.Op{wire.OpEncrypt, wire.OpDecrypt}
				}
				_, err := e.svc.CreateKey(ctx, officer, wire.CreateKeyRequest{Name: k.name, Purpose: purpose, Algorithm: k.alg, Protection: wire.ProtectionWrapped,
					Policy: wire.Policy{Grants: []wire.Grant{{Client: "banking", Ops: ops}}}})
				if err == nil && !k.sign {
					k.pt = "before the rotation " + k.name
					k.ct, _, err = e.svc.Encrypt(ctx, keysvc.Caller{Name: "banking"}, k.name, []byte(k.pt), nil)
				}
				if err != nil && failed.Add(1) < 5 {
					t.Errorf("%s: %v", k.name, err)
				}
				keys[i] = k
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d keys could not be created", failed.Load())
	}
	created := time.Since(start)

	// A version destroyed before the rotation: key "gone" v1, whose blob a
	// copy of the store made before the rotation still holds.
	gone := &kekKey{name: "gone", alg: wire.AlgECP256, sign: true}
	e.must(t, 201, officerToken, "POST", "/v1/keys", map[string]any{"name": "gone", "purpose": "sign", "algorithm": "ec-p256", "protection": "wrapped",
		"policy": map[string]any{"grants": []any{map[string]any{"client": "banking", "ops": []string{"sign", "verify"}}}}})
	backup := filepath.Join(t.TempDir(), "keysvc-backup.db")
	if err := e.store.DB().View(func(tx *bolt.Tx) error { return tx.CopyFile(backup, 0o600) }); err != nil {
		t.Fatal(err)
	}
	e.must(t, 200, officerToken, "POST", "/v1/keys/gone/rotate", nil)
	e.must(t, 200, officerToken, "POST", "/v1/keys/gone/versions/1/schedule-destroy", map[string]any{"delay": "1h"})
	e.clock.Advance(2 * time.Hour)
	if err := e.svc.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if k, err := e.store.GetKey("gone"); err != nil || k.Versions[0].State != wire.StateDestroyed || len(k.Versions[0].Wrapped) != 0 {
		t.Fatalf("gone v1 after the scheduler: %+v %v", k, err)
	}
	oldBlob, oldSpec := backupBlob(t, backup, "gone", 1)
	opensUnder := func() []string {
		labels, err := e.tok.tok.Store().KeyLabels(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var opened []string
		for _, l := range labels {
			ref, err := e.tok.tok.Store().FindKey(ctx, l)
			if err != nil {
				t.Fatal(err)
			}
			err = e.tok.tok.Store().Use(ctx, token.Material{KEK: ref, Wrapped: oldBlob, Spec: oldSpec}, func(token.KeyUse) error { return nil })
			if err == nil {
				opened = append(opened, l)
			}
		}
		return opened
	}
	if got := opensUnder(); strings.Join(got, ",") != keysvc.KEKLabel {
		t.Fatalf("before the rotation the destroyed version's blob from the backup opens under %v, want [%s] (what the rotation is for)", got, keysvc.KEKLabel)
	}

	// Officers made epoch 2's KEKs as `ceremony keygen` would (backup:
	// true, destroyable: true): AES-256, wrap and unwrap; encrypt and decrypt.
	for _, ks := range []pkcs11shim.KeySpec{
		{Type: pkcs11shim.KeyAES256, Label: keysvc.KEKLabelFor(2), Usage: pkcs11shim.UsageWrap, Extractable: true},
		{Type: pkcs11shim.KeyAES256, Label: keysvc.SMKEKLabelFor(2), Usage: pkcs11shim.UsageEncrypt, Extractable: true},
	} {
		if _, err := e.tok.pool.GenerateKey(ctx, ks); err != nil {
			t.Fatal(err)
		}
	}

	// Load: 6 clients sign, verify, encrypt and decrypt random keys until
	// the rotation has finished.
	stop := make(chan struct{})
	var reqs, bad atomic.Int64
	var firstBad atomic.Value
	var lg sync.WaitGroup
	for g := range 6 {
		lg.Add(1)
		go func() {
			defer lg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 15))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := keys[r.IntN(len(keys))]
				if err := c.exercise(k, i); err != nil {
					bad.Add(1)
					firstBad.CompareAndSwap(nil, err.Error())
				}
				reqs.Add(1)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // the clients are running before the rotation starts
	rotStart := time.Now()
	st := e.must(t, 202, officerToken, "POST", "/v1/admin/kek-rotation", nil)
	if st["current"] != 1.0 || st["target"] != 2.0 || st["state"] != wire.KEKRewrapping {
		t.Fatalf("POST /v1/admin/kek-rotation: %v", st)
	}
	var sawProgress bool
	var final map[string]any
	for deadline := time.Now().Add(60 * time.Minute); ; {
		final = e.must(t, 200, officerToken, "GET", "/v1/admin/kek-rotation", nil)
		if d, _ := final["done"].(float64); d > 0 && final["state"] == wire.KEKRewrapping {
			sawProgress = true
		}
		if final["state"] == wire.KEKIdle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotation has not finished after an hour: %v", final)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rotation := time.Since(rotStart)
	close(stop)
	lg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d of %d requests failed during the rotation; first: %v", bad.Load(), reqs.Load(), firstBad.Load())
	}
	if reqs.Load() < 10 {
		t.Errorf("only %d requests ran during the rotation", reqs.Load())
	}
	if final["current"] != 2.0 || final["done"] != float64(n+1) || fmt.Sprint(final["destroyed_keks"]) != "[keysvc-kek keysvc-sm-kek]" {
		t.Errorf("status after the rotation: %v (want epoch 2, %d keys done, both old KEKs destroyed)", final, n+1)
	}
	if !sawProgress && n >= 1000 {
		t.Errorf("the status never showed progress while re-wrapping %d keys", n)
	}

	// The old KEKs are gone from the token.
	for _, l := range []string{keysvc.KEKLabel, keysvc.SMKEKLabel} {
		if _, err := e.tok.tok.Store().FindKey(ctx, l); !errors.Is(err, token.ErrKeyNotFound) {
			t.Errorf("old KEK %s after the rotation: %v, want not found", l, err)
		}
	}
	// The destroyed version's blob from the pre-rotation backup opens
	// under nothing the token holds now.
	if got := opensUnder(); len(got) > 0 {
		t.Errorf("after the rotation the backup's blob of a destroyed version still opens under %v", got)
	}

	// Every key still works with its existing versions (the old
	// ciphertexts included), and every blob is under epoch 2.
	checkStart := time.Now()
	var cf atomic.Int64
	next.Store(0)
	all := append(keys, gone)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(all) {
					return
				}
				if err := c.exercise(all[i], i); err != nil && cf.Add(1) < 5 {
					t.Errorf("after the rotation: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	under := map[int]int{}
	for after := ""; ; {
		page, err := e.store.ListKeys(after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range page {
			for _, v := range k.Versions {
				if len(v.Wrapped) > 0 {
					under[max(v.KEKEpoch, 1)]++
				}
			}
			after = k.Name
		}
		if len(page) < 1000 {
			break
		}
	}
	if len(under) != 1 || under[2] != n+1 {
		t.Errorf("live blobs by epoch after the rotation: %v, want %d under epoch 2 only", under, n+1)
	}
	t.Logf("%d wrapped keys (4/10 EC P-256, 4/10 AES-256, 1/10 SM2, 1/10 SM4) created in %v; KEK rotation epoch 1 → 2 in %v (%.0f keys/s) with %d client requests (sign+verify or decrypt+encrypt+decrypt) during it, %d failed; every key checked after it in %v",
		n+1, created.Round(time.Millisecond), rotation.Round(time.Millisecond), float64(n+1)/rotation.Seconds(), reqs.Load(), bad.Load(), time.Since(checkStart).Round(time.Millisecond))
}

// backupBlob reads version v's blob (and its key spec) of key name from a
// copy of keysvc's store.
func backupBlob(t *testing.T, path, name string, v int) ([]byte, token.KeySpec) {
	t.Helper()
	st, err := boltstore.Open(path, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	k, err := st.GetKey(name)
	if err != nil {
		t.Fatal(err)
	}
	ver := k.Version(v)
	if ver == nil || len(ver.Wrapped) == 0 {
		t.Fatalf("the backup holds no blob of %s v%d", name, v)
	}
	return ver.Wrapped, token.KeySpec{Type: token.KeyECP256, Label: fmt.Sprintf("kw/%s/v%d", name, v), Usage: token.UsageSign}
}

// TestCerKEKRotate: `ceremony keygen` makes epoch KEKs destroyable only
// when asked (destroyable: true); `ceremony kek-rotate` starts keysvc's
// rotation, follows it to its end and records the KEKs keysvc destroyed
// in a transcript that verifies; run again with the same from_epoch it
// refuses (the epoch moved on) and changes nothing.
func TestCerKEKRotate(t *testing.T) {
	ctx := context.Background()
	pins := cerPINs(t)
	signer, pubPEM := cerSignerToken(t, pins)

	// keygen: destroyable: true gives CKA_DESTROYABLE true; the default
	// keeps a ceremony key from any user-PIN holder's C_DestroyObject.
	f, out := cerFile(t, "keygen-kek.yaml", pins, map[string]string{"LABEL": signer})
	if r := cerRun(t, append([]string{"keygen", "-f", f}, cerApprovals(t, []string{"keygen"}, f)...)...); r.code != 0 {
		t.Fatalf("keygen: %v", r)
	}
	if md := cerVerifyTranscript(t, out, pubPEM, "keygen"); !strings.Contains(md, "destroyable with the user PIN (destroyable: true)") {
		t.Fatalf("keygen transcript does not say the epoch KEKs are destroyable:\n%s", md)
	}
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "guard.db"), 0)
	tok, err := token.Open(ctx, token.Config{Kind: token.KindHSM, Module: modulePath, Label: signer, PIN: token.HeldPIN("Cer#4410!k"), PINGuard: g.Config()})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	for label, destroyable := range map[string]bool{"keysvc-kek-e2": true, "keysvc-sm-kek-e2": true, "kept-kek": false} {
		ref, err := tok.Store().FindKey(ctx, label)
		if err != nil {
			t.Fatal(err)
		}
		err = tok.Store().DestroyKey(ctx, ref)
		if destroyable != (err == nil) {
			t.Errorf("destroy %s (destroyable: %v): %v", label, destroyable, err)
		}
	}

	// kek-rotate against a keysvc with wrapped keys and epoch 2's KEKs.
	e := newKeysvcEnv(t)
	e.createKey(t, "w-ec", "sign", "ec-p256", "wrapped", "sign", "verify")
	e.createKey(t, "w-sm4", "encrypt", "sm4", "wrapped", "encrypt", "decrypt")
	for _, ks := range []pkcs11shim.KeySpec{
		{Type: pkcs11shim.KeyAES256, Label: keysvc.KEKLabelFor(2), Usage: pkcs11shim.UsageWrap, Extractable: true},
		{Type: pkcs11shim.KeyAES256, Label: keysvc.SMKEKLabelFor(2), Usage: pkcs11shim.UsageEncrypt, Extractable: true},
	} {
		if _, err := e.tok.pool.GenerateKey(ctx, ks); err != nil {
			t.Fatal(err)
		}
	}
	f, out = cerFile(t, "kek-rotate.yaml", pins, map[string]string{"SIGNER": signer, "URL": e.url})
	r := cerRun(t, "kek-rotate", "-f", f, "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "epoch 2 in service; destroyed keysvc-kek, keysvc-sm-kek") {
		t.Fatalf("kek-rotate: %v", r)
	}
	md := cerVerifyTranscript(t, out, pubPEM, "kek-rotate")
	for _, want := range []string{"epoch 1 to 2 started", "every live blob re-wrapped to epoch 2 (2 keys", "keysvc-kek (epoch 1)", "keysvc-sm-kek (epoch 1)", "destroy every backup file and share of keysvc-kek and keysvc-sm-kek"} {
		if !strings.Contains(md, want) {
			t.Errorf("kek-rotate transcript lacks %q:\n%s", want, md)
		}
	}
	st := e.must(t, 200, officerToken, "GET", "/v1/admin/kek-rotation", nil)
	if st["current"] != 2.0 || st["state"] != wire.KEKIdle {
		t.Fatalf("keysvc after the ceremony: %v", st)
	}
	if n := cerAudit(t, e, "kek_rotation_start", "", 0, "ok"); n != 1 {
		t.Errorf("%d kek_rotation_start records by the officer, want 1", n)
	}
	e.must(t, 200, bankingToken, "POST", "/v1/keys/w-ec/sign", map[string]any{"message": base64.StdEncoding.EncodeToString([]byte("after"))})

	// The same file again: epoch 2 is in service, not 1.
	f, _ = cerFile(t, "kek-rotate.yaml", pins, map[string]string{"SIGNER": signer, "URL": e.url})
	if r := cerRun(t, "kek-rotate", "-f", f, "--yes"); r.code != 1 || !strings.Contains(r.stderr, "keysvc's KEK epoch is 2, this ceremony's from_epoch 1") {
		t.Fatalf("kek-rotate run twice: want exit 1 naming the epochs; %v", r)
	}
	if st := e.must(t, 200, officerToken, "GET", "/v1/admin/kek-rotation", nil); st["current"] != 2.0 || st["state"] != wire.KEKIdle {
		t.Fatalf("keysvc after the refused second run: %v", st)
	}
}

// TestKEKRotationResumes: keysvc stopped in the middle of a rotation on
// SoftHSM2 starts again with both epochs' KEKs checked, resumes from what
// the store says is left, and finishes: every blob under epoch 2, the old
// KEKs destroyed, every key working.
func TestKEKRotationResumes(t *testing.T) {
	n := 1500
	if testing.Short() {
		n = 600
	}
	e := newKeysvcEnv(t)
	ctx := context.Background()
	officer := keysvc.Caller{Name: "officer", Admin: true}
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				alg, purpose := wire.AlgECP256, wire.PurposeSign
				if i%2 == 1 {
					alg, purpose = wire.AlgSM4, wire.PurposeEncrypt
				}
				if _, err := e.svc.CreateKey(ctx, officer, wire.CreateKeyRequest{Name: fmt.Sprintf("r-%05d", i), Purpose: purpose, Algorithm: alg, Protection: wire.ProtectionWrapped,
					Policy: wire.Policy{Grants: []wire.Grant{{Client: "banking", Ops: []wire.Op{wire.OpSign, wire.OpEncrypt, wire.OpDecrypt}}}}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, ks := range []pkcs11shim.KeySpec{
		{Type: pkcs11shim.KeyAES256, Label: keysvc.KEKLabelFor(2), Usage: pkcs11shim.UsageWrap, Extractable: true},
		{Type: pkcs11shim.KeyAES256, Label: keysvc.SMKEKLabelFor(2), Usage: pkcs11shim.UsageEncrypt, Extractable: true},
	} {
		if _, err := e.tok.pool.GenerateKey(ctx, ks); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.StartKEKRotation(ctx, officer); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := e.svc.KEKRotation(ctx, officer)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != wire.KEKRewrapping {
			t.Fatalf("the rotation of %d keys ended before the test could stop it: %+v", n, st)
		}
		if st.Done >= n/10 {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	e.stop()
	epochs := func() map[int]int {
		st, err := boltstore.Open(e.dbPath, boltstore.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		ks, err := st.ListKeys("", 0)
		if err != nil {
			t.Fatal(err)
		}
		out := map[int]int{}
		for _, k := range ks {
			for _, v := range k.Versions {
				if len(v.Wrapped) > 0 {
					out[max(v.KEKEpoch, 1)]++
				}
			}
		}
		return out
	}
	if got := epochs(); got[1] == 0 || got[2] == 0 || got[1]+got[2] != n {
		t.Fatalf("blobs by epoch after stopping mid-rotation: %v; want some under each, %d in all", got, n)
	}
	e.start(t) // checks keysvc-kek, keysvc-sm-kek, keysvc-kek-e2 and keysvc-sm-kek-e2, then resumes
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		st := e.must(t, 200, officerToken, "GET", "/v1/admin/kek-rotation", nil)
		if st["state"] == wire.KEKIdle {
			if st["current"] != 2.0 || fmt.Sprint(st["destroyed_keks"]) != "[keysvc-kek keysvc-sm-kek]" {
				t.Fatalf("status after the resumed rotation: %v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the resumed rotation has not finished: %v", st)
		}
	}
	e.stop()
	if got := epochs(); len(got) != 1 || got[2] != n {
		t.Fatalf("blobs by epoch after the resumed rotation: %v, want %d under epoch 2", got, n)
	}
	e.start(t) // a start after the rotation checks epoch 2's KEKs only
	c := kekHTTP{base: e.url, hc: &http.Client{Timeout: 30 * time.Second}}
	for i := 0; i < n; i += 97 {
		k := &kekKey{name: fmt.Sprintf("r-%05d", i), sign: i%2 == 0}
		if !k.sign {
			k.pt = "after"
			out, err := c.post("/v1/keys/"+k.name+"/encrypt", bankingToken, map[string]any{"plaintext": base64.StdEncoding.EncodeToString([]byte(k.pt))})
			if err != nil {
				t.Fatal(err)
			}
			k.ct = fmt.Sprint(out["ciphertext"])
		}
		if _, err := c.post("/v1/keys/"+k.name+"/"+map[bool]string{true: "sign", false: "decrypt"}[k.sign], bankingToken,
			map[bool]map[string]any{true: {"message": "YWZ0ZXI="}, false: {"ciphertext": k.ct}}[k.sign]); err != nil {
			t.Errorf("%s after the resumed rotation: %v", k.name, err)
		}
	}
}

// TestStoreRewrap: token.Store.Rewrap moves a blob from one KEK to another
// inside SoftHSM2: the new blob opens under the new KEK only and is the
// same key (same public key); a blob given with the wrong KEK is
// ErrDecrypt and yields nothing.
func TestStoreRewrap(t *testing.T) {
	ctx := context.Background()
	te := mustNewToken(t, token.KindHSM)
	st := te.tok.Store()
	var keks []token.KeyRef
	for _, l := range []string{"rw-a", "rw-b"} {
		k, err := st.GenerateKey(ctx, token.KeySpec{Type: token.KeyAES256, Label: l, Usage: token.UsageWrap})
		if err != nil {
			t.Fatal(err)
		}
		keks = append(keks, k)
	}
	spec := token.KeySpec{Type: token.KeyECP256, Label: "kw/rw/v1", Usage: token.UsageSign}
	blob, pub, err := st.GenerateWrapped(ctx, keks[0], spec)
	if err != nil {
		t.Fatal(err)
	}
	moved, err := st.Rewrap(ctx, keks[0], keks[1], blob, spec)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(moved, blob) {
		t.Fatal("Rewrap returned the blob unchanged")
	}
	digest := sha256.Sum256([]byte("rewrap"))
	opens := func(kek token.KeyRef, b []byte) (sig []byte, err error) {
		err = st.Use(ctx, token.Material{KEK: kek, Wrapped: b, Spec: spec}, func(u token.KeyUse) error {
			var err error
			sig, err = u.Sign(digest[:], crypto.SHA256)
			return err
		})
		return sig, err
	}
	sig, err := opens(keks[1], moved)
	if err != nil {
		t.Fatalf("the re-wrapped blob under the new KEK: %v", err)
	}
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatal("the re-wrapped key is not the generated key: its signature does not verify with the generated public key")
	}
	if _, err := opens(keks[0], moved); err == nil {
		t.Fatal("the re-wrapped blob opens under the old KEK")
	}
	if out, err := st.Rewrap(ctx, keks[1], keks[0], blob, spec); !errors.Is(err, token.ErrDecrypt) || out != nil {
		t.Fatalf("Rewrap under the wrong KEK: %d bytes, %v; want nothing and ErrDecrypt", len(out), err)
	}
}
