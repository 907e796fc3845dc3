// Command ceremony is the security officers' key-ceremony tool (R-CER-1,
// R-CER-2, R-TOK-8, R-AV-3, R-AV-4): token initialisation, key generation, M-of-N
// backup and restore, the replication key that copies keysvc's hsm keys
// between its tokens, unlock under dual control, emergency zeroize, key
// rotation and scheduled destruction through keysvc, and audit-chain checks.
//
// Each ceremony reads one strict YAML file, validates all of it (and refuses
// outputs that exist) before any token is opened, runs its steps straight
// through, checks its own work, and leaves a signed transcript.
//
// # Exit codes
//
//	0  the ceremony (or verification) succeeded
//	1  the ceremony failed (token, PIN, network or file error)
//	2  usage or configuration error: nothing was done
//	3  an officer declined a confirmation, or none could be asked (no terminal and no --yes),
//	   or a sensitive ceremony lacks valid approvals from a quorum of enrolled officers
//	4  verification failed (transcript verify, audit verify, restore check)
//
// PINs come from pin sources only (file:/abs/path, env:NAME, prompt), never
// from the command line.
//
// # PIN guard
//
// Every login of every ceremony — the user PIN of each token it opens, the
// SO PIN of unlock, of backup (the trusted KEK), of replication-key (the
// trusted replication key) and of token init (C_InitPIN, and C_InitToken over a
// token already initialised, which checks the SO PIN) — goes through
// Keyward's PIN guard (package token, R-TOK-5), counted in the file the
// ceremony file's pin_guard names: keysvc's own <data_dir>/keysvc.db, under
// the counter names keysvc uses (token manufacturer/model/serial and user
// type). A wrong PIN typed in a ceremony counts toward the same six as
// keysvc's; a token locked there is refused without C_Login, before its PIN
// is asked for. The file must exist (token init creates it on a host where
// keysvc has not run yet). It is opened for each count and closed again;
// while keysvc runs it holds the file, and a ceremony then stops before
// reading any PIN, telling the officer to stop keysvc: it could not count,
// so it tries no PIN. rotate and schedule-destroy, which need keysvc
// running, are run from the officers' workstation, whose pin_guard is its
// own file.
//
// # Dual control
//
// SoftHSM (like most PKCS#11 tokens) has one SO PIN, so dual control is
// modelled by splitting it: token init may take the SO PIN in two parts held
// by two different officers (the SO PIN is part 1 followed by part 2), and
// unlock, backup and zeroize demand both parts from two different officers
// named in the file (backup: only the SO can make the CKA_TRUSTED KEK that
// keys generated with backup: true may be wrapped under; zeroize is
// C_InitToken, which checks the SO PIN). Ceremony keys are CKA_DESTROYABLE
// false, so a user-PIN holder cannot destroy them one by one either.
// The token itself enforces it: neither officer alone can log in as the SO.
// Approval codes checked against hashes in the YAML were rejected: whoever
// edits the file could replace the hashes. Backups are M-of-N (Shamir) and
// name at least two officers.
//
// # Quorum approval
//
// Every officer has a personal ECDSA P-256 key (ceremony officer keygen: a
// PKCS#8 file only they can read). The ceremony token's roster is its
// trusted public-key objects labelled officer:<name>: public (read with no
// login), not modifiable, not copyable, and CKA_TRUSTED, which only the SO
// can set — token init writes them from its enrol: list, officer enrol adds
// more; a user-PIN holder can create officer: objects but not trusted ones.
// token init, keygen, backup, restore, unlock, zeroize, replication-key and officer enrol run
// only with --approval files from at least two (quorum: may raise it)
// distinct enrolled officers, each made by ceremony approve over the exact
// bytes of the ceremony file (config SHA-256), unexpired (24 h at most),
// and unused: the ceremony reads the roster, checks the approvals and
// records their nonces in pin_guard before any PIN is read, and otherwise
// exits 3 having done nothing. Holders of SO PIN parts must be among the
// approvers; token init and officer enrol also need the approval of each
// officer being enrolled, with the key being enrolled. The transcript
// embeds the approvals and the officers' keys as read from the roster;
// transcript verify checks and lists them. The free-text officers: list is
// kept for the transcript but authorises nothing.
//
// # Limitations
//
//   - The backup KEK exists in this process's memory while it is split and
//     rebuilt (unavoidable with software Shamir); it is wiped after use and
//     is only ever in the token as a session object.
//   - Shares are read from files (a custodian types a paper share into a
//     file); hashicorp/vault/shamir shuffles x coordinates with math/rand,
//     which only orders the public x coordinates.
//   - Unlock clears the lockout in keysvc's PIN guard (pin_guard); keysvc
//     must be stopped (bbolt allows one process) and logs in again on
//     restart.
//   - A user-PIN holder can destroy roster objects (they are destroyable,
//     so that zeroize can empty the token): that blocks sensitive
//     ceremonies until the officers enrol again (both SO PIN parts) but
//     grants nothing.
//   - The ceremony counts with the largest limit, six; a keysvc configured
//     with pin_guard.limit below six treats the token as locked at its own
//     limit, a ceremony only at six.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

const (
	exitOK       = 0
	exitFailed   = 1
	exitUsage    = 2
	exitDeclined = 3
	exitVerify   = 4
)

// errDeclined marks a refused or impossible confirmation (exit code 3).
var errDeclined = errors.New("not confirmed")

// errUsage marks a command-line error (exit code 2).
var errUsage = errors.New("usage")

type ceremonyFunc func(ctx context.Context, o *options) error

type subcommand struct {
	name    string
	summary string
	example string
	run     ceremonyFunc
}

var subcommands = []subcommand{
	{"token init", "initialise a token: label, SO PIN (one or two officers' parts), user PIN; creates the ceremony-audit key",
		exampleInit, runInit},
	{"keygen", "generate keys in a token; export public keys as PEM; self-signed certificates where asked",
		exampleKeygen, runKeygen},
	{"backup", "wrap keys under a fresh trusted, wrap-only backup KEK the SO creates (both SO PIN parts), split M-of-N among custodians",
		exampleBackup, runBackup},
	{"restore", "rebuild the backup KEK from M share files and unwrap the keys into another token (DR site)",
		exampleRestore, runRestore},
	{"unlock", "set a new user PIN with the SO PIN under dual control (two officers' PIN parts)",
		exampleUnlock, runUnlock},
	{"zeroize", "emergency: list the keys no backup holds, then re-initialise the token (C_InitToken) with both SO PIN parts",
		exampleZeroize, runZeroize},
	{"replication-key", "generate the key keysvc copies hsm keys between its tokens under (SO, both PIN parts; M-of-N shares), or install it into another token from the shares",
		exampleReplicationKey, runReplicationKey},
	{"officer enrol", "add officers to a token's trusted roster (SO PIN parts and a quorum of the enrolled officers)",
		exampleOfficerEnrol, runOfficerEnrol},
	{"officer retire", "remove officers from a token's trusted roster (SO PIN parts and a quorum of the officers who remain)",
		exampleOfficerRetire, runOfficerRetire},
	{"rotate", "rotate keys through keysvc's admin API",
		exampleRotate, runRotate},
	{"schedule-destroy", "schedule the destruction of key versions through keysvc's admin API",
		exampleScheduleDestroy, runScheduleDestroy},
	{"kek-rotate", "rotate keysvc's key-encryption keys: start the re-wrap of every wrapped key under the next epoch's KEKs, follow it, record the old KEKs destroyed",
		exampleKEKRotate, runKEKRotate},
	{"audit verify", "verify keysvc's audit chain and signed checkpoints",
		exampleAuditVerify, runAuditVerify},
	{"seal", "seal keysvc's own secrets (token PIN, TLS key) into a file bound to the host TPM, with a recovery passphrase",
		exampleSeal, runSeal},
	{"reseal", "open keysvc's secrets file with the recovery passphrase and seal it to the TPM's current PCRs",
		exampleReseal, runReseal},
}

type options struct {
	file      string
	dryRun    bool
	yes       bool
	approvals approvalFlags   // --approval files (sensitive ceremonies)
	approve   *approveRequest // set by `ceremony approve`: print the plan, sign an approval, run nothing
	// officerGuard is the PIN-attempt counter file of an officer's own
	// token (-pin-guard of approve and officer keygen with a pkcs11: key).
	officerGuard string
	stdout       io.Writer
	stderr       io.Writer
	stdin        *os.File
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	if args[0] == "transcript" {
		return transcriptCmd(args[1:], stdout, stderr)
	}
	if args[0] == "approve" {
		return approveCmd(ctx, args[1:], stdout, stderr)
	}
	if len(args) >= 2 && args[0] == "officer" && args[1] == "keygen" {
		return officerKeygenCmd(args[2:], stdout, stderr)
	}
	var sc *subcommand
	for i := range subcommands {
		words := strings.Fields(subcommands[i].name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == subcommands[i].name {
			sc = &subcommands[i]
			args = args[len(words):]
			break
		}
	}
	if sc == nil {
		fmt.Fprintf(stderr, "ceremony: unknown subcommand %q; see ceremony --help\n", args[0])
		return exitUsage
	}
	fs := flag.NewFlagSet("ceremony "+sc.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{stdout: stdout, stderr: stderr, stdin: os.Stdin}
	fs.StringVar(&o.file, "f", "", "the ceremony's YAML file")
	fs.BoolVar(&o.dryRun, "dry-run", false, "validate the file and print the plan; open no token")
	fs.BoolVar(&o.yes, "yes", false, "non-interactive: answer confirmations (zeroize still needs the phrase in the file)")
	fs.Var(&o.approvals, "approval", "an officer's approval file of this ceremony file (repeat: one per officer; sensitive ceremonies need a quorum)")
	fs.Usage = func() {
		fmt.Fprintf(stdout, "ceremony %s -f FILE [--approval FILE]... [--dry-run] [--yes]\n\n%s\n\nFlags:\n", sc.name, sc.summary)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fmt.Fprintf(stdout, "\nExample %s.yaml:\n\n%s\n%s", strings.ReplaceAll(sc.name, " ", "-"), sc.example, exitCodesText)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if o.file == "" || fs.NArg() != 0 {
		fmt.Fprintf(stderr, "ceremony %s: give the ceremony file with -f FILE (and nothing else); see --help\n", sc.name)
		return exitUsage
	}
	err := sc.run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "ceremony %s: %v\n", sc.name, err)
	}
	return exitCode(err)
}

func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errConfig), errors.Is(err, errUsage):
		return exitUsage
	case errors.Is(err, errDeclined), errors.Is(err, errQuorum):
		return exitDeclined
	case errors.Is(err, errVerify):
		return exitVerify
	}
	return exitFailed
}

const exitCodesText = `
Exit codes: 0 done; 1 ceremony failed; 2 usage or configuration error (nothing done);
3 confirmation declined or impossible, or too few valid officer approvals (nothing done); 4 verification failed.
PIN sources: file:/abs/path (mode 0600), env:NAME, or prompt (terminal, no echo). Never PINs on the command line.
`

func usage(w io.Writer) {
	fmt.Fprintln(w, "ceremony — the security officers' key-ceremony tool")
	fmt.Fprintln(w, "\nUsage: ceremony <subcommand> -f ceremony.yaml [--dry-run] [--yes]")
	fmt.Fprintln(w, "       ceremony transcript verify FILE (-pubkey signer.pem | -fingerprint SHA256HEX)")
	fmt.Fprintln(w, "       ceremony officer keygen -name NAME -out officer.key -pub officer.pub.pem")
	fmt.Fprintln(w, "       ceremony approve <subcommand> -f ceremony.yaml -key officer.key|pkcs11:URI [-name NAME] -out officer.approval [-valid 2h] [--yes]")
	fmt.Fprintln(w, "\nSubcommands:")
	for _, sc := range subcommands {
		fmt.Fprintf(w, "  %-18s %s\n", sc.name, sc.summary)
	}
	fmt.Fprintf(w, "  %-18s %s\n", "transcript verify", "check a transcript's hash and signature")
	fmt.Fprintln(w, "\nEach subcommand's --help prints an example YAML file, e.g. ceremony backup --help.")
	fmt.Fprint(w, exitCodesText)
}

func transcriptCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "usage: ceremony transcript verify FILE (-pubkey signer.pem | -fingerprint SHA256HEX)")
		return exitUsage
	}
	fs := flag.NewFlagSet("ceremony transcript verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pubPath := fs.String("pubkey", "", "the signing key's public key PEM to require (written at token init to audit_public_key_out)")
	fpWant := fs.String("fingerprint", "", "or: the SHA-256 (hex) of the signing key's SubjectPublicKeyInfo, as printed at the ceremony")
	fs.Usage = func() {
		fmt.Fprintln(stdout, "ceremony transcript verify FILE (-pubkey signer.pem | -fingerprint SHA256HEX)\n\nChecks transcript.json: the body's SHA-256 and the ECDSA signature by the embedded\nceremony-audit key, which must be the key pinned with -pubkey (the PEM token init wrote\nto audit_public_key_out) or -fingerprint (as printed at the ceremony). One of them is\nrequired: anyone can re-sign a transcript with a key of their own.\n\nExample:\n  ceremony transcript verify out/init/transcript.json -pubkey ceremony-audit.pem")
		fmt.Fprint(stdout, exitCodesText)
	}
	// Accept the flag before or after FILE.
	var file string
	rest := args[1:]
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK
			}
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		if file != "" {
			fmt.Fprintln(stderr, "ceremony transcript verify: one FILE only")
			return exitUsage
		}
		file, rest = fs.Arg(0), fs.Args()[1:]
	}
	if file == "" {
		fmt.Fprintln(stderr, "usage: ceremony transcript verify FILE (-pubkey signer.pem | -fingerprint SHA256HEX)")
		return exitUsage
	}
	if *pubPath == "" && *fpWant == "" {
		fmt.Fprintf(stderr, "ceremony transcript verify: refusing to check %s against the key it carries: %s\n", file, pinHelp)
		return exitUsage
	}
	var want *ecdsa.PublicKey
	if *pubPath != "" {
		var err error
		if want, err = readECPublicKey(*pubPath); err != nil {
			fmt.Fprintf(stderr, "ceremony transcript verify: %v\n", err)
			return exitUsage
		}
	}
	body, err := verifyTranscript(file, want)
	if err == nil && *fpWant != "" {
		err = checkFingerprint(body, *fpWant)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ceremony transcript verify: %s: %v\n", file, err)
		return exitCode(err)
	}
	fmt.Fprintf(stdout, "transcript ok: %s ceremony, %s, %d steps, result %q\nsigned by %s on token %s (serial %s)\nsigner public key SHA-256: %s\n",
		body.Ceremony, body.Started.Format("2006-01-02 15:04:05Z07:00"), len(body.Steps), body.Result,
		body.Signer.Key, body.Signer.Token.Label, body.Signer.Token.Serial, body.Signer.PublicSHA)
	printApprovers(stdout, body)
	return exitOK
}

func readECPublicKey(path string) (*ecdsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ECDSA public key", path)
	}
	return ec, nil
}
