package kv

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestCheckID(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"c1", true}, {"张三", true}, {"a b", true},
		{"", false}, {"a\x00b", false}, {"a\nb", false}, {"a\x7fb", false},
		{"\xff", false}, {strings.Repeat("a", MaxIDLen), true}, {strings.Repeat("a", MaxIDLen+1), false},
	} {
		err := CheckID("id", tc.in)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadID)) {
			t.Errorf("CheckID(%q) = %v", tc.in, err)
		}
		if err != nil && tc.in != "" && strings.Contains(err.Error(), tc.in) {
			t.Errorf("error repeats the id: %v", err)
		}
	}
}

func TestKeyNoCollision(t *testing.T) {
	if bytes.Equal(Key("a", "bc"), Key("ab", "c")) {
		t.Fatal("collision")
	}
	if !bytes.HasPrefix(Key("c1", "x"), Prefix("c1")) || bytes.HasPrefix(Key("c10", "x"), Prefix("c1")) {
		t.Fatal("prefix must stop at the separator")
	}
}
