package api

// The confirmation web page: the holder's second channel for people
// (R-DC-1..4), beside the JSON routes of confirmserver.go.
//
//	GET  /c/{holder-token}  what to confirm, and a form: PIN, Approve, Reject
//	POST /c/{holder-token}  key, digest, pin, action=approve|reject
//	GET  /enrol             a form to set the holder PIN with the setup code
//	POST /enrol             key, setup_code, pin, pin2
//
// Pages are rendered on the server with html/template, whose contextual
// escaping is what keeps a payee name such as "<script>…" text (display
// lines come from the transaction, so from whoever wrote it). They hold no
// JavaScript and load nothing: the server's CSP forbids both; styles are
// inline. The form's hidden key and digest are the ones displayed, and
// keysvc signs only if they still match what it holds (R-DC-3).
//
// # Language
//
// Pages are Chinese first (issue 18): the language is ?lang=zh|en when
// given (the switch link at the top of every page; the forms post back to
// "?lang=…", so the choice survives the post), else the browser's
// Accept-Language, else Chinese. <html lang> is zh-CN or en, and the
// response says Content-Language and Vary: Accept-Language. Every text
// comes from pageTexts (confirmpage_texts.go); the transaction is keysvc's
// Chinese display (txformat.DisplayLinesIn: CNY amounts also in Chinese
// capitals) or its English one; the expiry is China time with UTC beside
// it (l10n.Time). keysvc's own error texts are English: the English page
// relays them as before, the Chinese page says the same from the error's
// type (wire.TriesLeft for tries left, token's PIN-rule errors for a
// refused PIN, the sentinel otherwise).
//
// PINs arrive in urlencoded form bodies. They are copied out once, the
// request's decoded copy and raw body are overwritten, and the copy is
// wiped after use; no page ever echoes a PIN, and nothing here logs a path
// (it holds the holder token) or a form value.

import (
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"mime"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/keysvc/wire/httpedge"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/l10n"
)

//go:embed confirmpage/*.html
var pageFS embed.FS

var pages = template.Must(template.ParseFS(pageFS, "confirmpage/*.html"))

// pageRoutes registers the confirmation web page (GET/POST /c/{token})
// and the holder's enrolment page (GET/POST /enrol).
func (s *ConfirmServer) pageRoutes() {
	s.app.Get("/c/:token", s.pageView)
	s.app.Post("/c/:token", s.pagePost)
	s.app.Get("/enrol", s.pageEnrolForm)
	s.app.Post("/enrol", s.enrolLimit, s.pageEnrol)
}

// confirmPage is the data of confirm.html.
type confirmPage struct {
	pageBase
	Key, Format, Digest string
	Display             []string
	DigestGroups        []string
	Expires, ExpiresISO string
	Error               string
}

// resultPage is the data of result.html; Class is ok, refused or info.
type resultPage struct {
	pageBase
	Headline, Detail, Advice, Class string
}

// enrolPage is the data of enrol.html.
type enrolPage struct {
	pageBase
	Key, Error string
}

// base is the page frame's data in c's language, titled key.
func base(c *fiber.Ctx, key string) pageBase {
	lang := pageLang(c)
	return pageBase{Lang: lang, Title: pageTexts.Text(lang, key)}
}

// newConfirmPage shows v in the page's language: keysvc's Chinese display
// lines (CNY amounts also in capitals) when the page is Chinese and the
// confirmation has them, its English lines otherwise; the expiry in China
// time with UTC beside it.
func newConfirmPage(c *fiber.Ctx, v wire.ConfirmationView) confirmPage {
	b := base(c, "Confirm this transaction")
	display := v.Display
	if l10n.IsChinese(b.Lang) && len(v.DisplayZH) > 0 {
		display = v.DisplayZH
	}
	return confirmPage{pageBase: b, Key: v.Key, Format: v.Format, Digest: v.Digest, Display: display,
		DigestGroups: groups(v.Digest, 4), Expires: l10n.Time(v.ExpiresAt, b.Lang),
		ExpiresISO: v.ExpiresAt.UTC().Format(time.RFC3339)}
}

// groups cuts s into n-character groups, for comparing digests by eye.
func groups(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}

// render writes one page. A template error is a programming error: it is
// logged (without the path) and a bare 500 is sent.
func (s *ConfirmServer) render(c *fiber.Ctx, status int, name string, data any) error {
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	c.Set(fiber.HeaderContentLanguage, base(c, "").HTMLLang())
	c.Vary(fiber.HeaderAcceptLanguage)
	if err := pages.ExecuteTemplate(c.Response().BodyWriter(), name, data); err != nil {
		httpedge.Logger(c).Error("rendering a confirmation page", "page", name, "err", err)
		c.Response().ResetBody()
		return c.Status(http.StatusInternalServerError).SendString(tr(c, "Something went wrong on our side — nothing was signed"))
	}
	return nil
}

// result shows how a request ended; headline, detail and advice are
// already in the page's language.
func (s *ConfirmServer) result(c *fiber.Ctx, status int, class, headline, detail, advice string) error {
	b := base(c, "")
	b.Title = headline
	return s.render(c, status, "result.html", resultPage{pageBase: b, Headline: headline, Detail: detail, Advice: advice, Class: class})
}

func (s *ConfirmServer) notFoundPage(c *fiber.Ctx) error {
	return s.result(c, http.StatusNotFound, "refused", tr(c, "This confirmation link is not valid or has expired"), "",
		tr(c, "Nothing was signed. If you are expecting a transaction, open the newest link the bank sent you."))
}

// pageView is GET /c/{token}.
func (s *ConfirmServer) pageView(c *fiber.Ctx) error {
	t, err := holderToken(c)
	if err != nil {
		return s.notFoundPage(c)
	}
	v, err := s.backend.HolderConfirmation(c.UserContext(), t)
	if err != nil {
		return s.errorPage(c, err)
	}
	return s.viewPage(c, http.StatusOK, v, "")
}

// viewPage shows a pending confirmation with its form, or how an ended
// one ended.
func (s *ConfirmServer) viewPage(c *fiber.Ctx, status int, v wire.ConfirmationView, msg string) error {
	switch v.Status {
	case wire.ConfirmPending:
		p := newConfirmPage(c, v)
		p.Error = msg
		return s.render(c, status, "confirm.html", p)
	case wire.ConfirmApproved:
		return s.result(c, http.StatusOK, "ok", tr(c, "Approved — the transaction was signed"), "", "")
	case wire.ConfirmRejected:
		return s.result(c, http.StatusOK, "refused", tr(c, "Rejected — nothing was signed"), endedReason(c, v), "")
	}
	return s.result(c, http.StatusOK, "info", tr(c, "This confirmation has already ended (%s) — nothing was signed", statusName(c, v.Status)), endedReason(c, v), "")
}

// pagePost is POST /c/{token}: approve with the PIN, or reject.
func (s *ConfirmServer) pagePost(c *fiber.Ctx) error {
	t, err := holderToken(c)
	if err != nil {
		return s.notFoundPage(c)
	}
	f, err := s.readForm(c, "pin")
	defer f.wipe()
	if err != nil {
		return s.formError(c, err)
	}
	key, digest := f.value("key"), f.value("digest")
	if key == "" || digest == "" {
		return s.result(c, http.StatusBadRequest, "refused", tr(c, "The form could not be read"), tr(c, "The key or the fingerprint shown is missing; open the link again."), "")
	}
	switch f.value("action") {
	case "approve":
		if len(f.pins[0]) == 0 {
			return s.reshow(c, t, http.StatusBadRequest, tr(c, "Enter your holder PIN to approve."))
		}
		_, err := s.backend.Approve(c.UserContext(), t, wire.ApproveRequest{Key: key, Digest: digest, PIN: f.pins[0]})
		f.wipe() // keysvc wipes it too; this does not rely on that
		if errors.Is(err, wire.ErrHolderPIN) {
			_, _, msg, _ := classify(err)
			if left, ok := triesText(c, err, msg, "%d of %d tries left before the holder is locked"); ok {
				return s.reshow(c, t, http.StatusForbidden, tr(c, "Wrong PIN, nothing was signed (%s).", left))
			}
			return s.reshow(c, t, http.StatusForbidden, tr(c, "Wrong PIN, nothing was signed."))
		}
		if err != nil {
			return s.errorPage(c, err)
		}
		return s.result(c, http.StatusOK, "ok", tr(c, "Approved — the transaction was signed"), "", tr(c, "The bank's system has received the signature."))
	case "reject":
		if _, err := s.backend.Reject(c.UserContext(), t, key); err != nil {
			return s.errorPage(c, err)
		}
		return s.result(c, http.StatusOK, "refused", tr(c, "Rejected — nothing was signed"), tr(c, "The request is cancelled."), tr(c, "If you did not start this transaction, tell the bank."))
	}
	return s.result(c, http.StatusBadRequest, "refused", tr(c, "The form could not be read"), tr(c, `Choose "Approve" or "Reject".`), "")
}

// reshow shows the confirmation's form again with msg, as it now stands.
func (s *ConfirmServer) reshow(c *fiber.Ctx, t string, status int, msg string) error {
	v, err := s.backend.HolderConfirmation(c.UserContext(), t)
	if err != nil {
		return s.errorPage(c, err)
	}
	if v.Status != wire.ConfirmPending {
		return s.viewPage(c, http.StatusOK, v, "")
	}
	return s.viewPage(c, status, v, msg)
}

// errorPage puts a keysvc error into words, with the status of the JSON
// routes' table (classify). The English page shows the error's own text,
// which keysvc writes for the holder (tries left, locked, ended) and which
// never holds a PIN; the Chinese page says the same from the error's type
// (keysvc's texts are English). Internal errors show only a fixed text.
func (s *ConfirmServer) errorPage(c *fiber.Ctx, err error) error {
	status, code, msg, internal := classify(err)
	detail := func(zhKey string) string {
		if zh(c) {
			return txt(c, zhKey)
		}
		return msg + "."
	}
	switch {
	case internal:
		httpedge.Logger(c).Error("confirmation page request failed", "err", err)
		return s.result(c, http.StatusInternalServerError, "refused", tr(c, "Something went wrong on our side — nothing was signed"), "",
			tr(c, "Try again in a moment; if it happens again, contact the bank."))
	case errors.Is(err, wire.ErrConfirmationNotFound):
		return s.notFoundPage(c)
	case errors.Is(err, wire.ErrHolderLocked):
		return s.result(c, status, "refused", tr(c, "The holder PIN is locked — contact the bank"), detail("The holder PIN was entered wrongly too many times."),
			tr(c, "Nothing was signed. Only the bank's security officer can unlock it; call the bank."))
	case errors.Is(err, wire.ErrConfirmationMismatch):
		return s.result(c, status, "refused", tr(c, "What you approved does not match the transaction held — nothing was signed"),
			detail("What was approved is not the transaction keysvc holds."),
			tr(c, "If you did not change anything, tell the bank: the transaction may have been altered."))
	case errors.Is(err, wire.ErrConfirmationClosed):
		return s.result(c, status, "info", tr(c, "This confirmation has already ended"), detail("An approval is used once."), "")
	}
	d := msg + "."
	if zh(c) {
		d = tr(c, "Error code: %s.", code)
	}
	return s.result(c, status, "refused", tr(c, "The request was refused — nothing was signed"), d, "")
}

// formError answers a form that could not be read at all. readForm's
// messages are catalogue keys.
func (s *ConfirmServer) formError(c *fiber.Ctx, err error) error {
	var ae *apiError
	if errors.As(err, &ae) {
		headline := tr(c, "The form could not be read")
		if ae.Status == http.StatusForbidden {
			headline = tr(c, "This form must be sent from the confirmation page itself")
		}
		return s.result(c, ae.Status, "refused", headline, txt(c, ae.Message), "")
	}
	return s.errorPage(c, err)
}

// pageEnrolForm is GET /enrol.
func (s *ConfirmServer) pageEnrolForm(c *fiber.Ctx) error {
	return s.render(c, http.StatusOK, "enrol.html", enrolPage{pageBase: base(c, "Set your holder PIN")})
}

// pageEnrol is POST /enrol: two equal PINs are required before keysvc is
// asked (which applies the PIN rules and counts wrong setup codes).
func (s *ConfirmServer) pageEnrol(c *fiber.Ctx) error {
	f, err := s.readForm(c, "pin", "pin2")
	defer f.wipe()
	if err != nil {
		return s.formError(c, err)
	}
	key, code := f.value("key"), f.value("setup_code")
	again := func(status int, msg string) error {
		return s.render(c, status, "enrol.html", enrolPage{pageBase: base(c, "Set your holder PIN"), Key: key, Error: msg})
	}
	if err := validKeyName(key); err != nil {
		return again(http.StatusBadRequest, tr(c, "The key name is not valid: use the name the bank gave you."))
	}
	switch {
	case code == "" || len(f.pins[0]) == 0:
		return again(http.StatusBadRequest, tr(c, "Fill in the setup code and the new PIN twice."))
	case subtle.ConstantTimeCompare(f.pins[0], f.pins[1]) != 1:
		return again(http.StatusBadRequest, tr(c, "The two PINs are not the same; nothing was changed."))
	}
	err = s.backend.Enrol(c.UserContext(), key, code, f.pins[0])
	f.wipe()
	_, _, msg, internal := classify(err)
	switch {
	case err == nil:
		return s.result(c, http.StatusOK, "ok", tr(c, "Your holder PIN is set"), tr(c, "Key %s now asks for this PIN before it signs.", key),
			tr(c, "Keep the PIN to yourself; the bank will never ask for it."))
	case internal:
		return s.errorPage(c, err)
	case errors.Is(err, wire.ErrHolderPIN):
		if left, ok := triesText(c, err, msg, "%d of %d tries left"); ok {
			return again(http.StatusForbidden, tr(c, "Wrong setup code: %s.", left))
		}
		return again(http.StatusForbidden, tr(c, "Wrong setup code."))
	case errors.Is(err, wire.ErrInvalidArgument):
		return again(http.StatusBadRequest, tr(c, "This PIN is not allowed: %s.", pinRule(c, err, msg)))
	}
	return s.errorPage(c, err)
}

// pageForm is a read urlencoded form; pins are copies the caller wipes.
type pageForm struct {
	c    *fiber.Ctx
	pins [][]byte
}

// value returns a copy of a non-PIN field ("" when absent).
func (f *pageForm) value(name string) string {
	if f.c == nil {
		return ""
	}
	return string(f.c.Request().PostArgs().Peek(name))
}

func (f *pageForm) wipe() {
	for _, p := range f.pins {
		token.Wipe(p)
	}
}

// readForm checks that c is a same-origin urlencoded form post and copies
// the PIN fields out of it, overwriting the request's decoded copies and
// its raw body so no clear PIN stays in fasthttp's pooled buffers.
func (s *ConfirmServer) readForm(c *fiber.Ctx, pinFields ...string) (pageForm, error) {
	defer token.Wipe(c.Request().Body()) // also when the form is refused
	// Browsers say where a form came from; refuse posts from other sites
	// (a second line behind the unguessable token and the CSP's
	// form-action). Clients that send no Sec-Fetch-Site are let through.
	switch c.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return pageForm{}, newError(http.StatusForbidden, "forbidden", "Open the link you were sent and use its buttons.") // a pageTexts key
	}
	mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err != nil || mt != fiber.MIMEApplicationForm {
		return pageForm{}, newError(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "Send the page's form as it is (application/x-www-form-urlencoded).") // a pageTexts key
	}
	args := c.Request().PostArgs()
	f := pageForm{c: c, pins: make([][]byte, len(pinFields))}
	for i, name := range pinFields {
		raw := args.Peek(name)
		f.pins[i] = append([]byte(nil), raw...)
		token.Wipe(raw)
	}
	return f, nil
}
