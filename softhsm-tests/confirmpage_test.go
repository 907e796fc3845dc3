package softhsmtests

// The confirmation web page in a real browser (R-DC-1..4): headless
// Chromium, driven with chromedp, reads a pain.001 on the holder's page,
// gets "tries left" for a wrong PIN, approves with the right one, and the
// requester collects a signature that verifies; a rejection signs
// nothing; a payee name with markup stays text and runs no script. The
// service underneath is real keysvc on SoftHSM. These cases ask for the
// English page (Accept-Language en-US); the page is Chinese by default,
// and confirmpage_zh_test.go renders it so, with CJK fonts.
//
// Chromium comes from the Debian package chromium (scripts/deps.sh
// installs it). Under CI=true a missing browser fails the test, so a CI
// machine without it cannot pass by skipping.

import (
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/keyward/keyward/token/txformat"
)

// pageHolderPIN is the holder PIN of the keys these tests create.
const pageHolderPIN = "7391-kw-safe"

// Time limits: the whole browser session (a watchdog kills Chromium after
// it, so a hung browser cannot hold the test run), and each case's steps.
const (
	browserLimit = 60 * time.Second
	caseLimit    = 20 * time.Second
)

// chromiumPath finds the browser, or fails (CI=true) or skips the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "Chromium not found: install it with apt-get install -y chromium"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: the browser tests must run; scripts/deps.sh installs it)")
	}
	t.Skip(msg)
	return ""
}

// pageBrowser starts headless Chromium with a throwaway profile and returns
// its context; tabs are made from it with pageTab.
func pageBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath(t)
	profile := t.TempDir() // removed after the browser's cleanup below has stopped Chromium
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox, // CI may run as root, where Chromium's sandbox refuses to start
		chromedp.Flag("disable-gpu", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	watchdog := time.AfterFunc(browserLimit, cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		watchdog.Stop()
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser, bound by the watchdog only
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// pageTab opens a tab whose actions must all finish within caseLimit;
// it asks for English pages (Accept-Language), as the English cases
// assert English texts: the pages are Chinese by default.
func pageTab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	return pageTabIn(t, browser, "en-US,en;q=0.9")
}

// pageTabIn opens a tab that sends acceptLanguage with every request.
func pageTabIn(t *testing.T, browser context.Context, acceptLanguage string) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	ctx, cancelT := context.WithTimeout(tab, caseLimit)
	t.Cleanup(cancelT)
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Accept-Language": acceptLanguage}}); err != nil {
		t.Fatalf("setting Accept-Language: %v", err)
	}
	return ctx
}

// pageKey creates a confirm-required signing key for the banking client
// and returns its one-time holder setup code.
func (e *keysvcEnv) pageKey(t *testing.T, name string) string {
	t.Helper()
	out := e.must(t, 201, officerToken, "POST", "/v1/keys", map[string]any{"name": name, "purpose": "sign", "algorithm": "ec-p256",
		"protection": "wrapped", "confirm": "required",
		"policy": map[string]any{"grants": []any{map[string]any{"client": "banking", "ops": []string{"sign", "verify"}}}}})
	code, _ := out["holder_setup_code"].(string)
	if code == "" {
		t.Fatalf("create %s: no holder_setup_code: %v", name, out)
	}
	return code
}

// pageEnrolJSON sets the holder PIN through the JSON enrol route.
func (e *keysvcEnv) pageEnrolJSON(t *testing.T, key, code string) {
	t.Helper()
	if st, out := callAt(t, e.confirmURL, "", "POST", "/confirm/v1/enrol", map[string]any{"key": key, "setup_code": code, "pin": pageHolderPIN}); st != 200 {
		t.Fatalf("enrol %s: %d %v", key, st, out)
	}
}

// pageSign is the banking client's sign request; it returns the pending
// confirmation's id and the holder token the notifier received.
func (e *keysvcEnv) pageSign(t *testing.T, key string, msg []byte) (id, holderToken string) {
	t.Helper()
	out := e.must(t, 202, bankingToken, "POST", "/v1/keys/"+key+"/sign", map[string]any{"message": base64.StdEncoding.EncodeToString(msg)})
	c, _ := out["confirmation"].(map[string]any)
	id, _ = c["id"].(string)
	if id == "" || c["status"] != "pending" {
		t.Fatalf("sign %s: %v", key, out)
	}
	n := e.lastNotice(t, key)
	if n.ConfirmationID != id {
		t.Fatalf("newest notice is for %s, not %s", n.ConfirmationID, id)
	}
	return id, n.HolderToken
}

// pagePoll is the requester's long poll.
func (e *keysvcEnv) pagePoll(t *testing.T, id string) map[string]any {
	t.Helper()
	return e.must(t, 200, bankingToken, "GET", "/v1/confirmations/"+id+"?wait=10s", nil)
}

// pageText reads the visible text of the element with the given id.
func pageText(ctx context.Context, t *testing.T, id string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
	if err != nil {
		t.Fatalf("reading #%s: %v", id, err)
	}
	return s
}

// pageSubmit clicks a button and waits for the page the form posts to; it
// returns the HTTP status of that page.
func pageSubmit(ctx context.Context, t *testing.T, button string) int64 {
	t.Helper()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID(button)))
	if err != nil {
		t.Fatalf("clicking #%s: %v", button, err)
	}
	return resp.Status
}

func pageWant(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q: %q", what, w, got)
		}
	}
}

// TestConfirmPageBrowser: the holder's web page, end to end.
func TestConfirmPageBrowser(t *testing.T) {
	browser := pageBrowser(t)
	e := newKeysvcEnv(t)
	pain, err := os.ReadFile("../token/txformat/testdata/pain001_sample.xml")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("approve", func(t *testing.T) {
		e.pageEnrolJSON(t, "page-approve", e.pageKey(t, "page-approve"))
		id, tok := e.pageSign(t, "page-approve", pain)
		ctx := pageTab(t, browser)
		resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(e.confirmURL+"/c/"+tok))
		if err != nil || resp.Status != 200 {
			t.Fatalf("opening the page: %v %v", resp, err)
		}
		if title, _ := chromedp.Run(ctx, chromedp.Title()); title != "Confirm this transaction" {
			t.Errorf("title %q", title)
		}
		pageWant(t, "#key", pageText(ctx, t, "key"), "page-approve")
		// Both transfers of the sample: payees and amounts (R-DC-2).
		pageWant(t, "#display", pageText(ctx, t, "display"), "2 transfers, total 6,234.50 CNY",
			"Pay 1,234.50 CNY to 李雷 (6222 0200 1234 5678) at ICBC Beijing",
			"Pay 5,000.00 CNY to 韩梅梅", "From account 6222 0202 0011 2233 445")
		// The fingerprint is the SHA-256 of exactly the bytes sent (R-DC-3).
		if d := strings.ReplaceAll(pageText(ctx, t, "digest"), " ", ""); d != sha(string(pain)) {
			t.Errorf("page digest %q, want %s", d, sha(string(pain)))
		}
		pageWant(t, "#expiry", pageText(ctx, t, "expiry"), "This request expires at ", " UTC")

		// A wrong PIN: refused in words, form shown again, PIN not echoed.
		if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("pin"), "wrong-PIN-42")); err != nil {
			t.Fatal(err)
		}
		if st := pageSubmit(ctx, t, "approve"); st != 403 {
			t.Errorf("wrong PIN: status %d, want 403", st)
		}
		pageWant(t, "#error", pageText(ctx, t, "error"), "Wrong PIN, nothing was signed", "5 of 6 tries left")
		html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		if err != nil || strings.Contains(html, "wrong-PIN-42") {
			t.Fatalf("page after a wrong PIN echoes it (or %v)", err)
		}
		if v, _ := chromedp.Run(ctx, chromedp.Value(chromedp.ID("pin"))); v != "" {
			t.Errorf("PIN field not empty: %q", v)
		}

		// The right PIN signs.
		if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("pin"), pageHolderPIN)); err != nil {
			t.Fatal(err)
		}
		if st := pageSubmit(ctx, t, "approve"); st != 200 {
			t.Errorf("approve: status %d", st)
		}
		pageWant(t, "#result", pageText(ctx, t, "result"), "Approved — the transaction was signed")

		out := e.pagePoll(t, id)
		sig, _ := out["signature"].(string)
		if out["status"] != "approved" || !strings.HasPrefix(sig, "kw:v1:") {
			t.Fatalf("requester's poll: %v", out)
		}
		v := e.must(t, 200, bankingToken, "POST", "/v1/keys/page-approve/verify", map[string]any{"message": base64.StdEncoding.EncodeToString(pain), "signature": sig})
		if v["valid"] != true {
			t.Fatalf("the signature does not verify over the pain.001 bytes: %v", v)
		}
		// Reloading the link shows the outcome, with no form to send again.
		if err := chromedp.Do(ctx, chromedp.Navigate(e.confirmURL+"/c/"+tok)); err != nil {
			t.Fatal(err)
		}
		pageWant(t, "#result", pageText(ctx, t, "result"), "Approved — the transaction was signed")
		if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.forms.length`)); err != nil || n != 0 {
			t.Errorf("ended confirmation still has %d forms (%v)", n, err)
		}
	})

	t.Run("reject", func(t *testing.T) {
		ctx := pageTab(t, browser)
		// This holder enrols on the enrolment page, in the browser.
		code := e.pageKey(t, "page-reject")
		if err := chromedp.Do(ctx, chromedp.Navigate(e.confirmURL+"/enrol"),
			chromedp.SendKeys(chromedp.ID("key"), "page-reject"),
			chromedp.SendKeys(chromedp.ID("setup_code"), code),
			chromedp.SendKeys(chromedp.ID("pin"), pageHolderPIN),
			chromedp.SendKeys(chromedp.ID("pin2"), pageHolderPIN),
		); err != nil {
			t.Fatal(err)
		}
		if st := pageSubmit(ctx, t, "enrol"); st != 200 {
			t.Errorf("enrol page: status %d", st)
		}
		pageWant(t, "#result", pageText(ctx, t, "result"), "Your holder PIN is set")

		msg := pageTransfer(t, "Shanghai Fresh Foods Co", "88.00", "rejectNonce00001")
		id, tok := e.pageSign(t, "page-reject", msg)
		if err := chromedp.Do(ctx, chromedp.Navigate(e.confirmURL+"/c/"+tok)); err != nil {
			t.Fatal(err)
		}
		pageWant(t, "#display", pageText(ctx, t, "display"), "Pay 88.00 CNY to Shanghai Fresh Foods Co")
		if st := pageSubmit(ctx, t, "reject"); st != 200 { // no PIN needed to refuse
			t.Errorf("reject: status %d", st)
		}
		pageWant(t, "#result", pageText(ctx, t, "result"), "Rejected — nothing was signed")
		out := e.pagePoll(t, id)
		if out["status"] != "rejected" || out["signature"] != nil {
			t.Fatalf("requester's poll after a rejection: %v", out)
		}
	})

	t.Run("payee markup is text", func(t *testing.T) {
		e.pageEnrolJSON(t, "page-xss", e.pageKey(t, "page-xss"))
		payee := `<script>document.title="owned"</script><img src=x onerror=alert(1)>`
		id, tok := e.pageSign(t, "page-xss", pageTransfer(t, payee, "10.00", "xssNonce00000001"))
		ctx := pageTab(t, browser)
		if err := chromedp.Do(ctx, chromedp.Navigate(e.confirmURL+"/c/"+tok)); err != nil {
			t.Fatal(err)
		}
		pageWant(t, "#display", pageText(ctx, t, "display"), "Pay 10.00 CNY to "+payee+" (")
		checks := map[string]string{
			"no script element":      `document.scripts.length === 0`,
			"no injected image":      `document.images.length === 0`,
			"title untouched":        `document.title === "Confirm this transaction"`,
			"markup escaped in HTML": `document.getElementById("display").innerHTML.includes("&lt;script&gt;")`,
		}
		for what, js := range checks {
			if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js)); err != nil || !ok {
				t.Errorf("%s: %s is %v (%v)", what, js, ok, err)
			}
		}
		// The requester withdraws it; the link then says it has ended.
		e.must(t, 200, bankingToken, "DELETE", "/v1/confirmations/"+id, nil)
		if err := chromedp.Do(ctx, chromedp.Navigate(e.confirmURL+"/c/"+tok)); err != nil {
			t.Fatal(err)
		}
		pageWant(t, "#result", pageText(ctx, t, "result"), "This confirmation has already ended (cancelled) — nothing was signed")
	})

	t.Run("unknown link", func(t *testing.T) {
		ctx := pageTab(t, browser)
		resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(e.confirmURL+"/c/"+strings.Repeat("Q", 43)))
		if err != nil || resp.Status != 404 {
			t.Fatalf("unknown link: %v %v", resp, err)
		}
		pageWant(t, "#result", pageText(ctx, t, "result"), "This confirmation link is not valid or has expired")
	})
}

// pageTransfer is a keyward.transfer.v1 order to payee.
func pageTransfer(t *testing.T, payee, amount, nonce string) []byte {
	t.Helper()
	b, err := txformat.CanonicalJSON(txformat.Transfer{PayerAccount: "6222 0202 0011 2233 445", PayeeAccount: "6222 0200 1234 5678",
		PayeeName: payee, PayeeBank: "ICBC Beijing", Amount: amount, Currency: "CNY"}, "2026-11-28T17:00:00+08:00", nonce)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
