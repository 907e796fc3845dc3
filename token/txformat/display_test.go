package txformat_test

import (
	"reflect"
	"strings"
	"testing"

	"golang.org/x/text/language"

	"github.com/keyward/keyward/token/l10n"
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

// TestDisplayLinesChinese: the Chinese display, with the amounts in
// capitals for CNY and every value from the document as parsed.
func TestDisplayLinesChinese(t *testing.T) {
	mixed := strings.ReplaceAll(replaceOnce(t, painSample, `<InstdAmt Ccy="CNY">5000.00</InstdAmt>`, `<InstdAmt Ccy="USD">20</InstdAmt>`), "6234.50", "1254.5")
	jpy := strings.Replace(withoutJSONField(t, "purpose"), `"currency":"CNY"`, `"currency":"JPY"`, 1)
	jpy = strings.Replace(jpy, `"amount":"1234.50"`, `"amount":"1234567"`, 1)
	huge := withJSONField(t, "amount", `"12345678901234567.89"`)
	tests := []struct {
		name  string
		input string
		want  []string
	}{
		{"JSON sample", jsonSample, []string{
			"向 李雷（6222 0200 1234 5678，ICBC Beijing）支付 人民币 1,234.50",
			"大写：壹仟贰佰叁拾肆元伍角整",
			"付款账户 6222 0202 0011 2233 445",
			"用途：货款 发票号 20260215",
			"要求执行日期 2026-03-02T09:30:00+08:00",
			"参考号：k7Qm2vX9pL4sT8wZ",
			"报文 k7Qm2vX9pL4sT8wZ（keyward.transfer.v1）",
		}},
		{"pain.001 sample", painSample, []string{
			"共 2 笔转账，合计 人民币 6,234.50",
			"合计大写：陆仟贰佰叁拾肆元伍角整",
			"要求执行日期 2026-03-02",
			"报文 MSG-20260302-0001（pain.001.001.09）",
			"第 1/2 笔：向 李雷（6222 0200 1234 5678，ICBC Beijing）支付 人民币 1,234.50",
			"第 1/2 笔：大写：壹仟贰佰叁拾肆元伍角整",
			"第 1/2 笔：付款账户 6222 0202 0011 2233 445",
			"第 1/2 笔：用途：货款 发票号 20260215",
			"第 1/2 笔：参考号：E2E-20260302-0001",
			"第 2/2 笔：向 韩梅梅（6217 8520 0001 2345 678，BKCHCNBJ110）支付 人民币 5,000.00",
			"第 2/2 笔：大写：伍仟元整",
			"第 2/2 笔：付款账户 6222 0202 0011 2233 445",
			"第 2/2 笔：用途：服务费 2026年2月",
			"第 2/2 笔：参考号：E2E-20260302-0002",
		}},
		{"two currencies", mixed, []string{
			"共 2 笔转账，合计 人民币 1,234.50 + 美元 20.00",
			"合计大写：壹仟贰佰叁拾肆元伍角整",
			"要求执行日期 2026-03-02",
			"报文 MSG-20260302-0001（pain.001.001.09）",
			"第 1/2 笔：向 李雷（6222 0200 1234 5678，ICBC Beijing）支付 人民币 1,234.50",
			"第 1/2 笔：大写：壹仟贰佰叁拾肆元伍角整",
			"第 1/2 笔：付款账户 6222 0202 0011 2233 445",
			"第 1/2 笔：用途：货款 发票号 20260215",
			"第 1/2 笔：参考号：E2E-20260302-0001",
			"第 2/2 笔：向 韩梅梅（6217 8520 0001 2345 678，BKCHCNBJ110）支付 美元 20.00",
			"第 2/2 笔：付款账户 6222 0202 0011 2233 445",
			"第 2/2 笔：用途：服务费 2026年2月",
			"第 2/2 笔：参考号：E2E-20260302-0002",
		}},
		{"JPY without purpose: no capitals", jpy, []string{
			"向 李雷（6222 0200 1234 5678，ICBC Beijing）支付 日元 1,234,567",
			"付款账户 6222 0202 0011 2233 445",
			"要求执行日期 2026-03-02T09:30:00+08:00",
			"参考号：k7Qm2vX9pL4sT8wZ",
			"报文 k7Qm2vX9pL4sT8wZ（keyward.transfer.v1）",
		}},
		{"beyond the capitals", huge, []string{
			"向 李雷（6222 0200 1234 5678，ICBC Beijing）支付 人民币 12,345,678,901,234,567.89",
			"大写：金额过大，无法写成大写，请核对数字",
			"付款账户 6222 0202 0011 2233 445",
			"用途：货款 发票号 20260215",
			"要求执行日期 2026-03-02T09:30:00+08:00",
			"参考号：k7Qm2vX9pL4sT8wZ",
			"报文 k7Qm2vX9pL4sT8wZ（keyward.transfer.v1）",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := txformat.Recognise([]byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			for _, lang := range []language.Tag{l10n.Chinese, language.MustParse("zh-CN"), language.MustParse("fr")} {
				if got := d.DisplayLinesIn(lang); !reflect.DeepEqual(got, tt.want) {
					t.Errorf("%v: got\n%s\nwant\n%s", lang, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
				}
			}
			if en := d.DisplayLinesIn(language.MustParse("en-GB")); !reflect.DeepEqual(en, d.DisplayLines()) {
				t.Errorf("DisplayLinesIn(en-GB) differs from DisplayLines:\n%s", strings.Join(en, "\n"))
			}
		})
	}
}

// TestDisplayChineseKeepsValues: a payee, bank and purpose in Chinese,
// with characters that look like the display's own punctuation, come
// through unchanged.
func TestDisplayChineseKeepsValues(t *testing.T) {
	b, err := txformat.CanonicalJSON(txformat.Transfer{PayerAccount: "6222020200112233445", PayeeAccount: "6222020012345678",
		PayeeName: "广西北部湾（南宁）贸易有限公司", PayeeBank: "中国工商银行北京分行", Amount: "1004.07", Currency: "CNY",
		Purpose: "货款 100% 结清；发票号 20260215"}, "2026-03-02T09:30:00+08:00", "zhNonce000000001")
	if err != nil {
		t.Fatal(err)
	}
	d, err := txformat.Recognise(b)
	if err != nil {
		t.Fatal(err)
	}
	lines := d.DisplayLinesIn(l10n.Chinese)
	want := []string{
		"向 广西北部湾（南宁）贸易有限公司（6222 0200 1234 5678，中国工商银行北京分行）支付 人民币 1,004.07",
		"大写：壹仟零肆元零柒分",
		"付款账户 6222 0202 0011 2233 445",
		"用途：货款 100% 结清；发票号 20260215",
	}
	if !reflect.DeepEqual(lines[:4], want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(lines[:4], "\n"), strings.Join(want, "\n"))
	}
}
