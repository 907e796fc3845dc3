package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// Quorum approval (issue 13 defect 2): every sensitive ceremony needs
// signed approvals from two distinct officers enrolled in the target
// token's trusted roster, over the exact file. These tests run the real
// binary against SoftHSM2; the attacker's PKCS#11 calls are raw.

var officerDir string // officer keys made by `ceremony officer keygen` in setup

var officerNames = map[string]string{"alice": "Alice Wong", "bob": "Bob Lee", "carol": "Carol King", "mallory": "Mallory Evil"}

// makeOfficers runs `ceremony officer keygen` for the test officers
// (alice, bob and carol are enrolled by init.yaml; mallory never is).
func makeOfficers() error {
	officerDir = filepath.Join(confDir, "officers")
	if err := os.Mkdir(officerDir, 0o700); err != nil {
		return err
	}
	for short, name := range officerNames {
		out, err := exec.Command(binPath, "officer", "keygen", "-name", name, "-out", filepath.Join(officerDir, short+".key"), "-pub", filepath.Join(officerDir, short+".pub.pem")).CombinedOutput()
		if err != nil {
			return fmt.Errorf("officer keygen %s: %v\n%s", short, err, out)
		}
	}
	return nil
}

// approveFor has each officer (alice, bob, ...) approve file for the
// ceremony sub with `ceremony approve --yes` and returns the --approval
// arguments.
func approveFor(t *testing.T, sub []string, file string, who ...string) []string {
	t.Helper()
	var args []string
	for _, w := range who {
		out := filepath.Join(t.TempDir(), w+".approval")
		r := runBin(t, append(append(append([]string{"approve"}, sub...), "-f", file), "-key", filepath.Join(officerDir, w+".key"), "-out", out, "--yes")...)
		if r.code != 0 {
			t.Fatalf("approve %v by %s: %v", sub, w, r)
		}
		args = append(args, "--approval", out)
	}
	return args
}

// defaultApprovers: everyone enrolled for token init (proof of
// possession), else the two SO PIN part holders of the test files.
func defaultApprovers(sub []string) []string {
	switch strings.Join(sub, " ") {
	case "token init":
		return []string{"alice", "bob", "carol"}
	case "keygen", "backup", "restore", "zeroize", "unlock", "officer enrol", "replication-key":
		return []string{"alice", "bob"}
	}
	return nil
}

// runApproved runs a ceremony with the default approvals unless extra
// brings its own (or is a dry run).
func runApproved(t *testing.T, sub []string, file string, extra ...string) result {
	t.Helper()
	args := append(append(append([]string{}, sub...), "-f", file), extra...)
	if !slices.Contains(extra, "--approval") && !slices.Contains(extra, "--dry-run") {
		args = append(args, approveFor(t, sub, file, defaultApprovers(sub)...)...)
	}
	return runBin(t, args...)
}

// forgeApproval signs an approval of file with officer's real key, then
// lets edit change the payload before signing (expired, another name...).
func forgeApproval(t *testing.T, officer, ceremony, file string, edit func(p *approvalPayload)) string {
	t.Helper()
	k, err := readOfficerKey(filepath.Join(officerDir, officer+".key"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(file)
	h := sha256.Sum256(raw)
	nonce := make([]byte, 16)
	rand.Read(nonce)
	now := time.Now().UTC()
	p := approvalPayload{Format: approvalFormat, Officer: k.name, OfficerKeySHA256: k.fp, Ceremony: ceremony, ConfigSHA256: hex.EncodeToString(h[:]),
		Nonce: hex.EncodeToString(nonce), Created: now, NotAfter: now.Add(time.Hour)}
	edit(&p)
	payload, _ := json.Marshal(p)
	ph := sha256.Sum256(payload)
	sig, _ := ecdsa.SignASN1(rand.Reader, k.priv, ph[:])
	out, _ := json.Marshal(approvalFile{Payload: payload, PayloadSHA256: hex.EncodeToString(ph[:]), Signature: base64.StdEncoding.EncodeToString(sig)})
	path := filepath.Join(t.TempDir(), officer+"-forged.approval")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// guardState reads the guard's counters of a token's user and SO PINs.
func guardState(t *testing.T, label string) (user, so token.PINState) {
	t.Helper()
	mod, err := pkcs11shim.OpenModule(modPath)
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close()
	ti, err := mod.FindToken(pkcs11shim.Selector{Label: label})
	if err != nil {
		t.Fatal(err)
	}
	st := token.FileStore{Path: guardPath}
	user, err = st.Get(token.PINID(ti, pkcs11shim.UserNormal))
	if err != nil {
		t.Fatal(err)
	}
	so, err = st.Get(token.PINID(ti, pkcs11shim.UserSO))
	if err != nil {
		t.Fatal(err)
	}
	return user, so
}

func objectNames(t *testing.T, label string) string {
	t.Helper()
	objs, err := testPool(t, label, userPIN).ListTokenObjects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, o := range objs {
		n = append(n, o.ClassName()+":"+o.Label)
	}
	slices.Sort(n)
	return strings.Join(n, ",")
}

// wrongPINs makes every PIN source of a ceremony file a wrong PIN: if the
// ceremony got as far as a login, the guard would count a failure.
func wrongPINs(t *testing.T, file string) {
	t.Helper()
	raw, _ := os.ReadFile(file)
	s := string(raw)
	for _, p := range []string{"/user\"", "/user2\n", "/so-part1\"", "/so-part2\""} {
		s = strings.ReplaceAll(s, p, "/wrong-part"+p[len(p)-1:])
	}
	if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestQuorumOneOfficerRefused: one officer with the user PIN (or the SO
// PIN parts) can run none of the sensitive ceremonies: keygen, backup,
// restore, zeroize and unlock are each refused before any PIN is read
// (exit 3, naming who has not approved), the token is unchanged and the
// guard counted nothing. With two officers' approvals they run.
func TestQuorumOneOfficerRefused(t *testing.T) {
	setup(t)
	src := initToken(t, "q1")
	dr := initToken(t, "q1dr")
	kf, kout := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": src})
	mustRun(t, []string{"keygen"}, kf, kout)
	bf, bout := ceremonyFile(t, "backup.yaml", map[string]string{"LABEL": src, "KEYS": "receipt-signer"})
	mustRun(t, []string{"backup"}, bf, bout)
	share := func(i int) string { return filepath.Join(bout, fmt.Sprintf("share-%d.txt", i)) }

	type tc struct {
		sub   []string
		tmpl  string
		label string
		vars  map[string]string
	}
	cases := []tc{
		{[]string{"keygen"}, "keygen.yaml", dr, nil},
		{[]string{"backup"}, "backup.yaml", src, map[string]string{"KEYS": "receipt-signer"}},
		{[]string{"restore"}, "restore.yaml", dr, map[string]string{"BACKUP": filepath.Join(bout, "backup.json"), "SHARES": strings.Join([]string{share(1), share(2), share(3)}, ", ")}},
		{[]string{"zeroize"}, "zeroize.yaml", src, map[string]string{"SIGNER": dr, "CONFIRM": "ZEROIZE " + src}},
		{[]string{"unlock"}, "unlock.yaml", src, map[string]string{"OFFICER2": "Bob Lee", "PART2": "so-part2"}},
	}
	for _, c := range cases {
		t.Run(c.sub[0], func(t *testing.T) {
			vars := map[string]string{"LABEL": c.label}
			for k, v := range c.vars {
				vars[k] = v
			}
			f, out := ceremonyFile(t, c.tmpl, vars)
			wrongPINs(t, f)
			before := objectNames(t, c.label)
			for _, who := range [][]string{nil, {"alice"}, {"bob"}} {
				args := approveFor(t, c.sub, f, who...)
				r := runBin(t, append(append(append([]string{}, c.sub...), "-f", f, "--yes"), args...)...)
				if r.code != exitDeclined || !strings.Contains(r.stderr, "no PIN was read") || (len(who) > 0 && !strings.Contains(r.stderr, "not yet:")) {
					t.Fatalf("%v approved by %v only: want exit 3 before any PIN; got %v", c.sub, who, r)
				}
				if len(who) == 1 && strings.Contains(r.stderr, "not yet: "+officerNames[who[0]]) {
					t.Fatalf("the refusal names the officer who did approve as missing: %v", r)
				}
			}
			if after := objectNames(t, c.label); after != before {
				t.Fatalf("token changed by a refused %v:\nbefore %s\nafter  %s", c.sub, before, after)
			}
			for _, l := range []string{c.label, dr} {
				if u, so := guardState(t, l); u.Failures != 0 || so.Failures != 0 || u.Locked || so.Locked {
					t.Fatalf("a refused %v counted a PIN attempt on %s: user %+v so %+v", c.sub, l, u, so)
				}
			}
			if _, err := os.Stat(filepath.Join(out, "transcript", "transcript.json")); err == nil {
				t.Fatalf("a refused %v claimed transcript.dir", c.sub)
			}
		})
	}
	// Two officers (any two of the three enrolled): it runs.
	f, out := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": dr})
	r := mustRun(t, []string{"keygen"}, f, out, approveFor(t, []string{"keygen"}, f, "carol", "bob")...)
	if !strings.Contains(r.stdout, "Carol King") || !strings.Contains(r.stdout, "Bob Lee") {
		t.Fatalf("the run does not show who approved: %v", r)
	}
}

// TestQuorumApprovalChecks: approvals that must not count — for another
// file (one byte changed), expired, by a key not on the token's trusted
// roster, the same officer twice, a claimed name that is not the key's —
// and one-use: a used approval is refused the second time. The
// transcript then names the approvers, and transcript verify checks them.
func TestQuorumApprovalChecks(t *testing.T) {
	setup(t)
	src := initToken(t, "q2")
	kf, kout := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": src})
	mustRun(t, []string{"keygen"}, kf, kout)
	sub := []string{"backup"}
	f, out := ceremonyFile(t, "backup.yaml", map[string]string{"LABEL": src, "KEYS": "receipt-signer"})
	alice := approveFor(t, sub, f, "alice")
	refused := func(name string, want string, approvals ...string) {
		t.Helper()
		r := runBin(t, append([]string{"backup", "-f", f}, approvals...)...)
		if r.code != exitDeclined || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "no PIN was read") {
			t.Fatalf("%s: want exit 3 with %q; got %v", name, want, r)
		}
		if _, err := os.Stat(filepath.Join(out, "backup.json")); err == nil {
			t.Fatalf("%s: the backup was written", name)
		}
	}
	// Another file: the same ceremony with one byte changed.
	other, _ := ceremonyFile(t, "backup.yaml", map[string]string{"LABEL": src, "KEYS": "receipt-signer"})
	raw, _ := os.ReadFile(other)
	raw = []byte(strings.Replace(string(raw), "threshold: 3", "threshold: 2", 1))
	os.WriteFile(other, raw, 0o600)
	bobOther := approveFor(t, sub, other, "bob")
	refused("another file", "approves another file", append(slices.Clone(alice), bobOther...)...)
	// Expired; too long; another ceremony.
	expired := forgeApproval(t, "bob", "backup", f, func(p *approvalPayload) {
		p.Created, p.NotAfter = p.Created.Add(-3*time.Hour), p.Created.Add(-time.Hour)
	})
	refused("expired", "expired at", append(slices.Clone(alice), "--approval", expired)...)
	long := forgeApproval(t, "bob", "backup", f, func(p *approvalPayload) { p.NotAfter = p.Created.Add(48 * time.Hour) })
	refused("valid too long", "valid for more than", append(slices.Clone(alice), "--approval", long)...)
	zero := forgeApproval(t, "bob", "zeroize", f, func(*approvalPayload) {})
	refused("another ceremony", "approves a zeroize ceremony", append(slices.Clone(alice), "--approval", zero)...)
	// A key that is not on the roster, even claiming an enrolled name.
	refused("not enrolled", "not in the token's trusted officer roster", append(slices.Clone(alice), approveFor(t, sub, f, "mallory")...)...)
	claim := forgeApproval(t, "mallory", "backup", f, func(p *approvalPayload) { p.Officer = "Bob Lee" })
	refused("mallory as bob", "not in the token's trusted officer roster", append(slices.Clone(alice), "--approval", claim)...)
	// Carol's key claiming to be Bob.
	asBob := forgeApproval(t, "carol", "backup", f, func(p *approvalPayload) { p.Officer = "Bob Lee" })
	refused("wrong name", `names officer "Bob Lee" but the key is enrolled as "Carol King"`, append(slices.Clone(alice), "--approval", asBob)...)
	// The same officer twice (two approvals, and one file twice).
	refused("alice twice", "each officer counts once", append(slices.Clone(alice), approveFor(t, sub, f, "alice")...)...)
	refused("one file twice", "given twice", append(slices.Clone(alice), alice...)...)
	// A changed approval.
	tampered := filepath.Join(t.TempDir(), "t.approval")
	ab, _ := os.ReadFile(approveFor(t, sub, f, "bob")[1])
	if tb := strings.Replace(string(ab), `"Bob Lee"`, `"Bob  Lee"`, 1); tb == string(ab) {
		t.Fatal("nothing to tamper with")
	} else {
		os.WriteFile(tampered, []byte(tb), 0o644)
	}
	refused("tampered", "was changed", append(slices.Clone(alice), "--approval", tampered)...)

	// None of the refusals used Alice's approval: it still works.
	bob := approveFor(t, sub, f, "bob")
	r := mustRun(t, sub, f, out, append(slices.Clone(alice), bob...)...)
	_ = r
	tp := filepath.Join(out, "transcript", "transcript.json")
	v := verifyPinned(t, tp)
	if v.code != 0 || !strings.Contains(v.stdout, "approved by 2 officers") || !strings.Contains(v.stdout, "Alice Wong") || !strings.Contains(v.stdout, "Bob Lee") {
		t.Fatalf("transcript verify does not show the approvers: %v", v)
	}
	body, err := verifyTranscript(tp, nil)
	if err != nil || len(body.Approvals) != 2 || body.Approvals[0].KeySource != "token roster" {
		t.Fatalf("transcript approvals: %v %+v", err, body)
	}
	// An embedded approval of another file does not verify.
	bad := *body
	bad.ConfigSHA256 = strings.Repeat("0", 64)
	if _, err := verifyBodyApprovals(&bad); !errors.Is(err, errVerify) || !strings.Contains(err.Error(), "approved another file") {
		t.Fatalf("an approval of another file verified in a transcript: %v", err)
	}

	// One use: the same approvals again (outputs cleared so the file could run).
	for _, p := range []string{"backup.json", "transcript"} {
		os.RemoveAll(filepath.Join(out, p))
	}
	for i := 1; i <= 5; i++ {
		os.Remove(filepath.Join(out, fmt.Sprintf("share-%d.txt", i)))
	}
	refused("replayed", "already used", append(slices.Clone(alice), bob...)...)
	if got := runBin(t, append([]string{"backup", "-f", f}, append(slices.Clone(alice), bob...)...)...); !strings.Contains(got.stderr, "Alice Wong's approval was already used") {
		t.Fatalf("the refusal does not say whose approval was used: %v", got)
	}
}

// rawUser runs fn in a user session on the token labelled label, with raw
// PKCS#11 calls: what anyone holding the user PIN can do with any tool.
func rawUser(t *testing.T, label string, fn func(c *pkcs11.Ctx, h pkcs11.SessionHandle)) {
	t.Helper()
	c := pkcs11.New(modPath)
	if c == nil {
		t.Fatal("cannot load module")
	}
	if err := c.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer c.Destroy()
	defer c.Finalize()
	slots, err := c.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err != nil || strings.TrimRight(ti.Label, " ") != label {
			continue
		}
		h, err := c.OpenSession(s, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseSession(h)
		if err := c.Login(h, pkcs11.CKU_USER, userPIN); err != nil {
			t.Fatal(err)
		}
		defer c.Logout(h)
		fn(c, h)
		return
	}
	t.Fatalf("token %s not found", label)
}

// TestRosterUntrustedOfficer: a user-PIN holder creates an officer:
// object for a key of their own. It is public like the real ones but not
// trusted (the token refuses CKA_TRUSTED=true from the user), so its
// approvals do not count; and the enrolled officers' objects can be
// neither relabelled nor copied.
func TestRosterUntrustedOfficer(t *testing.T) {
	setup(t)
	src := initToken(t, "q3")
	mpub, err := readECPublicKey(filepath.Join(officerDir, "mallory.pub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	rawUser(t, src, func(c *pkcs11.Ctx, h pkcs11.SessionHandle) {
		params := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
		//nolint:staticcheck // the uncompressed point, as CKA_EC_POINT wants
		point := append([]byte{0x04, 65}, elliptic.Marshal(elliptic.P256(), mpub.X, mpub.Y)...)
		tmpl := func(trusted bool) []*pkcs11.Attribute {
			return []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
				pkcs11.NewAttribute(pkcs11.CKA_TRUSTED, trusted), pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, "officer:Mallory Evil"), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
				pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params), pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, point),
			}
		}
		if _, err := c.CreateObject(h, tmpl(true)); err == nil {
			t.Fatal("the user created a trusted officer key")
		}
		if _, err := c.CreateObject(h, tmpl(false)); err != nil {
			t.Fatalf("create an untrusted officer object as the user: %v", err)
		}
		if err := c.FindObjectsInit(h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, "officer:Alice Wong")}); err != nil {
			t.Fatal(err)
		}
		objs, _, _ := c.FindObjects(h, 2)
		c.FindObjectsFinal(h)
		if len(objs) != 1 {
			t.Fatalf("officer:Alice Wong: %d objects", len(objs))
		}
		if err := c.SetAttributeValue(h, objs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, "officer:Mallory Evil")}); err == nil {
			t.Fatal("the user relabelled an enrolled officer's key")
		}
		if _, err := c.CopyObject(h, objs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, "officer:Mallory Evil")}); err == nil {
			t.Fatal("the user copied an enrolled officer's key under another name")
		}
	})
	// The roster as the ceremony reads it, without a login.
	mod, err := pkcs11shim.OpenModule(modPath)
	if err != nil {
		t.Fatal(err)
	}
	roster, err := mod.TrustedOfficers(pkcs11shim.Selector{Label: src})
	mod.Close()
	var got []string
	for _, o := range roster {
		got = append(got, o.Name)
	}
	slices.Sort(got)
	if err != nil || strings.Join(got, ",") != "Alice Wong,Bob Lee,Carol King" {
		t.Fatalf("trusted roster: %v %v", got, err)
	}
	f, out := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": src})
	r := runBin(t, append([]string{"keygen", "-f", f}, append(approveFor(t, []string{"keygen"}, f, "alice"), approveFor(t, []string{"keygen"}, f, "mallory")...)...)...)
	if r.code != exitDeclined || !strings.Contains(r.stderr, "not in the token's trusted officer roster") {
		t.Fatalf("an untrusted officer object counted: %v", r)
	}
	if _, err := os.Stat(filepath.Join(out, "receipt-signer.pem")); err == nil {
		t.Fatal("keys were generated")
	}
}

// TestOfficerEnrol: a new officer joins the roster with both SO PIN part
// holders' and the new officer's approvals; without the newcomer's proof
// of possession it is refused. The newcomer then counts toward a quorum.
func TestOfficerEnrol(t *testing.T) {
	setup(t)
	src := initToken(t, "q4")
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	if r := runBin(t, "officer", "keygen", "-name", "Dan Ng", "-out", filepath.Join(dir, "dan.key"), "-pub", filepath.Join(dir, "dan.pub.pem")); r.code != 0 {
		t.Fatalf("officer keygen: %v", r)
	}
	if r := runBin(t, "officer", "keygen", "-name", "Dan Ng", "-out", filepath.Join(dir, "dan.key"), "-pub", filepath.Join(dir, "x.pem")); r.code != exitUsage || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("officer keygen overwrote a key: %v", r)
	}
	text := fmt.Sprintf(`module: %s
officers: [Alice Wong, Bob Lee]
transcript:
  dir: %s/transcript
  signer: {label: %s, user_pin: "file:%s/user"}
pin_guard: %s
token: {label: %s}
so_pin:
  - {officer: Alice Wong, pin: "file:%s/so-part1"}
  - {officer: Bob Lee, pin: "file:%s/so-part2"}
enrol:
  - {name: Dan Ng, public_key: %s/dan.pub.pem}
`, modPath, dir, src, pinDir, guardPath, src, pinDir, pinDir, dir)
	f := filepath.Join(dir, "enrol.yaml")
	os.WriteFile(f, []byte(text), 0o600)
	sub := []string{"officer", "enrol"}
	danApprove := func() []string {
		out := filepath.Join(t.TempDir(), "dan.approval")
		if r := runBin(t, "approve", "officer", "enrol", "-f", f, "-key", filepath.Join(dir, "dan.key"), "-out", out, "--yes"); r.code != 0 {
			t.Fatalf("dan approves: %v", r)
		}
		return []string{"--approval", out}
	}
	// Alice and Carol: Bob holds an SO PIN part and has not approved; Dan neither.
	r := runBin(t, append([]string{"officer", "enrol", "-f", f}, approveFor(t, sub, f, "alice", "carol")...)...)
	if r.code != exitDeclined || !strings.Contains(r.stderr, "Bob Lee holds an SO PIN part") || !strings.Contains(r.stderr, "Dan Ng is being enrolled") {
		t.Fatalf("enrol without the SO part holder and the newcomer: %v", r)
	}
	mustRun(t, sub, f, dir, append(approveFor(t, sub, f, "alice", "bob"), danApprove()...)...)
	// Dan's key now counts: Dan and Carol approve a keygen.
	kf, kout := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": src})
	out := filepath.Join(t.TempDir(), "dan-keygen.approval")
	if r := runBin(t, "approve", "keygen", "-f", kf, "-key", filepath.Join(dir, "dan.key"), "-out", out, "--yes"); r.code != 0 {
		t.Fatalf("dan approves keygen: %v", r)
	}
	mustRun(t, []string{"keygen"}, kf, kout, append(approveFor(t, []string{"keygen"}, kf, "carol"), "--approval", out)...)
}

// TestQuorumInitAndKeyFiles: token init needs every officer it enrols to
// approve (proof of possession of the key being enrolled); officer keys
// others can read are refused.
func TestQuorumInitAndKeyFiles(t *testing.T) {
	setup(t)
	label := newLabel("q5")
	f, _ := ceremonyFile(t, "init.yaml", map[string]string{"LABEL": label})
	r := runBin(t, append([]string{"token", "init", "-f", f, "--yes"}, approveFor(t, []string{"token", "init"}, f, "alice", "bob")...)...)
	if r.code != exitDeclined || !strings.Contains(r.stderr, "Carol King is being enrolled and must approve") {
		t.Fatalf("init without Carol's approval: %v", r)
	}
	mod, err := pkcs11shim.OpenModule(modPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mod.FindToken(pkcs11shim.Selector{Label: label}); !errors.Is(err, pkcs11shim.ErrTokenNotFound) {
		t.Fatalf("the token was initialised: %v", err)
	}
	mod.Close()
	// A key file the group can read.
	loose := filepath.Join(t.TempDir(), "alice.key")
	b, _ := os.ReadFile(filepath.Join(officerDir, "alice.key"))
	os.WriteFile(loose, b, 0o640)
	os.Chmod(loose, 0o640)
	r = runBin(t, "approve", "token", "init", "-f", f, "-key", loose, "-out", filepath.Join(t.TempDir(), "a.approval"), "--yes")
	if r.code != exitUsage || !strings.Contains(r.stderr, "chmod 600") {
		t.Fatalf("a group-readable officer key was used: %v", r)
	}
	// No terminal and no --yes: the officer cannot be asked.
	r = runBin(t, "approve", "token", "init", "-f", f, "-key", filepath.Join(officerDir, "alice.key"), "-out", filepath.Join(t.TempDir(), "a.approval"))
	if r.code != exitDeclined || !strings.Contains(r.stdout, "Plan you are approving") {
		t.Fatalf("approve without a terminal: %v", r)
	}
	// Rotate takes no approvals.
	if r := runBin(t, "approve", "rotate", "-f", f, "-key", filepath.Join(officerDir, "alice.key"), "-out", filepath.Join(t.TempDir(), "a.approval"), "--yes"); r.code != exitUsage {
		t.Fatalf("approve rotate: %v", r)
	}
}

// TestQuorumSOPartHolders: unlock has a quorum from Alice and Carol, but
// Bob holds the second SO PIN part and has not approved: refused before
// any PIN. With Alice and Bob it runs.
func TestQuorumSOPartHolders(t *testing.T) {
	setup(t)
	label := initToken(t, "q6")
	f, out := ceremonyFile(t, "unlock.yaml", map[string]string{"LABEL": label, "OFFICER2": "Bob Lee", "PART2": "so-part2"})
	r := runBin(t, append([]string{"unlock", "-f", f}, approveFor(t, []string{"unlock"}, f, "alice", "carol")...)...)
	if r.code != exitDeclined || !strings.Contains(r.stderr, "Bob Lee holds an SO PIN part and must approve") || strings.Contains(r.stderr, "not yet:") {
		t.Fatalf("unlock without the second SO part holder's approval: %v", r)
	}
	if _, so := guardState(t, label); so.Failures != 0 {
		t.Fatalf("the refused unlock tried the SO PIN: %+v", so)
	}
	mustRun(t, []string{"unlock"}, f, out, approveFor(t, []string{"unlock"}, f, "alice", "bob")...)
	// One key cannot be enrolled under a second name (it would count twice).
	mod, err := pkcs11shim.OpenModule(modPath)
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close()
	pub, _ := readECPublicKey(filepath.Join(officerDir, "alice.pub.pem"))
	err = mod.EnrolOfficers(pkcs11shim.Selector{Label: label}, []byte(soPart1+soPart2), []pkcs11shim.Officer{{Name: "Alice Again", Public: pub}})
	if !errors.Is(err, pkcs11shim.ErrDuplicateLabel) {
		t.Fatalf("a second name for an enrolled key: %v", err)
	}
}

// TestOfficerEnrolBootstrap: a token initialised before officer rosters
// existed has none: every sensitive ceremony is refused, naming the way
// out — officer enrol with both SO PIN parts, approved by the officers
// being enrolled (the first roster); then the roster approves.
func TestOfficerEnrolBootstrap(t *testing.T) {
	setup(t)
	signer := initToken(t, "q7sig")
	label := newLabel("q7")
	mod, err := pkcs11shim.OpenModule(modPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mod.InitToken("", []byte(soPart1+soPart2), label); err != nil {
		t.Fatal(err)
	}
	if err := mod.InitPIN(pkcs11shim.Selector{Label: label}, []byte(soPart1+soPart2), []byte(userPIN)); err != nil {
		t.Fatal(err)
	}
	mod.Close()
	kf, _ := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": label})
	if r := runApproved(t, []string{"keygen"}, kf); r.code != exitDeclined || !strings.Contains(r.stderr, "has no enrolled officers") || !strings.Contains(r.stderr, "officer enrol") {
		t.Fatalf("keygen on a token with no roster: %v", r)
	}
	dir := t.TempDir()
	text := fmt.Sprintf(`module: %s
officers: [Alice Wong, Bob Lee]
transcript:
  dir: %s/transcript
  signer: {label: %s, user_pin: "file:%s/user"}
pin_guard: %s
token: {label: %s}
so_pin:
  - {officer: Alice Wong, pin: "file:%s/so-part1"}
  - {officer: Bob Lee, pin: "file:%s/so-part2"}
enrol:
  - {name: Alice Wong, public_key: %s/alice.pub.pem}
  - {name: Bob Lee, public_key: %s/bob.pub.pem}
`, modPath, dir, signer, pinDir, guardPath, label, pinDir, pinDir, officerDir, officerDir)
	f := filepath.Join(dir, "enrol.yaml")
	os.WriteFile(f, []byte(text), 0o600)
	sub := []string{"officer", "enrol"}
	// Mallory and Alice: Mallory is not being enrolled, Bob has not approved.
	if r := runBin(t, append([]string{"officer", "enrol", "-f", f}, approveFor(t, sub, f, "alice", "mallory")...)...); r.code != exitDeclined || !strings.Contains(r.stderr, "Bob Lee") {
		t.Fatalf("bootstrap enrol without Bob: %v", r)
	}
	mustRun(t, sub, f, dir, approveFor(t, sub, f, "alice", "bob")...)
	mod, err = pkcs11shim.OpenModule(modPath)
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close()
	roster, err := mod.TrustedOfficers(pkcs11shim.Selector{Label: label})
	if err != nil || len(roster) != 2 {
		t.Fatalf("roster after bootstrap: %v %v", roster, err)
	}
}

// TestOfficerTokenKey: an officer's approval key on their own token (a
// SoftHSM token standing in for a USB key): generated there, never in a
// file, enrolled, and signing approvals through PKCS#11.
func TestOfficerTokenKey(t *testing.T) {
	setup(t)
	src := initToken(t, "q8")
	usb := newLabel("usb")
	mod, err := pkcs11shim.OpenModule(modPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mod.InitToken("", []byte(soPart1+soPart2), usb); err != nil {
		t.Fatal(err)
	}
	if err := mod.InitPIN(pkcs11shim.Selector{Label: usb}, []byte(soPart1+soPart2), []byte(newPIN)); err != nil {
		t.Fatal(err)
	}
	mod.Close()
	uri := fmt.Sprintf("pkcs11:token=%s;object=officer-approval?module-path=%s&pin-source=file:%s/user2", usb, modPath, pinDir)
	dir := t.TempDir()
	officerGuard := filepath.Join(dir, "officer", "pin-guard.db") // the officer's own counter file (token.Open's guard counts there)
	if r := runBin(t, "officer", "keygen", "-name", "Dan Usb", "-key", uri, "-pin-guard", officerGuard, "-pub", filepath.Join(dir, "dan.pub.pem")); r.code != 0 || !strings.Contains(r.stdout, "generated on your token") {
		t.Fatalf("officer keygen on a token: %v", r)
	}
	if _, err := os.Stat(officerGuard); err != nil {
		t.Fatalf("the officer token's PIN attempt was not counted in -pin-guard: %v", err)
	}
	if r := runBin(t, "officer", "keygen", "-name", "Dan Usb", "-key", uri, "-pin-guard", officerGuard, "-pub", filepath.Join(dir, "again.pem")); r.code != exitFailed || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("officer keygen replaced a token key: %v", r)
	}
	text := fmt.Sprintf(`module: %s
officers: [Alice Wong, Bob Lee]
transcript:
  dir: %s/transcript
  signer: {label: %s, user_pin: "file:%s/user"}
pin_guard: %s
token: {label: %s}
so_pin:
  - {officer: Alice Wong, pin: "file:%s/so-part1"}
  - {officer: Bob Lee, pin: "file:%s/so-part2"}
enrol:
  - {name: Dan Usb, public_key: %s/dan.pub.pem}
`, modPath, dir, src, pinDir, guardPath, src, pinDir, pinDir, dir)
	f := filepath.Join(dir, "enrol.yaml")
	os.WriteFile(f, []byte(text), 0o600)
	tokenApproval := func(sub []string, file string) []string {
		out := filepath.Join(t.TempDir(), "dan.approval")
		if r := runBin(t, append(append(append([]string{"approve"}, sub...), "-f", file), "-key", uri, "-pin-guard", officerGuard, "-name", "Dan Usb", "-out", out, "--yes")...); r.code != 0 {
			t.Fatalf("approve %v with the token key: %v", sub, r)
		}
		return []string{"--approval", out}
	}
	sub := []string{"officer", "enrol"}
	mustRun(t, sub, f, dir, append(approveFor(t, sub, f, "alice", "bob"), tokenApproval(sub, f)...)...)
	kf, kout := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": src})
	mustRun(t, []string{"keygen"}, kf, kout, append(approveFor(t, []string{"keygen"}, kf, "carol"), tokenApproval([]string{"keygen"}, kf)...)...)
	// Without -name a token key cannot say whose it is.
	if r := runBin(t, "approve", "keygen", "-f", kf, "-key", uri, "-pin-guard", officerGuard, "-out", filepath.Join(t.TempDir(), "x"), "--yes"); r.code != exitUsage || !strings.Contains(r.stderr, "-name") {
		t.Fatalf("a token key without -name: %v", r)
	}
}

// TestOfficerRetire: Carol leaves the roster with both SO part holders'
// approvals (her own does not count); afterwards her approvals are
// refused. The roster may not shrink below the quorum.
func TestOfficerRetire(t *testing.T) {
	setup(t)
	src := initToken(t, "q9")
	retire := func(names string) string {
		dir := t.TempDir()
		f := filepath.Join(dir, "retire.yaml")
		os.WriteFile(f, []byte(fmt.Sprintf(`module: %s
officers: [Alice Wong, Bob Lee]
transcript:
  dir: %s/transcript
  signer: {label: %s, user_pin: "file:%s/user"}
pin_guard: %s
token: {label: %s}
so_pin:
  - {officer: Alice Wong, pin: "file:%s/so-part1"}
  - {officer: Bob Lee, pin: "file:%s/so-part2"}
retire: [%s]
`, modPath, dir, src, pinDir, guardPath, src, pinDir, pinDir, names)), 0o600)
		return f
	}
	sub := []string{"officer", "retire"}
	f := retire("Carol King")
	if r := runBin(t, append([]string{"officer", "retire", "-f", f}, approveFor(t, sub, f, "alice", "carol")...)...); r.code != exitDeclined || !strings.Contains(r.stderr, "cannot approve their own removal") {
		t.Fatalf("retire approved by the retiree: %v", r)
	}
	mustRun(t, sub, f, filepath.Dir(f), approveFor(t, sub, f, "alice", "bob")...)
	kf, _ := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": src})
	if r := runBin(t, append([]string{"keygen", "-f", kf}, approveFor(t, []string{"keygen"}, kf, "alice", "carol")...)...); r.code != exitDeclined || !strings.Contains(r.stderr, "not in the token's trusted officer roster") {
		t.Fatalf("a retired officer's approval counted: %v", r)
	}
	f = retire("Bob Lee")
	if r := runBin(t, append([]string{"officer", "retire", "-f", f}, approveFor(t, sub, f, "alice", "bob")...)...); r.code != exitDeclined || !strings.Contains(r.stderr, "Bob Lee") {
		t.Fatalf("retire leaving one officer: %v", r)
	}
}
