package main

import (
	"errors"
	"strings"
	"testing"
)

// Issue 13 friction: YAML errors named Go types (main.keySpecConfig) and
// YAML tags (!!str). They name the field's path and what it takes.
func TestYAMLErrorsForOfficers(t *testing.T) {
	dir := t.TempDir()
	head := "module: /m\nofficers: [A, B]\ntranscript: {dir: out}\npin_guard: g.db\n"
	for _, tc := range []struct {
		name string
		cfg  func() (validator, *common)
		yaml string
		want []string
	}{
		{"keys as a mapping", fuzzConfigs[1], head + "token: {label: t, user_pin: prompt}\nkeys: {label: k}\n",
			[]string{"line 6: keys: must be a list", "not a mapping"}},
		{"threshold in words", fuzzConfigs[2], head + "threshold: three\n",
			[]string{"line 5: threshold: must be a whole number, not text"}},
		{"backup flag", fuzzConfigs[1], head + "keys:\n  - {label: k, type: aes-256, backup: maybe}\n",
			[]string{"line 6: keys[0].backup: must be true or false"}},
		{"token as text", fuzzConfigs[0], head + "token: bank-hsm\n",
			[]string{"line 5: token: must be a mapping with the fields label, serial"}},
		{"officers as one name", fuzzConfigs[0], "officers: Alice Wong-Smith-Jones\n",
			[]string{"line 1: officers: must be a list"}},
		{"unknown field", fuzzConfigs[0], head + "colour: blue\n",
			[]string{"line 5: colour: unknown field; allowed here: module, officers, transcript, pin_guard, quorum, token, so_pin, user_pin, enrol, audit_public_key_out"}},
		{"unknown nested field", fuzzConfigs[1], head + "keys:\n  - {label: k, type: aes-256, usages: [wrap]}\n",
			[]string{"line 6: keys[0].usages: unknown field; allowed here: label, type, usage, backup, destroyable, public_key_pem, certificate"}},
		{"signer misspelt", fuzzConfigs[5], "transcript: {dir: out, signr: {label: x}}\n",
			[]string{"transcript.signr: unknown field; allowed here: dir, signer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, cm := tc.cfg()
			err := parseConfig([]byte(tc.yaml), "c.yaml", dir, cfg, cm)
			if !errors.Is(err, errConfig) {
				t.Fatalf("want a configuration error, got %v", err)
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not say %q", msg, w)
				}
			}
			for _, bad := range []string{"main.", "!!", "struct {", "unmarshal", "[]string", " int"} {
				if strings.Contains(msg, bad) {
					t.Errorf("message %q shows Go or YAML internals (%q)", msg, bad)
				}
			}
		})
	}
}
