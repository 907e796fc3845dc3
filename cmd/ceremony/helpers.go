package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
	"path/filepath"
)

// readPIN reads a PIN from its source. A "prompt" source asks at the
// terminal without echo with the given prompt; for a new PIN (repeat) it
// asks twice.
func readPIN(o *options, src, prompt string, repeat bool) ([]byte, error) {
	s, err := token.ParsePINSource(src)
	if err != nil {
		return nil, err
	}
	if _, ok := s.(token.PromptPIN); ok {
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

// lazyPIN reads a PIN from its source at the first login only — after the
// guard has checked the token is not locked, so a locked token is refused
// before anyone types a PIN — and holds it for the pool's re-logins.
type lazyPIN struct {
	read func() ([]byte, error)
	mu   sync.Mutex
	held token.HeldPIN
}

func (l *lazyPIN) PIN() ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held == nil {
		pin, err := l.read()
		if err != nil {
			return nil, err
		}
		l.held = pin
	}
	return l.held.PIN()
}

func (l *lazyPIN) wipe() {
	l.mu.Lock()
	defer l.mu.Unlock()
	token.Wipe(l.held)
	l.held = nil
}

// login opens a pool on the token named by sel, logged in as the user
// through the PIN guard (R-TOK-5): counted in pin_guard before C_Login,
// refused without C_Login when the guard (keysvc's or a ceremony's) has the
// PIN locked. A wrong PIN is never retried.
func (s *session) login(ctx context.Context, sel pkcs11shim.Selector, pin token.PINSource) (*pkcs11shim.Pool, error) {
	t, err := token.Open(ctx, token.Config{Kind: token.KindHSM, Module: s.modPath, Label: sel.Label, Serial: sel.Serial,
		PIN: pin, PINGuard: s.pinGuard(), MaxSessions: 2, Logger: quietLog})
	if err != nil {
		s.loginFailed(sel, err)
		return nil, err
	}
	s.closers = append(s.closers, func() { t.Close() })
	return t.Pool(), nil
}

// admin opens the token named by sel without a login, for the guarded SO
// operations of token.Admin (C_InitPIN by the SO).
func (s *session) admin(sel pkcs11shim.Selector) (*token.Admin, error) {
	a, err := token.OpenAdmin(token.Config{Kind: token.KindHSM, Module: s.modPath, Label: sel.Label, Serial: sel.Serial,
		PINGuard: s.pinGuard(), Logger: quietLog})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { a.Close() })
	return a, nil
}

// adminToken opens the token named by sel for the SO's operations (see
// admin) and records it in the transcript under role.
func (s *session) adminToken(sel pkcs11shim.Selector, role string) (*token.Admin, pkcs11shim.TokenInfo, error) {
	admin, err := s.admin(sel)
	if err != nil {
		return nil, pkcs11shim.TokenInfo{}, err
	}
	ti, err := admin.Info()
	if err != nil {
		return nil, ti, err
	}
	s.rec.token(role, ti)
	return admin, ti, nil
}

// pinGuard is where token.Open and OpenAdmin count this ceremony's logins:
// the pin_guard file, opened for each count (token.FileStore).
func (s *session) pinGuard() token.GuardConfig { return token.GuardConfig{Path: s.guardPath} }

// quietLog drops token's operational log lines: the ceremony reports
// every outcome itself, on stderr and in the transcript.
var quietLog = slog.New(slog.DiscardHandler)

// openGuard checks, before any PIN is read, that the pin_guard file can be
// opened — keysvc running on this host holds it — and returns the guard
// every login of the ceremony goes through. The file is opened again for
// each count (token.FileStore), never held.
func openGuard(path string) (*token.Guard, error) {
	st, err := token.OpenBoltStore(path)
	if errors.Is(err, token.ErrStoreBusy) {
		return nil, fmt.Errorf("%w. Every login of a ceremony is counted in keysvc's PIN guard (R-TOK-5), and only one process can open that file: stop keysvc for the ceremony (it logs in again when it starts), or wait for the other ceremony to end, then run it again. Nothing was done", err)
	}
	if err != nil {
		return nil, err
	}
	if err := st.Close(); err != nil {
		return nil, err
	}
	return token.NewGuard(token.FileStore{Path: path}, token.MaxPINAttempts)
}

// openRef opens a user pool on ref, its PIN read from ref's source once the
// guard has let the login through.
func (s *session) openRef(ctx context.Context, ref *tokenRef, what string) (*pkcs11shim.Pool, error) {
	pin := &lazyPIN{read: func() ([]byte, error) {
		return readPIN(s.o, ref.UserPIN, fmt.Sprintf("User PIN of token %s (%s)", ref.Label, what), false)
	}}
	s.closers = append(s.closers, pin.wipe) // after the pool closes: it may log in again until then
	return s.login(ctx, ref.selector(), pin)
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
	modPath string
	guard   *token.Guard // every user and SO login goes through it (R-TOK-5)
	// guardPath is the pin_guard file (absolute) the guard counts in;
	// token.Open builds its own guard over the same file (pinGuard).
	guardPath string
	closers   []func()

	signRef *tokenRef        // the ceremony's own token, which signs unless transcript.signer names another
	failed  map[string]error // logins that failed, by token: never tried again to sign
}

func (s *session) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

func (s *session) openModule(path string) error {
	if s.mod != nil && s.modPath == path {
		return nil // opened already (to read the officer roster)
	}
	mod, err := pkcs11shim.OpenModule(path)
	if err != nil {
		return err
	}
	s.mod, s.modPath = mod, path
	s.closers = append(s.closers, func() { mod.Close() })
	s.rec.step("open module", "%s", path)
	return nil
}

// pool opens a user pool on ref and records the token.
func (s *session) pool(ctx context.Context, ref *tokenRef, role string) (*pkcs11shim.Pool, error) {
	p, err := s.openRef(ctx, ref, role)
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
	s.signRef = ref
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
	cm.lax = o.approve != nil
	raw, err := loadConfig(o.file, cfg, cm)
	if err != nil {
		return nil, err
	}
	q, sensitive := cfg.(quorumed)
	if o.approve != nil {
		return nil, approvePlan(o, name, raw, cm, q, plan)
	}
	if err := checkModule(cm.Module); err != nil { // before transcript.dir is claimed, and in a dry run
		return nil, err
	}
	if o.dryRun {
		fmt.Fprintf(o.stdout, "ceremony %s: %s is valid. Plan (dry run: no token is opened, nothing is written):\n", name, o.file)
		for i, l := range plan() {
			fmt.Fprintf(o.stdout, "  %d. %s\n", i+1, l)
		}
		fmt.Fprintf(o.stdout, "  %d. write and sign %s/transcript.json and transcript.md\n", len(plan())+1, cm.Transcript.Dir)
		if sensitive {
			dryRunApprovals(o, name, q.approvalTarget())
		}
		return nil, nil
	}
	guard, err := openGuard(cm.PINGuard)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.stdout, "ceremony %s — officers present: %s\n", name, strings.Join(cm.Officers, ", "))
	guardPath, err := filepath.Abs(cm.PINGuard)
	if err != nil {
		return nil, err
	}
	s := &session{o: o, rec: newRecorder(name, raw, cm.Officers, o.stdout), guard: guard, guardPath: guardPath}
	s.rec.warn = o.stderr
	s.rec.step("validate ceremony file", "%s (SHA-256 %s)", o.file, s.rec.body.ConfigSHA256)
	s.rec.step("PIN guard", "every login is counted in %s (R-TOK-5)", cm.PINGuard)
	if sensitive {
		// Before any PIN, share or key is read: the officers' quorum.
		if err := s.checkApprovals(name, cm, q.approvalTarget()); err != nil {
			s.close()
			return nil, err
		}
	} else if len(o.approvals) > 0 {
		return nil, fmt.Errorf("%w: ceremony %s takes no --approval", errUsage, name)
	}
	return s, nil
}

// finish writes the transcript for the ceremony's outcome err and closes
// everything.
func (s *session) finish(ctx context.Context, cm *common, err error) error {
	defer s.close()
	if err != nil {
		s.rec.step("ceremony failed", "%v", err)
	}
	if s.rec.signPool == nil {
		s.lateSigner(ctx, cm)
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
