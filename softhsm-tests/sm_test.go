package softhsmtests

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
)

// requireOpenSSL skips without the openssl CLI, except under CI=true.
func requireOpenSSL(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl CLI missing under CI=true: apt-get install -y openssl")
		}
		t.Skip("openssl CLI not installed")
	}
}

func openssl(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	return exec.Command("openssl", args...).CombinedOutput()
}

// TestKeysvcSM2SignOpenSSL: an SM2 key created over HTTP signs a message
// that the openssl CLI verifies (SM3 with the key's distinguishing ID), with
// the default ID and a custom one (R-TOK-6). These are the README's commands.
func TestKeysvcSM2SignOpenSSL(t *testing.T) {
	requireOpenSSL(t)
	e := newKeysvcEnv(t)
	dir := t.TempDir()
	for _, c := range []struct{ name, uid string }{{"gm-sign", ""}, {"gm-sign-alice", "ALICE123@BANK.CN"}} {
		body := map[string]any{"name": c.name, "purpose": "sign", "algorithm": "sm2", "protection": "wrapped",
			"policy": map[string]any{"grants": []any{map[string]any{"client": "banking", "ops": []string{"sign", "verify", "public"}}}}}
		if c.uid != "" {
			body["sm2_uid"] = c.uid
		}
		e.must(t, 201, officerToken, "POST", "/v1/keys", body)
		msg := []byte("转账 100.00 元 to 6222 0200 1234 5678")
		sig := e.must(t, 200, bankingToken, "POST", "/v1/keys/"+c.name+"/sign", map[string]any{"message": base64.StdEncoding.EncodeToString(msg)})["signature"].(string)
		if !strings.HasPrefix(sig, "kw:v1:") {
			t.Fatalf("signature %q", sig)
		}
		raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sig, "kw:v1:"))
		pub := e.must(t, 200, bankingToken, "GET", "/v1/keys/"+c.name+"/public", nil)
		if jwk := pub["jwk"].(map[string]any); jwk["crv"] != "SM2" {
			t.Fatalf("jwk %v", jwk)
		}
		pubPath, sigPath, msgPath := filepath.Join(dir, c.name+".pem"), filepath.Join(dir, c.name+".sig"), filepath.Join(dir, c.name+".msg")
		os.WriteFile(pubPath, []byte(pub["pem"].(string)), 0o600)
		os.WriteFile(sigPath, raw, 0o600)
		os.WriteFile(msgPath, msg, 0o600)
		uid := c.uid
		if uid == "" {
			uid = "1234567812345678"
		}
		out, err := openssl(t, "dgst", "-sm3", "-verify", pubPath, "-sigopt", "distid:"+uid, "-signature", sigPath, msgPath)
		if err != nil || !bytes.Contains(out, []byte("Verified OK")) {
			t.Fatalf("%s: openssl: %v: %s", c.name, err, out)
		}
		// With the wrong ID the signature must not verify.
		if out, err := openssl(t, "dgst", "-sm3", "-verify", pubPath, "-sigopt", "distid:WRONG", "-signature", sigPath, msgPath); err == nil {
			t.Fatalf("%s: openssl verified with the wrong distinguishing ID: %s", c.name, out)
		}
		if v := e.must(t, 200, bankingToken, "POST", "/v1/keys/"+c.name+"/verify", map[string]any{"message": base64.StdEncoding.EncodeToString(msg), "signature": sig}); v["valid"] != true {
			t.Fatalf("keysvc does not verify its own SM2 signature: %v", v)
		}
	}
	// SM keys must say "wrapped": on a token without SM mechanisms nothing else is honest.
	if out := e.must(t, 400, officerToken, "POST", "/v1/keys", map[string]any{"name": "gm-hsm", "purpose": "sign", "algorithm": "sm2", "protection": "hsm"}); errCode(out) != "invalid_argument" {
		t.Fatalf("sm2 hsm: %v", out)
	}
}

// TestKeysvcSM2EncryptOpenSSL: openssl encrypts to the key's public key
// (ASN.1 C1C3C2); keysvc decrypts; keysvc's own ciphertexts round-trip.
func TestKeysvcSM2EncryptOpenSSL(t *testing.T) {
	requireOpenSSL(t)
	e := newKeysvcEnv(t)
	e.createKey(t, "gm-enc", "encrypt", "sm2", "wrapped", "encrypt", "decrypt", "public")
	dir := t.TempDir()
	pub := e.must(t, 200, bankingToken, "GET", "/v1/keys/gm-enc/public", nil)
	pubPath, ptPath, ctPath := filepath.Join(dir, "pub.pem"), filepath.Join(dir, "pt"), filepath.Join(dir, "ct")
	os.WriteFile(pubPath, []byte(pub["pem"].(string)), 0o600)
	os.WriteFile(ptPath, []byte("PIN block 0412 34FF"), 0o600)
	if out, err := openssl(t, "pkeyutl", "-encrypt", "-pubin", "-inkey", pubPath, "-in", ptPath, "-out", ctPath); err != nil {
		t.Fatalf("openssl encrypt: %v: %s", err, out)
	}
	ct, _ := os.ReadFile(ctPath)
	got := e.must(t, 200, bankingToken, "POST", "/v1/keys/gm-enc/decrypt", map[string]any{"ciphertext": "kw:v1:" + base64.StdEncoding.EncodeToString(ct)})["plaintext"]
	if got != b64("PIN block 0412 34FF") {
		t.Fatalf("openssl ciphertext decrypted to %v", got)
	}
	own := e.must(t, 200, bankingToken, "POST", "/v1/keys/gm-enc/encrypt", map[string]any{"plaintext": b64("x")})["ciphertext"]
	if out := e.must(t, 200, bankingToken, "POST", "/v1/keys/gm-enc/decrypt", map[string]any{"ciphertext": own}); out["plaintext"] != b64("x") {
		t.Fatalf("own round trip: %v", out)
	}
	ct[len(ct)-1] ^= 1
	if out := e.must(t, 400, bankingToken, "POST", "/v1/keys/gm-enc/decrypt", map[string]any{"ciphertext": "kw:v1:" + base64.StdEncoding.EncodeToString(ct)}); errCode(out) != "decryption_failed" {
		t.Fatalf("tampered: %v", out)
	}
}

// TestKeysvcSM4Lifecycle: SM4 keys encrypt with AAD, make data keys,
// rotate, and lose their sealed material when a version is destroyed.
func TestKeysvcSM4Lifecycle(t *testing.T) {
	e := newKeysvcEnv(t)
	e.createKey(t, "gm-data", "encrypt", "sm4", "wrapped", "encrypt", "decrypt", "datakey")
	ct := e.must(t, 200, bankingToken, "POST", "/v1/keys/gm-data/encrypt", map[string]any{"plaintext": b64("账户 6222"), "aad": b64("cust=7")})["ciphertext"].(string)
	if out := e.must(t, 200, bankingToken, "POST", "/v1/keys/gm-data/decrypt", map[string]any{"ciphertext": ct, "aad": b64("cust=7")}); out["plaintext"] != b64("账户 6222") {
		t.Fatalf("round trip: %v", out)
	}
	if out := e.must(t, 400, bankingToken, "POST", "/v1/keys/gm-data/decrypt", map[string]any{"ciphertext": ct, "aad": b64("cust=8")}); errCode(out) != "decryption_failed" {
		t.Fatalf("wrong aad: %v", out)
	}
	dk := e.must(t, 200, bankingToken, "POST", "/v1/keys/gm-data/datakey", map[string]any{"size": 16})
	if out := e.must(t, 200, bankingToken, "POST", "/v1/keys/gm-data/decrypt", map[string]any{"ciphertext": dk["ciphertext"]}); out["plaintext"] != dk["plaintext"] {
		t.Fatal("sm4 data key does not decrypt to itself")
	}
	e.must(t, 200, officerToken, "POST", "/v1/keys/gm-data/rotate", nil)
	ct2 := e.must(t, 200, bankingToken, "POST", "/v1/keys/gm-data/encrypt", map[string]any{"plaintext": b64("x")})["ciphertext"].(string)
	if !strings.HasPrefix(ct2, "kw:v2:") {
		t.Fatalf("after rotation %q", ct2)
	}
	e.must(t, 200, officerToken, "POST", "/v1/keys/gm-data/versions/1/schedule-destroy", nil)
	e.clock.Advance(25 * time.Hour)
	if err := e.svc.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	k, err := e.store.GetKey("gm-data")
	if err != nil || k.Versions[0].State != wire.StateDestroyed || len(k.Versions[0].Wrapped) != 0 || len(k.Versions[1].Wrapped) == 0 {
		t.Fatalf("after destroy: %v %+v", err, k.Versions)
	}
	if out := e.must(t, 409, bankingToken, "POST", "/v1/keys/gm-data/decrypt", map[string]any{"ciphertext": ct, "aad": b64("cust=7")}); errCode(out) != "version_not_usable" {
		t.Fatalf("decrypt with destroyed version: %v", out)
	}
}

// TestKeysvcHMACSM3: a mac key (HMAC-SM3, key sealed under the token KEK)
// gives the same keyed hash for the same input (so a password's hash can be
// stored and compared), different keys give different hashes, and
// mac-verify accepts an old version's MAC after rotation.
func TestKeysvcHMACSM3(t *testing.T) {
	e := newKeysvcEnv(t)
	e.createKey(t, "pwd-hash", "mac", "hmac-sm3", "wrapped", "mac")
	e.createKey(t, "pwd-hash-2", "mac", "hmac-sm3", "wrapped", "mac")
	pw := b64("correct horse battery staple")
	m1 := e.must(t, 200, bankingToken, "POST", "/v1/keys/pwd-hash/mac", map[string]any{"message": pw})["mac"].(string)
	m2 := e.must(t, 200, bankingToken, "POST", "/v1/keys/pwd-hash/mac", map[string]any{"message": pw})["mac"].(string)
	other := e.must(t, 200, bankingToken, "POST", "/v1/keys/pwd-hash-2/mac", map[string]any{"message": pw})["mac"].(string)
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(m1, "kw:v1:"))
	if m1 != m2 || m1 == other || len(raw) != 32 {
		t.Fatalf("macs: %s %s %s", m1, m2, other)
	}
	e.must(t, 200, officerToken, "POST", "/v1/keys/pwd-hash/rotate", nil)
	if v := e.must(t, 200, bankingToken, "POST", "/v1/keys/pwd-hash/mac-verify", map[string]any{"message": pw, "mac": m1}); v["valid"] != true {
		t.Fatalf("v1 mac after rotation: %v", v)
	}
	if v := e.must(t, 200, bankingToken, "POST", "/v1/keys/pwd-hash/mac-verify", map[string]any{"message": b64("wrong"), "mac": m1}); v["valid"] != false {
		t.Fatalf("wrong password verifies: %v", v)
	}
	if m3 := e.must(t, 200, bankingToken, "POST", "/v1/keys/pwd-hash/mac", map[string]any{"message": pw})["mac"].(string); !strings.HasPrefix(m3, "kw:v2:") {
		t.Fatalf("after rotation: %s", m3)
	}
	e.must(t, 403, intruderToken, "POST", "/v1/keys/pwd-hash/mac", map[string]any{"message": pw})
	if out := e.must(t, 403, bankingToken, "POST", "/v1/keys/pwd-hash/sign", map[string]any{"message": pw}); errCode(out) != "forbidden" {
		t.Fatalf("sign with mac key: %v", out)
	}
}
