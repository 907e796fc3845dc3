package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/txformat"
)

// Exit codes; the package documentation lists them for the holder.
const (
	exitSigned   = 0
	exitFailure  = 1
	exitUsage    = 2
	exitRefused  = 3 // the file is not a transaction kwsign can show
	exitDeclined = 4 // the holder did not answer yes, or interrupted
	exitTimeout  = 5
	exitWrongPIN = 6
	exitLocked   = 7
)

// pinBufLen bounds a typed PIN line. Keyward PINs are at most 64
// characters (R-TOK-4); a longer line is refused without a login attempt.
const pinBufLen = 256

// errNoTerminal is why kwsign refuses to run without a person at a
// terminal: a confirmation needs someone who reads the fields (R-DC-1).
var errNoTerminal = errors.New("standard input is not a terminal")

// exitError ends the run with code and a message for the holder.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// exitf's format is a key of texts: the message is in the holder's
// language.
func exitf(code int, format string, args ...any) error {
	return &exitError{code: code, msg: texts.Sprintf(lang, format, args...)}
}

const nothingSigned = "nothing was signed"

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// run is the whole command; it returns the exit code after every deferred
// clean-up (terminal restored, bytes and PIN wiped, token closed) has run.
func run(args []string, stdin, stdout, stderr *os.File) int {
	setLang()
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitUsage
	}
	if err == nil {
		err = sign(o, stdin, stdout, stderr)
	}
	var ee *exitError
	switch {
	case err == nil:
		return exitSigned
	case errors.As(err, &ee):
		fmt.Fprintln(stderr, "kwsign: "+ee.msg)
		return ee.code
	default:
		fmt.Fprintln(stderr, "kwsign: "+tf("%v; %s", err, ns()))
		return exitFailure
	}
}

// options are the parsed flags.
type options struct {
	module    string
	moduleSet bool // -module given explicitly (else a URI's module-path wins)
	token     string
	key       string
	in, out   string
	timeout   time.Duration
	state     string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("kwsign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defModule, _ := token.FindSoftHSM()
	var o options
	fs.StringVar(&o.module, "module", defModule, "PKCS#11 library of the USB key")
	fs.StringVar(&o.token, "token", "", "the USB key: its label, serial:<serial>, label:<label>, or a pkcs11: URI (RFC 7512)")
	fs.StringVar(&o.key, "key", "", "label of the signing key on the USB key (or object= in a -token URI)")
	fs.StringVar(&o.in, "in", "", "transaction file: ISO 20022 pain.001.001.09 XML or keyward.transfer.v1 JSON")
	fs.StringVar(&o.out, "out", "", "write the DER signature to this new file (default: base64 on standard output)")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "time the holder has to confirm and type the PIN")
	fs.StringVar(&o.state, "state", defaultState(), "PIN-attempt counter file (bbolt)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: kwsign -token <usb key> -key <label> -in <transaction file> [-out sig.der] [-timeout 60s]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	fs.Visit(func(f *flag.Flag) { o.moduleSet = o.moduleSet || f.Name == "module" })
	switch {
	case fs.NArg() > 0:
		// Not quoted: a holder who put the PIN on the command line must not
		// see it repeated on screen or in a terminal log.
		return o, exitf(exitUsage, "kwsign takes flags only (%d extra argument(s)); the PIN is asked for at the terminal, never given on the command line", fs.NArg())
	case o.in == "":
		return o, exitf(exitUsage, "-in is required: the transaction file to sign")
	case o.token == "":
		return o, exitf(exitUsage, "-token is required: the USB key's label, serial:<serial> or a pkcs11: URI")
	case o.timeout <= 0:
		return o, exitf(exitUsage, "-timeout must be positive")
	case o.state == "":
		return o, exitf(exitUsage, "-state is required: no user configuration directory to keep the PIN-attempt counter in")
	}
	return o, nil
}

// defaultState is the PIN-guard file under the user's configuration
// directory, or "" when there is none.
func defaultState() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "keyward", "kwsign-pin-guard.db")
}

// tokenConfig turns -module, -token and -key into a token.Config (without
// PIN source and guard) and the key label.
func (o options) tokenConfig() (token.Config, string, error) {
	cfg := token.Config{Kind: token.KindUSBKey, Module: o.module, Logger: slog.New(slog.DiscardHandler)}
	key := o.key
	uriModule := false
	switch {
	case strings.HasPrefix(o.token, "pkcs11:"):
		u, err := pkcs11shim.ParseURI(o.token)
		if err != nil {
			return cfg, "", exitf(exitUsage, "-token: %v", err)
		}
		if u.PINSource != "" {
			return cfg, "", exitf(exitUsage, "-token: remove pin-source from the URI: kwsign always asks for the PIN at the terminal")
		}
		if len(u.ID) > 0 || (u.Type != "" && u.Type != "private") {
			return cfg, "", exitf(exitUsage, "-token: kwsign finds the private key by label (object=); id= and type= other than private are not supported")
		}
		if u.Object != "" {
			if key != "" && key != u.Object {
				return cfg, "", exitf(exitUsage, "conflicting key labels: -key %q, URI object=%q", key, u.Object)
			}
			key = u.Object
		}
		if u.ModulePath != "" && !o.moduleSet {
			cfg.Module = "" // the URI names the library; the built-in default must not conflict with it
		}
		uriModule = u.ModulePath != ""
		cfg.URI = o.token
	case strings.HasPrefix(o.token, "serial:"):
		cfg.Serial = strings.TrimPrefix(o.token, "serial:")
	default:
		cfg.Label = strings.TrimPrefix(o.token, "label:")
	}
	if key == "" {
		return cfg, "", exitf(exitUsage, "-key is required: the label of the signing key on the USB key")
	}
	if cfg.Module == "" && !uriModule {
		_, err := token.FindSoftHSM()
		return cfg, "", exitf(exitUsage, "no PKCS#11 library: give -module (%v)", err)
	}
	return cfg, key, nil
}

// sign runs the steps in order: check → read and recognise → find the USB
// key → show → confirm → PIN → log in → sign → verify → write. Before the
// holder's yes the token is only looked up (no login, no key use), and the
// bytes signed are the ones read once and shown (R-DC-1, R-DC-3, R-DC-4).
func sign(o options, stdin, stdout, stderr *os.File) error {
	cfg, keyLabel, err := o.tokenConfig()
	if err != nil {
		return err
	}
	if err := checkOut(o.out); err != nil {
		return err
	}
	tty, err := openTerminal(stdin, stderr)
	if err != nil {
		return exitf(exitUsage, "%s: run kwsign at a terminal, a confirmation needs a person; %s", txt(err.Error()), ns())
	}
	defer tty.restore()

	// One clock for the whole interaction (R-DC-4); Ctrl-C, a closed
	// terminal or SIGTERM end it early. Either way the deferred wipes run.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	data, err := readTransaction(o.in)
	if err != nil {
		return exitf(exitFailure, "%v; %s", err, ns())
	}
	defer token.Wipe(data) // the pending bytes go, whatever happens (R-DC-4)
	doc, err := txformat.Recognise(data)
	if err != nil {
		return exitf(exitRefused, "refused %q: it is not a transaction kwsign can show (%v); %s", o.in, err, ns())
	}

	store, guard, err := openGuard(o.state)
	if err != nil {
		return err
	}
	defer store.Close()
	cfg.PINGuard = token.GuardConfig{Store: store} // token.Open builds its guard over the same counters
	admin, info, failures, err := findUSBKey(cfg, guard)
	if err != nil {
		return err
	}
	defer admin.Close()

	digest := sha256.Sum256(data)
	show(tty, o, doc, data, digest[:], info, keyLabel, failures, guard.Limit())
	if err := confirm(ctx, tty, o.timeout); err != nil {
		return err
	}
	pin, err := readPIN(ctx, tty)
	if err != nil {
		return err
	}
	defer pin.wipe()
	if err := interrupted(ctx); err != nil { // the answer must come in time, not just start in time
		return err
	}
	cfg.PIN = pin
	sig, err := signDigest(ctx, cfg, info, keyLabel, digest[:], guard)
	if err != nil {
		return err
	}
	return writeSignature(o, stdout, stderr, sig, len(data), digest[:], info, keyLabel)
}

// checkOut refuses, before anything happens, an -out that exists or whose
// directory does not: the signature is written with O_EXCL at the end.
func checkOut(path string) error {
	if path == "" {
		return nil
	}
	if _, err := os.Lstat(path); err == nil {
		return exitf(exitUsage, "%s already exists: kwsign never overwrites a file; %s", path, ns())
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || !st.IsDir() {
		return exitf(exitUsage, "-out: directory %s does not exist; %s", filepath.Dir(path), ns())
	}
	return nil
}

// readTransaction reads the file, at most one byte more than txformat
// accepts (so an oversized file is refused by Recognise, not truncated).
func readTransaction(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, txformat.MaxDocumentSize+1))
	if err != nil {
		token.Wipe(data)
		return nil, err
	}
	return data, nil
}

// openGuard opens the persistent PIN-attempt counter (R-TOK-5): six wrong
// PINs in a row lock the key, across runs.
func openGuard(path string) (*token.BoltStore, *token.Guard, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, exitf(exitFailure, "PIN-attempt counter: %v; %s", err, ns())
	}
	store, err := token.OpenBoltStore(path)
	if err != nil {
		return nil, nil, exitf(exitFailure, "%v (is another kwsign running?); %s", err, ns())
	}
	guard, err := token.NewGuard(store, token.MaxPINAttempts)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	return store, guard, nil
}

// findUSBKey finds the token without logging in and refuses early — before
// anything is shown or a PIN asked for — when it is not a removable device
// or its PIN is locked (R-TOK-5). It returns the guard's failure count.
func findUSBKey(cfg token.Config, guard *token.Guard) (*token.Admin, pkcs11shim.TokenInfo, int, error) {
	var info pkcs11shim.TokenInfo
	admin, err := token.OpenAdmin(cfg)
	if errors.Is(err, pkcs11shim.ErrTokenNotFound) {
		return nil, info, 0, exitf(exitFailure, "USB key %s not found: insert it and run kwsign again; %s", describeSelector(cfg), ns())
	}
	if err != nil {
		return nil, info, 0, exitf(exitFailure, "%v; %s", err, ns())
	}
	fail := func(err error) (*token.Admin, pkcs11shim.TokenInfo, int, error) {
		admin.Close()
		return nil, info, 0, err
	}
	if info, err = admin.Info(); err != nil {
		return fail(exitf(exitFailure, "USB key %s: %v; %s", describeSelector(cfg), err, ns()))
	}
	if !info.Flags.Removable {
		return fail(exitf(exitFailure, "token %q is not a removable device: kwsign signs with a personal USB key, not a server HSM; %s", info.Label, ns()))
	}
	st, err := admin.PINState()
	if err != nil {
		return fail(exitf(exitFailure, "PIN-attempt counter: %v; %s", err, ns()))
	}
	if st.Locked || st.Failures >= guard.Limit() || info.Flags.UserPINLocked {
		return fail(lockedError(info))
	}
	return admin, info, st.Failures, nil
}

func lockedError(info pkcs11shim.TokenInfo) error {
	return exitf(exitLocked, "the PIN of USB key %q (serial %s) is locked after too many wrong PINs; a bank security officer must unlock it; %s",
		info.Label, info.Serial, ns())
}

func describeSelector(cfg token.Config) string {
	switch {
	case cfg.URI != "":
		return fmt.Sprintf("%q", cfg.URI)
	case cfg.Serial != "":
		return tf("with serial %q", cfg.Serial)
	}
	return fmt.Sprintf("%q", cfg.Label)
}

// show writes what the holder is asked to sign (R-DC-2): every line of
// DisplayLines, which txformat has checked for control, bidirectional and
// invisible characters (R-DC-3). Names that come from elsewhere (file,
// token and key labels) are quoted so they cannot spoof the display.
func show(tty *terminal, o options, doc *txformat.Document, data, digest []byte, info pkcs11shim.TokenInfo, keyLabel string, failures, limit int) {
	w := tty.out
	fmt.Fprint(w, tf("\nTransaction to sign: %q, %d bytes, %s\n\n", o.in, len(data), doc.Format))
	for _, l := range doc.DisplayLinesIn(lang) {
		fmt.Fprintf(w, "    %s\n", l)
	}
	fmt.Fprint(w, tf("\nSHA-256 of the file: %s\n", hex.EncodeToString(digest)))
	fmt.Fprint(w, tf("Signing key:         %q on USB key %q (serial %q)\n", keyLabel, info.Label, info.Serial))
	if failures > 0 {
		fmt.Fprint(w, tf("Warning: %d wrong PIN(s) in a row so far; the key locks after %d.\n", failures, limit))
	}
	fmt.Fprintln(w)
}

// confirm asks for an explicit yes (R-DC-1). Anything else, an empty line
// or end of input refuses.
func confirm(ctx context.Context, tty *terminal, timeout time.Duration) error {
	buf := make([]byte, 64)
	prompt := tf("Sign exactly this? Type yes to sign, anything else refuses (%v to answer): ", timeout)
	n, err := tty.readLine(ctx, prompt, true, buf)
	if err := readError(ctx, err); err != nil {
		return err
	}
	if !yes(strings.TrimSpace(string(buf[:n]))) {
		return exitf(exitDeclined, "refused by the holder; %s", ns())
	}
	return nil
}

// heldPIN is the PIN typed once for this run: it serves the user login and
// the context-specific login of the always-authenticate key (the USB key
// is a personal device with one PIN). Each PIN() is a copy the guard wipes.
type heldPIN struct {
	token.HeldPIN
	buf []byte
}

func (p *heldPIN) wipe() { token.Wipe(p.buf) }

// readPIN reads the PIN without echo (R-TOK-4: never argv, never shown).
func readPIN(ctx context.Context, tty *terminal) (*heldPIN, error) {
	buf := make([]byte, pinBufLen)
	n, err := tty.readLine(ctx, tf("USB key PIN (not shown): "), false, buf)
	if err := readError(ctx, err); err != nil {
		token.Wipe(buf)
		return nil, err
	}
	if n == 0 {
		token.Wipe(buf)
		return nil, exitf(exitDeclined, "no PIN entered; %s", ns())
	}
	return &heldPIN{HeldPIN: token.HeldPIN(buf[:n]), buf: buf}, nil
}

// readError maps a terminal read error to the holder's exit.
func readError(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return interrupted(ctx)
	case errors.Is(err, io.EOF):
		return exitf(exitDeclined, "no answer (end of input); %s", ns())
	case errors.Is(err, errLineTooLong):
		return exitf(exitDeclined, "answer too long; %s", ns())
	}
	return exitf(exitFailure, "terminal: %v; %s", err, ns())
}

// interrupted reports a timeout or interruption as the holder's exit.
func interrupted(ctx context.Context) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return exitf(exitTimeout, "timed out; %s", ns())
	case ctx.Err() != nil:
		return exitf(exitDeclined, "interrupted; %s", ns())
	}
	return nil
}

// signDigest logs in (one guarded C_Login with the held PIN), finds the
// key and signs the digest; the always-authenticate key makes the token
// ask for the PIN again (CKU_CONTEXT_SPECIFIC), also guarded (R-TOK-5).
// The signature is verified against the key's public half before it is
// returned. The token is closed on return: one signature per run, and no
// operation is left half-open (R-TOK-3; pkcs11shim closes a session whose
// operation failed).
func signDigest(ctx context.Context, cfg token.Config, info pkcs11shim.TokenInfo, keyLabel string, digest []byte, guard *token.Guard) ([]byte, error) {
	tok, err := token.Open(ctx, cfg)
	if err != nil {
		return nil, pinError(err, cfg, info, guard)
	}
	defer tok.Close()
	pool := tok.Pool()
	k, err := pool.FindKey(ctx, keyLabel)
	if errors.Is(err, pkcs11shim.ErrKeyNotFound) {
		return nil, exitf(exitFailure, "no key labelled %q on this USB key; %s", keyLabel, ns())
	}
	if err != nil {
		return nil, err
	}
	if !k.Type.IsEC() {
		return nil, exitf(exitFailure, "key %q is %v: kwsign signs with ECDSA keys only; %s", keyLabel, k.Type, ns())
	}
	pub, err := pool.PublicKey(ctx, k)
	if err != nil {
		return nil, err
	}
	if err := interrupted(ctx); err != nil {
		return nil, err
	}
	sig, err := pool.Sign(ctx, k, digest, crypto.SHA256, tok.ContextAuth())
	if err != nil {
		return nil, pinError(err, cfg, info, guard)
	}
	ep, ok := pub.(*ecdsa.PublicKey)
	if !ok || !ecdsa.VerifyASN1(ep, digest, sig) {
		return nil, exitf(exitFailure, "the USB key's signature does not verify with its public key; nothing was written")
	}
	return sig, nil
}

// pinError turns the guard's PIN errors into the holder's exits; the
// messages never hold the PIN. The attempts left come from the guard's
// counter, not from the error's text.
func pinError(err error, cfg token.Config, info pkcs11shim.TokenInfo, guard *token.Guard) error {
	switch {
	case errors.Is(err, token.ErrPINLocked) && errors.Is(err, token.ErrPINIncorrect):
		return exitf(exitLocked, "wrong PIN, %d in a row: the USB key is now locked; a bank security officer must unlock it; %s", guard.Limit(), ns())
	case errors.Is(err, token.ErrPINLocked):
		return lockedError(info)
	case errors.Is(err, token.ErrPINIncorrect):
		left := "?"
		if st, serr := guard.State(token.PINID(info, pkcs11shim.UserNormal)); serr == nil {
			left = fmt.Sprint(guard.Limit() - st.Failures)
		}
		return exitf(exitWrongPIN, "wrong PIN: %s attempt(s) left before the USB key locks; %s", left, ns())
	case errors.Is(err, pkcs11shim.ErrTokenNotPresent), errors.Is(err, pkcs11shim.ErrTokenNotFound):
		return exitf(exitFailure, "the USB key %s was removed; %s", describeSelector(cfg), ns())
	}
	return exitf(exitFailure, "%v; %s", err, ns())
}

// writeSignature writes the DER signature to a new -out file (O_EXCL) or
// as base64 to standard output, then the summary to the terminal.
func writeSignature(o options, stdout, stderr io.Writer, sig []byte, n int, digest []byte, info pkcs11shim.TokenInfo, keyLabel string) error {
	fmt.Fprint(stderr, tf("Signed %d bytes (SHA-256 %s) with key %q on USB key %q (serial %q).\n",
		n, hex.EncodeToString(digest), keyLabel, info.Label, info.Serial))
	if o.out == "" {
		fmt.Fprint(stderr, tf("Signature (DER ECDSA, base64):\n"))
		if _, err := fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(sig)); err != nil {
			return exitf(exitFailure, "the transaction was signed but the signature cannot be written: %v", err)
		}
		return nil
	}
	f, err := os.OpenFile(o.out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return exitf(exitFailure, "the transaction was signed but the signature cannot be written: %v", err)
	}
	if _, err := f.Write(sig); err != nil {
		f.Close()
		os.Remove(o.out)
		return exitf(exitFailure, "the transaction was signed but the signature cannot be written: %v", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(o.out)
		return exitf(exitFailure, "the transaction was signed but the signature cannot be written: %v", err)
	}
	fmt.Fprint(stderr, tf("Signature (DER ECDSA) written to %q.\n", o.out))
	return nil
}
