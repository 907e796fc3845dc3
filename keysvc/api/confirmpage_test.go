package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/api"
	"github.com/keyward/keyward/keysvc/wire"
)

const (
	pageToken  = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" // 43 base64url characters
	pageDigest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	pagePIN    = "7391-kw-safe"
)

// fakeConfirm is a ConfirmBackend with one confirmation. Its answers are
// set per test; it records what the page handed it.
type fakeConfirm struct {
	mu        sync.Mutex
	view      wire.ConfirmationView
	approveFn func(req wire.ApproveRequest) error
	enrolFn   func(key, code string, pin []byte) error
	viewErr   error
	rejectErr error

	gotPINs    [][]byte // the slices Approve/Enrol were given (checked for wiping)
	gotApprove []wire.ApproveRequest
	gotReject  []string
	gotEnrol   []string // key/code
}

func newFakeConfirm() *fakeConfirm {
	return &fakeConfirm{view: wire.ConfirmationView{
		ID: "cf_0123456789abcdefghijkl", Key: "corp-7", Status: wire.ConfirmPending, Format: "keyward.transfer.v1",
		Display:   []string{`Pay 10.00 CNY to <script>alert(1)</script> & "Co" (6222 0200 1234 5678) at ICBC`, "From account 6222 0202 0011 2233 445"},
		DisplayZH: []string{`向 <script>alert(1)</script> & "Co"（6222 0200 1234 5678，ICBC）支付 人民币 10.00`, "大写：壹拾元整", "付款账户 6222 0202 0011 2233 445"},
		Digest:    pageDigest, ExpiresAt: time.Date(2026, 11, 28, 9, 1, 0, 0, time.UTC),
	}}
}

func (f *fakeConfirm) HolderConfirmation(_ context.Context, tok string) (wire.ConfirmationView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.viewErr != nil {
		return wire.ConfirmationView{}, f.viewErr
	}
	if tok != pageToken {
		return wire.ConfirmationView{}, fmt.Errorf("%w: no confirmation for this link", wire.ErrConfirmationNotFound)
	}
	return f.view, nil
}

func (f *fakeConfirm) Approve(_ context.Context, tok string, req wire.ApproveRequest) (wire.ConfirmationView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if tok != pageToken {
		return wire.ConfirmationView{}, wire.ErrConfirmationNotFound
	}
	f.gotPINs = append(f.gotPINs, req.PIN)
	r := req
	r.PIN = append([]byte(nil), req.PIN...)
	f.gotApprove = append(f.gotApprove, r)
	if f.approveFn != nil {
		if err := f.approveFn(r); err != nil {
			return wire.ConfirmationView{}, err
		}
	}
	f.view.Status = wire.ConfirmApproved
	return f.view, nil
}

func (f *fakeConfirm) Reject(_ context.Context, tok, key string) (wire.ConfirmationView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if tok != pageToken {
		return wire.ConfirmationView{}, wire.ErrConfirmationNotFound
	}
	f.gotReject = append(f.gotReject, key)
	if f.rejectErr != nil {
		return wire.ConfirmationView{}, f.rejectErr
	}
	f.view.Status = wire.ConfirmRejected
	return f.view, nil
}

func (f *fakeConfirm) Enrol(_ context.Context, key, code string, pin []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gotPINs = append(f.gotPINs, pin)
	f.gotEnrol = append(f.gotEnrol, key+"/"+code)
	if f.enrolFn != nil {
		return f.enrolFn(key, code, append([]byte(nil), pin...))
	}
	return nil
}

// newPageServer serves b; what the server logs is checked at cleanup to
// hold neither the holder token (it is in paths) nor the PIN.
func newPageServer(t *testing.T, b api.ConfirmBackend) *api.ConfirmServer {
	t.Helper()
	var logs syncBuffer
	s, err := api.NewConfirmServer(api.ConfirmConfig{Backend: b, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l := logs.String(); strings.Contains(l, pageToken) || strings.Contains(l, pagePIN) {
			t.Errorf("the server logged the token or the PIN:\n%s", l)
		}
	})
	return s
}

// page sends one request to the confirmation server and returns the
// status, the body and the response headers.
func page(t *testing.T, s *api.ConfirmServer, method, path string, form url.Values, hdr ...string) (int, string, http.Header) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept-Language", "en-US,en;q=0.9") // the English page unless a test asks otherwise (Chinese is the default)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.App().Test(req, 5000)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw), resp.Header
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, body)
		}
	}
}

// TestConfirmPageView: the page shows the key, every display line
// escaped, the digest in groups, the expiry, and a form with the hidden
// key and digest; it holds no script; headers keep the CSP.
func TestConfirmPageView(t *testing.T) {
	s := newPageServer(t, newFakeConfirm())
	st, body, h := page(t, s, "GET", "/c/"+pageToken, nil)
	if st != 200 {
		t.Fatalf("status %d: %s", st, body)
	}
	if ct := h.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("CSP %q", csp)
	}
	mustContain(t, "page", body,
		"<title>Confirm this transaction</title>",
		`<strong id="key">corp-7</strong>`,
		`<li>Pay 10.00 CNY to &lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;Co&#34; (6222 0200 1234 5678) at ICBC</li>`,
		"<li>From account 6222 0202 0011 2233 445</li>",
		`<code id="digest">9f86 d081 884c 7d65 9a2f eaa0 c55a d015 a3bf 4f1b 2b0b 822c d15d 6c15 b0f0 0a08</code>`,
		`datetime="2026-11-28T09:01:00Z">28 Nov 2026 17:01:00 China time (2026-11-28 09:01:00 UTC)</time>`,
		`<html lang="en">`, `<a href="?lang=zh" hreflang="zh" lang="zh" id="switch-lang">中文</a>`, `<form method="post" action="?lang=en"`,
		`<input type="hidden" name="key" value="corp-7">`,
		`<input type="hidden" name="digest" value="`+pageDigest+`">`,
		`<input type="password" id="pin" name="pin" autocomplete="off"`,
		`id="approve" name="action" value="approve"`, `id="reject" name="action" value="reject"`)
	if strings.Contains(strings.ToLower(body), "<script") {
		t.Errorf("page holds a script element:\n%s", body)
	}
	if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Errorf("page loads or links an external resource:\n%s", body)
	}
}

// TestConfirmPageNotFound: malformed and unknown tokens give the same
// HTML 404 page, never JSON.
func TestConfirmPageNotFound(t *testing.T) {
	s := newPageServer(t, newFakeConfirm())
	for _, path := range []string{"/c/short", "/c/" + strings.Repeat("B", 43), "/c/" + strings.Repeat("B", 42) + "%3C"} {
		for _, method := range []string{"GET", "POST"} {
			st, body, h := page(t, s, method, path, url.Values{"key": {"corp-7"}, "digest": {pageDigest}, "action": {"reject"}})
			if st != 404 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
				t.Errorf("%s %s: %d %s", method, path, st, h.Get("Content-Type"))
			}
			mustContain(t, method+" "+path, body, "This confirmation link is not valid or has expired")
		}
	}
}

// TestConfirmPagePost: every outcome of the form, with the status and
// words the holder sees, and what reached the backend.
func TestConfirmPagePost(t *testing.T) {
	approve := url.Values{"key": {"corp-7"}, "digest": {pageDigest}, "pin": {pagePIN}, "action": {"approve"}}
	cases := []struct {
		name      string
		form      url.Values
		approveFn func(wire.ApproveRequest) error
		rejectErr error
		status    int
		want      []string
		form2     bool // the form is shown again
		calls     int  // backend Approve+Reject calls
	}{
		{name: "approved", form: approve, status: 200, want: []string{`id="result"`, "Approved — the transaction was signed"}, calls: 1},
		{name: "wrong PIN", form: approve, status: 403, form2: true, calls: 1,
			approveFn: func(wire.ApproveRequest) error {
				return fmt.Errorf("%w: 5 of 6 tries left before the holder is locked", wire.ErrHolderPIN)
			},
			want: []string{`id="error"`, "Wrong PIN, nothing was signed", "5 of 6 tries left before the holder is locked"}},
		{name: "locked", form: approve, status: 423, calls: 1,
			approveFn: func(wire.ApproveRequest) error {
				return fmt.Errorf("%w: 6 wrong PINs; the holder of \"corp-7\" is now locked", wire.ErrHolderLocked)
			},
			want: []string{"locked — contact the bank", "6 wrong PINs", "security officer"}},
		{name: "bytes changed after display", form: approve, status: 409, calls: 1,
			approveFn: func(r wire.ApproveRequest) error {
				return fmt.Errorf("%w: the approved digest is not the digest of the transaction held", wire.ErrConfirmationMismatch)
			},
			want: []string{"does not match the transaction held — nothing was signed"}},
		{name: "closed", form: approve, status: 409, calls: 1,
			approveFn: func(wire.ApproveRequest) error {
				return fmt.Errorf("%w: this confirmation is expired; an approval is used once", wire.ErrConfirmationClosed)
			},
			want: []string{"This confirmation has already ended", "expired"}},
		{name: "gone", form: approve, status: 404, calls: 1,
			approveFn: func(wire.ApproveRequest) error { return wire.ErrConfirmationNotFound },
			want:      []string{"This confirmation link is not valid or has expired"}},
		{name: "internal", form: approve, status: 500, calls: 1,
			approveFn: func(wire.ApproveRequest) error { return errors.New("disk on fire at /var/lib/keyward") },
			want:      []string{"Something went wrong on our side — nothing was signed"}},
		{name: "rejected", form: url.Values{"key": {"corp-7"}, "digest": {pageDigest}, "pin": {""}, "action": {"reject"}}, status: 200, calls: 1,
			want: []string{"Rejected — nothing was signed"}},
		{name: "reject closed", form: url.Values{"key": {"corp-7"}, "digest": {pageDigest}, "action": {"reject"}}, status: 409, calls: 1,
			rejectErr: fmt.Errorf("%w: this confirmation is approved", wire.ErrConfirmationClosed),
			want:      []string{"This confirmation has already ended"}},
		{name: "no PIN", form: url.Values{"key": {"corp-7"}, "digest": {pageDigest}, "action": {"approve"}}, status: 400, form2: true,
			want: []string{"Enter your holder PIN to approve"}},
		{name: "no digest", form: url.Values{"key": {"corp-7"}, "pin": {pagePIN}, "action": {"approve"}}, status: 400,
			want: []string{"The form could not be read"}},
		{name: "bad action", form: url.Values{"key": {"corp-7"}, "digest": {pageDigest}, "pin": {pagePIN}, "action": {"sign"}}, status: 400,
			want: []string{"Choose"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newFakeConfirm()
			b.approveFn, b.rejectErr = c.approveFn, c.rejectErr
			s := newPageServer(t, b)
			st, body, h := page(t, s, "POST", "/c/"+pageToken, c.form)
			if st != c.status {
				t.Errorf("status %d, want %d:\n%s", st, c.status, body)
			}
			if !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
				t.Errorf("content type %q", h.Get("Content-Type"))
			}
			mustContain(t, "page", body, c.want...)
			if got := strings.Contains(body, `id="pin"`); got != c.form2 {
				t.Errorf("form shown again: %v, want %v", got, c.form2)
			}
			if strings.Contains(body, pagePIN) || strings.Contains(body, "/var/lib") {
				t.Errorf("page echoes the PIN or internal detail:\n%s", body)
			}
			if n := len(b.gotApprove) + len(b.gotReject); n != c.calls {
				t.Errorf("%d backend calls, want %d", n, c.calls)
			}
			for _, r := range b.gotApprove {
				if r.Key != "corp-7" || r.Digest != pageDigest || string(r.PIN) != pagePIN {
					t.Errorf("backend got %+v (PIN %q)", r, r.PIN)
				}
			}
			for _, p := range b.gotPINs {
				if strings.Trim(string(p), "\x00") != "" {
					t.Errorf("PIN bytes not wiped after the request: %q", p)
				}
			}
		})
	}
}

// TestConfirmPageRefusesForeignPosts: a cross-site post and a post that
// is not a urlencoded form reach no backend method.
func TestConfirmPageRefusesForeignPosts(t *testing.T) {
	b := newFakeConfirm()
	s := newPageServer(t, b)
	form := url.Values{"key": {"corp-7"}, "digest": {pageDigest}, "pin": {pagePIN}, "action": {"approve"}}
	if st, body, _ := page(t, s, "POST", "/c/"+pageToken, form, "Sec-Fetch-Site", "cross-site"); st != 403 || !strings.Contains(body, "confirmation page itself") {
		t.Errorf("cross-site post: %d\n%s", st, body)
	}
	if st, _, _ := page(t, s, "POST", "/c/"+pageToken, form, "Content-Type", "application/json"); st != 415 {
		t.Errorf("JSON post: %d", st)
	}
	if st, _, _ := page(t, s, "POST", "/c/"+pageToken, form, "Sec-Fetch-Site", "same-origin"); st != 200 {
		t.Errorf("same-origin post: %d", st)
	}
	if len(b.gotApprove) != 1 {
		t.Errorf("%d approvals, want only the same-origin one", len(b.gotApprove))
	}
}

// TestConfirmPageEnded: the link of an ended confirmation shows how it
// ended, with no form.
func TestConfirmPageEnded(t *testing.T) {
	for st, want := range map[wire.ConfirmationStatus]string{
		wire.ConfirmApproved: "Approved — the transaction was signed",
		wire.ConfirmRejected: "Rejected — nothing was signed",
		wire.ConfirmExpired:  "This confirmation has already ended (expired)",
	} {
		b := newFakeConfirm()
		b.view.Status, b.view.Reason = st, "the reason"
		_, body, _ := page(t, newPageServer(t, b), "GET", "/c/"+pageToken, nil)
		mustContain(t, string(st), body, want)
		if strings.Contains(body, "<form") {
			t.Errorf("%s: form shown", st)
		}
	}
}

// TestConfirmPageEnrol: the enrolment form; different PINs are refused
// before keysvc is asked; keysvc's refusals are shown in words.
func TestConfirmPageEnrol(t *testing.T) {
	b := newFakeConfirm()
	s := newPageServer(t, b)
	st, body, _ := page(t, s, "GET", "/enrol", nil)
	if st != 200 {
		t.Fatalf("GET /enrol: %d", st)
	}
	mustContain(t, "enrol form", body, `id="key"`, `id="setup_code"`, `type="password" id="pin"`, `type="password" id="pin2"`)

	form := func(key, code, pin, pin2 string) url.Values {
		return url.Values{"key": {key}, "setup_code": {code}, "pin": {pin}, "pin2": {pin2}}
	}
	st, body, _ = page(t, s, "POST", "/enrol", form("corp-7", "ABCD", pagePIN, pagePIN+"x"))
	if st != 400 || !strings.Contains(body, "The two PINs are not the same") || len(b.gotEnrol) != 0 {
		t.Fatalf("different PINs: %d, %d enrol calls\n%s", st, len(b.gotEnrol), body)
	}
	if st, _, _ = page(t, s, "POST", "/enrol", form("Corp 7!", "ABCD", pagePIN, pagePIN)); st != 400 || len(b.gotEnrol) != 0 {
		t.Fatalf("bad key name: %d", st)
	}
	b.enrolFn = func(_, code string, _ []byte) error {
		if code != "ABCD" {
			return fmt.Errorf("%w: wrong setup code; 5 of 6 tries left", wire.ErrHolderPIN)
		}
		return nil
	}
	st, body, _ = page(t, s, "POST", "/enrol", form("corp-7", "WXYZ", pagePIN, pagePIN))
	if st != 403 || !strings.Contains(body, "5 of 6 tries left") || !strings.Contains(body, `value="corp-7"`) {
		t.Fatalf("wrong setup code: %d\n%s", st, body)
	}
	st, body, _ = page(t, s, "POST", "/enrol", form("corp-7", "ABCD", pagePIN, pagePIN))
	if st != 200 || !strings.Contains(body, "Your holder PIN is set") {
		t.Fatalf("enrol: %d\n%s", st, body)
	}
	b.enrolFn = func(string, string, []byte) error {
		return fmt.Errorf("%w: token: PIN must not be a simple sequence such as 123456 or 654321", wire.ErrInvalidArgument)
	}
	st, body, _ = page(t, s, "POST", "/enrol", form("corp-7", "ABCD", "234567", "234567"))
	if st != 400 || !strings.Contains(body, "simple sequence") {
		t.Fatalf("weak PIN: %d\n%s", st, body)
	}
	for _, p := range b.gotPINs {
		if strings.Trim(string(p), "\x00") != "" {
			t.Errorf("PIN bytes not wiped after the request")
		}
	}
}

// TestConfirmEnrolLimitShared: the JSON route and the web page share one
// per-address enrolment budget; past it both answer 429 without asking
// keysvc, the page with the reason in words.
func TestConfirmEnrolLimitShared(t *testing.T) {
	b := newFakeConfirm()
	b.enrolFn = func(string, string, []byte) error { return fmt.Errorf("%w: wrong setup code", wire.ErrHolderPIN) }
	s, err := api.NewConfirmServer(api.ConfirmConfig{Backend: b, EnrolPerMinute: 3})
	if err != nil {
		t.Fatal(err)
	}
	jsonEnrol := func() (int, string) {
		req := httptest.NewRequest("POST", "/confirm/v1/enrol", strings.NewReader(`{"key":"corp-7","setup_code":"WXYZ","pin":"`+pagePIN+`"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.App().Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	form := url.Values{"key": {"corp-7"}, "setup_code": {"WXYZ"}, "pin": {pagePIN}, "pin2": {pagePIN}}
	for i := 0; i < 2; i++ {
		if st, body := jsonEnrol(); st != 403 {
			t.Fatalf("JSON attempt %d: %d %s", i+1, st, body)
		}
	}
	if st, body, _ := page(t, s, "POST", "/enrol", form); st != 403 {
		t.Fatalf("page attempt 3: %d\n%s", st, body)
	}
	if st, body := jsonEnrol(); st != 429 || !strings.Contains(body, `"rate_limited"`) {
		t.Fatalf("JSON attempt 4: %d %s, want 429 rate_limited", st, body)
	}
	if st, body, _ := page(t, s, "POST", "/enrol", form); st != 429 || !strings.Contains(body, "Too many enrolment attempts") {
		t.Fatalf("page attempt 5: %d\n%s", st, body)
	}
	if len(b.gotEnrol) != 3 {
		t.Errorf("keysvc was asked %d times, want 3", len(b.gotEnrol))
	}
}
