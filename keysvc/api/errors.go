package api

import (
	"net/http"

	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

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
var errorTable = func() httpedge.Table {
	rows := make(httpedge.Table, 0, len(wire.SentinelCodes))
	for _, e := range wire.SentinelCodes {
		st, ok := statusOf[e.Code]
		if !ok {
			panic("api: no HTTP status for keysvc code " + e.Code)
		}
		rows = append(rows, httpedge.Row{Err: e.Err, Status: st, Code: e.Code})
	}
	return rows
}()

// Codes the HTTP layer produces, besides those of errorTable: the edge's
// (keysvc/wire/httpedge) and not_ready.
const (
	codeInternal         = httpedge.CodeInternal
	codeInvalidJSON      = httpedge.CodeInvalidJSON
	codeUnknownField     = httpedge.CodeUnknownField
	codeInvalidArgument  = httpedge.CodeInvalidArgument
	codeUnauthenticated  = "unauthenticated"
	codeUnsupportedMedia = httpedge.CodeUnsupportedMedia
	codeNotReady         = "not_ready"
)

// apiError is an error the HTTP layer produces itself (validation,
// authentication, media type). Its message is shown to the client.
type apiError = httpedge.Error

func newError(status int, code, message string) *apiError {
	return httpedge.NewError(status, code, message)
}

func invalidArgument(message string) *apiError {
	return newError(http.StatusBadRequest, codeInvalidArgument, message)
}

// errorBody is the JSON shape of every error response.
type errorBody = httpedge.Envelope

type errorDetail = httpedge.Detail

// edge classifies errors for every server of this package: keysvc's
// error table behind the edge's own errors.
var edge = httpedge.Config{Errors: errorTable}

// classify turns any error into what the client sees (httpedge's order:
// the edge's errors, errorTable, fiber's, internal). internal is true
// when the error is not one the client may read: it is logged and only
// the generic message is shown (R-SRV-4).
func classify(err error) (status int, code, message string, internal bool) {
	p := edge.Classify(err)
	return p.Status, p.Code, p.Message, p.Internal
}
