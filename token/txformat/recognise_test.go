package txformat_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/keyward/keyward/token/txformat"
)

func TestRecogniseUnrecognised(t *testing.T) {
	tests := []struct{ name, input, reason string }{
		{"empty", "", "empty"},
		{"white space", " \t\r\n", "empty"},
		{"text", "hello", "byte 0 is 0x68"},
		{"JSON array", `["keyward.transfer.v1"]`, "byte 0 is 0x5b"},
		{"JSON string", `"pay 100"`, "byte 0 is 0x22"},
		{"byte order mark", "\xef\xbb\xbf" + jsonSample, "byte 0 is 0xef"},
		{"NUL", "\x00<Document/>", "byte 0 is 0x00"},
		{"PDF", "%PDF-1.7\n", "byte 0 is 0x25"},
		{"form feed is not white space", "\f{}", "byte 0 is 0x0c"},
		{"random bytes", "\x93\x11\xfe\x00\x7f", "byte 0 is 0x93"},
		{"text after spaces", "   SWIFT MT103", "byte 3 is 0x53"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := txformat.Recognise([]byte(tt.input))
			if d != nil || !errors.Is(err, txformat.ErrUnrecognised) {
				t.Fatalf("got %v, %v; want ErrUnrecognised", d, err)
			}
			if errors.Is(err, txformat.ErrInvalid) {
				t.Errorf("%v also wraps ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("%q does not contain %q", err, tt.reason)
			}
		})
	}
}

func TestRecogniseDispatch(t *testing.T) {
	tests := []struct {
		name   string
		input  string
		format txformat.Format
	}{
		{"JSON", jsonSample, txformat.FormatTransferJSON},
		{"JSON after white space", "\r\n\t " + jsonSample, txformat.FormatTransferJSON},
		{"XML", painSample, txformat.FormatPain001},
		{"XML without declaration, after white space", "\n  " + painSample[strings.Index(painSample, "<Document"):], txformat.FormatPain001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := txformat.Recognise([]byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			if d.Format != tt.format {
				t.Errorf("format %q, want %q", d.Format, tt.format)
			}
		})
	}
}

func TestCanonicalJSON(t *testing.T) {
	sample, err := txformat.ParseTransferJSON([]byte(jsonSample))
	if err != nil {
		t.Fatal(err)
	}
	tr := sample.Transfers[0]
	got, err := txformat.CanonicalJSON(tr, sample.Requested, sample.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	// The sample file is in canonical form.
	if string(got) != jsonSample {
		t.Errorf("got  %s\nwant %s", got, jsonSample)
	}

	t.Run("purpose omitted, HTML not escaped, quotes escaped", func(t *testing.T) {
		tr := tr
		tr.Purpose = ""
		tr.PayeeName = `A&B <"Co">`
		tr.EndToEndID = ""
		got, err := txformat.CanonicalJSON(tr, "2026-03-02T09:30:00Z", "nonce-0123456789")
		if err != nil {
			t.Fatal(err)
		}
		want := `{"type":"keyward.transfer.v1","payer_account":"6222 0202 0011 2233 445","payee_account":"6222 0200 1234 5678",` +
			`"payee_name":"A&B <\"Co\">","payee_bank":"ICBC Beijing","amount":"1234.50","currency":"CNY",` +
			`"requested_at":"2026-03-02T09:30:00Z","nonce":"nonce-0123456789"}`
		if string(got) != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
		d, err := txformat.ParseTransferJSON(got)
		if err != nil {
			t.Fatal(err)
		}
		tr.EndToEndID = "nonce-0123456789"
		if !reflect.DeepEqual(d.Transfers, []txformat.Transfer{tr}) {
			t.Errorf("round trip gave %+v", d.Transfers)
		}
	})

	refusals := []struct {
		name             string
		edit             func(*txformat.Transfer)
		requested, nonce string
		path, reason     string
	}{
		{"nonce differs from EndToEndID", func(*txformat.Transfer) {}, sample.Requested, "other-nonce-0123456", "nonce", "differs from the transfer's EndToEndID"},
		{"bad amount", func(t *txformat.Transfer) { t.Amount = "1e3" }, sample.Requested, sample.MessageID, "amount", "not a plain decimal"},
		{"bidi name", func(t *txformat.Transfer) { t.PayeeName = "\u202e" }, sample.Requested, sample.MessageID, "payee_name", "U+202E"},
		{"bad date", func(*txformat.Transfer) {}, "tomorrow", sample.MessageID, "requested_at", "RFC 3339"},
		{"untrimmed account", func(t *txformat.Transfer) { t.PayerAccount = " 123456" }, sample.Requested, sample.MessageID, "", "not in canonical form"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			tr := tr
			tt.edit(&tr)
			b, err := txformat.CanonicalJSON(tr, tt.requested, tt.nonce)
			if b != nil {
				t.Errorf("returned %s with the error", b)
			}
			assertRefused(t, err, tt.path, tt.reason)
		})
	}
}
