package token

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/keyward/keyward/pkcs11shim"
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

// ParsePINSource parses a PIN source specification (R-TOK-4) in the one
// PIN-source grammar, pkcs11shim.ParsePINSource, which the URI parser's
// pin-source= uses too, and builds its reader:
//
//	file:/abs/path       the PIN is read from a file (FilePIN)
//	file:///abs/path     the same (RFC 8089, empty authority)
//	/abs/path            the same
//	env:NAME             the PIN is read from environment variable NAME (EnvPIN)
//	prompt               the PIN is typed at the terminal without echo (PromptPIN)
//	prompt:Label text    the same, prompting with "Label text: "
//
// file://HOST/path, relative paths and |program are refused.
//
// The errors returned wrap ErrPINSource (and match
// pkcs11shim.ErrPINSourceSyntax) and deliberately do not quote s: an
// operator who mistakenly passes the PIN itself where a source is expected
// must not find it echoed into logs.
func ParsePINSource(s string) (PINSource, error) {
	spec, err := pkcs11shim.ParsePINSource(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPINSource, err)
	}
	switch spec.Kind {
	case pkcs11shim.PINFromFile:
		return FilePIN{Path: spec.Path}, nil
	case pkcs11shim.PINFromEnv:
		return EnvPIN{Name: spec.Env}, nil
	case pkcs11shim.PINFromPrompt:
		return PromptPIN{Prompt: spec.Prompt}, nil
	}
	return nil, fmt.Errorf("%w: unknown PIN source kind %d", ErrPINSource, spec.Kind)
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
