package httpedge_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

type grant struct {
	Client string   `json:"client"`
	Ops    []string `json:"ops"`
}

type b64 []byte

func (b64) JSONDescription() string { return "a base64 string (standard encoding, padded)" }

type dur string

func (d *dur) UnmarshalJSON(b []byte) error {
	if string(b) == `""` {
		*d = ""
		return nil
	}
	if string(b) != `"720h"` {
		return errors.New("duration must look like \"720h\"")
	}
	*d = "720h"
	return nil
}

type request struct {
	Name     string  `json:"name"`
	PIN      string  `json:"pin"`
	Size     int     `json:"size"`
	Grants   []grant `json:"grants"`
	Message  b64     `json:"message"`
	Period   dur     `json:"period"`
	Untagged string
	At       time.Time `json:"at"`
}

// TestDecodeBytes: every refusal has its kind, JSON path, status, code
// and a message that names the path and never the value.
func TestDecodeBytes(t *testing.T) {
	const secret = "Kw-7391-safe"
	tests := []struct {
		name, body string
		kind       httpedge.Kind
		path, code string
		msgHas     string
	}{
		{"empty", ``, httpedge.KindEmpty, "", "invalid_json", "empty"},
		{"blank", " \n", httpedge.KindEmpty, "", "invalid_json", "empty"},
		{"null", `null`, httpedge.KindNotObject, "", "invalid_json", "object"},
		{"array", `[1]`, httpedge.KindNotObject, "", "invalid_json", "object"},
		{"string", `"` + secret + `"`, httpedge.KindNotObject, "", "invalid_json", "object"},
		{"syntax", `{"pin" "` + secret + `"}`, httpedge.KindSyntax, "/pin", "invalid_json", "byte 7"},
		{"ends early", `{"pin":"` + secret, httpedge.KindSyntax, "/pin", "invalid_json", "too early"},
		{"trailing garbage", `{"pin":"` + secret + `"} x`, httpedge.KindTrailingData, "", "invalid_json", "after"},
		{"two objects", `{}{}`, httpedge.KindTrailingData, "", "invalid_json", "exactly one"},
		{"unknown", `{"name":"a","hash":"` + secret + `"}`, httpedge.KindUnknownName, "/hash", "unknown_field", `"hash"`},
		{"nested unknown", `{"grants":[{"client":"a","admin":true}]}`, httpedge.KindUnknownName, "/grants/0/admin", "unknown_field", `"admin" (at /grants/0/admin)`},
		{"case mismatch", `{"PIN":"` + secret + `"}`, httpedge.KindCaseMismatch, "/PIN", "unknown_field", `did you mean "pin"?`},
		{"untagged case mismatch", `{"untagged":"x"}`, httpedge.KindCaseMismatch, "/untagged", "unknown_field", `did you mean "Untagged"?`},
		{"duplicate", `{"pin":"1","pin":"` + secret + `"}`, httpedge.KindDuplicateName, "/pin", "invalid_json", `"pin" (at /pin) appears twice`},
		{"bad UTF-8", "{\"pin\":\"" + secret + "\xff\"}", httpedge.KindInvalidUTF8, "/pin", "invalid_json", "UTF-8"},
		{"wrong type", `{"name":5}`, httpedge.KindWrongType, "/name", "invalid_argument", `"name" (at /name) must be a string, not a number`},
		{"pin as number", `{"pin":7391}`, httpedge.KindWrongType, "/pin", "invalid_argument", `must be a string`},
		{"fraction", `{"size":16.5}`, httpedge.KindWrongType, "/size", "invalid_argument", `"size"`},
		{"overflow", `{"size":1e400}`, httpedge.KindWrongType, "/size", "invalid_argument", "integer"},
		{"nested wrong type", `{"grants":[{"client":"a","ops":"sign"}]}`, httpedge.KindWrongType, "/grants/0/ops", "invalid_argument", "an array"},
		{"described type", `{"message":12}`, httpedge.KindWrongType, "/message", "invalid_argument", "base64 string (standard encoding, padded)"},
		{"library type's refusal", `{"at":"` + secret + `"}`, httpedge.KindInvalidValue, "/at", "invalid_argument", `"at" (at /at) must be an RFC 3339 time string`},
		{"type's own refusal", `{"period":"soon"}`, httpedge.KindInvalidValue, "/period", "invalid_argument", `"period" (at /period): duration must look like "720h"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v request
			err := httpedge.DecodeBytes([]byte(tc.body), &v, false)
			var de *httpedge.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("DecodeBytes(%q) = %v, want a *DecodeError", tc.body, err)
			}
			if de.Kind != tc.kind || de.Path != tc.path || de.Code() != tc.code || de.Status() != 400 {
				t.Errorf("got kind %v path %q code %s status %d, want %v %q %s 400 (%s)", de.Kind, de.Path, de.Code(), de.Status(), tc.kind, tc.path, tc.code, de.Message)
			}
			if !strings.Contains(de.Message, tc.msgHas) {
				t.Errorf("message %q does not contain %q", de.Message, tc.msgHas)
			}
			if strings.Contains(de.Error(), secret) || strings.Contains(de.Error(), "7391") {
				t.Errorf("message %q quotes the value", de.Error())
			}
		})
	}
}

func TestDecodeBytesAccepts(t *testing.T) {
	var v request
	body := ` {"name":"k","pin":"p","size":3,"grants":[{"client":"a","ops":["sign"]}],"message":null,"period":"720h","Untagged":"u"} `
	if err := httpedge.DecodeBytes([]byte(body), &v, false); err != nil {
		t.Fatal(err)
	}
	if v.Name != "k" || v.Size != 3 || len(v.Grants) != 1 || v.Grants[0].Ops[0] != "sign" || v.Period != "720h" || v.Untagged != "u" {
		t.Fatalf("decoded %+v", v)
	}
	v = request{}
	if err := httpedge.DecodeBytes(nil, &v, true); err != nil || v.Name != "" {
		t.Fatalf("optional empty body: %v, %+v", err, v)
	}
	if err := httpedge.DecodeBytes([]byte(`{}`), &v, true); err != nil {
		t.Fatalf("optional {}: %v", err)
	}
}
