package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

// requestTypes are the body types the API and the confirmation endpoint
// decode, each as a fresh value.
var requestTypes = []func() any{
	func() any { return new(wire.CreateKeyRequest) },
	func() any { return new(wire.KeySettingsRequest) },
	func() any { return new(wire.ScheduleDestroyRequest) },
	func() any { return new(wire.SignRequest) },
	func() any { return new(wire.SignBatchRequest) },
	func() any { return new(wire.VerifyRequest) },
	func() any { return new(wire.MACRequest) },
	func() any { return new(wire.VerifyMACRequest) },
	func() any { return new(wire.EncryptRequest) },
	func() any { return new(wire.DecryptRequest) },
	func() any { return new(wire.DataKeyRequest) },
	func() any { return new(approveBody) },
	func() any { return new(rejectBody) },
	func() any { return new(enrolBody) },
	func() any { return new(struct{}) },
}

// FuzzDecodeRequest (issue 12): every request body type, strict decoding.
// Any input either decodes, and then survives a re-encode and decode
// unchanged, or is refused with a 400 client error (invalid_json,
// unknown_field or invalid_argument) — never a panic, never an internal
// error.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"name":"k","purpose":"sign","algorithm":"ec-p256","protection":"hsm","rotation_period":"720h","policy":{"grants":[{"client":"a","ops":["sign"]}]}}`,
		`{"min_version":2,"rotation_period":"0s"}`, `{"delay":"48h"}`,
		`{"message":"aGVsbG8=","scheme":"pss"}`, `{"digest":"AAAA"}`,
		`{"items":[{"digest":"AAAA"},{"message":"eA=="}]}`,
		`{"message":"eA==","signature":"kw:v1:AAAA"}`, `{"plaintext":"eA==","aad":"AA=="}`,
		`{"ciphertext":"kw:v2:AAAA","aad":null}`, `{"size":32}`,
		`{"key":"cust-1","digest":"00","pin":"Kw-7391-safe"}`, `{"key":"cust-1","setup_code":"ABCD","pin":"x"}`,
		`{}`, ``, `null`, `[1]`, `{"a":1}`, `{"message":12}`, `{"digest":"AAAA"} x`, `{"rotation_period":"soon"}`,
		`{"policy":{"grants":[{"client":"a","ops":[],"admin":true}]}}`, `{"size":1e400}`, "{\"name\":\"\xff\"}",
	} {
		for i := range requestTypes {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		mk := requestTypes[int(which)%len(requestTypes)]
		v := mk()
		err := httpedge.DecodeBytes(body, v, which&0x80 != 0)
		if err != nil {
			status, code, _, internal := classify(err)
			if internal || status != http.StatusBadRequest || (code != codeInvalidJSON && code != codeUnknownField && code != "invalid_argument") {
				t.Fatalf("%T %q: %d %s (internal %v): %v", v, body, status, code, internal, err)
			}
			return
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%T: re-encode: %v", v, err)
		}
		w := mk()
		if err := httpedge.DecodeBytes(again, w, false); err != nil {
			t.Fatalf("%T: %s decoded, its re-encoding %s does not: %v", v, body, again, err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("%T: %s decoded to %+v, its re-encoding %s to %+v", v, body, v, again, w)
		}
	})
}
