package httpedge

import (
	"errors"
	"net/http"
)

// Codes the edge itself produces, beside a service's own Table.
const (
	CodeInternal         = "internal"
	CodeInvalidJSON      = "invalid_json"
	CodeUnknownField     = "unknown_field"
	CodeInvalidArgument  = "invalid_argument"
	CodeBodyTooLarge     = "body_too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeBadRequest       = "bad_request"
	CodeRequestTimeout   = "request_timeout"
	CodeHeadersTooLarge  = "headers_too_large"
	CodeRateLimited      = "rate_limited"

	// MsgInternal is all a client learns of an internal error or a panic.
	MsgInternal = "internal error; the incident has been logged"
)

// Error is a refusal whose message is written for the client (bad
// arguments, authentication, rate limits): the edge shows it as is.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// NewError returns an *Error.
func NewError(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// Envelope is the JSON shape of every error response:
// {"error":{"code":"…","message":"…"}}.
type Envelope struct {
	Error Detail `json:"error"`
}

// Detail is the inside of an Envelope.
type Detail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Row is one line of a service's error table: an error (a sentinel,
// matched with errors.Is), the HTTP status and the stable code it
// becomes. Message, when set, is shown instead of the error's own text
// (for errors whose text is not for clients).
type Row struct {
	Err     error
	Status  int
	Code    string
	Message string
}

// Table is a service's error table; the first row whose Err matches wins.
type Table []Row

// Lookup returns the first row matching err.
func (t Table) Lookup(err error) (Row, bool) {
	for _, r := range t {
		if errors.Is(err, r.Err) {
			return r, true
		}
	}
	return Row{}, false
}

// Problem is what a client sees of an error. Internal is true when the
// error was not one a client may read: the edge logs it and shows only
// MsgInternal.
type Problem struct {
	Status   int
	Code     string
	Message  string
	Internal bool
}

// Classify turns any error into what the client sees, in this order: an
// *Error; a *DecodeError; the first matching row of cfg.Errors; fiber's
// own errors (routing, limits, fasthttp parse errors: a fixed text per
// status, since theirs can carry parser detail); anything else is 500
// internal.
func (cfg Config) Classify(err error) Problem {
	var (
		e  *Error
		de *DecodeError
		fe *fiberError
	)
	switch {
	case errors.As(err, &e):
		return Problem{Status: e.Status, Code: e.Code, Message: e.Message}
	case errors.As(err, &de):
		p := Problem{Status: de.Status(), Code: de.Code(), Message: de.Message}
		if cfg.InvalidCode != "" && p.Status == http.StatusBadRequest {
			p.Code = cfg.InvalidCode
		}
		return p
	}
	if r, ok := cfg.Errors.Lookup(err); ok {
		msg := r.Message
		if msg == "" {
			msg = err.Error()
		}
		return Problem{Status: r.Status, Code: r.Code, Message: msg}
	}
	if errors.As(err, &fe) {
		return fiberProblem(fe.Code)
	}
	return Problem{Status: http.StatusInternalServerError, Code: CodeInternal, Message: MsgInternal, Internal: true}
}

func fiberProblem(status int) Problem {
	p := func(code, msg string) Problem { return Problem{Status: status, Code: code, Message: msg} }
	switch status {
	case http.StatusNotFound:
		return p(CodeNotFound, "no such route")
	case http.StatusMethodNotAllowed:
		return p(CodeMethodNotAllowed, "method not allowed on this route")
	case http.StatusRequestEntityTooLarge:
		return p(CodeBodyTooLarge, "request body exceeds the server's limit")
	case http.StatusRequestHeaderFieldsTooLarge:
		return p(CodeHeadersTooLarge, "request headers are too large")
	case http.StatusRequestTimeout:
		return p(CodeRequestTimeout, "request not received in time")
	case http.StatusUnsupportedMediaType:
		return p(CodeUnsupportedMedia, "unsupported media type")
	case http.StatusTooManyRequests:
		return p(CodeRateLimited, "too many requests; slow down and try again in a minute")
	case http.StatusBadRequest:
		return p(CodeBadRequest, "malformed HTTP request")
	}
	if status >= 400 && status < 500 {
		return p(CodeBadRequest, http.StatusText(status))
	}
	return Problem{Status: http.StatusInternalServerError, Code: CodeInternal, Message: MsgInternal, Internal: true}
}
