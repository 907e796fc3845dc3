package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/keyward/keyward/keysvc/wire"
)

// decodeBody reads the request body strictly into v: one JSON value, no
// unknown fields (at any depth), nothing after it. An empty body is
// allowed only when optional is true (v keeps its zero value).
func decodeBody(c *fiber.Ctx, v any, optional bool) error {
	return decodeJSON(c.Request().Body(), v, optional)
}

// decodeJSON is decodeBody's parser, on the raw body (fuzzed).
func decodeJSON(body []byte, v any, optional bool) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		if optional {
			return nil
		}
		return newError(http.StatusBadRequest, codeInvalidJSON, "request body is empty; a JSON object is required")
	}
	if body[0] != '{' {
		return newError(http.StatusBadRequest, codeInvalidJSON, "request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return newError(http.StatusBadRequest, codeInvalidJSON, "request body has data after the JSON value")
	}
	return nil
}

// decodeError turns an encoding/json error into a client error. The
// messages are written here or come from keysvc's own UnmarshalJSON
// methods; nothing internal is echoed.
func decodeError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syn):
		return newError(http.StatusBadRequest, codeInvalidJSON, fmt.Sprintf("malformed JSON at byte %d", syn.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return newError(http.StatusBadRequest, codeInvalidJSON, "malformed JSON: the body ends too early")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return invalidArgument(fmt.Sprintf("request body must be %s", describeType(typ.Type)))
		}
		if typ.Type == wire.Base64Type {
			return invalidArgument(fmt.Sprintf("field %q must be a base64 string (standard encoding, padded)", field))
		}
		return invalidArgument(fmt.Sprintf("field %q must be %s, not %s", field, describeType(typ.Type), typ.Value))
	}
	// encoding/json has no typed error for unknown fields (with
	// DisallowUnknownFields it returns `json: unknown field "x"`). This is
	// the one place where error text is read, and only to name the field.
	const prefix = `json: unknown field `
	if msg := err.Error(); strings.HasPrefix(msg, prefix) {
		name, uerr := strconv.Unquote(strings.TrimPrefix(msg, prefix))
		if uerr != nil {
			name = "?"
		}
		return newError(http.StatusBadRequest, codeUnknownField, fmt.Sprintf("unknown field %q", name))
	}
	// What is left comes from keysvc's UnmarshalJSON methods (for example
	// wire.Duration), whose messages are written for clients.
	return invalidArgument(err.Error())
}

func describeType(t reflect.Type) string {
	if t == nil {
		return "a JSON value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Pointer:
		return describeType(t.Elem())
	}
	return "a " + t.Kind().String()
}

// checkMediaType refuses a POST body that is not JSON, and any compressed
// body: fiber would inflate it past BodyLimit (a decompression bomb).
func checkMediaType(c *fiber.Ctx) error {
	if enc := strings.TrimSpace(c.Get(fiber.HeaderContentEncoding)); enc != "" && !strings.EqualFold(enc, "identity") {
		return newError(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "compressed request bodies are not accepted")
	}
	if len(c.Request().Body()) == 0 {
		return nil
	}
	ct := c.Get(fiber.HeaderContentType)
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != fiber.MIMEApplicationJSON {
		return newError(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "request bodies must have Content-Type application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return newError(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "request bodies must be UTF-8 JSON")
	}
	return nil
}

// keyNamePattern is the grammar of key names; names appear in URLs,
// metrics labels and audit records, so they are kept plain.
var keyNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func validKeyName(name string) error {
	if !keyNamePattern.MatchString(name) {
		return invalidArgument("key name must match ^[a-z0-9][a-z0-9._-]{0,63}$")
	}
	return nil
}

// positiveInt parses a decimal version number: 1, 2, … (at most 2^31-1).
func positiveInt(what, s string) (int, error) {
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil || v < 1 || strings.HasPrefix(s, "+") {
		return 0, invalidArgument(fmt.Sprintf("%s must be a positive integer", what))
	}
	return int(v), nil
}
