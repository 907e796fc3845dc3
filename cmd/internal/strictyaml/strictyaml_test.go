package strictyaml_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyward/keyward/cmd/internal/strictyaml"
)

type tokenCfg struct {
	Label   string `yaml:"label"`
	UserPIN string `yaml:"user_pin"`
}

type keyCfg struct {
	Label  string `yaml:"label"`
	Backup bool   `yaml:"backup"`
}

type cfg struct {
	Module    string            `yaml:"module"`
	Threshold int               `yaml:"threshold"`
	Token     tokenCfg          `yaml:"token"`
	Keys      []keyCfg          `yaml:"keys"`
	Labels    map[string]string `yaml:"labels"`
}

// The secret below stands for a PIN written in the wrong place: no
// message may repeat it (R-TOK-4).
const secret = "S3cretPIN"

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		is   error    // a sentinel the error matches, or nil
		want []string // substrings of the message; none: accepted
	}{
		{"valid", "module: /m\ntoken: {label: t, user_pin: prompt}\nkeys: [{label: k}]\n", nil, nil},
		{"valid, explicit start and end", "---\nmodule: /m\n...\n", nil, nil},

		{"empty", "", strictyaml.ErrEmpty, []string{"the file is empty"}},
		{"only comments", "# module: /m\n", strictyaml.ErrEmpty, []string{"the file is empty"}},
		{"only a document start", "---\n", strictyaml.ErrEmpty, []string{"the file is empty"}},
		{"null", "~\n", strictyaml.ErrEmpty, []string{"the file is empty"}},

		{"second document", "module: /m\n---\nmodule: /other\n", strictyaml.ErrMoreDocuments, []string{"more than one YAML document"}},
		{"second empty document", "module: /m\n---\n", strictyaml.ErrMoreDocuments, []string{"more than one YAML document"}},
		{"second document with a secret", "module: /m\n---\n" + secret + "\n", strictyaml.ErrMoreDocuments, []string{"more than one YAML document"}},

		// go.yaml.in/yaml/v3 refuses a repeated key when it decodes into a
		// struct or a map (not into a yaml.Node); the message names the path.
		{"duplicate top-level key", "module: /m\nmodule: " + secret + "\n", nil,
			[]string{"line 2: module: given twice (first at line 1)"}},
		{"duplicate nested key", "token:\n  label: t\n  user_pin: prompt\n  user_pin: " + secret + "\n", nil,
			[]string{"line 4: token.user_pin: given twice (first at line 3)"}},
		{"duplicate key in a list item", "keys:\n  - {label: k, label: " + secret + "}\n", nil,
			[]string{"line 2: keys[0].label: given twice"}},
		{"duplicate map key", "labels: {a: x, a: " + secret + "}\n", nil,
			[]string{"line 1: labels.a: given twice"}},

		{"unknown field", "modul: /m\n", nil,
			[]string{"line 1: modul: unknown field; allowed here: module, threshold, token, keys, labels"}},
		{"unknown nested field holding a secret", "token:\n  pin: " + secret + "\n", nil,
			[]string{"line 2: token.pin: unknown field; allowed here: label, user_pin"}},
		{"wrong kind", "threshold: " + secret + "\n", nil,
			[]string{"line 1: threshold: must be a whole number, not text"}},
		{"wrong kind in a list", "keys:\n  - {label: k, backup: " + secret + "}\n", nil,
			[]string{"line 2: keys[0].backup: must be true or false, not text"}},
		{"not a mapping", secret + "\n", nil, []string{"line 1: the file: must be a mapping with the fields"}},
		{"syntax error", "module: [a\n", nil, []string{"line"}},
		{"complex key", "? [" + secret + "]\n: x\n", nil, []string{"line 1: a list where"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c cfg
			err := strictyaml.Decode([]byte(tc.yaml), &c)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want an error saying %q", tc.want)
			}
			msg := err.Error()
			t.Log(msg)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q does not match %v", msg, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not say %q", msg, w)
				}
			}
			if strings.Contains(msg, secret) {
				t.Errorf("message %q repeats a value", msg)
			}
			for _, bad := range []string{"strictyaml_test.", "!!", "struct {", "unmarshal", "not found in type", "already defined"} {
				if strings.Contains(msg, bad) {
					t.Errorf("message %q shows Go or YAML internals (%q)", msg, bad)
				}
			}
		})
	}
}
