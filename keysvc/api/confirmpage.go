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
)

//go:embed confirmpage/*.html
var pageFS embed.FS

var pages = template.Must(template.ParseFS(pageFS, "confirmpage/*.html"))

// Page titles and the fixed texts tests and people rely on.
const (
	titleConfirm  = "Confirm this transaction"
	titleEnrol    = "Set your holder PIN"
	textNotFound  = "This confirmation link is not valid or has expired"
	textApproved  = "Approved — the transaction was signed"
	textRejected  = "Rejected — nothing was signed"
	textLocked    = "The holder PIN is locked — contact the bank"
	textMismatch  = "What you approved does not match the transaction held — nothing was signed"
	textClosed    = "This confirmation has already ended"
	textEnrolled  = "Your holder PIN is set"
	textInternal  = "Something went wrong on our side — nothing was signed"
	textBadForm   = "The form could not be read"
	textCrossSite = "This form must be sent from the confirmation page itself"
)

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
	Title, Key, Format, Digest string
	Display                    []string
	DigestGroups               []string
	Expires, ExpiresISO        string
	Error                      string
}

// resultPage is the data of result.html; Class is ok, refused or info.
type resultPage struct {
	Title, Headline, Detail, Advice, Class string
}

// enrolPage is the data of enrol.html.
type enrolPage struct {
	Title, Key, Error string
}

func newConfirmPage(v wire.ConfirmationView) confirmPage {
	return confirmPage{Title: titleConfirm, Key: v.Key, Format: v.Format, Digest: v.Digest, Display: v.Display,
		DigestGroups: groups(v.Digest, 4), Expires: v.ExpiresAt.UTC().Format("2006-01-02 15:04:05 UTC"),
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
	if err := pages.ExecuteTemplate(c.Response().BodyWriter(), name, data); err != nil {
		httpedge.Logger(c).Error("rendering a confirmation page", "page", name, "err", err)
		c.Response().ResetBody()
		return c.Status(http.StatusInternalServerError).SendString(textInternal)
	}
	return nil
}

func (s *ConfirmServer) result(c *fiber.Ctx, status int, class, headline, detail, advice string) error {
	return s.render(c, status, "result.html", resultPage{Title: headline, Headline: headline, Detail: detail, Advice: advice, Class: class})
}

func (s *ConfirmServer) notFoundPage(c *fiber.Ctx) error {
	return s.result(c, http.StatusNotFound, "refused", textNotFound, "",
		"Nothing was signed. If you are expecting a transaction, open the newest link the bank sent you.")
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
		p := newConfirmPage(v)
		p.Error = msg
		return s.render(c, status, "confirm.html", p)
	case wire.ConfirmApproved:
		return s.result(c, http.StatusOK, "ok", textApproved, "", "")
	case wire.ConfirmRejected:
		return s.result(c, http.StatusOK, "refused", textRejected, v.Reason, "")
	}
	return s.result(c, http.StatusOK, "info", textClosed+" ("+string(v.Status)+") — nothing was signed", v.Reason, "")
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
		return s.result(c, http.StatusBadRequest, "refused", textBadForm, "The key or the fingerprint shown is missing; open the link again.", "")
	}
	switch f.value("action") {
	case "approve":
		if len(f.pins[0]) == 0 {
			return s.reshow(c, t, http.StatusBadRequest, "Enter your holder PIN to approve.")
		}
		_, err := s.backend.Approve(c.UserContext(), t, wire.ApproveRequest{Key: key, Digest: digest, PIN: f.pins[0]})
		f.wipe() // keysvc wipes it too; this does not rely on that
		if errors.Is(err, wire.ErrHolderPIN) {
			_, _, msg, _ := classify(err)
			return s.reshow(c, t, http.StatusForbidden, "Wrong PIN, nothing was signed ("+msg+").")
		}
		if err != nil {
			return s.errorPage(c, err)
		}
		return s.result(c, http.StatusOK, "ok", textApproved, "", "The bank's system has received the signature.")
	case "reject":
		if _, err := s.backend.Reject(c.UserContext(), t, key); err != nil {
			return s.errorPage(c, err)
		}
		return s.result(c, http.StatusOK, "refused", textRejected, "The request is cancelled.", "If you did not start this transaction, tell the bank.")
	}
	return s.result(c, http.StatusBadRequest, "refused", textBadForm, `Choose "Approve" or "Reject".`, "")
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
// routes' table (classify). The message shown is the error's own text,
// which keysvc writes for the holder (tries left, locked, ended) and which
// never holds a PIN; internal errors show only a fixed text.
func (s *ConfirmServer) errorPage(c *fiber.Ctx, err error) error {
	status, _, msg, internal := classify(err)
	switch {
	case internal:
		httpedge.Logger(c).Error("confirmation page request failed", "err", err)
		return s.result(c, http.StatusInternalServerError, "refused", textInternal, "", "Try again in a moment; if it happens again, contact the bank.")
	case errors.Is(err, wire.ErrConfirmationNotFound):
		return s.notFoundPage(c)
	case errors.Is(err, wire.ErrHolderLocked):
		return s.result(c, status, "refused", textLocked, msg+".", "Nothing was signed. Only the bank's security officer can unlock it; call the bank.")
	case errors.Is(err, wire.ErrConfirmationMismatch):
		return s.result(c, status, "refused", textMismatch, msg+".", "If you did not change anything, tell the bank: the transaction may have been altered.")
	case errors.Is(err, wire.ErrConfirmationClosed):
		return s.result(c, status, "info", textClosed, msg+".", "")
	}
	return s.result(c, status, "refused", "The request was refused — nothing was signed", msg+".", "")
}

// formError answers a form that could not be read at all.
func (s *ConfirmServer) formError(c *fiber.Ctx, err error) error {
	var ae *apiError
	if errors.As(err, &ae) {
		headline := textBadForm
		if ae.Status == http.StatusForbidden {
			headline = textCrossSite
		}
		return s.result(c, ae.Status, "refused", headline, ae.Message, "")
	}
	return s.errorPage(c, err)
}

// pageEnrolForm is GET /enrol.
func (s *ConfirmServer) pageEnrolForm(c *fiber.Ctx) error {
	return s.render(c, http.StatusOK, "enrol.html", enrolPage{Title: titleEnrol})
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
		return s.render(c, status, "enrol.html", enrolPage{Title: titleEnrol, Key: key, Error: msg})
	}
	if err := validKeyName(key); err != nil {
		return again(http.StatusBadRequest, "The key name is not valid: use the name the bank gave you.")
	}
	switch {
	case code == "" || len(f.pins[0]) == 0:
		return again(http.StatusBadRequest, "Fill in the setup code and the new PIN twice.")
	case subtle.ConstantTimeCompare(f.pins[0], f.pins[1]) != 1:
		return again(http.StatusBadRequest, "The two PINs are not the same; nothing was changed.")
	}
	err = s.backend.Enrol(c.UserContext(), key, code, f.pins[0])
	f.wipe()
	_, _, msg, internal := classify(err)
	switch {
	case err == nil:
		return s.result(c, http.StatusOK, "ok", textEnrolled, "Key "+key+" now asks for this PIN before it signs.", "Keep the PIN to yourself; the bank will never ask for it.")
	case internal:
		return s.errorPage(c, err)
	case errors.Is(err, wire.ErrHolderPIN):
		return again(http.StatusForbidden, "Wrong setup code: "+msg+".")
	case errors.Is(err, wire.ErrInvalidArgument):
		return again(http.StatusBadRequest, "This PIN is not allowed: "+msg+".")
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
		return pageForm{}, newError(http.StatusForbidden, "forbidden", "Open the link you were sent and use its buttons.")
	}
	mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err != nil || mt != fiber.MIMEApplicationForm {
		return pageForm{}, newError(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "Send the page's form as it is (application/x-www-form-urlencoded).")
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
