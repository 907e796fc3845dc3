package banking

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/keyward/keyward/banking/store/dbtest"
	"github.com/valyala/fasthttp"

	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/keysvc/wire/httpedge"
	"github.com/keyward/keyward/token/txformat"
)

// requestShapes are the bodies banking's routes decode (the exported
// types, and the shapes of the handlers' own request structs).
var requestShapes = []func() any{
	func() any { return new(bankwire.LoginRequest) },
	func() any { return new(bankwire.EnrolRequest) },
	func() any { return new(bankwire.SignedOrder) },
	func() any { return new(struct{ Order []byte }) },
	func() any {
		return new(struct {
			Code string `json:"code"`
			OS   string `json:"os"`
		})
	},
	func() any {
		return new(struct {
			Account        string `json:"account"`
			PerTransaction string `json:"per_transaction"`
			Daily          string `json:"daily"`
		})
	},
	func() any {
		return new(struct {
			Password bankwire.Sealed `json:"password"`
		})
	},
	func() any {
		return new(struct {
			Approve   bool   `json:"approve"`
			Signature string `json:"signature"`
		})
	},
	func() any {
		return new(struct {
			Account        string `json:"account"`
			Amount         string `json:"amount"`
			Currency       string `json:"currency"`
			IdempotencyKey string `json:"idempotency_key"`
		})
	},
}

// fuzzApp is the edge banking's routes run on, for decodeBody.
var fuzzApp = httpedge.New(httpedge.Config{BodyLimit: 256 << 10})

// decodeBody runs banking's decode on a request with this content type
// and body.
func decodeBody(contentType string, body []byte, v any) error {
	fctx := &fasthttp.RequestCtx{}
	fctx.Request.Header.SetMethod(fiber.MethodPost)
	fctx.Request.Header.SetContentType(contentType)
	fctx.Request.SetBody(body)
	c := fuzzApp.AcquireCtx(fctx)
	defer fuzzApp.ReleaseCtx(c)
	return decode(c, v)
}

// FuzzDecodeRequest: banking's strict JSON decoding of request bodies
// (the shared edge's) never panics, refuses a body only with 400
// invalid_request (or a content type with 415 unsupported_media_type),
// accepts only one whole JSON object, and what it accepts survives a
// round trip.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"login":"alice","password":{"challenge":"c","ciphertext":"AQ==","key_version":1},"device":"d","os":"Android 14"}`,
		`{"order":"eyJ0eXBlIjoia2V5d2FyZC50cmFuc2Zlci52MSJ9","signature":"AAAA"}`,
		`{"account":"6299900000000000001","per_transaction":"100.00","daily":"1000.00"}`,
		`{"approve":true,"signature":"MEUCIQ=="}`,
		`{"code":"123456","os":""}`, `{"order":null}`, `{} {}`, `{"extra":1}`, `[1]`, ` {"code":"1"} `, `{"code":1}`, `{"order":"!!"}`,
	} {
		for k := range requestShapes {
			f.Add(uint8(k), "application/json", []byte(s))
		}
	}
	f.Add(uint8(0), "text/plain", []byte(`{}`))
	f.Fuzz(func(t *testing.T, kind uint8, contentType string, body []byte) {
		v := requestShapes[int(kind)%len(requestShapes)]()
		err := decodeBody(contentType, body, v)
		if err != nil {
			var de *httpedge.DecodeError
			st, code, _, internal := classify(err)
			if !errors.As(err, &de) || internal || !(st == http.StatusBadRequest && code == "invalid_request" ||
				st == http.StatusUnsupportedMediaType && code == "unsupported_media_type" && de.Kind == httpedge.KindMediaType) {
				t.Fatalf("refusal %v is %d %s (internal %v), want 400 invalid_request", err, st, code, internal)
			}
			return
		}
		if trimmed := bytes.TrimSpace(body); len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
			t.Fatalf("accepted %q, which is not one JSON object", body)
		}
		// The request types' own checks refuse only with ErrInvalid.
		if validate := requestCheck(v); validate != nil {
			if err := validate(); err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("%T.validate refusal %v is not ErrInvalid", v, err)
			}
		}
		again, _ := json.Marshal(v)
		w := requestShapes[int(kind)%len(requestShapes)]()
		if err := decodeBody("application/json", again, w); err != nil || !reflect.DeepEqual(v, w) {
			t.Fatalf("round trip of %q: %s → %v, %+v ≠ %+v", body, again, err, v, w)
		}
	})
}

// nopKMS is a KMS that checkOrder never calls.
type nopKMS struct{ KMS }

// orderBank is a bank on a temporary bbolt file with Alice and Bob (each
// an account) and Acme's admin (the company's account), for checkOrder.
func orderBank(t testing.TB) (b *Bank, alice, acme *Customer, accounts map[string]string) {
	t.Helper()
	db := dbtest.New(t).Open()
	var err error
	if b, err = New(Config{DB: db, KMS: nopKMS{}, SMS: otp.NewDevOutbox()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()
	accounts = map[string]string{}
	for _, c := range []*Customer{
		{ID: "c000000000001", Login: "alice", Name: "Alice Wang"},
		{ID: "c000000000002", Login: "bobli", Name: "Bob Li"},
		{ID: "c000000000003", Login: "acme-admin", Name: "Acme Admin", Corporate: "acme", Role: bankwire.RoleAdmin},
	} {
		if err := b.putCustomer(c, true); err != nil {
			t.Fatal(err)
		}
		a, err := b.Ledger.OpenAccount(ctx, ledger.OpenAccountRequest{Owner: owner(c), Currency: "CNY"})
		if err != nil {
			t.Fatal(err)
		}
		accounts[c.Login] = a.ID
	}
	alice, _ = b.Customer("c000000000001")
	acme, _ = b.Customer("c000000000003")
	return b, alice, acme, accounts
}

// FuzzCheckOrder: banking's parsing and checking of a transfer order
// against its records never panics, refuses only with order_mismatch,
// never names the payee account or name in a refusal (issue 12 item 8),
// and accepts only an order from the customer's own account to an
// account of the bank, in its currency, for a positive amount.
func FuzzCheckOrder(f *testing.F) {
	b, alice, acme, acct := orderBank(f)
	seed := func(from, to, name, amount string) []byte {
		o, err := txformat.CanonicalJSON(txformat.Transfer{PayerAccount: from, PayeeAccount: to, PayeeName: name, PayeeBank: "Keyward Bank",
			Amount: amount, Currency: "CNY", Purpose: "rent"}, "2026-11-28T10:00:00+08:00", "fuzz-order-00001")
		if err != nil {
			f.Fatal(err)
		}
		return o
	}
	f.Add(seed(acct["alice"], acct["bobli"], "Bob Li", "12.50"), false)
	f.Add(seed(acct["alice"], acct["bobli"], "Robert Li", "12.50"), false)
	f.Add(seed(acct["alice"], "6299900000000000777", "Bob Li", "1.00"), false)
	f.Add(seed(acct["bobli"], acct["alice"], "Alice Wang", "1.00"), false)
	f.Add(seed(acct["acme-admin"], acct["bobli"], "Bob Li", "1.00"), true)
	for _, p := range []string{"transfer_sample.json", "pain001_sample.xml"} {
		if raw, err := os.ReadFile(filepath.Join("..", "keysvc", "txformat", "testdata", p)); err == nil {
			f.Add(raw, false)
		}
	}
	f.Fuzz(func(t *testing.T, order []byte, corporate bool) {
		c := alice
		if corporate {
			c = acme
		}
		co, err := b.checkOrder(context.Background(), c, order)
		if err != nil {
			if _, code, msg, internal := classify(err); code != "order_mismatch" || internal {
				t.Fatalf("refusal %v is %s (internal %v), want order_mismatch", err, code, internal)
			} else if _, perr := txformat.Recognise(order); perr == nil && strings.Contains(msg, "payee") && err != errPayeeMismatch {
				t.Fatalf("a payee refusal other than the one answer: %v", err) // the format's own errors may name fields
			}
			return
		}
		if co.payer.Owner != owner(c) || co.payee.ID == "" || co.amount <= 0 || co.tr.Currency != co.payer.Currency || co.tr.Currency != co.payee.Currency {
			t.Fatalf("accepted %q as %+v", order, co)
		}
		if co.authorised {
			t.Fatal("checkOrder marked an order authorised")
		}
	})
}

// requestCheck returns the shape check of a decoded request type (what
// Enrol and Login run first), or nil for types without one.
func requestCheck(v any) func() error {
	switch r := v.(type) {
	case *bankwire.EnrolRequest:
		return func() error { return validateEnrol(r) }
	case *bankwire.LoginRequest:
		return func() error { return validateLogin(r) }
	}
	return nil
}
