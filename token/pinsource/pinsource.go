// Package pinsource says where a PIN comes from, never what it is
// (R-TOK-4): the one PIN-source grammar (Parse), which a configuration
// field, a command-line flag and a PKCS#11 URI's pin-source= all use, and
// the readers built from it (Open: File, Env, Prompt; Held for a PIN
// already in memory).
//
// It is a leaf of the standard library (and x/term) only, so that every
// Keyward package may import it: pkcs11shim's URI parser, token, which
// re-exports the readers as part of its API, and programs that must build
// without cgo (banking reads its secrets passphrase with it).
//
// PIN sources exist so that a PIN is never passed in argv, where any local
// user can read it from the process table: a command line names where the
// PIN comes from, not the PIN. Errors may name a file or a variable but
// never contain a PIN, nor the source string itself (it may be a PIN typed
// in the wrong place).
package pinsource

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"
)

// The grammar (Parse) is the one place that says what a pin-source is.
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

// Kind says where a PIN comes from. The zero value is no source.
type Kind int

const (
	FromFile   Kind = iota + 1 // Spec.Path
	FromEnv                    // Spec.Env
	FromPrompt                 // Spec.Prompt
)

// Spec is a parsed PIN source: where to get the PIN, not the PIN.
type Spec struct {
	Kind Kind
	// Path is the absolute path of a file source, as written.
	Path string
	// Env is the variable name of an env: source.
	Env string
	// Prompt is the text a prompt source prints before reading, ending in
	// ": " ("PIN: " for a bare prompt).
	Prompt string
}

// ErrSyntax is matched (errors.Is) by every error
// Parse returns. The error's text says what to write instead; it
// never quotes the source, which may be a PIN typed in the wrong place.
var ErrSyntax = errors.New("pinsource: invalid PIN source")

// syntaxError is a grammar error: its text is the advice alone, so that
// callers can put their own prefix (token's ErrPINSource, the URI's
// "pin-source") in front without saying "invalid" twice.
type syntaxError string

func (e syntaxError) Error() string        { return string(e) }
func (e syntaxError) Is(target error) bool { return target == ErrSyntax }

// forms lists the accepted forms for error messages.
const forms = "file:/abs/path, /abs/path, env:NAME or prompt"

// defaultPINPrompt is the prompt of a bare "prompt" source.
const defaultPrompt = "PIN: "

// Parse parses a PIN source written in the grammar above. Errors
// match ErrSyntax and never contain s.
func Parse(s string) (Spec, error) {
	fail := func(msg string) (Spec, error) { return Spec{}, syntaxError(msg) }
	if strings.IndexByte(s, 0) >= 0 {
		return fail("PIN source contains a NUL byte")
	}
	switch {
	case s == "":
		return fail("empty PIN source; use " + forms)
	case s == "prompt":
		return Spec{Kind: FromPrompt, Prompt: defaultPrompt}, nil
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
		return Spec{Kind: FromPrompt, Prompt: label + ": "}, nil
	case strings.HasPrefix(s, "env:"):
		name := strings.TrimPrefix(s, "env:")
		if !envNameValid(name) {
			return fail("invalid environment variable name in env:NAME; use ASCII letters, digits and \"_\", not starting with a digit")
		}
		return Spec{Kind: FromEnv, Env: name}, nil
	case strings.HasPrefix(s, "file://"):
		// RFC 8089: "file://" starts an authority (a host). Only the empty
		// one, file:///abs/path, is this machine; anything else would be
		// read as a path beginning with "//host" if it were let through.
		rest := strings.TrimPrefix(s, "file://")
		if !strings.HasPrefix(rest, "/") {
			return fail("file:// names a host (file://HOST/path); a PIN file is local: write file:/abs/path or file:///abs/path")
		}
		return fileSpec(rest)
	case strings.HasPrefix(s, "file:"):
		return fileSpec(strings.TrimPrefix(s, "file:"))
	case strings.HasPrefix(s, "|"):
		return fail("a program (|command) is not supported as a PIN source; use " + forms)
	case filepath.IsAbs(s):
		return Spec{Kind: FromFile, Path: s}, nil
	}
	return fail("unrecognised PIN source; use " + forms + " (the value is not shown in case it is a PIN)")
}

// pinFile is a file source's path p, which must be absolute.
func fileSpec(p string) (Spec, error) {
	if !filepath.IsAbs(p) {
		return Spec{}, syntaxError("file: source needs an absolute path, e.g. file:/run/keyward/pin")
	}
	if strings.HasPrefix(p, "//") {
		return Spec{}, syntaxError("file: path starting with // is ambiguous (a URI host?); write file:/abs/path or file:///abs/path")
	}
	return Spec{Kind: FromFile, Path: p}, nil
}

// envNameValid reports whether name is a portable environment variable
// name: [A-Za-z_][A-Za-z0-9_]*.
func envNameValid(name string) bool {
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

// ErrSource is wrapped by every error from a PIN source and from
// ParsePINSource, so callers can test for it with errors.Is.
//
// Per requirement R-TOK-4 these errors may name a file path or an
// environment variable but never contain the PIN itself.
var ErrSource = errors.New("token: PIN source") // the words operators knew before the grammar moved here

// maxFileSize is the largest PIN file File accepts, in bytes.
const maxFileSize = 1024

// Source yields a PIN on demand. The caller wipes the returned slice
// after use (see Wipe).
//
// PIN sources exist so that a PIN is never passed in argv, where any local
// user can read it from the process table (requirement R-TOK-4): a command
// line names where the PIN comes from, not the PIN.
type Source interface {
	PIN() ([]byte, error)
}

var (
	_ Source = File{}
	_ Source = Env{}
	_ Source = Prompt{}
	_ Source = Held(nil)
)

// File reads the PIN from the file at Path (R-TOK-4).
//
// The file must be a regular file that is not accessible by group or others
// (mode & 0o077 == 0, e.g. chmod 600), at most 1 KiB long and not empty.
// One trailing "\n" or "\r\n" is removed; any other content, including
// further whitespace, is part of the PIN.
type File struct {
	Path string
}

// PIN reads the PIN from the file. Errors wrap ErrSource and name the
// path but never contain the file's contents.
func (f File) PIN() ([]byte, error) {
	if f.Path == "" {
		return nil, fmt.Errorf("%w: PIN file path is empty", ErrSource)
	}
	file, err := os.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot open PIN file: %w", ErrSource, err)
	}
	defer file.Close()

	// Stat the open file, not the path, so the checks apply to the file
	// actually read.
	info, err := file.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: cannot stat PIN file %q: %w", ErrSource, f.Path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: PIN file %q is not a regular file", ErrSource, f.Path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: PIN file %q is accessible by group or others (mode %04o); run: chmod 600 %q",
			ErrSource, f.Path, uint32(perm), f.Path)
	}
	if info.Size() > maxFileSize {
		return nil, fmt.Errorf("%w: PIN file %q is larger than %d bytes", ErrSource, f.Path, maxFileSize)
	}

	// Read into a fixed buffer (one byte more than allowed, to notice a file
	// that grew since Stat) so that no partial copies are left behind by
	// slice growth, and wipe it once the PIN has been copied out.
	buf := make([]byte, maxFileSize+1)
	defer wipe(buf)
	n, err := io.ReadFull(file, buf)
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// The file is shorter than buf, as expected.
	case err != nil:
		return nil, fmt.Errorf("%w: cannot read PIN file %q: %w", ErrSource, f.Path, err)
	default:
		return nil, fmt.Errorf("%w: PIN file %q is larger than %d bytes", ErrSource, f.Path, maxFileSize)
	}

	data := buf[:n]
	if len(data) > 0 && data[len(data)-1] == '\n' {
		data = data[:len(data)-1]
		if len(data) > 0 && data[len(data)-1] == '\r' {
			data = data[:len(data)-1]
		}
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: PIN file %q is empty", ErrSource, f.Path)
	}
	pin := make([]byte, len(data))
	copy(pin, data)
	return pin, nil
}

// Env reads the PIN from the environment variable Name (R-TOK-4).
//
// The process environment holds the PIN as an immutable string that cannot
// be wiped; prefer File or Prompt where possible.
type Env struct {
	Name string
}

// PIN returns the value of the environment variable. It refuses a variable
// that is unset or empty. Errors wrap ErrSource and name the variable but
// never contain its value.
func (e Env) PIN() ([]byte, error) {
	if e.Name == "" {
		return nil, fmt.Errorf("%w: environment variable name is empty", ErrSource)
	}
	v, ok := os.LookupEnv(e.Name)
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: environment variable %q is not set", ErrSource, e.Name)
	case v == "":
		return nil, fmt.Errorf("%w: environment variable %q is empty", ErrSource, e.Name)
	}
	return []byte(v), nil
}

// Prompt reads the PIN from a terminal with echo turned off (R-TOK-4).
//
// Prompt is written to Out before reading ("PIN: " when empty). In is the
// terminal to read from (os.Stdin when nil) and Out is where the prompt goes
// (os.Stderr when nil). The PIN itself is never written to Out.
type Prompt struct {
	Prompt string
	In     *os.File
	Out    io.Writer
}

// PIN prompts for and reads the PIN. It fails, without writing the prompt,
// when In is not a terminal, and refuses an empty PIN. Errors wrap
// ErrSource.
func (p Prompt) PIN() ([]byte, error) {
	in := p.In
	if in == nil {
		in = os.Stdin
	}
	out := p.Out
	if out == nil {
		out = os.Stderr
	}
	prompt := p.Prompt
	if prompt == "" {
		prompt = defaultPrompt
	}

	fd := int(in.Fd())
	if !term.IsTerminal(fd) {
		return nil, fmt.Errorf("%w: no terminal: use a pin-source file or environment variable", ErrSource)
	}
	if _, err := io.WriteString(out, prompt); err != nil {
		return nil, fmt.Errorf("%w: cannot write PIN prompt: %w", ErrSource, err)
	}
	pin, err := term.ReadPassword(fd)
	// Echo is off, so the user's Enter did not move to a new line.
	_, _ = io.WriteString(out, "\n")
	if err != nil {
		wipe(pin)
		return nil, fmt.Errorf("%w: cannot read PIN from terminal: %w", ErrSource, err)
	}
	if len(pin) == 0 {
		return nil, fmt.Errorf("%w: no PIN entered", ErrSource)
	}
	return pin, nil
}

// Held is a PIN already in memory: typed once for a run, or unsealed
// from a secrets file. Each PIN() is a copy the caller wipes; the holder
// wipes the Held itself when done.
type Held []byte

// PIN returns a copy of the held PIN.
func (p Held) PIN() ([]byte, error) {
	if len(p) == 0 {
		return nil, fmt.Errorf("%w: no PIN is held", ErrSource)
	}
	return append([]byte(nil), p...), nil
}

// Open parses s in the grammar (Parse) and builds its reader. Errors wrap
// ErrSource and match ErrSyntax; they never quote s.
func Open(s string) (Source, error) {
	spec, err := Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSource, err)
	}
	switch spec.Kind {
	case FromFile:
		return File{Path: spec.Path}, nil
	case FromEnv:
		return Env{Name: spec.Env}, nil
	case FromPrompt:
		return Prompt{Prompt: spec.Prompt}, nil
	}
	return nil, fmt.Errorf("%w: unknown PIN source kind %d", ErrSource, spec.Kind)
}

// wipe overwrites b with zeros.
func wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}
