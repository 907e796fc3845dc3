package token

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"
)

// ErrPINSource is wrapped by every error from a PIN source and from
// ParsePINSource, so callers can test for it with errors.Is.
//
// Per requirement R-TOK-4 these errors may name a file path or an
// environment variable but never contain the PIN itself.
var ErrPINSource = errors.New("token: PIN source")

// maxPINFileSize is the largest PIN file FilePIN accepts, in bytes.
const maxPINFileSize = 1024

// defaultPINPrompt is printed by PromptPIN when its Prompt is empty.
const defaultPINPrompt = "PIN: "

// PINSource yields a PIN on demand. The caller wipes the returned slice
// after use (see Wipe).
//
// PIN sources exist so that a PIN is never passed in argv, where any local
// user can read it from the process table (requirement R-TOK-4): a command
// line names where the PIN comes from, not the PIN.
type PINSource interface {
	PIN() ([]byte, error)
}

var (
	_ PINSource = FilePIN{}
	_ PINSource = EnvPIN{}
	_ PINSource = PromptPIN{}
	_ PINSource = HeldPIN(nil)
)

// ParsePINSource parses a PIN source specification (R-TOK-4):
//
//	file:/abs/path       the PIN is read from a file (FilePIN)
//	/abs/path            the same
//	env:NAME             the PIN is read from environment variable NAME (EnvPIN)
//	prompt               the PIN is typed at the terminal without echo (PromptPIN)
//	prompt:Label text    the same, prompting with "Label text: "
//
// File paths must be absolute. NAME must consist of ASCII letters, digits
// and underscores and must not start with a digit. A prompt label must not
// contain control characters.
//
// The errors returned wrap ErrPINSource and deliberately do not quote s:
// an operator who mistakenly passes the PIN itself where a source is
// expected must not find it echoed into logs.
func ParsePINSource(s string) (PINSource, error) {
	switch {
	case s == "":
		return nil, fmt.Errorf("%w: empty PIN source; use file:/abs/path, env:NAME or prompt", ErrPINSource)
	case s == "prompt":
		return PromptPIN{Prompt: defaultPINPrompt}, nil
	case strings.HasPrefix(s, "prompt:"):
		label := strings.TrimSpace(strings.TrimPrefix(s, "prompt:"))
		label = strings.TrimRight(label, ": ")
		if label == "" {
			return nil, fmt.Errorf("%w: empty prompt label; use prompt or prompt:Label text", ErrPINSource)
		}
		for _, r := range label {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				return nil, fmt.Errorf("%w: prompt label must not contain control characters", ErrPINSource)
			}
		}
		return PromptPIN{Prompt: label + ": "}, nil
	case strings.HasPrefix(s, "env:"):
		name := strings.TrimPrefix(s, "env:")
		if !pinEnvNameValid(name) {
			return nil, fmt.Errorf("%w: invalid environment variable name in env: source; use letters, digits and underscores, not starting with a digit", ErrPINSource)
		}
		return EnvPIN{Name: name}, nil
	case strings.HasPrefix(s, "file:"):
		path := strings.TrimPrefix(s, "file:")
		if !filepath.IsAbs(path) {
			return nil, fmt.Errorf("%w: file: source needs an absolute path", ErrPINSource)
		}
		return FilePIN{Path: path}, nil
	case filepath.IsAbs(s):
		return FilePIN{Path: s}, nil
	}
	return nil, fmt.Errorf("%w: unrecognised PIN source; use file:/abs/path, env:NAME or prompt", ErrPINSource)
}

// pinEnvNameValid reports whether name is a portable environment variable name:
// ASCII letters, digits and underscores, not starting with a digit.
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

// FilePIN reads the PIN from the file at Path (R-TOK-4).
//
// The file must be a regular file that is not accessible by group or others
// (mode & 0o077 == 0, e.g. chmod 600), at most 1 KiB long and not empty.
// One trailing "\n" or "\r\n" is removed; any other content, including
// further whitespace, is part of the PIN.
type FilePIN struct {
	Path string
}

// PIN reads the PIN from the file. Errors wrap ErrPINSource and name the
// path but never contain the file's contents.
func (f FilePIN) PIN() ([]byte, error) {
	if f.Path == "" {
		return nil, fmt.Errorf("%w: PIN file path is empty", ErrPINSource)
	}
	file, err := os.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot open PIN file: %w", ErrPINSource, err)
	}
	defer file.Close()

	// Stat the open file, not the path, so the checks apply to the file
	// actually read.
	info, err := file.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: cannot stat PIN file %q: %w", ErrPINSource, f.Path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: PIN file %q is not a regular file", ErrPINSource, f.Path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: PIN file %q is accessible by group or others (mode %04o); run: chmod 600 %q",
			ErrPINSource, f.Path, uint32(perm), f.Path)
	}
	if info.Size() > maxPINFileSize {
		return nil, fmt.Errorf("%w: PIN file %q is larger than %d bytes", ErrPINSource, f.Path, maxPINFileSize)
	}

	// Read into a fixed buffer (one byte more than allowed, to notice a file
	// that grew since Stat) so that no partial copies are left behind by
	// slice growth, and wipe it once the PIN has been copied out.
	buf := make([]byte, maxPINFileSize+1)
	defer Wipe(buf)
	n, err := io.ReadFull(file, buf)
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// The file is shorter than buf, as expected.
	case err != nil:
		return nil, fmt.Errorf("%w: cannot read PIN file %q: %w", ErrPINSource, f.Path, err)
	default:
		return nil, fmt.Errorf("%w: PIN file %q is larger than %d bytes", ErrPINSource, f.Path, maxPINFileSize)
	}

	data := buf[:n]
	if len(data) > 0 && data[len(data)-1] == '\n' {
		data = data[:len(data)-1]
		if len(data) > 0 && data[len(data)-1] == '\r' {
			data = data[:len(data)-1]
		}
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: PIN file %q is empty", ErrPINSource, f.Path)
	}
	pin := make([]byte, len(data))
	copy(pin, data)
	return pin, nil
}

// EnvPIN reads the PIN from the environment variable Name (R-TOK-4).
//
// The process environment holds the PIN as an immutable string that cannot
// be wiped; prefer FilePIN or PromptPIN where possible.
type EnvPIN struct {
	Name string
}

// PIN returns the value of the environment variable. It refuses a variable
// that is unset or empty. Errors wrap ErrPINSource and name the variable but
// never contain its value.
func (e EnvPIN) PIN() ([]byte, error) {
	if e.Name == "" {
		return nil, fmt.Errorf("%w: environment variable name is empty", ErrPINSource)
	}
	v, ok := os.LookupEnv(e.Name)
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: environment variable %q is not set", ErrPINSource, e.Name)
	case v == "":
		return nil, fmt.Errorf("%w: environment variable %q is empty", ErrPINSource, e.Name)
	}
	return []byte(v), nil
}

// PromptPIN reads the PIN from a terminal with echo turned off (R-TOK-4).
//
// Prompt is written to Out before reading ("PIN: " when empty). In is the
// terminal to read from (os.Stdin when nil) and Out is where the prompt goes
// (os.Stderr when nil). The PIN itself is never written to Out.
type PromptPIN struct {
	Prompt string
	In     *os.File
	Out    io.Writer
}

// PIN prompts for and reads the PIN. It fails, without writing the prompt,
// when In is not a terminal, and refuses an empty PIN. Errors wrap
// ErrPINSource.
func (p PromptPIN) PIN() ([]byte, error) {
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
		prompt = defaultPINPrompt
	}

	fd := int(in.Fd())
	if !term.IsTerminal(fd) {
		return nil, fmt.Errorf("%w: no terminal: use a pin-source file or environment variable", ErrPINSource)
	}
	if _, err := io.WriteString(out, prompt); err != nil {
		return nil, fmt.Errorf("%w: cannot write PIN prompt: %w", ErrPINSource, err)
	}
	pin, err := term.ReadPassword(fd)
	// Echo is off, so the user's Enter did not move to a new line.
	_, _ = io.WriteString(out, "\n")
	if err != nil {
		Wipe(pin)
		return nil, fmt.Errorf("%w: cannot read PIN from terminal: %w", ErrPINSource, err)
	}
	if len(pin) == 0 {
		return nil, fmt.Errorf("%w: no PIN entered", ErrPINSource)
	}
	return pin, nil
}

// HeldPIN is a PIN already in memory: typed once for a run, or unsealed
// from a secrets file. Each PIN() is a copy the caller wipes; the holder
// wipes the HeldPIN itself when done.
type HeldPIN []byte

// PIN returns a copy of the held PIN.
func (p HeldPIN) PIN() ([]byte, error) {
	if len(p) == 0 {
		return nil, fmt.Errorf("%w: no PIN is held", ErrPINSource)
	}
	return append([]byte(nil), p...), nil
}
