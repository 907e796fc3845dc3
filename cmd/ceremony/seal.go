package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/keysvc/secrets"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/tpm"
)

// seal and reseal: keysvc's own secrets (the token user PIN, the TLS key)
// into a file sealed to the host TPM with a recovery passphrase (issue 8,
// package keysvc/secrets).

type sealConfig struct {
	common `yaml:",inline"`
	// Token is keysvc's token. Its user PIN (token.user_pin) is the PIN
	// sealed: the ceremony logs in with it first, so a mistyped PIN is
	// caught here and not at keysvc's next start. Its ceremony-audit key
	// signs the transcript.
	// Without a token (a file for cmd/banking) no PIN is sealed and
	// transcript.signer signs the transcript.
	Token *tokenRef `yaml:"token"`
	// TPM is the host TPM: /dev/tpmrm0, or tcp:HOST:PORT (swtpm).
	// Empty: the file has only the passphrase slot (hosts without a TPM).
	TPM string `yaml:"tpm"`
	// PCRs bind the TPM slot to the boot state (SHA-256 bank), e.g. [7]
	// (Secure Boot policy). Empty: bound to this TPM only.
	PCRs []int `yaml:"pcrs"`
	// Passphrase is the recovery passphrase's source (prompt: asked twice).
	Passphrase string `yaml:"passphrase"`
	// NoPassphrase accepts a file with a TPM slot only: if the TPM fails or
	// the PCRs change, the file is lost and must be sealed again.
	NoPassphrase bool `yaml:"no_passphrase"`
	// TLSKey is keysvc's TLS private key (PEM) to seal too; shred the
	// clear file after the ceremony.
	TLSKey string `yaml:"tls_key"`
	// Files are further secrets, each read from a file: for cmd/banking
	// keysvc-client-key (PEM) or keysvc-bearer. Shred the clear files
	// after the ceremony.
	Files []sealFile `yaml:"files"`
	// Out is the secrets file to write (the service's secrets.file).
	Out string `yaml:"out"`
}

type sealFile struct {
	Name string `yaml:"name"`
	File string `yaml:"file"`
}

// maxSealedFile bounds a sealed file's size (a PEM key or a token).
const maxSealedFile = 16 << 10

func (c *sealConfig) validate() error {
	if err := c.common.validate(true); err != nil {
		return err
	}
	if c.Token != nil {
		if err := c.Token.validate(&c.common, "token"); err != nil {
			return err
		}
	} else if c.Transcript.Signer == nil {
		return cfgErr("transcript.signer", "required when no token is given: the token whose ceremony-audit key signs the transcript")
	}
	if err := validTPM(c.TPM, c.PCRs); err != nil {
		return err
	}
	seen := map[string]bool{secrets.TokenPIN: true, secrets.TLSKey: true}
	for i := range c.Files {
		f := &c.Files[i]
		p := fmt.Sprintf("files[%d]", i)
		if !validSecretName(f.Name) || seen[f.Name] {
			return cfgErr(p+".name", "lower-case letters, digits and '-', unique, not token-pin or tls-key (those have their own fields), e.g. keysvc-client-key")
		}
		seen[f.Name] = true
		if err := c.input(p+".file", &f.File); err != nil {
			return err
		}
	}
	if c.Token == nil && c.TLSKey == "" && len(c.Files) == 0 {
		return cfgErr("files", "nothing to seal: give token, tls_key or files")
	}
	switch {
	case c.Passphrase == "" && !c.NoPassphrase:
		return cfgErr("passphrase", "required: the recovery passphrase's source (prompt, env:NAME or file:/abs); no_passphrase: true only if losing the TPM may lose the file")
	case c.Passphrase != "" && c.NoPassphrase:
		return cfgErr("no_passphrase", "contradicts passphrase")
	case c.NoPassphrase && c.TPM == "":
		return cfgErr("tpm", "required with no_passphrase: the file needs at least one slot")
	case c.Passphrase != "":
		if err := c.validPINSource("passphrase", c.Passphrase); err != nil {
			return err
		}
	}
	if c.TLSKey != "" {
		if err := c.input("tls_key", &c.TLSKey); err != nil {
			return err
		}
	}
	return c.output("out", &c.Out)
}

type resealConfig struct {
	common `yaml:",inline"`
	// Token's ceremony-audit key signs the transcript.
	Token tokenRef `yaml:"token"`
	TPM   string   `yaml:"tpm"`
	PCRs  []int    `yaml:"pcrs"`
	// File is the secrets file; it is opened with the recovery passphrase
	// and rewritten in place with a new TPM slot.
	File       string `yaml:"file"`
	Passphrase string `yaml:"passphrase"`
}

func (c *resealConfig) validate() error {
	if err := c.common.validate(true); err != nil {
		return err
	}
	if err := c.Token.validate(&c.common, "token"); err != nil {
		return err
	}
	if c.TPM == "" {
		return cfgErr("tpm", "required: the TPM to seal to, e.g. /dev/tpmrm0")
	}
	if err := validTPM(c.TPM, c.PCRs); err != nil {
		return err
	}
	if err := c.validPINSource("passphrase", c.Passphrase); err != nil {
		return err
	}
	return c.input("file", &c.File)
}

func validSecretName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func validTPM(spec string, pcrs []int) error {
	if spec != "" && !strings.HasPrefix(spec, "/") && !strings.HasPrefix(spec, "device:") && !strings.HasPrefix(spec, "tcp:") {
		return cfgErr("tpm", "must be a device path (/dev/tpmrm0) or tcp:HOST:PORT (swtpm)")
	}
	if spec == "" && len(pcrs) > 0 {
		return cfgErr("pcrs", "PCRs need a tpm")
	}
	seen := map[int]bool{}
	for i, p := range pcrs {
		if p < 0 || p > 23 || seen[p] {
			return cfgErr(fmt.Sprintf("pcrs[%d]", i), "must be distinct PCR indices 0..23")
		}
		seen[p] = true
	}
	return nil
}

func runSeal(ctx context.Context, o *options) error {
	var c sealConfig
	s, err := start(o, "seal", &c, &c.common, func() []string {
		var plan, what []string
		if c.Token != nil {
			plan = append(plan, fmt.Sprintf("log in to token %s with the user PIN to be sealed (proves it)", c.Token.Label))
			what = append(what, "the token PIN")
		}
		if c.TPM != "" {
			plan = append(plan, fmt.Sprintf("open the TPM %s; read PCRs %v", c.TPM, c.PCRs))
		}
		if c.TLSKey != "" {
			what = append(what, "the TLS key "+c.TLSKey)
		}
		for _, f := range c.Files {
			what = append(what, f.Name+" from "+f.File)
		}
		slots := "a TPM slot"
		switch {
		case c.TPM == "":
			slots = "a passphrase slot"
		case !c.NoPassphrase:
			slots += " and a passphrase slot (passphrase asked twice)"
		}
		return append(plan, fmt.Sprintf("seal %s into %s with %s; open it again to check", strings.Join(what, ", "), c.Out, slots))
	})
	if s == nil || err != nil {
		return err
	}
	return s.finish(ctx, &c.common, s.seal(ctx, &c))
}

func (s *session) seal(ctx context.Context, c *sealConfig) error {
	if err := s.openModule(c.Module); err != nil {
		return err
	}
	bundle := secrets.Bundle{}
	defer bundle.Wipe()
	if c.Token != nil {
		pin := &lazyPIN{read: func() ([]byte, error) {
			return readPIN(s.o, c.Token.UserPIN, fmt.Sprintf("User PIN of token %s (to be sealed)", c.Token.Label), false)
		}}
		s.closers = append(s.closers, pin.wipe)
		p, err := s.login(ctx, c.Token.selector(), pin)
		if err != nil {
			return fmt.Errorf("open token %s with the PIN to be sealed: %w", c.Token.Label, err)
		}
		if bundle[secrets.TokenPIN], err = pin.PIN(); err != nil {
			return err
		}
		s.rec.token("keysvc-token", p.Info())
		s.rec.step("check the token PIN", "logged in to %s (serial %s) with the PIN to be sealed", p.Info().Label, p.Info().Serial)
		if err := s.signer(ctx, &c.common, p); err != nil {
			return err
		}
	} else if err := s.signer(ctx, &c.common, nil); err != nil {
		return err
	}
	if c.TLSKey != "" {
		key, err := os.ReadFile(c.TLSKey)
		if err != nil {
			return err
		}
		if !strings.Contains(string(key), "PRIVATE KEY-----") {
			clear(key)
			return fmt.Errorf("tls_key %s is not a PEM private key", c.TLSKey)
		}
		bundle[secrets.TLSKey] = key
		s.rec.step("read TLS key", "%s (its clear copy should be shredded after this ceremony)", c.TLSKey)
	}
	for _, f := range c.Files {
		v, err := os.ReadFile(f.File)
		switch {
		case err != nil:
			return err
		case len(v) == 0 || len(v) > maxSealedFile:
			clear(v)
			return fmt.Errorf("files: %s must hold 1 byte to %d KiB", f.File, maxSealedFile>>10)
		}
		bundle[f.Name] = v
		s.rec.step("read "+f.Name, "%s (its clear copy should be shredded after this ceremony)", f.File)
	}
	opts := secrets.Options{PCRs: c.PCRs}
	if c.TPM != "" {
		t, err := s.openTPM(c.TPM, c.PCRs)
		if err != nil {
			return err
		}
		opts.TPM = t
	}
	var pass []byte
	if c.Passphrase != "" {
		var err error
		if pass, err = readPIN(s.o, c.Passphrase, "Recovery passphrase", true); err != nil {
			return err
		}
		defer token.Wipe(pass)
		if len(pass) < secrets.MinPassphrase {
			return fmt.Errorf("the recovery passphrase must have at least %d characters", secrets.MinPassphrase)
		}
		opts.Passphrase = pass
	}
	f, err := secrets.Seal(bundle, opts)
	if err != nil {
		return err
	}
	// Open what was sealed, by every slot, before writing it.
	if err := checkSlots(f, opts.TPM, pass); err != nil {
		return err
	}
	if err := f.Write(c.Out, false); err != nil {
		return err
	}
	s.recordFile("write secrets file", c.Out, f)
	fmt.Fprintf(s.o.stdout, "sealed %s into %s\n", strings.Join(f.Names, ", "), c.Out)
	return nil
}

func runReseal(ctx context.Context, o *options) error {
	var c resealConfig
	s, err := start(o, "reseal", &c, &c.common, func() []string {
		return []string{
			"open token " + c.Token.Label + " (signs the transcript)",
			fmt.Sprintf("open %s with the recovery passphrase", c.File),
			fmt.Sprintf("seal its key to the TPM %s on the current PCRs %v in place of its TPM slot; open it again to check", c.TPM, c.PCRs),
		}
	})
	if s == nil || err != nil {
		return err
	}
	return s.finish(ctx, &c.common, s.reseal(ctx, &c))
}

func (s *session) reseal(ctx context.Context, c *resealConfig) error {
	if _, err := s.openToken(ctx, &c.common, &c.Token, "transcript-signer"); err != nil {
		return err
	}
	f, err := secrets.Read(c.File)
	if err != nil {
		return err
	}
	if f.Slot(secrets.SlotPassphrase) == nil {
		return fmt.Errorf("%s has no passphrase slot: it can't be resealed; seal a new file with `ceremony seal`", c.File)
	}
	s.recordFile("read secrets file", c.File, f)
	t, err := s.openTPM(c.TPM, c.PCRs)
	if err != nil {
		return err
	}
	pass, err := readPIN(s.o, c.Passphrase, "Recovery passphrase", false)
	if err != nil {
		return err
	}
	defer token.Wipe(pass)
	// The passphrase alone opens the file: the old TPM slot is the one
	// that stopped working (or belongs to another TPM).
	u := secrets.Unlocker{Passphrase: func() ([]byte, error) { return slices.Clone(pass), nil }}
	if _, err := f.Reseal(u, t, c.PCRs, time.Now()); err != nil {
		return err
	}
	if err := checkSlots(f, t, pass); err != nil {
		return err
	}
	if err := f.Write(c.File, true); err != nil {
		return err
	}
	s.recordFile("rewrite secrets file", c.File, f)
	fmt.Fprintf(s.o.stdout, "resealed %s to the TPM %s (PCRs %v)\n", c.File, c.TPM, c.PCRs)
	return nil
}

// openTPM opens the TPM and records its PCR values (their SHA-256 only).
func (s *session) openTPM(spec string, pcrs []int) (*tpm.TPM, error) {
	t, err := tpm.Open(spec)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { t.Close() })
	detail := "not bound to PCRs"
	if len(pcrs) > 0 {
		vals, err := t.ReadPCRs(pcrs)
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		for _, i := range pcrs {
			h.Write(vals[i])
		}
		detail = fmt.Sprintf("PCRs %v (SHA-256 bank), their values hash to %x", pcrs, h.Sum(nil))
	}
	s.rec.step("open TPM", "%s; %s", spec, detail)
	return t, nil
}

// checkSlots opens f by each of its slots and compares nothing but
// success: a slot that doesn't open is caught before the file is written.
func checkSlots(f *secrets.File, t *tpm.TPM, pass []byte) error {
	if f.Slot(secrets.SlotTPM) != nil {
		b, _, err := f.Open(secrets.Unlocker{TPM: t})
		if err != nil {
			return fmt.Errorf("%w: the new TPM slot does not open: %v", errVerify, err)
		}
		b.Wipe()
	}
	if f.Slot(secrets.SlotPassphrase) != nil {
		// Without a TPM, Open can only get in by the passphrase slot.
		b, how, err := f.Open(secrets.Unlocker{Passphrase: func() ([]byte, error) { return slices.Clone(pass), nil }})
		if err != nil || how.Slot != secrets.SlotPassphrase {
			return fmt.Errorf("%w: the passphrase slot does not open: %v", errVerify, err)
		}
		b.Wipe()
	}
	return nil
}

// recordFile puts the file's public facts in the transcript: names, slots,
// PCRs and the file's hash — never a value.
func (s *session) recordFile(step, path string, f *secrets.File) {
	var slots []string
	for _, sl := range f.Slots {
		d := sl.Type
		if sl.TPM != nil && len(sl.TPM.PCRs) > 0 {
			d += fmt.Sprintf(" (PCRs %v)", sl.TPM.PCRs)
		}
		if sl.KDF != nil {
			d += fmt.Sprintf(" (%s, %d MiB, %d passes)", sl.KDF.Name, sl.KDF.MemoryKiB/1024, sl.KDF.Time)
		}
		slots = append(slots, d+" sealed "+sl.SealedAt.Format(time.RFC3339))
	}
	if raw, err := os.ReadFile(path); err == nil {
		s.rec.output(path, raw)
	}
	s.rec.step(step, "%s holds %s; slots: %s", path, strings.Join(f.Names, ", "), strings.Join(slots, "; "))
}
