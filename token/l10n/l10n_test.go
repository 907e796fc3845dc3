package l10n

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/text/language"
)

func TestFromAcceptLanguage(t *testing.T) {
	for h, want := range map[string]language.Tag{
		"":                        Chinese,
		"zh-CN,zh;q=0.9":          Chinese,
		"zh-TW":                   Chinese,
		"zh-Hans":                 Chinese,
		"en-US,en;q=0.8":          English,
		"en-GB":                   English,
		"fr-FR":                   Chinese, // unsupported: the bank's default
		"fr-FR,en;q=0.5":          English,
		"de;q=0.9, zh-CN;q=0.8":   Chinese,
		"en;q=0.2, zh-CN;q=0.9":   Chinese,
		"zh;q=0.1, en-US;q=0.9":   English,
		";;;not a header@@@":      Chinese,
		"*":                       Chinese,
		"en-US;q=abc, zh;q=0.5":   Chinese,
		"xx-invalid-tag-too-long": Chinese,
	} {
		if got := FromAcceptLanguage(h); got != want {
			t.Errorf("FromAcceptLanguage(%q) = %v, want %v", h, got, want)
		}
	}
}

func TestFromEnv(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want language.Tag
	}{
		{map[string]string{}, Chinese},
		{map[string]string{"LANG": "C"}, Chinese},
		{map[string]string{"LANG": "C.UTF-8"}, Chinese},
		{map[string]string{"LANG": "POSIX"}, Chinese},
		{map[string]string{"LANG": "zh_CN.UTF-8"}, Chinese},
		{map[string]string{"LANG": "en_US.UTF-8"}, English},
		{map[string]string{"LANG": "de_DE@euro"}, English},
		{map[string]string{"LANG": "zh_CN.UTF-8", "LC_ALL": "en_GB.UTF-8"}, English},
		{map[string]string{"LANG": "en_US.UTF-8", "LC_MESSAGES": "zh_TW.UTF-8"}, Chinese},
		{map[string]string{"LANG": "en_US.UTF-8", "LC_ALL": "C"}, Chinese},
	} {
		if got := FromEnv(func(k string) string { return c.env[k] }); got != c.want {
			t.Errorf("FromEnv(%v) = %v, want %v", c.env, got, c.want)
		}
	}
}

func TestCatalog(t *testing.T) {
	c := NewCatalog(map[string]string{"%d attempts left": "还可尝试 %d 次", "Confirm": "确认"})
	if got := c.Sprintf(Chinese, "%d attempts left", 3); got != "还可尝试 3 次" {
		t.Errorf("zh: %q", got)
	}
	if got := c.Sprintf(English, "%d attempts left", 3); got != "3 attempts left" {
		t.Errorf("en: %q", got)
	}
	if got := c.Sprintf(language.MustParse("zh-TW"), "Confirm"); got != "确认" {
		t.Errorf("zh-TW: %q", got)
	}
	if got := c.Sprintf(Chinese, "Not translated %s", "x"); got != "Not translated x" {
		t.Errorf("fallback: %q", got)
	}
	if got := c.Printer(Chinese).Sprintf("Confirm"); got != "确认" {
		t.Errorf("x/text printer zh: %q", got)
	}
	if got := c.Printer(English).Sprintf("Confirm"); got != "Confirm" {
		t.Errorf("x/text printer en: %q", got)
	}
	if got := c.Text(Chinese, "Confirm"); got != "确认" {
		t.Errorf("Text: %q", got)
	}
	if u := c.Untranslated("Confirm", "Cancel", "Abort"); len(u) != 2 || u[0] != "Abort" || u[1] != "Cancel" {
		t.Errorf("Untranslated = %v", u)
	}
}

func TestTime(t *testing.T) {
	at := time.Date(2026, 12, 6, 21, 7, 30, 0, time.UTC) // 05:07:30 next day in China
	if got, want := Time(at, Chinese), "2026年12月7日 05:07:30 北京时间（UTC 2026-12-06 21:07:30）"; got != want {
		t.Errorf("zh: %q, want %q", got, want)
	}
	if got, want := Time(at, English), "7 Dec 2026 05:07:30 China time (2026-12-06 21:07:30 UTC)"; got != want {
		t.Errorf("en: %q, want %q", got, want)
	}
	if got, want := Clock(at, Chinese), "05:07 北京时间（UTC 21:07）"; got != want {
		t.Errorf("clock zh: %q, want %q", got, want)
	}
	if got, want := Clock(at, English), "05:07 China time (21:07 UTC)"; got != want {
		t.Errorf("clock en: %q, want %q", got, want)
	}
}

func TestGroupAndAmount(t *testing.T) {
	for in, want := range map[string]string{
		"0": "0", "12": "12", "123": "123", "1234": "1,234", "1234567.89": "1,234,567.89",
		"-1234.5": "-1,234.5", "0012345": "12,345", "100000": "100,000",
		"abc": "abc", "1.2.3": "1.2.3", "": "", "1,000": "1,000", "12.": "12.", "-": "-",
	} {
		if got := Group(in); got != want {
			t.Errorf("Group(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Amount("12345.67", "CNY", Chinese); got != "人民币 12,345.67" {
		t.Errorf("zh CNY: %q", got)
	}
	if got := Amount("12345.67", "CNY", English); got != "CNY 12,345.67" {
		t.Errorf("en CNY: %q", got)
	}
	if got := Amount("5", "XAU", Chinese); got != "XAU 5" {
		t.Errorf("zh unknown currency: %q", got)
	}
}

func TestAmountInWords(t *testing.T) {
	for in, want := range map[string]string{
		"0":                "零元整",
		"0.00":             "零元整",
		"0.05":             "伍分",
		"0.5":              "伍角整",
		"0.56":             "伍角陆分",
		"1":                "壹元整",
		"10":               "壹拾元整",
		"105.50":           "壹佰零伍元伍角整",
		"1004.07":          "壹仟零肆元零柒分",
		"1000.05":          "壹仟元零伍分",
		"12345.67":         "壹万贰仟叁佰肆拾伍元陆角柒分",
		"100000":           "壹拾万元整",
		"1001000":          "壹佰万零壹仟元整",
		"1010000":          "壹佰零壹万元整",
		"10000000":         "壹仟万元整",
		"100000001.00":     "壹亿零壹元整",
		"100010000":        "壹亿零壹万元整",
		"1000000000000":    "壹万亿元整",
		"9999999999999999": "玖仟玖佰玖拾玖万亿玖仟玖佰玖拾玖亿玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元整",
		"-3":               "负叁元整",
		"-1004.07":         "负壹仟零肆元零柒分",
		"-0":               "零元整",
		"20.30":            "贰拾元叁角整",
	} {
		got, err := AmountInWords(in)
		if err != nil || got != want {
			t.Errorf("AmountInWords(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1.234", "12345678901234567", "abc", "1e5", "+1", ".5", "1."} {
		if got, err := AmountInWords(bad); !errors.Is(err, ErrAmount) {
			t.Errorf("AmountInWords(%q) = %q, %v; want ErrAmount", bad, got, err)
		}
	}
}
