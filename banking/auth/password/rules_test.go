package password_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyward/keyward/banking/auth/password"
)

func TestCheck(t *testing.T) {
	personal := []string{"C0001234", "13812345678", "11010519491231002X"}
	for _, tc := range []struct {
		pw    string
		rules []string // nil: accepted
	}{
		{"Tr0ub4dor&3x", nil},
		{"correct Horse battery", nil}, // space counts as a symbol
		{"kq7#vX2m", nil},
		{"Aa1!", []string{password.RuleLength}},
		{strings.Repeat("Ab1", 22), []string{password.RuleLength}}, // 66
		{"abcdefgh", []string{password.RuleClasses}},
		{"abcd1234xyz", []string{password.RuleClasses}},
		{"Zhang密码2024x", []string{password.RuleCharacters}},
		{"Tab\there1X", []string{password.RuleCharacters}},
		{"Qx!c0001234", []string{password.RulePersonal}},  // customer id, any case
		{"Qx!345678zz", []string{password.RulePersonal}},  // phone's last six
		{"Qx!19491231z", []string{password.RulePersonal}}, // birth date from the ID number
		{"Qx!31002xZZ", []string{password.RulePersonal}},  // ID's last six
		{"P@ssw0rd", []string{password.RuleCommon}},
		{"Password1", []string{password.RuleCommon}},
		{"Dragon2024!", []string{password.RuleCommon}},
		{"@dmin123!", []string{password.RuleCommon}},
		{"1qaz@WSX", []string{password.RuleCommon}},
		{"Aa123456!", []string{password.RuleCommon}},
		{"Woaini1314", []string{password.RuleCommon}},
		{"password", []string{password.RuleClasses, password.RuleCommon}},
		{"123456", []string{password.RuleLength, password.RuleClasses, password.RuleCommon}},
	} {
		err := password.Check([]byte(tc.pw), personal...)
		if tc.rules == nil {
			if err != nil {
				t.Errorf("Check(%q) = %v, want nil", tc.pw, err)
			}
			continue
		}
		var we *password.WeakError
		if !errors.As(err, &we) || !errors.Is(err, password.ErrWeak) {
			t.Errorf("Check(%q) = %v, want *WeakError", tc.pw, err)
			continue
		}
		var got []string
		for _, p := range we.Problems {
			got = append(got, p.Rule)
			if p.Message == "" {
				t.Errorf("rule %s has no message", p.Rule)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.rules, ",") {
			t.Errorf("Check(%q) rules = %v, want %v", tc.pw, got, tc.rules)
		}
		if tc.pw != "password" && strings.Contains(err.Error(), tc.pw) {
			t.Errorf("error text repeats the password: %v", err)
		}
	}
}

func TestCheckShortPersonalIgnored(t *testing.T) {
	// A personal string under 4 characters would forbid too much.
	if err := password.Check([]byte("Kq7#vX2m42"), "42"); err != nil {
		t.Fatal(err)
	}
}
