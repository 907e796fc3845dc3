package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/banking/auth/password"
	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/token/smcrypto"
)

func newChallenge(t *testing.T) string {
	t.Helper()
	raw := make([]byte, password.ChallengeSize)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(raw)
}

func sm2PEM(t *testing.T, pub *ecdsa.PublicKey) string {
	t.Helper()
	der, err := smcrypto.MarshalSM2Public(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// TestSealOpensOnTheBankSide encrypts as bankcli does and opens as the bank
// does: SM2 decryption (keysvc) then password.SplitPasswordChallenge.
func TestSealOpensOnTheBankSide(t *testing.T) {
	priv, err := smcrypto.GenerateSM2()
	if err != nil {
		t.Fatal(err)
	}
	ch := newChallenge(t)
	for _, pw := range []string{"Gl4cier-Walk-7q", "a b c D 1 !", strings.Repeat("Xy9-", 16)} {
		s, err := seal(sm2PEM(t, &priv.PublicKey), 3, ch, []byte(pw))
		if err != nil {
			t.Fatal(err)
		}
		if s.Challenge != ch || s.KeyVersion != 3 {
			t.Fatalf("sealed %+v", s)
		}
		ct, err := base64.StdEncoding.DecodeString(s.Ciphertext)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := smcrypto.SM2Decrypt(priv, ct)
		if err != nil {
			t.Fatal(err)
		}
		got, err := password.SplitPasswordChallenge(plain, ch)
		if err != nil || string(got) != pw {
			t.Fatalf("bank recovered %q, %v; want %q", got, err, pw)
		}
		// Bound to its challenge: under another one it is refused.
		if _, err := password.SplitPasswordChallenge(plain, newChallenge(t)); !errors.Is(err, password.ErrChallengeMismatch) {
			t.Fatalf("other challenge: %v", err)
		}
	}
}

func TestSealRefusals(t *testing.T) {
	priv, _ := smcrypto.GenerateSM2()
	sm2Key := sm2PEM(t, &priv.PublicKey)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&p256.PublicKey)
	p256Key := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	ch := newChallenge(t)
	for _, c := range []struct {
		name, key, ch, pw string
	}{
		{"not SM2", p256Key, ch, "Gl4cier-Walk-7q"},
		{"not PEM", "hello", ch, "Gl4cier-Walk-7q"},
		{"short challenge", sm2Key, ch[:40], "Gl4cier-Walk-7q"},
		{"padded challenge", sm2Key, ch + "=", "Gl4cier-Walk-7q"},
		{"zero byte", sm2Key, ch, "Gl4cier\x00Walk"},
		{"empty", sm2Key, ch, ""},
	} {
		if _, err := seal(c.key, 1, c.ch, []byte(c.pw)); err == nil {
			t.Errorf("%s: sealed", c.name)
		}
	}
}

// receiptFixture is a receipt signed as keysvc signs it, and the PEM of
// the bank's receipt key.
func receiptFixture(t *testing.T) (bankwire.Receipt, string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	body := `{"type":"keyward.receipt.v1","transfer_id":"T000000000002","time":"2026-11-28T10:00:00.5Z","payer_account":"6299900000000000017","payee_account":"6299900000000000025","amount":"12.00","currency":"CNY","reference":"nonce-0000000001","memo":"付款 rent"}`
	sum := sha256.Sum256([]byte(body))
	sig, err := ecdsa.SignASN1(rand.Reader, k, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return bankwire.Receipt{Body: body, Signature: base64.StdEncoding.EncodeToString(sig)},
		string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func filesIn(dir string) receiptFiles {
	return receiptFiles{body: filepath.Join(dir, "receipt.json"), sig: filepath.Join(dir, "receipt.sig"), key: filepath.Join(dir, "bank-receipt.pem")}
}

func TestWriteReceipt(t *testing.T) {
	rc, keyPEM := receiptFixture(t)
	to := filesIn(t.TempDir())
	if err := writeReceipt(rc, keyPEM, to); err != nil {
		t.Fatal(err)
	}
	body, _ := os.ReadFile(to.body)
	sig, _ := os.ReadFile(to.sig)
	key, _ := os.ReadFile(to.key)
	wantSig, _ := base64.StdEncoding.DecodeString(rc.Signature)
	if string(body) != rc.Body || !bytes.Equal(sig, wantSig) || string(key) != keyPEM {
		t.Fatalf("files differ from the receipt:\n%s\n%x\n%s", body, sig, key)
	}
	// The README's command.
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	out, err := exec.Command("openssl", "dgst", "-sha256", "-verify", to.key, "-signature", to.sig, to.body).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verified OK") {
		t.Fatalf("openssl: %v %s", err, out)
	}
}

func TestWriteReceiptRefusals(t *testing.T) {
	rc, keyPEM := receiptFixture(t)
	// A body that is not what was signed: nothing is written.
	dir := t.TempDir()
	bad := rc
	bad.Body = strings.Replace(rc.Body, "12.00", "120.00", 1)
	if err := writeReceipt(bad, keyPEM, filesIn(dir)); err == nil || err.Error() != text("the receipt's signature does not verify with the bank's receipt key; nothing written") {
		t.Fatalf("tampered body: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files written for a bad receipt: %v", ents)
	}
	// An existing output is never overwritten, and nothing else is written.
	dir = t.TempDir()
	to := filesIn(dir)
	os.WriteFile(to.sig, []byte("keep me"), 0o600)
	if err := writeReceipt(rc, keyPEM, to); !errors.Is(err, errUsage) {
		t.Fatalf("existing output: %v", err)
	}
	if b, _ := os.ReadFile(to.sig); string(b) != "keep me" {
		t.Fatal("an existing file was overwritten")
	}
	if _, err := os.Stat(to.body); err == nil {
		t.Fatal("the body was written although -sig exists")
	}
	// All three outputs or none.
	if err := writeReceipt(rc, keyPEM, receiptFiles{body: filepath.Join(t.TempDir(), "r.json")}); !errors.Is(err, errUsage) {
		t.Fatalf("missing -sig/-key: %v", err)
	}
}

func TestReadSignature(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sum := sha256.Sum256([]byte("order"))
	der, _ := ecdsa.SignASN1(rand.Reader, k, sum[:])
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"raw.sig": der,                                                   // openssl dgst -sign, kwsign -out
		"b64.sig": []byte(base64.StdEncoding.EncodeToString(der) + "\n"), // kwsign on stdout
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, content, 0o600)
		got, err := readSignature(p)
		if err != nil || !bytes.Equal(got, der) {
			t.Fatalf("%s: %x %v", name, got, err)
		}
	}
	p := filepath.Join(dir, "junk.sig")
	os.WriteFile(p, []byte("not a signature"), 0o600)
	if _, err := readSignature(p); err == nil {
		t.Fatal("junk accepted as a signature")
	}
}

func TestUSBPublicKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, der []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
		return p
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&p256.PublicKey)
	if _, alg, err := usbPublicKey(write("p256.pem", der)); err != nil || alg != "ec-p256" {
		t.Fatalf("P-256: %s %v", alg, err)
	}
	sm2, _ := smcrypto.GenerateSM2()
	der, _ = smcrypto.MarshalSM2Public(&sm2.PublicKey)
	if _, alg, err := usbPublicKey(write("sm2.pem", der)); err != nil || alg != "sm2" {
		t.Fatalf("SM2: %s %v", alg, err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ = x509.MarshalPKIXPublicKey(&p384.PublicKey)
	if _, _, err := usbPublicKey(write("p384.pem", der)); err == nil {
		t.Fatal("P-384 accepted for a USB key")
	}
}

func TestSessionFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keyward", "bankcli.session")
	s := &session{URL: "https://127.0.0.1:8445", Session: "s3cr3t", Device: "laptop-1", OS: "Debian 12", Login: "alice"}
	if err := saveSession(p, s); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("session file mode %v", st.Mode().Perm())
	}
	if dst, _ := os.Stat(filepath.Dir(p)); dst.Mode().Perm() != 0o700 {
		t.Fatalf("session dir mode %v", dst.Mode().Perm())
	}
	got, err := loadSession(p)
	if err != nil || *got != *s {
		t.Fatalf("loaded %+v %v", got, err)
	}
	os.Chmod(p, 0o644)
	if _, err := loadSession(p); err == nil {
		t.Fatal("a session file others can read was used")
	}
	if _, err := loadSession(filepath.Join(t.TempDir(), "none")); !errors.Is(err, errUsage) {
		t.Fatalf("no session: %v", err)
	}
}

func TestWriteNewNeverOverwrites(t *testing.T) {
	p := filepath.Join(t.TempDir(), "order.json")
	if err := writeNew(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeNew(p, []byte("two"), 0o644); !errors.Is(err, errUsage) {
		t.Fatalf("second write: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Fatalf("file now %q", b)
	}
}
