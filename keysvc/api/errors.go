package api

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/keyward/keyward/keysvc/wire"
)

// errorCode is one row of the error table: a keysvc sentinel, the HTTP
// status it becomes and the stable code clients match on.
type errorCode struct {
	err    error
	status int
	code   string
}

// statusOf is the HTTP status of each keysvc code (wire.SentinelCodes).
var statusOf = map[string]int{
	"invalid_argument":   http.StatusBadRequest,
	"key_not_found":      http.StatusNotFound,
	"version_not_found":  http.StatusNotFound,
	"key_exists":         http.StatusConflict,
	"illegal_transition": http.StatusConflict,
	"version_not_usable": http.StatusConflict,
	"wrong_purpose":      http.StatusBadRequest,
	"forbidden":          http.StatusForbidden,
	"unauthenticated":    http.StatusUnauthorized,
	"invalid_ciphertext": http.StatusBadRequest,
	"invalid_signature":  http.StatusBadRequest,
	"decryption_failed":  http.StatusBadRequest,
	"token_unavailable":  http.StatusServiceUnavailable,
	"token_locked":       http.StatusServiceUnavailable,
	"audit_unavailable":  http.StatusServiceUnavailable,
	"store_unavailable":  http.StatusServiceUnavailable,

	"confirmation_required":      http.StatusConflict,
	"transaction_not_recognised": http.StatusUnprocessableEntity,
	"confirmation_pending":       http.StatusConflict,
	"confirmation_not_found":     http.StatusNotFound,
	"confirmation_closed":        http.StatusConflict,
	"confirmation_mismatch":      http.StatusConflict,
	"holder_pin_incorrect":       http.StatusForbidden,
	"holder_locked":              http.StatusLocked,
	"holder_not_enrolled":        http.StatusConflict,
	"confirmation_unavailable":   http.StatusServiceUnavailable,
}

// errorTable maps every keysvc sentinel to a status and a stable code, in
// one place (STYLE "Errors"): the codes come from wire.SentinelCodes, the
// statuses from statusOf; a code without a status is a programming error
// caught at start-up. The package doc, the OpenAPI document and the
// client list the same codes.
var errorTable = func() []errorCode {
	rows := make([]errorCode, 0, len(wire.SentinelCodes))
	for _, e := range wire.SentinelCodes {
		st, ok := statusOf[e.Code]
		if !ok {
			panic("api: no HTTP status for keysvc code " + e.Code)
		}
		rows = append(rows, errorCode{e.Err, st, e.Code})
	}
	return rows
}()

// Codes the HTTP layer itself produces, besides those of errorTable.
const (
	codeInternal         = "internal"
	codeInvalidJSON      = "invalid_json"
	codeUnknownField     = "unknown_field"
	codeInvalidArgument  = "invalid_argument"
	codeUnauthenticated  = "unauthenticated"
	codeBodyTooLarge     = "body_too_large"
	codeUnsupportedMedia = "unsupported_media_type"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeNotReady         = "not_ready"
	codeBadRequest       = "bad_request"
	codeRequestTimeout   = "request_timeout"
	codeHeadersTooLarge  = "headers_too_large"
	msgInternal          = "internal error; the incident has been logged"
)

// apiError is an error the HTTP layer produces itself (validation,
// authentication, media type). Its message is shown to the client.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func newError(status int, code, message string) *apiError {
	return &apiError{status: status, code: code, message: message}
}

func invalidArgument(message string) *apiError {
	return newError(http.StatusBadRequest, codeInvalidArgument, message)
}

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// classify turns any error into what the client sees. internal is true
// when the error is not one the client may read: the caller must log it
// and show only the generic message (R-SRV-4).
func classify(err error) (status int, code, message string, internal bool) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status, ae.code, ae.message, false
	}
	for _, row := range errorTable {
		if errors.Is(err, row.err) {
			return row.status, row.code, err.Error(), false
		}
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		// fiber's own errors (routing, limits, fasthttp parse errors) can
		// carry parser detail; only a fixed text per status is shown.
		return fiberError(fe.Code)
	}
	return http.StatusInternalServerError, codeInternal, msgInternal, true
}

func fiberError(status int) (int, string, string, bool) {
	switch status {
	case http.StatusNotFound:
		return status, codeNotFound, "no such route", false
	case http.StatusMethodNotAllowed:
		return status, codeMethodNotAllowed, "method not allowed on this route", false
	case http.StatusRequestEntityTooLarge:
		return status, codeBodyTooLarge, "request body exceeds the server's limit", false
	case http.StatusRequestHeaderFieldsTooLarge:
		return status, codeHeadersTooLarge, "request headers are too large", false
	case http.StatusRequestTimeout:
		return status, codeRequestTimeout, "request not received in time", false
	case http.StatusUnsupportedMediaType:
		return status, codeUnsupportedMedia, "unsupported media type", false
	case http.StatusBadRequest:
		return status, codeBadRequest, "malformed HTTP request", false
	}
	if status >= 400 && status < 500 {
		return status, codeBadRequest, http.StatusText(status), false
	}
	return http.StatusInternalServerError, codeInternal, msgInternal, true
}

// errorHandler is fiber's ErrorHandler: every error a handler returns,
// and every error fiber or fasthttp raise (oversize body, unknown route),
// ends here and leaves as an errorBody.
func errorHandler(log *slog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		status, code, message, internal := classify(err)
		if internal {
			log.Error("request failed", "method", c.Method(), "path", c.Path(), "err", err)
		}
		if status == http.StatusUnauthorized {
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="keyward"`)
		}
		return c.Status(status).JSON(errorBody{Error: errorDetail{Code: code, Message: message}})
	}
}
