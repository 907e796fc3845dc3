package api_test

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/keyward/keyward/keysvc/api"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
)

// zhHeader asks for Chinese as a browser in China does.
var zhHeader = []string{"Accept-Language", "zh-CN,zh;q=0.9,en;q=0.8"}

// visibleText is a page's text as a reader sees it: no style sheet, no
// tags, entities of the escaped values decoded enough to compare.
func visibleText(body string) string {
	body = regexp.MustCompile(`(?s)<style>.*?</style>|<title>.*?</title>`).ReplaceAllString(body, " ")
	body = regexp.MustCompile(`(?s)<[^>]*>`).ReplaceAllString(body, " ")
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&", "&#34;", `"`, "&#39;", "'").Replace(body)
}

// englishWords finds two English words in a row in text, after removing
// the values a page shows as they are (key, display lines, format).
var englishWords = regexp.MustCompile(`[A-Za-z]{2,}[ ,;.]+[A-Za-z]{2,}`)

func assertNoEnglish(t *testing.T, what, body string, values ...string) {
	t.Helper()
	text := visibleText(body)
	for _, v := range values {
		text = strings.ReplaceAll(text, v, " ")
	}
	if m := englishWords.FindAllString(text, -1); len(m) > 0 {
		t.Errorf("%s: the Chinese page shows English %q:\n%s", what, m, text)
	}
}

// TestConfirmPageChinese: with no language asked for, or Chinese asked
// for, the page is Chinese throughout: lang attribute, title, texts,
// keysvc's Chinese display lines (escaped), the expiry in Beijing time
// beside UTC, the switch to English, and the form posting back in Chinese.
func TestConfirmPageChinese(t *testing.T) {
	for name, hdr := range map[string][]string{"no Accept-Language": {"Accept-Language", ""}, "zh-CN": zhHeader,
		"unsupported language": {"Accept-Language", "fr-FR"}, "?lang=zh over English": {"Accept-Language", "en-US"}} {
		t.Run(name, func(t *testing.T) {
			s := newPageServer(t, newFakeConfirm())
			path := "/c/" + pageToken
			if strings.HasPrefix(name, "?lang") {
				path += "?lang=zh"
			}
			st, body, h := page(t, s, "GET", path, nil, hdr...)
			if st != 200 {
				t.Fatalf("status %d", st)
			}
			if h.Get("Content-Language") != "zh-CN" || !strings.Contains(h.Get("Vary"), "Accept-Language") {
				t.Errorf("Content-Language %q, Vary %q", h.Get("Content-Language"), h.Get("Vary"))
			}
			mustContain(t, "page", body,
				`<html lang="zh-CN">`, "<title>确认交易</title>", `<h1 id="title">确认交易</h1>`,
				`您的密钥 <strong id="key">corp-7</strong> 有一笔待签署的请求`,
				`<li>向 &lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;Co&#34;（6222 0200 1234 5678，ICBC）支付 人民币 10.00</li>`,
				"<li>大写：壹拾元整</li>", "<h2>交易内容", "<h2>指纹</h2>",
				`datetime="2026-11-28T09:01:00Z">2026年11月28日 17:01:00 北京时间（UTC 2026-11-28 09:01:00）</time>；过期后不会签署任何内容。`,
				"持有人 PIN（批准时需要）", `value="approve">批准签署</button>`, `value="reject" formnovalidate>拒绝</button>`,
				`<a href="?lang=en" hreflang="en" lang="en" id="switch-lang">English</a>`,
				`<form method="post" action="?lang=zh" autocomplete="off">`,
				`<input type="hidden" name="digest" value="`+pageDigest+`">`)
			if strings.Contains(body, "Pay 10.00 CNY") {
				t.Error("the Chinese page shows the English display lines")
			}
			assertNoEnglish(t, "confirm page", body, "corp-7", `<script>alert(1)</script> & "Co"`, "keyward.transfer.v1", "ICBC")
			if strings.Contains(strings.ToLower(body), "<script") {
				t.Error("page holds a script element")
			}
		})
	}
}

// TestConfirmPageLanguageSwitch: ?lang=en wins over a Chinese browser,
// and a confirmation made before keysvc kept Chinese lines shows its
// English lines on the Chinese page rather than nothing.
func TestConfirmPageLanguageSwitch(t *testing.T) {
	b := newFakeConfirm()
	s := newPageServer(t, b)
	_, body, _ := page(t, s, "GET", "/c/"+pageToken+"?lang=en", nil, zhHeader...)
	mustContain(t, "?lang=en", body, `<html lang="en">`, "<title>Confirm this transaction</title>", "Pay 10.00 CNY", `action="?lang=en"`)
	b.view.DisplayZH = nil
	_, body, _ = page(t, s, "GET", "/c/"+pageToken, nil, zhHeader...)
	mustContain(t, "old record", body, `<html lang="zh-CN">`, "<li>Pay 10.00 CNY to &lt;script&gt;")
	// The form's post keeps the page's language (action="?lang=…").
	form := url.Values{"key": {"corp-7"}, "digest": {pageDigest}, "action": {"reject"}}
	if _, body, _ = page(t, s, "POST", "/c/"+pageToken+"?lang=zh", form); !strings.Contains(body, "已拒绝 — 未签署任何内容") {
		t.Errorf("POST ?lang=zh from an English browser:\n%s", body)
	}
}

// TestConfirmPagePostChinese: every outcome in Chinese, keysvc's English
// messages replaced by texts chosen by the error's type, tries left from
// wire.TriesLeft.
func TestConfirmPagePostChinese(t *testing.T) {
	approve := url.Values{"key": {"corp-7"}, "digest": {pageDigest}, "pin": {pagePIN}, "action": {"approve"}}
	cases := []struct {
		name      string
		form      url.Values
		approveFn func(wire.ApproveRequest) error
		status    int
		want      []string
		english   string // keysvc's text, which must not show
	}{
		{name: "approved", form: approve, status: 200, want: []string{"已批准 — 交易已签署", "银行系统已收到签名。"}},
		{name: "wrong PIN", form: approve, status: 403, english: "tries left",
			approveFn: func(wire.ApproveRequest) error {
				return fmt.Errorf("%w: %w before the holder is locked", wire.ErrHolderPIN, &wire.TriesLeft{Left: 5, Limit: 6})
			},
			want: []string{`id="error"`, "PIN 错误，未签署任何内容；还可尝试 5 次（共 6 次），之后将被锁定。", `id="pin"`}},
		{name: "wrong PIN, no count", form: approve, status: 403, english: "something",
			approveFn: func(wire.ApproveRequest) error { return fmt.Errorf("%w: something", wire.ErrHolderPIN) },
			want:      []string{"PIN 错误，未签署任何内容。"}},
		{name: "locked", form: approve, status: 423, english: "wrong PINs",
			approveFn: func(wire.ApproveRequest) error {
				return fmt.Errorf("%w: 6 wrong PINs; the holder of \"corp-7\" is now locked", wire.ErrHolderLocked)
			},
			want: []string{"持有人 PIN 已锁定 — 请联系银行", "持有人 PIN 连续输错次数过多。", "只有银行安全员可以解锁"}},
		{name: "mismatch", form: approve, status: 409, english: "approved digest",
			approveFn: func(wire.ApproveRequest) error {
				return fmt.Errorf("%w: the approved digest is not the digest of the transaction held", wire.ErrConfirmationMismatch)
			},
			want: []string{"您批准的内容与系统保存的交易不一致 — 未签署任何内容", "交易可能已被篡改"}},
		{name: "closed", form: approve, status: 409, english: "used once",
			approveFn: func(wire.ApproveRequest) error {
				return fmt.Errorf("%w: this confirmation is expired; an approval is used once", wire.ErrConfirmationClosed)
			},
			want: []string{"此确认已经结束", "批准只能使用一次。"}},
		{name: "internal", form: approve, status: 500, english: "disk",
			approveFn: func(wire.ApproveRequest) error { return fmt.Errorf("disk on fire") },
			want:      []string{"我方系统出错 — 未签署任何内容", "请稍后重试"}},
		{name: "other refusal", form: approve, status: 400, english: "bad key",
			approveFn: func(wire.ApproveRequest) error { return fmt.Errorf("%w: bad key", wire.ErrInvalidArgument) },
			want:      []string{"请求被拒绝 — 未签署任何内容", "错误代码：invalid_argument。"}},
		{name: "rejected", form: url.Values{"key": {"corp-7"}, "digest": {pageDigest}, "action": {"reject"}}, status: 200,
			want: []string{"已拒绝 — 未签署任何内容", "该请求已取消。", "如果这笔交易不是您发起的，请告知银行。"}},
		{name: "no PIN", form: url.Values{"key": {"corp-7"}, "digest": {pageDigest}, "action": {"approve"}}, status: 400,
			want: []string{"请输入持有人 PIN 以批准。"}},
		{name: "no digest", form: url.Values{"key": {"corp-7"}, "action": {"approve"}}, status: 400,
			want: []string{"无法读取表单", "缺少密钥或指纹"}},
		{name: "bad action", form: url.Values{"key": {"corp-7"}, "digest": {pageDigest}, "action": {"sign"}}, status: 400,
			want: []string{"请选择“批准签署”或“拒绝”。"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newFakeConfirm()
			b.approveFn = c.approveFn
			st, body, _ := page(t, newPageServer(t, b), "POST", "/c/"+pageToken, c.form, zhHeader...)
			if st != c.status {
				t.Errorf("status %d, want %d", st, c.status)
			}
			mustContain(t, "page", body, append(c.want, `<html lang="zh-CN">`)...)
			if c.english != "" && strings.Contains(body, c.english) {
				t.Errorf("the Chinese page relays keysvc's English %q:\n%s", c.english, body)
			}
			assertNoEnglish(t, c.name, body, "corp-7", `<script>alert(1)</script> & "Co"`, "keyward.transfer.v1", "ICBC")
		})
	}
	// The English page still says the count, from the same typed error.
	b := newFakeConfirm()
	b.approveFn = func(wire.ApproveRequest) error {
		return fmt.Errorf("%w: %w before the holder is locked", wire.ErrHolderPIN, &wire.TriesLeft{Left: 2, Limit: 6})
	}
	_, body, _ := page(t, newPageServer(t, b), "POST", "/c/"+pageToken, approve)
	mustContain(t, "English wrong PIN", body, "Wrong PIN, nothing was signed (2 of 6 tries left before the holder is locked).")
}

// TestConfirmPageEndedChinese: an ended confirmation in Chinese names
// its status and why, in Chinese.
func TestConfirmPageEndedChinese(t *testing.T) {
	for st, want := range map[wire.ConfirmationStatus][]string{
		wire.ConfirmApproved:  {"已批准 — 交易已签署"},
		wire.ConfirmRejected:  {"已拒绝 — 未签署任何内容"},
		wire.ConfirmExpired:   {"此确认已经结束（已过期）— 未签署任何内容", "持有人未在时限内回应。"},
		wire.ConfirmCancelled: {"此确认已经结束（已撤回）— 未签署任何内容", "请求方已撤回此请求。"},
		wire.ConfirmFailed:    {"此确认已经结束（签署失败）— 未签署任何内容", "批准后未能完成签名。"},
	} {
		b := newFakeConfirm()
		b.view.Status, b.view.Reason = st, "the holder did not answer in time"
		_, body, _ := page(t, newPageServer(t, b), "GET", "/c/"+pageToken, nil, zhHeader...)
		mustContain(t, string(st), body, want...)
		assertNoEnglish(t, string(st), body)
	}
	_, body, _ := page(t, newPageServer(t, newFakeConfirm()), "GET", "/c/"+strings.Repeat("B", 43), nil, zhHeader...)
	mustContain(t, "not found", body, "此确认链接无效或已过期", "请打开银行发给您的最新链接")
	assertNoEnglish(t, "not found", body)
}

// TestConfirmPageEnrolChinese: the enrolment page and its refusals in
// Chinese; the PIN rule broken is named from token's typed error.
func TestConfirmPageEnrolChinese(t *testing.T) {
	b := newFakeConfirm()
	s := newPageServer(t, b)
	_, body, _ := page(t, s, "GET", "/enrol", nil, zhHeader...)
	mustContain(t, "enrol form", body, `<html lang="zh-CN">`, "<title>设置持有人 PIN</title>", "密钥名称", "设置码", "再次输入新 PIN",
		`id="enrol">设置 PIN</button>`, `action="?lang=zh"`)
	assertNoEnglish(t, "enrol form", body)

	form := func(key, code, pin, pin2 string) url.Values {
		return url.Values{"key": {key}, "setup_code": {code}, "pin": {pin}, "pin2": {pin2}}
	}
	for _, c := range []struct {
		name    string
		form    url.Values
		enrolFn func(key, code string, pin []byte) error
		status  int
		want    string
	}{
		{"different PINs", form("corp-7", "ABCD", pagePIN, pagePIN+"x"), nil, 400, "两次输入的 PIN 不一致；未做任何更改。"},
		{"bad key name", form("Corp 7!", "ABCD", pagePIN, pagePIN), nil, 400, "密钥名称无效"},
		{"missing code", form("corp-7", "", pagePIN, pagePIN), nil, 400, "请填写设置码"},
		{"wrong setup code", form("corp-7", "WXYZ", pagePIN, pagePIN), func(string, string, []byte) error {
			return fmt.Errorf("%w: wrong setup code; %w", wire.ErrHolderPIN, &wire.TriesLeft{Left: 4, Limit: 6})
		}, 403, "设置码错误：还可尝试 4 次（共 6 次）。"},
		{"weak PIN", form("corp-7", "ABCD", "234567", "234567"), func(string, string, []byte) error {
			return fmt.Errorf("%w: %w", wire.ErrInvalidArgument, token.ErrPINSequence)
		}, 400, "此 PIN 不符合规则：不能是 123456 或 654321 这样的简单序列。"},
		{"enrolled", form("corp-7", "ABCD", pagePIN, pagePIN), nil, 200, "密钥 corp-7 今后签署前将要求输入此 PIN。"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b.enrolFn = c.enrolFn
			st, body, _ := page(t, s, "POST", "/enrol", c.form, zhHeader...)
			if st != c.status || !strings.Contains(body, c.want) {
				t.Fatalf("%d, want %d with %q:\n%s", st, c.status, c.want, body)
			}
			assertNoEnglish(t, c.name, body, "corp-7", "Corp 7!")
		})
	}
}

// TestPageCatalogue: every text the templates ({{.T "…"}}) and the
// handlers (tr, txt, and the keys handed to them) use has its Chinese
// text, and the catalogue holds no text nothing uses.
func TestPageCatalogue(t *testing.T) {
	uses := map[string]bool{}
	lit := `("(?:[^"\\]|\\.)*"|` + "`[^`]*`" + `)`
	patterns := map[string]*regexp.Regexp{
		"go":   regexp.MustCompile(`(?:\btr\(c, |\btxt\(c, |\bdetail\(|\bbase\(c, |\{token\.Err\w+, |triesText\(c, err, msg, |newError\(http\.Status(?:Forbidden|UnsupportedMediaType), [^,]+, )` + lit),
		"html": regexp.MustCompile(`\{\{\.T ` + lit + `\}\}|\{\{\.T ` + lit),
	}
	for _, f := range []string{"confirmpage.go", "confirmpage_texts.go", "confirmserver.go",
		"confirmpage/confirm.html", "confirmpage/enrol.html", "confirmpage/layout.html", "confirmpage/result.html"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		re := patterns["go"]
		if strings.HasSuffix(f, ".html") {
			re = patterns["html"]
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			for _, q := range m[1:] {
				if q == "" || q == `""` {
					continue
				}
				k, err := strconv.Unquote(q)
				if err != nil {
					t.Fatalf("%s: %s: %v", f, q, err)
				}
				uses[k] = true
			}
		}
	}
	keys := make([]string, 0, len(uses))
	for k := range uses {
		keys = append(keys, k)
	}
	if len(keys) < 60 {
		t.Fatalf("found only %d texts in the sources: the scan is broken", len(keys))
	}
	if u := api.PageTexts().Untranslated(keys...); len(u) > 0 {
		t.Errorf("texts without Chinese: %q", u)
	}
	for _, k := range api.PageTexts().Keys() {
		if !uses[k] {
			t.Errorf("catalogue text %q is used nowhere", k)
		}
	}
}
