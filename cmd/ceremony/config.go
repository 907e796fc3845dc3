package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/cmd/internal/strictyaml"
	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// One strict YAML file per ceremony. Every section has validate(), whose
// errors name the YAML path to fix; everything, including "this output
// already exists", is checked before any token is opened.

// errConfig marks a configuration error (exit code 2).
var errConfig = errors.New("configuration")

func cfgErr(path, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", errConfig, path, fmt.Sprintf(format, a...))
}

// common is the part every ceremony file has.
type common struct {
	// Module is the PKCS#11 library (absolute path).
	Module string `yaml:"module"`
	// Officers are the security officers present, by name; they appear in
	// the transcript.
	Officers []string `yaml:"officers"`
	// Transcript says where the transcript goes and which token signs it.
	Transcript transcriptConfig `yaml:"transcript"`
	// PINGuard is the PIN guard's counter file (R-TOK-5) that every login
	// of the ceremony, user and SO, is counted in: keysvc's own
	// <data_dir>/keysvc.db on keysvc's host, so that a wrong PIN typed in a
	// ceremony counts toward the same limit as keysvc's and a token
	// keysvc's guard has locked is refused here too. It must exist (a
	// mistyped path would count in a file nobody else reads), except for
	// token init, the first ceremony on a host, which creates it.
	PINGuard string `yaml:"pin_guard"`
	// Quorum is how many distinct enrolled officers must approve a
	// sensitive ceremony; 2 when not given, never less.
	Quorum int `yaml:"quorum"`

	dir         string // directory of the YAML file: relative paths are resolved against it
	createGuard bool   // token init may create the pin_guard file
	lax         bool   // ceremony approve: the approver's machine need not have the module, guard, inputs
}

type transcriptConfig struct {
	// Dir receives transcript.json and transcript.md (created if needed;
	// the two files must not exist).
	Dir string `yaml:"dir"`
	// Signer is the token whose ceremony-audit key signs the transcript.
	// Defaults to the ceremony's token; required for ceremonies that have
	// none (rotate, schedule-destroy, audit verify) or destroy it (zeroize).
	Signer *tokenRef `yaml:"signer"`
}

// tokenRef names an initialised token and the user PIN's source.
type tokenRef struct {
	Label   string `yaml:"label"`
	Serial  string `yaml:"serial"`
	UserPIN string `yaml:"user_pin"` // file:/abs, env:NAME or prompt
}

// pinPart is one officer's part of a PIN (dual control).
type pinPart struct {
	Officer string `yaml:"officer"`
	PIN     string `yaml:"pin"`
}

func (c *common) validate(needModule bool) error {
	if needModule {
		if c.Module == "" {
			return cfgErr("module", "required: the PKCS#11 library path, e.g. /usr/lib/softhsm/libsofthsm2.so")
		}
		if !filepath.IsAbs(c.Module) {
			return cfgErr("module", "must be an absolute path")
		}
		if _, err := os.Stat(c.Module); err != nil && !c.lax {
			return cfgErr("module", "%s not found (for SoftHSM2: apt-get install -y softhsm2)", c.Module)
		}
	}
	if len(c.Officers) == 0 {
		return cfgErr("officers", "required: the names of the officers present")
	}
	seen := map[string]bool{}
	for i, o := range c.Officers {
		if strings.TrimSpace(o) == "" {
			return cfgErr(fmt.Sprintf("officers[%d]", i), "empty name")
		}
		if seen[o] {
			return cfgErr(fmt.Sprintf("officers[%d]", i), "%q listed twice", o)
		}
		seen[o] = true
	}
	if c.Transcript.Dir == "" {
		return cfgErr("transcript.dir", "required: where transcript.json and transcript.md are written")
	}
	c.Transcript.Dir = c.path(c.Transcript.Dir)
	for _, f := range []string{"transcript.json", "transcript.md"} {
		if err := mustNotExist("transcript.dir", filepath.Join(c.Transcript.Dir, f)); err != nil && !c.lax {
			return err
		}
	}
	if c.Transcript.Signer != nil {
		if err := c.Transcript.Signer.validate(c, "transcript.signer"); err != nil {
			return err
		}
	}
	if err := c.validQuorum(); err != nil {
		return err
	}
	return c.validGuard()
}

// validGuard checks pin_guard: given, and an existing file (token init:
// in an existing directory).
func (c *common) validGuard() error {
	if c.PINGuard == "" {
		return cfgErr("pin_guard", "required: the PIN guard file every login is counted in — keysvc's <data_dir>/keysvc.db, e.g. /var/lib/keyward/keysvc.db")
	}
	c.PINGuard = c.path(c.PINGuard)
	if c.lax {
		return nil
	}
	if c.createGuard {
		return validDir("pin_guard", c.PINGuard)
	}
	if st, err := os.Stat(c.PINGuard); err != nil || !st.Mode().IsRegular() {
		return cfgErr("pin_guard", "%s is not an existing file: name keysvc's <data_dir>/keysvc.db (token init creates it on a host where keysvc has not run yet)", c.PINGuard)
	}
	return nil
}

// needSigner: ceremonies with no token of their own that could sign
// need transcript.signer.
func (c *common) needSigner() error {
	if c.Transcript.Signer == nil {
		return cfgErr("transcript.signer", "required: the token whose ceremony-audit key signs the transcript")
	}
	return nil
}

func (c *common) officer(name string) bool {
	for _, o := range c.Officers {
		if o == name {
			return true
		}
	}
	return false
}

// path resolves p against the YAML file's directory.
func (c *common) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

func (t *tokenRef) validate(c *common, path string) error {
	if t.Label == "" && t.Serial == "" {
		return cfgErr(path+".label", "required: the token's label (or serial)")
	}
	if len(t.Label) > 32 {
		return cfgErr(path+".label", "longer than 32 characters")
	}
	return c.validPINSource(path+".user_pin", t.UserPIN)
}

func (t *tokenRef) selector() pkcs11shim.Selector {
	return pkcs11shim.Selector{Label: t.Label, Serial: t.Serial}
}

// validPINSource checks a PIN source: its form always; that a PIN file
// exists and is owner-only too, except for ceremony approve, which runs on
// the approving officer's own machine, where the PIN files are not.
func (c *common) validPINSource(path, s string) error {
	if s == "" {
		return cfgErr(path, "required: file:/abs/path, env:NAME or prompt (never the PIN itself)")
	}
	if _, err := token.ParsePINSource(s); err != nil {
		return cfgErr(path, "%v", err)
	}
	if c.lax {
		return nil
	}
	return checkPINFile(path, s)
}

func mustNotExist(path, file string) error {
	if _, err := os.Lstat(file); err == nil {
		return cfgErr(path, "%s already exists; outputs are never overwritten", file)
	} else if !errors.Is(err, os.ErrNotExist) {
		return cfgErr(path, "%v", err)
	}
	return nil
}

func validDir(path, file string) error {
	d := filepath.Dir(file)
	st, err := os.Stat(d)
	if err != nil || !st.IsDir() {
		return cfgErr(path, "directory %s does not exist", d)
	}
	return nil
}

// output checks an output path: given, not existing, in an existing directory.
// validCustodians checks an M-of-N share split (backup, replication-key):
// 2 to 255 custodians with distinct valid names and share files that do
// not exist yet, and a threshold between 2 and their number.
func validCustodians(c *common, custodians []custodian, threshold int) error {
	n := len(custodians)
	if n < 2 || n > 255 {
		return cfgErr("custodians", "needs 2 to 255 custodians")
	}
	if threshold < 2 || threshold > n {
		return cfgErr("threshold", "must be between 2 and the number of custodians (%d)", n)
	}
	names, files := map[string]bool{}, map[string]bool{}
	for i := range custodians {
		cu := &custodians[i]
		p := fmt.Sprintf("custodians[%d]", i)
		if cu.Name == "" || names[cu.Name] {
			return cfgErr(p+".name", "empty or repeated custodian name")
		}
		if err := validCustodianName(p+".name", cu.Name); err != nil {
			return err
		}
		names[cu.Name] = true
		if err := c.output(p+".share_file", &cu.ShareFile); err != nil {
			return err
		}
		if files[cu.ShareFile] {
			return cfgErr(p+".share_file", "two custodians share one file")
		}
		files[cu.ShareFile] = true
	}
	return nil
}

func (c *common) output(path string, p *string) error {
	if *p == "" {
		return cfgErr(path, "required")
	}
	*p = c.path(*p)
	if c.lax {
		return nil
	}
	if err := mustNotExist(path, *p); err != nil {
		return err
	}
	return validDir(path, *p)
}

// input checks an input file exists.
func (c *common) input(path string, p *string) error {
	if *p == "" {
		return cfgErr(path, "required")
	}
	*p = c.path(*p)
	if c.lax {
		return nil
	}
	if st, err := os.Stat(*p); err != nil || st.IsDir() {
		return cfgErr(path, "%s is not a readable file", *p)
	}
	f, err := os.Open(*p)
	if err != nil {
		return cfgErr(path, "%s cannot be read: %v", *p, errText(err))
	}
	return f.Close()
}

// --- token init -------------------------------------------------------------

type initConfig struct {
	common `yaml:",inline"`
	Token  struct {
		Label string `yaml:"label"`
		// Serial of the uninitialised token to use; empty: the module's one
		// uninitialised token (SoftHSM always offers one).
		Serial string `yaml:"serial"`
	} `yaml:"token"`
	// SOPIN is one part (one officer holds the SO PIN) or two parts (dual
	// control: the SO PIN is part 1 followed by part 2, each held by one
	// officer; unlock then needs both).
	SOPIN   []pinPart `yaml:"so_pin"`
	UserPIN string    `yaml:"user_pin"`
	// Enrol: the officers (at least two) written into the token's trusted
	// roster; each must approve this file with the key being enrolled.
	Enrol []enrolEntry `yaml:"enrol"`
	// AuditPublicKeyOut receives the ceremony-audit public key (PEM,
	// never overwritten), which officers keep to pin transcripts with
	// `transcript verify -pubkey`.
	AuditPublicKeyOut string `yaml:"audit_public_key_out"`
}

func (c *initConfig) validate() error {
	c.createGuard = true
	if err := c.common.validate(true); err != nil {
		return err
	}
	if c.Token.Label == "" || len(c.Token.Label) > 32 {
		return cfgErr("token.label", "required, 1 to 32 characters")
	}
	if err := validParts(&c.common, "so_pin", c.SOPIN, 1); err != nil {
		return err
	}
	if err := c.validEnrol("enrol", c.Enrol, 2, c.SOPIN); err != nil {
		return err
	}
	if c.AuditPublicKeyOut != "" {
		if err := c.output("audit_public_key_out", &c.AuditPublicKeyOut); err != nil {
			return err
		}
	}
	return c.validPINSource("user_pin", c.UserPIN)
}

func validParts(c *common, path string, parts []pinPart, min int) error {
	if len(parts) < min || len(parts) > 2 {
		if min == 2 {
			return cfgErr(path, "needs exactly two parts held by two different officers (dual control)")
		}
		return cfgErr(path, "needs one part, or two parts held by two different officers")
	}
	for i, p := range parts {
		pp := fmt.Sprintf("%s[%d]", path, i)
		if p.Officer == "" {
			return cfgErr(pp+".officer", "required")
		}
		if !c.officer(p.Officer) {
			return cfgErr(pp+".officer", "%q is not in officers", p.Officer)
		}
		if err := c.validPINSource(pp+".pin", p.PIN); err != nil {
			return err
		}
	}
	if len(parts) == 2 && parts[0].Officer == parts[1].Officer {
		return cfgErr(path+"[1].officer", "the two parts must be held by two different officers")
	}
	return nil
}

// --- keygen -----------------------------------------------------------------

type keySpecConfig struct {
	Label string   `yaml:"label"`
	Type  string   `yaml:"type"`
	Usage []string `yaml:"usage"`
	// Backup makes the key extractable (still sensitive: it leaves the
	// token only wrapped, by the backup ceremony).
	Backup bool `yaml:"backup"`
	// Destroyable lets a user-PIN holder destroy the key (CKA_DESTROYABLE
	// true). Default false: a ceremony key is removed only by zeroize.
	// keysvc's KEKs of an epoch (keysvc-kek-e<n>, keysvc-sm-kek-e<n>) need
	// it: a KEK rotation ends by destroying the old epoch's KEKs.
	Destroyable  bool   `yaml:"destroyable"`
	PublicKeyPEM string `yaml:"public_key_pem"`
	Certificate  *struct {
		CommonName string `yaml:"common_name"`
		Days       int    `yaml:"days"`
		Out        string `yaml:"out"`
	} `yaml:"certificate"`

	kt    pkcs11shim.KeyType
	usage pkcs11shim.Usage
}

type keygenConfig struct {
	common `yaml:",inline"`
	Token  tokenRef        `yaml:"token"`
	Keys   []keySpecConfig `yaml:"keys"`
	// ServiceKeys adds keysvc's service keys (keysvc.ServiceKeySpecs: the
	// labels, types and exact usages keysvc checks at start), each with
	// backup: true, after the listed keys (issue 15 item 1). The two KEKs
	// (keysvc-kek, keysvc-sm-kek: KEK epoch 1) are also destroyable: true,
	// as every later epoch's are, because keysvc's first KEK rotation ends
	// by destroying them in every token; the others are not destroyable.
	ServiceKeys bool `yaml:"service_keys"`

	expanded bool // ServiceKeys' entries are in Keys
}

// serviceKeyConfigs are keysvc's service keys as keys[] entries: the
// service_keys preset.
func serviceKeyConfigs() []keySpecConfig {
	var out []keySpecConfig
	for _, ks := range keysvc.ServiceKeySpecs() {
		var u []string
		for _, name := range []string{"sign", "encrypt", "decrypt", "wrap", "unwrap"} {
			if ks.Usage.Has(usages[name] | pkcs11shim.UsageExact) {
				u = append(u, name)
			}
		}
		kek := ks.Label == keysvc.KEKLabel || ks.Label == keysvc.SMKEKLabel // epoch 1: retired by the first KEK rotation
		out = append(out, keySpecConfig{Label: ks.Label, Type: ks.Type.String(), Usage: u, Backup: true, Destroyable: kek})
	}
	return out
}

var keyTypes = map[string]pkcs11shim.KeyType{
	"ec-p256": pkcs11shim.KeyECP256, "ec-p384": pkcs11shim.KeyECP384,
	"rsa-2048": pkcs11shim.KeyRSA2048, "rsa-3072": pkcs11shim.KeyRSA3072, "rsa-4096": pkcs11shim.KeyRSA4096,
	"aes-256": pkcs11shim.KeyAES256, "generic-secret": pkcs11shim.KeyGenericSecret,
}

// usages are the names keys[].usage accepts, each exactly one attribute of
// the key (pkcs11shim.UsageExact); a key gets exactly the listed ones.
var usages = map[string]pkcs11shim.Usage{
	"sign": pkcs11shim.UsageSign, "encrypt": pkcs11shim.UsageEncrypt, "decrypt": pkcs11shim.UsageDecrypt,
	"wrap": pkcs11shim.UsageWrap, "unwrap": pkcs11shim.UsageUnwrap,
}

// typeUsages are the usages each key type may list, in the order messages
// name them.
func typeUsages(kt pkcs11shim.KeyType) []string {
	switch {
	case kt.IsEC(), kt == pkcs11shim.KeyGenericSecret:
		return []string{"sign"}
	case kt.IsPair():
		return []string{"sign", "encrypt", "decrypt"}
	}
	return []string{"encrypt", "decrypt", "wrap", "unwrap"}
}

func (c *keygenConfig) validate() error {
	if err := c.common.validate(true); err != nil {
		return err
	}
	if err := c.Token.validate(&c.common, "token"); err != nil {
		return err
	}
	if c.ServiceKeys && !c.expanded {
		c.Keys, c.expanded = append(c.Keys, serviceKeyConfigs()...), true
	}
	if len(c.Keys) == 0 {
		return cfgErr("keys", "required: at least one key (or service_keys: true)")
	}
	labels := map[string]bool{auditKeyLabel: true}
	outs := map[string]bool{}
	for i := range c.Keys {
		k := &c.Keys[i]
		p := fmt.Sprintf("keys[%d]", i)
		if k.Label == "" || len(k.Label) > 128 {
			return cfgErr(p+".label", "required, 1 to 128 characters")
		}
		if labels[k.Label] {
			if c.ServiceKeys && slices.Contains(keysvc.ServiceKeyLabels, k.Label) {
				return cfgErr(p+".label", "%q is one of keysvc's service keys, which service_keys: true already makes: drop this entry", k.Label)
			}
			return cfgErr(p+".label", "%q is used twice (or is the reserved %s)", k.Label, auditKeyLabel)
		}
		labels[k.Label] = true
		kt, ok := keyTypes[k.Type]
		if !ok {
			return cfgErr(p+".type", "must be ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096, aes-256 or generic-secret")
		}
		k.kt = kt
		allowed := typeUsages(kt)
		for j, u := range k.Usage {
			up := fmt.Sprintf("%s.usage[%d]", p, j)
			v, ok := usages[u]
			if !ok {
				return cfgErr(up, "%q is not a usage: must be one of sign, encrypt, decrypt, wrap, unwrap (%s keys: %s)", u, k.Type, strings.Join(allowed, ", "))
			}
			if !slices.Contains(allowed, u) {
				return cfgErr(up, "%s keys cannot %s: allowed %s", k.Type, u, strings.Join(allowed, ", "))
			}
			if k.usage&v != 0 {
				return cfgErr(up, "%s is listed twice", u)
			}
			k.usage |= v
		}
		if k.usage != 0 {
			k.usage |= pkcs11shim.UsageExact // exactly what is listed, nothing more
		}
		if kt.IsPair() && !kt.IsEC() && k.usage.Has(pkcs11shim.UsageEncrypt|pkcs11shim.UsageExact) && !k.usage.Has(pkcs11shim.UsageDecrypt|pkcs11shim.UsageExact) {
			return cfgErr(p+".usage", "an %s key with encrypt but not decrypt could decrypt nothing: list decrypt (senders encrypt with the exported public key; encrypt lets the token encrypt too)", k.Type)
		}
		if !kt.IsPair() && (k.PublicKeyPEM != "" || k.Certificate != nil) {
			return cfgErr(p, "%s keys have no public key: drop public_key_pem and certificate", k.Type)
		}
		if k.PublicKeyPEM != "" {
			if err := c.output(p+".public_key_pem", &k.PublicKeyPEM); err != nil {
				return err
			}
			if outs[k.PublicKeyPEM] {
				return cfgErr(p+".public_key_pem", "written twice")
			}
			outs[k.PublicKeyPEM] = true
		}
		if cert := k.Certificate; cert != nil {
			if cert.CommonName == "" {
				return cfgErr(p+".certificate.common_name", "required")
			}
			if cert.Days < 1 || cert.Days > 36500 {
				return cfgErr(p+".certificate.days", "must be 1 to 36500")
			}
			if k.usage != 0 && k.usage&pkcs11shim.UsageSign == 0 {
				return cfgErr(p+".certificate", "a self-signed certificate needs a key that may sign")
			}
			if err := c.output(p+".certificate.out", &cert.Out); err != nil {
				return err
			}
			if outs[cert.Out] {
				return cfgErr(p+".certificate.out", "written twice")
			}
			outs[cert.Out] = true
		}
	}
	return nil
}

// --- backup -----------------------------------------------------------------

type custodian struct {
	Name      string `yaml:"name"`
	ShareFile string `yaml:"share_file"`
}

type backupConfig struct {
	common `yaml:",inline"`
	Token  tokenRef `yaml:"token"`
	// SOPIN: the two parts of the SO PIN, held by two officers. Only the
	// SO can make the trusted KEK that backup-able keys wrap under.
	SOPIN      []pinPart   `yaml:"so_pin"`
	Keys       []string    `yaml:"keys"`
	Threshold  int         `yaml:"threshold"`
	Custodians []custodian `yaml:"custodians"`
	Output     string      `yaml:"output"`
}

func (c *backupConfig) validate() error {
	if err := c.common.validate(true); err != nil {
		return err
	}
	if len(c.Officers) < 2 {
		return cfgErr("officers", "a backup is made under dual control: name at least two officers (R-AV-3)")
	}
	if err := c.Token.validate(&c.common, "token"); err != nil {
		return err
	}
	if err := validParts(&c.common, "so_pin", c.SOPIN, 2); err != nil {
		return err
	}
	if len(c.Keys) == 0 {
		return cfgErr("keys", "required: the labels of the keys to back up")
	}
	seen := map[string]bool{}
	for i, k := range c.Keys {
		if k == "" || seen[k] {
			return cfgErr(fmt.Sprintf("keys[%d]", i), "empty or repeated label")
		}
		seen[k] = true
	}
	if err := validCustodians(&c.common, c.Custodians, c.Threshold); err != nil {
		return err
	}
	return c.output("output", &c.Output)
}

// --- restore ----------------------------------------------------------------

type restoreConfig struct {
	common     `yaml:",inline"`
	Token      tokenRef `yaml:"token"` // the target (DR) token
	BackupFile string   `yaml:"backup_file"`
	Shares     []string `yaml:"shares"`
	// AcceptV1 restores a v1 backup file (no MAC: its key list, labels and
	// share headers are not authenticated); recorded in the transcript.
	AcceptV1 bool `yaml:"accept_unauthenticated_v1_backup"`
}

func (c *restoreConfig) validate() error {
	if err := c.common.validate(true); err != nil {
		return err
	}
	if err := c.Token.validate(&c.common, "token"); err != nil {
		return err
	}
	if err := c.input("backup_file", &c.BackupFile); err != nil {
		return err
	}
	if len(c.Shares) == 0 {
		return cfgErr("shares", "required: the custodians' share files")
	}
	for i := range c.Shares {
		if err := c.input(fmt.Sprintf("shares[%d]", i), &c.Shares[i]); err != nil {
			return err
		}
	}
	return nil
}

// soTarget is what the SO ceremonies on an initialised token (unlock,
// officer enrol, officer retire) share: the token, by label or serial,
// and both parts of the SO PIN, held by two different officers.
type soTarget struct {
	Token struct {
		Label  string `yaml:"label"`
		Serial string `yaml:"serial"`
	} `yaml:"token"`
	SOPIN []pinPart `yaml:"so_pin"`
}

func (t *soTarget) validate(c *common) error {
	if t.Token.Label == "" && t.Token.Serial == "" {
		return cfgErr("token.label", "required: the token's label (or serial)")
	}
	return validParts(c, "so_pin", t.SOPIN, 2)
}

func (t *soTarget) selector() pkcs11shim.Selector {
	return pkcs11shim.Selector{Label: t.Token.Label, Serial: t.Token.Serial}
}

// --- unlock -----------------------------------------------------------------

type unlockConfig struct {
	common     `yaml:",inline"`
	soTarget   `yaml:",inline"`
	NewUserPIN string `yaml:"new_user_pin"`
	// PINGuardKind is keysvc (default: pin_guard must be keysvc's
	// keysvc.db) or workstation (the officers' own file, for a token
	// keysvc does not use).
	PINGuardKind string `yaml:"pin_guard_kind"`
}

func (c *unlockConfig) validate() error {
	if err := c.common.validate(true); err != nil {
		return err
	}
	if err := c.soTarget.validate(&c.common); err != nil {
		return err
	}
	switch c.PINGuardKind {
	case "", guardKindKeysvc:
		if err := checkKeysvcStore(c.PINGuard); err != nil {
			return err
		}
	case guardKindWorkstation:
	default:
		return cfgErr("pin_guard_kind", "must be %s (pin_guard is keysvc's keysvc.db; the default) or %s (the officers' own file, for a token keysvc does not use)", guardKindKeysvc, guardKindWorkstation)
	}
	return c.validPINSource("new_user_pin", c.NewUserPIN)
}

// --- zeroize ----------------------------------------------------------------

type zeroizeConfig struct {
	common `yaml:",inline"`
	Token  tokenRef `yaml:"token"`
	// SOPIN: the two parts of the SO PIN, held by two officers; zeroize is
	// C_InitToken, which the token allows only with the SO PIN.
	SOPIN []pinPart `yaml:"so_pin"`
	// Backups are backup files (made by `ceremony backup`) of this token;
	// a key they hold (same label and CKA_ID, same token serial) counts as
	// backed up.
	Backups []string `yaml:"backups"`
	// AcknowledgeUnbacked must list exactly the labels of the token's keys
	// that no backup holds: they are lost for good.
	AcknowledgeUnbacked []string `yaml:"acknowledge_unbacked"`
	// Confirmation must be "ZEROIZE <label>" for a run with --yes; at a
	// terminal the officer types the phrase instead.
	Confirmation string `yaml:"confirmation"`

	backups []*backupFile // Backups, read by validate
}

func (c *zeroizeConfig) validate() error {
	if err := c.common.validate(true); err != nil {
		return err
	}
	if err := c.Token.validate(&c.common, "token"); err != nil {
		return err
	}
	if c.Token.Label == "" {
		return cfgErr("token.label", "required: the confirmation phrase names it")
	}
	if c.Transcript.Signer == nil {
		return cfgErr("transcript.signer", "required: the zeroized token keeps no key to sign with; name another token")
	}
	if c.Transcript.Signer.Label == c.Token.Label {
		return cfgErr("transcript.signer.label", "must be another token than the one zeroized")
	}
	if c.Confirmation != "" && c.Confirmation != zeroizePhrase(c.Token.Label) {
		return cfgErr("confirmation", "must be exactly %q", zeroizePhrase(c.Token.Label))
	}
	if err := validParts(&c.common, "so_pin", c.SOPIN, 2); err != nil {
		return err
	}
	return c.validBackups()
}

func zeroizePhrase(label string) string { return "ZEROIZE " + label }

// --- keysvc ceremonies ---------------------------------------------------------

type keysvcRef struct {
	URL         string `yaml:"url"`
	CAFile      string `yaml:"ca_file"`
	BearerToken string `yaml:"bearer_token_file"`
}

func (c *common) validKeysvc(k *keysvcRef) error {
	if !strings.HasPrefix(k.URL, "https://") && !strings.HasPrefix(k.URL, "http://") {
		return cfgErr("keysvc.url", "required: https://host:port of keysvc's admin API")
	}
	if k.CAFile != "" {
		if err := c.input("keysvc.ca_file", &k.CAFile); err != nil {
			return err
		}
	}
	if err := c.input("keysvc.bearer_token_file", &k.BearerToken); err != nil {
		return err
	}
	if st, err := os.Stat(k.BearerToken); err == nil && st.Mode().Perm()&0o077 != 0 {
		return cfgErr("keysvc.bearer_token_file", "%s is readable or writable by group or others (mode %04o): chmod 600 (or 400) it", k.BearerToken, uint32(st.Mode().Perm()))
	}
	return nil
}

type rotateConfig struct {
	common `yaml:",inline"`
	Keysvc keysvcRef `yaml:"keysvc"`
	Keys   []string  `yaml:"keys"`
}

func (c *rotateConfig) validate() error {
	if err := c.common.validate(true); err != nil {
		return err
	}
	if err := c.needSigner(); err != nil {
		return err
	}
	if err := c.validKeysvc(&c.Keysvc); err != nil {
		return err
	}
	if len(c.Keys) == 0 {
		return cfgErr("keys", "required: the keysvc key names to rotate")
	}
	for i, k := range c.Keys {
		if k == "" {
			return cfgErr(fmt.Sprintf("keys[%d]", i), "empty key name")
		}
	}
	return nil
}

type destroyItem struct {
	Key     string `yaml:"key"`
	Version int    `yaml:"version"`
	Delay   string `yaml:"delay"` // Go duration, e.g. 720h; empty: keysvc's default

	delay time.Duration
}

type scheduleDestroyConfig struct {
	common   `yaml:",inline"`
	Keysvc   keysvcRef     `yaml:"keysvc"`
	Versions []destroyItem `yaml:"versions"`
}

func (c *scheduleDestroyConfig) validate() error {
	if err := c.common.validate(true); err != nil {
		return err
	}
	if err := c.needSigner(); err != nil {
		return err
	}
	if err := c.validKeysvc(&c.Keysvc); err != nil {
		return err
	}
	if len(c.Versions) == 0 {
		return cfgErr("versions", "required")
	}
	for i := range c.Versions {
		v := &c.Versions[i]
		p := fmt.Sprintf("versions[%d]", i)
		if v.Key == "" {
			return cfgErr(p+".key", "required")
		}
		if v.Version < 1 {
			return cfgErr(p+".version", "required, 1 or more")
		}
		if v.Delay != "" {
			d, err := time.ParseDuration(v.Delay)
			if err != nil || d <= 0 {
				return cfgErr(p+".delay", "must be a positive duration such as 720h")
			}
			v.delay = d
		}
	}
	return nil
}

type auditVerifyConfig struct {
	common `yaml:",inline"`
	// Store is keysvc's bbolt file (keysvc.db), opened read-only.
	Store string `yaml:"store"`
	// PublicKey is the audit public key PEM (your own copy, not the one
	// next to the store).
	PublicKey string `yaml:"public_key"`
}

func (c *auditVerifyConfig) validate() error {
	if err := c.common.validate(true); err != nil {
		return err
	}
	if err := c.needSigner(); err != nil {
		return err
	}
	if err := c.input("store", &c.Store); err != nil {
		return err
	}
	return c.input("public_key", &c.PublicKey)
}

// --- loading ------------------------------------------------------------------

type validator interface{ validate() error }

// loadConfig decodes path strictly into cfg and validates it.
func loadConfig(path string, cfg validator, cm *common) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errConfig, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errConfig, err)
	}
	if err := parseConfig(raw, path, filepath.Dir(abs), cfg, cm); err != nil {
		return nil, err
	}
	return raw, nil
}

// parseConfig decodes raw (the file path, for messages) strictly into cfg
// and validates it, resolving relative paths against dir. Every error
// wraps errConfig.
func parseConfig(raw []byte, path, dir string, cfg validator, cm *common) error {
	if err := strictyaml.Decode(raw, cfg); err != nil {
		return fmt.Errorf("%w: %s: %w", errConfig, path, err)
	}
	cm.dir = dir
	return cfg.validate()
}
