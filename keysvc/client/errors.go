package client

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/keyward/keyward/keysvc/wire"
)

// Error is an error answer from the server.
type Error struct {
	Status  int    // HTTP status
	Code    string // stable code, such as "key_not_found"; empty when the body was not a keysvc error (a proxy's page)
	Message string // for people
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("keysvc: HTTP %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("keysvc: %s (%s, HTTP %d)", e.Message, e.Code, e.Status)
}

// Is reports whether target is the keysvc sentinel of e's code, so that
// errors.Is(err, wire.ErrKeyNotFound) works on server errors.
func (e *Error) Is(target error) bool {
	s, ok := sentinels[e.Code]
	return ok && s == target
}

// sentinels maps the server's codes (wire.SentinelCodes) back to keysvc's
// sentinels. The decoding codes invalid_json and unknown_field are invalid
// arguments too.
var sentinels = func() map[string]error {
	m := map[string]error{"invalid_json": wire.ErrInvalidArgument, "unknown_field": wire.ErrInvalidArgument}
	for _, e := range wire.SentinelCodes {
		m[e.Code] = e.Err
	}
	return m
}()

// decodeError reads an error response; a body that is not a keysvc error
// gives an Error with the status text and no code.
func decodeError(resp *http.Response) *Error {
	e := &Error{Status: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err == nil && json.Unmarshal(b, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message = body.Error.Code, body.Error.Message
	}
	return e
}
