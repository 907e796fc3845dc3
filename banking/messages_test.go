package banking

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/keyward/keyward/banking/auth/bruteforce"
	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/auth/password"
	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/keysvc/wire/httpedge"
	"github.com/keyward/keyward/token/l10n"
)

func hasHan(s string) bool {
	for _, r := range s {
		if unicode.Is(unicode.Han, r) {
			return true
		}
	}
	return false
}

// TestEveryCodeHasChinese walks every code banking can send — its error
// table, the ledger's codes, the edge's own — and fails on one without a
// Chinese text.
func TestEveryCodeHasChinese(t *testing.T) {
	codes := map[string]bool{"rate_limited": true, "ledger_refused": true}
	for _, r := range errorTable {
		codes[r.Code] = true
	}
	for _, c := range ledger.ErrorCodes {
		codes[c.Code] = true
	}
	for _, c := range []string{httpedge.CodeInternal, httpedge.CodeInvalidJSON, httpedge.CodeUnknownField, httpedge.CodeInvalidArgument,
		httpedge.CodeBodyTooLarge, httpedge.CodeUnsupportedMedia, httpedge.CodeNotFound, httpedge.CodeMethodNotAllowed,
		httpedge.CodeBadRequest, httpedge.CodeRequestTimeout, httpedge.CodeHeadersTooLarge, httpedge.CodeRateLimited} {
		codes[c] = true
	}
	for c := range codes {
		if !hasHan(codeText[c]) {
			t.Errorf("code %q has no Chinese text in codeText", c)
		}
	}
	for _, r := range errorTable {
		if r.Message != "" {
			if zh, ok := zhText(r.Message); !ok || !hasHan(zh) {
				t.Errorf("row %s: fixed message %q has no Chinese text", r.Code, r.Message)
			}
		}
	}
}

// withVerbV are the details whose value is another error's English text
// (a parser's reason): they show as code text（English detail）.
var withVerbV = map[string]bool{"id_card: %v": true, "card: %v": true, "usb_public_key: %v": true, "%v": true, "your cloud key cannot sign: %v": true}

// TestValidationMessagesHaveChinese reads banking's own source: every
// detail written with invalid("…") or fmt.Errorf("%w: …", Err…) must have
// a Chinese text, so a message added in English only fails here.
func TestValidationMessagesHaveChinese(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	var details []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, err := parser.ParseFile(fset, f, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, _ := strconv.Unquote(lit.Value)
			switch fn := call.Fun.(type) {
			case *ast.Ident:
				if fn.Name == "invalid" {
					details = append(details, s)
				}
			case *ast.SelectorExpr:
				if fn.Sel.Name == "Errorf" && strings.HasPrefix(s, "%w: ") && len(call.Args) > 1 {
					if id, ok := call.Args[1].(*ast.Ident); ok && strings.HasPrefix(id.Name, "Err") {
						details = append(details, strings.TrimPrefix(s, "%w: "))
					}
				}
			}
			return true
		})
	}
	if len(details) < 30 {
		t.Fatalf("found only %d details in banking's source: the scan is broken", len(details))
	}
	for _, d := range details {
		if withVerbV[d] {
			continue
		}
		if texts.Untranslated(d) != nil {
			t.Errorf("detail %q has no Chinese text in texts", d)
		}
	}
}

type lockMsg struct{ le *bruteforce.LockedError }

func (l lockMsg) Error() string {
	return fmt.Sprintf("login locked until %s after %d failed attempts; a teller at a branch can lift the lock after checking your identity", l10n.Clock(l.le.Until, l10n.English), 5)
}
func (l lockMsg) Unwrap() error { return l.le }

// TestMessageChineseAndEnglish: the same error in both languages, by
// each way a Chinese text is found; the English is the code's own text.
func TestMessageChineseAndEnglish(t *testing.T) {
	until := time.Date(2026, 12, 7, 6, 5, 0, 0, time.UTC)
	le := &bruteforce.LockedError{Scope: bruteforce.ScopeAccount, Until: until}
	tests := []struct {
		name string
		err  error
		zh   string
	}{
		{"detail", validateLogin(&bankwire.LoginRequest{}), "请求无效：登录名、设备标识（不超过 64 个字符）和操作系统（不超过 64 个字符）均为必填项"},
		{"format", fmt.Errorf("%w: order %s is %s, not waiting for review", ErrForbidden, "C00000001", "entered"), "无权进行此操作：指令 C00000001 的状态为 entered，不在待复核状态"},
		{"quoted", fmt.Errorf("%w: login %q is taken", ErrExists, "alice"), "已存在：登录名「alice」已被占用"},
		// "order %s" must not take a sentinel's own words ("order signature invalid") as its value.
		{"detail after a sentinel", fmt.Errorf("%w: the signature does not match the order and your USB key", ErrBadSignature), "指令签名无效：签名与指令或您的 USB Key 不符"},
		{"sentinel only", otp.ErrOTPExpired, "短信验证码已过期，请重新获取"},
		{"fixed", fmt.Errorf("ledger: %w", ledger.ErrBlocked), "转账被拒绝：收款人或账户在本行的风险名单上"},
		{"fallback", invalid("id_card: %v", errors.New("check digit wrong")), "请求无效（id_card: check digit wrong）"},
		{"otp attempts", &otp.InvalidError{Remaining: 2}, "短信验证码错误（再错 2 次此验证码即作废）"},
		{"otp rate", &otp.RateLimitedError{RetryAfter: 90 * time.Second}, "获取短信验证码过于频繁，请 2 分钟 后再试"},
		{"lock today", le, "登录失败次数过多，已暂时锁定至 14:05 北京时间（UTC 06:05）；可携带身份证件到柜台，由柜员核实身份后解除锁定"},
		{"lock message", lockMsg{le}, "登录已锁定至 14:05 北京时间（UTC 06:05）（连续 5 次登录失败）；可携带身份证件到柜台，由柜员核实身份后解除锁定"},
		{"limit", &ledger.LimitError{Account: "6299", Currency: "CNY", Kind: ledger.LimitPerTransaction, Limit: 5000000, Requested: 6000000},
			"超过转账限额：账户 6299 的单笔限额为 人民币 50,000.00，本次转账 人民币 60,000.00（可分笔转账，或重新验证身份后提高限额）"},
		{"weak", &password.WeakError{Problems: []password.Problem{{Rule: password.RuleLength, Message: "Use 8 to 64 characters."}}}, "密码不符合规则：密码须为 8-64 个字符。"},
		{"internal", errors.New("disk on fire"), codeText[httpedge.CodeInternal]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := edge.Classify(tc.err)
			if got := message(l10n.Chinese, tc.err, p); got != tc.zh {
				t.Errorf("zh:\n got %q\nwant %q", got, tc.zh)
			}
			if got := message(l10n.English, tc.err, p); got != p.Message || hasHan(got) && !strings.Contains(p.Message, "alice") && !hasHan(tc.err.Error()) {
				t.Errorf("en: got %q, want the English %q", got, p.Message)
			}
		})
	}
	if p := edge.Classify(validateLogin(&bankwire.LoginRequest{})); p.Status != http.StatusBadRequest || p.Code != "invalid_request" {
		t.Fatalf("classify changed: %+v", p)
	}
}
