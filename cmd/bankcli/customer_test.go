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

func TestStepUpHint(t *testing.T) {
	err := stepUpHint(&apiError{Status: 403, Code: "step_up_required", Message: "confirmation by SMS code required"}, "Saving a payee")
	if !strings.Contains(err.Error(), "bankcli stepup -resend") || errCode(err) != "step_up_required" {
		t.Fatalf("hint: %v", err)
	}
	other := &apiError{Status: 400, Code: "invalid_request", Message: "x"}
	if got := stepUpHint(other, "Saving a payee"); !errors.Is(got, other) || strings.Contains(got.Error(), "stepup") {
		t.Fatalf("other error: %v", got)
	}
}
