package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// Issue 13 defect 1, end to end through the ceremony binary on SoftHSM2:
// keys generated with backup: true are backed up only under the SO's
// trusted KEK (both SO PIN parts), restore round-trips into keys that are
// neither extractable, copyable nor destroyable with the user PIN, and a
// key made extractable before this fix (no CKA_WRAP_WITH_TRUSTED) is
// refused by name. The raw PKCS#11 attacks are in pkcs11shim/trusted_test.go.

func TestTrustedBackup(t *testing.T) {
	setup(t)
	ctx := context.Background()
	src := initToken(t, "trust")
	kf, kout := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": src})
	mustRun(t, []string{"keygen"}, kf, kout)
	pubPEM, err := os.ReadFile(filepath.Join(kout, "receipt-signer.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pubPEM)
	origPub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	srcPool := testPool(t, src, userPIN)
	info := srcPool.Info()
	kekSrc, err := srcPool.FindKey(ctx, "bank-kek")
	if err != nil {
		t.Fatal(err)
	}
	// usage: [wrap, encrypt] is exactly that: no decrypt, no unwrap.
	srcUsage, err := srcPool.KeyUsage(ctx, kekSrc)
	if err != nil {
		t.Fatal(err)
	}
	if want := pkcs11shim.UsageWrap | pkcs11shim.UsageEncrypt | pkcs11shim.UsageExact; srcUsage != want {
		t.Fatalf("bank-kek asked for [wrap, encrypt] has usage %b, want %b", srcUsage, want)
	}
	// A ceremony key cannot be destroyed with the user PIN.
	if err := srcPool.DestroyKey(ctx, kekSrc); err == nil {
		t.Fatal("a keygen key was destroyed with the user PIN")
	}
	srcPool.Close() // this process's login would not disturb the binary's, but keep the token to the ceremony

	keys := map[string]string{"LABEL": src, "KEYS": "receipt-signer, bank-kek"}
	// One SO part: a configuration error, nothing done.
	one, oneOut := ceremonyFile(t, "backup.yaml", keys)
	raw, _ := os.ReadFile(one)
	cut := strings.Replace(string(raw), "  - {officer: Bob Lee, pin: \"file:"+pinDir+"/so-part2\"}\n", "", 1)
	if cut == string(raw) {
		t.Fatal("backup.yaml: second so_pin part not found")
	}
	os.WriteFile(one, []byte(cut), 0o600)
	if r := runBin(t, "backup", "-f", one); r.code != exitUsage || !strings.Contains(r.stderr, "so_pin: needs exactly two parts held by two different officers") {
		t.Fatalf("backup with one SO part: want exit 2 naming so_pin; %v", r)
	}
	if _, err := os.Stat(filepath.Join(oneOut, "share-1.txt")); err == nil {
		t.Fatal("a refused backup wrote a share")
	}

	// A wrong SO part: refused by the token, counted on the SO counter, nothing written.
	soID := token.PINID(info, pkcs11shim.UserSO)
	guard, err := token.NewGuard(token.FileStore{Path: guardPath}, 0)
	if err != nil {
		t.Fatal(err)
	}
	wf, wout := ceremonyFile(t, "backup.yaml", keys)
	raw, _ = os.ReadFile(wf)
	os.WriteFile(wf, bytes.Replace(raw, []byte("/so-part2"), []byte("/wrong-part"), 1), 0o600)
	if r := runApproved(t, []string{"backup"}, wf); r.code != exitFailed || !strings.Contains(r.stderr, "SO login") || !strings.Contains(r.stderr, "left before") {
		t.Fatalf("backup with a wrong SO part: want exit 1, SO login refused and counted; %v", r)
	}
	if st, _ := guard.State(soID); st.Failures != 1 {
		t.Fatalf("a wrong SO part in backup: SO counter %+v, want 1 failure", st)
	}
	if _, err := os.Stat(filepath.Join(wout, "backup.json")); err == nil {
		t.Fatal("a backup with a wrong SO part wrote its file")
	}

	// Both parts: the backup is made, and the SO counter is reset.
	bf, bout := ceremonyFile(t, "backup.yaml", keys)
	r := mustRun(t, []string{"backup"}, bf, bout)
	if !strings.Contains(r.stdout, "trusted") {
		t.Fatalf("the backup's steps do not mention the trusted KEK: %v", r)
	}
	if st, _ := guard.State(soID); st != (token.PINState{}) {
		t.Fatalf("after the right SO PIN the SO counter is %+v", st)
	}

	// Restore on a DR token: round trip, and the restored keys are locked down.
	dr := initToken(t, "trust-dr")
	shares := strings.Join([]string{filepath.Join(bout, "share-2.txt"), filepath.Join(bout, "share-4.txt"), filepath.Join(bout, "share-5.txt")}, ", ")
	rf, rout := ceremonyFile(t, "restore.yaml", map[string]string{"LABEL": dr, "BACKUP": filepath.Join(bout, "backup.json"), "SHARES": shares})
	mustRun(t, []string{"restore"}, rf, rout)
	p := testPool(t, dr, userPIN)
	k, err := p.FindKey(ctx, "receipt-signer")
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("trusted restore"))
	sig, err := p.Sign(ctx, k, d[:], crypto.SHA256, nil)
	if err != nil || !ecdsa.VerifyASN1(origPub.(*ecdsa.PublicKey), d[:], sig) {
		t.Fatalf("restored receipt-signer does not sign as the original: %v", err)
	}
	kek, err := p.FindKey(ctx, "bank-kek")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []*pkcs11shim.Key{k, kek} {
		wp, err := p.KeyWrapPolicy(ctx, key)
		if err != nil || wp.Extractable {
			t.Fatalf("restored %s: %+v %v; want not extractable", key.Label, wp, err)
		}
		if err := p.DestroyKey(ctx, key); err == nil {
			t.Fatalf("restored %s was destroyed with the user PIN", key.Label)
		}
	}
	if u, err := p.KeyUsage(ctx, kek); err != nil || u != srcUsage {
		t.Fatalf("restored bank-kek usage %b (%v), the original's %b", u, err, srcUsage)
	}
	p.Close()

	// A key made extractable before this fix: the same keys with
	// CKA_WRAP_WITH_TRUSTED false, as main's keygen made them. SoftHSM
	// offers no way to clear the flag (it is read-only once true, and
	// the keys are not modifiable), so the test edits the token's files.
	if n := clearWrapWithTrusted(t, src); n != 2 {
		t.Fatalf("cleared CKA_WRAP_WITH_TRUSTED on %d objects, want 2 (receipt-signer, bank-kek)", n)
	}
	lf, lout := ceremonyFile(t, "backup.yaml", keys)
	lr := runApproved(t, []string{"backup"}, lf)
	if lr.code != exitFailed {
		t.Fatalf("backup of keys without CKA_WRAP_WITH_TRUSTED: want exit 1; %v", lr)
	}
	for _, want := range []string{"key receipt-signer cannot be backed up", "key bank-kek cannot be backed up", "without CKA_WRAP_WITH_TRUSTED", "generate a replacement", "nothing was wrapped"} {
		if !strings.Contains(lr.stderr, want) {
			t.Fatalf("backup of keys without CKA_WRAP_WITH_TRUSTED: stderr lacks %q; %v", want, lr)
		}
	}
	if _, err := os.Stat(filepath.Join(lout, "backup.json")); err == nil {
		t.Fatal("the refused backup wrote its file")
	}
	if st, _ := guard.State(soID); st != (token.PINState{}) {
		t.Fatalf("the refused backup tried the SO PIN: %+v", st)
	}
}

// clearWrapWithTrusted rewrites, in SoftHSM2's file object store, every
// object of the token labelled label whose CKA_WRAP_WITH_TRUSTED is true
// to false, and returns how many. The store keeps each boolean attribute
// as type (8 bytes, big-endian), kind 1 (8 bytes), then 0xFF or 0x00;
// booleans are not encrypted even in private objects.
func clearWrapWithTrusted(t *testing.T, label string) int {
	t.Helper()
	tokenDirs, err := filepath.Glob(filepath.Join(confDir, "tokens", "*"))
	if err != nil {
		t.Fatal(err)
	}
	on := []byte{0, 0, 0, 0, 0, 0, 0x02, 0x10, 0, 0, 0, 0, 0, 0, 0, 1, 0xFF}
	n := 0
	for _, dir := range tokenDirs {
		tok, err := os.ReadFile(filepath.Join(dir, "token.object"))
		if err != nil || !bytes.Contains(tok, []byte(label)) {
			continue
		}
		objs, _ := filepath.Glob(filepath.Join(dir, "*.object"))
		for _, f := range objs {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			i := bytes.Index(data, on)
			if i < 0 {
				continue
			}
			data[i+len(on)-1] = 0
			if err := os.WriteFile(f, data, 0o600); err != nil {
				t.Fatal(err)
			}
			n++
		}
		return n
	}
	t.Fatal(errors.New("token directory of " + label + " not found"))
	return 0
}
