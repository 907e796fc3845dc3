// Package mask shows personal numbers without revealing them and checks that
// they are well formed (R-AUTH-7).
//
// # What is shown
//
//	IDCard("11010119900307803X")   = "110101199003******"  // last six hidden (R-AUTH-7)
//	Card("6222021234567895678")    = "6222 **** **** 5678" // first 4 and last 4 only
//	Phone("13812345678")           = "138****5678"
//
// Card always prints two groups of stars whatever the length (16 to 19
// digits), so the mask does not tell the length either. An input too short
// to mask safely is shown as stars only: the masks never fail and never
// reveal more than the rule allows, so they are safe to call on anything
// about to be displayed. Validity is a separate question for ValidateID and
// ValidateCard, which the enrolment path calls on input.
//
// # Validation
//
// ValidateID checks a second-generation PRC resident identity number
// (GB 11643-1999): 17 digits and a check character ('0'–'9' or 'X', lower
// case 'x' accepted), the ISO 7064 MOD 11-2 checksum, a plausible region
// (first digit 1–9) and a real calendar date of birth from 1900 on.
// First-generation 15-digit numbers are refused: they carry no checksum
// and were withdrawn in 2013.
//
// ValidateCard checks a bank card number: 12 to 19 ASCII digits with a
// correct Luhn (ISO/IEC 7812) check digit. Spaces are not accepted; strip
// them with CardDigits first.
//
// Errors name what is wrong but never repeat the number (R-SRV-4: no
// personal data in errors or logs).
package mask

import (
	"errors"
	"strings"
	"time"

	"github.com/keyward/keyward/banking/internal/luhn"
)

// Errors of the validators.
var (
	ErrIDFormat     = errors.New("mask: an ID card number is 17 digits followed by a digit or X")
	ErrIDChecksum   = errors.New("mask: the ID card number's check character is wrong (mistyped?)")
	ErrIDBirthDate  = errors.New("mask: the ID card number does not hold a valid date of birth")
	ErrIDRegion     = errors.New("mask: the ID card number does not start with a valid region code")
	ErrCardFormat   = errors.New("mask: a card number is 12 to 19 digits")
	ErrCardChecksum = errors.New("mask: the card number's check digit is wrong (mistyped?)")
)

// IDCard hides the last six characters of an ID card number
// ("110101199003******"; R-AUTH-7: birth day and sequence hidden). A string
// of fewer than 12 characters is shown as stars only.
func IDCard(id string) string {
	if len(id) < 12 || !isASCII(id) {
		return stars(len([]rune(id)))
	}
	return id[:len(id)-6] + "******"
}

// Card shows the first four and last four digits of a card number as
// "6222 **** **** 5678". Spaces and hyphens in the input are ignored. A
// number of fewer than 12 digits (or with other characters) is shown as
// "**** **** **** ****".
func Card(number string) string {
	d := CardDigits(number)
	if len(d) < 12 || !allDigits(d) {
		return "**** **** **** ****"
	}
	return d[:4] + " **** **** " + d[len(d)-4:]
}

// Phone shows the first three and last four digits of a mobile number
// ("138****5678"), the form used in "code sent to …". Anything not 11
// digits is shown as stars only, so a malformed number leaks nothing.
func Phone(phone string) string {
	if len(phone) != 11 || !allDigits(phone) {
		return stars(len([]rune(phone)))
	}
	return phone[:3] + "****" + phone[7:]
}

// CardDigits removes spaces and hyphens, the separators people type.
func CardDigits(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, s)
}

// idWeights are GB 11643-1999's weights 2^(17-i) mod 11 for positions 1..17.
var idWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

// idCheck maps (sum mod 11) to the check character (ISO 7064 MOD 11-2).
const idCheck = "10X98765432"

// IDCheckChar returns the check character GB 11643-1999 gives the first 17
// digits of an ID card number (for test data; errors never reveal it).
func IDCheckChar(first17 string) (byte, error) {
	if len(first17) != 17 || !allDigits(first17) {
		return 0, ErrIDFormat
	}
	sum := 0
	for i := 0; i < 17; i++ {
		sum += int(first17[i]-'0') * idWeights[i]
	}
	return idCheck[sum%11], nil
}

// ValidateID checks an 18-character PRC resident identity number. See the
// package documentation for the rules.
func ValidateID(id string) error {
	if len(id) != 18 {
		return ErrIDFormat
	}
	last := id[17]
	if last == 'x' {
		last = 'X'
	}
	if !allDigits(id[:17]) || !(last == 'X' || (last >= '0' && last <= '9')) {
		return ErrIDFormat
	}
	if id[0] == '0' {
		return ErrIDRegion
	}
	if _, err := time.Parse("20060102", id[6:14]); err != nil || id[6:10] < "1900" {
		return ErrIDBirthDate
	}
	want, _ := IDCheckChar(id[:17])
	if last != want {
		return ErrIDChecksum
	}
	return nil
}

// ValidateCard checks a card number: 12 to 19 digits and the Luhn check.
func ValidateCard(number string) error {
	if len(number) < 12 || len(number) > 19 || !allDigits(number) {
		return ErrCardFormat
	}
	if !Luhn(number) {
		return ErrCardChecksum
	}
	return nil
}

// Luhn reports whether a string of digits passes the Luhn check. It is
// false for an empty string or any non-digit. It is banking/internal/luhn's
// check, the one the ledger's account numbers use too.
func Luhn(digits string) bool { return luhn.Valid(digits) }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func stars(n int) string {
	if n < 1 {
		n = 1
	}
	return strings.Repeat("*", n)
}
