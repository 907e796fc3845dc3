package httpedge

import (
	"bytes"
	encjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gofiber/fiber/v2"
)

// Kind says why a request body was refused.
type Kind int

// The kinds of DecodeError. The zero value is not a kind.
const (
	KindMediaType     Kind = iota + 1 // not uncompressed application/json with charset utf-8 (415)
	KindTooLarge                      // over the app's BodyLimit (413)
	KindEmpty                         // no body where one is required
	KindNotObject                     // the body is JSON but not an object
	KindSyntax                        // malformed JSON, or the body ends too early
	KindInvalidUTF8                   // a string that is not valid UTF-8
	KindDuplicateName                 // a member name that appears twice in one object
	KindUnknownName                   // a member the request type does not have
	KindCaseMismatch                  // a member that matches a field only when case is ignored
	KindWrongType                     // a value of the wrong JSON type or range for its field
	KindInvalidValue                  // a value its type's own UnmarshalJSON refused
	KindTrailingData                  // anything after the one JSON object
)

var kindNames = [...]string{"", "media_type", "too_large", "empty", "not_object", "syntax", "invalid_utf8",
	"duplicate_name", "unknown_name", "case_mismatch", "wrong_type", "invalid_value", "trailing_data"}

func (k Kind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// DecodeError is a request body refused by Decode. Message is written for
// the person sending the request: it names the JSON path (Path, an RFC
// 6901 pointer such as /policy/grants/0/admin; empty for the whole body)
// and what to change, and never quotes a value — bodies carry passwords,
// PINs and plaintexts. Err is the parser's own error, kept for errors.As
// and never shown to clients.
type DecodeError struct {
	Kind    Kind
	Path    string
	Message string
	Err     error
}

func (e *DecodeError) Error() string { return e.Message }

// Unwrap returns the parser's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// Status is the HTTP status of the refusal: 415, 413 or 400.
func (e *DecodeError) Status() int {
	switch e.Kind {
	case KindMediaType:
		return http.StatusUnsupportedMediaType
	case KindTooLarge:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// Code is the stable error code of the refusal (see the package doc's
// table). Config.InvalidCode replaces the 400 codes for a service that
// publishes one code for every bad request.
func (e *DecodeError) Code() string {
	switch e.Kind {
	case KindMediaType:
		return CodeUnsupportedMedia
	case KindTooLarge:
		return CodeBodyTooLarge
	case KindUnknownName, KindCaseMismatch:
		return CodeUnknownField
	case KindWrongType, KindInvalidValue:
		return CodeInvalidArgument
	}
	return CodeInvalidJSON
}

// Describer is implemented by a field type that says what its JSON looks
// like ("a base64 string (standard encoding, padded)"); Decode uses it
// when a value of that type is refused.
type Describer interface {
	JSONDescription() string
}

// options: member names match exactly (the default of go-json-experiment:
// case-sensitive), unknown members are refused; duplicate names and
// invalid UTF-8 are refused by jsontext's defaults.
var options = json.JoinOptions(json.RejectUnknownMembers(true), json.MatchCaseInsensitiveNames(false),
	jsontext.AllowDuplicateNames(false), jsontext.AllowInvalidUTF8(false))

// Decode reads the request body strictly into v: the media type must be
// uncompressed application/json (charset utf-8 or none), the body one
// JSON object within the app's BodyLimit, with no unknown, repeated or
// case-mismatched member names, no invalid UTF-8 and nothing after it.
// Every refusal is a *DecodeError.
func Decode(c *fiber.Ctx, v any) error { return decode(c, v, false) }

// DecodeOptional is Decode where an empty body is allowed: v keeps its
// zero value.
func DecodeOptional(c *fiber.Ctx, v any) error { return decode(c, v, true) }

func decode(c *fiber.Ctx, v any, optional bool) error {
	if err := CheckMediaType(c); err != nil {
		return err
	}
	body := c.Body()
	if limit := c.App().Config().BodyLimit; limit > 0 && len(body) > limit {
		return &DecodeError{Kind: KindTooLarge, Message: fmt.Sprintf("request body exceeds the server's limit of %d bytes", limit)}
	}
	return DecodeBytes(body, v, optional)
}

// DecodeBytes is Decode's parser on a raw body (fuzzed by FuzzDecode).
func DecodeBytes(body []byte, v any, optional bool) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		if optional {
			return nil
		}
		return &DecodeError{Kind: KindEmpty, Message: "request body is empty; a JSON object is required"}
	}
	if trimmed[0] != '{' {
		return &DecodeError{Kind: KindNotObject, Message: "request body must be a JSON object"}
	}
	dec := jsontext.NewDecoder(bytes.NewReader(trimmed), options)
	if err := json.UnmarshalDecode(dec, v, options); err != nil {
		return explain(err, trimmed)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return &DecodeError{Kind: KindTrailingData, Message: "request body has data after the JSON object; send exactly one object", Err: err}
	}
	return nil
}

// explain turns the parser's error into a DecodeError. It reads only
// typed fields (pointer, kinds, Go type, sentinel errors), never the
// parser's text, and quotes no value.
func explain(err error, body []byte) *DecodeError {
	var (
		sem *json.SemanticError
		syn *jsontext.SyntacticError
	)
	switch {
	case errors.As(err, &syn):
		path := string(syn.JSONPointer)
		switch {
		case errors.Is(syn.Err, jsontext.ErrDuplicateName):
			return &DecodeError{Kind: KindDuplicateName, Path: path, Err: err,
				Message: fmt.Sprintf("field %s%s appears twice; send each field once", field(syn.JSONPointer), at(path))}
		case errors.Is(err, io.ErrUnexpectedEOF):
			return &DecodeError{Kind: KindSyntax, Path: path, Err: err, Message: "malformed JSON: the body ends too early"}
		case !utf8.Valid(body):
			return &DecodeError{Kind: KindInvalidUTF8, Path: path, Err: err,
				Message: fmt.Sprintf("request body is not valid UTF-8%s; send UTF-8 JSON", at(path))}
		}
		return &DecodeError{Kind: KindSyntax, Path: path, Err: err,
			Message: fmt.Sprintf("malformed JSON at byte %d%s", syn.ByteOffset, at(path))}
	case errors.As(err, &sem):
		return explainSemantic(sem, err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &DecodeError{Kind: KindSyntax, Err: err, Message: "malformed JSON: the body ends too early"}
	}
	return &DecodeError{Kind: KindSyntax, Err: err, Message: "malformed JSON"}
}

func explainSemantic(sem *json.SemanticError, err error) *DecodeError {
	path := string(sem.JSONPointer)
	var v1type *encjson.UnmarshalTypeError
	switch {
	case errors.Is(sem.Err, json.ErrUnknownName):
		name := sem.JSONPointer.LastToken()
		if want, ok := foldMatch(sem.GoType, name); ok {
			return &DecodeError{Kind: KindCaseMismatch, Path: path, Err: err,
				Message: fmt.Sprintf("unknown field %s%s: field names are case-sensitive; did you mean %q?", field(sem.JSONPointer), at(path), want)}
		}
		return &DecodeError{Kind: KindUnknownName, Path: path, Err: err,
			Message: fmt.Sprintf("unknown field %s%s; this request has no such field", field(sem.JSONPointer), at(path))}
	case sem.Err == nil, errors.Is(sem.Err, strconv.ErrSyntax), errors.Is(sem.Err, strconv.ErrRange), errors.As(sem.Err, &v1type):
		what := describe(sem.GoType)
		if path == "" {
			return &DecodeError{Kind: KindWrongType, Err: err, Message: "request body must be " + what}
		}
		msg := fmt.Sprintf("field %s%s must be %s", field(sem.JSONPointer), at(path), what)
		if k := kindName(sem.JSONKind); k != "" && v1type == nil && sem.Err == nil {
			msg += ", not " + k
		}
		return &DecodeError{Kind: KindWrongType, Path: path, Err: err, Message: msg}
	}
	if !hasUnmarshaler(sem.GoType) {
		// A library type refused the value (time.Time, for one): its
		// error may quote the value, so only the expected shape is said.
		return &DecodeError{Kind: KindInvalidValue, Path: path, Err: err,
			Message: fmt.Sprintf("field %s%s must be %s", field(sem.JSONPointer), at(path), describe(sem.GoType))}
	}
	// The field type's own UnmarshalJSON refused the value; its message
	// is written for clients (and, by this package's rule, quotes no
	// value).
	return &DecodeError{Kind: KindInvalidValue, Path: path, Err: err,
		Message: fmt.Sprintf("field %s%s: %s", field(sem.JSONPointer), at(path), sem.Err.Error())}
}

var (
	unmarshalerV1 = reflect.TypeFor[encjson.Unmarshaler]()
	unmarshalerV2 = reflect.TypeFor[json.UnmarshalerFrom]()
)

// hasUnmarshaler reports whether t (or *t) has its own UnmarshalJSON or
// UnmarshalJSONFrom: a type of the service's, whose errors are written
// for clients. Library types with such methods (time.Time) are excluded.
func hasUnmarshaler(t reflect.Type) bool {
	if t == nil || t.PkgPath() == "time" {
		return false
	}
	p := reflect.PointerTo(t)
	return t.Implements(unmarshalerV1) || p.Implements(unmarshalerV1) || t.Implements(unmarshalerV2) || p.Implements(unmarshalerV2)
}

// field names the member at p, quoted and cut to 64 bytes (a name comes
// from the client; it is not a value, but need not be short).
func field(p jsontext.Pointer) string {
	name := p.LastToken()
	if len(name) > 64 {
		name = strings.ToValidUTF8(name[:64], "") + "…"
	}
	return strconv.Quote(name)
}

func at(path string) string {
	if path == "" {
		return ""
	}
	return " (at " + path + ")"
}

func kindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 'f', 't':
		return "a boolean"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return ""
}

var describerType = reflect.TypeFor[Describer]()

// describe says what JSON a Go type takes.
func describe(t reflect.Type) string {
	if t == nil {
		return "a JSON value"
	}
	if t == reflect.TypeFor[time.Time]() {
		return "an RFC 3339 time string"
	}
	if t.Implements(describerType) {
		return reflect.Zero(t).Interface().(Describer).JSONDescription()
	}
	if reflect.PointerTo(t).Implements(describerType) {
		return reflect.New(t).Interface().(Describer).JSONDescription()
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
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Pointer:
		return describe(t.Elem())
	}
	return "a " + t.Kind().String()
}

// foldMatch finds the JSON name of a field of struct type t that equals
// name when case is ignored.
func foldMatch(t reflect.Type, name string) (string, bool) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return "", false
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && tag == "" {
			if got, ok := foldMatch(f.Type, name); ok {
				return got, true
			}
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		if strings.EqualFold(tag, name) {
			return tag, true
		}
	}
	return "", false
}

// CheckMediaType refuses a body that is not uncompressed JSON in UTF-8:
// any Content-Encoding but identity (fiber would inflate it past the
// body limit: a decompression bomb), and, when there is a body, any
// Content-Type but application/json with no charset or charset utf-8.
func CheckMediaType(c *fiber.Ctx) error {
	if enc := strings.TrimSpace(c.Get(fiber.HeaderContentEncoding)); enc != "" && !strings.EqualFold(enc, "identity") {
		return &DecodeError{Kind: KindMediaType, Message: "compressed request bodies are not accepted"}
	}
	if len(c.Request().Body()) == 0 {
		return nil
	}
	mt, params, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err != nil || mt != fiber.MIMEApplicationJSON {
		return &DecodeError{Kind: KindMediaType, Message: "request bodies must have Content-Type application/json"}
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return &DecodeError{Kind: KindMediaType, Message: "request bodies must be UTF-8 JSON (charset=utf-8 or none)"}
	}
	return nil
}
