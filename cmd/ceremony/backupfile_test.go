package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
)

// Issue 13 defect 5: an edited backup file restored receipt-signer as
// payments-root-signer with every check passing, and share headers
// (custodian, share number) were outside the checksum.

// backupFixture is one backup made by the binary: the file, its five
// shares (Carol, Dave, Erin, Frank, Grace) and its parsed contents.
type backupFixture struct {
	file   string
	shares []string
	bf     backupFile
}

func makeBackup(t *testing.T) backupFixture {
	t.Helper()
	src := initToken(t, "bfsrc")
	kf, kout := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": src})
	mustRun(t, []string{"keygen"}, kf, kout)
	bf, bout := ceremonyFile(t, "backup.yaml", map[string]string{"LABEL": src, "KEYS": "receipt-signer, bank-kek"})
	mustRun(t, []string{"backup"}, bf, bout)
	fx := backupFixture{file: filepath.Join(bout, "backup.json")}
	for i := 1; i <= 5; i++ {
		fx.shares = append(fx.shares, filepath.Join(bout, fmt.Sprintf("share-%d.txt", i)))
	}
	raw, _ := os.ReadFile(fx.file)
	if err := json.Unmarshal(raw, &fx.bf); err != nil {
		t.Fatal(err)
	}
	if fx.bf.Format != "keyward.ceremony.backup.v2" || fx.bf.MAC == "" {
		t.Fatalf("backup file is not v2 with a MAC: %s", raw)
	}
	return fx
}

// restoreOn restores backup with shares into a fresh DR token; extra is
// appended to the restore file.
func restoreOn(t *testing.T, backup string, shares []string, extra string) (result, string, string) {
	t.Helper()
	dr := initToken(t, "bfdr")
	rf, rout := ceremonyFile(t, "restore.yaml", map[string]string{"LABEL": dr, "BACKUP": backup, "SHARES": strings.Join(shares, ", ")})
	if extra != "" {
		raw, _ := os.ReadFile(rf)
		os.WriteFile(rf, append(raw, extra...), 0o600)
	}
	return runApproved(t, []string{"restore"}, rf), dr, rout
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustUntouched(t *testing.T, what, dr string) {
	t.Helper()
	if objs, err := testPool(t, dr, userPIN).ListTokenObjects(context.Background()); err != nil || len(withoutRoster(objs)) != 2 { // ceremony-audit pair (and the officer roster) only
		t.Fatalf("%s: DR token changed: %v %v", what, objs, err)
	}
}

// withoutRoster drops the officer roster (token init enrols it) from objs.
func withoutRoster(objs []pkcs11shim.ObjectInfo) []pkcs11shim.ObjectInfo {
	var out []pkcs11shim.ObjectInfo
	for _, o := range objs {
		if !strings.HasPrefix(o.Label, "officer:") {
			out = append(out, o)
		}
	}
	return out
}

func TestBackupFileAuthenticated(t *testing.T) {
	setup(t)
	fx := makeBackup(t)
	raw, _ := os.ReadFile(fx.file)
	three := fx.shares[:3]

	// A good restore names whose shares were used.
	r, _, rout := restoreOn(t, fx.file, three, "")
	if r.code != 0 {
		t.Fatalf("restore: %v", r)
	}
	md, _ := os.ReadFile(filepath.Join(rout, "transcript", "transcript.md"))
	for _, want := range []string{"share 1 of 5 held by Carol", "share 2 of 5 held by Dave", "share 3 of 5 held by Erin", "MAC"} {
		if !strings.Contains(string(md), want) {
			t.Fatalf("restore transcript does not say %q:\n%s", want, md)
		}
	}

	// Edited backup files: refused after the KEK is rebuilt, before the DR token changes.
	relabelled := bytes.Replace(raw, []byte(`"label": "receipt-signer"`), []byte(`"label": "payments-root-signer"`), 1)
	var swapped backupFile
	json.Unmarshal(raw, &swapped)
	swapped.Keys[0].Wrapped, swapped.Keys[1].Wrapped = swapped.Keys[1].Wrapped, swapped.Keys[0].Wrapped
	sw, _ := json.MarshalIndent(swapped, "", "  ")
	var renamed backupFile
	json.Unmarshal(raw, &renamed)
	renamed.Custodians[0] = "Mallory"
	rn, _ := json.MarshalIndent(renamed, "", "  ")
	for name, data := range map[string][]byte{"edited label": relabelled, "swapped wrapped keys": sw, "edited custodian list": rn} {
		if bytes.Equal(data, raw) {
			t.Fatalf("%s: nothing edited", name)
		}
		r, dr, _ := restoreOn(t, writeTemp(t, "backup.json", data), three, "")
		if r.code != exitVerify || !strings.Contains(r.stderr, "was changed after the backup was made") {
			t.Fatalf("%s: want exit 4, backup file changed; %v", name, r)
		}
		mustUntouched(t, name, dr)
	}

	// Edited share headers.
	s1, err := readShare(fx.shares[0])
	if err != nil {
		t.Fatal(err)
	}
	text1, _ := os.ReadFile(fx.shares[0])
	created := fx.bf.Created
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"readable custodian line", "the share file was edited", bytes.Replace(text1, []byte("custodian: Carol"), []byte("custodian: Dave"), 1)},
		{"readable share number", "the share file was edited", bytes.Replace(text1, []byte("share: 1 of 5"), []byte("share: 2 of 5"), 1)},
		// Re-encoded with a good checksum: the checksum is no authentication.
		{"custodian in the share", "the share file was changed", encodeShare(s1, "Mallory", 1, 5, created)},
		{"share number in the share", "the share file was changed", encodeShare(s1, "Carol", 4, 5, created)},
		// Carol's share relabelled as Dave's, consistently: its x coordinate is not Dave's.
		{"share relabelled as another custodian's", "the share file was changed", encodeShare(s1, "Dave", 2, 5, created)},
	} {
		shares := []string{writeTemp(t, "share.txt", tc.data), fx.shares[2], fx.shares[3]}
		r, dr, _ := restoreOn(t, fx.file, shares, "")
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Fatalf("%s: want refusal %q; %v", tc.name, tc.want, r)
		}
		mustUntouched(t, tc.name, dr)
	}

	// A v1 backup and its shares, as the code before issue 13 made them.
	v1 := fx.bf
	v1.Format, v1.MAC, v1.ShareX = backupFormatV1, "", nil
	v1raw, _ := json.MarshalIndent(v1, "", "  ")
	if bytes.Contains(v1raw, []byte("mac")) || bytes.Contains(v1raw, []byte("share_x")) {
		t.Fatalf("v1 fixture has v2 fields: %s", v1raw)
	}
	v1file := writeTemp(t, "backup-v1.json", append(v1raw, '\n'))
	var v1shares []string
	for i, p := range three {
		sh, _ := readShare(p)
		v1shares = append(v1shares, writeTemp(t, fmt.Sprintf("share-v1-%d.txt", i+1), encodeShareV1(sh, sh.custodian, sh.index, sh.total, time.Now())))
	}
	r, dr, _ := restoreOn(t, v1file, v1shares, "")
	if r.code != exitVerify || !strings.Contains(r.stderr, "v1 backup") || !strings.Contains(r.stderr, "accept_unauthenticated_v1_backup: true") {
		t.Fatalf("v1 backup without the flag: want exit 4 saying how to accept it; %v", r)
	}
	mustUntouched(t, "v1 without the flag", dr)
	r, dr, rout = restoreOn(t, v1file, v1shares, "accept_unauthenticated_v1_backup: true\n")
	if r.code != 0 || !strings.Contains(r.stderr, "UNAUTHENTICATED v1 backup") {
		t.Fatalf("v1 backup with the flag: %v", r)
	}
	md, _ = os.ReadFile(filepath.Join(rout, "transcript", "transcript.md"))
	if !strings.Contains(string(md), "UNAUTHENTICATED V1 BACKUP ACCEPTED") || !strings.Contains(string(md), "share 1 of 5 held by Carol") {
		t.Fatalf("v1 restore transcript:\n%s", md)
	}
	if _, err := testPool(t, dr, userPIN).FindKey(context.Background(), "receipt-signer"); err != nil {
		t.Fatalf("v1 restore: %v", err)
	}
	// v1 shares for the v2 backup: refused.
	if r, _, _ := restoreOn(t, fx.file, v1shares, ""); r.code != exitVerify || !strings.Contains(r.stderr, "is a v1 share") {
		t.Fatalf("v1 shares for a v2 backup: %v", r)
	}
}
