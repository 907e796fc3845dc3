package txformat

import (
	"math/big"
	"sort"
	"strconv"
	"strings"
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

// DisplayLines returns the text to show the holder before signing
// (R-DC-2), one line per slice element, in a stable order. Every value
// shown has been validated by the parser, so no line holds control,
// bidirectional or invisible characters.
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
func (d *Document) DisplayLines() []string {
	if d == nil {
		return nil
	}
	var lines []string
	n := len(d.Transfers)
	if n == 1 {
		t := d.Transfers[0]
		lines = append(lines, transferLines(t)...)
		lines = append(lines,
			"Execution requested for "+d.Requested,
			"Reference: "+t.EndToEndID,
			"Message: "+d.MessageID+" ("+string(d.Format)+")")
		return lines
	}
	lines = append(lines,
		strconv.Itoa(n)+" transfers, total "+d.totalText(),
		"Execution requested for "+d.Requested,
		"Message: "+d.MessageID+" ("+string(d.Format)+")")
	for i, t := range d.Transfers {
		prefix := strconv.Itoa(i+1) + "/" + strconv.Itoa(n) + ": "
		for _, l := range transferLines(t) {
			lines = append(lines, prefix+l)
		}
		lines = append(lines, prefix+"Reference: "+t.EndToEndID)
	}
	return lines
}

func transferLines(t Transfer) []string {
	lines := []string{
		"Pay " + displayAmount(t.Amount, t.Currency) + " " + t.Currency + " to " + t.PayeeName +
			" (" + displayAccount(t.PayeeAccount) + ") at " + t.PayeeBank,
		"From account " + displayAccount(t.PayerAccount),
	}
	if t.Purpose != "" {
		lines = append(lines, "Purpose: "+t.Purpose)
	}
	return lines
}

func (d *Document) totalText() string {
	ccys := make([]string, 0, len(d.Total))
	for c := range d.Total {
		ccys = append(ccys, c)
	}
	sort.Strings(ccys)
	parts := make([]string, len(ccys))
	for i, c := range ccys {
		parts[i] = displayAmount(d.Total[c], c) + " " + c
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, " + ")
}

// displayAmount groups the integer part of a validated amount by
// thousands and pads the decimals to the currency's minor units.
func displayAmount(amount, ccy string) string {
	intPart, frac, _ := strings.Cut(amount, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if mu := minorUnits[ccy]; mu > 0 || frac != "" { // never hide decimals
		b.WriteByte('.')
		b.WriteString(frac)
		b.WriteString(strings.Repeat("0", max(mu-len(frac), 0)))
	}
	return b.String()
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
