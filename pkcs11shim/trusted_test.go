package pkcs11shim

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"
)

// Issue 13 defect 1 on a real SoftHSM2 (no fakes): keys made with
// `backup: true` leave the token only under the SO's trusted, wrap-only
// KEK. The tests make raw PKCS#11 calls as an attacker holding the user
// PIN would, which only this package can (it is the only importer of
// miekg/pkcs11). They open SoftHSM with their own SOFTHSM2_CONF; without
// SoftHSM they skip, under CI=true they fail.

const (
	trustedSOPIN   = "so-Trusted-4711"
	trustedUserPIN = "Us#8462!kq"
)

var (
	softhsmOnce sync.Once
	softhsmLib  string
	softhsmErr  error
)

// softhsm returns the SoftHSM2 library with SOFTHSM2_CONF pointing at a
// token directory of this test binary (set before the first C_Initialize).
func softhsm(t testing.TB) string {
	t.Helper()
	softhsmOnce.Do(func() {
		lib := os.Getenv("KEYWARD_PKCS11_MODULE")
		if lib == "" {
			for _, p := range []string{"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so", "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"} {
				if _, err := os.Stat(p); err == nil {
					lib = p
					break
				}
			}
		}
		if lib == "" {
			softhsmErr = errors.New("SoftHSM2 not found: install it with apt-get install -y softhsm2")
			return
		}
		dir, err := os.MkdirTemp("", "pkcs11shim-trusted-")
		if err != nil {
			softhsmErr = err
			return
		}
		tokens := filepath.Join(dir, "tokens")
		conf := filepath.Join(dir, "softhsm2.conf")
		body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
		softhsmErr = errors.Join(os.Mkdir(tokens, 0o700), os.WriteFile(conf, []byte(body), 0o600), os.Setenv("SOFTHSM2_CONF", conf))
		softhsmLib = lib
	})
	if softhsmErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("SoftHSM2 is required under CI=true: %v", softhsmErr)
		}
		t.Skip(softhsmErr)
	}
	return softhsmLib
}

// trustedToken makes a fresh token (C_InitToken, C_InitPIN) and returns the
// module, its selector and a user pool on it.
func trustedToken(t *testing.T) (*Module, Selector, *Pool) {
	t.Helper()
	m, sel := freshToken(t, "trusted-")
	return m, sel, userPool(t, m, sel)
}

func userPool(t *testing.T, m *Module, sel Selector) *Pool {
	t.Helper()
	p, err := NewPool(context.Background(), m, PoolConfig{Selector: sel, MaxSessions: 2,
		Authenticate: func(_ context.Context, login LoginFunc) error { return login([]byte(trustedUserPIN)) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// raw is the module's binding, for the calls PKCtx leaves out on purpose
// (C_SetAttributeValue, C_CopyObject).
func raw(t *testing.T, m *Module) *pkcs11.Ctx {
	t.Helper()
	c, ok := m.ctx.(*pkcs11.Ctx)
	if !ok {
		t.Fatal("module is not a real *pkcs11.Ctx")
	}
	return c
}

// wantCKR fails unless err carries the PKCS#11 code want.
func wantCKR(t *testing.T, what string, err error, want uint) {
	t.Helper()
	code, ok := ckrCode(err)
	if !ok || code != want {
		t.Errorf("%s: got %v, want %s (refused)", what, err, pkcs11.Error(want))
	}
}

var aesWrapPad = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}

// importKnownAES creates, as the logged-in user, an AES key whose value
// the attacker knows, as a session object that may wrap and unwrap.
func importKnownAES(t *testing.T, s *Session, value []byte) pkcs11.ObjectHandle {
	t.Helper()
	h, err := s.createObject([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, value),
	})
	if err != nil {
		t.Fatalf("import a known AES key as the user: %v", err)
	}
	return h
}

// TestTrustedAttackKnownKEK is attack 1 of issue 13: a user-PIN holder
// imports an AES key they know as a session object and wraps a `backup:
// true` key under it. On main (CKA_EXTRACTABLE=true, CKA_WRAP_WITH_TRUSTED
// false) C_WrapKey succeeds, and the blob unwraps with the known key
// outside the token (RFC 5649; checked with openssl during the
// walk-through): the key in clear. Now the token refuses with
// CKR_KEY_NOT_WRAPPABLE, for every key type. A key without
// CKA_WRAP_WITH_TRUSTED (keysvc's wrapped-model session keys) still wraps,
// which shows the attack itself works here.
func TestTrustedAttackKnownKEK(t *testing.T) {
	_, _, p := trustedToken(t)
	ctx := context.Background()
	known := bytes.Repeat([]byte{0x42}, 32)
	for _, kt := range []KeyType{KeyECP256, KeyAES256, KeyRSA2048, KeyGenericSecret} {
		t.Run(kt.String(), func(t *testing.T) {
			k, err := p.GenerateKey(ctx, KeySpec{Type: kt, Label: "backup-able-" + kt.String(), Extractable: true, Undestroyable: true})
			if err != nil {
				t.Fatal(err)
			}
			err = p.WithSession(ctx, func(s *Session) error {
				kek := importKnownAES(t, s, known)
				defer s.ctx.DestroyObject(s.h, kek)
				priv, _, err := s.handles(k)
				if err != nil {
					return err
				}
				blob, err := s.ctx.WrapKey(s.h, aesWrapPad, kek, priv)
				wantCKR(t, "C_WrapKey of a backup-able key under a user's known AES key", err, pkcs11.CKR_KEY_NOT_WRAPPABLE)
				if err == nil {
					t.Errorf("the key left the token under a known key: %d-byte blob", len(blob))
				}
				// Control: the same attack on a key without CKA_WRAP_WITH_TRUSTED succeeds.
				sk, err := s.GenerateKey(KeySpec{Type: kt, Label: "control", Session: true, Extractable: true})
				if err != nil {
					return err
				}
				defer s.DestroyKey(sk)
				if _, err := s.ctx.WrapKey(s.h, aesWrapPad, kek, sk.priv); err != nil {
					t.Errorf("control: a key without CKA_WRAP_WITH_TRUSTED does not wrap either (%v): the test proves nothing", err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTrustedKEKAttacks is attack 2 of issue 13: while the SO's trusted
// KEK exists, the user-PIN holder wraps the backup-able key under it
// (allowed: that is the backup) and tries to bring the blob back into the
// token in clear-readable form, or to make the KEK or the key do more.
// Every step must be refused by the token itself.
func TestTrustedKEKAttacks(t *testing.T) {
	m, sel, p := trustedToken(t)
	ctx := context.Background()
	k, err := p.GenerateKey(ctx, KeySpec{Type: KeyECP256, Label: "receipt-signer", Extractable: true, Undestroyable: true})
	if err != nil {
		t.Fatal(err)
	}
	kekValue := make([]byte, 32)
	rand.Read(kekValue)
	c := raw(t, m)
	ti, err := m.FindToken(sel)
	if err != nil {
		t.Fatal(err)
	}
	p.Close() // the SO logs in below: no user login of this application may remain
	h, err := c.OpenSession(ti.SlotID, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseSession(h)
	s := &Session{ctx: c, h: h, slot: ti.SlotID, gen: m.Generation(), epoch: ^uint64(0)}
	if err := c.Login(h, pkcs11.CKU_SO, trustedSOPIN); err != nil {
		t.Fatal(err)
	}
	// An SO session makes public objects only (so the KEK is CKA_PRIVATE=false).
	_, err = s.createObject([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, bytes.Repeat([]byte{5}, 32))})
	wantCKR(t, "C_CreateObject of a private session key by the SO", err, pkcs11.CKR_USER_NOT_LOGGED_IN)
	w, err := s.createTrustedKEK(kekValue)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Logout(h); err != nil {
		t.Fatal(err)
	}
	if err := c.Login(h, pkcs11.CKU_USER, trustedUserPIN); err != nil {
		t.Fatal(err)
	}
	if err := s.refind(k, true); err != nil {
		t.Fatal(err)
	}
	// A private session object the user makes dies at C_Logout (checked at the end).
	private, err := s.createObject([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, bytes.Repeat([]byte{6}, 32))})
	if err != nil {
		t.Fatal(err)
	}

	// The KEK survived C_Logout (public session object) and is what the SO made.
	a, err := c.GetAttributeValue(h, w, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TRUSTED, nil), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil)})
	if err != nil || a[0].Value[0] != 1 || a[1].Value[0] != 0 {
		t.Fatalf("the trusted KEK after the SO's logout: %v %v", a, err)
	}

	// Allowed: the backup itself.
	blob, err := c.WrapKey(h, aesWrapPad, w, k.priv)
	if err != nil {
		t.Fatalf("C_WrapKey under the trusted KEK (the backup): %v", err)
	}

	// 1. Unwrap the blob with the trusted KEK as a readable key.
	_, err = c.UnwrapKey(h, aesWrapPad, w, blob, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	})
	wantCKR(t, "C_UnwrapKey of the blob with the trusted KEK, CKA_SENSITIVE=false", err, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED)
	// 2. Give the KEK CKA_UNWRAP.
	err = c.SetAttributeValue(h, w, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true)})
	wantCKR(t, "C_SetAttributeValue(CKA_UNWRAP=true) on the trusted KEK", err, pkcs11.CKR_ACTION_PROHIBITED)
	// 3. Copy the KEK into one with CKA_UNWRAP.
	_, err = c.CopyObject(h, w, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true)})
	wantCKR(t, "C_CopyObject of the trusted KEK with CKA_UNWRAP=true", err, pkcs11.CKR_ACTION_PROHIBITED)
	// 4. Make a trusted key of one's own, as the user.
	_, err = s.createObject([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_TRUSTED, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, bytes.Repeat([]byte{7}, 32)),
	})
	wantCKR(t, "C_CreateObject of an AES key with CKA_TRUSTED=true by the user", err, pkcs11.CKR_ATTRIBUTE_READ_ONLY)
	_, err = c.GenerateKey(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TRUSTED, true), pkcs11.NewAttribute(pkcs11.CKA_WRAP, true)})
	wantCKR(t, "C_GenerateKey of an AES key with CKA_TRUSTED=true by the user", err, pkcs11.CKR_ATTRIBUTE_READ_ONLY)
	// 5. Loosen the backup-able key.
	for _, attr := range []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
	} {
		err = c.SetAttributeValue(h, k.priv, []*pkcs11.Attribute{attr})
		wantCKR(t, fmt.Sprintf("C_SetAttributeValue(0x%x) on the backup-able key", attr.Type), err, pkcs11.CKR_ACTION_PROHIBITED)
	}
	// 6. Copy the backup-able key (into one without CKA_WRAP_WITH_TRUSTED, or as is).
	for _, tmpl := range [][]*pkcs11.Attribute{{pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, false)}, {pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false)}} {
		_, err = c.CopyObject(h, k.priv, tmpl)
		wantCKR(t, "C_CopyObject of the backup-able key", err, pkcs11.CKR_ACTION_PROHIBITED)
	}
	// 7. Destroy a ceremony key with the user PIN.
	err = c.DestroyObject(h, k.priv)
	wantCKR(t, "C_DestroyObject of a ceremony key by the user", err, pkcs11.CKR_ACTION_PROHIBITED)
	err = c.DestroyObject(h, k.pub)
	wantCKR(t, "C_DestroyObject of a ceremony key's public half by the user", err, pkcs11.CKR_ACTION_PROHIBITED)
	// 8. Use the trusted KEK as a cipher (an encryption oracle under the backup key).
	err = c.EncryptInit(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}, w)
	wantCKR(t, "C_EncryptInit with the trusted KEK", err, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED)
	err = c.DecryptInit(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}, w)
	wantCKR(t, "C_DecryptInit with the trusted KEK", err, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED)

	// 9. Wrap with another mechanism than the backup's (CKA_ALLOWED_MECHANISMS).
	_, err = c.WrapKey(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)}, w, k.priv)
	wantCKR(t, "C_WrapKey with the trusted KEK and CKM_AES_KEY_WRAP", err, pkcs11.CKR_MECHANISM_INVALID)

	// The blob is the real backup: the restore side's unwrap-only KEK
	// (user-made, not trusted) brings the key back, not extractable.
	err = c.DestroyObject(h, w)
	if err != nil {
		t.Fatalf("destroy the trusted KEK: %v", err)
	}
	rk := restoreCheck(t, s, kekValue, blob)
	dig := sha256.Sum256([]byte("trusted"))
	sig, err := s.Sign(rk, dig[:], crypto.SHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := s.PublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), dig[:], sig) {
		t.Fatal("the key unwrapped from the backup blob does not sign as the original")
	}
	if err := c.Logout(h); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetAttributeValue(h, private, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil)})
	wantCKR(t, "a private session object after C_Logout", err, pkcs11.CKR_OBJECT_HANDLE_INVALID)
}

// restoreCheck unwraps blob under an unwrap-only KEK made from kekValue
// (the restore side) and checks that KEK refuses to wrap or to gain
// CKA_WRAP, and that the restored key is neither extractable nor copyable
// nor destroyable.
func restoreCheck(t *testing.T, s *Session, kekValue, blob []byte) *Key {
	t.Helper()
	kek, err := s.ImportUnwrapKEK(kekValue, "restore-kek")
	if err != nil {
		t.Fatal(err)
	}
	rk, err := s.UnwrapKey(kek, blob, KeySpec{Type: KeyECP256, Label: "restored-" + hex.EncodeToString(kekValue[:4]), Session: true, Undestroyable: true})
	if err != nil {
		t.Fatalf("unwrap on the restore side: %v", err)
	}
	c := s.ctx.(*pkcs11.Ctx)
	err = c.SetAttributeValue(s.h, kek.priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_WRAP, true)})
	wantCKR(t, "C_SetAttributeValue(CKA_WRAP=true) on the restore KEK", err, pkcs11.CKR_ACTION_PROHIBITED)
	_, err = c.CopyObject(s.h, kek.priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_WRAP, true)})
	wantCKR(t, "C_CopyObject of the restore KEK", err, pkcs11.CKR_ACTION_PROHIBITED)
	own := importKnownAES(t, s, bytes.Repeat([]byte{9}, 32))
	_, err = c.WrapKey(s.h, aesWrapPad, kek.priv, own)
	wantCKR(t, "C_WrapKey with the unwrap-only restore KEK", err, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED)
	_, err = c.WrapKey(s.h, aesWrapPad, own, rk.priv)
	wantCKR(t, "C_WrapKey of the restored key", err, pkcs11.CKR_KEY_UNEXTRACTABLE)
	_, err = c.CopyObject(s.h, rk.priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false)})
	wantCKR(t, "C_CopyObject of the restored key", err, pkcs11.CKR_ACTION_PROHIBITED)
	err = c.DestroyObject(s.h, rk.priv)
	wantCKR(t, "C_DestroyObject of the restored key", err, pkcs11.CKR_ACTION_PROHIBITED)
	return rk
}

// TestWrapUnderTrustedKEK runs the backup flow: SO login, trusted KEK,
// user login, wrap, KEK destroyed; the blobs restore under an unwrap-only
// KEK. It refuses a key made before issue 13 (extractable, no
// CKA_WRAP_WITH_TRUSTED) and a non-extractable one by name, and refuses to
// try the SO PIN while a pool of the application is logged in.
func TestWrapUnderTrustedKEK(t *testing.T) {
	m, sel, p := trustedToken(t)
	ctx := context.Background()
	if _, err := p.GenerateKey(ctx, KeySpec{Type: KeyECP256, Label: "signer", Extractable: true, Undestroyable: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GenerateKey(ctx, KeySpec{Type: KeyAES256, Label: "fixed", Undestroyable: true}); err != nil {
		t.Fatal(err)
	}
	// A key as main made it: extractable, without CKA_WRAP_WITH_TRUSTED.
	old := KeySpec{Type: KeyAES256, Label: "old-backupable", Extractable: true}
	_, tmpl, mech := old.templates([]byte("old"))
	var oldT []*pkcs11.Attribute
	for _, a := range tmpl {
		if a.Type != pkcs11.CKA_WRAP_WITH_TRUSTED {
			oldT = append(oldT, a)
		}
	}
	if err := p.WithSession(ctx, func(s *Session) error {
		_, err := s.ctx.GenerateKey(s.h, []*pkcs11.Mechanism{mech}, oldT)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	kek := make([]byte, 32)
	rand.Read(kek)
	var calls []string
	so := func(login LoginFunc) error { calls = append(calls, "so"); return login([]byte(trustedSOPIN)) }
	user := func(login LoginFunc) error { calls = append(calls, "user"); return login([]byte(trustedUserPIN)) }

	// The pool is logged in: no SO PIN is tried.
	if _, err := m.WrapUnderTrustedKEK(sel, kek, []string{"signer"}, so, user); !errors.Is(err, ErrLoggedIn) || len(calls) != 0 {
		t.Fatalf("with a pool logged in: %v, logins %v; want ErrLoggedIn and none", err, calls)
	}
	p.Close()
	if _, err := m.WrapUnderTrustedKEK(sel, kek, []string{"signer", "old-backupable"}, so, user); !errors.Is(err, ErrNotTrustedOnly) {
		t.Fatalf("a key without CKA_WRAP_WITH_TRUSTED: %v, want ErrNotTrustedOnly", err)
	}
	if _, err := m.WrapUnderTrustedKEK(sel, kek, []string{"fixed"}, so, user); !errors.Is(err, ErrKeyUnextractable) {
		t.Fatalf("a non-extractable key: %v, want ErrKeyUnextractable", err)
	}
	wrapped, err := m.WrapUnderTrustedKEK(sel, kek, []string{"signer"}, so, user)
	if err != nil || len(wrapped) != 1 || wrapped[0].Label != "signer" {
		t.Fatalf("backup flow: %v %+v", err, wrapped)
	}
	// The KEK is gone and nobody is logged in any more.
	p2 := userPool(t, m, sel)
	err = p2.WithSession(ctx, func(s *Session) error {
		n, err := s.countObjects([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, TrustedKEKLabel)})
		if n != 0 {
			t.Errorf("%d trusted KEKs left after the flow", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sk, err := p2.FindKey(ctx, "signer")
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.WithSession(ctx, func(s *Session) error {
		rk := restoreCheck(t, s, kek, wrapped[0].Blob)
		d := sha256.Sum256([]byte("flow"))
		sig, err := s.Sign(rk, d[:], crypto.SHA256, nil)
		if err != nil {
			return err
		}
		pub, err := s.PublicKey(sk)
		if err != nil {
			return err
		}
		if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig) {
			t.Error("restored key does not sign as the original")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A wrong SO PIN stops before the KEK exists; the user PIN is not tried.
	calls = nil
	p2.Close()
	bad := func(login LoginFunc) error { calls = append(calls, "so"); return login([]byte("wrong-SO-PIN-1")) }
	if _, err := m.WrapUnderTrustedKEK(sel, kek, []string{"signer"}, bad, user); !errors.Is(err, ErrPINIncorrect) || len(calls) != 1 {
		t.Fatalf("wrong SO PIN: %v, logins %v", err, calls)
	}
}

// TestKeyUsageExact: every usage attribute is what was asked for, with
// SoftHSM2's permissive defaults (CKA_DECRYPT, CKA_UNWRAP, CKA_SIGN_RECOVER
// on private keys, CKA_SIGN/CKA_VERIFY on AES) turned off, and keysvc's
// non-exact bits keep their meaning.
func TestKeyUsageExact(t *testing.T) {
	_, _, p := trustedToken(t)
	ctx := context.Background()
	for _, tc := range []struct {
		ks   KeySpec
		want map[uint]bool // on the private or secret object
		pub  map[uint]bool
	}{
		{KeySpec{Type: KeyECP256}, map[uint]bool{pkcs11.CKA_SIGN: true, pkcs11.CKA_DECRYPT: false, pkcs11.CKA_UNWRAP: false, pkcs11.CKA_SIGN_RECOVER: false, pkcs11.CKA_DERIVE: false, pkcs11.CKA_COPYABLE: false, pkcs11.CKA_DESTROYABLE: true},
			map[uint]bool{pkcs11.CKA_VERIFY: true, pkcs11.CKA_ENCRYPT: false, pkcs11.CKA_WRAP: false, pkcs11.CKA_VERIFY_RECOVER: false, pkcs11.CKA_DERIVE: false}},
		{KeySpec{Type: KeyAES256, Usage: UsageWrap | UsageEncrypt | UsageExact, Undestroyable: true}, map[uint]bool{pkcs11.CKA_WRAP: true, pkcs11.CKA_ENCRYPT: true, pkcs11.CKA_DECRYPT: false, pkcs11.CKA_UNWRAP: false, pkcs11.CKA_SIGN: false, pkcs11.CKA_VERIFY: false, pkcs11.CKA_DESTROYABLE: false, pkcs11.CKA_WRAP_WITH_TRUSTED: false}, nil},
		{KeySpec{Type: KeyAES256, Usage: UsageEncrypt}, map[uint]bool{pkcs11.CKA_ENCRYPT: true, pkcs11.CKA_DECRYPT: true, pkcs11.CKA_WRAP: false, pkcs11.CKA_UNWRAP: false, pkcs11.CKA_SIGN: false, pkcs11.CKA_VERIFY: false}, nil},
		{KeySpec{Type: KeyAES256, Usage: UsageWrap, Extractable: true}, map[uint]bool{pkcs11.CKA_WRAP: true, pkcs11.CKA_UNWRAP: true, pkcs11.CKA_ENCRYPT: false, pkcs11.CKA_DECRYPT: false, pkcs11.CKA_WRAP_WITH_TRUSTED: true, pkcs11.CKA_EXTRACTABLE: true}, nil},
		{KeySpec{Type: KeyRSA2048, Usage: UsageDecrypt | UsageEncrypt | UsageExact}, map[uint]bool{pkcs11.CKA_SIGN: false, pkcs11.CKA_DECRYPT: true, pkcs11.CKA_UNWRAP: false, pkcs11.CKA_SIGN_RECOVER: false},
			map[uint]bool{pkcs11.CKA_VERIFY: false, pkcs11.CKA_ENCRYPT: true, pkcs11.CKA_WRAP: false}},
		{KeySpec{Type: KeyGenericSecret}, map[uint]bool{pkcs11.CKA_SIGN: true, pkcs11.CKA_VERIFY: true, pkcs11.CKA_ENCRYPT: false, pkcs11.CKA_DECRYPT: false, pkcs11.CKA_WRAP: false, pkcs11.CKA_UNWRAP: false}, nil},
	} {
		tc.ks.Label = fmt.Sprintf("usage-%v-%x", tc.ks.Type, uint(tc.ks.Usage))
		k, err := p.GenerateKey(ctx, tc.ks)
		if err != nil {
			t.Fatalf("%s: %v", tc.ks.Label, err)
		}
		err = p.WithSession(ctx, func(s *Session) error {
			priv, pub, err := s.handles(k)
			if err != nil {
				return err
			}
			check := func(what string, o pkcs11.ObjectHandle, want map[uint]bool) {
				for attr, v := range want {
					a, err := s.ctx.GetAttributeValue(s.h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(attr, nil)})
					if err != nil || len(a[0].Value) != 1 || (a[0].Value[0] == 1) != v {
						t.Errorf("%s %s: attribute 0x%x = %v (%v), want %v", tc.ks.Label, what, attr, a, err, v)
					}
				}
			}
			check("private/secret", priv, tc.want)
			check("public", pub, tc.pub)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		u, err := p.KeyUsage(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if !u.Has(tc.ks.usage()) || !tc.ks.usage().Has(u) {
			t.Errorf("%s: KeyUsage %b, asked %b", tc.ks.Label, u, tc.ks.usage())
		}
	}
}
