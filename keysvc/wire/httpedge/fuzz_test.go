package httpedge_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

// fuzzTypes are the shapes FuzzDecode decodes into.
var fuzzTypes = []func() any{
	func() any { return new(request) },
	func() any { return new(grant) },
	func() any { return new(struct{}) },
	func() any { return new(map[string]any) },
}

// FuzzDecode: any body either decodes — then it was one valid JSON object
// (no duplicate names, valid UTF-8) and survives a re-encode and decode
// unchanged — or is refused with a *DecodeError: 400, a known code, a
// message and a well-formed JSON pointer; never a panic.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"name":"k","pin":"p","size":3,"grants":[{"client":"a","ops":["sign"]}],"message":null,"period":"720h"}`,
		`{}`, ``, `null`, `[1]`, `{"a":1}`, `{"name":12}`, `{"name":"a"} x`, `{"name":"a","name":"b"}`,
		`{"PIN":"x"}`, `{"size":1e400}`, "{\"name\":\"\xff\"}", `{"name":"\ud800"}`, `{"grants":[{"client":"a","admin":true}]}`,
		`{"client":"a","ops":null}`, `{"a~1b":{"c~0":[1,2,{"d":true}]}}`,
	} {
		for i := range fuzzTypes {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		mk := fuzzTypes[int(which)%len(fuzzTypes)]
		v := mk()
		err := httpedge.DecodeBytes(body, v, which&0x80 != 0)
		if err != nil {
			var de *httpedge.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("%T %q: %v is not a *DecodeError", v, body, err)
			}
			switch de.Code() {
			case httpedge.CodeInvalidJSON, httpedge.CodeUnknownField, httpedge.CodeInvalidArgument:
			default:
				t.Fatalf("%T %q: code %s", v, body, de.Code())
			}
			if de.Status() != 400 || de.Message == "" || de.Kind.String() == "" || (de.Path != "" && !strings.HasPrefix(de.Path, "/")) {
				t.Fatalf("%T %q: %+v", v, body, de)
			}
			return
		}
		trimmed := bytes.TrimSpace(body)
		if len(trimmed) == 0 {
			return // optional and empty
		}
		if trimmed[0] != '{' || !jsontext.Value(trimmed).IsValid() {
			t.Fatalf("accepted %q, which is not one valid JSON object", body)
		}
		again, err := json.Marshal(v, json.FormatNilSliceAsNull(true), json.FormatNilMapAsNull(true))
		if err != nil {
			t.Fatalf("%T: re-encode: %v", v, err)
		}
		w := mk()
		if err := httpedge.DecodeBytes(again, w, false); err != nil {
			t.Fatalf("%T: %q decoded, its re-encoding %s does not: %v", v, body, again, err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("%T: %q decoded to %+v, its re-encoding %s to %+v", v, body, v, again, w)
		}
	})
}
