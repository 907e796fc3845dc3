package secrets

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/keyward/keyward/token/pinsource"
	"github.com/keyward/keyward/token/tpm"
)

// OpenPath opens the secrets file at path as a service does at start: the
// TPM slot with t (nil: no TPM), then the passphrase slot with the
// passphrase read from passphraseSource (pinsource syntax:
// prompt, env:NAME, file:/abs; empty: none). A refusal says what the
// operator can do about it (see Hint).
func OpenPath(path string, t *tpm.TPM, passphraseSource string) (*File, Bundle, Opened, error) {
	f, err := Read(path)
	if err != nil {
		return nil, nil, Opened{}, err
	}
	u := Unlocker{TPM: t}
	if passphraseSource != "" {
		ps, err := pinsource.Open(passphraseSource)
		if err != nil {
			return nil, nil, Opened{}, fmt.Errorf("secrets: the recovery passphrase's source: %w", err)
		}
		u.Passphrase = ps.PIN
	}
	b, how, err := f.Open(u)
	if err != nil {
		return nil, nil, how, fmt.Errorf("secrets file %s does not open: %w%s", path, err, Hint(err, passphraseSource != ""))
	}
	return f, b, how, nil
}

// OpenTPM opens the TPM at spec for a service's start (nil for an empty
// spec). When it can't be opened and the passphrase can stand in
// (fallback), it logs a warning and returns nil: the secrets file is then
// opened by its passphrase slot.
func OpenTPM(spec string, fallback bool, log *slog.Logger) (*tpm.TPM, error) {
	if spec == "" {
		return nil, nil
	}
	t, err := tpm.Open(spec)
	if err == nil {
		return t, nil
	}
	if !fallback {
		return nil, fmt.Errorf("tpm %s: %w", spec, err)
	}
	log.Warn("the TPM can't be opened; the secrets file needs the recovery passphrase", "tpm", spec, "err", err)
	return nil, nil
}

// Hint tells the operator what to do about an Open error; "" when there is
// nothing specific.
func Hint(err error, havePassphrase bool) string {
	switch {
	case errors.Is(err, tpm.ErrPCRMismatch):
		if !havePassphrase {
			return " — the boot state (PCRs) changed since sealing: start once with secrets.passphrase set, or reseal with `ceremony reseal`"
		}
		return " — the boot state (PCRs) changed since sealing: reseal with `ceremony reseal`"
	case errors.Is(err, tpm.ErrWrongTPM):
		return " — this file was sealed on another machine's TPM: it can only be opened with the recovery passphrase"
	case errors.Is(err, tpm.ErrLocked):
		return " — the TPM is in dictionary-attack lockout: wait for its recovery time, or clear it with the lockout authorization"
	}
	return ""
}

// Take removes name from b and returns its value (nil when absent): the
// caller owns it from then on, and b.Wipe no longer reaches it.
func (b Bundle) Take(name string) []byte {
	v, ok := b[name]
	if !ok {
		return nil
	}
	delete(b, name)
	return v
}

// LogOpened logs how the file at path opened (names only, never values); a
// passphrase open after a refused TPM slot is a warning to reseal.
func LogOpened(log *slog.Logger, path string, f *File, how Opened) {
	switch {
	case how.Slot == SlotTPM:
		log.Info("secrets unsealed by the TPM", "file", path, "names", f.Names)
	case how.TPMErr != nil:
		log.Warn("secrets opened with the recovery passphrase because the TPM slot did not open; reseal with `ceremony reseal`",
			"file", path, "tpm_err", how.TPMErr.Error())
	default:
		log.Info("secrets opened with the recovery passphrase", "file", path, "names", f.Names)
	}
}
