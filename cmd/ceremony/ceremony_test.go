package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// These tests build the ceremony binary, run it as a process on ceremony
// files from testdata against throwaway SoftHSM2 tokens (their own
// SOFTHSM2_CONF), and check the results from this process through
// pkcs11shim. No mocks, except a fake keysvc HTTP endpoint for rotate.

const (
	soPart1 = "so-Secret-88"
	soPart2 = "42x"
	userPIN = "Hk#4829!w"
	newPIN  = "Nw#7315!q"
)

var (
	confDir   string
	setupOnce sync.Once
	setupErr  error
	binPath   string
	modPath   string
	pinDir    string
	guardPath string // the pin_guard of every ceremony file (${GUARD}), as keysvc's keysvc.db would be
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ceremony-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	confDir = dir
	tokens := filepath.Join(dir, "tokens")
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\nslots.mechanisms = ALL\nlibrary.reset_on_fork = false\n", tokens)
	if err := errors.Join(os.Mkdir(tokens, 0o700), os.WriteFile(conf, []byte(body), 0o600)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("SOFTHSM2_CONF", conf) // this process and every ceremony it starts
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// setup finds SoftHSM (failing under CI=true, skipping otherwise), builds
// the binary once and writes the PIN files.
func setup(t *testing.T) {
	t.Helper()
	mod := os.Getenv("KEYWARD_PKCS11_MODULE")
	if mod == "" {
		var err error
		if mod, err = token.FindSoftHSM(); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("SoftHSM2 is required under CI=true: install it with apt-get install -y softhsm2 (%v)", err)
			}
			t.Skip("SoftHSM2 not found: install it with apt-get install -y softhsm2")
		}
	}
	setupOnce.Do(func() {
		modPath = mod
		binPath = filepath.Join(confDir, "ceremony")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			setupErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		guardPath = filepath.Join(confDir, "keysvc.db")
		if setupErr = newKeysvcStore(guardPath); setupErr != nil {
			return
		}
		pinDir = filepath.Join(confDir, "pins")
		setupErr = os.Mkdir(pinDir, 0o700)
		for name, v := range map[string]string{"so-part1": soPart1, "so-part2": soPart2, "user": userPIN, "user2": newPIN, "wrong-part": "zzz", "admin.token": "admin-secret"} {
			setupErr = errors.Join(setupErr, os.WriteFile(filepath.Join(pinDir, name), []byte(v), 0o600))
		}
		setupErr = errors.Join(setupErr, makeOfficers()) // quorum_test.go
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

func runBin(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, so.String(), se.String()}
}

// ceremonyFile writes testdata/name with ${VARS} filled in (MODULE, PINS
// and OUT always) into a fresh directory and returns its path and OUT.
func ceremonyFile(t *testing.T, name string, vars map[string]string) (path, out string) {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	out = t.TempDir()
	all := map[string]string{"MODULE": modPath, "PINS": pinDir, "OUT": out, "GUARD": guardPath, "OFFICERS": officerDir}
	for k, v := range vars {
		all[k] = v
	}
	text := os.Expand(string(tmpl), func(k string) string {
		v, ok := all[k]
		if !ok {
			t.Fatalf("%s: no value for ${%s}", name, k)
		}
		return v
	})
	path = filepath.Join(out, name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, out
}

// mustRun runs a ceremony that must succeed and checks its transcript.
func mustRun(t *testing.T, sub []string, file, out string, extra ...string) result {
	t.Helper()
	r := runApproved(t, sub, file, extra...)
	if r.code != 0 {
		t.Fatalf("%v: %v", sub, r)
	}
	if sub[0] == "token" {
		body, err := verifyTranscript(filepath.Join(out, "transcript", "transcript.json"), nil)
		if err != nil {
			t.Fatal(err)
		}
		recordAuditKey(t, body.Signer.Token.Label, r.stdout)
	}
	v := verifyPinned(t, filepath.Join(out, "transcript", "transcript.json"))
	if v.code != 0 || !strings.Contains(v.stdout, "transcript ok") {
		t.Fatalf("transcript of %v does not verify: %v", sub, v)
	}
	return r
}

func newLabel(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// initToken runs token init with PIN files and returns the label.
func initToken(t *testing.T, prefix string) string {
	t.Helper()
	label := newLabel(prefix)
	f, out := ceremonyFile(t, "init.yaml", map[string]string{"LABEL": label})
	mustRun(t, []string{"token", "init"}, f, out, "--yes")
	return label
}

// openPool opens this process's pool on a token the binary made.
func testPool(t *testing.T, label, pin string) *pkcs11shim.Pool {
	t.Helper()
	mod, err := pkcs11shim.OpenModule(modPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mod.Close() })
	// Another process changed the tokens: SoftHSM only sees that after a
	// new C_Initialize in this process.
	mod.MinReinitInterval = time.Millisecond
	time.Sleep(2 * time.Millisecond)
	if err := mod.Reinitialize(mod.Generation()); err != nil {
		t.Fatal(err)
	}
	p, err := pkcs11shim.NewPool(context.Background(), mod, pkcs11shim.PoolConfig{Selector: pkcs11shim.Selector{Label: label}, MaxSessions: 2,
		Authenticate: func(_ context.Context, login pkcs11shim.LoginFunc) error { return login([]byte(pin)) }})
	if err != nil {
		t.Fatalf("pool on %s: %v", label, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestConfigErrors(t *testing.T) {
	setup(t)
	good, _ := ceremonyFile(t, "init.yaml", map[string]string{"LABEL": "x"})
	raw, _ := os.ReadFile(good)
	existing := filepath.Join(t.TempDir(), "exists.pem")
	os.WriteFile(existing, nil, 0o600)
	for _, tc := range []struct {
		name, sub, edit, want string
	}{
		{"unknown field", "token init", "colour: blue\n", "colour: unknown field"},
		{"missing label", "token init", "#", "token.label: required"},
		{"officer not listed", "token init", "@officer", `so_pin[1].officer: "Mallory" is not in officers`},
		{"PIN in place of a source", "token init", "@pin", "user_pin:"},
		{"bad key type", "keygen", "type: ec-p521", "keys[0].type: must be"},
		{"existing output", "keygen", "exists", "keys[0].public_key_pem: " + existing + " already exists"},
		{"no PIN guard", "token init", "@noguard", "pin_guard: required"},
		{"PIN guard not there", "keygen", "noguard", "pin_guard: " + existing + ".db is not an existing file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := string(raw)
			switch {
			case tc.sub == "keygen":
				typ, guard := "ec-p256", guardPath
				pemOut := filepath.Join(t.TempDir(), "k.pem")
				switch tc.edit {
				case "exists":
					pemOut = existing
				case "noguard":
					guard = existing + ".db"
				default:
					typ = "ec-p521"
				}
				text = fmt.Sprintf("module: %s\nofficers: [A]\ntranscript: {dir: %s}\npin_guard: %s\ntoken: {label: t, user_pin: prompt}\nkeys:\n  - {label: k, type: %s, public_key_pem: %s}\n", modPath, t.TempDir(), guard, typ, pemOut)
			case tc.edit == "#":
				text = strings.Replace(text, "  label:", "  #label:", 1)
			case tc.edit == "@officer":
				text = strings.Replace(text, "officer: Bob Lee", "officer: Mallory", 1)
			case tc.edit == "@noguard":
				text = strings.Replace(text, "pin_guard:", "#pin_guard:", 1)
			case tc.edit == "@pin":
				text = strings.Replace(text, "user_pin: file:", "user_pin: 12", 1)
			default:
				text += tc.edit
			}
			f := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(f, []byte(text), 0o600)
			r := runBin(t, append(strings.Fields(tc.sub), "-f", f, "--yes")...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("want exit 2 naming %q; got %v", tc.want, r)
			}
			if strings.Contains(r.stderr, "12") && tc.edit == "@pin" {
				t.Fatalf("the would-be PIN is echoed: %v", r)
			}
		})
	}
	if r := runBin(t, "backup", "--help"); r.code != 0 || !strings.Contains(r.stdout, "threshold: 3") {
		t.Fatalf("backup --help has no example: %v", r)
	}
	if r := runBin(t, "frobnicate"); r.code != exitUsage {
		t.Fatalf("unknown subcommand: %v", r)
	}
}

// TestInitKeygenBackupRestore walks the README: init two tokens, keygen on
// the first, a 3-of-5 backup, restores on DR tokens with different sets of
// three shares, and the failures (two shares, a corrupted share, a share of
// another backup).
func TestInitKeygenBackupRestore(t *testing.T) {
	setup(t)
	src := initToken(t, "bank")

	// keygen: dry run first (nothing made), then for real.
	kf, kout := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": src})
	if r := runBin(t, "keygen", "-f", kf, "--dry-run"); r.code != 0 || !strings.Contains(r.stdout, "Plan") {
		t.Fatalf("dry run: %v", r)
	}
	if _, err := os.Stat(filepath.Join(kout, "receipt-signer.pem")); err == nil {
		t.Fatal("dry run wrote an output")
	}
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
	certPEM, _ := os.ReadFile(filepath.Join(kout, "receipt-signer.crt"))
	cb, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil || cert.Subject.CommonName != "Keyward receipt signer" || !cert.PublicKey.(*ecdsa.PublicKey).Equal(origPub) {
		t.Fatalf("certificate: %v %+v", err, cert)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Fatalf("certificate signature: %v", err)
	}
	// The transcript names the keys with their fingerprints.
	body, err := verifyTranscript(filepath.Join(kout, "transcript", "transcript.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	fp, _, _ := fingerprint(origPub)
	if !strings.Contains(fmt.Sprint(body.Keys), fp) || len(body.Tokens) == 0 || body.Tokens[0].Serial == "" {
		t.Fatalf("transcript lacks the key fingerprint or token identity: %+v", body)
	}

	// A non-extractable key cannot be backed up.
	nf, _ := ceremonyFile(t, "backup.yaml", map[string]string{"LABEL": src, "KEYS": "login-decrypt"})
	if r := runApproved(t, []string{"backup"}, nf); r.code != exitFailed || !strings.Contains(r.stderr, "cannot be backed up") {
		t.Fatalf("backup of a non-extractable key: %v", r)
	}

	bf, bout := ceremonyFile(t, "backup.yaml", map[string]string{"LABEL": src, "KEYS": "receipt-signer, bank-kek"})
	mustRun(t, []string{"backup"}, bf, bout)
	backup := filepath.Join(bout, "backup.json")
	sharePath := func(i int) string { return filepath.Join(bout, fmt.Sprintf("share-%d.txt", i)) }
	for i := 1; i <= 5; i++ {
		st, err := os.Stat(sharePath(i))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("share %d: %v %v", i, err, st)
		}
	}
	for _, f := range []string{backup, filepath.Join(bout, "transcript", "transcript.json"), filepath.Join(bout, "transcript", "transcript.md")} {
		data, _ := os.ReadFile(f)
		for i := 1; i <= 5; i++ {
			sh, _ := readShare(sharePath(i))
			if bytes.Contains(data, []byte(hex.EncodeToString(sh.value))) || bytes.Contains(data, []byte(strings.ToUpper(hex.EncodeToString(sh.value[:2])+" "))) {
				t.Fatalf("%s holds share %d", f, i)
			}
		}
	}
	// A second backup, whose shares must not mix with the first.
	of, oout := ceremonyFile(t, "backup.yaml", map[string]string{"LABEL": src, "KEYS": "receipt-signer"})
	mustRun(t, []string{"backup"}, of, oout)

	restore := func(shares ...string) (result, string, string) {
		dr := initToken(t, "dr")
		rf, rout := ceremonyFile(t, "restore.yaml", map[string]string{"LABEL": dr, "BACKUP": backup, "SHARES": strings.Join(shares, ", ")})
		return runApproved(t, []string{"restore"}, rf), dr, rout
	}
	for _, set := range [][]int{{1, 2, 3}, {1, 3, 5}, {5, 4, 2}} {
		var shares []string
		for _, i := range set {
			shares = append(shares, sharePath(i))
		}
		r, dr, rout := restore(shares...)
		if r.code != 0 {
			t.Fatalf("restore with shares %v: %v", set, r)
		}
		if v := verifyPinned(t, filepath.Join(rout, "transcript", "transcript.json")); v.code != 0 {
			t.Fatalf("restore transcript: %v", v)
		}
		// From this process: the restored key signs, and the signature
		// verifies with the ORIGINAL public key; it is not extractable.
		p := testPool(t, dr, userPIN)
		k, err := p.FindKey(context.Background(), "receipt-signer")
		if err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256([]byte("dr check"))
		sig, err := p.Sign(context.Background(), k, d[:], crypto.SHA256, nil)
		if err != nil || !ecdsa.VerifyASN1(origPub.(*ecdsa.PublicKey), d[:], sig) {
			t.Fatalf("restored key's signature does not verify with the original public key: %v", err)
		}
		kek, err := p.FindKey(context.Background(), "bank-kek")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.WrapKey(context.Background(), kek, k); !errors.Is(err, pkcs11shim.ErrKeyUnextractable) {
			t.Fatalf("restored key can be wrapped out: %v", err)
		}
	}

	// Failures, each before anything is written to the DR token.
	corrupt := filepath.Join(t.TempDir(), "corrupt.txt")
	data, _ := os.ReadFile(sharePath(3))
	i := bytes.Index(data, []byte(shareBegin)) + len(shareBegin) + 3
	data[i] = map[bool]byte{true: 'A', false: 'B'}[data[i] != 'A']
	os.WriteFile(corrupt, data, 0o600)
	for _, tc := range []struct {
		name   string
		shares []string
		want   string
	}{
		{"two shares", []string{sharePath(1), sharePath(4)}, "2 shares given; this backup needs 3"},
		{"corrupted share", []string{sharePath(1), sharePath(2), corrupt}, "checksum mismatch"},
		{"share of another backup", []string{sharePath(1), sharePath(2), filepath.Join(oout, "share-3.txt")}, "belongs to backup"},
		{"same share twice", []string{sharePath(1), sharePath(2), sharePath(2)}, "hold the same share"},
	} {
		r, dr, _ := restore(tc.shares...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Fatalf("%s: want failure %q, got %v", tc.name, tc.want, r)
		}
		if n, err := testPool(t, dr, userPIN).ListTokenObjects(context.Background()); err != nil || len(n) != 5 { // ceremony-audit pair and the three officers' roster keys
			t.Fatalf("%s: DR token changed: %v %v", tc.name, n, err)
		}
	}
}

func TestTranscriptTamper(t *testing.T) {
	setup(t)
	label := newLabel("tr")
	f, out := ceremonyFile(t, "init.yaml", map[string]string{"LABEL": label})
	r := mustRun(t, []string{"token", "init"}, f, out, "--yes")
	path := filepath.Join(out, "transcript", "transcript.json")
	raw, _ := os.ReadFile(path)
	for _, tc := range []struct{ name, old, new string }{
		{"officer renamed", `"Bob Lee"`, `"Mallory"`},
		{"result changed", `"result": "ok"`, `"result": "ok "`},
	} {
		edited := strings.Replace(string(raw), tc.old, tc.new, 1)
		if edited == string(raw) {
			t.Fatalf("%s: nothing replaced", tc.name)
		}
		p := filepath.Join(t.TempDir(), "t.json")
		os.WriteFile(p, []byte(edited), 0o600)
		if v := verifyPinned(t, p); v.code != exitVerify || !strings.Contains(v.stderr, "was changed") {
			t.Fatalf("%s not detected: %v", tc.name, v)
		}
	}
	// Hash recomputed by the forger: the signature fails.
	var env envelope
	json.Unmarshal(raw, &env)
	var compact bytes.Buffer
	json.Compact(&compact, env.Body)
	forged := bytes.Replace(compact.Bytes(), []byte(`"Bob Lee"`), []byte(`"Mallory"`), 1)
	h := sha256.Sum256(forged)
	env.Body, env.BodySHA256 = forged, hex.EncodeToString(h[:])
	fb, _ := json.Marshal(env)
	p := filepath.Join(t.TempDir(), "f.json")
	os.WriteFile(p, fb, 0o600)
	if v := verifyPinned(t, p); v.code != exitVerify || !strings.Contains(v.stderr, "signature does not verify") {
		t.Fatalf("re-hashed forgery not detected: %v", v)
	}
	// -pubkey pins the signer.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	op := filepath.Join(t.TempDir(), "other.pem")
	os.WriteFile(op, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	if v := runBin(t, "transcript", "verify", path, "-pubkey", op); v.code != exitVerify {
		t.Fatalf("another signer accepted: %v", v)
	}
	// The printed PEM is the signer.
	i := strings.Index(r.stdout, "-----BEGIN PUBLIC KEY-----")
	j := strings.Index(r.stdout, "-----END PUBLIC KEY-----")
	mp := filepath.Join(t.TempDir(), "mine.pem")
	os.WriteFile(mp, []byte(r.stdout[i:j+len("-----END PUBLIC KEY-----")]+"\n"), 0o600)
	if v := runBin(t, "transcript", "verify", "-pubkey", mp, path); v.code != 0 {
		t.Fatalf("printed signer key: %v", v)
	}
	// No PIN in any transcript.
	md, _ := os.ReadFile(filepath.Join(out, "transcript", "transcript.md"))
	for _, pin := range []string{soPart1, soPart2, userPIN, soPart1 + soPart2} {
		if bytes.Contains(raw, []byte(pin)) || bytes.Contains(md, []byte(pin)) {
			t.Fatal("a PIN is in the transcript")
		}
	}
}

func TestUnlockDualControl(t *testing.T) {
	setup(t)
	label := initToken(t, "ul")
	// One officer holding both parts is refused before anything opens.
	bad, _ := ceremonyFile(t, "unlock.yaml", map[string]string{"LABEL": label, "OFFICER2": "Alice Wong", "PART2": "so-part2"})
	if r := runBin(t, "unlock", "-f", bad); r.code != exitUsage || !strings.Contains(r.stderr, "two different officers") {
		t.Fatalf("single officer: %v", r)
	}
	// A wrong second part fails at the token.
	wf, _ := ceremonyFile(t, "unlock.yaml", map[string]string{"LABEL": label, "OFFICER2": "Bob Lee", "PART2": "wrong-part"})
	if r := runApproved(t, []string{"unlock"}, wf); r.code != exitFailed || !strings.Contains(r.stderr, "unlock") {
		t.Fatalf("wrong SO part: %v", r)
	}
	f, out := ceremonyFile(t, "unlock.yaml", map[string]string{"LABEL": label, "OFFICER2": "Bob Lee", "PART2": "so-part2"})
	// The guard has the user PIN locked, as keysvc leaves it after too many wrong PINs.
	store, err := token.OpenBoltStore(guardPath)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := token.NewGuard(store, token.MaxPINAttempts)
	p := testPool(t, label, userPIN)
	id := token.PINID(p.Info(), pkcs11shim.UserNormal)
	p.Close()
	if err := g.MarkLocked(id, "test"); err != nil {
		t.Fatal(err)
	}
	store.Close()
	mustRun(t, []string{"unlock"}, f, out)
	store, _ = token.OpenBoltStore(guardPath)
	defer store.Close()
	if st, _ := store.Get(id); st.Locked {
		t.Fatalf("guard still locked: %+v", st)
	}
	testPool(t, label, newPIN).Close() // the new PIN works; closing logs out before the old PIN is tried
	mod, _ := pkcs11shim.OpenModule(modPath)
	defer mod.Close()
	if err := mod.CheckLogin(pkcs11shim.Selector{Label: label}, pkcs11shim.UserNormal, []byte(userPIN)); !errors.Is(err, pkcs11shim.ErrPINIncorrect) {
		t.Fatalf("old user PIN still works: %v", err)
	}
}

func TestZeroize(t *testing.T) {
	setup(t)
	officers := initToken(t, "officers")
	victim := initToken(t, "zz")
	kf, kout := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": victim})
	mustRun(t, []string{"keygen"}, kf, kout)
	// --yes without the phrase in the file: refused, nothing destroyed.
	nf, _ := ceremonyFile(t, "zeroize.yaml", map[string]string{"LABEL": victim, "SIGNER": officers, "CONFIRM": `""`})
	if r := runApproved(t, []string{"zeroize"}, nf, "--yes"); r.code != exitDeclined || !strings.Contains(r.stderr, "confirmation") {
		t.Fatalf("zeroize without the phrase: %v", r)
	}
	// No terminal and no --yes: refused.
	nf, _ = ceremonyFile(t, "zeroize.yaml", map[string]string{"LABEL": victim, "SIGNER": officers, "CONFIRM": `""`})
	if r := runApproved(t, []string{"zeroize"}, nf); r.code != exitDeclined || !strings.Contains(r.stderr, "terminal") {
		t.Fatalf("zeroize without a terminal: %v", r)
	}
	if objs, _ := testPool(t, victim, userPIN).ListTokenObjects(context.Background()); len(objs) < 6 {
		t.Fatalf("objects destroyed without confirmation: %v", objs)
	}
	f, out := ceremonyFile(t, "zeroize.yaml", map[string]string{"LABEL": victim, "SIGNER": officers, "CONFIRM": "ZEROIZE " + victim})
	mustRun(t, []string{"zeroize"}, f, out, "--yes")
	wantReinitialised(t, victim, "") // zeroize_test.go
	body, _ := verifyTranscript(filepath.Join(out, "transcript", "transcript.json"), nil)
	if body.Signer.Token.Label != officers {
		t.Fatalf("zeroize transcript signed by %s", body.Signer.Token.Label)
	}
}

func TestAuditVerify(t *testing.T) {
	setup(t)
	officers := initToken(t, "aud")
	f, out := ceremonyFile(t, "audit-verify.yaml", map[string]string{"SIGNER": officers})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	store, err := boltstore.Open(filepath.Join(out, "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		store.Audit(&audit.Record{Time: time.Now(), Client: "banking", Key: "k", Version: 1, Op: "sign", Result: "ok"})
	}
	seq, hash, _ := store.LastAudit()
	cp, _ := audit.SignCheckpoint(key, nil, seq, hash, time.Now())
	store.AddCheckpoint(cp)
	store.Close()
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	os.WriteFile(filepath.Join(out, "audit-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	r := mustRun(t, []string{"audit", "verify"}, f, out)
	if !strings.Contains(r.stdout, "audit chain ok: 5 records, 1 signed checkpoints") {
		t.Fatalf("audit verify: %v", r)
	}
	// Under another key the checkpoint fails: exit 4.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ = x509.MarshalPKIXPublicKey(&other.PublicKey)
	f2, out2 := ceremonyFile(t, "audit-verify.yaml", map[string]string{"SIGNER": officers})
	os.Rename(filepath.Join(out, "keysvc.db"), filepath.Join(out2, "keysvc.db"))
	os.WriteFile(filepath.Join(out2, "audit-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	if r := runBin(t, "audit", "verify", "-f", f2); r.code != exitVerify {
		t.Fatalf("audit verify under another key: %v", r)
	}
}

// TestRotateScheduleDestroy drives keysvc's admin API client against a
// stand-in HTTP endpoint (the real API is tested in keysvc).
func TestRotateScheduleDestroy(t *testing.T) {
	setup(t)
	officers := initToken(t, "rot")
	var mu sync.Mutex
	primary := 1
	var destroyAt time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer admin-secret" {
			http.Error(w, `{"error":"unauthenticated"}`, http.StatusUnauthorized)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == "POST" && r.URL.Path == "/v1/keys/receipt-signer/rotate":
			primary++
		case r.Method == "POST" && r.URL.Path == "/v1/keys/receipt-signer/versions/1/schedule-destroy":
			var req wire.ScheduleDestroyRequest
			json.NewDecoder(r.Body).Decode(&req)
			destroyAt = time.Now().Add(time.Duration(req.Delay))
		case r.Method == "GET" && r.URL.Path == "/v1/keys/receipt-signer":
		default:
			http.NotFound(w, r)
			return
		}
		v := wire.KeyView{Name: "receipt-signer", Algorithm: "ecdsa-p256", Primary: primary}
		for i := 1; i <= primary; i++ {
			vv := wire.VersionView{Version: i}
			if i == 1 && !destroyAt.IsZero() {
				d := destroyAt
				vv.DestroyAt = &d
			}
			v.Versions = append(v.Versions, vv)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}))
	defer srv.Close()
	f, out := ceremonyFile(t, "rotate.yaml", map[string]string{"SIGNER": officers, "URL": srv.URL})
	mustRun(t, []string{"rotate"}, f, out)
	if primary != 2 {
		t.Fatalf("primary %d after rotate", primary)
	}
	f, out = ceremonyFile(t, "schedule-destroy.yaml", map[string]string{"SIGNER": officers, "URL": srv.URL})
	if r := runBin(t, "schedule-destroy", "-f", f); r.code != exitDeclined {
		t.Fatalf("schedule-destroy without confirmation: %v", r)
	}
	f, out = ceremonyFile(t, "schedule-destroy.yaml", map[string]string{"SIGNER": officers, "URL": srv.URL})
	mustRun(t, []string{"schedule-destroy"}, f, out, "--yes")
	if d := time.Until(destroyAt); d < 719*time.Hour || d > 721*time.Hour {
		t.Fatalf("destroy at %v", destroyAt)
	}
}

// checkSO logs in as the SO once.
func checkSO(label, pin string) error {
	mod, err := pkcs11shim.OpenModule(modPath)
	if err != nil {
		return err
	}
	defer mod.Close()
	return mod.CheckLogin(pkcs11shim.Selector{Label: label}, pkcs11shim.UserSO, []byte(pin))
}
