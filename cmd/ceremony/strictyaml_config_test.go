package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyward/keyward/cmd/internal/strictyaml"
)

// Issue 14: the ceremony reads its file with the shared strict loader. A
// lone "---" was a valid, empty ceremony (then refused only by validate);
// a key given twice said "mapping key ... already defined" without a path.
func TestParseConfigStrictYAML(t *testing.T) {
	const secret = "S3cretPIN"
	head := "module: /m\nofficers: [A, B]\ntranscript: {dir: out}\npin_guard: g.db\n"
	for _, tc := range []struct {
		name, yaml string
		is         error
		want       string
	}{
		{"only a document start", "---\n", strictyaml.ErrEmpty, "c.yaml: the file is empty"},
		{"second document", head + "---\n" + head, strictyaml.ErrMoreDocuments, "c.yaml: more than one YAML document"},
		{"duplicate key", head + "token: {label: t, user_pin: prompt, user_pin: " + secret + "}\n", nil,
			"line 5: token.user_pin: given twice (first at line 5)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, cm := fuzzConfigs[1]()
			err := parseConfig([]byte(tc.yaml), "c.yaml", t.TempDir(), cfg, cm)
			if !errors.Is(err, errConfig) {
				t.Fatalf("want a configuration error, got %v", err)
			}
			msg := err.Error()
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q does not match %v", msg, tc.is)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not say %q", msg, tc.want)
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error %q repeats a value", msg)
			}
		})
	}
}
