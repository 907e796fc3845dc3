package softhsmtests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"testing"

	"github.com/keyward/keyward/token/smcrypto"
)

// TestExternalKeys: a customer registers the public key of their USB key;
// keysvc verifies the customer's signatures with it and never signs
// (issue 6: the bank verifies USB-key-signed orders through keysvc).
func TestExternalKeys(t *testing.T) {
	e := newKeysvcEnv(t)
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	create := func(name, alg, pub string) (int, map[string]any) {
		return e.call(t, officerToken, "POST", "/v1/keys", map[string]any{"name": name, "purpose": "sign", "algorithm": alg, "protection": "external",
			"public_key": pub, "policy": map[string]any{"grants": []any{map[string]any{"client": "banking", "ops": []string{"sign", "verify", "public"}}}}})
	}
	if st, out := create("usb-ec", "ec-p256", pemText); st != 201 || out["protection"] != "external" {
		t.Fatalf("create: %d %v", st, out)
	}
	msg := transferJSON(t, "Li Lei", "100.00", "external-1")
	h := sha256.Sum256(msg)
	sig, _ := ecdsa.SignASN1(rand.Reader, priv, h[:])
	kw := "kw:v1:" + base64.StdEncoding.EncodeToString(sig)
	if v := e.must(t, 200, bankingToken, "POST", "/v1/keys/usb-ec/verify", map[string]any{"message": base64.StdEncoding.EncodeToString(msg), "signature": kw}); v["valid"] != true {
		t.Fatalf("customer's signature does not verify: %v", v)
	}
	if v := e.must(t, 200, bankingToken, "POST", "/v1/keys/usb-ec/verify", map[string]any{"message": b64("tampered"), "signature": kw}); v["valid"] != false {
		t.Fatalf("tampered order verifies: %v", v)
	}
	if st, out := e.call(t, bankingToken, "POST", "/v1/keys/usb-ec/sign", map[string]any{"message": b64("x")}); st != 400 || errCode(out) != "wrong_purpose" {
		t.Fatalf("external key signed: %d %v", st, out)
	}
	if st, out := e.call(t, officerToken, "POST", "/v1/keys/usb-ec/rotate", nil); st != 400 {
		t.Fatalf("external key rotated: %d %v", st, out)
	}
	if out := e.must(t, 200, bankingToken, "GET", "/v1/keys/usb-ec/public", nil); out["pem"] != pemText {
		t.Fatalf("public key changed: %v", out["pem"])
	}

	// SM2 (a national-algorithm USB key), default distinguishing ID.
	sk, _ := smcrypto.GenerateSM2()
	sder, _ := smcrypto.MarshalSM2Public(&sk.PublicKey)
	if st, out := create("usb-sm2", "sm2", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: sder}))); st != 201 {
		t.Fatalf("create sm2: %d %v", st, out)
	}
	ssig, _ := smcrypto.SM2Sign(sk, []byte("1234567812345678"), msg)
	if v := e.must(t, 200, bankingToken, "POST", "/v1/keys/usb-sm2/verify", map[string]any{"message": base64.StdEncoding.EncodeToString(msg), "signature": "kw:v1:" + base64.StdEncoding.EncodeToString(ssig)}); v["valid"] != true {
		t.Fatalf("SM2 signature does not verify: %v", v)
	}

	// Refusals: wrong algorithm for the key, no PEM, PEM on a non-external key.
	for _, c := range []struct{ name, alg, prot, pub string }{
		{"bad-1", "ec-p384", "external", pemText},
		{"bad-2", "ec-p256", "external", ""},
		{"bad-3", "ec-p256", "external", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"},
		{"bad-4", "ec-p256", "hsm", pemText},
	} {
		st, out := e.call(t, officerToken, "POST", "/v1/keys", map[string]any{"name": c.name, "purpose": "sign", "algorithm": c.alg, "protection": c.prot, "public_key": c.pub})
		if st != 400 || errCode(out) != "invalid_argument" {
			t.Errorf("%s: %d %v", c.name, st, out)
		}
	}
}

// TestEnrollingClient: the banking app (bankapp) creates customers' keys
// under its prefixes, granted to itself only, and nothing else.
func TestEnrollingClient(t *testing.T) {
	e := newKeysvcEnv(t)
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	self := map[string]any{"grants": []any{map[string]any{"client": "bankapp", "ops": []string{"sign", "verify"}}}}
	other := map[string]any{"grants": []any{map[string]any{"client": "intruder", "ops": []string{"sign", "verify"}}}}
	for _, c := range []struct {
		name string
		body map[string]any
		want int
	}{
		{"external under usb-", map[string]any{"name": "usb-c1", "purpose": "sign", "algorithm": "ec-p256", "protection": "external", "public_key": pemText, "policy": self}, 201},
		{"confirm-required under cust-", map[string]any{"name": "cust-c1", "purpose": "sign", "algorithm": "ec-p256", "protection": "wrapped", "confirm": "required", "policy": self}, 201},
		{"outside the prefixes", map[string]any{"name": "bank-x", "purpose": "sign", "algorithm": "ec-p256", "protection": "external", "public_key": pemText, "policy": self}, 403},
		{"a plain signing key", map[string]any{"name": "cust-c2", "purpose": "sign", "algorithm": "ec-p256", "protection": "hsm", "policy": self}, 403},
		{"granted to another client", map[string]any{"name": "cust-c3", "purpose": "sign", "algorithm": "ec-p256", "protection": "wrapped", "confirm": "required", "policy": other}, 403},
		{"a confirm-required token object", map[string]any{"name": "cust-c5", "purpose": "sign", "algorithm": "ec-p256", "protection": "hsm", "confirm": "required", "policy": self}, 403},
		{"an encryption key", map[string]any{"name": "cust-c4", "purpose": "encrypt", "algorithm": "aes-256", "protection": "hsm", "policy": self}, 403},
	} {
		if st, out := e.call(t, bankappToken, "POST", "/v1/keys", c.body); st != c.want {
			t.Errorf("%s: %d %v, want %d", c.name, st, out, c.want)
		}
	}
	// It is no admin: it can't read or manage other keys.
	e.createKey(t, "officer-only", "sign", "ec-p256", "hsm", "sign")
	if st, _ := e.call(t, bankappToken, "GET", "/v1/keys/officer-only", nil); st != 403 {
		t.Fatalf("bankapp reads another key: %d", st)
	}
	if st, _ := e.call(t, bankappToken, "POST", "/v1/keys/cust-c1/holder/unlock", nil); st != 403 {
		t.Fatalf("bankapp unlocks a holder: %d", st)
	}
}
