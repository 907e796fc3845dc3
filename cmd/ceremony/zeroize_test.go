package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// Issue 13 defect 6: zeroize destroyed keys that have no backup without a
// word. Now it is C_InitToken with both SO PIN parts, after every key
// without a backup (of this token's serial) is listed and acknowledged.

// zeroizeFile is a zeroize ceremony file for token label, signed by signer,
// with the backups and acknowledgement given (YAML flow lists).
func zeroizeFile(t *testing.T, label, signer string, backups, ack []string) (path, out string) {
	t.Helper()
	f, out := ceremonyFile(t, "zeroize.yaml", map[string]string{"LABEL": label, "SIGNER": signer, "CONFIRM": "ZEROIZE " + label})
	raw, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(raw), "acknowledge_unbacked: [ceremony-audit, receipt-signer, bank-kek, login-decrypt]",
		fmt.Sprintf("backups: [%s]\nacknowledge_unbacked: [%s]", strings.Join(backups, ", "), strings.Join(ack, ", ")), 1)
	if text == string(raw) {
		t.Fatal("testdata/zeroize.yaml has no acknowledge_unbacked line to replace")
	}
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return f, out
}

// backupOf backs keys (a YAML list body) of token label up and returns the
// backup file and its share files.
func backupOf(t *testing.T, label, keys string) (string, []string) {
	t.Helper()
	bf, bout := ceremonyFile(t, "backup.yaml", map[string]string{"LABEL": label, "KEYS": keys})
	mustRun(t, []string{"backup"}, bf, bout)
	var shares []string
	for i := 1; i <= 3; i++ {
		shares = append(shares, filepath.Join(bout, fmt.Sprintf("share-%d.txt", i)))
	}
	return filepath.Join(bout, "backup.json"), shares
}

// objectLabels lists the token's objects (class, label, CKA_ID) as the user.
func objectLabels(t *testing.T, label string) []string {
	t.Helper()
	objs, err := testPool(t, label, userPIN).ListTokenObjects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		out = append(out, fmt.Sprintf("%s:%s:%x", o.ClassName(), o.Label, o.ID))
	}
	slices.Sort(out) // the module's order varies
	return out
}

// wantReinitialised checks a zeroized token: same label, initialised, no
// user PIN; once the SO sets one, no object is left.
func wantReinitialised(t *testing.T, label, serial string) {
	t.Helper()
	mod, err := pkcs11shim.OpenModule(modPath)
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close()
	mod.MinReinitInterval = 0
	if err := mod.Reinitialize(mod.Generation()); err != nil {
		t.Fatal(err)
	}
	ti, err := mod.LookupToken(pkcs11shim.Selector{Label: label})
	if err != nil {
		t.Fatalf("after zeroize: %v", err)
	}
	if !ti.Flags.Initialized || ti.Flags.UserPINInitialized || (serial != "" && ti.Serial != serial) {
		t.Fatalf("after zeroize: %+v", ti)
	}
	if err := mod.InitPIN(pkcs11shim.Selector{Label: label}, []byte(soPart1+soPart2), []byte(userPIN)); err != nil {
		t.Fatalf("C_InitPIN with the SO PIN after zeroize: %v", err)
	}
	if objs := objectLabels(t, label); len(objs) != 0 {
		t.Fatalf("after zeroize the token holds %v", objs)
	}
}

func tokenSerial(t *testing.T, label string) string {
	t.Helper()
	return testPool(t, label, userPIN).Info().Serial
}

// TestZeroizeUnbackedKeys: keys without a backup must be acknowledged,
// exactly; a key in a backup file of this token is not listed; then the
// token is re-initialised (same label, no user PIN, no object) and the
// transcript records which keys were lost.
func TestZeroizeUnbackedKeys(t *testing.T) {
	setup(t)
	officers := initToken(t, "zofficers")
	victim := initToken(t, "zv")
	kf, kout := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": victim})
	mustRun(t, []string{"keygen"}, kf, kout)
	backup, _ := backupOf(t, victim, "receipt-signer")
	serial := tokenSerial(t, victim)
	before := objectLabels(t, victim)

	for _, tc := range []struct {
		name    string
		backups []string
		ack     []string
		want    []string
	}{
		{"nothing acknowledged", nil, nil, []string{"have no backup among backups and are not listed: ", "receipt-signer", "bank-kek", "login-decrypt", "ceremony-audit"}},
		{"one unbacked key missing", []string{backup}, []string{"ceremony-audit", "bank-kek"}, []string{"are not listed: login-decrypt (back them up first"}},
		{"a backed-up key listed", []string{backup}, []string{"ceremony-audit", "bank-kek", "login-decrypt", "receipt-signer"}, []string{"it lists receipt-signer, which is not a key without a backup"}},
		{"no backup file given", nil, []string{"ceremony-audit", "bank-kek", "login-decrypt"}, []string{"are not listed: receipt-signer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, out := zeroizeFile(t, victim, officers, tc.backups, tc.ack)
			r := runApproved(t, []string{"zeroize"}, f, "--yes")
			if r.code != exitUsage || !strings.Contains(r.stderr, "acknowledge_unbacked: must list exactly the keys with no backup") || !strings.Contains(r.stderr, "Nothing was erased") {
				t.Fatalf("zeroize: %v", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("refusal does not say %q: %s", w, r.stderr)
				}
			}
			if got := objectLabels(t, victim); strings.Join(got, ",") != strings.Join(before, ",") {
				t.Fatalf("a refused zeroize changed the token: %v -> %v", before, got)
			}
			body, err := verifyTranscript(filepath.Join(out, "transcript", "transcript.json"), nil)
			if err != nil || !strings.HasPrefix(body.Result, "failed: ") {
				t.Fatalf("transcript of the refused zeroize: %v %+v", err, body)
			}
			for _, k := range body.Keys {
				if k.Label == "bank-kek" && k.Note != "NO BACKUP, not acknowledged" {
					t.Errorf("refused zeroize's transcript: bank-kek %q", k.Note)
				}
			}
		})
	}

	f, out := zeroizeFile(t, victim, officers, []string{backup}, []string{"ceremony-audit", "bank-kek", "login-decrypt"})
	r := mustRun(t, []string{"zeroize"}, f, out, "--yes")
	if !strings.Contains(r.stdout, "backed up: backup ") || !strings.Contains(r.stdout, "NO BACKUP (the ceremony transcript signing key") {
		t.Fatalf("zeroize inventory: %s", r.stdout)
	}
	wantReinitialised(t, victim, serial)
	body, err := verifyTranscript(filepath.Join(out, "transcript", "transcript.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	notes := map[string]string{}
	for _, k := range body.Keys {
		notes[k.Label] = k.Note
	}
	if !strings.HasPrefix(notes["receipt-signer"], "backed up in backup ") {
		t.Errorf("transcript: receipt-signer %q", notes["receipt-signer"])
	}
	for _, l := range []string{"bank-kek", "login-decrypt", "ceremony-audit"} {
		if !strings.HasPrefix(notes[l], "NO BACKUP, acknowledged in acknowledge_unbacked") {
			t.Errorf("transcript: %s %q", l, notes[l])
		}
	}
	var steps []string
	for _, s := range body.Steps {
		steps = append(steps, s.Name+": "+s.Detail)
	}
	all := strings.Join(steps, "\n")
	for _, w := range []string{"unbacked keys acknowledged: 3 key(s) without a backup", "dual control: SO PIN parts entered by Alice Wong + Bob Lee", "C_InitToken: token " + victim} {
		if !strings.Contains(all, w) {
			t.Errorf("transcript steps lack %q:\n%s", w, all)
		}
	}
}

// TestZeroizeOtherTokensBackup: a backup of another token's serial does
// not count, even when this token holds the very keys it restored (a DR
// token): they are listed as without a backup.
func TestZeroizeOtherTokensBackup(t *testing.T) {
	setup(t)
	officers := initToken(t, "zofficers")
	src := initToken(t, "zsrc")
	kf, kout := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": src})
	mustRun(t, []string{"keygen"}, kf, kout)
	backup, shares := backupOf(t, src, "receipt-signer")
	dr := initToken(t, "zdr")
	rf, rout := ceremonyFile(t, "restore.yaml", map[string]string{"LABEL": dr, "BACKUP": backup, "SHARES": strings.Join(shares, ", ")})
	mustRun(t, []string{"restore"}, rf, rout)

	f, _ := zeroizeFile(t, dr, officers, []string{backup}, []string{"ceremony-audit"})
	r := runApproved(t, []string{"zeroize"}, f, "--yes")
	if r.code != exitUsage || !strings.Contains(r.stderr, "are not listed: receipt-signer") {
		t.Fatalf("zeroize of the DR token with the source's backup: %v", r)
	}
	if !strings.Contains(r.stdout, "not of this token") {
		t.Errorf("the ignored backup is not reported: %s", r.stdout)
	}
	f, out := zeroizeFile(t, dr, officers, []string{backup}, []string{"ceremony-audit", "receipt-signer"})
	mustRun(t, []string{"zeroize"}, f, out, "--yes")
	wantReinitialised(t, dr, "")
}

// TestZeroizeNeedsBothSOParts: zeroize needs the two SO PIN parts of two
// officers; with one part wrong the token refuses C_InitToken, the SO
// attempt is counted in the PIN guard, and nothing is erased.
func TestZeroizeNeedsBothSOParts(t *testing.T) {
	setup(t)
	officers := initToken(t, "zofficers")
	victim := initToken(t, "zso")
	before := objectLabels(t, victim)
	edited := func(from, to string) string {
		f, _ := zeroizeFile(t, victim, officers, nil, []string{"ceremony-audit"})
		raw, _ := os.ReadFile(f)
		text := strings.Replace(string(raw), from, to, 1)
		if text == string(raw) {
			t.Fatalf("%q not in the zeroize file", from)
		}
		os.WriteFile(f, []byte(text), 0o600)
		return f
	}
	if r := runBin(t, "zeroize", "-f", edited("{officer: Bob Lee, pin", "{officer: Alice Wong, pin"), "--yes"); r.code != exitUsage || !strings.Contains(r.stderr, "so_pin[1].officer: the two parts must be held by two different officers") {
		t.Fatalf("zeroize with both SO parts from one officer: %v", r)
	}
	if r := runBin(t, "zeroize", "-f", edited("  - {officer: Bob Lee, pin: \"file:"+pinDir+"/so-part2\"}\n", ""), "--yes"); r.code != exitUsage || !strings.Contains(r.stderr, "so_pin: needs exactly two parts") {
		t.Fatalf("zeroize with one SO part: %v", r)
	}
	soID := token.PINID(testPool(t, victim, userPIN).Info(), pkcs11shim.UserSO)
	soFailures := func() int {
		st, err := token.OpenBoltStore(guardPath)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		s, _ := st.Get(soID)
		return s.Failures
	}
	n := soFailures()
	r := runApproved(t, []string{"zeroize"}, edited("/so-part2", "/wrong-part"), "--yes")
	if r.code != exitFailed || !strings.Contains(r.stderr, "C_InitToken") {
		t.Fatalf("zeroize with a wrong SO part: %v", r)
	}
	if got := soFailures(); got != n+1 {
		t.Fatalf("the wrong SO PIN was counted %d -> %d in the PIN guard", n, got)
	}
	if got := objectLabels(t, victim); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Fatalf("a refused zeroize changed the token: %v -> %v", before, got)
	}
}
