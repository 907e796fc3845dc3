package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// readPIN reads a PIN from its source. A "prompt" source asks at the
// terminal without echo with the given prompt; for a new PIN (repeat) it
// asks twice.
func readPIN(o *options, src, prompt string, repeat bool) ([]byte, error) {
	if src == "prompt" || strings.HasPrefix(src, "prompt:") {
		p := token.PromptPIN{Prompt: prompt + ": ", In: o.stdin, Out: o.stderr}
		pin, err := p.PIN()
		if err != nil || !repeat {
			return pin, err
		}
		p.Prompt = "Repeat " + prompt + ": "
		again, err := p.PIN()
		defer token.Wipe(again)
		if err != nil {
			token.Wipe(pin)
			return nil, err
		}
		if subtle.ConstantTimeCompare(pin, again) != 1 {
			token.Wipe(pin)
			return nil, fmt.Errorf("%w: the two entries of %s differ", errDeclined, prompt)
		}
		return pin, nil
	}
	s, err := token.ParsePINSource(src)
	if err != nil {
		return nil, err
	}
	return s.PIN()
}

// readLine reads one line from the terminal with echo, byte by byte (no
// buffering that could swallow what is typed at a later PIN prompt).
func readLine(f *os.File) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < 256 {
		n, err := f.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return strings.TrimRight(string(b), "\r"), nil
			}
			b = append(b, one[0])
		}
		if err != nil {
			return "", err
		}
	}
	return "", errors.New("answer too long")
}

// confirm asks the officer to type want before an irreversible step. With
// --yes it returns at once (the caller decides whether that is allowed).
func confirm(o *options, question, want string) error {
	if o.yes {
		return nil
	}
	if !term.IsTerminal(int(o.stdin.Fd())) {
		return fmt.Errorf("%w: %s needs an officer at a terminal (or --yes for a scripted run)", errDeclined, question)
	}
	fmt.Fprintf(o.stderr, "\n%s\nType %q to continue: ", question, want)
	got, err := readLine(o.stdin)
	if err != nil {
		return fmt.Errorf("%w: %v", errDeclined, err)
	}
	if strings.TrimSpace(got) != want {
		return fmt.Errorf("%w: the officer did not type %q", errDeclined, want)
	}
	return nil
}

// openPool opens a pool on the token named by sel, logged in once as the
// user with pin (never retried: a wrong PIN must not be guessed again).
func openPool(ctx context.Context, mod *pkcs11shim.Module, sel pkcs11shim.Selector, pin []byte) (*pkcs11shim.Pool, error) {
	return pkcs11shim.NewPool(ctx, mod, pkcs11shim.PoolConfig{Selector: sel, MaxSessions: 2,
		Authenticate: func(_ context.Context, login pkcs11shim.LoginFunc) error { return login(pin) }})
}

// openRef reads the user PIN of ref and opens a pool on it.
func openRef(ctx context.Context, o *options, mod *pkcs11shim.Module, ref *tokenRef, what string) (*pkcs11shim.Pool, error) {
	pin, err := readPIN(o, ref.UserPIN, fmt.Sprintf("User PIN of token %s (%s)", ref.Label, what), false)
	if err != nil {
		return nil, err
	}
	defer token.Wipe(pin)
	return openPool(ctx, mod, ref.selector(), pin)
}

// progress shows a line with the elapsed time until done is closed (long
// steps such as RSA-4096 generation).
func progress(o *options, what string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		spin := `|/-\`
		for i := 0; ; i++ {
			select {
			case <-done:
				fmt.Fprintf(o.stdout, "\r   %s ... done in %s\n", what, time.Since(start).Round(100*time.Millisecond))
				return
			case <-t.C:
				fmt.Fprintf(o.stdout, "\r   %s %c %ds", what, spin[i%4], int(time.Since(start).Seconds()))
			}
		}
	}()
	return func() { close(done); <-finished }
}

// session is what every token ceremony holds while it runs: the module,
// the recorder, and what to close after the transcript is signed.
type session struct {
	o       *options
	rec     *recorder
	mod     *pkcs11shim.Module
	closers []func()
}

func (s *session) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

func (s *session) openModule(path string) error {
	mod, err := pkcs11shim.OpenModule(path)
	if err != nil {
		return err
	}
	s.mod = mod
	s.closers = append(s.closers, func() { mod.Close() })
	s.rec.step("open module", "%s", path)
	return nil
}

// pool opens a user pool on ref and records the token.
func (s *session) pool(ctx context.Context, ref *tokenRef, role string) (*pkcs11shim.Pool, error) {
	p, err := openRef(ctx, s.o, s.mod, ref, role)
	if err != nil {
		return nil, fmt.Errorf("open token %s: %w", ref.Label, err)
	}
	s.closers = append(s.closers, func() { p.Close() })
	s.rec.token(role, p.Info())
	s.rec.step("open token", "%s: label %s, serial %s, %s %s; logged in as user", role, p.Info().Label, p.Info().Serial, p.Info().Manufacturer, p.Info().Model)
	return p, nil
}

// signer makes the transcript signer the explicit transcript.signer token
// when one is configured (opened at once, so a wrong PIN fails before
// anything is done), else p.
func (s *session) signer(ctx context.Context, cm *common, p *pkcs11shim.Pool) error {
	if cm.Transcript.Signer != nil {
		sp, err := s.pool(ctx, cm.Transcript.Signer, "transcript-signer")
		if err != nil {
			return err
		}
		p = sp
	}
	if p != nil {
		s.rec.signPool, s.rec.signInfo = p, p.Info()
	}
	return nil
}

// openToken opens the ceremony's module and a user pool on ref (recorded
// under role); that token's ceremony-audit key signs the transcript unless
// transcript.signer names another.
func (s *session) openToken(ctx context.Context, cm *common, ref *tokenRef, role string) (*pkcs11shim.Pool, error) {
	if err := s.openModule(cm.Module); err != nil {
		return nil, err
	}
	p, err := s.pool(ctx, ref, role)
	if err != nil {
		return nil, err
	}
	return p, s.signer(ctx, cm, p)
}

// openSigner opens the ceremony's module and transcript.signer, for
// ceremonies whose own token (if any) can't sign.
func (s *session) openSigner(ctx context.Context, cm *common) error {
	if err := s.openModule(cm.Module); err != nil {
		return err
	}
	return s.signer(ctx, cm, nil)
}

// start loads the file, and returns nil session for a dry run (the plan
// was printed).
func start(o *options, name string, cfg validator, cm *common, plan func() []string) (*session, error) {
	raw, err := loadConfig(o.file, cfg, cm)
	if err != nil {
		return nil, err
	}
	if o.dryRun {
		fmt.Fprintf(o.stdout, "ceremony %s: %s is valid. Plan (dry run: no token is opened, nothing is written):\n", name, o.file)
		for i, l := range plan() {
			fmt.Fprintf(o.stdout, "  %d. %s\n", i+1, l)
		}
		fmt.Fprintf(o.stdout, "  %d. write and sign %s/transcript.json and transcript.md\n", len(plan())+1, cm.Transcript.Dir)
		return nil, nil
	}
	fmt.Fprintf(o.stdout, "ceremony %s — officers present: %s\n", name, strings.Join(cm.Officers, ", "))
	s := &session{o: o, rec: newRecorder(name, raw, cm.Officers, o.stdout)}
	s.rec.step("validate ceremony file", "%s (SHA-256 %s)", o.file, s.rec.body.ConfigSHA256)
	return s, nil
}

// finish writes the transcript for the ceremony's outcome err and closes
// everything.
func (s *session) finish(ctx context.Context, cm *common, err error) error {
	defer s.close()
	if err != nil {
		s.rec.step("ceremony failed", "%v", err)
	}
	terr := s.rec.finish(ctx, cm.Transcript.Dir, err)
	if err == nil && terr != nil {
		return fmt.Errorf("transcript: %w", terr)
	}
	if terr != nil {
		fmt.Fprintf(s.o.stderr, "transcript: %v\n", terr)
	}
	return err
}
