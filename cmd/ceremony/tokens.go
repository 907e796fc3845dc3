package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// --- token init -----------------------------------------------------------------

func runInit(ctx context.Context, o *options) error {
	var c initConfig
	s, err := start(o, "token init", &c, &c.common, func() []string {
		return []string{
			fmt.Sprintf("read the SO PIN (%d part(s): %s) and the user PIN", len(c.SOPIN), partOfficers(c.SOPIN)),
			fmt.Sprintf("confirm, then C_InitToken with label %q on %s", c.Token.Label, targetText(c.Token.Serial)),
			"C_InitPIN: set the user PIN",
			fmt.Sprintf("as the SO, enrol the officers %s in the token's trusted roster", enrolNames(c.Enrol)),
			fmt.Sprintf("generate the transcript signing key %s (EC P-256, not extractable)", auditKeyLabel),
			auditOutPlan(c.AuditPublicKeyOut),
		}
	})
	if s == nil || err != nil {
		return err
	}
	return s.finish(ctx, &c.common, s.initToken(ctx, &c))
}

func partOfficers(parts []pinPart) string {
	var n []string
	for _, p := range parts {
		n = append(n, p.Officer)
	}
	return strings.Join(n, " + ")
}

func targetText(serial string) string {
	if serial == "" {
		return "the module's uninitialised token"
	}
	return "the token with serial " + serial
}

// readParts reads the officers' parts of a PIN and joins them.
func readParts(o *options, parts []pinPart, what string, repeat bool) ([]byte, error) {
	var pin []byte
	for i, p := range parts {
		prompt := fmt.Sprintf("%s (officer %s)", what, p.Officer)
		if len(parts) > 1 {
			prompt = fmt.Sprintf("%s part %d of %d (officer %s)", what, i+1, len(parts), p.Officer)
		}
		b, err := readPIN(o, p.PIN, prompt, repeat)
		if err != nil {
			token.Wipe(pin)
			return nil, err
		}
		pin = append(pin, b...)
		token.Wipe(b)
	}
	return pin, nil
}

func (s *session) initToken(ctx context.Context, c *initConfig) error {
	so, err := readParts(s.o, c.SOPIN, "New SO PIN", true)
	if err != nil {
		return err
	}
	defer token.Wipe(so)
	user, err := readPIN(s.o, c.UserPIN, "New user PIN of token "+c.Token.Label, true)
	if err != nil {
		return err
	}
	defer token.Wipe(user)
	if err := token.CheckPIN(user, nil); err != nil {
		return fmt.Errorf("user PIN: %w", err)
	}
	if err := token.CheckPIN(so, nil); err != nil {
		return fmt.Errorf("SO PIN: %w", err)
	}
	s.rec.step("PINs entered", "SO PIN held by %s; user PIN entered (neither is recorded)", partOfficers(c.SOPIN))
	if err := confirm(s.o, fmt.Sprintf("Initialise %s as token %q? Anything on it is erased.", targetText(c.Token.Serial), c.Token.Label), "yes"); err != nil {
		return err
	}
	if err := s.openModule(c.Module); err != nil {
		return err
	}
	ti, err := s.initTokenGuarded(c, so)
	if err != nil {
		return fmt.Errorf("C_InitToken: %w", err)
	}
	s.rec.token("initialised", ti)
	s.rec.step("C_InitToken", "token %s initialised: serial %s, %s %s", ti.Label, ti.Serial, ti.Manufacturer, ti.Model)
	// Slot ids move after C_InitToken (SoftHSM): the token is named by label and serial from here on.
	sel := pkcs11shim.Selector{Label: ti.Label, Serial: ti.Serial}
	admin, err := s.admin(sel)
	if err != nil {
		return err
	}
	// C_InitPIN as the SO through the guard; it also clears a user-PIN
	// lock the guard may hold for a re-initialised token's serial.
	if err := admin.Unlock(so, user, partOfficers(c.SOPIN)); err != nil {
		return fmt.Errorf("C_InitPIN: %w", err)
	}
	s.rec.step("C_InitPIN", "user PIN set by the SO (SO login counted in the PIN guard)")
	if err := s.enrol(ctx, admin, so, c.Enrol, partOfficers(c.SOPIN)); err != nil {
		return err
	}
	p, err := s.login(ctx, sel, token.HeldPIN(user))
	if err != nil {
		return fmt.Errorf("log in with the new user PIN: %w", err)
	}
	s.rec.step("verify user login", "logged in with the new user PIN")
	// Not destroyable with the user PIN: only zeroize (the SO) removes it.
	k, err := p.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: auditKeyLabel, Usage: pkcs11shim.UsageSign, Undestroyable: true})
	if err != nil {
		return fmt.Errorf("generate %s: %w", auditKeyLabel, err)
	}
	rec, pemBytes, err := describeKey(ctx, p, k, "transcript signing key, not extractable")
	if err != nil {
		return err
	}
	s.rec.key(rec)
	s.rec.step("generate "+auditKeyLabel, "EC P-256; public key SHA-256 %s", rec.PublicSHA)
	fmt.Fprintf(s.o.stdout, "\n%s public key (keep a copy to check transcripts with -pubkey):\n%s", auditKeyLabel, pemBytes)
	if c.AuditPublicKeyOut != "" {
		if err := writeExcl(c.AuditPublicKeyOut, pemBytes, 0o644); err != nil {
			return fmt.Errorf("audit_public_key_out: %w", err)
		}
		s.rec.output(c.AuditPublicKeyOut, pemBytes)
		s.rec.step("export "+auditKeyLabel+" public key", "%s (SHA-256 %s): pin transcripts with transcript verify -pubkey %s", c.AuditPublicKeyOut, rec.PublicSHA, c.AuditPublicKeyOut)
	}
	return s.signer(ctx, &c.common, p)
}

// initTokenGuarded runs C_InitToken. On a token that is already
// initialised (named by serial) the module checks the SO PIN first, so the
// call is an SO login and goes through the guard like any other (R-TOK-5):
// counted, and refused without the call when the SO PIN is locked. The
// module's uninitialised token has no PIN yet to guess.
func (s *session) initTokenGuarded(c *initConfig, so []byte) (pkcs11shim.TokenInfo, error) {
	var ti pkcs11shim.TokenInfo
	initialise := func() (err error) {
		ti, err = s.mod.InitToken(c.Token.Serial, so, c.Token.Label)
		return err
	}
	if c.Token.Serial == "" {
		return ti, initialise()
	}
	old, err := s.mod.LookupToken(pkcs11shim.Selector{Serial: c.Token.Serial})
	if errors.Is(err, pkcs11shim.ErrTokenNotFound) {
		return ti, initialise() // not initialised yet
	}
	if err != nil {
		return ti, err
	}
	// A refusal that never reaches the token must not count as a guess.
	if dup, err := s.mod.LookupToken(pkcs11shim.Selector{Label: c.Token.Label}); err == nil || errors.Is(err, pkcs11shim.ErrTokenAmbiguous) {
		return ti, fmt.Errorf("%w: a token labelled %q already exists (serial %s)", pkcs11shim.ErrDuplicateLabel, c.Token.Label, dup.Serial)
	}
	return ti, s.guard.Attempt(token.PINID(old, pkcs11shim.UserSO), initialise)
}

// describeKey is a key's transcript record (and its public key PEM for pairs).
func describeKey(ctx context.Context, p *pkcs11shim.Pool, k *pkcs11shim.Key, note string) (keyRecord, []byte, error) {
	rec := keyRecord{Label: k.Label, ID: hex.EncodeToString(k.ID), Type: k.Type.String(), Token: p.Info().Label, Note: note}
	if !k.Type.IsPair() {
		return rec, nil, nil
	}
	pub, err := p.PublicKey(ctx, k)
	if err != nil {
		return rec, nil, err
	}
	fp, pemBytes, err := fingerprint(pub)
	rec.PublicSHA = fp
	return rec, pemBytes, err
}

// --- keygen ----------------------------------------------------------------------

func runKeygen(ctx context.Context, o *options) error {
	var c keygenConfig
	s, err := start(o, "keygen", &c, &c.common, func() []string {
		plan := []string{fmt.Sprintf("open token %s and log in as user", c.Token.Label), "check no key label exists yet"}
		for _, k := range c.Keys {
			l := fmt.Sprintf("generate %s (%s, usage %s, %s; %s)", k.Label, k.Type, usageText(k.kt, k.usage),
				map[bool]string{true: "backup-able: wrappable only under the SO's trusted KEK", false: "not extractable"}[k.Backup], destroyText(k.Destroyable))
			if k.PublicKeyPEM != "" {
				l += ", public key to " + k.PublicKeyPEM
			}
			if k.Certificate != nil {
				l += ", self-signed certificate to " + k.Certificate.Out
			}
			plan = append(plan, l)
		}
		return append(plan, "check each key works (sign/verify against the exported public key, encrypt/decrypt, HMAC)")
	})
	if s == nil || err != nil {
		return err
	}
	return s.finish(ctx, &c.common, s.keygen(ctx, &c))
}

func (s *session) keygen(ctx context.Context, c *keygenConfig) error {
	p, err := s.openToken(ctx, &c.common, &c.Token, "keys")
	if err != nil {
		return err
	}
	objs, err := p.ListTokenObjects(ctx)
	if err != nil {
		return err
	}
	for i, k := range c.Keys {
		for _, ob := range objs {
			if ob.Label == k.Label {
				return fmt.Errorf("keys[%d].label: a key labelled %q already exists on token %s; nothing was generated", i, k.Label, p.Info().Label)
			}
		}
	}
	s.rec.step("check labels", "none of the %d labels exists on the token", len(c.Keys))
	for _, kc := range c.Keys {
		stop := func() {}
		if kc.kt == pkcs11shim.KeyRSA3072 || kc.kt == pkcs11shim.KeyRSA4096 {
			stop = progress(s.o, "generating "+kc.Type)
		}
		// Undestroyable unless asked: a ceremony key is removed only by
		// zeroize (the SO); keysvc's epoch KEKs are destroyed by keysvc at
		// the end of a KEK rotation.
		k, err := p.GenerateKey(ctx, pkcs11shim.KeySpec{Type: kc.kt, Label: kc.Label, Usage: kc.usage, Extractable: kc.Backup, Undestroyable: !kc.Destroyable})
		stop()
		if err != nil {
			return fmt.Errorf("generate %s: %w", kc.Label, err)
		}
		note := "not extractable"
		if kc.Backup {
			note = "backup-able (CKA_WRAP_WITH_TRUSTED: wrappable only under the SO's trusted KEK; sensitive)"
		}
		note += "; usage " + usageText(kc.kt, kc.usage) + "; " + destroyText(kc.Destroyable)
		rec, pemBytes, err := describeKey(ctx, p, k, note)
		if err != nil {
			return err
		}
		s.rec.key(rec)
		s.rec.step("generate "+kc.Label, "%s, CKA_ID %s, %s%s", kc.Type, rec.ID, note, fpText(rec.PublicSHA))
		checked, err := checkKey(ctx, p, k)
		if err != nil {
			return fmt.Errorf("%w: key %s does not work: %v", errVerify, kc.Label, err)
		}
		s.rec.step("check "+kc.Label, "%s", checked)
		if kc.PublicKeyPEM != "" {
			if err := writeExcl(kc.PublicKeyPEM, pemBytes, 0o644); err != nil {
				return err
			}
			s.rec.output(kc.PublicKeyPEM, pemBytes)
			s.rec.step("export public key", "%s", kc.PublicKeyPEM)
		}
		if kc.Certificate != nil {
			der, err := selfSign(ctx, p, k, kc.Certificate.CommonName, kc.Certificate.Days)
			if err != nil {
				return fmt.Errorf("certificate for %s: %w", kc.Label, err)
			}
			out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
			if err := writeExcl(kc.Certificate.Out, out, 0o644); err != nil {
				return err
			}
			s.rec.output(kc.Certificate.Out, out)
			s.rec.step("self-signed certificate", "%s: CN=%s, %d days, signature checked", kc.Certificate.Out, kc.Certificate.CommonName, kc.Certificate.Days)
		}
	}
	return nil
}

// destroyText says who may destroy a generated key.
func destroyText(destroyable bool) string {
	if destroyable {
		return "destroyable with the user PIN (destroyable: true)"
	}
	return "not destroyable with the user PIN"
}

// usageText names the usages u grants a key of type kt, as keys[].usage
// spells them; zero is the type's default.
func usageText(kt pkcs11shim.KeyType, u pkcs11shim.Usage) string {
	if u == 0 {
		return "default (" + strings.Join(typeUsages(kt), ", ") + ")"
	}
	var n []string
	for _, name := range []string{"sign", "encrypt", "decrypt", "wrap", "unwrap"} {
		if u.Has(usages[name] | pkcs11shim.UsageExact) {
			n = append(n, name)
		}
	}
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, ", ")
}

func fpText(fp string) string {
	if fp == "" {
		return ""
	}
	return ", public key SHA-256 " + fp
}

// checkKey proves a key works with what its usage allows and says what
// was done, for the transcript: a signature made in the token verifies
// with pub (restore: the backed-up public key; nil: read it from the
// token), AES-GCM round-trips, HMAC runs. A decrypt-only RSA key and a
// wrap-only KEK are not exercised, and the text says so.
func checkKey(ctx context.Context, p *pkcs11shim.Pool, k *pkcs11shim.Key) (string, error) {
	return checkKeyWith(ctx, p, k, nil)
}

func checkKeyWith(ctx context.Context, p *pkcs11shim.Pool, k *pkcs11shim.Key, pub crypto.PublicKey) (string, error) {
	digest := sha256.Sum256([]byte("keyward ceremony key check " + k.Label))
	usage, err := p.KeyUsage(ctx, k)
	if err != nil {
		return "", err
	}
	switch {
	case k.Type.IsPair():
		against := "the backed-up public key"
		if pub == nil {
			against = "the public key outside it"
			if pub, err = p.PublicKey(ctx, k); err != nil {
				return "", err
			}
		}
		if !usage.Has(pkcs11shim.UsageSign) {
			// Decrypting a value encrypted outside would prove more, but
			// SoftHSM 2 refuses RSA-OAEP with SHA-256.
			return "decrypt-only RSA key: not exercised (it may not sign)", nil
		}
		sig, err := p.Sign(ctx, k, digest[:], crypto.SHA256, nil)
		if err != nil {
			return "", err
		}
		switch pk := pub.(type) {
		case *ecdsa.PublicKey:
			if !ecdsa.VerifyASN1(pk, digest[:], sig) {
				return "", errors.New("ECDSA signature does not verify with the public key")
			}
		case *rsa.PublicKey:
			if err := rsa.VerifyPKCS1v15(pk, crypto.SHA256, digest[:], sig); err != nil {
				return "", err
			}
		}
		return "signed a test digest in the token and verified it with " + against, nil
	case k.Type == pkcs11shim.KeyAES256:
		if !usage.Has(pkcs11shim.UsageEncrypt | pkcs11shim.UsageDecrypt | pkcs11shim.UsageExact) {
			return "AES key that may not both encrypt and decrypt (" + usageText(k.Type, usage) + "): not exercised", nil
		}
		ct, err := p.EncryptGCM(ctx, k, digest[:], nil)
		if err != nil {
			return "", err
		}
		pt, err := p.DecryptGCM(ctx, k, ct, nil)
		if err != nil {
			return "", err
		}
		if !hmac.Equal(pt, digest[:]) {
			return "", errors.New("AES-GCM round trip differs")
		}
		return "AES-GCM encrypt/decrypt round trip in the token", nil
	}
	if _, err := p.HMAC(ctx, k, digest[:]); err != nil {
		return "", err
	}
	return "HMAC-SHA256 computed in the token", nil
}

// selfSign makes a self-signed certificate with the token key.
func selfSign(ctx context.Context, p *pkcs11shim.Pool, k *pkcs11shim.Key, cn string, days int) ([]byte, error) {
	signer, err := p.NewSigner(ctx, k)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.AddDate(0, 0, days),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return nil, fmt.Errorf("the certificate's own signature does not verify: %w", err)
	}
	return der, nil
}

// --- unlock -----------------------------------------------------------------------

func runUnlock(ctx context.Context, o *options) error {
	var c unlockConfig
	s, err := start(o, "unlock", &c, &c.common, func() []string {
		return []string{
			fmt.Sprintf("read the two SO PIN parts (%s) and the new user PIN", partOfficers(c.SOPIN)),
			fmt.Sprintf("show the user PIN's state in the %s PIN guard %s", guardKindOf(&c), c.PINGuard),
			fmt.Sprintf("C_InitPIN on token %s as the SO, through that guard; clear the user PIN lockout there and check it is cleared", c.Token.Label),
			"log in with the new user PIN",
		}
	})
	if s == nil || err != nil {
		return err
	}
	return s.finish(ctx, &c.common, s.unlock(ctx, &c))
}

func (s *session) unlock(ctx context.Context, c *unlockConfig) error {
	so, err := readParts(s.o, c.SOPIN, "SO PIN", false)
	if err != nil {
		return err
	}
	defer token.Wipe(so)
	user, err := readPIN(s.o, c.NewUserPIN, "New user PIN of token "+c.Token.Label, true)
	if err != nil {
		return err
	}
	defer token.Wipe(user)
	if err := token.CheckPIN(user, nil); err != nil {
		return fmt.Errorf("new user PIN: %w", err)
	}
	s.rec.step("dual control", "SO PIN parts entered by %s (two officers); new user PIN entered", partOfficers(c.SOPIN))
	if err := s.openModule(c.Module); err != nil {
		return err
	}
	if c.Transcript.Signer != nil { // open it before the SO logs in: a failed unlock is signed too
		if err := s.signer(ctx, &c.common, nil); err != nil {
			return err
		}
	}
	admin, ti, err := s.adminToken(c.selector(), "unlocked")
	if err != nil {
		return err
	}
	s.rec.step("open token", "%s serial %s: the module says user PIN locked=%v, final try=%v", ti.Label, ti.Serial, ti.Flags.UserPINLocked, ti.Flags.UserPINFinalTry)
	before, err := admin.PINState()
	if err != nil {
		return fmt.Errorf("read the PIN guard %s: %w", c.PINGuard, err)
	}
	s.rec.step("PIN guard before", "%s guard %s, token %s serial %s: user PIN %s", guardKindOf(c), c.PINGuard, ti.Label, ti.Serial, guardText(before, s.guard.Limit()))
	if err := admin.Unlock(so, user, partOfficers(c.SOPIN)); err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	s.rec.step("C_InitPIN", "new user PIN set by the SO")
	after, err := admin.PINState()
	if err != nil {
		return fmt.Errorf("read the PIN guard %s after the unlock: %w", c.PINGuard, err)
	}
	s.rec.step("PIN guard after", "%s guard %s: user PIN %s", guardKindOf(c), c.PINGuard, guardText(after, s.guard.Limit()))
	if after.Locked {
		return fmt.Errorf("%w: the PIN guard %s still reports token %s's user PIN locked after the unlock", errVerify, c.PINGuard, ti.Label)
	}
	sel := pkcs11shim.Selector{Label: ti.Label, Serial: ti.Serial}
	p, err := s.login(ctx, sel, token.HeldPIN(user))
	if err != nil {
		return fmt.Errorf("%w: login with the new user PIN: %v", errVerify, err)
	}
	s.rec.step("verify", "logged in with the new user PIN")
	if s.rec.signPool != nil {
		return nil
	}
	return s.signer(ctx, &c.common, p)
}

// zeroize: zeroize.go
