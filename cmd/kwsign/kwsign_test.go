//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// These tests build kwsign, run it under a real pseudo-terminal against a
// throwaway SoftHSM2 token in a removable slot (an emulated USB key), and
// type at it like a holder would. No mocks.

const (
	soPIN = "so-secret-8842"
	// The PINs hold '#' and '!', which appear in neither hex nor base64:
	// if they show up in the terminal output, they were echoed.
	userPIN  = "Pk#4829!w"
	wrongPIN = "Wr#0ng!pin"
	keyLabel = "holder-sign"

	painSample     = "../../token/txformat/testdata/pain001_sample.xml"
	transferSample = "../../token/txformat/testdata/transfer_sample.json"
)

var (
	confPath string // SoftHSM2 config with slots.removable = true, made by TestMain

	setupOnce sync.Once
	setupErr  error
	binPath   string
	modPath   string
	module    *pkcs11shim.Module // this process's handle, to create tokens
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kwsign-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tokens := filepath.Join(dir, "tokens")
	confPath = filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = true\nslots.mechanisms = ALL\nlibrary.reset_on_fork = false\n", tokens)
	if err := errors.Join(os.Mkdir(tokens, 0o700), os.WriteFile(confPath, []byte(body), 0o600)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("SOFTHSM2_CONF", confPath) // this process and every kwsign it starts
	code := m.Run()
	if module != nil {
		module.Close()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// needSoftHSM returns the SoftHSM2 library, skipping the test without it,
// or failing it under CI=true.
func needSoftHSM(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KEYWARD_PKCS11_MODULE"); p != "" {
		return p
	}
	p, err := token.FindSoftHSM()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("SoftHSM2 is required under CI=true: install it with apt-get install -y softhsm2 (%v)", err)
		}
		t.Skip("SoftHSM2 not found: install it with apt-get install -y softhsm2")
	}
	return p
}

// setup builds kwsign once and opens the module in this process.
func setup(t *testing.T) {
	t.Helper()
	mod := needSoftHSM(t)
	setupOnce.Do(func() {
		modPath = mod
		binPath = filepath.Join(filepath.Dir(confPath), "kwsign")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			setupErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		module, setupErr = pkcs11shim.OpenModule(modPath)
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

// usbKey is a fresh SoftHSM token in a removable slot holding an EC P-256
// key with CKA_ALWAYS_AUTHENTICATE, like a personalised USB key.
type usbKey struct {
	info pkcs11shim.TokenInfo
	pub  *ecdsa.PublicKey
}

func newUSBKey(t *testing.T) *usbKey {
	t.Helper()
	setup(t)
	b := make([]byte, 6)
	rand.Read(b)
	label := "kws-" + hex.EncodeToString(b)
	info, err := module.InitToken("", []byte(soPIN), label)
	if err != nil {
		t.Fatalf("InitToken: %v", err)
	}
	if !info.Flags.Removable {
		t.Fatalf("token %s is not in a removable slot: %+v", label, info.Flags)
	}
	sel := pkcs11shim.Selector{Label: label}
	if err := module.InitPIN(sel, []byte(soPIN), []byte(userPIN)); err != nil {
		t.Fatalf("InitPIN: %v", err)
	}
	ctx := context.Background()
	pool, err := pkcs11shim.NewPool(ctx, module, pkcs11shim.PoolConfig{Selector: sel, MaxSessions: 2,
		Authenticate: func(_ context.Context, login pkcs11shim.LoginFunc) error { return login([]byte(userPIN)) }})
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	defer pool.Close()
	k, err := pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: keyLabel, AlwaysAuthenticate: true})
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	pub, err := pool.PublicKey(ctx, k)
	if err != nil {
		t.Fatalf("PublicKey: %v", err)
	}
	return &usbKey{info: info, pub: pub.(*ecdsa.PublicKey)}
}

// args are kwsign's usual flags for this key, then extra.
func (k *usbKey) args(dir string, extra ...string) []string {
	return append([]string{"-module", modPath, "-token", k.info.Label, "-key", keyLabel,
		"-state", filepath.Join(dir, "guard.db")}, extra...)
}

// session is kwsign running under a pseudo-terminal.
type session struct {
	t         *testing.T
	cmd       *exec.Cmd
	ptmx, tty *os.File
	started   time.Time

	mu  sync.Mutex
	out []byte

	readDone, exited chan struct{}
}

// english is the locale of the tests that assert English texts; kwsign
// speaks Chinese when the locale names no language (the bank's default).
const english = "en_US.UTF-8"

// start runs kwsign in English (LANG=en_US.UTF-8); startIn in locale.
func start(t *testing.T, args ...string) *session {
	t.Helper()
	return startIn(t, english, args...)
}

// withLocale is the test's environment with the locale variables set to
// locale only (LC_ALL and LC_MESSAGES emptied, so LANG decides).
func withLocale(locale string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LANG=") && !strings.HasPrefix(kv, "LC_ALL=") && !strings.HasPrefix(kv, "LC_MESSAGES=") {
			env = append(env, kv)
		}
	}
	return append(env, "LANG="+locale)
}

func startIn(t *testing.T, locale string, args ...string) *session {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binPath, args...)
	cmd.Env = withLocale(locale)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	s := &session{t: t, cmd: cmd, ptmx: ptmx, tty: tty, started: time.Now(), readDone: make(chan struct{}), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.readDone)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			s.mu.Lock()
			s.out = append(s.out, buf[:n]...)
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = cmd.Process.Kill()
			<-s.exited
		}
		tty.Close()
		ptmx.Close()
	})
	return s
}

func (s *session) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.out)
}

// expect waits until the output contains want.
func (s *session) expect(want string) {
	s.t.Helper()
	deadline := time.After(15 * time.Second)
	for !strings.Contains(s.output(), want) {
		select {
		case <-s.exited:
			time.Sleep(100 * time.Millisecond) // let the reader catch up
			if strings.Contains(s.output(), want) {
				return
			}
			s.t.Fatalf("kwsign exited without printing %q; output:\n%s", want, s.output())
		case <-deadline:
			s.t.Fatalf("no %q after 15s; output:\n%s", want, s.output())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *session) send(text string) {
	s.t.Helper()
	if _, err := s.ptmx.Write([]byte(text)); err != nil {
		s.t.Fatal(err)
	}
}

// result is how a kwsign run ended.
type result struct {
	code     int
	out      string
	elapsed  time.Duration
	echoOn   bool   // the terminal's echo after kwsign exited
	leftover string // what a program reading the terminal after kwsign gets when a newline is typed
}

// wait waits for kwsign to exit, then inspects the terminal it leaves
// behind, then collects all of its output.
func (s *session) wait() result {
	s.t.Helper()
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		s.t.Fatalf("kwsign still running after 20s; output:\n%s", s.output())
	}
	r := result{code: s.cmd.ProcessState.ExitCode(), elapsed: time.Since(s.started)}
	tio, err := unix.IoctlGetTermios(int(s.tty.Fd()), unix.TCGETS)
	if err != nil {
		s.t.Fatal(err)
	}
	r.echoOn = tio.Lflag&unix.ECHO != 0
	// Whatever kwsign left unread in the terminal would go to the shell.
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 512)
		n, _ := s.tty.Read(buf)
		got <- string(buf[:n])
	}()
	s.send("\n")
	select {
	case r.leftover = <-got:
	case <-time.After(5 * time.Second):
		s.t.Fatal("reading the terminal after kwsign exited: nothing arrived")
	}
	s.tty.Close() // the last slave descriptor: the reader drains and ends
	select {
	case <-s.readDone:
	case <-time.After(5 * time.Second):
		s.t.Fatal("pty reader did not finish")
	}
	r.out = s.output()
	if r.leftover != "\n" {
		s.t.Errorf("input typed during kwsign survived it (a shell would read it): %q", r.leftover)
	}
	if !r.echoOn {
		s.t.Error("kwsign left the terminal with echo off")
	}
	if strings.Contains(r.out, userPIN) || strings.Contains(r.out, wrongPIN) {
		s.t.Errorf("the PIN appears in the terminal output:\n%s", r.out)
	}
	return r
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertNoFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists (err %v): nothing should have been written", path, err)
	}
}

// guardState reads the PIN counter kwsign keeps for key in stateFile.
func guardState(t *testing.T, stateFile string, key *usbKey) token.PINState {
	t.Helper()
	st, err := token.OpenBoltStore(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := st.Get(token.PINID(key.info, pkcs11shim.UserNormal))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Case 1: a pain.001 file is shown, confirmed, the PIN typed without echo,
// and the signature verifies over SHA-256 of exactly the file's bytes.
func TestSignPain001(t *testing.T) {
	key := newUSBKey(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "tx.sig")
	s := start(t, key.args(dir, "-in", painSample, "-out", out, "-timeout", "30s")...)
	s.expect("Type yes")
	shown := s.output()
	for _, want := range []string{"2 transfers, total 6,234.50 CNY", "Pay 1,234.50 CNY to 李雷 (6222 0200 1234 5678) at ICBC Beijing",
		"Pay 5,000.00 CNY to 韩梅梅", "Reference: E2E-20260302-0002", "pain.001.001.09", keyLabel, key.info.Label} {
		if !strings.Contains(shown, want) {
			t.Errorf("display lacks %q:\n%s", want, shown)
		}
	}
	if strings.Contains(shown, "PIN (not shown)") {
		t.Fatal("PIN asked for before the holder confirmed")
	}
	s.send("yes\n")
	s.expect("PIN (not shown): ")
	s.send(userPIN + "\n")
	r := s.wait()
	if r.code != exitSigned {
		t.Fatalf("exit %d, want 0; output:\n%s", r.code, r.out)
	}
	if !regexp.MustCompile(`refuses \([^)]*\): yes\r?\n`).MatchString(r.out) {
		t.Errorf("the answer yes was not echoed (is the pty echoing at all?):\n%s", r.out)
	}
	data := mustRead(t, painSample)
	digest := sha256.Sum256(data)
	if !strings.Contains(r.out, "SHA-256 "+hex.EncodeToString(digest[:])) {
		t.Errorf("summary lacks the SHA-256 of the file bytes:\n%s", r.out)
	}
	sig := mustRead(t, out)
	if !ecdsa.VerifyASN1(key.pub, digest[:], sig) {
		t.Fatal("the signature in -out does not verify over SHA-256 of the file bytes")
	}
	// The same transfer with one more trailing space is other bytes: the
	// signature covers the file, not its meaning.
	other := sha256.Sum256(append(bytes.Clone(data), ' '))
	if ecdsa.VerifyASN1(key.pub, other[:], sig) {
		t.Fatal("the signature also verifies over other bytes")
	}
	if st := guardState(t, filepath.Join(dir, "guard.db"), key); st.Failures != 0 || st.Locked {
		t.Errorf("guard after a right PIN: %+v", st)
	}
}

// The JSON transfer order, the token named by an RFC 7512 URI that also
// names the key, and the signature as base64 on standard output.
func TestSignTransferJSONToStdout(t *testing.T) {
	key := newUSBKey(t)
	dir := t.TempDir()
	uri := fmt.Sprintf("pkcs11:token=%s;serial=%s;object=%s", key.info.Label, key.info.Serial, keyLabel)
	s := start(t, "-module", modPath, "-token", uri, "-state", filepath.Join(dir, "guard.db"), "-in", transferSample)
	s.expect("Type yes")
	if out := s.output(); !strings.Contains(out, "Pay 1,234.50 CNY to 李雷") || !strings.Contains(out, "keyward.transfer.v1") {
		t.Errorf("display:\n%s", out)
	}
	s.send("yes\n")
	s.expect("PIN (not shown): ")
	s.send(userPIN + "\n")
	r := s.wait()
	if r.code != exitSigned {
		t.Fatalf("exit %d, want 0; output:\n%s", r.code, r.out)
	}
	m := regexp.MustCompile(`Signature \(DER ECDSA, base64\):\r?\n([A-Za-z0-9+/=]+)\r?\n`).FindStringSubmatch(r.out)
	if m == nil {
		t.Fatalf("no base64 signature in the output:\n%s", r.out)
	}
	sig, err := base64.StdEncoding.DecodeString(m[1])
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(mustRead(t, transferSample))
	if !ecdsa.VerifyASN1(key.pub, digest[:], sig) {
		t.Fatal("the base64 signature does not verify over SHA-256 of the file bytes")
	}
}

// Case 2: anything but yes refuses; no PIN is asked, nothing is written,
// the token is never logged in to.
func TestDeclined(t *testing.T) {
	key := newUSBKey(t)
	for _, tc := range []struct{ typed, want string }{
		{"no\n", "refused by the holder"},
		{"\n", "refused by the holder"},
		{"YES\n", "refused by the holder"},
		{"yes please\n", "refused by the holder"},
		{"y\n", "refused by the holder"},
		{"\x03", "interrupted"},              // Ctrl-C
		{"\x04", "no answer (end of input)"}, // Ctrl-D
	} {
		t.Run(fmt.Sprintf("%q", tc.typed), func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "tx.sig")
			s := start(t, "-module", modPath, "-token", "serial:"+key.info.Serial, "-key", keyLabel,
				"-state", filepath.Join(dir, "guard.db"), "-in", painSample, "-out", out, "-timeout", "15s")
			s.expect("Type yes")
			s.send(tc.typed)
			r := s.wait()
			if r.code != exitDeclined || !strings.Contains(r.out, tc.want+"; nothing was signed") {
				t.Fatalf("exit %d, want %d with %q; output:\n%s", r.code, exitDeclined, tc.want, r.out)
			}
			if strings.Contains(r.out, "PIN (not shown)") || strings.Contains(r.out, "Signature") {
				t.Errorf("PIN asked or signature printed after a refusal:\n%s", r.out)
			}
			assertNoFile(t, out)
			if st := guardState(t, filepath.Join(dir, "guard.db"), key); st != (token.PINState{}) {
				t.Errorf("a login was attempted after a refusal: %+v", st)
			}
		})
	}
}

// Case 3: files kwsign cannot show are refused before anything is asked,
// and before the token or the PIN counter is touched.
func TestRefusesUnrecognised(t *testing.T) {
	key := newUSBKey(t)
	random := make([]byte, 512)
	rand.Read(random)
	random[0] = 0x89 // neither '{' nor '<' nor white space
	unknownField := strings.Replace(string(mustRead(t, transferSample)), `"nonce"`, `"memo":"also pay Mallory","nonce"`, 1)
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"random bytes", "unrecognised format", random},
		{"JSON with an unknown field", `"memo"`, []byte(unknownField)},
		{"empty", "unrecognised format", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in, out := filepath.Join(dir, "tx"), filepath.Join(dir, "tx.sig")
			if err := os.WriteFile(in, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			r := start(t, key.args(dir, "-in", in, "-out", out)...).wait()
			if r.code != exitRefused || !strings.Contains(r.out, "not a transaction kwsign can show") || !strings.Contains(r.out, tc.want) {
				t.Fatalf("exit %d, want %d mentioning %q; output:\n%s", r.code, exitRefused, tc.want, r.out)
			}
			if strings.Contains(r.out, "Type yes") || strings.Contains(r.out, "PIN") {
				t.Errorf("asked something about a refused file:\n%s", r.out)
			}
			assertNoFile(t, out)
			assertNoFile(t, filepath.Join(dir, "guard.db"))
		})
	}
}

// Case 4: no answer within -timeout: nothing signed, non-zero exit, the
// terminal's echo back on and a half-typed PIN discarded.
func TestTimeout(t *testing.T) {
	key := newUSBKey(t)
	for _, stage := range []string{"question", "PIN"} {
		t.Run(stage, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "tx.sig")
			s := start(t, key.args(dir, "-in", painSample, "-out", out, "-timeout", "2s")...)
			s.expect("Type yes")
			if stage == "PIN" {
				s.send("yes\n")
				s.expect("PIN (not shown): ")
				s.send(userPIN[:4]) // typed, never finished with Enter
			}
			r := s.wait()
			if r.code != exitTimeout || !strings.Contains(r.out, "timed out; nothing was signed") {
				t.Fatalf("exit %d, want %d; output:\n%s", r.code, exitTimeout, r.out)
			}
			if r.elapsed < 2*time.Second || r.elapsed > 6*time.Second {
				t.Errorf("exited after %v with -timeout 2s", r.elapsed)
			}
			if strings.Contains(r.out, userPIN[:4]) || strings.Contains(r.out, "Signature") {
				t.Errorf("output:\n%s", r.out)
			}
			assertNoFile(t, out)
			if st := guardState(t, filepath.Join(dir, "guard.db"), key); st.Failures != 0 {
				t.Errorf("a login was attempted after a timeout: %+v", st)
			}
		})
	}
}

// Case 5: six wrong PINs, each in its own run, lock the key (R-TOK-5); the
// seventh run, ready to type the right PIN, is refused before anything is
// shown. SoftHSM never locks by itself, so the refusal is Keyward's
// persistent counter (-state): the token still accepts the right PIN.
func TestWrongPINsLock(t *testing.T) {
	key := newUSBKey(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "guard.db")
	out := filepath.Join(dir, "tx.sig")
	for i := 1; i <= token.MaxPINAttempts; i++ {
		s := start(t, key.args(dir, "-in", transferSample, "-out", out)...)
		s.expect("Type yes")
		if i > 1 && !strings.Contains(s.output(), fmt.Sprintf("Warning: %d wrong PIN(s) in a row so far", i-1)) {
			t.Errorf("run %d: no warning about %d earlier wrong PINs:\n%s", i, i-1, s.output())
		}
		s.send("yes\n")
		s.expect("PIN (not shown): ")
		s.send(wrongPIN + "\n")
		r := s.wait()
		switch {
		case i < token.MaxPINAttempts && (r.code != exitWrongPIN || !strings.Contains(r.out, fmt.Sprintf("wrong PIN: %d attempt(s) left", token.MaxPINAttempts-i))):
			t.Fatalf("run %d: exit %d, want %d with %d attempts left; output:\n%s", i, r.code, exitWrongPIN, token.MaxPINAttempts-i, r.out)
		case i == token.MaxPINAttempts && (r.code != exitLocked || !strings.Contains(r.out, "now locked")):
			t.Fatalf("run %d: exit %d, want %d (now locked); output:\n%s", i, r.code, exitLocked, r.out)
		}
		assertNoFile(t, out)
	}
	s := start(t, key.args(dir, "-in", transferSample, "-out", out)...)
	r := s.wait()
	if r.code != exitLocked || !strings.Contains(r.out, "is locked") {
		t.Fatalf("seventh run: exit %d, want %d; output:\n%s", r.code, exitLocked, r.out)
	}
	if strings.Contains(r.out, "Type yes") || strings.Contains(r.out, "PIN (not shown)") {
		t.Errorf("a locked key still got a question or a PIN prompt:\n%s", r.out)
	}
	assertNoFile(t, out)
	st := guardState(t, state, key)
	if !st.Locked || st.Failures != token.MaxPINAttempts {
		t.Fatalf("guard state %+v: want locked after exactly %d counted attempts (a seventh C_Login would count a seventh)", st, token.MaxPINAttempts)
	}
	if err := module.CheckLogin(pkcs11shim.Selector{Label: key.info.Label}, pkcs11shim.UserNormal, []byte(userPIN)); err != nil {
		t.Fatalf("the token itself refuses the right PIN (%v): the test would not show Keyward's lock", err)
	}
}

// Refusals before anything is shown: no terminal, stray arguments (which
// may be a PIN, so never repeated), an existing -out.
func TestUsage(t *testing.T) {
	setup(t)
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.sig")
	if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"-module", modPath, "-token", "nope", "-key", keyLabel, "-state", filepath.Join(dir, "guard.db"), "-in", painSample}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"stdin not a terminal", base, "standard input is not a terminal"},
		{"PIN on the command line", append(base, "735511"), "takes flags only"},
		{"existing -out", append(base, "-out", existing), "already exists"},
		{"no -in", base[:len(base)-2], "-in is required"},
		{"URI with pin-source", []string{"-module", modPath, "-token", "pkcs11:token=x?pin-source=file:/tmp/p", "-key", "k", "-in", painSample}, "remove pin-source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binPath, tc.args...) // stdin: /dev/null
			cmd.Env = withLocale(english)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitUsage || !strings.Contains(string(out), tc.want) {
				t.Fatalf("err %v, want exit %d mentioning %q; output:\n%s", err, exitUsage, tc.want, out)
			}
			if strings.Contains(string(out), "735511") {
				t.Errorf("a stray argument was repeated: %s", out)
			}
		})
	}
	if b := mustRead(t, existing); string(b) != "keep me" {
		t.Errorf("existing -out changed: %q", b)
	}
}
