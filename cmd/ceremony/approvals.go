package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// Quorum approval (issue 13 defect 2, R-AV-3). A sensitive ceremony (token
// init, keygen, backup, restore, unlock, zeroize, officer enrol) runs only
// with approvals from at least `quorum` (2, or more where the file says so)
// distinct officers enrolled in the target token's trusted roster, each
// over this ceremony's exact file: an approval is a JSON statement the
// officer signs with their own key (ceremony approve), naming the
// ceremony, the SHA-256 of the file's bytes (the transcript's
// config_sha256), a random nonce and an expiry. The ceremony checks them
// after opening the module, reading only the public roster, before any PIN
// is read, and consumes each nonce in the pin_guard file: an approval
// works once. The signed transcript embeds each approval and the officer's
// public key as read from the roster, so `transcript verify` shows, and
// checks, who authorised the run.

const (
	approvalFormat      = "keyward.ceremony.approval.v1"
	defaultQuorum       = 2
	maxApprovalValidity = 24 * time.Hour
	approvalClockSkew   = 5 * time.Minute
	maxApprovalSize     = 64 << 10
)

// errQuorum marks a ceremony refused for want of valid approvals (exit
// code 3, like a declined confirmation): nothing was done, no PIN read.
var errQuorum = errors.New("not approved")

// approvalPayload is what an officer signs.
type approvalPayload struct {
	Format           string    `json:"format"`
	Officer          string    `json:"officer"`
	OfficerKeySHA256 string    `json:"officer_key_sha256"` // SHA-256 of the officer's SubjectPublicKeyInfo DER
	Ceremony         string    `json:"ceremony"`
	ConfigSHA256     string    `json:"config_sha256"` // SHA-256 of the ceremony file's exact bytes
	Token            string    `json:"token"`         // the token label the file names (information)
	Nonce            string    `json:"nonce"`         // 16 random bytes, hex: one use
	Created          time.Time `json:"created"`
	NotAfter         time.Time `json:"not_after"`
}

// approvalFile is the file `ceremony approve` writes: the payload's compact
// JSON, its SHA-256, and an ECDSA P-256 (ASN.1) signature over that hash.
type approvalFile struct {
	Payload       json.RawMessage `json:"payload"`
	PayloadSHA256 string          `json:"payload_sha256"`
	Signature     string          `json:"signature"`
}

// approvalRecord is one approval in the transcript body.
type approvalRecord struct {
	Approval            json.RawMessage `json:"approval"` // the approval file as given
	OfficerPublicKeyPEM string          `json:"officer_public_key_pem"`
	OfficerKeySHA256    string          `json:"officer_key_sha256"`
	KeySource           string          `json:"key_source"` // "token roster" or "enrolment file"
}

// parseApproval decodes an approval strictly and checks its hash (not the
// signature). It returns the payload and the hash the signature covers.
func parseApproval(raw []byte) (*approvalPayload, [32]byte, []byte, error) {
	var af approvalFile
	var h [32]byte
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&af); err != nil {
		return nil, h, nil, fmt.Errorf("not a ceremony approval file")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, af.Payload); err != nil {
		return nil, h, nil, fmt.Errorf("payload is not JSON")
	}
	h = sha256.Sum256(compact.Bytes())
	if hex.EncodeToString(h[:]) != af.PayloadSHA256 {
		return nil, h, nil, fmt.Errorf("the payload's SHA-256 does not match payload_sha256: the approval was changed")
	}
	var p approvalPayload
	pd := json.NewDecoder(bytes.NewReader(compact.Bytes()))
	pd.DisallowUnknownFields()
	if err := pd.Decode(&p); err != nil || p.Format != approvalFormat {
		return nil, h, nil, fmt.Errorf("payload is not a %s approval", approvalFormat)
	}
	sig, err := base64.StdEncoding.DecodeString(af.Signature)
	if err != nil || len(sig) == 0 {
		return nil, h, nil, fmt.Errorf("no signature")
	}
	return &p, h, sig, nil
}

// --- what a ceremony needs approved -------------------------------------------

// quorumed is a sensitive ceremony's configuration.
type quorumed interface{ approvalTarget() approvalTarget }

type approvalTarget struct {
	token string              // the token label, as the file names it
	sel   pkcs11shim.Selector // whose roster is read
	// parts: the holders of SO PIN parts must be among the approvers.
	parts []pinPart
	// enrol: officers being enrolled; each must approve with the key being
	// enrolled (proof of possession). For token init they are the roster.
	enrol []enrolEntry
	init  bool // token init: no roster yet, the enrolled officers are the quorum
	// exclude: officers whose approval does not count (being retired).
	exclude []string
	quorum  int
}

func (c *common) quorum() int {
	if c.Quorum > defaultQuorum {
		return c.Quorum
	}
	return defaultQuorum
}

func (c *common) validQuorum() error {
	if c.Quorum != 0 && (c.Quorum < defaultQuorum || c.Quorum > 16) {
		return cfgErr("quorum", "must be %d to 16 distinct enrolled officers (a file may raise the quorum, never lower it)", defaultQuorum)
	}
	return nil
}

func (c *initConfig) approvalTarget() approvalTarget {
	return approvalTarget{token: c.Token.Label, parts: c.SOPIN, enrol: c.Enrol, init: true, quorum: max(c.quorum(), len(c.Enrol))}
}

func (c *keygenConfig) approvalTarget() approvalTarget {
	return approvalTarget{token: c.Token.Label, sel: c.Token.selector(), quorum: c.quorum()}
}

func (c *backupConfig) approvalTarget() approvalTarget {
	return approvalTarget{token: c.Token.Label, sel: c.Token.selector(), parts: c.SOPIN, quorum: c.quorum()}
}

func (c *restoreConfig) approvalTarget() approvalTarget {
	return approvalTarget{token: c.Token.Label, sel: c.Token.selector(), quorum: c.quorum()}
}

func (c *zeroizeConfig) approvalTarget() approvalTarget {
	return approvalTarget{token: c.Token.Label, sel: c.Token.selector(), parts: c.SOPIN, quorum: c.quorum()}
}

func (c *unlockConfig) approvalTarget() approvalTarget {
	return approvalTarget{token: c.Token.Label, sel: c.selector(), parts: c.SOPIN, quorum: c.quorum()}
}

// --- checking approvals -----------------------------------------------------------

// rosterEntry is an officer key approvals are checked against.
type rosterEntry struct {
	name     string
	pub      *ecdsa.PublicKey
	fp       string
	pem      []byte
	source   string // "token roster" or "enrolment file"
	newcomer bool   // being enrolled by this ceremony
}

func newRosterEntry(name string, pub *ecdsa.PublicKey, source string, newcomer bool) (rosterEntry, error) {
	fp, pemBytes, err := fingerprint(pub)
	return rosterEntry{name: name, pub: pub, fp: fp, pem: pemBytes, source: source, newcomer: newcomer}, err
}

func names(rs []rosterEntry) string {
	var n []string
	for _, r := range rs {
		n = append(n, r.name)
	}
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, ", ")
}

// checkApprovals reads the target token's trusted roster (opening the
// module, no login), checks every --approval file, requires the quorum
// and the SO PIN part holders, consumes the nonces in pin_guard and
// records the approvals. Nothing else is opened and no PIN is read.
func (s *session) checkApprovals(name string, cm *common, t approvalTarget) error {
	var roster []rosterEntry
	if !t.init {
		if err := s.openModule(cm.Module); err != nil {
			return err
		}
		officers, err := s.mod.TrustedOfficers(t.sel)
		if err != nil {
			return fmt.Errorf("read the officer roster of token %s: %w", t.token, err)
		}
		for _, o := range officers {
			e, err := newRosterEntry(o.Name, o.Public, "token roster", false)
			if err != nil {
				return err
			}
			roster = append(roster, e)
		}
		s.rec.step("officer roster", "token %s: %d trusted officer keys (%s), read without a login", t.token, len(roster), names(roster))
	}
	bootstrap := len(roster) == 0
	if bootstrap && len(t.enrol) == 0 {
		return fmt.Errorf("%w: token %s has no enrolled officers, so no one can approve a %s. Enrol at least two with `ceremony officer enrol` (both SO PIN parts; the officers being enrolled approve). Nothing was done", errQuorum, t.token, name)
	}
	var newcomers []rosterEntry
	for _, e := range t.enrol {
		re, err := newRosterEntry(e.Name, e.pub, "enrolment file", true)
		if err != nil {
			return err
		}
		newcomers = append(newcomers, re)
	}
	// Officers counted toward the quorum: the roster; for token init and
	// the first enrolment on a token with no roster, the officers being
	// enrolled.
	voters := roster
	if bootstrap {
		voters = newcomers
	}
	voters = slices.DeleteFunc(slices.Clone(voters), func(r rosterEntry) bool { return slices.Contains(t.exclude, r.name) })
	if len(s.o.approvals) == 0 {
		return fmt.Errorf("%w: a %s needs approvals from at least %d enrolled officers of token %s (%s): each runs `ceremony approve %s -f %s -key OFFICER.key -out OFFICER.approval`, then pass --approval OFFICER.approval for each. Nothing was done, no PIN was read",
			errQuorum, name, t.quorum, t.token, names(voters), name, s.o.file)
	}
	now := time.Now()
	store := token.FileStore{Path: cm.PINGuard}
	approved := map[string]rosterEntry{} // officer name -> key that approved
	var records []approvalRecord
	var uses []token.ApprovalUse
	var problems []string
	nonces := map[string]bool{}
	for _, path := range s.o.approvals {
		p, e, raw, err := checkOne(path, name, s.rec.body.ConfigSHA256, now, append(append([]rosterEntry{}, roster...), newcomers...))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", path, err))
			continue
		}
		if u, err := store.UsedApproval(p.Nonce); err != nil {
			return err
		} else if u != nil {
			problems = append(problems, fmt.Sprintf("%s: %s's approval was already used (by a %s ceremony at %s); an approval works once", path, p.Officer, u.Ceremony, u.UsedAt.Format(time.RFC3339)))
			continue
		}
		if nonces[p.Nonce] {
			problems = append(problems, fmt.Sprintf("%s: the same approval given twice (counted once)", path))
			continue
		}
		nonces[p.Nonce] = true
		if _, dup := approved[e.name]; dup {
			problems = append(problems, fmt.Sprintf("%s: a second approval by %s (each officer counts once)", path, e.name))
			continue
		}
		approved[e.name] = e
		var compact bytes.Buffer
		_ = json.Compact(&compact, raw)
		records = append(records, approvalRecord{Approval: compact.Bytes(), OfficerPublicKeyPEM: string(e.pem), OfficerKeySHA256: e.fp, KeySource: e.source})
		uses = append(uses, token.ApprovalUse{Nonce: p.Nonce, Officer: p.Officer, Ceremony: name, ConfigSHA256: p.ConfigSHA256, UsedAt: now.UTC()})
	}
	var missing []string
	counted := 0
	for _, v := range voters {
		if _, ok := approved[v.name]; ok {
			counted++
		}
	}
	if counted < t.quorum {
		var not []string
		for _, v := range voters {
			if _, ok := approved[v.name]; !ok {
				not = append(not, v.name)
			}
		}
		what := "enrolled officers"
		if len(t.exclude) > 0 {
			what = "enrolled officers who remain (" + strings.Join(t.exclude, ", ") + " cannot approve their own removal)"
		}
		missing = append(missing, fmt.Sprintf("%d of the %d distinct %s needed have approved (not yet: %s)", counted, t.quorum, what, strings.Join(not, ", ")))
	}
	for _, p := range t.parts {
		if _, ok := approved[p.Officer]; !ok {
			missing = append(missing, fmt.Sprintf("%s holds an SO PIN part and must approve too", p.Officer))
		}
	}
	for _, n := range newcomers {
		if _, ok := approved[n.name]; !ok {
			missing = append(missing, fmt.Sprintf("%s is being enrolled and must approve with the key being enrolled (%s)", n.name, n.fp))
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%v: the %s of token %s is refused: %s", errQuorum, name, t.token, strings.Join(missing, "; "))
		if len(approved) > 0 {
			var who []string
			for n := range approved {
				who = append(who, n)
			}
			sort.Strings(who)
			msg += ". Valid approvals from: " + strings.Join(who, ", ")
		}
		if len(problems) > 0 {
			msg += ". Not counted: " + strings.Join(problems, "; ")
		}
		return fmt.Errorf("%w%s. Nothing was done, no PIN was read, no approval was used", errQuorum, strings.TrimPrefix(msg, errQuorum.Error()))
	}
	if err := store.ConsumeApprovals(uses); err != nil {
		return fmt.Errorf("%w: %v. Nothing was done", errQuorum, err)
	}
	var who []string
	for _, r := range records {
		p, _, _, _ := parseApproval(r.Approval)
		who = append(who, fmt.Sprintf("%s (key SHA-256 %s, approved %s)", p.Officer, r.OfficerKeySHA256, p.Created.Format(time.RFC3339)))
	}
	s.rec.body.Approvals = records
	s.rec.step("approvals", "%d of %d required officers approved this file (config SHA-256 %s): %s; approvals used up in %s",
		len(records), t.quorum, s.rec.body.ConfigSHA256, strings.Join(who, "; "), cm.PINGuard)
	for _, p := range problems {
		s.rec.step("approval not counted", "%s", p)
	}
	return nil
}

// checkOne reads and checks one approval file against the candidate keys.
func checkOne(path, ceremony, configSHA string, now time.Time, keys []rosterEntry) (*approvalPayload, rosterEntry, []byte, error) {
	raw, err := readSmall(path, maxApprovalSize)
	if err != nil {
		return nil, rosterEntry{}, nil, err
	}
	p, h, sig, err := parseApproval(raw)
	if err != nil {
		return nil, rosterEntry{}, nil, err
	}
	var key *rosterEntry
	for i := range keys {
		if keys[i].fp == p.OfficerKeySHA256 {
			key = &keys[i]
			break
		}
	}
	switch {
	case key == nil:
		return nil, rosterEntry{}, nil, fmt.Errorf("signed by a key (SHA-256 %s, claiming to be %s) that is not in the token's trusted officer roster", p.OfficerKeySHA256, p.Officer)
	case !ecdsa.VerifyASN1(key.pub, h[:], sig):
		return nil, rosterEntry{}, nil, fmt.Errorf("the signature does not verify with %s's enrolled key", key.name)
	case key.name != p.Officer:
		return nil, rosterEntry{}, nil, fmt.Errorf("names officer %q but the key is enrolled as %q", p.Officer, key.name)
	case p.Ceremony != ceremony:
		return nil, rosterEntry{}, nil, fmt.Errorf("approves a %s ceremony, not a %s", p.Ceremony, ceremony)
	case p.ConfigSHA256 != configSHA:
		return nil, rosterEntry{}, nil, fmt.Errorf("approves another file (config SHA-256 %s; this file is %s): approve the file exactly as it will run", p.ConfigSHA256, configSHA)
	case now.After(p.NotAfter):
		return nil, rosterEntry{}, nil, fmt.Errorf("expired at %s", p.NotAfter.Format(time.RFC3339))
	case p.Created.After(now.Add(approvalClockSkew)) || p.NotAfter.Sub(p.Created) > maxApprovalValidity:
		return nil, rosterEntry{}, nil, fmt.Errorf("created in the future or valid for more than %s", maxApprovalValidity)
	}
	nb, err := hex.DecodeString(p.Nonce)
	if err != nil || len(nb) != 16 {
		return nil, rosterEntry{}, nil, fmt.Errorf("bad nonce")
	}
	return p, *key, raw, nil
}

func readSmall(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}

// --- transcript --------------------------------------------------------------------

// verifyBodyApprovals checks every approval embedded in a transcript body:
// its signature by the recorded officer key, and that it approves this
// ceremony and this file. It returns who approved.
func verifyBodyApprovals(b *transcriptBody) ([]string, error) {
	var who []string
	seen := map[string]bool{}
	for i, r := range b.Approvals {
		p, h, sig, err := parseApproval(r.Approval)
		if err != nil {
			return nil, fmt.Errorf("%w: approvals[%d]: %v", errVerify, i, err)
		}
		blk, _ := pem.Decode([]byte(r.OfficerPublicKeyPEM))
		if blk == nil {
			return nil, fmt.Errorf("%w: approvals[%d]: officer public key is not PEM", errVerify, i)
		}
		pk, err := x509.ParsePKIXPublicKey(blk.Bytes)
		pub, ok := pk.(*ecdsa.PublicKey)
		if err != nil || !ok {
			return nil, fmt.Errorf("%w: approvals[%d]: officer public key is not ECDSA", errVerify, i)
		}
		fp, _, _ := fingerprint(pub)
		switch {
		case fp != r.OfficerKeySHA256 || fp != p.OfficerKeySHA256:
			return nil, fmt.Errorf("%w: approvals[%d]: the officer key's fingerprint does not match", errVerify, i)
		case !ecdsa.VerifyASN1(pub, h[:], sig):
			return nil, fmt.Errorf("%w: approvals[%d]: %s's signature does not verify", errVerify, i, p.Officer)
		case p.ConfigSHA256 != b.ConfigSHA256:
			return nil, fmt.Errorf("%w: approvals[%d]: %s approved another file (config SHA-256 %s, transcript %s)", errVerify, i, p.Officer, p.ConfigSHA256, b.ConfigSHA256)
		case p.Ceremony != b.Ceremony:
			return nil, fmt.Errorf("%w: approvals[%d]: %s approved a %s ceremony, the transcript is of a %s", errVerify, i, p.Officer, p.Ceremony, b.Ceremony)
		case seen[p.Officer]:
			return nil, fmt.Errorf("%w: approvals[%d]: %s counted twice", errVerify, i, p.Officer)
		}
		seen[p.Officer] = true
		who = append(who, fmt.Sprintf("%s (key SHA-256 %s, from the %s)", p.Officer, fp, r.KeySource))
	}
	return who, nil
}

func approvalsMarkdown(s *strings.Builder, b *transcriptBody) {
	if len(b.Approvals) == 0 {
		return
	}
	s.WriteString("\n## Approvals\n\nThe run was authorised by these officers' signed approvals of this exact file (checked against the token's trusted officer roster; each approval used once):\n\n| Officer | Key SHA-256 | Approved | Valid until | Nonce |\n|---|---|---|---|---|\n")
	for _, r := range b.Approvals {
		p, _, _, err := parseApproval(r.Approval)
		if err != nil {
			continue
		}
		fmt.Fprintf(s, "| %s | `%s` | %s | %s | %s |\n", p.Officer, r.OfficerKeySHA256, p.Created.Format(time.RFC3339), p.NotAfter.Format(time.RFC3339), p.Nonce)
	}
}

// --- ceremony approve ------------------------------------------------------------

type approvalFlags []string

func (a *approvalFlags) String() string { return strings.Join(*a, ",") }
func (a *approvalFlags) Set(v string) error {
	if v == "" {
		return errors.New("empty file name")
	}
	*a = append(*a, v)
	return nil
}

type approveRequest struct {
	name    string
	keyPath string
	out     string
	valid   time.Duration
	officer *officerKey
}

const approveUsage = "ceremony approve <subcommand> -f ceremony.yaml -key officer.key|pkcs11:URI [-name NAME] -out officer.approval [-valid 2h] [--yes]"

// approveCmd: ceremony approve backup -f backup.yaml -key alice.key -out alice.approval
func approveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var sc *subcommand
	for i := range subcommands {
		words := strings.Fields(subcommands[i].name)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			sc = &subcommands[i]
			args = args[len(words):]
			break
		}
	}
	if sc == nil {
		fmt.Fprintf(stderr, "usage: %s\n(subcommand: the ceremony the file is for: token init, keygen, backup, restore, unlock, zeroize, officer enrol or officer retire)\n", approveUsage)
		return exitUsage
	}
	o := &options{stdout: stdout, stderr: stderr, stdin: os.Stdin, approve: &approveRequest{}}
	fs := flag.NewFlagSet("ceremony approve "+sc.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.file, "f", "", "the ceremony file to approve, exactly as it will run")
	fs.StringVar(&o.approve.keyPath, "key", "", "your officer key file (ceremony officer keygen; mode 0600 or 0400), or a pkcs11: URI of the key on your own token")
	fs.StringVar(&o.approve.name, "name", "", "your officer name (required with a pkcs11: key; a key file names its officer)")
	fs.StringVar(&o.approve.out, "out", "", "where to write the approval (never overwritten)")
	fs.StringVar(&o.officerGuard, "pin-guard", officerGuardDefault(), "with a pkcs11: key: the file (bbolt) counting your token's PIN attempts; six wrong PINs lock it (R-TOK-5)")
	fs.DurationVar(&o.approve.valid, "valid", 2*time.Hour, "how long the approval may be used (at most 24h)")
	fs.BoolVar(&o.yes, "yes", false, "non-interactive: approve without typing \"approve\" (scripts)")
	fs.Usage = func() {
		fmt.Fprintf(stdout, "%s\n\nPrints the ceremony's plan (as --dry-run does), asks you to type \"approve\", and writes an\napproval signed with your officer key over the file's SHA-256. No ceremony token or PIN is needed\n(only your own token's PIN when your key is on one).\nThe ceremony is then run with --approval FILE, one per officer; each approval works once.\n\nFlags:\n", approveUsage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fmt.Fprint(stdout, exitCodesText)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if o.file == "" || o.approve.keyPath == "" || o.approve.out == "" || fs.NArg() != 0 {
		fmt.Fprintf(stderr, "usage: %s\n", approveUsage)
		return exitUsage
	}
	if o.approve.valid <= 0 || o.approve.valid > maxApprovalValidity {
		fmt.Fprintf(stderr, "ceremony approve: -valid must be between 1m and %s\n", maxApprovalValidity)
		return exitUsage
	}
	if err := mustNotExist("-out", o.approve.out); err != nil {
		fmt.Fprintf(stderr, "ceremony approve: %v\n", err)
		return exitUsage
	}
	var k *officerKey
	var err error
	if isTokenKey(o.approve.keyPath) {
		k, err = readTokenOfficerKey(ctx, o.approve.keyPath, o.approve.name, o)
	} else if k, err = readOfficerKey(o.approve.keyPath); err == nil && o.approve.name != "" && o.approve.name != k.name {
		err = fmt.Errorf("-name %q: the key file %s belongs to officer %q", o.approve.name, o.approve.keyPath, k.name)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ceremony approve: %v\n", err)
		return exitUsage
	}
	defer k.close()
	o.approve.officer = k
	err = sc.run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "ceremony approve %s: %v\n", sc.name, err)
	}
	return exitCode(err)
}

// approvePlan is start() for `ceremony approve`: it shows the plan, asks,
// signs and writes the approval.
func approvePlan(o *options, name string, raw []byte, cm *common, q quorumed, plan func() []string) error {
	if q == nil {
		return fmt.Errorf("%w: a %s needs no officers' approval (sensitive ceremonies: token init, keygen, backup, restore, replication-key, unlock, zeroize, officer enrol, officer retire)", errUsage, name)
	}
	t := q.approvalTarget()
	h := sha256.Sum256(raw)
	configSHA := hex.EncodeToString(h[:])
	k := o.approve.officer
	fmt.Fprintf(o.stdout, "ceremony %s: %s\nconfig SHA-256 %s\nPlan you are approving:\n", name, o.file, configSHA)
	steps := plan()
	for i, l := range steps {
		fmt.Fprintf(o.stdout, "  %d. %s\n", i+1, l)
	}
	fmt.Fprintf(o.stdout, "  %d. write and sign %s/transcript.json and transcript.md\n", len(steps)+1, cm.Transcript.Dir)
	for _, e := range t.enrol {
		fp, _, _ := fingerprint(e.pub)
		fmt.Fprintf(o.stdout, "  enrols officer %s, key SHA-256 %s\n", e.Name, fp)
	}
	fmt.Fprintf(o.stdout, "\nApproving as officer %s (key SHA-256 %s), valid for %s, once.\n", k.name, k.fp, o.approve.valid)
	if err := confirm(o, fmt.Sprintf("Approve this %s of token %s (config SHA-256 %s)?", name, t.token, configSHA), "approve"); err != nil {
		return err
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	p := approvalPayload{Format: approvalFormat, Officer: k.name, OfficerKeySHA256: k.fp, Ceremony: name, ConfigSHA256: configSHA,
		Token: t.token, Nonce: hex.EncodeToString(nonce), Created: now, NotAfter: now.Add(o.approve.valid)}
	payload, err := json.Marshal(p)
	if err != nil {
		return err
	}
	ph := sha256.Sum256(payload)
	sig, err := k.sign(ph[:])
	if err != nil {
		return fmt.Errorf("sign the approval with your officer key: %w", err)
	}
	out, err := json.MarshalIndent(approvalFile{Payload: payload, PayloadSHA256: hex.EncodeToString(ph[:]), Signature: base64.StdEncoding.EncodeToString(sig)}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeExcl(o.approve.out, append(out, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "approval written to %s (officer %s, nonce %s, valid until %s)\n", o.approve.out, k.name, p.Nonce, p.NotAfter.Format(time.RFC3339))
	return nil
}

// printApprovers lists a verified transcript's approvers (transcript verify).
func printApprovers(w io.Writer, b *transcriptBody) {
	who, err := verifyBodyApprovals(b)
	switch {
	case err != nil:
		fmt.Fprintf(w, "approvals: %v\n", err)
	case len(who) == 0:
		fmt.Fprintln(w, "approved by: no officer approvals recorded")
	default:
		fmt.Fprintf(w, "approved by %d officers (signatures checked, each over this file's config SHA-256):\n", len(who))
		for _, x := range who {
			fmt.Fprintf(w, "  %s\n", x)
		}
	}
}

// dryRunApprovals says, in a dry run, whose approvals the run will need.
func dryRunApprovals(o *options, name string, t approvalTarget) {
	who := fmt.Sprintf("at least %d distinct officers enrolled on token %s", t.quorum, t.token)
	if t.init {
		who = "every officer in enrol: (" + enrolNames(t.enrol) + ")"
	}
	fmt.Fprintf(o.stdout, "Needs --approval files from %s", who)
	if len(t.parts) > 0 {
		fmt.Fprintf(o.stdout, ", including the SO PIN part holders (%s)", partOfficers(t.parts))
	}
	if len(t.enrol) > 0 && !t.init {
		fmt.Fprintf(o.stdout, ", and from each officer being enrolled (%s)", enrolNames(t.enrol))
	}
	fmt.Fprintf(o.stdout, ":\n  ceremony approve %s -f %s -key OFFICER.key -out OFFICER.approval\n", name, o.file)
}
