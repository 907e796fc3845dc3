package softhsmtests

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// TestKeyTypesSignVerify generates every signing key type in the token and
// signs and verifies with each (R-TOK-1).
func TestKeyTypesSignVerify(t *testing.T) {
	env := mustNewToken(t, token.KindHSM)
	ctx := context.Background()
	msg := []byte("transfer 100.00 CNY to 6222 0200 1234 5678")
	cases := []struct {
		typ  pkcs11shim.KeyType
		opts crypto.SignerOpts
	}{
		{pkcs11shim.KeyECP256, crypto.SHA256},
		{pkcs11shim.KeyECP384, crypto.SHA384},
		{pkcs11shim.KeyRSA2048, crypto.SHA256},
		{pkcs11shim.KeyRSA2048, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}},
		{pkcs11shim.KeyRSA3072, crypto.SHA384},
		{pkcs11shim.KeyRSA4096, &rsa.PSSOptions{Hash: crypto.SHA512, SaltLength: rsa.PSSSaltLengthEqualsHash}},
	}
	for i, c := range cases {
		k, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: c.typ, Label: c.typ.String() + "-" + string(rune('a'+i))})
		if err != nil {
			t.Fatalf("%v: generate: %v", c.typ, err)
		}
		h := c.opts.HashFunc().New()
		h.Write(msg)
		digest := h.Sum(nil)
		sig, err := env.pool.Sign(ctx, k, digest, c.opts, nil)
		if err != nil {
			t.Fatalf("%v: sign: %v", c.typ, err)
		}
		if err := env.pool.Verify(ctx, k, digest, sig, c.opts); err != nil {
			t.Fatalf("%v: verify in token: %v", c.typ, err)
		}
		// Go's own verifier agrees with the token.
		pub, err := env.pool.PublicKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		switch p := pub.(type) {
		case *ecdsa.PublicKey:
			if !ecdsa.VerifyASN1(p, digest, sig) {
				t.Fatalf("%v: crypto/ecdsa rejects the token's signature", c.typ)
			}
		case *rsa.PublicKey:
			var err error
			if pss, ok := c.opts.(*rsa.PSSOptions); ok {
				err = rsa.VerifyPSS(p, c.opts.HashFunc(), digest, sig, pss)
			} else {
				err = rsa.VerifyPKCS1v15(p, c.opts.HashFunc(), digest, sig)
			}
			if err != nil {
				t.Fatalf("%v: crypto/rsa rejects the token's signature: %v", c.typ, err)
			}
		}
		// A changed digest fails verification with the typed error.
		bad := append([]byte{}, digest...)
		bad[0] ^= 1
		if err := env.pool.Verify(ctx, k, bad, sig, c.opts); !errors.Is(err, pkcs11shim.ErrSignatureInvalid) {
			t.Fatalf("%v: verify of wrong digest: got %v, want ErrSignatureInvalid", c.typ, err)
		}
		// A digest of the wrong length is refused before the token sees it.
		if _, err := env.pool.Sign(ctx, k, digest[:10], c.opts, nil); !errors.Is(err, pkcs11shim.ErrInputInvalid) {
			t.Fatalf("%v: short digest: got %v, want ErrInputInvalid", c.typ, err)
		}
	}
}

// TestOpenSSLVerifies checks ECDSA P-256 and RSA-PSS signatures with the
// openssl CLI: what the token signs is standard DER/PSS.
func TestOpenSSLVerifies(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl CLI not installed")
	}
	env := mustNewToken(t, token.KindHSM)
	ctx := context.Background()
	dir := t.TempDir()
	msg := []byte("receipt 2026-11-28 #000123")
	msgPath := filepath.Join(dir, "msg")
	os.WriteFile(msgPath, msg, 0o600)
	digest := sha256.Sum256(msg)
	for _, c := range []struct {
		typ  pkcs11shim.KeyType
		opts crypto.SignerOpts
		args []string
	}{
		{pkcs11shim.KeyECP256, crypto.SHA256, nil},
		{pkcs11shim.KeyRSA2048, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}, []string{"-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"}},
	} {
		k, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: c.typ, Label: "openssl-" + c.typ.String()})
		if err != nil {
			t.Fatal(err)
		}
		signer, err := env.pool.NewSigner(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := signer.Sign(nil, digest[:], c.opts)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(signer.Public())
		if err != nil {
			t.Fatal(err)
		}
		pubPath := filepath.Join(dir, c.typ.String()+".pem")
		sigPath := filepath.Join(dir, c.typ.String()+".sig")
		os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
		os.WriteFile(sigPath, sig, 0o600)
		args := append([]string{"dgst", "-sha256", "-verify", pubPath, "-signature", sigPath}, c.args...)
		out, err := exec.Command("openssl", append(args, msgPath)...).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("Verified OK")) {
			t.Fatalf("%v: openssl: %v: %s", c.typ, err, out)
		}
		// openssl must also reject a tampered message.
		os.WriteFile(msgPath+".bad", append(msg, '!'), 0o600)
		if out, err := exec.Command("openssl", append(args, msgPath+".bad")...).CombinedOutput(); err == nil {
			t.Fatalf("%v: openssl accepted a tampered message: %s", c.typ, out)
		}
	}
}

// TestEncryptDecrypt covers AES-GCM with AAD and RSA-OAEP.
func TestEncryptDecrypt(t *testing.T) {
	env := mustNewToken(t, token.KindHSM)
	ctx := context.Background()
	aes, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyAES256, Label: "data-key"})
	if err != nil {
		t.Fatal(err)
	}
	pt := []byte("card 6222020012345678 cvv 123")
	aad := []byte("customer=42")
	sealed, err := env.pool.EncryptGCM(ctx, aes, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != pkcs11shim.GCMNonceSize+len(pt)+pkcs11shim.GCMTagSize {
		t.Fatalf("sealed length %d", len(sealed))
	}
	got, err := env.pool.DecryptGCM(ctx, aes, sealed, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("round trip: %v %q", err, got)
	}
	again, _ := env.pool.EncryptGCM(ctx, aes, pt, aad)
	if bytes.Equal(again[:12], sealed[:12]) {
		t.Fatal("nonce reused")
	}
	// Wrong AAD, flipped ciphertext bit, truncated: all the same vague error.
	flipped := append([]byte{}, sealed...)
	flipped[20] ^= 0x80
	for name, c := range map[string][2][]byte{"aad": {sealed, []byte("customer=43")}, "bit": {flipped, aad}, "short": {sealed[:20], aad}} {
		if _, err := env.pool.DecryptGCM(ctx, aes, c[0], c[1]); !errors.Is(err, pkcs11shim.ErrDecrypt) {
			t.Fatalf("%s: got %v, want ErrDecrypt", name, err)
		}
	}
	// The session that saw a failure is not reused in a bad state: next op works.
	if _, err := env.pool.DecryptGCM(ctx, aes, sealed, aad); err != nil {
		t.Fatalf("after failures: %v", err)
	}

	rsaKey, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyRSA2048, Label: "oaep", Usage: pkcs11shim.UsageEncrypt})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := env.pool.NewSigner(ctx, rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := signer.Public().(*rsa.PublicKey)
	// Encrypt in Go with the exported public key, decrypt in the token.
	// SoftHSM 2.6.1 implements OAEP with SHA-1 only; other hashes and labels
	// must be refused as ErrMechanismInvalid, never as a vague failure.
	var ct []byte
	for _, c := range []struct {
		hash  crypto.Hash
		label []byte
	}{{crypto.SHA256, nil}, {crypto.SHA256, []byte("lbl")}, {crypto.SHA1, nil}} {
		ct, err = rsa.EncryptOAEP(c.hash.New(), rand.Reader, pub, pt, c.label)
		if err != nil {
			t.Fatal(err)
		}
		got, err := signer.Decrypt(nil, ct, &rsa.OAEPOptions{Hash: c.hash, Label: c.label})
		switch {
		case err == nil && !bytes.Equal(got, pt):
			t.Fatalf("OAEP %v: wrong plaintext", c.hash)
		case err != nil && (c.hash == crypto.SHA1 && c.label == nil || !errors.Is(err, pkcs11shim.ErrMechanismInvalid)):
			t.Fatalf("OAEP %v label %q: %v", c.hash, c.label, err)
		}
	}
	// Encrypt in the token, decrypt in Go and in the token.
	ct, err = env.pool.EncryptOAEP(ctx, rsaKey, crypto.SHA1, nil, pt)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := env.pool.DecryptOAEP(ctx, rsaKey, crypto.SHA1, nil, ct, nil); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("OAEP token round trip: %v", err)
	}
	ct[5] ^= 1
	if _, err := env.pool.DecryptOAEP(ctx, rsaKey, crypto.SHA1, nil, ct, nil); !errors.Is(err, pkcs11shim.ErrDecrypt) {
		t.Fatalf("tampered OAEP: got %v, want ErrDecrypt", err)
	}
	if _, err := signer.Decrypt(nil, ct, nil); !errors.Is(err, pkcs11shim.ErrMechanismInvalid) {
		t.Fatalf("PKCS#1 v1.5 decrypt: got %v, want ErrMechanismInvalid", err)
	}
}

// TestNonExtractable proves R-TOK-1/R-TOK-2: CKA_VALUE of private and secret
// keys cannot be read, and non-extractable keys cannot be wrapped out.
func TestNonExtractable(t *testing.T) {
	env := mustNewToken(t, token.KindHSM)
	ctx := context.Background()
	kek, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyAES256, Label: "kek"})
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []pkcs11shim.KeyType{pkcs11shim.KeyECP256, pkcs11shim.KeyRSA2048, pkcs11shim.KeyAES256, pkcs11shim.KeyGenericSecret} {
		k, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: typ, Label: "secret-" + typ.String()})
		if err != nil {
			t.Fatalf("%v: %v", typ, err)
		}
		err = env.pool.WithSession(ctx, func(s *pkcs11shim.Session) error {
			v, err := s.ReadValue(k)
			if len(v) > 0 {
				t.Errorf("%v: CKA_VALUE readable (%d bytes)", typ, len(v))
			}
			return err
		})
		if !errors.Is(err, pkcs11shim.ErrKeyUnextractable) {
			t.Errorf("%v: reading CKA_VALUE: got %v, want ErrKeyUnextractable", typ, err)
		}
		if _, err := env.pool.WrapKey(ctx, kek, k); !errors.Is(err, pkcs11shim.ErrKeyUnextractable) {
			t.Errorf("%v: wrapping: got %v, want ErrKeyUnextractable", typ, err)
		}
	}
}

// TestWrapUnwrap wraps an extractable key and unwraps it as a session key
// (the wrapped-key model), which then works and vanishes with its session.
func TestWrapUnwrap(t *testing.T) {
	env := mustNewToken(t, token.KindHSM)
	ctx := context.Background()
	kek, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyAES256, Label: "kek", Usage: pkcs11shim.UsageWrap})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("hello"))
	for _, typ := range []pkcs11shim.KeyType{pkcs11shim.KeyAES256, pkcs11shim.KeyECP256} {
		var blob []byte
		var sig []byte
		var pub *ecdsa.PublicKey
		err := env.pool.WithSession(ctx, func(s *pkcs11shim.Session) error {
			k, err := s.GenerateKey(pkcs11shim.KeySpec{Type: typ, Label: "customer-7", Session: true, Extractable: true})
			if err != nil {
				return err
			}
			if blob, err = s.WrapKey(kek, k); err != nil {
				return err
			}
			if typ.IsEC() {
				p, err := s.PublicKey(k)
				if err != nil {
					return err
				}
				pub = p.(*ecdsa.PublicKey)
			}
			return s.DestroyKey(k)
		})
		if err != nil {
			t.Fatalf("%v: generate+wrap: %v", typ, err)
		}
		err = env.pool.WithSession(ctx, func(s *pkcs11shim.Session) error {
			k, err := s.UnwrapKey(kek, blob, pkcs11shim.KeySpec{Type: typ, Label: "customer-7", Session: true})
			if err != nil {
				return err
			}
			defer s.DestroyKey(k)
			if typ.IsEC() {
				sig, err = s.Sign(k, digest[:], crypto.SHA256, nil)
				return err
			}
			ct, err := s.EncryptGCM(k, []byte("x"), nil)
			if err != nil {
				return err
			}
			_, err = s.DecryptGCM(k, ct, nil)
			return err
		})
		if err != nil {
			t.Fatalf("%v: unwrap+use: %v", typ, err)
		}
		if typ.IsEC() && !ecdsa.VerifyASN1(pub, digest[:], sig) {
			t.Fatal("unwrapped key's signature does not verify under the original public key")
		}
		blob[3] ^= 1
		err = env.pool.WithSession(ctx, func(s *pkcs11shim.Session) error {
			_, err := s.UnwrapKey(kek, blob, pkcs11shim.KeySpec{Type: typ, Label: "customer-7", Session: true})
			return err
		})
		if !errors.Is(err, pkcs11shim.ErrDecrypt) {
			t.Fatalf("%v: tampered blob: got %v, want ErrDecrypt", typ, err)
		}
	}
}

// TestLabelsFindDestroy: duplicate labels are refused, keys are found by
// label with their type, and destroyed keys are gone (R-TOK-7).
func TestLabelsFindDestroy(t *testing.T) {
	env := mustNewToken(t, token.KindHSM)
	ctx := context.Background()
	k, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP384, Label: "receipt"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyAES256, Label: "receipt"}); !errors.Is(err, pkcs11shim.ErrDuplicateLabel) {
		t.Fatalf("duplicate label: got %v", err)
	}
	// A second pool on the same token finds it from scratch.
	tok2 := mustOpenSecond(t, env)
	found, err := tok2.Pool().FindKey(ctx, "receipt")
	if err != nil {
		t.Fatal(err)
	}
	if found.Type != pkcs11shim.KeyECP384 || !bytes.Equal(found.ID, k.ID) {
		t.Fatalf("found %v id %x, want %v id %x", found.Type, found.ID, k.Type, k.ID)
	}
	if err := env.pool.DestroyKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if _, err := env.pool.FindKey(ctx, "receipt"); !errors.Is(err, pkcs11shim.ErrKeyNotFound) {
		t.Fatalf("after destroy: got %v, want ErrKeyNotFound", err)
	}
	// The other pool's cached handle is stale; using it re-finds and fails cleanly.
	digest := sha256.Sum256([]byte("x"))
	if _, err := tok2.Pool().Sign(ctx, found, digest[:], crypto.SHA256, nil); !errors.Is(err, pkcs11shim.ErrKeyNotFound) {
		t.Fatalf("sign with destroyed key: got %v, want ErrKeyNotFound", err)
	}
}

// TestTokenInfoAndMechanisms: decoded flags and the mechanism list.
func TestTokenInfoAndMechanisms(t *testing.T) {
	env := mustNewToken(t, token.KindHSM)
	ti, err := env.tok.Info()
	if err != nil {
		t.Fatal(err)
	}
	if !ti.Flags.Initialized || !ti.Flags.UserPINInitialized || !ti.Flags.LoginRequired || ti.Flags.UserPINLocked {
		t.Fatalf("flags: %+v", ti.Flags)
	}
	if ti.Flags.Removable != removable {
		t.Fatalf("removable flag %v, config says %v", ti.Flags.Removable, removable)
	}
	mechs, err := env.pool.Mechanisms()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"CKM_ECDSA": false, "CKM_AES_GCM": false, "CKM_RSA_PKCS_PSS": false, "CKM_AES_KEY_WRAP_PAD": false}
	for _, m := range mechs {
		if _, ok := want[m.Name]; ok {
			want[m.Name] = true
		}
	}
	for n, ok := range want {
		if !ok {
			t.Errorf("mechanism %s missing from %d listed", n, len(mechs))
		}
	}
}
