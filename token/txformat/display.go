package txformat

import (
	"math/big"
	"sort"
	"strings"

	"golang.org/x/text/language"

	"github.com/keyward/keyward/token/l10n"
)

// totals sums validated transfers per currency, exactly, in minor units.
func totals(ts []Transfer) map[string]string {
	sums := map[string]*big.Int{}
	for _, t := range ts {
		s, ok := sums[t.Currency]
		if !ok {
			s = new(big.Int)
			sums[t.Currency] = s
		}
		s.Add(s, minorUnitsOf(t.Amount, t.Currency))
	}
	out := make(map[string]string, len(sums))
	for ccy, s := range sums {
		out[ccy] = formatMinor(s, ccy)
	}
	return out
}

// texts are the display's words: English keys (the English display, as
// DisplayLines has always written it), Chinese texts. Arguments are
// values from the document, passed as arguments and never as formats.
var texts = l10n.NewCatalog(map[string]string{
	"Pay %s to %s (%s) at %s":    "向 %[2]s（%[3]s，%[4]s）支付 %[1]s",
	"In words: %s":               "大写：%s",
	"Total in words: %s":         "合计大写：%s",
	"From account %s":            "付款账户 %s",
	"Purpose: %s":                "用途：%s",
	"Execution requested for %s": "要求执行日期 %s",
	"Reference: %s":              "参考号：%s",
	"Message: %s (%s)":           "报文 %s（%s）",
	"%d transfers, total %s":     "共 %d 笔转账，合计 %s",
	"%d/%d: ":                    "第 %d/%d 笔：",
	"too large to write in words, check the figures": "金额过大，无法写成大写，请核对数字",
})

// DisplayLines returns the text to show the holder before signing
// (R-DC-2), in English, one line per slice element, in a stable order.
// It is DisplayLinesIn(l10n.English); see DisplayLinesIn for Chinese.
// Every value shown has been validated by the parser, so no line holds
// control, bidirectional or invisible characters.
//
// Amounts are shown with the currency's minor-unit digits and thousands
// grouped by commas ("1,234.50 CNY"); account identifiers are shown
// without their spaces, in groups of four ("6222 0200 1234 5678"). Every
// other value is shown exactly as parsed.
//
// A document with one transfer gives:
//
//	Pay 1,234.50 CNY to 李雷 (6222 0200 1234 5678) at ICBC Beijing
//	From account 6222 0202 0011 2233 445
//	Purpose: 货款 发票号 20260215            (only if a purpose was given)
//	Execution requested for 2026-03-02
//	Reference: E2E-20260302-0001
//	Message: MSG-20260302-0001 (pain.001.001.09)
//
// With n > 1 transfers the first lines summarise the document, and each
// transfer's lines are prefixed by its position:
//
//	2 transfers, total 6,234.50 CNY          (totals per currency, by code, joined by " + ")
//	Execution requested for 2026-03-02
//	Message: MSG-20260302-0001 (pain.001.001.09)
//	1/2: Pay 1,234.50 CNY to 李雷 (6222 0200 1234 5678) at ICBC Beijing
//	1/2: From account 6222 0202 0011 2233 445
//	…
//
// A nil Document gives no lines.
func (d *Document) DisplayLines() []string { return d.DisplayLinesIn(l10n.English) }

// DisplayLinesIn returns the lines to show the holder in language lang:
// English (DisplayLines' layout) or Chinese, l10n.Match'ed (any other
// language gets the bank's default, Chinese). The Chinese display names
// the currency in Chinese where it has a common name (人民币, 美元, …, see
// l10n.Amount) and, for CNY, adds the amount in Chinese capitals (大写金额,
// l10n.AmountInWords) on the line after the figures, so the holder checks
// the amount two ways, as on a Chinese bank's forms:
//
//	向 李雷（6222 0200 1234 5678，ICBC Beijing）支付 人民币 1,234.50
//	大写：壹仟贰佰叁拾肆元伍角整
//	付款账户 6222 0202 0011 2233 445
//	用途：货款 发票号 20260215
//	要求执行日期 2026-03-02
//	参考号：E2E-20260302-0001
//	报文 MSG-20260302-0001（pain.001.001.09）
//
// Several transfers: "共 2 笔转账，合计 人民币 6,234.50", "合计大写：…"
// (when the document has a CNY total), the date and message, then each
// transfer's lines prefixed "第 1/2 笔：". Payee names, banks, purposes
// and references are shown exactly as parsed, Chinese or not; only the
// words around them change with the language. A CNY amount of 10^16 yuan
// or more (beyond the capitals' range) gets a line saying so instead of
// its capitals.
func (d *Document) DisplayLinesIn(lang language.Tag) []string {
	if d == nil {
		return nil
	}
	lang = l10n.Match(lang)
	p := func(key string, args ...any) string { return texts.Sprintf(lang, key, args...) }
	var lines []string
	n := len(d.Transfers)
	if n == 1 {
		t := d.Transfers[0]
		lines = append(lines, transferLines(t, lang)...)
		lines = append(lines,
			p("Execution requested for %s", d.Requested),
			p("Reference: %s", t.EndToEndID),
			p("Message: %s (%s)", d.MessageID, string(d.Format)))
		return lines
	}
	lines = append(lines, p("%d transfers, total %s", n, d.totalText(lang)))
	if total, ok := d.Total["CNY"]; ok && l10n.IsChinese(lang) {
		lines = append(lines, p("Total in words: %s", inWords(total, lang)))
	}
	lines = append(lines,
		p("Execution requested for %s", d.Requested),
		p("Message: %s (%s)", d.MessageID, string(d.Format)))
	for i, t := range d.Transfers {
		prefix := p("%d/%d: ", i+1, n)
		for _, l := range transferLines(t, lang) {
			lines = append(lines, prefix+l)
		}
		lines = append(lines, prefix+p("Reference: %s", t.EndToEndID))
	}
	return lines
}

func transferLines(t Transfer, lang language.Tag) []string {
	lines := []string{
		texts.Sprintf(lang, "Pay %s to %s (%s) at %s", amountText(t.Amount, t.Currency, lang), t.PayeeName,
			displayAccount(t.PayeeAccount), t.PayeeBank),
	}
	if t.Currency == "CNY" && l10n.IsChinese(lang) {
		lines = append(lines, texts.Sprintf(lang, "In words: %s", inWords(t.Amount, lang)))
	}
	lines = append(lines, texts.Sprintf(lang, "From account %s", displayAccount(t.PayerAccount)))
	if t.Purpose != "" {
		lines = append(lines, texts.Sprintf(lang, "Purpose: %s", t.Purpose))
	}
	return lines
}

// inWords is a validated CNY amount in Chinese capitals, or the words
// saying it is beyond them.
func inWords(amount string, lang language.Tag) string {
	w, err := l10n.AmountInWords(amount)
	if err != nil {
		return texts.Text(lang, "too large to write in words, check the figures")
	}
	return w
}

// amountText is an amount with its currency the reader's way: "1,234.50
// CNY" in English (as DisplayLines has always shown it), "人民币 1,234.50"
// in Chinese.
func amountText(amount, ccy string, lang language.Tag) string {
	if l10n.IsChinese(lang) {
		return l10n.Amount(padAmount(amount, ccy), ccy, lang)
	}
	return displayAmount(amount, ccy) + " " + ccy
}

func (d *Document) totalText(lang language.Tag) string {
	ccys := make([]string, 0, len(d.Total))
	for c := range d.Total {
		ccys = append(ccys, c)
	}
	sort.Strings(ccys)
	parts := make([]string, len(ccys))
	for i, c := range ccys {
		parts[i] = amountText(d.Total[c], c, lang)
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, " + ")
}

// displayAmount groups the integer part of a validated amount by
// thousands and pads the decimals to the currency's minor units.
func displayAmount(amount, ccy string) string { return l10n.Group(padAmount(amount, ccy)) }

// padAmount pads the decimals of a validated amount to the currency's
// minor units, never hiding decimals it has.
func padAmount(amount, ccy string) string {
	intPart, frac, _ := strings.Cut(amount, ".")
	if mu := minorUnits[ccy]; mu > 0 || frac != "" {
		return intPart + "." + frac + strings.Repeat("0", max(mu-len(frac), 0))
	}
	return intPart
}

// displayAccount drops spaces and regroups the characters in fours.
func displayAccount(acct string) string {
	s := strings.ReplaceAll(acct, " ", "")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
