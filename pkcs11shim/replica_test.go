package pkcs11shim

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/miekg/pkcs11"
)

// Issue 15 items 4 and 5 on a real SoftHSM2 (no fakes): hsm keys copied
// between tokens under the officers' replication key. The attack tests make
// raw PKCS#11 calls with the user PIN only, as an attacker holding it would.

// replicaPair makes two fresh tokens, installs the replication key made from
// value in both (as the SO, before any user pool exists), and returns a user
// pool on each and the check values InstallReplicationKey gave.
func replicaPair(t *testing.T, valueA, valueB []byte) (pa, pb *Pool, checkA, checkB []byte) {
	t.Helper()
	so := func(login LoginFunc) error { return login([]byte(trustedSOPIN)) }
	install := func(value []byte) (*Pool, []byte) {
		m, sel := freshToken(t, "replica-")
		check, err := m.InstallReplicationKey(sel, value, so)
		if err != nil {
			t.Fatalf("install the replication key: %v", err)
		}
		return userPool(t, m, sel), check
	}
	pa, checkA = install(valueA)
	pb, checkB = install(valueB)
	return pa, pb, checkA, checkB
}

// freshToken makes a token labelled prefix and 8 random hex digits
// (C_InitToken, C_InitPIN) with no pool on it.
func freshToken(t *testing.T, prefix string) (*Module, Selector) {
	t.Helper()
	m, err := OpenModule(softhsm(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	b := make([]byte, 4)
	rand.Read(b)
	ti, err := m.InitToken("", []byte(trustedSOPIN), prefix+hex.EncodeToString(b))
	if err != nil {
		t.Fatal(err)
	}
	sel := Selector{Label: ti.Label, Serial: ti.Serial}
	if err := m.InitPIN(sel, []byte(trustedSOPIN), []byte(trustedUserPIN)); err != nil {
		t.Fatal(err)
	}
	return m, sel
}

func randomKey(t *testing.T) []byte {
	t.Helper()
	v := make([]byte, 32)
	if _, err := rand.Read(v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestReplicaCopiesKeys: an EC P-256 signing key, an RSA-2048 key (sign and
// decrypt) and an AES-256 key generated replicable in token A are exported
// under A's replication key and imported into B under B's (same value). B's
// copies sign what A's public key verifies, decrypt A's RSA-OAEP and
// AES-GCM ciphertexts, and have the attributes of A's.
func TestReplicaCopiesKeys(t *testing.T) {
	value := randomKey(t)
	pa, pb, checkA, checkB := replicaPair(t, value, value)
	ctx := context.Background()
	if !bytes.Equal(checkA, checkB) || len(checkA) == 0 {
		t.Fatalf("check values of the same replication key differ: %x %x", checkA, checkB)
	}
	for _, p := range []*Pool{pa, pb} {
		rk, err := p.ReplicationKey(ctx)
		if err != nil {
			t.Fatalf("ReplicationKey as the user: %v", err)
		}
		method, cv, err := p.CheckValue(ctx, rk)
		if err != nil || method != CheckAESKWPFixed || !bytes.Equal(cv, checkA) {
			t.Fatalf("Pool.CheckValue of the replication key: %s %x %v, want %s %x", method, cv, err, CheckAESKWPFixed, checkA)
		}
	}
	for _, tc := range []struct {
		ks  KeySpec
		use func(t *testing.T, a, b *Key)
	}{
		{KeySpec{Type: KeyECP256, Label: "cloud-ec"}, func(t *testing.T, a, b *Key) {
			d := sha256.Sum256([]byte("transfer 100 CNY"))
			sig, err := pb.Sign(ctx, b, d[:], crypto.SHA256, nil)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := pa.PublicKey(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig) {
				t.Fatal("B's copy signs, A's public key does not verify it")
			}
			if err := pb.Verify(ctx, b, d[:], sig, crypto.SHA256); err != nil {
				t.Fatalf("B's imported public half: %v", err)
			}
		}},
		{KeySpec{Type: KeyRSA2048, Label: "cloud-rsa", Usage: UsageSign | UsageEncrypt}, func(t *testing.T, a, b *Key) {
			d := sha256.Sum256([]byte("statement"))
			sig, err := pb.Sign(ctx, b, d[:], crypto.SHA256, nil)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := pa.PublicKey(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			if err := rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, d[:], sig); err != nil {
				t.Fatalf("B's RSA signature under A's public key: %v", err)
			}
			ct, err := pa.EncryptOAEP(ctx, a, crypto.SHA1, nil, []byte("id card 110101"))
			if err != nil {
				t.Fatal(err)
			}
			pt, err := pb.DecryptOAEP(ctx, b, crypto.SHA1, nil, ct, nil)
			if err != nil || string(pt) != "id card 110101" {
				t.Fatalf("B decrypts A's OAEP ciphertext: %q %v", pt, err)
			}
		}},
		{KeySpec{Type: KeyAES256, Label: "pii-aes", Usage: UsageEncrypt}, func(t *testing.T, a, b *Key) {
			ct, err := pa.EncryptGCM(ctx, a, []byte("6222 0000 1111 2222"), []byte("aad"))
			if err != nil {
				t.Fatal(err)
			}
			pt, err := pb.DecryptGCM(ctx, b, ct, []byte("aad"))
			if err != nil || string(pt) != "6222 0000 1111 2222" {
				t.Fatalf("B decrypts A's GCM ciphertext: %q %v", pt, err)
			}
			ma, va, err := pa.CheckValue(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			mb, vb, err := pb.CheckValue(ctx, b)
			if err != nil || ma != mb || !bytes.Equal(va, vb) {
				t.Fatalf("check values of the AES key and its copy: %s %x / %s %x %v", ma, va, mb, vb, err)
			}
		}},
	} {
		t.Run(tc.ks.Type.String(), func(t *testing.T) {
			tc.ks.Extractable = true // what keysvc's hsm keys are: CKA_WRAP_WITH_TRUSTED comes with it
			a, err := pa.GenerateKey(ctx, tc.ks)
			if err != nil {
				t.Fatal(err)
			}
			r, err := pa.ExportReplica(ctx, a)
			if err != nil {
				t.Fatalf("ExportReplica: %v", err)
			}
			if r.Label != a.Label || !bytes.Equal(r.ID, a.ID) || r.Type != a.Type || len(r.Blob) == 0 {
				t.Fatalf("replica %+v of %s", r, a.Label)
			}
			b, err := pb.ImportReplica(ctx, r)
			if err != nil {
				t.Fatalf("ImportReplica: %v", err)
			}
			tc.use(t, a, b)
			// B finds it by label like any key, with A's CKA_ID and usage.
			pb2, err := pb.FindKey(ctx, tc.ks.Label)
			if err != nil || pb2.Type != a.Type || !bytes.Equal(pb2.ID, a.ID) {
				t.Fatalf("FindKey on B: %+v %v", pb2, err)
			}
			ua, err := pa.KeyUsage(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			ub, err := pb.KeyUsage(ctx, b)
			if err != nil || ua != ub {
				t.Fatalf("usage on A %b, on B %b (%v)", ua, ub, err)
			}
			assertAttrs(t, pb, b, map[uint]bool{
				pkcs11.CKA_TOKEN: true, pkcs11.CKA_PRIVATE: true, pkcs11.CKA_SENSITIVE: true, pkcs11.CKA_EXTRACTABLE: true,
				pkcs11.CKA_WRAP_WITH_TRUSTED: true, pkcs11.CKA_MODIFIABLE: false, pkcs11.CKA_COPYABLE: false, pkcs11.CKA_DERIVE: false,
				pkcs11.CKA_DESTROYABLE: true, pkcs11.CKA_ALWAYS_SENSITIVE: false, pkcs11.CKA_NEVER_EXTRACTABLE: false, pkcs11.CKA_LOCAL: false,
			})
			// A copy replicates on: B → a third label is refused as a duplicate on A.
			if _, err := pa.ImportReplica(ctx, r); !errors.Is(err, ErrDuplicateLabel) {
				t.Fatalf("importing into the token that has the label: %v, want ErrDuplicateLabel", err)
			}
			if _, err := pb.ExportReplica(ctx, b); err != nil {
				t.Fatalf("a copy replicates again: %v", err)
			}
		})
	}
}

// assertAttrs checks boolean attributes of k's private or secret object.
func assertAttrs(t *testing.T, p *Pool, k *Key, want map[uint]bool) {
	t.Helper()
	err := p.WithKey(context.Background(), k, func(s *Session) error {
		priv, _, err := s.handles(k)
		if err != nil {
			return err
		}
		for attr, v := range want {
			a, err := s.ctx.GetAttributeValue(s.h, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(attr, nil)})
			if err != nil || len(a[0].Value) != 1 || (a[0].Value[0] == 1) != v {
				t.Errorf("%s: attribute 0x%x = %v (%v), want %v", k.Label, attr, a, err, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// replicaAttack sets up the attacks: tokens A and B with the same
// replication key, a replicable EC key on A exported (the blob), and a raw
// session on B logged in with the user PIN only, with the handle of B's
// replication key.
type replicaAttack struct {
	s    *Session
	c    *pkcs11.Ctx
	h    pkcs11.SessionHandle
	rk   pkcs11.ObjectHandle
	r    Replica // EC P-256, sign
	aes  Replica // AES-256, encrypt
	pb   *Pool
	orig *Key // the EC key on A
	pa   *Pool
}

func newReplicaAttack(t *testing.T, fn func(a *replicaAttack)) {
	t.Helper()
	value := randomKey(t)
	pa, pb, _, _ := replicaPair(t, value, value)
	ctx := context.Background()
	k, err := pa.GenerateKey(ctx, KeySpec{Type: KeyECP256, Label: "receipt-signer", Extractable: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := pa.ExportReplica(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := pa.GenerateKey(ctx, KeySpec{Type: KeyAES256, Label: "pii", Usage: UsageEncrypt, Extractable: true})
	if err != nil {
		t.Fatal(err)
	}
	ar, err := pa.ExportReplica(ctx, ak)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := pb.ReplicationKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = pb.WithKey(ctx, rk, func(s *Session) error {
		w, _, err := s.handles(rk)
		if err != nil {
			return err
		}
		fn(&replicaAttack{s: s, c: s.ctx.(*pkcs11.Ctx), h: s.h, rk: w, r: r, aes: ar, pb: pb, orig: k, pa: pa})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// template is ImportReplica's own template for r under label.
func (a *replicaAttack) template(r Replica, label string) []*pkcs11.Attribute {
	return replicaTemplate(KeySpec{Type: r.Type, Label: label, ID: r.ID, Usage: r.Usage, Extractable: true})
}

// with returns tmpl with attribute typ set to v (replaced in place), or
// removed when v is nil.
func with(tmpl []*pkcs11.Attribute, typ uint, v any) []*pkcs11.Attribute {
	var out []*pkcs11.Attribute
	for _, x := range tmpl {
		if x.Type != typ {
			out = append(out, x)
		} else if v != nil {
			out = append(out, pkcs11.NewAttribute(typ, v))
		}
	}
	return out
}

// unwrap unwraps blob under B's replication key with tmpl.
func (a *replicaAttack) unwrap(blob []byte, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	return a.c.UnwrapKey(a.h, aesWrapPad, a.rk, blob, tmpl)
}

// TestReplicaAttacks: what a user-PIN holder tries with the replication key
// and the replica blobs, each refused by SoftHSM2 itself (raw calls; the
// package's own code is not in the way). The control at the top shows the
// same call with ImportReplica's template succeeds, so each refusal is the
// token's answer to the one attribute changed.
func TestReplicaAttacks(t *testing.T) {
	newReplicaAttack(t, func(a *replicaAttack) {
		ok, err := a.unwrap(a.r.Blob, a.template(a.r, "control"))
		if err != nil {
			t.Fatalf("control: the blob under ImportReplica's template: %v", err)
		}
		if err := a.c.DestroyObject(a.h, ok); err != nil {
			t.Fatal(err)
		}
		base := a.template(a.r, "attack")

		// 1. The issue 13 attack: unwrap the replica as a readable key.
		_, err = a.unwrap(a.r.Blob, with(base, pkcs11.CKA_SENSITIVE, false))
		wantCKR(t, "C_UnwrapKey with CKA_SENSITIVE=false", err, pkcs11.CKR_TEMPLATE_INCONSISTENT)
		// 2. Extractable under any key: CKA_WRAP_WITH_TRUSTED=false.
		_, err = a.unwrap(a.r.Blob, with(with(base, pkcs11.CKA_EXTRACTABLE, true), pkcs11.CKA_WRAP_WITH_TRUSTED, false))
		wantCKR(t, "C_UnwrapKey with CKA_EXTRACTABLE=true, CKA_WRAP_WITH_TRUSTED=false", err, pkcs11.CKR_TEMPLATE_INCONSISTENT)
		// 3. Each pinned attribute left out (defaults: not sensitive,
		// extractable with no trusted restriction, modifiable, copyable, a
		// session object), or given the other value.
		for _, attr := range []uint{pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_WRAP_WITH_TRUSTED, pkcs11.CKA_DERIVE, pkcs11.CKA_MODIFIABLE, pkcs11.CKA_COPYABLE, pkcs11.CKA_TOKEN} {
			_, err = a.unwrap(a.r.Blob, with(base, attr, nil))
			wantCKR(t, "C_UnwrapKey without attribute "+attrName(attr), err, pkcs11.CKR_TEMPLATE_INCONSISTENT)
			var flipped bool
			for _, x := range base {
				if x.Type == attr {
					flipped = x.Value[0] == 0
				}
			}
			_, err = a.unwrap(a.r.Blob, with(base, attr, flipped))
			wantCKR(t, "C_UnwrapKey with attribute "+attrName(attr)+" flipped", err, pkcs11.CKR_TEMPLATE_INCONSISTENT)
		}
		_, err = a.unwrap(a.r.Blob, with(base, pkcs11.CKA_PRIVATE, false))
		wantCKR(t, "C_UnwrapKey with CKA_PRIVATE=false", err, pkcs11.CKR_TEMPLATE_INCONSISTENT)
		// 4. A pinned attribute twice, the second time loosened (in case the
		// last one won).
		_, err = a.unwrap(a.r.Blob, append(base, pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false)))
		wantCKR(t, "C_UnwrapKey with CKA_SENSITIVE true then false", err, pkcs11.CKR_TEMPLATE_INCONSISTENT)
		// 5. The AES replica as a key that derives (CKM_AES_ECB_ENCRYPT_DATA
		// into a readable key would be an encryption oracle of chosen data).
		_, err = a.unwrap(a.aes.Blob, with(a.template(a.aes, "derive"), pkcs11.CKA_DERIVE, true))
		wantCKR(t, "C_UnwrapKey of the AES replica with CKA_DERIVE=true", err, pkcs11.CKR_TEMPLATE_INCONSISTENT)

		// 6. Wrap a replicable key under a key the user made (known value).
		own := importKnownAES(t, a.s, bytes.Repeat([]byte{0x42}, 32))
		copyH, err := a.unwrap(a.r.Blob, a.template(a.r, "copy"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.c.WrapKey(a.h, aesWrapPad, own, copyH)
		wantCKR(t, "C_WrapKey of a replica under the user's own AES key", err, pkcs11.CKR_KEY_NOT_WRAPPABLE)
		// 7. The user makes a trusted key of their own.
		_, err = a.s.createObject([]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_TRUSTED, true),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true), pkcs11.NewAttribute(pkcs11.CKA_VALUE, bytes.Repeat([]byte{7}, 32)),
		})
		wantCKR(t, "C_CreateObject of a CKA_TRUSTED key by the user", err, pkcs11.CKR_ATTRIBUTE_READ_ONLY)
		// 8. Change, copy or destroy the replication key.
		for _, attr := range []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, "not-replication"),
		} {
			err = a.c.SetAttributeValue(a.h, a.rk, []*pkcs11.Attribute{attr})
			wantCKR(t, "C_SetAttributeValue("+attrName(attr.Type)+") on the replication key", err, pkcs11.CKR_ACTION_PROHIBITED)
		}
		for _, tmpl := range [][]*pkcs11.Attribute{{pkcs11.NewAttribute(pkcs11.CKA_LABEL, "copy")}, {pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true)}, {pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false)}} {
			_, err = a.c.CopyObject(a.h, a.rk, tmpl)
			wantCKR(t, "C_CopyObject of the replication key", err, pkcs11.CKR_ACTION_PROHIBITED)
		}
		err = a.c.DestroyObject(a.h, a.rk)
		wantCKR(t, "C_DestroyObject of the replication key by the user", err, pkcs11.CKR_ACTION_PROHIBITED)
		// 9. Use it as a cipher, or with another mechanism.
		err = a.c.EncryptInit(a.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}, a.rk)
		wantCKR(t, "C_EncryptInit with the replication key", err, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED)
		err = a.c.DecryptInit(a.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}, a.rk)
		wantCKR(t, "C_DecryptInit with the replication key", err, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED)
		_, err = a.c.WrapKey(a.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)}, a.rk, copyH)
		wantCKR(t, "C_WrapKey with the replication key and CKM_AES_KEY_WRAP", err, pkcs11.CKR_MECHANISM_INVALID)
		// 10. Read a value.
		for what, o := range map[string]pkcs11.ObjectHandle{"an imported copy": copyH, "the replication key": a.rk} {
			_, err = a.c.GetAttributeValue(a.h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
			wantCKR(t, "C_GetAttributeValue(CKA_VALUE) of "+what, err, pkcs11.CKR_ATTRIBUTE_SENSITIVE)
		}
		// 11. Loosen or copy the copy.
		for _, attr := range []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false), pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, false)} {
			err = a.c.SetAttributeValue(a.h, copyH, []*pkcs11.Attribute{attr})
			wantCKR(t, "C_SetAttributeValue("+attrName(attr.Type)+") on an imported copy", err, pkcs11.CKR_ACTION_PROHIBITED)
		}
		_, err = a.c.CopyObject(a.h, copyH, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, false)})
		wantCKR(t, "C_CopyObject of an imported copy", err, pkcs11.CKR_ACTION_PROHIBITED)
		// 12. A changed blob does not unwrap: the token checks RFC 5649's
		// integrity value (SoftHSM2 2.6.1 answers CKR_GENERAL_ERROR;
		// ImportReplica reports ErrDecrypt).
		forged := make([]byte, len(a.r.Blob))
		copy(forged, a.r.Blob)
		forged[len(forged)-1] ^= 1
		_, err = a.unwrap(forged, a.template(a.r, "forged"))
		wantCKR(t, "C_UnwrapKey of a modified blob", err, pkcs11.CKR_GENERAL_ERROR)
	})
}

// attrName names the attributes these tests use.
func attrName(a uint) string {
	names := map[uint]string{pkcs11.CKA_SENSITIVE: "CKA_SENSITIVE", pkcs11.CKA_EXTRACTABLE: "CKA_EXTRACTABLE", pkcs11.CKA_WRAP_WITH_TRUSTED: "CKA_WRAP_WITH_TRUSTED",
		pkcs11.CKA_DERIVE: "CKA_DERIVE", pkcs11.CKA_MODIFIABLE: "CKA_MODIFIABLE", pkcs11.CKA_COPYABLE: "CKA_COPYABLE", pkcs11.CKA_TOKEN: "CKA_TOKEN",
		pkcs11.CKA_PRIVATE: "CKA_PRIVATE", pkcs11.CKA_ENCRYPT: "CKA_ENCRYPT", pkcs11.CKA_DECRYPT: "CKA_DECRYPT", pkcs11.CKA_LABEL: "CKA_LABEL"}
	if n, ok := names[a]; ok {
		return n
	}
	return "0x" + hex.EncodeToString([]byte{byte(a >> 8), byte(a)})
}

// TestReplicaWhatSoftHSMAllows states, by doing it, what SoftHSM2 2.6.1
// does NOT stop under the replication key: the unwrap template pins
// attributes, not the key's class, type or usage, and CKA_PRIVATE may be
// left out (SoftHSM defaults it to true before comparing). Each result is
// then shown not to give the key in clear: its value is unreadable, it
// wraps out under no key the user has (nor under itself), and it cannot be
// changed or copied into a key that could.
func TestReplicaWhatSoftHSMAllows(t *testing.T) {
	newReplicaAttack(t, func(a *replicaAttack) {
		own := importKnownAES(t, a.s, bytes.Repeat([]byte{0x42}, 32))
		notInClear := func(what string, o pkcs11.ObjectHandle) {
			t.Helper()
			_, err := a.c.GetAttributeValue(a.h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
			wantCKR(t, what+": C_GetAttributeValue(CKA_VALUE)", err, pkcs11.CKR_ATTRIBUTE_SENSITIVE)
			_, err = a.c.WrapKey(a.h, aesWrapPad, own, o)
			wantCKR(t, what+": C_WrapKey under the user's own key", err, pkcs11.CKR_KEY_NOT_WRAPPABLE)
			_, err = a.c.CopyObject(a.h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false)})
			wantCKR(t, what+": C_CopyObject", err, pkcs11.CKR_ACTION_PROHIBITED)
			err = a.c.SetAttributeValue(a.h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false)})
			wantCKR(t, what+": C_SetAttributeValue(CKA_SENSITIVE=false)", err, pkcs11.CKR_ACTION_PROHIBITED)
		}
		pinned := func(label string, extra ...*pkcs11.Attribute) []*pkcs11.Attribute {
			tmpl := []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
				pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, true), pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
				pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false),
			}
			return append(append(tmpl, extra...), pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false))
		}

		// Allowed 1: the EC private key's blob (its PKCS#8 encoding) as a
		// generic secret that may HMAC: an HMAC oracle keyed with those bytes.
		gs, err := a.unwrap(a.r.Blob, pinned("as-generic-secret",
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true)))
		if err != nil {
			t.Fatalf("SoftHSM2 2.6.1 was expected to allow unwrapping the EC blob as a generic secret (not pinned): %v", err)
		}
		if err := a.c.SignInit(a.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_HMAC, nil)}, gs); err != nil {
			t.Fatalf("HMAC with the EC blob unwrapped as a generic secret: %v", err)
		}
		if mac, err := a.c.Sign(a.h, []byte("chosen")); err != nil || len(mac) != 32 {
			t.Fatalf("HMAC: %x %v", mac, err)
		}
		notInClear("the EC blob as a generic secret", gs)

		// Allowed 2: the encrypt-only AES replica with CKA_WRAP, CKA_UNWRAP
		// and CKA_SIGN, uses the original does not have.
		wide, err := a.unwrap(a.aes.Blob, pinned("as-wrapping-key",
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_WRAP, true), pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true)))
		if err != nil {
			t.Fatalf("SoftHSM2 2.6.1 was expected to allow more usage than the original's (not pinned): %v", err)
		}
		notInClear("the AES replica with wrap and unwrap", wide)
		// It wraps neither itself nor another copy out: they are
		// trusted-only and it is not trusted (only the SO makes those).
		_, err = a.c.WrapKey(a.h, aesWrapPad, wide, wide)
		wantCKR(t, "C_WrapKey of the widened copy under itself", err, pkcs11.CKR_KEY_NOT_WRAPPABLE)
		// What it can wrap is a key the user already knows.
		knownX, err := a.s.createObject([]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, bytes.Repeat([]byte{0x43}, 32))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.c.WrapKey(a.h, aesWrapPad, wide, knownX); err != nil {
			t.Fatalf("the widened copy wrapping the user's own key: %v", err)
		}

		// Allowed 3: CKA_PRIVATE left out. SoftHSM2 takes CKA_TOKEN and
		// CKA_PRIVATE out of the caller's template with the defaults false
		// and true, so the copy is private all the same.
		noPriv := with(a.template(a.r, "no-private"), pkcs11.CKA_PRIVATE, nil)
		np, err := a.unwrap(a.r.Blob, noPriv)
		if err != nil {
			t.Fatalf("SoftHSM2 2.6.1 was expected to allow CKA_PRIVATE left out: %v", err)
		}
		pv, err := a.c.GetAttributeValue(a.h, np, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil)})
		if err != nil || pv[0].Value[0] != 1 {
			t.Fatalf("the copy made without CKA_PRIVATE in the template: CKA_PRIVATE %v %v, want true", pv, err)
		}
		notInClear("a copy made without CKA_PRIVATE", np)

		// Allowed 4: any user-PIN holder wraps a replicable key under the
		// replication key (that is the export), and a key they know (that
		// is how its check value is made). Neither blob unwraps into a
		// readable key anywhere (TestReplicaAttacks).
		copyH, err := a.unwrap(a.r.Blob, a.template(a.r, "copy"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.c.WrapKey(a.h, aesWrapPad, a.rk, copyH); err != nil {
			t.Fatalf("wrap a copy under the replication key: %v", err)
		}
		if _, err := a.c.WrapKey(a.h, aesWrapPad, a.rk, knownX); err != nil {
			t.Fatalf("wrap the user's own key under the replication key: %v", err)
		}
	})
}

// TestReplicationKeyInstall: the SO's install refuses a logged-in
// application before any PIN, a second replication key, a value of the
// wrong length and a wrong SO PIN; check values tell two replication keys
// apart; a blob made under another replication key is ErrDecrypt; export
// refuses keys that are not replicable, and a key labelled
// keysvc-replication that the user made is not taken for the real one.
func TestReplicationKeyInstall(t *testing.T) {
	ctx := context.Background()
	var calls int
	so := func(login LoginFunc) error { calls++; return login([]byte(trustedSOPIN)) }
	m, sel := freshToken(t, "replica-")
	if _, err := m.InstallReplicationKey(sel, make([]byte, 16), so); !errors.Is(err, ErrInputInvalid) || calls != 0 {
		t.Fatalf("a 16-byte value: %v (SO logins %d), want ErrInputInvalid before any login", err, calls)
	}
	p := userPool(t, m, sel)
	// No replication key yet.
	if _, err := p.ReplicationKey(ctx); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("ReplicationKey on a token without one: %v, want ErrKeyNotFound", err)
	}
	k, err := p.GenerateKey(ctx, KeySpec{Type: KeyECP256, Label: "hsm-key", Extractable: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ExportReplica(ctx, k); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("ExportReplica without a replication key: %v, want ErrKeyNotFound", err)
	}
	// KeySpec{Extractable: true} on a token key is what makes it replicable.
	assertAttrs(t, p, k, map[uint]bool{pkcs11.CKA_EXTRACTABLE: true, pkcs11.CKA_WRAP_WITH_TRUSTED: true, pkcs11.CKA_SENSITIVE: true})
	if _, err := m.InstallReplicationKey(sel, randomKey(t), so); !errors.Is(err, ErrLoggedIn) || calls != 0 {
		t.Fatalf("with a pool logged in: %v (SO logins %d), want ErrLoggedIn before any login", err, calls)
	}
	p.Close()
	bad := func(login LoginFunc) error { return login([]byte("wrong-SO-PIN-1")) }
	if _, err := m.InstallReplicationKey(sel, randomKey(t), bad); !errors.Is(err, ErrPINIncorrect) {
		t.Fatalf("wrong SO PIN: %v", err)
	}
	value := randomKey(t)
	check, err := m.InstallReplicationKey(sel, value, so)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.InstallReplicationKey(sel, value, so); !errors.Is(err, ErrDuplicateLabel) {
		t.Fatalf("a second replication key: %v, want ErrDuplicateLabel", err)
	}
	// Another token with another value: another check value, and its blobs
	// do not unwrap here.
	m2, sel2 := freshToken(t, "replica-")
	check2, err := m2.InstallReplicationKey(sel2, randomKey(t), so)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(check, check2) {
		t.Fatal("two different replication keys have the same check value")
	}
	p = userPool(t, m, sel)
	p2 := userPool(t, m2, sel2)
	k, err = p.FindKey(ctx, "hsm-key")
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.ExportReplica(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p2.ImportReplica(ctx, r); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("a blob from another replication key: %v, want ErrDecrypt", err)
	}
	if _, err := p2.FindKey(ctx, "hsm-key"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("after a failed import: %v, want nothing left (ErrKeyNotFound)", err)
	}
	// Keys that are not replicable.
	fixed, err := p.GenerateKey(ctx, KeySpec{Type: KeyAES256, Label: "fixed"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ExportReplica(ctx, fixed); !errors.Is(err, ErrKeyUnextractable) {
		t.Fatalf("a non-extractable key: %v, want ErrKeyUnextractable", err)
	}
	old := KeySpec{Type: KeyAES256, Label: "old-extractable", Extractable: true}
	_, tmpl, mech := old.templates([]byte("old"))
	if err := p.WithSession(ctx, func(s *Session) error {
		_, err := s.ctx.GenerateKey(s.h, []*pkcs11.Mechanism{mech}, with(tmpl, pkcs11.CKA_WRAP_WITH_TRUSTED, nil))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ok, err := p.FindKey(ctx, "old-extractable")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ExportReplica(ctx, ok); !errors.Is(err, ErrNotTrustedOnly) {
		t.Fatalf("an extractable key without CKA_WRAP_WITH_TRUSTED: %v, want ErrNotTrustedOnly", err)
	}
	// A replica whose public half is another key's is refused, and leaves nothing behind.
	other, err := p.GenerateKey(ctx, KeySpec{Type: KeyECP256, Label: "other-key"})
	if err != nil {
		t.Fatal(err)
	}
	otherPub, err := p.PublicKey(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	m4, sel4 := freshToken(t, "replica-")
	if _, err := m4.InstallReplicationKey(sel4, value, so); err != nil {
		t.Fatal(err)
	}
	p4 := userPool(t, m4, sel4)
	swapped := r
	swapped.Public = otherPub
	if _, err := p4.ImportReplica(ctx, swapped); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("a replica with another key's public half: %v, want ErrKeyMismatch", err)
	}
	if objs, err := p4.ListTokenObjects(ctx); err != nil || len(objs) != 1 {
		t.Fatalf("after the refused import: %v %v, want only the replication key", objs, err)
	}
	if _, err := p4.ImportReplica(ctx, r); err != nil {
		t.Fatalf("the right replica after a refused one: %v", err)
	}
	// A replica with a missing part is refused before the token is asked.
	if _, err := p2.ImportReplica(ctx, Replica{Label: "x", ID: []byte{1}, Type: KeyECP256, Usage: UsageSign, Blob: r.Blob}); !errors.Is(err, ErrInputInvalid) {
		t.Fatalf("a pair's replica without its public key: %v, want ErrInputInvalid", err)
	}
	// A user's own key labelled keysvc-replication, on a token without the
	// real one: not trusted, so not used.
	m3, sel3 := freshToken(t, "replica-")
	p3 := userPool(t, m3, sel3)
	if err := p3.WithSession(ctx, func(s *Session) error {
		_, err := s.createObject([]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_LABEL, ReplicationKeyLabel),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true), pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, value)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := p3.ReplicationKey(ctx); !errors.Is(err, ErrUntrustedReplicationKey) {
		t.Fatalf("a user-made key labelled %s: %v, want ErrUntrustedReplicationKey", ReplicationKeyLabel, err)
	}
	if _, err := p3.ImportReplica(ctx, r); !errors.Is(err, ErrUntrustedReplicationKey) {
		t.Fatalf("ImportReplica under a user-made key: %v, want ErrUntrustedReplicationKey", err)
	}
	// A private key with the label beside the real one (the SO could not
	// see it at install): a new pool's lookup finds two and refuses.
	if err := p.WithSession(ctx, func(s *Session) error {
		_, err := s.createObject([]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true), pkcs11.NewAttribute(pkcs11.CKA_LABEL, ReplicationKeyLabel),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true), pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true), pkcs11.NewAttribute(pkcs11.CKA_VALUE, value)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := userPool(t, m, sel).ReplicationKey(ctx); !errors.Is(err, ErrDuplicateLabel) {
		t.Fatalf("two keys labelled %s: %v, want ErrDuplicateLabel", ReplicationKeyLabel, err)
	}
}

// BenchmarkReplicaCopy: one key copied from token A to token B (export,
// import with its checks, then destroyed on B so the label is free again),
// per key type, on SoftHSM2. Figures, not assertions.
func BenchmarkReplicaCopy(b *testing.B) {
	for _, kt := range []KeyType{KeyECP256, KeyRSA2048, KeyAES256} {
		b.Run(kt.String(), func(b *testing.B) {
			value := make([]byte, 32)
			rand.Read(value)
			pa, pb := benchPair(b, value)
			ctx := context.Background()
			k, err := pa.GenerateKey(ctx, KeySpec{Type: kt, Label: "bench-" + kt.String(), Extractable: true})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r, err := pa.ExportReplica(ctx, k)
				if err != nil {
					b.Fatal(err)
				}
				c, err := pb.ImportReplica(ctx, r)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := pb.DestroyKey(ctx, c); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

func benchPair(b *testing.B, value []byte) (*Pool, *Pool) {
	b.Helper()
	var pools []*Pool
	for i := 0; i < 2; i++ {
		m, err := OpenModule(softhsm(b))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		id := make([]byte, 4)
		rand.Read(id)
		ti, err := m.InitToken("", []byte(trustedSOPIN), "bench-"+hex.EncodeToString(id))
		if err != nil {
			b.Fatal(err)
		}
		sel := Selector{Label: ti.Label, Serial: ti.Serial}
		if err := m.InitPIN(sel, []byte(trustedSOPIN), []byte(trustedUserPIN)); err != nil {
			b.Fatal(err)
		}
		if _, err := m.InstallReplicationKey(sel, value, func(login LoginFunc) error { return login([]byte(trustedSOPIN)) }); err != nil {
			b.Fatal(err)
		}
		p, err := NewPool(context.Background(), m, PoolConfig{Selector: sel, MaxSessions: 2,
			Authenticate: func(_ context.Context, login LoginFunc) error { return login([]byte(trustedUserPIN)) }})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close() })
		pools = append(pools, p)
	}
	return pools[0], pools[1]
}
