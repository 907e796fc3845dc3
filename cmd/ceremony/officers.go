package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// Officers' personal credentials and the token's officer roster (issue 13
// defect 2). An officer key is an ECDSA P-256 private key in a file only
// the officer holds (PKCS#8 PEM, mode 0600 or 0400), preceded by a line
// "Officer: <name>" that openssl ignores. Its public key is enrolled on the
// ceremony's token as a trusted public-key object labelled
// "officer:<name>" (pkcs11shim.Module.EnrolOfficers), which only the SO can
// create — token init (as the SO, from the enrol: list) or officer enrol
// (both SO PIN parts and a quorum of the enrolled officers).

var officerNameRE = regexp.MustCompile(`^[\p{L}\p{N}][\p{L}\p{N} .'_-]{0,62}[\p{L}\p{N}.]$`)

func validOfficerName(n string) bool { return officerNameRE.MatchString(n) }

const officerNameRule = "2 to 64 letters, digits, spaces and . ' _ - (starting with a letter or digit)"

// enrolEntry is one officer to enrol: a name and a public key PEM file.
type enrolEntry struct {
	Name      string `yaml:"name"`
	PublicKey string `yaml:"public_key"`

	pub *ecdsa.PublicKey
}

// validEnrol checks an enrol: list: at least min officers, distinct names
// and keys, each an EC P-256 public key PEM; each SO PIN part's officer
// must be among them.
func (c *common) validEnrol(path string, list []enrolEntry, min int, parts []pinPart) error {
	if len(list) < min {
		return cfgErr(path, "required: at least %d officers, each {name: ..., public_key: officer.pub.pem} (made with ceremony officer keygen)", min)
	}
	names, fps := map[string]bool{}, map[string]bool{}
	for i := range list {
		e := &list[i]
		p := fmt.Sprintf("%s[%d]", path, i)
		if !validOfficerName(e.Name) {
			return cfgErr(p+".name", "%s", officerNameRule)
		}
		if names[e.Name] {
			return cfgErr(p+".name", "%q listed twice", e.Name)
		}
		names[e.Name] = true
		if e.PublicKey == "" {
			return cfgErr(p+".public_key", "required: the officer's public key PEM (ceremony officer keygen -pub)")
		}
		e.PublicKey = c.path(e.PublicKey)
		pub, err := readECPublicKey(e.PublicKey)
		if err != nil || pub.Curve != elliptic.P256() {
			return cfgErr(p+".public_key", "%s is not an EC P-256 public key PEM file", e.PublicKey)
		}
		e.pub = pub
		fp, _, _ := fingerprint(pub)
		if fps[fp] {
			return cfgErr(p+".public_key", "the same key is given for two officers")
		}
		fps[fp] = true
	}
	for i, pp := range parts {
		if !names[pp.Officer] {
			return cfgErr(fmt.Sprintf("so_pin[%d].officer", i), "%q holds an SO PIN part and must be among the officers in %s", pp.Officer, path)
		}
	}
	return nil
}

// --- officer keys ----------------------------------------------------------------

type officerKey struct {
	name  string
	priv  *ecdsa.PrivateKey // a key file's; nil for a key on a token
	fp    string
	sign  func(digest []byte) ([]byte, error) // ASN.1 ECDSA over a SHA-256 digest
	close func()
}

const officerKeyPreamble = "Officer: "

// readOfficerKey reads an officer key file, refusing one that others can
// read or write.
func readOfficerKey(path string) (*officerKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s has mode %04o: an officer key must be readable by its officer only; run chmod 600 %s (and keep it where only you can reach it)", path, perm, path)
	}
	raw, err := readSmall(path, 16<<10)
	if err != nil {
		return nil, err
	}
	var name string
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "-----BEGIN") {
			break
		}
		if n, ok := strings.CutPrefix(strings.TrimSpace(line), officerKeyPreamble); ok {
			name = strings.TrimSpace(n)
		}
	}
	blk, _ := pem.Decode(raw)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s is not an officer key file (PKCS#8 PEM made by ceremony officer keygen)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	priv, ok := k.(*ecdsa.PrivateKey)
	if err != nil || !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s does not hold an EC P-256 private key", path)
	}
	if !validOfficerName(name) {
		return nil, fmt.Errorf("%s has no %q line before the key naming its officer (%s)", path, officerKeyPreamble+"NAME", officerNameRule)
	}
	fp, _, err := fingerprint(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	return &officerKey{name: name, priv: priv, fp: fp, close: func() {},
		sign: func(d []byte) ([]byte, error) { return ecdsa.SignASN1(rand.Reader, priv, d) }}, nil
}

const officerKeygenUsage = `ceremony officer keygen -name "Alice Wong" -out alice.key -pub alice.pub.pem
       ceremony officer keygen -name "Alice Wong" -key 'pkcs11:token=alice-usb;object=officer-approval?module-path=/usr/lib/...' -pub alice.pub.pem`

func officerKeygenCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ceremony officer keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "the officer's name, as it will be enrolled on the token")
	out := fs.String("out", "", "the private key file to create (mode 0600; never overwritten): keep it where only you can reach it")
	pub := fs.String("pub", "", "the public key PEM to create, for enrolment (token init enrol:, officer enrol)")
	keyURI := fs.String("key", "", "instead of -out: generate the key on your own USB key or smart card, a pkcs11: URI with object= and module-path= (PIN asked, or pin-source=)")
	pinGuard := fs.String("pin-guard", officerGuardDefault(), "with -key: the file (bbolt) counting your token's PIN attempts; six wrong PINs lock it (R-TOK-5)")
	fs.Usage = func() {
		fmt.Fprintf(stdout, "%s\n\nMakes an officer's personal approval key: ECDSA P-256, PKCS#8 PEM, readable by you only.\nGive the public key file to the officers who enrol you; keep the key file to yourself.\n\nFlags:\n", officerKeygenUsage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *name == "" || (*out == "") == (*keyURI == "") || *pub == "" || fs.NArg() != 0 || (*keyURI != "" && !isTokenKey(*keyURI)) {
		fmt.Fprintf(stderr, "usage: %s\n", officerKeygenUsage)
		return exitUsage
	}
	if !validOfficerName(*name) {
		fmt.Fprintf(stderr, "ceremony officer keygen: -name: %s\n", officerNameRule)
		return exitUsage
	}
	for _, p := range []string{*out, *pub} {
		if p == "" {
			continue
		}
		if err := mustNotExist(p, p); err != nil {
			fmt.Fprintf(stderr, "ceremony officer keygen: %v\n", err)
			return exitUsage
		}
	}
	if *keyURI != "" {
		ec, err := tokenOfficerKeygen(context.Background(), *keyURI, stdOptions(&options{stdout: stdout, stderr: stderr, officerGuard: *pinGuard}))
		var fp string
		var pubPEM []byte
		if err == nil {
			fp, pubPEM, err = fingerprint(ec)
		}
		if err == nil {
			err = writeExcl(*pub, pubPEM, 0o644)
		}
		if err != nil {
			fmt.Fprintf(stderr, "ceremony officer keygen: %v\n", err)
			return exitFailed
		}
		fmt.Fprintf(stdout, "officer key for %s generated on your token (not extractable); public key written to %s\npublic key SHA-256: %s\n(read it out at enrolment; the officers compare it with the one the ceremony prints)\n", *name, *pub, fp)
		return exitOK
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fmt.Fprintf(stderr, "ceremony officer keygen: %v\n", err)
		return exitFailed
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		fmt.Fprintf(stderr, "ceremony officer keygen: %v\n", err)
		return exitFailed
	}
	keyFile := append([]byte("Keyward ceremony officer key. Keep it to yourself; never copy it to a shared place.\n"+officerKeyPreamble+*name+"\n"),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...)
	clear(der)
	fp, pubPEM, err := fingerprint(&priv.PublicKey)
	if err == nil {
		err = writeExcl(*out, keyFile, 0o600)
	}
	clear(keyFile)
	if err == nil {
		err = writeExcl(*pub, pubPEM, 0o644)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ceremony officer keygen: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "officer key for %s written to %s (mode 0600) and public key to %s\npublic key SHA-256: %s\n(read it out at enrolment; the officers compare it with the one the ceremony prints)\n", *name, *out, *pub, fp)
	return exitOK
}

// --- officer enrol ------------------------------------------------------------------

type officerEnrolConfig struct {
	common   `yaml:",inline"`
	soTarget `yaml:",inline"`
	// Enrol: the officers to add; each approves with the key being added.
	Enrol []enrolEntry `yaml:"enrol"`
}

func (c *officerEnrolConfig) validate() error {
	if err := c.common.validate(true); err != nil {
		return err
	}
	if err := c.needSigner(); err != nil {
		return err
	}
	if err := c.soTarget.validate(&c.common); err != nil {
		return err
	}
	return c.validEnrol("enrol", c.Enrol, 1, nil)
}

func (c *officerEnrolConfig) approvalTarget() approvalTarget {
	return approvalTarget{token: c.Token.Label, sel: c.selector(), parts: c.SOPIN, enrol: c.Enrol, quorum: c.quorum()}
}

func runOfficerEnrol(ctx context.Context, o *options) error {
	var c officerEnrolConfig
	s, err := start(o, "officer enrol", &c, &c.common, func() []string {
		var add []string
		for _, e := range c.Enrol {
			add = append(add, e.Name)
		}
		return []string{
			fmt.Sprintf("read the trusted officer roster of token %s; check the approvals (a quorum of enrolled officers, both SO PIN part holders, each officer being added)", c.Token.Label),
			fmt.Sprintf("read the two SO PIN parts (%s)", partOfficers(c.SOPIN)),
			fmt.Sprintf("as the SO, create trusted public-key objects officer:<name> for %s", strings.Join(add, ", ")),
			"read the roster again and check the new officers are on it",
		}
	})
	if s == nil || err != nil {
		return err
	}
	return s.finish(ctx, &c.common, s.officerEnrol(ctx, &c))
}

func (s *session) officerEnrol(ctx context.Context, c *officerEnrolConfig) error {
	if err := s.openModule(c.Module); err != nil {
		return err
	}
	admin, _, err := s.adminToken(c.selector(), "roster")
	if err != nil {
		return err
	}
	so, err := readParts(s.o, c.SOPIN, "SO PIN", false)
	if err != nil {
		return err
	}
	defer token.Wipe(so)
	s.rec.step("dual control", "SO PIN parts entered by %s", partOfficers(c.SOPIN))
	if err := s.enrol(ctx, admin, so, c.Enrol, partOfficers(c.SOPIN)); err != nil {
		return err
	}
	return s.signer(ctx, &c.common, nil)
}

// enrol writes officers into the roster as the SO, reads the roster back
// and checks them.
func (s *session) enrol(ctx context.Context, admin *token.Admin, so []byte, list []enrolEntry, by string) error {
	var officers []pkcs11shim.Officer
	for _, e := range list {
		officers = append(officers, pkcs11shim.Officer{Name: e.Name, Public: e.pub})
	}
	if err := admin.EnrolOfficers(so, officers, by); err != nil {
		return fmt.Errorf("enrol officers: %w", err)
	}
	roster, err := admin.TrustedOfficers()
	if err != nil {
		return err
	}
	for _, e := range list {
		ok := false
		for _, r := range roster {
			ok = ok || (r.Name == e.Name && r.Public.Equal(e.pub))
		}
		fp, _, _ := fingerprint(e.pub)
		if !ok {
			return fmt.Errorf("%w: officer %s is not on the token's trusted roster after enrolment", errVerify, e.Name)
		}
		s.rec.key(keyRecord{Label: pkcs11shim.OfficerLabelPrefix + e.Name, Type: "officer public key (trusted, public, not modifiable)", PublicSHA: fp, Note: "enrolled by the SO"})
		s.rec.step("enrol "+e.Name, "trusted public-key object %s%s created by the SO; key SHA-256 %s", pkcs11shim.OfficerLabelPrefix, e.Name, fp)
	}
	var all []string
	for _, r := range roster {
		all = append(all, r.Name)
	}
	s.rec.step("officer roster", "the token's trusted roster now: %s", strings.Join(all, ", "))
	return nil
}

const exampleOfficerEnrol = `module: /usr/lib/softhsm/libsofthsm2.so
officers: [Alice Wong, Bob Lee]
transcript:
  dir: ./out/enrol-carol
  signer: {label: bank-hsm, user_pin: prompt}
pin_guard: /var/lib/keyward/keysvc.db
token: {label: bank-hsm}
so_pin:                 # both parts; both holders approve
  - {officer: Alice Wong, pin: prompt}
  - {officer: Bob Lee, pin: prompt}
enrol:                  # each new officer approves with the key being enrolled
  - {name: Carol King, public_key: ./officers/carol.pub.pem}
# Run: ceremony approve officer enrol -f enrol.yaml -key alice.key -out alice.approval (Bob, Carol likewise), then
#      ceremony officer enrol -f enrol.yaml --approval alice.approval --approval bob.approval --approval carol.approval
`

func enrolNames(list []enrolEntry) string {
	var n []string
	for _, e := range list {
		n = append(n, e.Name)
	}
	return strings.Join(n, ", ")
}
