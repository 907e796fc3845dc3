package banking_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"image/png"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/banking"
	"github.com/keyward/keyward/banking/internal/captchahook"
)

// bankcliProc runs the real bankcli binary against a unit bank over TLS.
type bankcliProc struct {
	bin, dir string
	env      []string // without any LANG/LC_*: each run says its language
}

// newBankcliProc builds cmd/bankcli and puts a TLS front (the test's own
// certificate, written as bankcli's -ca) before ub's plain-HTTP API.
func newBankcliProc(t *testing.T, ub *unitBank) *bankcliProc {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bankcli")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/keyward/keyward/cmd/bankcli").CombinedOutput(); err != nil {
		t.Fatalf("building bankcli: %v\n%s", err, out)
	}
	target, _ := url.Parse(ub.url)
	front := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(target))
	t.Cleanup(front.Close)
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LANG=") && !strings.HasPrefix(kv, "LC_") && !strings.HasPrefix(kv, "LANGUAGE=") {
			env = append(env, kv)
		}
	}
	env = append(env, "BANKCLI_URL="+front.URL, "BANKCLI_CA="+ca, "HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, ".config"))
	return &bankcliProc{bin: bin, dir: dir, env: env}
}

// run runs bankcli with extra environment (secrets by -…-env, the
// language) and no terminal; it returns stdout, stderr and the exit code.
func (p *bankcliProc) run(t *testing.T, extraEnv []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, args...)
	cmd.Dir, cmd.Env = p.dir, append(append([]string(nil), p.env...), extraEnv...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return o.String(), e.String(), 0
	case errors.As(err, &ee) && ee.Exited():
		return o.String(), e.String(), ee.ExitCode()
	}
	t.Fatalf("bankcli %v: %v\n%s", args, err, e.String())
	return "", "", -1
}

// TestUnitBankcliScriptLogin (issue 18 item 6): bankcli login in a script,
// where the SMS code cannot be known before it is sent. The login exits 3
// with the session saved and the step-up open; the script reads the code
// from its SMS source (the dev outbox) and runs bankcli stepup -code-env.
// With no LANG, bankcli and the bank's messages are Chinese; an error
// names the code and the request id.
func TestUnitBankcliScriptLogin(t *testing.T) {
	ub := newUnitBank(t)
	cli := newBankcliProc(t, ub)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	sess := filepath.Join(cli.dir, "s", "bankcli.session")
	pw := []string{"BANKCLI_PW=" + password}

	out, errOut, code := cli.run(t, pw, "login", "-login", ana.login, "-device", "laptop-1", "-os", "Debian 12", "-password-env", "BANKCLI_PW", "-session-file", sess)
	if code != 3 || !strings.Contains(out, "您的预留防伪信息：蓝色海豚\n") || !strings.Contains(out, "本次登录需要短信验证码") ||
		!strings.Contains(errOut, "请用 bankcli stepup 完成验证") {
		t.Fatalf("login at the step-up: exit %d, want 3\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	var saved struct {
		StepUp bool `json:"step_up"`
	}
	raw, err := os.ReadFile(sess)
	if err != nil || json.Unmarshal(raw, &saved) != nil || !saved.StepUp {
		t.Fatalf("session saved at the step-up: %v %s", err, raw)
	}
	_, errOut, code = cli.run(t, nil, "accounts", "-session-file", sess)
	if code != 1 || !strings.Contains(errOut, "本次登录来自新的设备或网络，请先输入短信验证码（step_up_required, HTTP 403, 请求编号 ") {
		t.Fatalf("accounts before the step-up: exit %d\nstderr: %s", code, errOut)
	}

	smsCode := ub.code(t, ana.phone) // the script's SMS source
	m, _ := ub.outbox.Last(ana.phone)
	if !strings.Contains(m.Text, "用于登录确认") || !strings.Contains(m.Text, "请勿向任何人（包括银行工作人员）透露验证码") {
		t.Fatalf("the SMS: %q", m.Text)
	}
	out, errOut, code = cli.run(t, []string{"SMS_CODE=" + smsCode}, "stepup", "-code-env", "SMS_CODE", "-session-file", sess)
	if code != 0 || out != "短信验证已完成。\n" {
		t.Fatalf("stepup: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	out, errOut, code = cli.run(t, nil, "accounts", "-session-file", sess)
	if code != 0 || !strings.Contains(out, "账号") || !strings.Contains(out, "CNY") {
		t.Fatalf("accounts after the step-up: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	// the same in English when LANG says so
	out, _, code = cli.run(t, []string{"LANG=en_US.UTF-8"}, "accounts", "-session-file", sess)
	if code != 0 || !strings.Contains(out, "ACCOUNT") {
		t.Fatalf("accounts in English: exit %d\n%s", code, out)
	}
}

// TestUnitBankcliCaptcha: after three failed logins bankcli's next login
// gets captcha_required, saves the image (0600) beside the session and,
// with no terminal, exits 4; the script answers with -captcha-env and
// the login goes through. English here (LANG=en_US.UTF-8).
func TestUnitBankcliCaptcha(t *testing.T) {
	defer captchahook.Record()()
	ub := newUnitBank(t)
	cli := newBankcliProc(t, ub)
	ana := ub.enrol(t, enrolment{login: "ana.li", name: "Ana Li", phone: "13800001111"})
	ub.login(t, ana, "laptop-1") // a known device: no step-up below
	sessDir := filepath.Join(cli.dir, "s")
	sess := filepath.Join(sessDir, "bankcli.session")
	en := "LANG=en_US.UTF-8"
	captchaAnswer := "000000"
	login := func(pwEnv string, more ...string) (string, string, int) {
		return cli.run(t, []string{en, "GOOD_PW=" + password, "BAD_PW=" + wrongPassword, "CAPTCHA=" + captchaAnswer},
			append([]string{"login", "-login", ana.login, "-device", "laptop-1", "-os", "Android 14", "-password-env", pwEnv, "-session-file", sess}, more...)...)
	}
	for i := range banking.DefaultCaptchaAfter {
		if _, errOut, code := login("BAD_PW"); code != 1 || !strings.Contains(errOut, "wrong login or password (login_failed, HTTP 401, request id ") {
			t.Fatalf("wrong password %d: exit %d\n%s", i+1, code, errOut)
		}
	}
	_, errOut, code := login("GOOD_PW")
	if code != 4 || !strings.Contains(errOut, "A captcha is needed") || !strings.Contains(errOut, "-captcha-env") {
		t.Fatalf("login needing a captcha: exit %d, want 4\n%s", code, errOut)
	}
	id, err := os.ReadFile(filepath.Join(sessDir, "captcha.pending"))
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(sessDir, "captcha-"+strings.TrimSpace(string(id))+".png")
	st, err := os.Stat(img)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("captcha image: %v %v", err, st)
	}
	f, _ := os.Open(img)
	_, err = png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatalf("the saved image is not a PNG: %v", err)
	}
	answer, ok := captchahook.Answer(strings.TrimSpace(string(id)))
	if !ok {
		t.Fatal("no answer recorded for the saved captcha")
	}
	captchaAnswer = answer
	out, errOut, code := login("GOOD_PW", "-captcha-env", "CAPTCHA")
	if code != 0 || !strings.Contains(out, "Logged in as ana.li") {
		t.Fatalf("login with the captcha: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if _, err := os.Stat(img); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the used captcha's image is still there: %v", err)
	}
	// the answer was spent: again with it is refused, and nothing waits
	if _, errOut, code := login("GOOD_PW", "-captcha-env", "CAPTCHA"); code != 2 || !strings.Contains(errOut, "no captcha is waiting") {
		t.Fatalf("a second -captcha-env with nothing saved: exit %d\n%s", code, errOut)
	}
}
