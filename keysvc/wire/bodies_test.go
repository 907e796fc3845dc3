package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// Base64 reads standard padded base64 and null, refuses anything else with
// a typed error that names its field, and writes what it reads.
func TestBase64JSON(t *testing.T) {
	var r SignRequest
	if err := json.Unmarshal([]byte(`{"message":"aGk=","digest":null}`), &r); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Message, []byte("hi")) || r.Digest != nil {
		t.Fatalf("decoded %+v", r)
	}
	out, err := json.Marshal(r)
	if err != nil || string(out) != `{"message":"aGk=","digest":null}` {
		t.Fatalf("encoded %s, %v", out, err)
	}
	for body, value := range map[string]string{
		`{"message":"aGk"}`:  "string that is not base64",
		`{"message":"a-_="}`: "string that is not base64",
		`{"message":12}`:     "number",
		`{"message":[1]}`:    "array",
		`{"message":true}`:   "bool",
	} {
		var typ *json.UnmarshalTypeError
		err := json.Unmarshal([]byte(body), new(SignRequest))
		if !errors.As(err, &typ) || typ.Type != Base64Type || typ.Field != "message" || typ.Value != value {
			t.Errorf("%s: %v (%+v), want an UnmarshalTypeError for field message, value %q", body, err, typ, value)
		}
	}
}
