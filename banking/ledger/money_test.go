package ledger_test

import (
	"errors"
	"math"
	"testing"

	"github.com/keyward/keyward/banking/ledger"
)

func TestParseAmount(t *testing.T) {
	tests := []struct {
		in, cur string
		want    int64
		err     error
	}{
		{"0", "CNY", 0, nil},
		{"1", "CNY", 100, nil},
		{"1234.5", "CNY", 123450, nil},
		{"1234.56", "CNY", 123456, nil},
		{"0.01", "CNY", 1, nil},
		{"0.1", "BHD", 100, nil},
		{"12.345", "BHD", 12345, nil},
		{"500", "JPY", 500, nil},
		{"92233720368547758.07", "CNY", math.MaxInt64, nil},
		{"92233720368547758.08", "CNY", 0, ledger.ErrInvalidAmount},
		{"1.234", "CNY", 0, ledger.ErrInvalidAmount},
		{"1.0", "JPY", 0, ledger.ErrInvalidAmount},
		{"-1", "CNY", 0, ledger.ErrInvalidAmount},
		{"+1", "CNY", 0, ledger.ErrInvalidAmount},
		{"", "CNY", 0, ledger.ErrInvalidAmount},
		{".5", "CNY", 0, ledger.ErrInvalidAmount},
		{"5.", "CNY", 0, ledger.ErrInvalidAmount},
		{"01", "CNY", 0, ledger.ErrInvalidAmount},
		{"1,000", "CNY", 0, ledger.ErrInvalidAmount},
		{"1 000", "CNY", 0, ledger.ErrInvalidAmount},
		{" 1", "CNY", 0, ledger.ErrInvalidAmount},
		{"1e3", "CNY", 0, ledger.ErrInvalidAmount},
		{"1.2.3", "CNY", 0, ledger.ErrInvalidAmount},
		{"１２", "CNY", 0, ledger.ErrInvalidAmount}, // full-width digits
		{"NaN", "CNY", 0, ledger.ErrInvalidAmount},
		{"1", "cny", 0, ledger.ErrUnknownCurrency},
		{"1", "XYZ", 0, ledger.ErrUnknownCurrency},
	}
	for _, tc := range tests {
		got, err := ledger.ParseAmount(tc.in, tc.cur)
		if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
			t.Errorf("ParseAmount(%q, %s) error = %v, want %v", tc.in, tc.cur, err, tc.err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseAmount(%q, %s) = %d, want %d", tc.in, tc.cur, got, tc.want)
		}
	}
}

func TestFormatAmount(t *testing.T) {
	tests := []struct {
		v    int64
		cur  string
		want string
	}{
		{0, "CNY", "0.00"},
		{1, "CNY", "0.01"},
		{123450, "CNY", "1234.50"},
		{-5, "CNY", "-0.05"},
		{500, "JPY", "500"},
		{12345, "BHD", "12.345"},
		{math.MaxInt64, "CNY", "92233720368547758.07"},
		{math.MinInt64, "CNY", "-92233720368547758.08"},
	}
	for _, tc := range tests {
		if got := ledger.FormatAmount(tc.v, tc.cur); got != tc.want {
			t.Errorf("FormatAmount(%d, %s) = %q, want %q", tc.v, tc.cur, got, tc.want)
		}
		if tc.v >= 0 {
			back, err := ledger.ParseAmount(tc.want, tc.cur)
			if err != nil || back != tc.v {
				t.Errorf("ParseAmount(FormatAmount(%d)) = %d, %v", tc.v, back, err)
			}
		}
	}
}

func TestAccountID(t *testing.T) {
	id, err := ledger.AccountNumber("622202100112345678")
	if err != nil {
		t.Fatal(err)
	}
	if id != "6222021001123456789" { // check digit computed independently (Luhn)
		t.Fatalf("AccountNumber = %s, want 6222021001123456789", id)
	}
	if err := ledger.ValidateAccountID(id); err != nil {
		t.Fatalf("ValidateAccountID(%s): %v", id, err)
	}
	// Every single-digit change of the body, and every change of the check
	// digit, is caught.
	for i := 0; i < len(id); i++ {
		for d := byte('0'); d <= '9'; d++ {
			if d == id[i] || (i == 0 && d == '0') {
				continue
			}
			mut := id[:i] + string(d) + id[i+1:]
			if err := ledger.ValidateAccountID(mut); !errors.Is(err, ledger.ErrInvalidArgument) {
				t.Fatalf("ValidateAccountID(%s) = %v, want ErrInvalidArgument", mut, err)
			}
		}
	}
	for _, bad := range []string{"", "123", id + "0", "0" + id[1:], "62220210011234567a", ledger.CashAccount("CNY")} {
		if err := ledger.ValidateAccountID(bad); !errors.Is(err, ledger.ErrInvalidArgument) {
			t.Errorf("ValidateAccountID(%q) = %v", bad, err)
		}
	}
	if _, err := ledger.AccountNumber("12345"); !errors.Is(err, ledger.ErrInvalidArgument) {
		t.Errorf("AccountNumber(short) = %v", err)
	}
}
