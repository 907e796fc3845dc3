// Package strictyaml is the one YAML loader of the Keyward commands
// (keysvc, banking and ceremony configurations, issue 14): a file is one
// YAML document that says exactly what the program reads.
//
// Decode refuses, with an error an officer can act on:
//
//   - an empty file (nothing, only comments, or a lone "---" or "~");
//   - a second document ("---" followed by more YAML): a file that holds
//     two configurations would be read as the first one only;
//   - a field the target does not have, naming the fields allowed there;
//   - a key given twice in one mapping (go.yaml.in/yaml/v3 refuses it when
//     decoding into a struct or map; the message names the YAML path);
//   - a value of the wrong kind, saying what the field takes.
//
// Messages name the line and the YAML path (keys[0].backup), never Go
// types or YAML tags, and never repeat a value: a PIN written in the wrong
// place must not reach a terminal, a log or a transcript (R-TOK-4).
//
// It is under cmd/internal because only commands read YAML; the services
// (keysvc, banking) are handed parsed configurations.
package strictyaml

import (
	"bytes"
	"errors"
	"io"

	"go.yaml.in/yaml/v3"
)

// ErrEmpty is returned for a file that holds no YAML document, or only a
// null one.
var ErrEmpty = errors.New("the file is empty")

// ErrMoreDocuments is returned for a file with more than one document.
var ErrMoreDocuments = errors.New(`more than one YAML document; remove everything from the second "---" on`)

// Decode decodes raw, one YAML document, strictly into v, a pointer to the
// configuration struct. Errors are ErrEmpty, ErrMoreDocuments, or one
// message naming each field to fix.
func Decode(raw []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return ErrEmpty
		}
		return explainYAML(raw, v, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return ErrMoreDocuments
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil || isNull(&doc) {
		return ErrEmpty
	}
	return nil
}

// isNull reports whether doc, a decoded document, holds nothing ("---"
// alone, "~", "null").
func isNull(doc *yaml.Node) bool {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	return doc.Kind == 0 || doc.Kind == yaml.ScalarNode && doc.ShortTag() == "!!null"
}
