package softhsmtests

// The behaviours of TestConformance (see conformance_test.go), except the
// lockout (conformance_lockout_test.go).

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// Mechanism numbers Keyward does not name itself (PKCS#11 v3.0 §2.3.6).
const (
	confCKMECEdwardsKeyPairGen = 0x1055 // CKM_EC_EDWARDS_KEY_PAIR_GEN
	confCKMEdDSA               = 0x1057 // CKM_EDDSA
)

// confMechanisms: every capability a module declares is backed by a listed
// mechanism. (The converse does not hold: tpm2-pkcs11 lists CKM_AES_KEY_GEN
// and CKM_SHA256_HMAC but refuses to generate such keys.)
func confMechanisms(t *testing.T, m *confModule) {
	tok := confMustOpen(t, m)
	mechs, err := tok.Pool().Mechanisms()
	if err != nil {
		t.Fatal(err)
	}
	listed := map[uint]bool{}
	for _, mech := range mechs {
		listed[mech.Type] = true
	}
	need := map[string][]uint{
		"":          {0x1040 /* CKM_EC_KEY_PAIR_GEN */, 0x1041 /* CKM_ECDSA */, 0x0000 /* CKM_RSA_PKCS_KEY_PAIR_GEN */, 0x0001 /* CKM_RSA_PKCS */},
		"RSAPSS":    {0x000D /* CKM_RSA_PKCS_PSS */},
		"AESKeygen": {0x1080 /* CKM_AES_KEY_GEN */},
		"GCM":       {0x1087 /* CKM_AES_GCM */},
		"KeyWrap":   {0x210A /* CKM_AES_KEY_WRAP_PAD */},
		"HMAC":      {0x0251 /* CKM_SHA256_HMAC */},
		"EdDSA":     {confCKMECEdwardsKeyPairGen, confCKMEdDSA},
	}
	for cap, types := range need {
		if cap != "" && !confHas(m.caps, cap) {
			continue
		}
		for _, typ := range types {
			if !listed[typ] {
				what := "always needed"
				if cap != "" {
					what = "needed by declared capability " + cap
				}
				t.Errorf("%s (%s) is not among the %d mechanisms listed", pkcs11shim.MechanismName(typ), what, len(mechs))
			}
		}
	}
	t.Logf("%s lists %d mechanisms", m.name, len(mechs))
}

// confFindByLabel: the token is found by its label, initialised and asking
// for a login.
func confFindByLabel(t *testing.T, m *confModule) {
	ti, err := m.mod.FindToken(pkcs11shim.Selector{Label: m.label})
	if err != nil {
		t.Fatal(err)
	}
	if ti.Label != m.label || !ti.Flags.Initialized || !ti.Flags.UserPINInitialized || !ti.Flags.LoginRequired {
		t.Fatalf("found %q flags %+v", ti.Label, ti.Flags)
	}
	if _, err := m.mod.FindToken(pkcs11shim.Selector{Label: confLabel("no-such-token")}); !errors.Is(err, pkcs11shim.ErrTokenNotFound) {
		t.Fatalf("unknown label: got %v, want ErrTokenNotFound", err)
	}
}

// confFindBySerial: the serial finds the token when it names one token; when
// several initialised tokens share it (tpm2-pkcs11 gives every token serial
// 0000000000000000), Keyward refuses to choose: ErrTokenAmbiguous.
func confFindBySerial(t *testing.T, m *confModule) {
	ti, err := m.mod.FindToken(pkcs11shim.Selector{Label: m.label})
	if err != nil {
		t.Fatal(err)
	}
	all, err := m.mod.Tokens()
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for _, o := range all {
		if o.Flags.Initialized && o.Serial == ti.Serial {
			same++
		}
	}
	if m.caps.UniqueSerial && same != 1 {
		t.Fatalf("%d initialised tokens share serial %q on a module declaring unique serials", same, ti.Serial)
	}
	got, err := m.mod.FindToken(pkcs11shim.Selector{Serial: ti.Serial})
	switch {
	case same == 1 && (err != nil || got.Label != m.label):
		t.Fatalf("by serial %q: got %q, %v", ti.Serial, got.Label, err)
	case same > 1 && !errors.Is(err, pkcs11shim.ErrTokenAmbiguous):
		t.Fatalf("serial %q shared by %d tokens: got %v, want ErrTokenAmbiguous", ti.Serial, same, err)
	}
	// Label and serial together always name it.
	if got, err := m.mod.FindToken(pkcs11shim.Selector{Label: m.label, Serial: ti.Serial}); err != nil || got.Label != m.label {
		t.Fatalf("by label and serial: got %q, %v", got.Label, err)
	}
	t.Logf("serial %q, shared by %d initialised token(s)", ti.Serial, same)
}

// confFindByURI: an RFC 7512 URI with module-path and pin-source=file:
// opens the token and the token works; a URI that disagrees with the config
// is refused by name.
func confFindByURI(t *testing.T, m *confModule) {
	ti, err := m.mod.FindToken(pkcs11shim.Selector{Label: m.label})
	if err != nil {
		t.Fatal(err)
	}
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(m.user+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	uri := "pkcs11:token=" + m.label + ";serial=" + ti.Serial
	// The model is matched byte for byte. tpm2-pkcs11's is "SW   TPM"
	// padded with NULs, not blanks (PKCS#11 wants blanks), pkcs11shim trims
	// only blanks, and a URI may not hold a NUL: such a token cannot be
	// named by model until pkcs11shim trims NULs too.
	if strings.ContainsRune(ti.Model, 0) {
		t.Logf("token model %q is NUL-padded: left out of the URI", ti.Model)
	} else {
		uri += ";model=" + confPctEncode(ti.Model)
	}
	uri += "?module-path=" + m.path + "&pin-source=file:" + pinFile
	u, err := pkcs11shim.ParseURI(uri)
	if err != nil {
		t.Fatalf("parse %s: %v", uri, err)
	}
	sel, err := pkcs11shim.SelectorFromURI(u)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.mod.FindToken(sel); err != nil || got.Label != m.label {
		t.Fatalf("FindToken(URI selector): %q, %v", got.Label, err)
	}
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "g.db"), 0)
	tok, err := token.Open(context.Background(), token.Config{Kind: token.KindHSM, URI: uri, PINGuard: g.Config()})
	if err != nil {
		t.Fatalf("token.Open by URI: %v", err)
	}
	defer tok.Close()
	if _, err := tok.Pool().GenerateRandom(context.Background(), 16); err != nil {
		t.Fatalf("using the token opened by URI: %v", err)
	}
	_, err = token.Open(context.Background(), token.Config{Kind: token.KindHSM, URI: uri, Label: "other", PINGuard: g.Config()})
	if err == nil || !strings.Contains(err.Error(), "conflicting token label") {
		t.Fatalf("conflicting label: %v", err)
	}
}

// confPctEncode percent-encodes every byte outside RFC 3986's unreserved set.
func confPctEncode(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// confLoginRight: the right PIN logs in through the guard; the pool is
// healthy and the counter stays at zero.
func confLoginRight(t *testing.T, m *confModule) {
	tok, g, err := confOpen(t, m, m.user)
	if err != nil {
		t.Fatal(err)
	}
	if st := tok.Pool().Stats(); !st.Healthy {
		t.Fatalf("pool not healthy: %+v", st)
	}
	if st, _ := g.State(token.PINID(tok.Pool().Info(), pkcs11shim.UserNormal)); st.Failures != 0 || st.Locked {
		t.Fatalf("guard after a right PIN: %+v", st)
	}
	if b, err := tok.Pool().GenerateRandom(context.Background(), 32); err != nil || len(b) != 32 {
		t.Fatalf("random after login: %d bytes, %v", len(b), err)
	}
}

// confLoginWrong: a wrong PIN is ErrPINIncorrect from the module
// (pkcs11shim) and from the token layer, counted once, and the right PIN
// then logs in and resets the counter.
func confLoginWrong(t *testing.T, m *confModule) {
	if m.clearLockout != nil {
		t.Cleanup(func() { m.clearLockout(t) }) // these wrong PINs count towards the TPM's lockout
	}
	sel := pkcs11shim.Selector{Label: m.label}
	err := m.mod.CheckLogin(sel, pkcs11shim.UserNormal, []byte("wrong-"+m.user))
	if !errors.Is(err, pkcs11shim.ErrPINIncorrect) || errors.Is(err, pkcs11shim.ErrPINLocked) {
		t.Fatalf("module: got %v, want ErrPINIncorrect", err)
	}
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "g.db"), 0)
	_, err = confOpenWith(t, m, g, &switchablePIN{pin: "wrong-" + m.user})
	if !errors.Is(err, token.ErrPINIncorrect) || errors.Is(err, token.ErrPINLocked) {
		t.Fatalf("token.Open: got %v, want ErrPINIncorrect", err)
	}
	if strings.Contains(err.Error(), m.user) {
		t.Fatal("the error shows the PIN")
	}
	ti, err := m.mod.FindToken(sel)
	if err != nil {
		t.Fatal(err)
	}
	id := token.PINID(ti, pkcs11shim.UserNormal)
	if st, _ := g.State(id); st.Failures != 1 || st.Locked {
		t.Fatalf("guard after one wrong PIN: %+v", st)
	}
	if _, err := confOpenWith(t, m, g, &switchablePIN{pin: m.user}); err != nil {
		t.Fatalf("right PIN after a wrong one: %v", err)
	}
	if st, _ := g.State(id); st.Failures != 0 {
		t.Fatalf("counter not reset: %+v", st)
	}
}

// confSignVerify generates a key of typ in the token, signs through the pool
// and the crypto.Signer, and verifies in Go with the public key read from
// the token (CKA_EC_POINT, DER-wrapped or raw, or modulus and exponent).
func confSignVerify(t *testing.T, m *confModule, typ pkcs11shim.KeyType, opts crypto.SignerOpts) {
	tok := confMustOpen(t, m)
	ctx := context.Background()
	k := confGenerate(t, tok, pkcs11shim.KeySpec{Type: typ, Label: confLabel(typ.String())})
	h := opts.HashFunc().New()
	h.Write([]byte("pay 1,250.00 EUR to DE89 3704 0044 0532 0130 00"))
	digest := h.Sum(nil)
	pub, err := tok.Pool().PublicKey(ctx, k)
	if err != nil {
		t.Fatalf("public key: %v", err)
	}
	signer, err := tok.Pool().NewSigner(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	var sigs [][]byte
	sig, err := tok.Pool().Sign(ctx, k, digest, opts, nil)
	if err != nil {
		t.Fatalf("pool sign: %v", err)
	}
	sigs = append(sigs, sig)
	if sig, err = signer.Sign(nil, digest, opts); err != nil {
		t.Fatalf("crypto.Signer sign: %v", err)
	}
	sigs = append(sigs, sig)
	bad := append([]byte{}, digest...)
	bad[0] ^= 1
	for i, sig := range sigs {
		if err := confVerifyGo(pub, digest, sig, opts); err != nil {
			t.Fatalf("signature %d: Go rejects it: %v", i, err)
		}
		if confVerifyGo(pub, bad, sig, opts) == nil {
			t.Fatalf("signature %d: Go accepts it for another digest", i)
		}
	}
	if _, err := tok.Pool().Sign(ctx, k, digest[:10], opts, nil); !errors.Is(err, pkcs11shim.ErrInputInvalid) {
		t.Fatalf("short digest: got %v, want ErrInputInvalid", err)
	}
}

func confVerifyGo(pub crypto.PublicKey, digest, sig []byte, opts crypto.SignerOpts) error {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(p, digest, sig) {
			return errors.New("crypto/ecdsa: invalid signature")
		}
		return nil
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			return rsa.VerifyPSS(p, opts.HashFunc(), digest, sig, pss)
		}
		return rsa.VerifyPKCS1v15(p, opts.HashFunc(), digest, sig)
	}
	return errors.New("unexpected public key type")
}

func confECP256(t *testing.T, m *confModule) {
	confSignVerify(t, m, pkcs11shim.KeyECP256, crypto.SHA256)
}

func confECP384(t *testing.T, m *confModule) {
	confSignVerify(t, m, pkcs11shim.KeyECP384, crypto.SHA384)
}

func confRSAPKCS1(t *testing.T, m *confModule) {
	confSignVerify(t, m, pkcs11shim.KeyRSA2048, crypto.SHA256)
}

func confRSAPSS(t *testing.T, m *confModule) {
	confSignVerify(t, m, pkcs11shim.KeyRSA2048, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash})
}

// confNotExtractable: the secret part of every key Keyward makes cannot be
// read (R-TOK-1), and cannot be wrapped out where the module wraps at all
// (R-TOK-2).
func confNotExtractable(t *testing.T, m *confModule) {
	tok := confMustOpen(t, m)
	ctx := context.Background()
	types := []pkcs11shim.KeyType{pkcs11shim.KeyECP256, pkcs11shim.KeyRSA2048}
	if m.caps.AESKeygen {
		types = append(types, pkcs11shim.KeyAES256)
	}
	if m.caps.HMAC {
		types = append(types, pkcs11shim.KeyGenericSecret)
	}
	var kek *pkcs11shim.Key
	if m.caps.AESKeygen && m.caps.KeyWrap {
		kek = confGenerate(t, tok, pkcs11shim.KeySpec{Type: pkcs11shim.KeyAES256, Label: confLabel("kek"), Usage: pkcs11shim.UsageWrap})
	}
	for _, typ := range types {
		k := confGenerate(t, tok, pkcs11shim.KeySpec{Type: typ, Label: confLabel("secret-" + typ.String())})
		var v []byte
		err := tok.Pool().WithSession(ctx, func(s *pkcs11shim.Session) error {
			var err error
			v, err = s.ReadValue(k)
			return err
		})
		switch {
		case len(v) > 0:
			t.Errorf("%v: the secret value was readable (%d bytes)", typ, len(v))
		case err == nil:
			t.Errorf("%v: reading the secret value succeeded (empty)", typ)
		case m.caps.ValueSensitive && !errors.Is(err, pkcs11shim.ErrKeyUnextractable):
			t.Errorf("%v: got %v, want ErrKeyUnextractable", typ, err)
		default:
			t.Logf("%v: reading the secret value refused: %v", typ, err)
		}
		if kek != nil {
			if _, err := tok.Pool().WrapKey(ctx, kek, k); !errors.Is(err, pkcs11shim.ErrKeyUnextractable) {
				t.Errorf("%v: wrapping: got %v, want ErrKeyUnextractable", typ, err)
			}
		}
	}
}

// confFindKey: a second pool (no cache) finds a key by label with its type
// and CKA_ID, and its signature verifies under the first pool's public key.
func confFindKey(t *testing.T, m *confModule) {
	tok := confMustOpen(t, m)
	ctx := context.Background()
	label := confLabel("findme")
	k := confGenerate(t, tok, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: label})
	pub, err := tok.Pool().PublicKey(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	tok2 := confMustOpen(t, m)
	found, err := tok2.Pool().FindKey(ctx, label)
	if err != nil {
		t.Fatalf("FindKey: %v", err)
	}
	if found.Type != pkcs11shim.KeyECP256 || !bytes.Equal(found.ID, k.ID) {
		t.Fatalf("found %v id %x, want %v id %x", found.Type, found.ID, k.Type, k.ID)
	}
	digest := sha256.Sum256([]byte("found"))
	sig, err := tok2.Pool().Sign(ctx, found, digest[:], crypto.SHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatal("the found key's signature does not verify under the generated key's public key")
	}
	if _, err := tok2.Pool().FindKey(ctx, confLabel("absent")); !errors.Is(err, pkcs11shim.ErrKeyNotFound) {
		t.Fatalf("unknown label: got %v, want ErrKeyNotFound", err)
	}
}

// confDuplicateLabel: a second key with a label in use is refused.
func confDuplicateLabel(t *testing.T, m *confModule) {
	tok := confMustOpen(t, m)
	ctx := context.Background()
	label := confLabel("twice")
	confGenerate(t, tok, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: label})
	if _, err := tok.Pool().GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyRSA2048, Label: label}); !errors.Is(err, pkcs11shim.ErrDuplicateLabel) {
		t.Fatalf("duplicate label: got %v, want ErrDuplicateLabel", err)
	}
}

// confDestroyKey: a destroyed key is gone for a fresh pool, and a stale
// handle elsewhere fails cleanly with ErrKeyNotFound (R-TOK-7).
func confDestroyKey(t *testing.T, m *confModule) {
	tok := confMustOpen(t, m)
	ctx := context.Background()
	label := confLabel("doomed")
	k, err := tok.Pool().GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: label})
	if err != nil {
		t.Fatal(err)
	}
	tok2 := confMustOpen(t, m)
	found, err := tok2.Pool().FindKey(ctx, label)
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Pool().DestroyKey(ctx, k); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	if _, err := tok.Pool().FindKey(ctx, label); !errors.Is(err, pkcs11shim.ErrKeyNotFound) {
		t.Fatalf("after destroy: got %v, want ErrKeyNotFound", err)
	}
	if _, err := confMustOpen(t, m).Pool().FindKey(ctx, label); !errors.Is(err, pkcs11shim.ErrKeyNotFound) {
		t.Fatalf("after destroy, fresh pool: got %v, want ErrKeyNotFound", err)
	}
	digest := sha256.Sum256([]byte("x"))
	if _, err := tok2.Pool().Sign(ctx, found, digest[:], crypto.SHA256, nil); !errors.Is(err, pkcs11shim.ErrKeyNotFound) {
		t.Fatalf("sign with a destroyed key's stale handle: got %v, want ErrKeyNotFound", err)
	}
}

// confRecovery: C_Finalize under a working pool (a client library restart);
// the pool re-initialises the module, finds the token and the key again,
// logs in through the guard, and signs.
func confRecovery(t *testing.T, m *confModule) {
	tok := confMustOpen(t, m)
	ctx := context.Background()
	k := confGenerate(t, tok, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: confLabel("phoenix")})
	pub, err := tok.Pool().PublicKey(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("after restart"))
	gen := m.mod.Generation()
	time.Sleep(m.mod.MinReinitInterval + 20*time.Millisecond) // outside an earlier re-initialisation's rate limit
	if err := m.mod.Finalize(); err != nil {
		t.Fatal(err)
	}
	var sig []byte
	deadline := time.Now().Add(15 * time.Second)
	for {
		sig, err = tok.Pool().Sign(ctx, k, digest[:], crypto.SHA256, nil)
		if err == nil {
			break
		}
		if !errors.Is(err, pkcs11shim.ErrTokenNotPresent) && !errors.Is(err, pkcs11shim.ErrSessionClosed) {
			t.Fatalf("during recovery: untyped error %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery within 15 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m.mod.Generation() == gen {
		t.Fatal("the module was not re-initialised")
	}
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatal("signature after recovery does not verify under the key's public key")
	}
	if st, _ := tok.PINState(); st.Failures != 0 || st.Locked {
		t.Fatalf("re-login after recovery: guard %+v", st)
	}
}

// confAESGCM: AES-256-GCM with AAD round-trips in the token; a wrong AAD
// is the vague ErrDecrypt.
func confAESGCM(t *testing.T, m *confModule) {
	tok := confMustOpen(t, m)
	ctx := context.Background()
	k := confGenerate(t, tok, pkcs11shim.KeySpec{Type: pkcs11shim.KeyAES256, Label: confLabel("data-key")})
	pt, aad := []byte("card 6222020012345678"), []byte("customer=42")
	sealed, err := tok.Pool().EncryptGCM(ctx, k, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tok.Pool().DecryptGCM(ctx, k, sealed, aad); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := tok.Pool().DecryptGCM(ctx, k, sealed, []byte("customer=43")); !errors.Is(err, pkcs11shim.ErrDecrypt) {
		t.Fatalf("wrong AAD: got %v, want ErrDecrypt", err)
	}
}

// confKeyWrap: an extractable session key is wrapped under a token KEK,
// unwrapped as a session key, and signs under the original public key.
func confKeyWrap(t *testing.T, m *confModule) {
	tok := confMustOpen(t, m)
	ctx := context.Background()
	kek := confGenerate(t, tok, pkcs11shim.KeySpec{Type: pkcs11shim.KeyAES256, Label: confLabel("kek"), Usage: pkcs11shim.UsageWrap})
	var blob []byte
	var pub *ecdsa.PublicKey
	err := tok.Pool().WithSession(ctx, func(s *pkcs11shim.Session) error {
		k, err := s.GenerateKey(pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: "customer", Session: true, Extractable: true})
		if err != nil {
			return err
		}
		defer s.DestroyKey(k)
		p, err := s.PublicKey(k)
		if err != nil {
			return err
		}
		pub = p.(*ecdsa.PublicKey)
		blob, err = s.WrapKey(kek, k)
		return err
	})
	if err != nil {
		t.Fatalf("generate and wrap: %v", err)
	}
	digest := sha256.Sum256([]byte("wrapped"))
	var sig []byte
	err = tok.Pool().WithSession(ctx, func(s *pkcs11shim.Session) error {
		k, err := s.UnwrapKey(kek, blob, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: "customer", Session: true})
		if err != nil {
			return err
		}
		defer s.DestroyKey(k)
		sig, err = s.Sign(k, digest[:], crypto.SHA256, nil)
		return err
	})
	if err != nil {
		t.Fatalf("unwrap and sign: %v", err)
	}
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatal("the unwrapped key's signature does not verify")
	}
}

// confHMAC: HMAC-SHA256 in the token is deterministic and keyed.
func confHMAC(t *testing.T, m *confModule) {
	tok := confMustOpen(t, m)
	ctx := context.Background()
	k := confGenerate(t, tok, pkcs11shim.KeySpec{Type: pkcs11shim.KeyGenericSecret, Label: confLabel("mac")})
	a, err := tok.Pool().HMAC(ctx, k, []byte("482913"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := tok.Pool().HMAC(ctx, k, []byte("482913"))
	c, _ := tok.Pool().HMAC(ctx, k, []byte("482914"))
	unkeyed := sha256.Sum256([]byte("482913"))
	if len(a) != 32 || !bytes.Equal(a, b) || bytes.Equal(a, c) || bytes.Equal(a, unkeyed[:]) {
		t.Fatalf("HMAC: %x %x %x", a, b, c)
	}
}

// confEdDSA: Keyward has no EdDSA key type yet; a module declaring EdDSA
// must at least list the mechanisms (checked in confMechanisms too), so the
// day Keyward adds Ed25519 the suite knows where it must work.
func confEdDSA(t *testing.T, m *confModule) {
	tok := confMustOpen(t, m)
	mechs, err := tok.Pool().Mechanisms()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mech := range mechs {
		if mech.Type == confCKMEdDSA || mech.Type == confCKMECEdwardsKeyPairGen {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("EdDSA declared but %d of CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA listed", n)
	}
}

// confInitToken: a token made through C_InitToken and C_InitPIN (as a
// ceremony does) logs in and makes keys. On a module whose tokens share a
// serial, Keyward then refuses to pick one by serial alone.
func confInitToken(t *testing.T, m *confModule) {
	label := confLabel("kw-init")
	ti, err := m.mod.InitToken("", []byte(m.so), label)
	if err != nil {
		t.Fatalf("InitToken: %v", err)
	}
	if err := m.mod.InitPIN(pkcs11shim.Selector{Label: label}, []byte(m.so), []byte(m.user)); err != nil {
		t.Fatalf("InitPIN: %v", err)
	}
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "g.db"), 0)
	tok, err := confOpenLabel(t, m, label, g, &switchablePIN{pin: m.user})
	if err != nil {
		t.Fatalf("open the new token: %v", err)
	}
	if _, err := tok.Pool().GenerateKey(context.Background(), pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: "first"}); err != nil {
		t.Fatalf("key on the new token: %v", err)
	}
	if !m.caps.UniqueSerial {
		if _, err := m.mod.FindToken(pkcs11shim.Selector{Serial: ti.Serial}); !errors.Is(err, pkcs11shim.ErrTokenAmbiguous) {
			t.Fatalf("two tokens with serial %q: got %v, want ErrTokenAmbiguous", ti.Serial, err)
		}
	}
}

// confGenerate makes a key on tok for this test, destroyed at cleanup.
func confGenerate(t *testing.T, tok *token.Token, ks pkcs11shim.KeySpec) *pkcs11shim.Key {
	t.Helper()
	ctx := context.Background()
	k, err := tok.Pool().GenerateKey(ctx, ks)
	if err != nil {
		t.Fatalf("generate %v %s: %v", ks.Type, ks.Label, err)
	}
	t.Cleanup(func() { tok.Pool().DestroyKey(ctx, k) })
	return k
}
