package pkcs11shim

import (
	"errors"
	"path/filepath"
	"strings"
)

// The PIN-source grammar: the one place that says what a pin-source is
// (R-TOK-4). ParseURI checks a URI's pin-source= with it and package token
// builds its PIN readers from what it returns, so a configuration field, a
// command-line flag and a URI accept and refuse exactly the same strings.
// It lives here, at the bottom of the import graph, because the URI parser
// needs it and pkcs11shim imports no Keyward package.
//
// RFC 7512 (section 2.3) leaves the form of pin-source to the application
// and gives "file:/path" and "|program" as examples; Keyward accepts:
//
//	file:/abs/path     a PIN file (RFC 8089's local file URI, one slash)
//	file:///abs/path   the same file, written with an empty authority (RFC 8089)
//	/abs/path          the same, a bare absolute path
//	env:NAME           environment variable NAME ([A-Za-z_][A-Za-z0-9_]*)
//	prompt             typed at the terminal without echo, prompting "PIN: "
//	prompt:Label text  the same, prompting "Label text: "
//
// and refuses, among others: file://host/path (a file on another host: the
// host part is not silently read as a path), a relative path, "|program"
// (running a program to get a PIN is not supported), a NUL byte, and
// anything else. The path of a file source is taken as written: it is not
// percent-decoded again (a URI's pin-source value already was, once).

// PINSourceKind says where a PIN comes from. The zero value is no source.
type PINSourceKind int

const (
	PINFromFile   PINSourceKind = iota + 1 // PINSourceSpec.Path
	PINFromEnv                             // PINSourceSpec.Env
	PINFromPrompt                          // PINSourceSpec.Prompt
)

// PINSourceSpec is a parsed PIN source: where to get the PIN, not the PIN.
type PINSourceSpec struct {
	Kind PINSourceKind
	// Path is the absolute path of a file source, as written.
	Path string
	// Env is the variable name of an env: source.
	Env string
	// Prompt is the text a prompt source prints before reading, ending in
	// ": " ("PIN: " for a bare prompt).
	Prompt string
}

// ErrPINSourceSyntax is matched (errors.Is) by every error
// ParsePINSource returns. The error's text says what to write instead; it
// never quotes the source, which may be a PIN typed in the wrong place.
var ErrPINSourceSyntax = errors.New("pkcs11shim: invalid PIN source")

// pinSourceError is a grammar error: its text is the advice alone, so that
// callers can put their own prefix (token's ErrPINSource, the URI's
// "pin-source") in front without saying "invalid" twice.
type pinSourceError string

func (e pinSourceError) Error() string        { return string(e) }
func (e pinSourceError) Is(target error) bool { return target == ErrPINSourceSyntax }

// pinSourceForms lists the accepted forms for error messages.
const pinSourceForms = "file:/abs/path, /abs/path, env:NAME or prompt"

// defaultPINPrompt is the prompt of a bare "prompt" source.
const defaultPINPrompt = "PIN: "

// ParsePINSource parses a PIN source written in the grammar above. Errors
// match ErrPINSourceSyntax and never contain s.
func ParsePINSource(s string) (PINSourceSpec, error) {
	fail := func(msg string) (PINSourceSpec, error) { return PINSourceSpec{}, pinSourceError(msg) }
	if strings.IndexByte(s, 0) >= 0 {
		return fail("PIN source contains a NUL byte")
	}
	switch {
	case s == "":
		return fail("empty PIN source; use " + pinSourceForms)
	case s == "prompt":
		return PINSourceSpec{Kind: PINFromPrompt, Prompt: defaultPINPrompt}, nil
	case strings.HasPrefix(s, "prompt:"):
		label := strings.TrimSpace(strings.TrimPrefix(s, "prompt:"))
		label = strings.TrimRight(label, ": ")
		if label == "" {
			return fail("empty prompt label; use prompt or prompt:Label text")
		}
		for _, r := range label {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				return fail("prompt label must not contain control characters")
			}
		}
		return PINSourceSpec{Kind: PINFromPrompt, Prompt: label + ": "}, nil
	case strings.HasPrefix(s, "env:"):
		name := strings.TrimPrefix(s, "env:")
		if !pinEnvNameValid(name) {
			return fail("invalid environment variable name in env:NAME; use ASCII letters, digits and \"_\", not starting with a digit")
		}
		return PINSourceSpec{Kind: PINFromEnv, Env: name}, nil
	case strings.HasPrefix(s, "file://"):
		// RFC 8089: "file://" starts an authority (a host). Only the empty
		// one, file:///abs/path, is this machine; anything else would be
		// read as a path beginning with "//host" if it were let through.
		rest := strings.TrimPrefix(s, "file://")
		if !strings.HasPrefix(rest, "/") {
			return fail("file:// names a host (file://HOST/path); a PIN file is local: write file:/abs/path or file:///abs/path")
		}
		return pinFile(rest)
	case strings.HasPrefix(s, "file:"):
		return pinFile(strings.TrimPrefix(s, "file:"))
	case strings.HasPrefix(s, "|"):
		return fail("a program (|command) is not supported as a PIN source; use " + pinSourceForms)
	case filepath.IsAbs(s):
		return PINSourceSpec{Kind: PINFromFile, Path: s}, nil
	}
	return fail("unrecognised PIN source; use " + pinSourceForms + " (the value is not shown in case it is a PIN)")
}

// pinFile is a file source's path p, which must be absolute.
func pinFile(p string) (PINSourceSpec, error) {
	if !filepath.IsAbs(p) {
		return PINSourceSpec{}, pinSourceError("file: source needs an absolute path, e.g. file:/run/keyward/pin")
	}
	if strings.HasPrefix(p, "//") {
		return PINSourceSpec{}, pinSourceError("file: path starting with // is ambiguous (a URI host?); write file:/abs/path or file:///abs/path")
	}
	return PINSourceSpec{Kind: PINFromFile, Path: p}, nil
}

// pinEnvNameValid reports whether name is a portable environment variable
// name: [A-Za-z_][A-Za-z0-9_]*.
func pinEnvNameValid(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
