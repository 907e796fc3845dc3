package fakekms_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/keyward/keyward/banking/internal/fakekms"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token/smcrypto"
)

var ctx = context.Background()

func grant(ops ...wire.Op) wire.Policy {
	return wire.Policy{Grants: []wire.Grant{{Client: "banking", Ops: ops}}}
}

// bank is a fake keysvc with the bank's four keys, as provisioned by the
// officer, seen by the client "banking".
func bank(t *testing.T) *fakekms.KMS {
	t.Helper()
	k := fakekms.New("banking", "usb-", "cust-")
	for _, req := range []wire.CreateKeyRequest{
		{Name: "login", Purpose: wire.PurposeEncrypt, Algorithm: wire.AlgSM2, Protection: wire.ProtectionWrapped, Policy: grant(wire.OpDecrypt, wire.OpPublic)},
		{Name: "pwmac", Purpose: wire.PurposeMAC, Algorithm: wire.AlgHMACSM3, Protection: wire.ProtectionWrapped, Policy: grant(wire.OpMAC)},
		{Name: "pii", Purpose: wire.PurposeEncrypt, Algorithm: wire.AlgSM4, Protection: wire.ProtectionWrapped, Policy: grant(wire.OpDataKey, wire.OpDecrypt)},
		{Name: "receipt", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionHSM, Policy: grant(wire.OpSign, wire.OpVerify, wire.OpPublic)},
		{Name: "secret", Purpose: wire.PurposeMAC, Algorithm: wire.AlgHMACSM3, Protection: wire.ProtectionWrapped, Policy: wire.Policy{Grants: []wire.Grant{{Client: "other", Ops: []wire.Op{wire.OpMAC}}}}},
	} {
		if _, err := k.Provision(req); err != nil {
			t.Fatalf("provision %s: %v", req.Name, err)
		}
	}
	return k
}

// must returns v; an error the test did not expect panics, which fails
// the test with the error and its stack.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestMACVersionsAndRotation: MACs are HMAC-SM3 under the primary as
// "kw:v<n>:", mac-verify uses the version the value names, so a value made
// before a rotation still verifies; raising min_version retires it with
// ErrVersionNotUsable, a version that never existed is ErrVersionNotFound
// and a malformed value ErrInvalidSignature, as keysvc answers.
func TestMACVersionsAndRotation(t *testing.T) {
	k := bank(t)
	msg := []byte("password-v1\x00c000000000001\x00pw")
	v1 := must(k.MAC(ctx, "pwmac", msg))
	if n, _ := wire.VersionOf(v1); n != 1 {
		t.Fatalf("MAC %q is not under v1", v1)
	}
	if again := must(k.MAC(ctx, "pwmac", msg)); again != v1 {
		t.Fatal("the same message and version give two MACs")
	}
	if n := must(k.Rotate("pwmac")); n != 2 {
		t.Fatalf("rotate made v%d", n)
	}
	v2 := must(k.MAC(ctx, "pwmac", msg))
	if n, _ := wire.VersionOf(v2); n != 2 || v2 == v1 {
		t.Fatalf("MAC after rotation %q (before %q)", v2, v1)
	}
	if w := must(k.MACWith("pwmac", 1, msg)); w != v1 {
		t.Fatalf("MACWith v1 %q ≠ MAC before rotation %q", w, v1)
	}
	for _, c := range []struct {
		mac  string
		msg  []byte
		want bool
	}{{v1, msg, true}, {v2, msg, true}, {v1, []byte("other"), false}, {v2, []byte("other"), false}} {
		if ok := must(k.VerifyMAC(ctx, "pwmac", c.msg, c.mac)); ok != c.want {
			t.Errorf("VerifyMAC(%q, %q) = %v, want %v", c.msg, c.mac, ok, c.want)
		}
	}
	if err := k.SetMinVersion("pwmac", 2); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mac  string
		want error
	}{
		{v1, wire.ErrVersionNotUsable},
		{"kw:v9:" + base64.StdEncoding.EncodeToString([]byte("x")), wire.ErrVersionNotFound},
		{"not-versioned", wire.ErrInvalidSignature},
	} {
		if _, err := k.VerifyMAC(ctx, "pwmac", msg, c.mac); !errors.Is(err, c.want) {
			t.Errorf("VerifyMAC(%q): %v, want %v", c.mac, err, c.want)
		}
	}
}

// TestLoginSealing: a client seals to the SM2 public key (ASN.1 C1C3C2, as
// bankcli does) and Decrypt opens it with the version named; after a
// rotation the old version still opens what was sealed to it; a changed
// ciphertext is ErrDecrypt, aad on SM2 ErrInvalidArgument.
func TestLoginSealing(t *testing.T) {
	k := bank(t)
	seal := func(version int, msg []byte) string {
		pk := must(k.PublicKey(ctx, "login", version))
		blk, _ := pem.Decode([]byte(pk.PEM))
		pub := must(smcrypto.ParseSM2Public(blk.Bytes))
		ct := must(smcrypto.SM2Encrypt(pub, msg, smcrypto.EncodingASN1))
		return wire.Versioned{Version: pk.Version, Bytes: ct}.String()
	}
	ct1 := seal(0, []byte("Gl4cier-Walk-7q\x00challenge"))
	if pt := must(k.Decrypt(ctx, "login", ct1, nil)); string(pt) != "Gl4cier-Walk-7q\x00challenge" {
		t.Fatalf("Decrypt = %q", pt)
	}
	must(k.Rotate("login"))
	if pk := must(k.PublicKey(ctx, "login", 0)); pk.Version != 2 {
		t.Fatalf("primary public key v%d after rotation", pk.Version)
	}
	if pt := must(k.Decrypt(ctx, "login", ct1, nil)); string(pt) != "Gl4cier-Walk-7q\x00challenge" {
		t.Fatal("v1 ciphertext no longer opens after rotation")
	}
	ct2 := seal(0, []byte("x"))
	if n, _ := wire.VersionOf(ct2); n != 2 {
		t.Fatalf("sealed to v%d", n)
	}
	raw, _ := wire.ParseVersioned(ct1, wire.ErrInvalidCiphertext)
	raw.Bytes[len(raw.Bytes)-1] ^= 1
	for _, c := range []struct {
		ct   string
		aad  []byte
		want error
	}{
		{raw.String(), nil, wire.ErrDecrypt},
		{ct1, []byte("aad"), wire.ErrInvalidArgument},
		{"kw:v3:" + base64.StdEncoding.EncodeToString([]byte("x")), nil, wire.ErrVersionNotFound},
		{"kw:v1:", nil, wire.ErrInvalidCiphertext},
	} {
		if _, err := k.Decrypt(ctx, "login", c.ct, c.aad); !errors.Is(err, c.want) {
			t.Errorf("Decrypt(%q): %v, want %v", c.ct, err, c.want)
		}
	}
}

// TestDataKeys: a data key's ciphertext opens under the same aad only.
func TestDataKeys(t *testing.T) {
	k := bank(t)
	dk := must(k.DataKey(ctx, "pii", 16, []byte("customer:c1")))
	if len(dk.Plaintext) != 16 || dk.Version != 1 {
		t.Fatalf("data key %d bytes v%d", len(dk.Plaintext), dk.Version)
	}
	if pt := must(k.Decrypt(ctx, "pii", dk.Ciphertext, []byte("customer:c1"))); string(pt) != string(dk.Plaintext) {
		t.Fatal("the data key's ciphertext does not open to the data key")
	}
	if _, err := k.Decrypt(ctx, "pii", dk.Ciphertext, []byte("customer:c2")); !errors.Is(err, wire.ErrDecrypt) {
		t.Errorf("other aad: %v, want ErrDecrypt", err)
	}
	if _, err := k.DataKey(ctx, "pii", 17, nil); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Errorf("size 17: %v", err)
	}
}

// TestReceiptSignatures: sign-batch signs with the primary ECDSA P-256
// key; the signatures verify offline with the served public key (as
// openssl would) and through Verify; a changed body does not.
func TestReceiptSignatures(t *testing.T) {
	k := bank(t)
	bodies := [][]byte{[]byte(`{"a":1}`), []byte(`{"a":2}`)}
	res := must(k.SignBatch(ctx, "receipt", []wire.SignRequest{{Message: bodies[0]}, {Message: bodies[1]}}))
	pk := must(k.PublicKey(ctx, "receipt", 0))
	blk, _ := pem.Decode([]byte(pk.PEM))
	pub := must(x509.ParsePKIXPublicKey(blk.Bytes)).(*ecdsa.PublicKey)
	for i, r := range res {
		sig := must(wire.ParseVersioned(r.Signature, wire.ErrInvalidSignature))
		sum := sha256.Sum256(bodies[i])
		if !ecdsa.VerifyASN1(pub, sum[:], sig.Bytes) {
			t.Errorf("receipt %d does not verify offline", i)
		}
		if !must(k.Verify(ctx, "receipt", wire.VerifyRequest{Message: bodies[i], Signature: r.Signature})) {
			t.Errorf("receipt %d does not verify through Verify", i)
		}
		if must(k.Verify(ctx, "receipt", wire.VerifyRequest{Message: bodies[1-i], Signature: r.Signature})) {
			t.Errorf("receipt %d verifies over the other body", i)
		}
	}
	if _, err := k.SignBatch(ctx, "receipt", nil); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Errorf("empty batch: %v", err)
	}
}

func pemOf(t *testing.T, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// TestEnrolledCustomerKeys: the enrolling client creates external USB keys
// (P-256 and SM2) that verify what the customer signed and sign nothing,
// and nothing outside keysvc's enrolment rules.
func TestEnrolledCustomerKeys(t *testing.T) {
	k := bank(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	sm, _ := smcrypto.GenerateSM2()
	smDER, _ := smcrypto.MarshalSM2Public(&sm.PublicKey)
	self := grant(wire.OpSign, wire.OpVerify, wire.OpPublic)
	must(k.CreateKey(ctx, wire.CreateKeyRequest{Name: "usb-ec", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionExternal, PublicKey: pemOf(t, ecDER), Policy: self}))
	must(k.CreateKey(ctx, wire.CreateKeyRequest{Name: "usb-sm", Purpose: wire.PurposeSign, Algorithm: wire.AlgSM2, Protection: wire.ProtectionExternal, PublicKey: pemOf(t, smDER), Policy: self}))

	order := []byte(`{"type":"keyward.transfer.v1"}`)
	sum := sha256.Sum256(order)
	ecSig, _ := ecdsa.SignASN1(rand.Reader, ec, sum[:])
	smSig := must(smcrypto.SM2Sign(sm, nil, order))
	for _, c := range []struct {
		key string
		sig []byte
	}{{"usb-ec", ecSig}, {"usb-sm", smSig}} {
		s := wire.Versioned{Version: 1, Bytes: c.sig}.String()
		if !must(k.Verify(ctx, c.key, wire.VerifyRequest{Message: order, Signature: s})) {
			t.Errorf("%s: the customer's signature does not verify", c.key)
		}
		if must(k.Verify(ctx, c.key, wire.VerifyRequest{Message: []byte("other"), Signature: s})) {
			t.Errorf("%s: verifies over other bytes", c.key)
		}
		if _, err := k.Sign(ctx, c.key, wire.SignRequest{Message: order}); !errors.Is(err, wire.ErrWrongPurpose) {
			t.Errorf("%s: Sign: %v, want ErrWrongPurpose", c.key, err)
		}
	}
	if _, err := k.Verify(ctx, "usb-ec", wire.VerifyRequest{Message: order, Signature: "MEUC"}); !errors.Is(err, wire.ErrInvalidSignature) {
		t.Errorf("unversioned signature: %v", err)
	}

	for _, c := range []struct {
		name string
		req  wire.CreateKeyRequest
		want error
	}{
		{"no prefix", wire.CreateKeyRequest{Name: "bank-x", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionExternal, PublicKey: pemOf(t, ecDER), Policy: self}, wire.ErrForbidden},
		{"granted to another", wire.CreateKeyRequest{Name: "usb-2", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionExternal, PublicKey: pemOf(t, ecDER),
			Policy: wire.Policy{Grants: []wire.Grant{{Client: "other", Ops: []wire.Op{wire.OpVerify}}}}}, wire.ErrForbidden},
		{"hsm", wire.CreateKeyRequest{Name: "cust-2", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionHSM, Confirm: wire.ConfirmRequired, Policy: self}, wire.ErrForbidden},
		{"not confirm-required", wire.CreateKeyRequest{Name: "cust-3", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionWrapped, Policy: self}, wire.ErrForbidden},
		{"exists", wire.CreateKeyRequest{Name: "usb-ec", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionExternal, PublicKey: pemOf(t, ecDER), Policy: self}, wire.ErrKeyExists},
		{"sm2 pem for ec-p256", wire.CreateKeyRequest{Name: "usb-3", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionExternal, PublicKey: pemOf(t, smDER), Policy: self}, wire.ErrInvalidArgument},
		{"not pem", wire.CreateKeyRequest{Name: "usb-4", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionExternal, PublicKey: "junk", Policy: self}, wire.ErrInvalidArgument},
	} {
		if _, err := k.CreateKey(ctx, c.req); !errors.Is(err, c.want) {
			t.Errorf("CreateKey %s: %v, want %v", c.name, err, c.want)
		}
	}
}

// TestGrants: a key the client holds no grant for, and a key that does
// not exist, get the same ErrForbidden; a wrong purpose is ErrWrongPurpose.
func TestGrants(t *testing.T) {
	k := bank(t)
	for _, name := range []string{"secret", "no-such-key"} {
		if _, err := k.MAC(ctx, name, []byte("x")); !errors.Is(err, wire.ErrForbidden) {
			t.Errorf("MAC with %s: %v, want ErrForbidden", name, err)
		}
	}
	if _, err := k.Sign(ctx, "login", wire.SignRequest{Message: []byte("x")}); !errors.Is(err, wire.ErrForbidden) {
		t.Errorf("sign with the login key (no sign grant): %v", err)
	}
	if _, err := k.DataKey(ctx, "login", 16, nil); !errors.Is(err, wire.ErrForbidden) {
		t.Errorf("datakey with the login key: %v", err)
	}
}

// TestConfirmRequired: a cloud key's Sign is a pending confirmation (one
// at a time); Approve signs the held bytes, which verify; Reject ends one
// without a signature.
func TestConfirmRequired(t *testing.T) {
	k := bank(t)
	view := must(k.CreateKey(ctx, wire.CreateKeyRequest{Name: "cust-1", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256,
		Protection: wire.ProtectionWrapped, Confirm: wire.ConfirmRequired, Policy: grant(wire.OpSign, wire.OpVerify)}))
	if view.HolderSetupCode == "" {
		t.Error("no holder setup code for a confirm-required key")
	}
	order := []byte("order bytes")
	res := must(k.Sign(ctx, "cust-1", wire.SignRequest{Message: order}))
	if res.Confirmation == nil || res.Signature != "" || res.Confirmation.Status != wire.ConfirmPending {
		t.Fatalf("Sign on a confirm-required key: %+v", res)
	}
	if _, err := k.Sign(ctx, "cust-1", wire.SignRequest{Message: order}); !errors.Is(err, wire.ErrConfirmationPending) {
		t.Errorf("second Sign: %v, want ErrConfirmationPending", err)
	}
	if _, err := k.SignBatch(ctx, "cust-1", []wire.SignRequest{{Message: order}}); !errors.Is(err, wire.ErrConfirmationRequired) {
		t.Errorf("SignBatch: %v, want ErrConfirmationRequired", err)
	}
	id := res.Confirmation.ID
	if err := k.Approve(id); err != nil {
		t.Fatal(err)
	}
	cv := must(k.Confirmation(ctx, id, 0))
	if cv.Status != wire.ConfirmApproved || !must(k.Verify(ctx, "cust-1", wire.VerifyRequest{Message: order, Signature: cv.Signature})) {
		t.Fatalf("approved confirmation %+v does not carry a signature over the order", cv)
	}
	if err := k.Approve(id); !errors.Is(err, wire.ErrConfirmationClosed) {
		t.Errorf("second approval: %v", err)
	}
	res = must(k.Sign(ctx, "cust-1", wire.SignRequest{Message: order}))
	if err := k.Reject(res.Confirmation.ID); err != nil {
		t.Fatal(err)
	}
	if cv := must(k.Confirmation(ctx, res.Confirmation.ID, 0)); cv.Status != wire.ConfirmRejected || cv.Signature != "" {
		t.Errorf("rejected confirmation %+v", cv)
	}
	if _, err := k.Confirmation(ctx, "cf_nope", 0); !errors.Is(err, wire.ErrConfirmationNotFound) {
		t.Errorf("unknown confirmation: %v", err)
	}
}

// TestDownAndCalls: an outage answers every call, or the calls of the
// operations named, with its sentinel; Calls counts by operation.
func TestDownAndCalls(t *testing.T) {
	k := bank(t)
	k.Calls()
	must(k.MAC(ctx, "pwmac", []byte("x")))
	k.SetDown(wire.ErrTokenUnavailable)
	if _, err := k.MAC(ctx, "pwmac", []byte("x")); !errors.Is(err, wire.ErrTokenUnavailable) {
		t.Errorf("MAC while down: %v", err)
	}
	k.SetDown(wire.ErrTokenUnavailable, "mac-verify")
	if _, err := k.VerifyMAC(ctx, "pwmac", []byte("x"), "kw:v1:AAAA"); !errors.Is(err, wire.ErrTokenUnavailable) {
		t.Errorf("mac-verify while it is down: %v", err)
	}
	must(k.MAC(ctx, "pwmac", []byte("x"))) // mac is up
	k.SetDown(nil)
	if n := k.Calls(); n["mac"] != 3 || n["mac-verify"] != 1 || len(n) != 2 {
		t.Errorf("calls %v, want mac:3 mac-verify:1", n)
	}
}
