package l10n

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/text/language"
)

// ErrAmount: not a decimal amount ("12345.67", "-3.5", "100").
var ErrAmount = errors.New("l10n: not a decimal amount")

// currencyZH names the currencies a Chinese reader reads by name.
var currencyZH = map[string]string{
	"CNY": "人民币", "USD": "美元", "EUR": "欧元", "HKD": "港币", "JPY": "日元", "GBP": "英镑",
}

// splitAmount checks a decimal amount and returns its sign, integer
// digits (no leading zeros but one) and fraction digits.
func splitAmount(s string) (neg bool, whole, frac string, err error) {
	if strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	}
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || (dot && frac == "") || !digits(whole) || !digits(frac) {
		return false, "", "", fmt.Errorf("%w: %q", ErrAmount, s)
	}
	whole = strings.TrimLeft(whole, "0")
	if whole == "" {
		whole = "0"
	}
	return neg, whole, frac, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Group writes a decimal amount with its integer part grouped in
// threes: "1234567.8" → "1,234,567.8". Anything not a decimal amount is
// returned unchanged (a display never hides what it was given).
func Group(amount string) string {
	neg, whole, frac, err := splitAmount(amount)
	if err != nil {
		return amount
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i := 0; i < len(whole); i++ {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteByte(whole[i])
	}
	if frac != "" {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	return b.String()
}

// Amount shows a decimal amount and its ISO 4217 currency the reader's
// way: "人民币 12,345.67" in Chinese (the currency's Chinese name when it
// has a common one), "CNY 12,345.67" in English. The digits are the
// caller's: Amount adds grouping, never rounds.
func Amount(amount, currency string, lang language.Tag) string {
	name := currency
	if IsChinese(lang) {
		if zh, ok := currencyZH[currency]; ok {
			name = zh
		}
	}
	return name + " " + Group(amount)
}

var (
	capitalDigits = []string{"零", "壹", "贰", "叁", "肆", "伍", "陆", "柒", "捌", "玖"}
	capitalUnits  = []string{"", "拾", "佰", "仟"}
	capitalGroups = []string{"", "万", "亿", "万亿"}
)

// AmountInWords writes a yuan amount (at most two decimals, below ten
// thousand billion, 10^16) in Chinese capitals as the People's Bank of
// China's rules for bills have it: "12345.67" → "壹万贰仟叁佰肆拾伍元陆角柒分",
// "1004.07" → "壹仟零肆元零柒分", "100" → "壹佰元整", "0.5" → "伍角整",
// "-3" → "负叁元整".
func AmountInWords(amount string) (string, error) {
	neg, whole, frac, err := splitAmount(amount)
	if err != nil {
		return "", err
	}
	if len(frac) > 2 {
		return "", fmt.Errorf("%w: %q has more than two decimals", ErrAmount, amount)
	}
	if len(whole) > 16 {
		return "", fmt.Errorf("%w: %q is too large to write in words", ErrAmount, amount)
	}
	frac += strings.Repeat("0", 2-len(frac))
	jiao, fen := int(frac[0]-'0'), int(frac[1]-'0')

	var b strings.Builder
	if neg && (whole != "0" || jiao != 0 || fen != 0) {
		b.WriteString("负")
	}
	if whole != "0" {
		zero, groupHas := false, false
		for i := 0; i < len(whole); i++ {
			d, p := int(whole[i]-'0'), len(whole)-1-i
			if d == 0 {
				zero = true
			} else {
				if zero && b.Len() > 0 && !(neg && b.String() == "负") {
					b.WriteString("零")
				}
				zero, groupHas = false, true
				b.WriteString(capitalDigits[d] + capitalUnits[p%4])
			}
			if p%4 == 0 {
				if groupHas && p > 0 {
					b.WriteString(capitalGroups[p/4])
				}
				groupHas = false
			}
		}
		b.WriteString("元")
	}
	switch {
	case jiao == 0 && fen == 0:
		if whole == "0" {
			b.WriteString("零元")
		}
		b.WriteString("整")
	case fen == 0:
		b.WriteString(capitalDigits[jiao] + "角整")
	case jiao == 0:
		if whole != "0" {
			b.WriteString("零")
		}
		b.WriteString(capitalDigits[fen] + "分")
	default:
		b.WriteString(capitalDigits[jiao] + "角" + capitalDigits[fen] + "分")
	}
	return b.String(), nil
}
