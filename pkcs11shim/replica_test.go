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
		m, sel := freshToken(t)
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

// freshToken makes a token (C_InitToken, C_InitPIN) with no pool on it.
func freshToken(t *testing.T) (*Module, Selector) {
	t.Helper()
	m, err := OpenModule(softhsm(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	b := make([]byte, 4)
	rand.Read(b)
	ti, err := m.InitToken("", []byte(trustedSOPIN), "replica-"+hex.EncodeToString(b))
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
