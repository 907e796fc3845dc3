package softhsmtests

// The confirmation page in Chinese, in a real browser (issue 18 item 1):
// headless Chromium asking for zh-CN sets the holder PIN on the Chinese
// enrolment page, then reads a transfer to a Chinese payee
// with a Chinese purpose; the Chinese texts are in the DOM, and each node
// holding Han characters was laid out with a CJK font that drew at least
// as many glyphs as the node has Han characters (DevTools
// CSS.getPlatformFontsForNode: the fonts the platform really used, so a
// page drawn in boxes for want of a font fails; the check compares with
// the text, not pixels). Then the holder gets the tries left in Chinese
// for a wrong PIN, approves, and the signature verifies.
//
// The fonts are Debian's fonts-noto-cjk (scripts/deps.sh installs it).
// Under CI=true a missing Noto CJK font fails the test, naming the
// package; elsewhere the test is skipped. A full-page screenshot is saved
// under the test's temp dir (its path is logged) and copied to
// $KEYWARD_SCREENSHOT_DIR when that is set (docs/confirm-page-zh.png is
// one).

import (
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/chromedp/cdproto/css"
	"github.com/chromedp/chromedp"

	"github.com/keyward/keyward/token/txformat"
)

// needCJKFonts checks that fontconfig knows a Noto CJK font for Chinese,
// or fails (CI=true) or skips the test.
func needCJKFonts(t *testing.T) {
	t.Helper()
	out, err := exec.Command("fc-list", ":lang=zh", "family").Output()
	if err == nil && strings.Contains(string(out), "Noto") && strings.Contains(string(out), "CJK") {
		return
	}
	msg := "no Noto CJK font for Chinese (fc-list :lang=zh): install fonts-noto-cjk (apt-get install -y fonts-noto-cjk; scripts/deps.sh does)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: the Chinese page must be rendered with real glyphs)")
	}
	t.Skip(msg)
}

// hanCount is the number of Han (Chinese) characters in s.
func hanCount(s string) int {
	n := 0
	for _, r := range s {
		if unicode.Is(unicode.Han, r) {
			n++
		}
	}
	return n
}

// cjkGlyphs checks the nodes matching sel: for each, the glyphs drawn by
// fonts whose family names "CJK" must be at least the Han characters of
// the node's own text (getPlatformFontsForNode reports the fonts of a
// node's child text nodes, so its own text is what is compared). It
// returns how many Han characters it checked.
func cjkGlyphs(ctx context.Context, t *testing.T, sel string) int {
	t.Helper()
	ids, err := chromedp.Run(ctx, chromedp.QueryNodeIDs(chromedp.CSSAll(sel)))
	if err != nil || len(ids) == 0 {
		t.Fatalf("%s: no nodes (%v)", sel, err)
	}
	texts, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll(`+jsString(sel)+`)).map(e =>
		Array.from(e.childNodes).filter(n => n.nodeType === Node.TEXT_NODE).map(n => n.textContent).join(""))`))
	if err != nil || len(texts) != len(ids) {
		t.Fatalf("%s: %d texts for %d nodes (%v)", sel, len(texts), len(ids), err)
	}
	checked := 0
	for i, id := range ids {
		want := hanCount(texts[i])
		if want == 0 {
			continue
		}
		res, err := chromedp.Call(ctx, css.GetPlatformFontsForNode, css.GetPlatformFontsForNodeParams{NodeID: id})
		if err != nil {
			t.Fatalf("%s[%d]: CSS.getPlatformFontsForNode: %v", sel, i, err)
		}
		cjk, used := 0.0, []string{}
		for _, f := range res.Fonts {
			used = append(used, f.FamilyName+"="+strconv.FormatFloat(f.GlyphCount, 'f', -1, 64))
			if strings.Contains(f.FamilyName, "CJK") {
				cjk += f.GlyphCount
			}
		}
		if cjk < float64(want) {
			t.Errorf("%s[%d] %q: %d Han characters, but CJK fonts drew %v glyphs (fonts used: %v)", sel, i, texts[i], want, cjk, used)
		}
		checked += want
	}
	return checked
}

func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// TestConfirmPageChineseBrowser: the Chinese page, end to end.
func TestConfirmPageChineseBrowser(t *testing.T) {
	needCJKFonts(t)
	browser := pageBrowser(t)
	e := newKeysvcEnv(t)
	const key = "page-zh"
	code := e.pageKey(t, key)

	// The holder sets the PIN on the Chinese enrolment page.
	ctx := pageTabIn(t, browser, "zh-CN,zh;q=0.9")
	if err := chromedp.Do(ctx, chromedp.Navigate(e.confirmURL+"/enrol")); err != nil {
		t.Fatal(err)
	}
	if title, _ := chromedp.Run(ctx, chromedp.Title()); title != "设置持有人 PIN" {
		t.Errorf("enrolment page title %q", title)
	}
	cjkGlyphs(ctx, t, "label")
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("key"), key),
		chromedp.SendKeys(chromedp.ID("setup_code"), code),
		chromedp.SendKeys(chromedp.ID("pin"), pageHolderPIN),
		chromedp.SendKeys(chromedp.ID("pin2"), pageHolderPIN),
	); err != nil {
		t.Fatal(err)
	}
	if st := pageSubmit(ctx, t, "enrol"); st != 200 {
		t.Errorf("enrolment page: status %d", st)
	}
	pageWant(t, "#result", pageText(ctx, t, "result"), "您的持有人 PIN 已设置", "密钥 "+key+" 今后签署前将要求输入此 PIN。")

	msg, err := txformat.CanonicalJSON(txformat.Transfer{PayerAccount: "6222 0202 0011 2233 445", PayeeAccount: "6222 0200 1234 5678",
		PayeeName: "李雷", PayeeBank: "中国工商银行北京分行", Amount: "1234.50", Currency: "CNY", Purpose: "货款 发票号 20260215"},
		"2026-11-28T17:00:00+08:00", "zhPageNonce00001")
	if err != nil {
		t.Fatal(err)
	}
	id, tok := e.pageSign(t, key, msg)
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(e.confirmURL+"/c/"+tok))
	if err != nil || resp.Status != 200 {
		t.Fatalf("opening the page: %v %v", resp, err)
	}

	// (a) The Chinese texts are in the DOM.
	if title, _ := chromedp.Run(ctx, chromedp.Title()); title != "确认交易" {
		t.Errorf("title %q", title)
	}
	if lang, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.lang`)); lang != "zh-CN" {
		t.Errorf("html lang %q", lang)
	}
	pageWant(t, "#title", pageText(ctx, t, "title"), "确认交易")
	pageWant(t, "#display", pageText(ctx, t, "display"),
		"向 李雷（6222 0200 1234 5678，中国工商银行北京分行）支付 人民币 1,234.50",
		"大写：壹仟贰佰叁拾肆元伍角整", "付款账户 6222 0202 0011 2233 445", "用途：货款 发票号 20260215")
	pageWant(t, "#expiry", pageText(ctx, t, "expiry"), "此请求过期时间：", "2026年11月28日 17:01:00 北京时间（UTC 2026-11-28 09:01:00）", "过期后不会签署任何内容")
	if d := strings.ReplaceAll(pageText(ctx, t, "digest"), " ", ""); d != sha(string(msg)) {
		t.Errorf("page digest %q, want %s", d, sha(string(msg)))
	}

	// (b) Laid out with real glyphs: every node holding Han text.
	han := 0
	for _, sel := range []string{"#title", "#display li", "#expiry", "#expires", "h2", "label[for=pin]", "#approve", "#reject", "main > p"} {
		han += cjkGlyphs(ctx, t, sel)
	}
	if han < 80 {
		t.Errorf("checked only %d Han characters: the page is not the Chinese one", han)
	}
	t.Logf("%d Han characters checked against the glyphs of CJK fonts", han)

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(t.TempDir(), "confirm-page-zh.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the Chinese page (%d bytes): %s", len(shot), path)
	if dir := os.Getenv("KEYWARD_SCREENSHOT_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "confirm-page-zh.png"), shot, 0o644); err != nil {
			t.Fatalf("copying the screenshot to KEYWARD_SCREENSHOT_DIR: %v", err)
		}
	}

	// A wrong PIN: the tries left, in Chinese (keysvc's wire.TriesLeft).
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("pin"), "wrong-PIN-42")); err != nil {
		t.Fatal(err)
	}
	if st := pageSubmit(ctx, t, "approve"); st != 403 {
		t.Errorf("wrong PIN: status %d, want 403", st)
	}
	pageWant(t, "#error", pageText(ctx, t, "error"), "PIN 错误，未签署任何内容；还可尝试 5 次（共 6 次），之后将被锁定。")
	cjkGlyphs(ctx, t, "#error")

	// The holder confirms in Chinese; the signature verifies.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("pin"), pageHolderPIN)); err != nil {
		t.Fatal(err)
	}
	if st := pageSubmit(ctx, t, "approve"); st != 200 {
		t.Errorf("approve: status %d", st)
	}
	pageWant(t, "#result", pageText(ctx, t, "result"), "已批准 — 交易已签署")
	cjkGlyphs(ctx, t, "#outcome strong")
	out := e.pagePoll(t, id)
	sig, _ := out["signature"].(string)
	if out["status"] != "approved" || !strings.HasPrefix(sig, "kw:v1:") {
		t.Fatalf("requester's poll: %v", out)
	}
	v := e.must(t, 200, bankingToken, "POST", "/v1/keys/"+key+"/verify", map[string]any{"message": base64.StdEncoding.EncodeToString(msg), "signature": sig})
	if v["valid"] != true {
		t.Fatalf("the signature does not verify over the transfer's bytes: %v", v)
	}

	// The switch link gives the same link in English.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("switch-lang")), chromedp.WaitVisible(chromedp.ID("result"))); err != nil {
		t.Fatal(err)
	}
	pageWant(t, "#result", pageText(ctx, t, "result"), "Approved — the transaction was signed")
}
