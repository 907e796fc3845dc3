package luhn

import (
	"strconv"
	"testing"
)

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"79927398713", true}, // the textbook example
		{"79927398710", false},
		{"4111111111111111", true},
		{"4111111111111112", false},
		{"0", true},
		{"", false},
		{"4111 1111 1111 1111", false},
		{"41111111111111１1", false}, // a full-width digit is not a digit
	} {
		if got := Valid(tc.in); got != tc.want {
			t.Errorf("Valid(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestCheckDigit checks that the digit CheckDigit appends is the only one
// that passes Valid, over bodies of odd and even length.
func TestCheckDigit(t *testing.T) {
	for _, body := range []string{"7992739871", "411111111111111", "62220212345678901", "1", "12"} {
		d := CheckDigit(body)
		if !Valid(body + string(d)) {
			t.Errorf("CheckDigit(%q) = %c: %s%c fails Valid", body, d, body, d)
		}
		for o := byte('0'); o <= '9'; o++ {
			if o != d && Valid(body+string(o)) {
				t.Errorf("%s%c passes Valid too, CheckDigit said %c", body, o, d)
			}
		}
	}
	if got := CheckDigit("7992739871"); got != '3' {
		t.Errorf("CheckDigit(7992739871) = %c, want 3", got)
	}
	for i := 0; i < 1000; i++ {
		body := strconv.Itoa(100000 + i*7919)
		if !Valid(body + string(CheckDigit(body))) {
			t.Fatalf("body %s", body)
		}
	}
}
