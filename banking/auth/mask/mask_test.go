package mask_test

import (
	"errors"
	"testing"

	"github.com/keyward/keyward/banking/auth/mask"
)

func TestIDCard(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"11010519491231002X", "110105194912******"},
		{"440524188001010014", "440524188001******"},
		{"12345678901", "***********"}, // too short: stars only
		{"", "*"},
		{"中文中文中文中文中文中文", "************"},
	} {
		if got := mask.IDCard(tc.in); got != tc.want {
			t.Errorf("IDCard(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCard(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"6222021234565678", "6222 **** **** 5678"},
		{"6222 0212 3456 5678", "6222 **** **** 5678"},
		{"6222-0212-3456-5678-123", "6222 **** **** 8123"},
		{"62220212345", "**** **** **** ****"},
		{"6222abcd34565678", "**** **** **** ****"},
		{"", "**** **** **** ****"},
	} {
		if got := mask.Card(tc.in); got != tc.want {
			t.Errorf("Card(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPhone(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"13812345678", "138****5678"},
		{"1381234567", "**********"},
		{"+8613812345678", "**************"},
	} {
		if got := mask.Phone(tc.in); got != tc.want {
			t.Errorf("Phone(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"11010519491231002X", nil},                 // GB 11643-1999's own example
		{"11010519491231002x", nil},                 // lower-case x accepted
		{"440524188001010014", mask.ErrIDBirthDate}, // the standard's other example: checksum right, born 1880
		{"110105194912310021", mask.ErrIDChecksum},
		{"11010519491231002Y", mask.ErrIDFormat},
		{"1101051949123100", mask.ErrIDFormat},
		{"110105194912310029X", mask.ErrIDFormat},
		{"11010519491331002X", mask.ErrIDBirthDate}, // month 13
		{"110105194902300020", mask.ErrIDBirthDate}, // 30 February
		{"110105189912310020", mask.ErrIDBirthDate}, // 1899
		{"010105194912310020", mask.ErrIDRegion},
		{"110105１94912310020", mask.ErrIDFormat}, // full-width digit
	} {
		if err := mask.ValidateID(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("ValidateID(%q) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

func TestIDCheckCharAllPositions(t *testing.T) {
	// Changing any one digit of a valid number must break the checksum:
	// the weights are all non-zero mod 11, so a single error is caught.
	const id = "11010519491231002X"
	for i := 0; i < 17; i++ {
		b := []byte(id)
		b[i] = '0' + (b[i]-'0'+1)%10
		if i >= 6 && i < 14 {
			continue // may turn the date invalid instead; checked above
		}
		if i == 0 && b[0] == '0' {
			continue
		}
		if err := mask.ValidateID(string(b)); !errors.Is(err, mask.ErrIDChecksum) {
			t.Errorf("digit %d changed: got %v, want ErrIDChecksum", i, err)
		}
	}
}

func TestValidateCard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"4111111111111111", nil},
		{"6011111111111117", nil},
		{"6222021234565678", mask.ErrCardChecksum},
		{"4111111111111112", mask.ErrCardChecksum},
		{"41111111111", mask.ErrCardFormat},          // 11 digits
		{"41111111111111111111", mask.ErrCardFormat}, // 20 digits
		{"4111 1111 1111 1111", mask.ErrCardFormat},  // spaces: CardDigits first
	} {
		if err := mask.ValidateCard(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("ValidateCard(%q) = %v, want %v", tc.in, err, tc.want)
		}
	}
	if err := mask.ValidateCard(mask.CardDigits("4111 1111-1111 1111")); err != nil {
		t.Errorf("after CardDigits: %v", err)
	}
}

func TestLuhn(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"79927398713", true}, {"79927398710", false}, {"0", true}, {"", false}, {"12a", false},
	} {
		if got := mask.Luhn(tc.in); got != tc.want {
			t.Errorf("Luhn(%q) = %v", tc.in, got)
		}
	}
}
