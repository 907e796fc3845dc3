package keysvc_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/memtoken"
)

// These tests run keysvc.Service on token/memtoken, an in-memory key store
// with real cryptography, and keysvc/boltstore on a temporary file: the
// Service's logic without SoftHSM (issue 14 item 2). softhsm-tests runs the
// same Service on a real token.

var _ keysvc.KeyStore = (*memtoken.Token)(nil)

var (
	officer  = keysvc.Caller{Name: "officer", Admin: true}
	bank     = keysvc.Caller{Name: "banking"}
	intruder = keysvc.Caller{Name: "intruder"}
)

type memClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *memClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *memClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type memEnv struct {
	svc   *keysvc.Service
	tok   *memtoken.Token
	clock *memClock
}

func newMemService(t *testing.T) *memEnv {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &memEnv{tok: memtoken.New("mem", "0001"), clock: &memClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}}
	e.svc, err = keysvc.New(context.Background(), keysvc.Config{Keys: e.tok, Store: st, MinDestroyDelay: time.Hour, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.svc.Close(); st.Close() })
	return e
}

func (e *memEnv) create(t *testing.T, name string, purpose wire.Purpose, alg wire.Algorithm, prot wire.Protection, ops ...wire.Op) *keysvc.Key {
	t.Helper()
	k, err := e.svc.CreateKey(context.Background(), officer, wire.CreateKeyRequest{Name: name, Purpose: purpose, Algorithm: alg, Protection: prot,
		Policy: wire.Policy{Grants: []wire.Grant{{Client: bank.Name, Ops: ops}}}})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return k
}

func (e *memEnv) sign(t *testing.T, name, msg string) wire.SignResult {
	t.Helper()
	r, err := e.svc.Sign(context.Background(), bank, name, wire.SignRequest{Message: wire.Base64(msg)})
	if err != nil {
		t.Fatalf("sign with %s: %v", name, err)
	}
	return r
}

func (e *memEnv) verify(name, msg, sig string) (bool, error) {
	return e.svc.Verify(context.Background(), bank, name, wire.VerifyRequest{Message: wire.Base64(msg), Signature: sig})
}

// TestMemServiceKeys: New creates keysvc's service keys in the store on a
// first start, and an hsm version is one store-held key labelled
// kw/<name>/v<n>; a wrapped version leaves nothing in the store.
func TestMemServiceKeys(t *testing.T) {
	e := newMemService(t)
	want := []string{keysvc.AuditKeyLabel, keysvc.AuditDigestKeyLabel, keysvc.KEKLabel, keysvc.PINMACLabel, keysvc.SMKEKLabel}
	slices.Sort(want)
	if got := e.tok.Labels(); !slices.Equal(got, want) {
		t.Fatalf("service keys in the store: %v, want %v", got, want)
	}
	e.create(t, "h", wire.PurposeSign, wire.AlgECP256, wire.ProtectionHSM, wire.OpSign)
	e.create(t, "w", wire.PurposeSign, wire.AlgECP256, wire.ProtectionWrapped, wire.OpSign)
	got := e.tok.Labels()
	if !slices.Contains(got, "kw/h/v1") || slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "kw/w/") }) {
		t.Fatalf("store labels after creating hsm h and wrapped w: %v; want kw/h/v1 and nothing of w", got)
	}
}

// TestMemSignVerifyRotate: sign and verify on both protections; the
// signature verifies with the published public key; after a rotation the
// new primary signs and old signatures still verify until min_version
// passes them.
func TestMemSignVerifyRotate(t *testing.T) {
	for _, prot := range []wire.Protection{wire.ProtectionHSM, wire.ProtectionWrapped} {
		t.Run(string(prot), func(t *testing.T) {
			e := newMemService(t)
			ctx := context.Background()
			e.create(t, "k", wire.PurposeSign, wire.AlgECP256, prot, wire.OpSign, wire.OpVerify, wire.OpPublic)
			s1 := e.sign(t, "k", "pay 10")
			if s1.Version != 1 || !strings.HasPrefix(s1.Signature, "kw:v1:") {
				t.Fatalf("first signature %+v", s1)
			}
			pk, err := e.svc.PublicKey(ctx, bank, "k", 1)
			if err != nil {
				t.Fatal(err)
			}
			if !verifyPEM(t, pk.PEM, "pay 10", s1.Signature) {
				t.Fatal("the signature does not verify with the published public key")
			}
			if ok, err := e.verify("k", "pay 10", s1.Signature); !ok || err != nil {
				t.Fatalf("verify = %v, %v", ok, err)
			}
			if ok, err := e.verify("k", "pay 11", s1.Signature); ok || err != nil {
				t.Fatalf("verify of another message = %v, %v; want false", ok, err)
			}
			if _, err := e.svc.Rotate(ctx, officer, "k"); err != nil {
				t.Fatal(err)
			}
			s2 := e.sign(t, "k", "pay 20")
			if s2.Version != 2 {
				t.Fatalf("after rotation signed by v%d, want v2", s2.Version)
			}
			if ok, err := e.verify("k", "pay 10", s1.Signature); !ok || err != nil {
				t.Fatalf("v1 signature after rotation: %v, %v", ok, err)
			}
			two := 2
			if _, err := e.svc.UpdateSettings(ctx, officer, "k", wire.KeySettingsRequest{MinVersion: &two}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.verify("k", "pay 10", s1.Signature); !errors.Is(err, wire.ErrVersionNotUsable) {
				t.Fatalf("v1 signature below min_version 2: %v, want ErrVersionNotUsable", err)
			}
			if ok, err := e.verify("k", "pay 20", s2.Signature); !ok || err != nil {
				t.Fatalf("v2 signature: %v, %v", ok, err)
			}
		})
	}
}

func verifyPEM(t *testing.T, pemText, msg, sig string) bool {
	t.Helper()
	pub, err := parsePEM(pemText)
	if err != nil {
		t.Fatal(err)
	}
	der, err := base64.StdEncoding.DecodeString(sig[strings.LastIndex(sig, ":")+1:])
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte(msg))
	return ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], der)
}

// TestMemDisableEnable: a disabled primary signs nothing; enabled again, it signs.
func TestMemDisableEnable(t *testing.T) {
	e := newMemService(t)
	ctx := context.Background()
	e.create(t, "k", wire.PurposeSign, wire.AlgECP256, wire.ProtectionHSM, wire.OpSign)
	if _, err := e.svc.SetVersionState(ctx, officer, "k", 1, wire.ActionDisable, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Sign(ctx, bank, "k", wire.SignRequest{Message: wire.Base64("m")}); !errors.Is(err, wire.ErrVersionNotUsable) {
		t.Fatalf("sign with a disabled primary: %v, want ErrVersionNotUsable", err)
	}
	if _, err := e.svc.SetVersionState(ctx, officer, "k", 1, wire.ActionEnable, 0); err != nil {
		t.Fatal(err)
	}
	e.sign(t, "k", "m")
}

// TestMemDestroy: schedule-destroy waits its delay; the scheduler then
// destroys the store's key; the version signs nothing, and its old
// signatures still verify (the public key stays).
func TestMemDestroy(t *testing.T) {
	e := newMemService(t)
	ctx := context.Background()
	e.create(t, "k", wire.PurposeSign, wire.AlgECP256, wire.ProtectionHSM, wire.OpSign, wire.OpVerify)
	s1 := e.sign(t, "k", "m")
	if _, err := e.svc.Rotate(ctx, officer, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetVersionState(ctx, officer, "k", 1, wire.ActionScheduleDestroy, time.Minute); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Fatalf("a delay below the minimum: %v, want ErrInvalidArgument", err)
	}
	if _, err := e.svc.SetVersionState(ctx, officer, "k", 1, wire.ActionScheduleDestroy, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(e.tok.Labels(), "kw/k/v1") {
		t.Fatal("v1's key was destroyed before its delay")
	}
	e.clock.Advance(2*time.Hour + time.Second)
	if err := e.svc.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(e.tok.Labels(), "kw/k/v1") {
		t.Fatal("v1's key is still in the store after its destruction time")
	}
	k, err := e.svc.GetKey(ctx, officer, "k")
	if err != nil {
		t.Fatal(err)
	}
	if st := k.Version(1).State; st != wire.StateDestroyed {
		t.Fatalf("v1 is %s, want destroyed", st)
	}
	if ok, err := e.verify("k", "m", s1.Signature); !ok || err != nil {
		t.Fatalf("a destroyed version's old signature: %v, %v; want it still verifies", ok, err)
	}
	if !slices.Contains(e.tok.Labels(), "kw/k/v2") {
		t.Fatal("v2 went too")
	}
}

// TestMemEncryptDecrypt: AES-256-GCM (hsm and wrapped) and RSA-OAEP round
// trips; the wrong aad, a changed ciphertext and a version below
// min_version fail.
func TestMemEncryptDecrypt(t *testing.T) {
	cases := []struct {
		alg  wire.Algorithm
		prot wire.Protection
		aad  []byte
	}{
		{wire.AlgAES256, wire.ProtectionHSM, []byte("customer-7")},
		{wire.AlgAES256, wire.ProtectionWrapped, []byte("customer-7")},
		{wire.AlgRSA2048, wire.ProtectionHSM, nil},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s-%s", tc.alg, tc.prot), func(t *testing.T) {
			e := newMemService(t)
			ctx := context.Background()
			e.create(t, "k", wire.PurposeEncrypt, tc.alg, tc.prot, wire.OpEncrypt, wire.OpDecrypt)
			ct, v, err := e.svc.Encrypt(ctx, bank, "k", []byte("card 4111"), tc.aad)
			if err != nil || v != 1 {
				t.Fatalf("encrypt: %q v%d %v", ct, v, err)
			}
			pt, err := e.svc.Decrypt(ctx, bank, "k", ct, tc.aad)
			if err != nil || string(pt) != "card 4111" {
				t.Fatalf("decrypt = %q, %v", pt, err)
			}
			if tc.aad != nil {
				if _, err := e.svc.Decrypt(ctx, bank, "k", ct, []byte("customer-8")); !errors.Is(err, wire.ErrDecrypt) {
					t.Fatalf("decrypt with another aad: %v, want ErrDecrypt", err)
				}
			}
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(ct, "kw:v1:"))
			raw[len(raw)-1] ^= 1
			if _, err := e.svc.Decrypt(ctx, bank, "k", "kw:v1:"+base64.StdEncoding.EncodeToString(raw), tc.aad); !errors.Is(err, wire.ErrDecrypt) {
				t.Fatalf("decrypt of a changed ciphertext: %v, want ErrDecrypt", err)
			}
			if _, err := e.svc.Rotate(ctx, officer, "k"); err != nil {
				t.Fatal(err)
			}
			two := 2
			if _, err := e.svc.UpdateSettings(ctx, officer, "k", wire.KeySettingsRequest{MinVersion: &two}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.svc.Decrypt(ctx, bank, "k", ct, tc.aad); !errors.Is(err, wire.ErrVersionNotUsable) {
				t.Fatalf("decrypt below min_version: %v, want ErrVersionNotUsable", err)
			}
		})
	}
}

// TestMemDataKey: a data key comes from the store's RNG sealed under the
// key; decrypting the sealed copy gives the clear one.
func TestMemDataKey(t *testing.T) {
	e := newMemService(t)
	ctx := context.Background()
	e.create(t, "k", wire.PurposeEncrypt, wire.AlgAES256, wire.ProtectionWrapped, wire.OpDataKey, wire.OpDecrypt)
	dk, err := e.svc.DataKey(ctx, bank, "k", 32, []byte("ctx"))
	if err != nil || len(dk.Plaintext) != 32 {
		t.Fatalf("datakey: %d bytes, %v", len(dk.Plaintext), err)
	}
	pt, err := e.svc.Decrypt(ctx, bank, "k", dk.Ciphertext, []byte("ctx"))
	if err != nil || !bytes.Equal(pt, dk.Plaintext) {
		t.Fatalf("the sealed data key opens to %x, %v; want %x", pt, err, dk.Plaintext)
	}
}

// TestMemPolicyAndErrors: a caller without a grant is refused; material
// gone from the store and a store that does not answer map to keysvc's
// sentinels as a token's do.
func TestMemPolicyAndErrors(t *testing.T) {
	e := newMemService(t)
	ctx := context.Background()
	e.create(t, "k", wire.PurposeSign, wire.AlgECP256, wire.ProtectionHSM, wire.OpSign)
	if _, err := e.svc.Sign(ctx, intruder, "k", wire.SignRequest{Message: wire.Base64("m")}); !errors.Is(err, wire.ErrForbidden) {
		t.Fatalf("sign without a grant: %v, want ErrForbidden", err)
	}
	uses := e.tok.Uses()
	if _, err := e.svc.Sign(ctx, intruder, "k", wire.SignRequest{Message: wire.Base64("m")}); err == nil || e.tok.Uses() != uses {
		t.Fatalf("a refused sign reached the key store (%d uses, was %d)", e.tok.Uses(), uses)
	}

	e.tok.SetDown(fmt.Errorf("%w: unplugged", token.ErrTokenNotPresent))
	if _, err := e.svc.Sign(ctx, bank, "k", wire.SignRequest{Message: wire.Base64("m")}); !errors.Is(err, wire.ErrTokenUnavailable) {
		t.Fatalf("sign with the store down: %v, want ErrTokenUnavailable", err)
	}
	if err := e.svc.Ready(ctx); !errors.Is(err, wire.ErrTokenUnavailable) {
		t.Fatalf("Ready with the store down: %v, want ErrTokenUnavailable", err)
	}
	if e.svc.Stats().TokenHealthy {
		t.Fatal("Stats says healthy with the store down")
	}
	e.tok.SetDown(nil)
	if err := e.svc.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}

	if !e.tok.Remove("kw/k/v1") {
		t.Fatal("no kw/k/v1 to remove")
	}
	_, err := e.svc.Sign(ctx, bank, "k", wire.SignRequest{Message: wire.Base64("m")})
	if !errors.Is(err, wire.ErrVersionNotUsable) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("sign with the material gone: %v, want ErrVersionNotUsable (missing)", err)
	}
}

// TestMemAuditCheckpoint: every operation above is audited; a checkpoint
// signed by the store-held audit key verifies.
func TestMemAuditCheckpoint(t *testing.T) {
	e := newMemService(t)
	ctx := context.Background()
	e.create(t, "k", wire.PurposeSign, wire.AlgECP256, wire.ProtectionHSM, wire.OpSign)
	e.sign(t, "k", "m")
	if err := e.svc.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := e.svc.VerifyAudit()
	if err != nil {
		t.Fatalf("VerifyAudit: %v (%+v)", err, rep)
	}
}

func parsePEM(s string) (any, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PUBLIC KEY PEM block")
	}
	return x509.ParsePKIXPublicKey(b.Bytes)
}
