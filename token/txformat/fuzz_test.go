package txformat_test

import (
	"errors"
	"math/big"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/keyward/keyward/token/txformat"
)

// Independent restatement of the rules the fuzz targets check against.
var (
	fuzzMinorUnits = map[string]int{"CNY": 2, "USD": 2, "EUR": 2, "HKD": 2, "GBP": 2, "JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3}
	fuzzAmountRE   = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
)

func fuzzSeeds(t testing.TB) []string {
	return []string{
		jsonSample,
		painSample,
		bulk(3),
		replaceOnce(t, painSample, `<InstdAmt Ccy="CNY">5000.00</InstdAmt>`, `<InstdAmt Ccy="KWD">5.125</InstdAmt>`),
		replaceOnce(t, painSample, othr2, "<IBAN>GB82WEST12345698765432</IBAN>"),
		replaceOnce(t, painSample, "<Dt>2026-03-02</Dt>", "<DtTm>2026-03-02T09:00:00Z</DtTm>"),
		billionLaughs(t),
		withJSONField(t, "payee_name", `"\u202e"`),
		strings.Replace(jsonSample, `{`, `{"amount":"1",`, 1),
		jsonSample + "{}",
	}
}

// checkAccepted asserts what must hold for every accepted document.
func checkAccepted(t *testing.T, d *txformat.Document) {
	t.Helper()
	if d == nil {
		t.Fatal("nil document without error")
	}
	if d.Format != txformat.FormatPain001 && d.Format != txformat.FormatTransferJSON {
		t.Fatalf("format %q", d.Format)
	}
	if n := len(d.Transfers); n < 1 || n > txformat.MaxTransfers {
		t.Fatalf("%d transfers", n)
	}
	sums := map[string]*big.Rat{}
	for i, tr := range d.Transfers {
		mu, ok := fuzzMinorUnits[tr.Currency]
		if !ok {
			t.Fatalf("transfer %d: currency %q", i, tr.Currency)
		}
		if !fuzzAmountRE.MatchString(tr.Amount) {
			t.Fatalf("transfer %d: amount %q", i, tr.Amount)
		}
		ip, frac, _ := strings.Cut(tr.Amount, ".")
		if len(frac) > mu || len(ip) > 18 {
			t.Fatalf("transfer %d: amount %q for %s", i, tr.Amount, tr.Currency)
		}
		r, _ := new(big.Rat).SetString(tr.Amount)
		if r.Sign() <= 0 {
			t.Fatalf("transfer %d: amount %q not positive", i, tr.Amount)
		}
		if sums[tr.Currency] == nil {
			sums[tr.Currency] = new(big.Rat)
		}
		sums[tr.Currency].Add(sums[tr.Currency], r)
	}
	if len(d.Total) != len(sums) {
		t.Fatalf("totals %v for currencies %v", d.Total, sums)
	}
	for ccy, want := range sums {
		got, ok := new(big.Rat).SetString(d.Total[ccy])
		_, frac, _ := strings.Cut(d.Total[ccy], ".")
		if !ok || got.Cmp(want) != 0 || len(frac) != fuzzMinorUnits[ccy] {
			t.Fatalf("total %s = %q, want %s", ccy, d.Total[ccy], want.FloatString(3))
		}
	}
	lines := d.DisplayLines()
	if len(lines) == 0 {
		t.Fatal("no display lines")
	}
	for _, l := range lines {
		for _, r := range l {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) && r != '\u200c' && r != '\u200d' || r == '\u2028' || r == '\u2029' {
				t.Fatalf("display line %q holds %U", l, r)
			}
		}
	}
	all := strings.Join(lines, "\n")
	for i, tr := range d.Transfers {
		for _, v := range []string{tr.PayeeName, tr.PayeeBank, tr.Currency, tr.EndToEndID, tr.Purpose} {
			if !strings.Contains(all, v) {
				t.Fatalf("transfer %d: %q is not displayed", i, v)
			}
		}
	}
}

func FuzzRecognise(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := txformat.Recognise(b)
		if err != nil {
			inv, unr := errors.Is(err, txformat.ErrInvalid), errors.Is(err, txformat.ErrUnrecognised)
			if inv == unr {
				t.Fatalf("error %v: ErrInvalid %v, ErrUnrecognised %v", err, inv, unr)
			}
			if d != nil {
				t.Fatal("document returned with an error")
			}
			return
		}
		checkAccepted(t, d)
		again, err := txformat.Recognise(b)
		if err != nil || !reflect.DeepEqual(d, again) {
			t.Fatalf("second parse differs: %v", err)
		}
		if d.Format != txformat.FormatTransferJSON {
			return
		}
		canon, err := txformat.CanonicalJSON(d.Transfers[0], d.Requested, d.MessageID)
		if err != nil {
			t.Fatalf("CanonicalJSON of an accepted transfer: %v", err)
		}
		d2, err := txformat.ParseTransferJSON(canon)
		if err != nil {
			t.Fatalf("canonical form %s refused: %v", canon, err)
		}
		if !reflect.DeepEqual(d, d2) {
			t.Fatalf("round trip changed the document:\n%+v\n%+v", d, d2)
		}
	})
}

func FuzzParsePain001(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		if strings.HasPrefix(strings.TrimSpace(s), "<") {
			f.Add([]byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := txformat.ParsePain001(b)
		if err != nil {
			var fe *txformat.FieldError
			if !errors.Is(err, txformat.ErrInvalid) || !errors.As(err, &fe) || d != nil {
				t.Fatalf("error %v (document %v) is not a plain refusal", err, d)
			}
			return
		}
		if d.Format != txformat.FormatPain001 {
			t.Fatalf("format %q", d.Format)
		}
		checkAccepted(t, d)
	})
}
