package pinsource

import (
	"errors"
	"testing"
)

// The full grammar table, and the agreement of ParseURI with token's PIN
// readers on every row, is token/pinsource_grammar_test.go; this checks
// the parsed form itself.
func TestParseSpec(t *testing.T) {
	for in, want := range map[string]Spec{
		"file:/run/pin":   {Kind: FromFile, Path: "/run/pin"},
		"file:///run/pin": {Kind: FromFile, Path: "/run/pin"},
		"/run/pin":        {Kind: FromFile, Path: "/run/pin"},
		"env:PIN_1":       {Kind: FromEnv, Env: "PIN_1"},
		"prompt":          {Kind: FromPrompt, Prompt: "PIN: "},
		"prompt:SO PIN":   {Kind: FromPrompt, Prompt: "SO PIN: "},
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"file://x", "file://host/p", "|/bin/pin", "", "x"} {
		got, err := Parse(in)
		if !errors.Is(err, ErrSyntax) || got != (Spec{}) {
			t.Errorf("Parse(%q) = %+v, %v; want a zero spec and ErrSyntax", in, got, err)
		}
	}
}
