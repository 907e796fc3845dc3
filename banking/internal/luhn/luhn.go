// Package luhn is the one Luhn (mod 10) check of the banking packages: the
// check digit of the bank's own account numbers (banking/ledger) and the
// check of card numbers customers bind (banking/auth/mask). It works on
// ASCII digit strings and knows nothing of what the digits mean.
package luhn

// Valid reports whether digits, check digit last, passes the Luhn check.
// It is false for an empty string or any byte that is not an ASCII digit.
func Valid(digits string) bool {
	if digits == "" || !allDigits(digits) {
		return false
	}
	return sum(digits, false)%10 == 0
}

// CheckDigit is the digit that makes body‖digit pass Valid. body must be
// ASCII digits (callers check; any other byte gives a meaningless digit).
func CheckDigit(body string) byte {
	return byte('0' + (10-sum(body, true)%10)%10)
}

// sum is the Luhn sum of digits, doubling every second digit from the
// right, starting with the rightmost when doubleFirst (a body without its
// check digit) or the one left of it (a full number).
func sum(digits string, doubleFirst bool) int {
	s, double := 0, doubleFirst
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		s += d
		double = !double
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
