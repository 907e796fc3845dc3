package main

import (
	"errors"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/keyward/keyward/cmd/internal/strictyaml"
)

// Issue 14: keysvc's config loader accepted a second YAML document and
// read only the first; it now shares strictyaml with banking and ceremony.
func TestLoadConfigStrictYAML(t *testing.T) {
	const secret = "S3cretPIN"
	valid, err := yaml.Marshal(validConfigMap())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig(writeConfig(t, string(valid))); err != nil {
		t.Fatalf("the base config is refused: %v", err)
	}
	for _, tc := range []struct {
		name, body string
		is         error
		want       string
	}{
		{"second document", string(valid) + "---\ndata_dir: /elsewhere\n", strictyaml.ErrMoreDocuments, "more than one YAML document"},
		{"only a document start", "---\n", strictyaml.ErrEmpty, "the file is empty"},
		{"duplicate key", string(valid) + "data_dir: " + secret + "\n", nil, "data_dir: given twice"},
		{"misplaced secret", string(valid) + "pin: " + secret + "\n", nil, "pin: unknown field; allowed here: listen, data_dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, tc.body)
			_, err := loadConfig(p)
			if err == nil {
				t.Fatal("loadConfig accepted it")
			}
			msg := err.Error()
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q does not match %v", msg, tc.is)
			}
			if !strings.HasPrefix(msg, "config "+p+": ") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not name the file and say %q", msg, tc.want)
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error %q repeats a value", msg)
			}
		})
	}
}
