package main

import (
	"testing"

	"github.com/keyward/keyward/token/l10n"
)

// inLang runs f with bankcli's language set to tag.
func inLang(t *testing.T, tag string, f func()) {
	t.Helper()
	saved := lang
	defer func() { lang = saved }()
	switch tag {
	case "zh":
		lang = l10n.Chinese
	case "en":
		lang = l10n.English
	default:
		t.Fatalf("language %q", tag)
	}
	f()
}

// TestRoleList: whoami names roles by the bank's codes in English and in
// words with the code beside them in Chinese; a role bankcli does not
// know keeps its code.
func TestRoleList(t *testing.T) {
	roles := []string{"enrol", "deposit", "phone-change", "audit-read"}
	inLang(t, "en", func() {
		if got := roleList(roles); got != "enrol, deposit, phone-change, audit-read" {
			t.Errorf("English roles %q", got)
		}
	})
	inLang(t, "zh", func() {
		if got := roleList(roles); got != "客户开户（enrol）、现金存入（deposit）、手机号码变更（phone-change）、audit-read" {
			t.Errorf("Chinese roles %q", got)
		}
		for _, r := range []string{"enrol", "deposit", "unlock", "phone-change", "limit-override", "ledger-verify"} {
			if name := roleName(r); name == "" || name == r {
				t.Errorf("role %s has no Chinese name (%q)", r, name)
			}
		}
	})
}

// TestStaffTime: a time the bank sends is shown in China time with UTC
// beside it, in the reader's language; anything else as it came.
func TestStaffTime(t *testing.T) {
	const at = "2026-12-07T05:07:30.123456Z"
	inLang(t, "zh", func() {
		if got := staffTime(at); got != "2026年12月7日 13:07:30 北京时间（UTC 2026-12-07 05:07:30）" {
			t.Errorf("Chinese %q", got)
		}
	})
	inLang(t, "en", func() {
		if got := staffTime(at); got != "7 Dec 2026 13:07:30 China time (2026-12-07 05:07:30 UTC)" {
			t.Errorf("English %q", got)
		}
		if got := staffTime("tomorrow"); got != "tomorrow" {
			t.Errorf("not a time: %q", got)
		}
	})
}

// TestJoinList: lists read as each language writes them.
func TestJoinList(t *testing.T) {
	phones := []string{"138****2222", "139****9999"}
	inLang(t, "en", func() {
		if got := joinList(phones); got != "138****2222, 139****9999" {
			t.Errorf("English %q", got)
		}
	})
	inLang(t, "zh", func() {
		if got := joinList(phones); got != "138****2222、139****9999" {
			t.Errorf("Chinese %q", got)
		}
	})
}
