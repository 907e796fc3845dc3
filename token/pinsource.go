package token

import "github.com/keyward/keyward/token/pinsource"

// PIN sources are part of token's API — Config.PIN is one — and are
// defined in token/pinsource, a standard-library leaf with the one
// PIN-source grammar, so that programs that must build without cgo
// (banking) read PINs the same way. These names are token's for them.
type (
	// PINSource yields a PIN on demand; the caller wipes it (see Wipe).
	PINSource = pinsource.Source
	// FilePIN reads the PIN from an owner-only file.
	FilePIN = pinsource.File
	// EnvPIN reads the PIN from an environment variable.
	EnvPIN = pinsource.Env
	// PromptPIN reads the PIN from a terminal without echo.
	PromptPIN = pinsource.Prompt
	// HeldPIN is a PIN already in memory.
	HeldPIN = pinsource.Held
)

// ErrPINSource is wrapped by every error from a PIN source and from
// ParsePINSource (pinsource.ErrSource).
var ErrPINSource = pinsource.ErrSource

// ParsePINSource parses s in the one PIN-source grammar (pinsource.Parse:
// file:/abs/path, file:///abs/path, /abs/path, env:NAME, prompt,
// prompt:Label) and builds its reader; see pinsource.Open.
func ParsePINSource(s string) (PINSource, error) { return pinsource.Open(s) }
