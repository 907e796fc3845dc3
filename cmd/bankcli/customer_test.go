package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestGrouped(t *testing.T) {
	for in, want := range map[string]string{
		"0.00": "0.00", "12.00": "12.00", "999.99": "999.99", "1000.00": "1,000.00", "-1234.50": "-1,234.50",
		"1234567.89": "1,234,567.89", "100000": "100,000", "-100.00": "-100.00", "12345678901234567.00": "12,345,678,901,234,567.00",
		"": "", "abc": "abc", "1e5": "1e5",
	} {
		if got := grouped(in); got != want {
			t.Errorf("grouped(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTableAlignsChinese: columns after Chinese text start at the same
// terminal column as after Latin text (a Chinese character takes two).
func TestTableAlignsChinese(t *testing.T) {
	var b bytes.Buffer
	table(&b, []string{"NAME", "AMOUNT", "MEMO"}, [][]string{{"王小明", "-1,234.50", "房租"}, {"Bob Li", "12.00", "rent"}}, 1)
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("table:\n%s", b.String())
	}
	col := func(line, cell string) int { return displayWidth(line[:strings.Index(line, cell)]) }
	if a, c := col(lines[1], "-1,234.50"), col(lines[2], "12.00"); a+len("-1,234.50") != c+len("12.00") {
		t.Errorf("amounts not right-aligned:\n%s", b.String())
	}
	if a, c := col(lines[1], "房租"), col(lines[2], "rent"); a != c || a != col(lines[0], "MEMO") {
		t.Errorf("memo column at %d and %d (header %d):\n%s", a, c, col(lines[0], "MEMO"), b.String())
	}
	if displayWidth("王小明 🐬") != 9 {
		t.Errorf("displayWidth(王小明 🐬) = %d, want 9", displayWidth("王小明 🐬"))
	}
}

// TestDeviceRef: bankcli names its own device as the bank lists it
// (sha256 of the id, first 8 bytes: printf ana-phone | sha256sum).
func TestDeviceRef(t *testing.T) {
	if got := deviceRef("ana-phone"); got != "d736edb4df9e4021" {
		t.Fatalf("deviceRef = %s", got)
	}
}

func TestLocalTimeIsShanghai(t *testing.T) {
	if got := localTime(time.Date(2026, 12, 6, 16, 30, 0, 0, time.UTC)); got != "2026-12-07 00:30:00" {
		t.Fatalf("localTime = %s", got)
	}
	if localTime(time.Time{}) != "-" {
		t.Fatal("zero time")
	}
}

// TestStepUpHint: a change refused for want of a recent step-up says
// what to run, in the reader's language; the bank's code stays reachable.
func TestStepUpHint(t *testing.T) {
	refused := &apiError{Status: 403, Code: "step_up_required", Message: "confirmation by SMS code required"}
	other := &apiError{Status: 400, Code: "invalid_request", Message: "x"}
	for tag, want := range map[string]string{
		"en": "Saving a payee needs an SMS confirmation from the last few minutes: run `bankcli stepup -resend`",
		"zh": "添加常用收款人需要最近几分钟内的短信验证：请运行 `bankcli stepup -resend`",
	} {
		inLang(t, tag, func() {
			err := stepUpHint(refused, tr("Saving a payee"))
			if !strings.Contains(err.Error(), want) || errCode(err) != "step_up_required" || !errors.Is(err, refused) {
				t.Fatalf("%s hint: %v", tag, err)
			}
			if got := stepUpHint(other, tr("Saving a payee")); got != error(other) {
				t.Fatalf("%s, other error: %v", tag, got)
			}
		})
	}
}

// TestKindName: history's kinds in Chinese; the code in English, and for
// a kind bankcli does not know.
func TestKindName(t *testing.T) {
	inLang(t, "zh", func() {
		for kind, want := range map[string]string{"transfer": "转账", "deposit": "现金存入", "withdrawal": "现金支取", "refund": "refund"} {
			if got := kindName(kind); got != want {
				t.Errorf("kindName(%s) = %q, want %q", kind, got, want)
			}
		}
	})
	inLang(t, "en", func() {
		if got := kindName("deposit"); got != "deposit" {
			t.Errorf("English kind %q", got)
		}
	})
}
