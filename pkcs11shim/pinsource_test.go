package pkcs11shim

import (
	"errors"
	"testing"
)

// The full grammar table, and the agreement of ParseURI with token's PIN
// readers on every row, is token/pinsource_grammar_test.go; this checks
// the parsed form itself.
func TestParsePINSourceSpec(t *testing.T) {
	for in, want := range map[string]PINSourceSpec{
		"file:/run/pin":   {Kind: PINFromFile, Path: "/run/pin"},
		"file:///run/pin": {Kind: PINFromFile, Path: "/run/pin"},
		"/run/pin":        {Kind: PINFromFile, Path: "/run/pin"},
		"env:PIN_1":       {Kind: PINFromEnv, Env: "PIN_1"},
		"prompt":          {Kind: PINFromPrompt, Prompt: "PIN: "},
		"prompt:SO PIN":   {Kind: PINFromPrompt, Prompt: "SO PIN: "},
	} {
		got, err := ParsePINSource(in)
		if err != nil || got != want {
			t.Errorf("ParsePINSource(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"file://x", "file://host/p", "|/bin/pin", "", "x"} {
		got, err := ParsePINSource(in)
		if !errors.Is(err, ErrPINSourceSyntax) || got != (PINSourceSpec{}) {
			t.Errorf("ParsePINSource(%q) = %+v, %v; want a zero spec and ErrPINSourceSyntax", in, got, err)
		}
	}
}
