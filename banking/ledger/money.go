package ledger

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// currencyExponents lists the ISO 4217 alpha-3 codes the ledger accepts with
// their minor-unit exponent (CNY has 2: 1 yuan = 100 fen; JPY has 0;
// BHD has 3). Codes outside the table are ErrUnknownCurrency: a wrong
// exponent would silently scale money by 10 or 100.
var currencyExponents = map[string]int{
	"CNY": 2, "HKD": 2, "MOP": 2, "TWD": 2, "USD": 2, "EUR": 2, "GBP": 2,
	"CHF": 2, "CAD": 2, "AUD": 2, "NZD": 2, "SGD": 2, "SEK": 2, "NOK": 2,
	"DKK": 2, "PLN": 2, "CZK": 2, "HUF": 2, "RUB": 2, "TRY": 2, "ZAR": 2,
	"BRL": 2, "MXN": 2, "INR": 2, "THB": 2, "MYR": 2, "IDR": 2, "PHP": 2,
	"AED": 2, "SAR": 2, "QAR": 2, "ILS": 2, "EGP": 2, "PKR": 2, "KZT": 2,
	"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "UGX": 0, "XAF": 0, "XOF": 0,
	"BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3, "LYD": 3, "IQD": 3,
}

// CurrencyExponent returns the number of decimals of an ISO 4217 alpha-3
// code, which must be upper case ("CNY" → 2).
func CurrencyExponent(code string) (int, error) {
	e, ok := currencyExponents[code]
	if !ok {
		return 0, fmt.Errorf("%w: %q (an ISO 4217 code in upper case, e.g. CNY)", ErrUnknownCurrency, code)
	}
	return e, nil
}

// maxAmountLen bounds the text ParseAmount reads: int64 has 19 digits.
const maxAmountLen = 24

// ParseAmount turns a decimal string into minor units of currency, exactly:
// "1234.5" CNY is 123450. Accepted: ASCII digits, optionally a point and
// 1 to exponent digits ("12", "12.3", "12.30"; for JPY no point at all).
// Refused with ErrInvalidAmount: signs (so no negative amount), spaces,
// thousands separators, exponents, a leading or trailing point, leading
// zeros ("007"), more decimals than the currency has ("1.234" CNY is not
// rounded), and values beyond int64. Zero is accepted here; Transfer
// refuses it.
func ParseAmount(s, currency string) (int64, error) {
	exp, err := CurrencyExponent(currency)
	if err != nil {
		return 0, err
	}
	bad := func(why string) error {
		return fmt.Errorf("%w: %q: %s", ErrInvalidAmount, truncate(s, maxAmountLen), why)
	}
	if s == "" {
		return 0, bad("empty")
	}
	if len(s) > maxAmountLen {
		return 0, bad("too long")
	}
	whole, frac, hasPoint := strings.Cut(s, ".")
	switch {
	case whole == "":
		return 0, bad("needs a digit before the point")
	case hasPoint && exp == 0:
		return 0, bad(currency + " has no minor unit; give a whole number")
	case hasPoint && frac == "":
		return 0, bad("needs a digit after the point")
	case len(frac) > exp:
		return 0, bad(fmt.Sprintf("%s allows at most %d decimals", currency, exp))
	case len(whole) > 1 && whole[0] == '0':
		return 0, bad("leading zero")
	}
	if !allDigits(whole) || !allDigits(frac) {
		return 0, bad("only digits and one decimal point are allowed (no sign, spaces or separators)")
	}
	digits := whole + frac + strings.Repeat("0", exp-len(frac))
	v, err := strconv.ParseUint(digits, 10, 63)
	if err != nil || v > math.MaxInt64 {
		return 0, bad("too large")
	}
	return int64(v), nil
}

// FormatAmount writes minor units as a decimal string with exactly the
// currency's number of decimals (123450 CNY → "1234.50", -5 → "-0.05"); it
// is ParseAmount's inverse for values ≥ 0. An unknown currency is written
// with no decimals.
func FormatAmount(v int64, currency string) string {
	exp := currencyExponents[currency]
	neg := v < 0
	var u uint64
	if neg {
		u = uint64(-(v + 1)) + 1 // also right for math.MinInt64
	} else {
		u = uint64(v)
	}
	s := strconv.FormatUint(u, 10)
	if exp > 0 {
		if len(s) <= exp {
			s = strings.Repeat("0", exp-len(s)+1) + s
		}
		s = s[:len(s)-exp] + "." + s[len(s)-exp:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
