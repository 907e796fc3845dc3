package txformat_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/keyward/keyward/token/txformat"
)

func TestParseTransferJSONSample(t *testing.T) {
	got, err := txformat.ParseTransferJSON([]byte(jsonSample))
	if err != nil {
		t.Fatal(err)
	}
	want := &txformat.Document{
		Format:    txformat.FormatTransferJSON,
		MessageID: "k7Qm2vX9pL4sT8wZ",
		Requested: "2026-03-02T09:30:00+08:00",
		Transfers: []txformat.Transfer{{
			PayerAccount: "6222 0202 0011 2233 445",
			PayeeAccount: "6222 0200 1234 5678",
			PayeeName:    "李雷",
			PayeeBank:    "ICBC Beijing",
			Amount:       "1234.50",
			Currency:     "CNY",
			Purpose:      "货款 发票号 20260215",
			EndToEndID:   "k7Qm2vX9pL4sT8wZ",
		}},
		Total: map[string]string{"CNY": "1234.50"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestParseTransferJSONAccepted covers inputs that look unusual but are
// unambiguous, and the exact fields they produce.
func TestParseTransferJSONAccepted(t *testing.T) {
	tests := []struct {
		name  string
		input string
		check func(*txformat.Document) bool
	}{
		{"members in another order",
			`{"nonce":"k7Qm2vX9pL4sT8wZ","type":"keyward.transfer.v1","amount":"5","currency":"JPY","payer_account":"123456","payee_account":"654321","payee_name":"山田太郎","payee_bank":"MUFG","requested_at":"2026-03-02T00:00:00Z"}`,
			func(d *txformat.Document) bool {
				return d.Transfers[0].Amount == "5" && d.Total["JPY"] == "5" && d.Transfers[0].Purpose == ""
			}},
		{"white space between tokens", "\n\t " + strings.ReplaceAll(jsonSample, `,"`, ",\n  \"") + " \r\n",
			func(d *txformat.Document) bool { return d.Transfers[0].PayeeName == "李雷" }},
		{"escaped name decodes", withJSONField(t, "payee_name", `"\u674e\u96f7"`),
			func(d *txformat.Document) bool { return d.Transfers[0].PayeeName == "李雷" }},
		{"accounts trimmed", withJSONField(t, "payee_account", `"  6222 0200 1234 5678  "`),
			func(d *txformat.Document) bool { return d.Transfers[0].PayeeAccount == "6222 0200 1234 5678" }},
		{"amount below one", withJSONField(t, "amount", `"0.05"`),
			func(d *txformat.Document) bool { return d.Total["CNY"] == "0.05" }},
		{"one decimal kept as written", withJSONField(t, "amount", `"1234.5"`),
			func(d *txformat.Document) bool {
				return d.Transfers[0].Amount == "1234.5" && d.Total["CNY"] == "1234.50"
			}},
		{"18 integer digits", withJSONField(t, "amount", `"999999999999999999.99"`),
			func(d *txformat.Document) bool { return d.Total["CNY"] == "999999999999999999.99" }},
		{"fractional seconds and Z", withJSONField(t, "requested_at", `"2026-03-02T01:30:00.123Z"`),
			func(d *txformat.Document) bool { return d.Requested == "2026-03-02T01:30:00.123Z" }},
		{"zero-width joiner allowed", withJSONField(t, "payee_name", `"a\u200db"`),
			func(d *txformat.Document) bool { return d.Transfers[0].PayeeName == "a\u200db" }},
		{"64-character nonce", withJSONField(t, "nonce", `"`+strings.Repeat("A_-9", 16)+`"`),
			func(d *txformat.Document) bool { return d.MessageID == strings.Repeat("A_-9", 16) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := txformat.ParseTransferJSON([]byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(d) {
				t.Errorf("unexpected document %+v", d)
			}
		})
	}
}

func TestParseTransferJSONRefusals(t *testing.T) {
	long141 := strings.Repeat("李", 141)
	tests := []struct {
		name, input, path, reason string
	}{
		// Structure.
		{"duplicate key", strings.Replace(jsonSample, `"amount":"1234.50"`, `"amount":"1.00","amount":"1234.50"`, 1), "amount", "more than once"},
		{"duplicate key via escape", strings.Replace(jsonSample, `{`, `{"\u0074ype":"keyward.transfer.v1",`, 1), "type", "more than once"},
		{"unknown field", strings.Replace(jsonSample, `{`, `{"memo":"x",`, 1), `"memo"`, "unknown field"},
		{"key differing in case", strings.Replace(jsonSample, `"amount"`, `"Amount"`, 1), `"Amount"`, "unknown field"},
		{"trailing object", jsonSample + ` {}`, "", "trailing data"},
		{"trailing garbage", jsonSample + `x`, "", "trailing data"},
		{"second copy", jsonSample + jsonSample, "", "trailing data"},
		{"missing nonce", withoutJSONField(t, "nonce"), "nonce", "required field is missing"},
		{"missing amount", withoutJSONField(t, "amount"), "amount", "required field is missing"},
		{"empty object", `{}`, "type", "required field is missing"},
		{"wrong type value", withJSONField(t, "type", `"keyward.transfer.v2"`), "type", `must be "keyward.transfer.v1"`},
		{"amount as number", withJSONField(t, "amount", `1234.50`), "amount", "must be a JSON string, is a number"},
		{"purpose null", withJSONField(t, "purpose", `null`), "purpose", "is null"},
		{"name as object", withJSONField(t, "payee_name", `{"x":"y"}`), "payee_name", "is an object"},
		{"name as array", withJSONField(t, "payee_name", `["李雷"]`), "payee_name", "is an array"},
		{"currency as bool", withJSONField(t, "currency", `true`), "currency", "is a boolean"},
		{"not an object", `["keyward.transfer.v1"]`, "", "single JSON object"},
		{"truncated", jsonSample[:40], "", "JSON object is incomplete"},
		{"missing colon", `{"type" "x"}`, "", "malformed JSON at byte offset"},
		{"invalid UTF-8", strings.Replace(jsonSample, "李雷", "\xff\xfe", 1), "", "not valid UTF-8"},
		{"over 1 MiB", jsonSample + strings.Repeat(" ", txformat.MaxDocumentSize), "", "larger than the 1048576-byte limit"},

		// Amount and currency.
		{"exponent", withJSONField(t, "amount", `"1e3"`), "amount", "not a plain decimal"},
		{"negative", withJSONField(t, "amount", `"-5"`), "amount", "not a plain decimal"},
		{"plus sign", withJSONField(t, "amount", `"+5"`), "amount", "not a plain decimal"},
		{"zero", withJSONField(t, "amount", `"0"`), "amount", "greater than zero"},
		{"zero with decimals", withJSONField(t, "amount", `"0.00"`), "amount", "greater than zero"},
		{"three decimals CNY", withJSONField(t, "amount", `"1.234"`), "amount", "has 3 decimals; CNY allows at most 2"},
		{"decimal JPY", strings.Replace(withJSONField(t, "amount", `"1.5"`), `"CNY"`, `"JPY"`, 1), "amount", "JPY allows none"},
		{"four decimals BHD", strings.Replace(withJSONField(t, "amount", `"1.0001"`), `"CNY"`, `"BHD"`, 1), "amount", "BHD allows at most 3"},
		{"grouping", withJSONField(t, "amount", `"1,234.50"`), "amount", "not a plain decimal"},
		{"leading space", withJSONField(t, "amount", `" 1234.50"`), "amount", "not a plain decimal"},
		{"trailing point", withJSONField(t, "amount", `"5."`), "amount", "not a plain decimal"},
		{"leading point", withJSONField(t, "amount", `".5"`), "amount", "not a plain decimal"},
		{"leading zero", withJSONField(t, "amount", `"007"`), "amount", "leading zero"},
		{"19 integer digits", withJSONField(t, "amount", `"1234567890123456789"`), "amount", "more than 18 integer digits"},
		{"empty amount", withJSONField(t, "amount", `""`), "amount", "not a plain decimal"},
		{"full-width digits", withJSONField(t, "amount", `"１２３"`), "amount", "not a plain decimal"},
		{"unknown currency", withJSONField(t, "currency", `"XYZ"`), "currency", "not supported"},
		{"lower-case currency", withJSONField(t, "currency", `"cny"`), "currency", "not supported"},

		// Names and text.
		{"bidi override escaped", withJSONField(t, "payee_name", `"李雷\u202e"`), "payee_name", "U+202E, a Unicode bidirectional control"},
		{"bidi override raw", withJSONField(t, "payee_name", "\"Evil\u202Eecila\""), "payee_name", "U+202E"},
		{"bidi isolate", withJSONField(t, "payee_name", `"\u2066Alice\u2069"`), "payee_name", "U+2066"},
		{"right-to-left mark", withJSONField(t, "payee_name", `"Alice\u200f"`), "payee_name", "U+200F"},
		{"bidi in bank", withJSONField(t, "payee_bank", `"ICBC\u202aBeijing"`), "payee_bank", "U+202A"},
		{"bidi in purpose", withJSONField(t, "purpose", `"\u202dfee"`), "purpose", "U+202D"},
		{"newline in name", withJSONField(t, "payee_name", `"李雷\nPay 1.00 CNY"`), "payee_name", "U+000A, a control character"},
		{"tab in name", withJSONField(t, "payee_name", `"李\t雷"`), "payee_name", "control character"},
		{"C1 control", withJSONField(t, "payee_name", `"李\u0085雷"`), "payee_name", "U+0085"},
		{"line separator", withJSONField(t, "payee_name", `"李\u2028雷"`), "payee_name", "line or paragraph separator"},
		{"zero-width space", withJSONField(t, "payee_name", `"李\u200b雷"`), "payee_name", "invisible format character"},
		{"lone surrogate", withJSONField(t, "payee_name", `"李\ud800雷"`), "payee_name", "U+FFFD"},
		{"private use", withJSONField(t, "payee_name", `"李\ue000"`), "payee_name", "private-use"},
		{"combining mark first", withJSONField(t, "payee_name", `"\u0301李雷"`), "payee_name", "combining mark"},
		{"Hangul filler", withJSONField(t, "payee_name", `"李\u3164"`), "payee_name", "U+3164, a blank filler"},
		{"leading space in name", withJSONField(t, "payee_name", `" 李雷"`), "payee_name", "white space"},
		{"empty name", withJSONField(t, "payee_name", `""`), "payee_name", "must not be empty"},
		{"name too long", withJSONField(t, "payee_name", `"`+long141+`"`), "payee_name", "1 to 140 characters long, is 141"},
		{"empty bank", withJSONField(t, "payee_bank", `""`), "payee_bank", "must not be empty"},
		{"empty purpose", withJSONField(t, "purpose", `""`), "purpose", "must not be empty"},

		// Accounts.
		{"account too short", withJSONField(t, "payee_account", `"12345"`), "payee_account", "6 to 34 characters"},
		{"account too long", withJSONField(t, "payer_account", `"`+strings.Repeat("9", 35)+`"`), "payer_account", "6 to 34 characters"},
		{"short after trim", withJSONField(t, "payee_account", `"   12345   "`), "payee_account", "is 5"},
		{"account with hyphen", withJSONField(t, "payee_account", `"6222-0200-1234"`), "payee_account", "found U+002D"},
		{"account full-width", withJSONField(t, "payee_account", `"６２２２０２００"`), "payee_account", "found U+FF16"},
		{"account with tab", withJSONField(t, "payee_account", `"6222\t0200"`), "payee_account", "only letters"},

		// Date and nonce.
		{"date only", withJSONField(t, "requested_at", `"2026-03-02"`), "requested_at", "RFC 3339"},
		{"no time zone", withJSONField(t, "requested_at", `"2026-03-02T09:30:00"`), "requested_at", "RFC 3339"},
		{"lower-case t", withJSONField(t, "requested_at", `"2026-03-02t09:30:00Z"`), "requested_at", "RFC 3339"},
		{"impossible date", withJSONField(t, "requested_at", `"2026-02-30T09:30:00Z"`), "requested_at", "not a real date-time"},
		{"hour 24", withJSONField(t, "requested_at", `"2026-03-02T24:00:00Z"`), "requested_at", "not a real date-time"},
		{"short nonce", withJSONField(t, "nonce", `"abc"`), "nonce", "16 to 64 characters"},
		{"long nonce", withJSONField(t, "nonce", `"`+strings.Repeat("a", 65)+`"`), "nonce", "16 to 64 characters"},
		{"nonce with plus", withJSONField(t, "nonce", `"k7Qm2vX9pL4sT8w+"`), "nonce", "16 to 64 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := txformat.ParseTransferJSON([]byte(tt.input))
			if d != nil {
				t.Errorf("returned a document with the error: %+v", d)
			}
			assertRefused(t, err, tt.path, tt.reason)
			// Recognise must refuse it the same way, unless it does not
			// even start like JSON.
			_, rerr := txformat.Recognise([]byte(tt.input))
			if !strings.HasPrefix(tt.input, "{") {
				if !errors.Is(rerr, txformat.ErrUnrecognised) {
					t.Errorf("Recognise: %v, want ErrUnrecognised", rerr)
				}
			} else if rerr == nil || rerr.Error() != err.Error() {
				t.Errorf("Recognise: %v, want %v", rerr, err)
			}
		})
	}
}
