package txformat_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/keyward/keyward/token/txformat"
)

func TestDisplayLines(t *testing.T) {
	mixed := strings.ReplaceAll(replaceOnce(t, painSample, `<InstdAmt Ccy="CNY">5000.00</InstdAmt>`, `<InstdAmt Ccy="USD">20</InstdAmt>`), "6234.50", "1254.5")
	noPurpose := strings.Replace(withoutJSONField(t, "purpose"), `"currency":"CNY"`, `"currency":"JPY"`, 1)
	noPurpose = strings.Replace(noPurpose, `"amount":"1234.50"`, `"amount":"1234567"`, 1)
	tests := []struct {
		name  string
		input string
		want  []string
	}{
		{"JSON sample", jsonSample, []string{
			"Pay 1,234.50 CNY to 李雷 (6222 0200 1234 5678) at ICBC Beijing",
			"From account 6222 0202 0011 2233 445",
			"Purpose: 货款 发票号 20260215",
			"Execution requested for 2026-03-02T09:30:00+08:00",
			"Reference: k7Qm2vX9pL4sT8wZ",
			"Message: k7Qm2vX9pL4sT8wZ (keyward.transfer.v1)",
		}},
		{"pain.001 sample", painSample, []string{
			"2 transfers, total 6,234.50 CNY",
			"Execution requested for 2026-03-02",
			"Message: MSG-20260302-0001 (pain.001.001.09)",
			"1/2: Pay 1,234.50 CNY to 李雷 (6222 0200 1234 5678) at ICBC Beijing",
			"1/2: From account 6222 0202 0011 2233 445",
			"1/2: Purpose: 货款 发票号 20260215",
			"1/2: Reference: E2E-20260302-0001",
			"2/2: Pay 5,000.00 CNY to 韩梅梅 (6217 8520 0001 2345 678) at BKCHCNBJ110",
			"2/2: From account 6222 0202 0011 2233 445",
			"2/2: Purpose: 服务费 2026年2月",
			"2/2: Reference: E2E-20260302-0002",
		}},
		{"two currencies", mixed, []string{
			"2 transfers, total 1,234.50 CNY + 20.00 USD",
			"Execution requested for 2026-03-02",
			"Message: MSG-20260302-0001 (pain.001.001.09)",
			"1/2: Pay 1,234.50 CNY to 李雷 (6222 0200 1234 5678) at ICBC Beijing",
			"1/2: From account 6222 0202 0011 2233 445",
			"1/2: Purpose: 货款 发票号 20260215",
			"1/2: Reference: E2E-20260302-0001",
			"2/2: Pay 20.00 USD to 韩梅梅 (6217 8520 0001 2345 678) at BKCHCNBJ110",
			"2/2: From account 6222 0202 0011 2233 445",
			"2/2: Purpose: 服务费 2026年2月",
			"2/2: Reference: E2E-20260302-0002",
		}},
		{"JPY without purpose", noPurpose, []string{
			"Pay 1,234,567 JPY to 李雷 (6222 0200 1234 5678) at ICBC Beijing",
			"From account 6222 0202 0011 2233 445",
			"Execution requested for 2026-03-02T09:30:00+08:00",
			"Reference: k7Qm2vX9pL4sT8wZ",
			"Message: k7Qm2vX9pL4sT8wZ (keyward.transfer.v1)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := txformat.Recognise([]byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			if got := d.DisplayLines(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestDisplayAmounts checks grouping and minor-unit padding through the
// first display line of a one-transfer JSON document.
func TestDisplayAmounts(t *testing.T) {
	tests := []struct{ amount, ccy, want string }{
		{"1", "CNY", "1.00 CNY"},
		{"0.5", "USD", "0.50 USD"},
		{"999", "EUR", "999.00 EUR"},
		{"1000", "HKD", "1,000.00 HKD"},
		{"1234.5", "GBP", "1,234.50 GBP"},
		{"1000000", "KRW", "1,000,000 KRW"},
		{"1.5", "BHD", "1.500 BHD"},
		{"12345.678", "KWD", "12,345.678 KWD"},
		{"123456789012345678.99", "CNY", "123,456,789,012,345,678.99 CNY"},
	}
	for _, tt := range tests {
		t.Run(tt.amount+tt.ccy, func(t *testing.T) {
			in := strings.Replace(withJSONField(t, "amount", `"`+tt.amount+`"`), `"CNY"`, `"`+tt.ccy+`"`, 1)
			d, err := txformat.ParseTransferJSON([]byte(in))
			if err != nil {
				t.Fatal(err)
			}
			want := "Pay " + tt.want + " to 李雷 (6222 0200 1234 5678) at ICBC Beijing"
			if got := d.DisplayLines()[0]; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestDisplayLinesNil(t *testing.T) {
	var d *txformat.Document
	if got := d.DisplayLines(); got != nil {
		t.Errorf("nil document gave %q", got)
	}
}
