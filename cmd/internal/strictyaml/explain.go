package strictyaml

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Officers and operators read these messages, not Go programmers (issue
// 13 friction): yaml's decode errors name Go types (main.keySpecConfig)
// and YAML tags (!!str). explainYAML turns each into the YAML path of the
// value, what that field takes and, for an unknown field, the fields
// allowed there. Values are never repeated: a misplaced PIN must not reach
// a message.

var (
	reTypeErr  = regexp.MustCompile(`^line (\d+): cannot unmarshal (!!\w+)(?: ` + "`" + `(.*)` + "`" + `)? into (.+)$`)
	reFieldErr = regexp.MustCompile(`^line (\d+): field (.+) not found in type (.+)$`)
	reDupErr   = regexp.MustCompile(`^line (\d+): mapping key (.+) already defined at line (\d+)$`)
	reSetErr   = regexp.MustCompile(`^line (\d+): field (.+) already set in type (.+)$`)
	reLine     = regexp.MustCompile(`^line (\d+): `)
)

// explainYAML rewrites a decode error of raw into cfg for officers.
func explainYAML(raw []byte, cfg any, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if strings.Contains(msg, "invalid map key") {
			// yaml quotes the key (%#v): it may be a misplaced secret.
			return errors.New("a key is not a single word (it is not shown); keys are field names")
		}
		return errors.New(msg)
	}
	var doc yaml.Node
	if yaml.Unmarshal(raw, &doc) != nil {
		doc = yaml.Node{}
	}
	var msgs []string
	for _, e := range te.Errors {
		msgs = append(msgs, explainOne(&doc, reflect.TypeOf(cfg), e))
	}
	return errors.New(strings.Join(msgs, "; "))
}

func explainOne(doc *yaml.Node, root reflect.Type, e string) string {
	if m := reDupErr.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		name := m[2]
		if u, err := strconv.Unquote(name); err == nil {
			name = u
		}
		if path, ok := findKey(doc, line, name); ok {
			return fmt.Sprintf("line %d: %s: given twice (first at line %s); give each field once", line, joinPath(path), m[3])
		}
		return fmt.Sprintf("line %d: a field is given twice (first at line %s); give each field once", line, m[3])
	}
	if m := reFieldErr.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		path, ok := findKey(doc, line, m[2])
		if !ok {
			return fmt.Sprintf("line %d: %s: unknown field", line, m[2])
		}
		parent := path[:len(path)-1]
		allowed := fieldNames(typeAt(root, parent))
		return fmt.Sprintf("line %d: %s: unknown field; allowed here: %s", line, joinPath(path), strings.Join(allowed, ", "))
	}
	if m := reSetErr.FindStringSubmatch(e); m != nil {
		return fmt.Sprintf("line %s: %s: given twice; give each field once", m[1], m[2])
	}
	if m := reTypeErr.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		path, ok := findValue(doc, line, m[2], m[3])
		if !ok {
			return fmt.Sprintf("line %d: %s where %s is needed", line, kindName(m[2]), "another kind of value")
		}
		return fmt.Sprintf("line %d: %s: %s, not %s", line, joinPath(path), wants(typeAt(root, path)), kindName(m[2]))
	}
	// A message not known here might quote a value: keep only its line.
	if m := reLine.FindStringSubmatch(e); m != nil {
		return fmt.Sprintf("line %s: this value cannot be read here (it is not shown)", m[1])
	}
	return "a value cannot be read (it is not shown)"
}

// walk visits every node under n with its YAML path; key nodes are
// visited with the path of their value.
func walk(n *yaml.Node, path []string, visit func(n *yaml.Node, path []string, key bool) bool) bool {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if walk(c, path, visit) {
				return true
			}
		}
		return false
	case yaml.MappingNode:
		if visit(n, path, false) {
			return true
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := append(append([]string{}, path...), n.Content[i].Value)
			if visit(n.Content[i], p, true) || walk(n.Content[i+1], p, visit) {
				return true
			}
		}
		return false
	case yaml.SequenceNode:
		if visit(n, path, false) {
			return true
		}
		for i, c := range n.Content {
			if walk(c, append(append([]string{}, path...), "["+strconv.Itoa(i)+"]"), visit) {
				return true
			}
		}
		return false
	case yaml.AliasNode:
		return visit(n, path, false)
	}
	return visit(n, path, false)
}

func findKey(doc *yaml.Node, line int, name string) (found []string, ok bool) {
	walk(doc, nil, func(n *yaml.Node, path []string, key bool) bool {
		if key && n.Line == line && n.Value == name {
			found, ok = path, true
		}
		return ok
	})
	return found, ok
}

func findValue(doc *yaml.Node, line int, tag, value string) (found []string, ok bool) {
	walk(doc, nil, func(n *yaml.Node, path []string, key bool) bool {
		// yaml shortens long values in its message to 7 characters and "...".
		short, cut := strings.CutSuffix(value, "...")
		if !key && n.Line == line && n.ShortTag() == tag && (value == "" || n.Value == value || (cut && strings.HasPrefix(n.Value, short))) {
			found, ok = path, true
		}
		return ok
	})
	return found, ok
}

func joinPath(path []string) string {
	var b strings.Builder
	for i, p := range path {
		if i > 0 && !strings.HasPrefix(p, "[") {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	if b.Len() == 0 {
		return "the file"
	}
	return b.String()
}

// typeAt is the Go type that decodes the value at path (nil: unknown).
func typeAt(t reflect.Type, path []string) reflect.Type {
	for _, p := range path {
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t == nil {
			return nil
		}
		switch {
		case strings.HasPrefix(p, "["):
			if t.Kind() != reflect.Slice {
				return nil
			}
			t = t.Elem()
		case t.Kind() == reflect.Struct:
			t = fieldType(t, p)
		case t.Kind() == reflect.Map:
			t = t.Elem()
		default:
			return nil
		}
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// yamlFields lists a struct's YAML fields (inline ones flattened).
func yamlFields(t reflect.Type, visit func(name string, ft reflect.Type)) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			yamlFields(f.Type, visit)
			continue
		}
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		visit(name, f.Type)
	}
}

func fieldType(t reflect.Type, name string) (ft reflect.Type) {
	yamlFields(t, func(n string, typ reflect.Type) {
		if n == name {
			ft = typ
		}
	})
	return ft
}

func fieldNames(t reflect.Type) []string {
	if t == nil || t.Kind() != reflect.Struct {
		return []string{"(none)"}
	}
	var names []string
	yamlFields(t, func(n string, _ reflect.Type) { names = append(names, n) })
	return names
}

// wants says what a field of type t takes, in officers' words.
func wants(t reflect.Type) string {
	if t == nil {
		return "needs another kind of value"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "must be true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "must be a whole number"
	case reflect.String:
		return "must be a single value (text)"
	case reflect.Slice:
		return "must be a list ([a, b] or one '- item' per line)"
	case reflect.Struct:
		names := fieldNames(t)
		sort.Strings(names)
		return "must be a mapping with the fields " + strings.Join(names, ", ")
	case reflect.Map:
		return "must be a mapping (name: value)"
	}
	return "needs another kind of value"
}

func kindName(tag string) string {
	switch tag {
	case "!!str":
		return "text"
	case "!!int":
		return "a number"
	case "!!float":
		return "a decimal number"
	case "!!bool":
		return "true/false"
	case "!!seq":
		return "a list"
	case "!!map":
		return "a mapping"
	case "!!null":
		return "an empty value"
	case "!!timestamp":
		return "a date"
	case "!!binary":
		return "binary data"
	}
	return "another kind of value"
}
