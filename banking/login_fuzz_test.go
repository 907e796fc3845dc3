package banking

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// FuzzLoginRequestDecode feeds POST /v1/login bodies to the strict JSON
// decoder and the request's validation: neither may panic, every refusal
// is ErrInvalid (a 400 invalid_request with a message), and a body that
// is accepted decodes to the same request after a round trip.
func FuzzLoginRequestDecode(f *testing.F) {
	for _, s := range []string{
		`{"login":"alice","password":{"challenge":"Y2g","ciphertext":"AAAA","key_version":1},"device":"d1","os":"Android 14"}`,
		`{"login":"alice","password":{"key_version":-1},"device":"","os":""}`,
		`{"login":"alice","extra":1}`,
		`{"login":"alice"} {"login":"bob"}`,
		`{"password":{"key_version":1e400}}`,
		`{"login":"\u0000","device":"\ud800"}`,
		`[]`, `{`, `null`, "",
	} {
		f.Add([]byte(s))
	}
	app := fiber.New()
	f.Fuzz(func(t *testing.T, body []byte) {
		fctx := &fasthttp.RequestCtx{}
		fctx.Request.Header.SetContentType(fiber.MIMEApplicationJSON)
		fctx.Request.SetBody(body)
		c := app.AcquireCtx(fctx)
		defer app.ReleaseCtx(c)
		var req LoginRequest
		err := decode(c, &req)
		if err == nil {
			err = req.validate()
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("refusal %v is not ErrInvalid", err)
			}
			return
		}
		again, _ := json.Marshal(req)
		var back LoginRequest
		if err := json.Unmarshal(again, &back); err != nil || !reflect.DeepEqual(back, req) {
			t.Fatalf("accepted request %+v does not round-trip: %+v, %v", req, back, err)
		}
	})
}
