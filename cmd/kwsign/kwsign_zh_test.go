//go:build linux

package main

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/keyward/keyward/token"
)

// The Chinese holder: zh_CN.UTF-8, and a locale that names no language
// (C, unset), both get Chinese, the bank's default.

// TestSignChinese: the display in Chinese with the amounts in capitals,
// the question answered 是, the PIN prompt and the summary in Chinese,
// and the signature verifies over the file's bytes.
func TestSignChinese(t *testing.T) {
	key := newUSBKey(t)
	for _, locale := range []string{"zh_CN.UTF-8", "C.UTF-8", ""} {
		t.Run("LANG="+locale, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "tx.sig")
			s := startIn(t, locale, key.args(dir, "-in", painSample, "-out", out, "-timeout", "30s")...)
			s.expect("输入“是”（或 y）签署")
			shown := s.output()
			for _, want := range []string{
				`待签署的交易："` + painSample + `"`,
				"共 2 笔转账，合计 人民币 6,234.50",
				"合计大写：陆仟贰佰叁拾肆元伍角整",
				"第 1/2 笔：向 李雷（6222 0200 1234 5678，ICBC Beijing）支付 人民币 1,234.50",
				"第 1/2 笔：大写：壹仟贰佰叁拾肆元伍角整",
				"第 2/2 笔：用途：服务费 2026年2月",
				"文件的 SHA-256：",
				`签名密钥："` + keyLabel + `"，在 USB 密钥 "` + key.info.Label + `"`,
			} {
				if !strings.Contains(shown, want) {
					t.Errorf("display lacks %q:\n%s", want, shown)
				}
			}
			if strings.Contains(shown, "Pay ") || strings.Contains(shown, "Type yes") {
				t.Errorf("English in the Chinese display:\n%s", shown)
			}
			s.send("是\n")
			s.expect("USB 密钥 PIN（输入时不显示）：")
			s.send(userPIN + "\n")
			r := s.wait()
			if r.code != exitSigned {
				t.Fatalf("exit %d, want 0; output:\n%s", r.code, r.out)
			}
			data := mustRead(t, painSample)
			digest := sha256.Sum256(data)
			if !strings.Contains(r.out, "签署 "+strconv.Itoa(len(data))+" 字节") {
				t.Errorf("no Chinese summary:\n%s", r.out)
			}
			if !ecdsa.VerifyASN1(key.pub, digest[:], mustRead(t, out)) {
				t.Fatal("the signature does not verify over SHA-256 of the file bytes")
			}
		})
	}
}

// TestDeclinedChinese: 是, y and yes sign in Chinese; anything else
// refuses, in Chinese, with no PIN asked.
func TestDeclinedChinese(t *testing.T) {
	key := newUSBKey(t)
	for _, tc := range []struct {
		typed string
		signs bool
	}{
		{"否\n", false}, {"\n", false}, {"Y\n", false}, {"是的\n", false}, {"好\n", false},
		{"y\n", true}, {" 是 \n", true}, {"yes\n", true},
	} {
		t.Run(fmt.Sprintf("%q", tc.typed), func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "tx.sig")
			s := startIn(t, "zh_CN.UTF-8", key.args(dir, "-in", transferSample, "-out", out, "-timeout", "15s")...)
			s.expect("签署，其他任何输入均为拒绝")
			s.send(tc.typed)
			if tc.signs {
				s.expect("USB 密钥 PIN（输入时不显示）：")
				s.send("\x03") // the question was answered yes; stop here
				r := s.wait()
				if r.code != exitDeclined || !strings.Contains(r.out, "已中断；未签署任何内容") {
					t.Fatalf("exit %d; output:\n%s", r.code, r.out)
				}
				return
			}
			r := s.wait()
			if r.code != exitDeclined || !strings.Contains(r.out, "持有人已拒绝；未签署任何内容") {
				t.Fatalf("exit %d, want %d; output:\n%s", r.code, exitDeclined, r.out)
			}
			if strings.Contains(r.out, "PIN（") {
				t.Errorf("PIN asked after a refusal:\n%s", r.out)
			}
			assertNoFile(t, out)
			if st := guardState(t, filepath.Join(dir, "guard.db"), key); st != (token.PINState{}) {
				t.Errorf("a login was attempted after a refusal: %+v", st)
			}
		})
	}
}

// TestWrongPINChinese: a wrong PIN says the attempts left in Chinese.
func TestWrongPINChinese(t *testing.T) {
	key := newUSBKey(t)
	dir := t.TempDir()
	s := startIn(t, "zh_CN.UTF-8", key.args(dir, "-in", transferSample)...)
	s.expect("签署，其他任何输入均为拒绝")
	s.send("是\n")
	s.expect("USB 密钥 PIN（输入时不显示）：")
	s.send(wrongPIN + "\n")
	r := s.wait()
	if r.code != exitWrongPIN || !strings.Contains(r.out, fmt.Sprintf("PIN 错误：USB 密钥锁定前还可尝试 %d 次；未签署任何内容", token.MaxPINAttempts-1)) {
		t.Fatalf("exit %d, want %d; output:\n%s", r.code, exitWrongPIN, r.out)
	}
}

// TestUsageChinese: a refusal before anything is shown is Chinese too.
func TestUsageChinese(t *testing.T) {
	setup(t)
	cmd := exec.Command(binPath, "-module", modPath, "-token", "nope", "-key", keyLabel, "-in", painSample,
		"-state", filepath.Join(t.TempDir(), "guard.db"))
	cmd.Env = withLocale("zh_CN.UTF-8")
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != exitUsage || !strings.Contains(string(out), "标准输入不是终端：请在终端运行 kwsign，确认需要有人操作；未签署任何内容") {
		t.Fatalf("exit %d; output:\n%s", cmd.ProcessState.ExitCode(), out)
	}
}

// TestCatalogue: every text kwsign shows (exitf, tf, txt and the errors
// whose texts are keys) has its Chinese, and the catalogue holds no text
// nothing uses.
func TestCatalogue(t *testing.T) {
	lit := `("(?:[^"\\]|\\.)*")`
	re := regexp.MustCompile(`(?:\bexitf\(\w+, |\btf\(|\btxt\(|errors\.New\(|nothingSigned = )` + lit)
	uses := map[string]bool{}
	for _, f := range []string{"main.go", "tty_linux.go", "tty_other.go"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			k, err := strconv.Unquote(m[1])
			if err != nil {
				t.Fatal(err)
			}
			uses[k] = true
		}
	}
	// Errors that are never shown as such (their callers say it).
	delete(uses, "line too long")
	delete(uses, "terminal wait ended")
	keys := make([]string, 0, len(uses))
	for k := range uses {
		keys = append(keys, k)
	}
	if len(keys) < 40 {
		t.Fatalf("found only %d texts: the scan is broken", len(keys))
	}
	if u := texts.Untranslated(keys...); len(u) > 0 {
		t.Errorf("texts without Chinese: %q", u)
	}
	for _, k := range texts.Keys() {
		if !uses[k] {
			t.Errorf("catalogue text %q is used nowhere", k)
		}
	}
}
