package softhsmtests

// The token conformance suite (issue 8): one table of behaviours Keyward
// relies on, run through Keyward's own layers (pkcs11shim, token) against
// every real PKCS#11 module under test, as subtests
// TestConformance/<module>/<behaviour>. Each module declares what it can do
// (confCaps); a behaviour that needs an undeclared capability is skipped
// with the reason, and everything else must pass on every module.
//
// Modules:
//   - softhsm2: the SoftHSM2 module of TestMain (modulePath), on one token
//     made through C_InitToken/C_InitPIN for the run.
//   - tpm2-pkcs11: tpm2-pkcs11 over swtpm and tpm2-abrmd, started by
//     scripts/tpm2-pkcs11.sh up DIR, which writes DIR/env; point
//     KEYWARD_TPM2_ENV at that file (make test does all of it). Without it
//     the tpm2-pkcs11 half is skipped, or fails under CI=true.
//
// The lockout behaviour runs last: on tpm2-pkcs11 it drives the TPM into its
// dictionary-attack lockout, which locks every token of that TPM, and clears
// it again afterwards (tpm2_dictionarylockout --clear-lockout).

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// confEnvVar names the env file written by scripts/tpm2-pkcs11.sh up.
const confEnvVar = "KEYWARD_TPM2_ENV"

// confCaps is what a module declares it can do. A behaviour needing a
// capability the module lacks is skipped, naming it.
type confCaps struct {
	InitToken    bool // C_InitToken on a free slot makes a new token
	UniqueSerial bool // every token has its own serial number
	ECP384       bool // EC P-384 key pairs
	RSAPSS       bool // CKM_RSA_PKCS_PSS signatures
	AESKeygen    bool // C_GenerateKey of CKK_AES keys
	GCM          bool // CKM_AES_GCM
	KeyWrap      bool // CKM_AES_KEY_WRAP_PAD wrap and unwrap
	HMAC         bool // generic-secret keygen and CKM_SHA256_HMAC
	EdDSA        bool // CKM_EC_EDWARDS_KEY_PAIR_GEN and CKM_EDDSA listed (Keyward has no EdDSA key type yet)
	// ValueSensitive: reading CKA_VALUE of a sensitive key answers
	// CKR_ATTRIBUTE_SENSITIVE (ErrKeyUnextractable). tpm2-pkcs11 answers
	// CKR_ATTRIBUTE_TYPE_INVALID instead: the private part is not in the
	// module at all, only a TPM-wrapped blob.
	ValueSensitive bool
	// ModuleLockAfter is how many consecutive wrong user PINs the module
	// itself takes before it answers CKR_PIN_LOCKED; 0: it never locks
	// (SoftHSM 2.6.1), Keyward's guard is then the only lock.
	ModuleLockAfter int
}

// confModule is one PKCS#11 module under test, with the token the suite
// uses on it.
type confModule struct {
	name  string
	path  string
	mod   *pkcs11shim.Module
	caps  confCaps
	label string // the token
	so    string // its SO PIN
	user  string // its user PIN
	// clearLockout resets the module's own PIN lockout, if it has one (the
	// TPM's dictionary-attack counter); nil when there is none.
	clearLockout func(t testing.TB)
}

// confBehaviour is one row of the table.
type confBehaviour struct {
	name  string
	needs []string // capability names, see confHas
	run   func(t *testing.T, m *confModule)
}

// confHas reports whether caps declares the named capability.
func confHas(c confCaps, name string) bool {
	switch name {
	case "InitToken":
		return c.InitToken
	case "UniqueSerial":
		return c.UniqueSerial
	case "ECP384":
		return c.ECP384
	case "RSAPSS":
		return c.RSAPSS
	case "AESKeygen":
		return c.AESKeygen
	case "GCM":
		return c.GCM
	case "KeyWrap":
		return c.KeyWrap
	case "HMAC":
		return c.HMAC
	case "EdDSA":
		return c.EdDSA
	}
	panic("conformance: unknown capability " + name)
}

// confBehaviours is the table, in the order it runs. Lockout stays last.
func confBehaviours() []confBehaviour {
	return []confBehaviour{
		{"mechanisms-match-declared-caps", nil, confMechanisms},
		{"find-token-by-label", nil, confFindByLabel},
		{"find-token-by-serial", nil, confFindBySerial},
		{"find-token-by-uri", nil, confFindByURI},
		{"login-right-pin", nil, confLoginRight},
		{"login-wrong-pin", nil, confLoginWrong},
		{"ec-p256-sign-verify", nil, confECP256},
		{"ec-p384-sign-verify", []string{"ECP384"}, confECP384},
		{"rsa-2048-pkcs1v15-sign-verify", nil, confRSAPKCS1},
		{"rsa-2048-pss-sign-verify", []string{"RSAPSS"}, confRSAPSS},
		{"key-not-extractable", nil, confNotExtractable},
		{"find-key-by-label", nil, confFindKey},
		{"duplicate-label-refused", nil, confDuplicateLabel},
		{"destroy-key", nil, confDestroyKey},
		{"session-recovery-after-finalize", nil, confRecovery},
		{"aes-gcm-round-trip", []string{"AESKeygen", "GCM"}, confAESGCM},
		{"aes-key-wrap", []string{"AESKeygen", "KeyWrap"}, confKeyWrap},
		{"hmac-sha256", []string{"HMAC"}, confHMAC},
		{"eddsa-mechanisms", []string{"EdDSA"}, confEdDSA},
		{"init-token", []string{"InitToken"}, confInitToken},
		{"lockout", nil, confLockout},
	}
}

func TestConformance(t *testing.T) {
	for _, open := range []func(t *testing.T) *confModule{confSoftHSM, confTPM2} {
		m := open(t) // opens before t.Run: the tpm2 env must be set in this goroutine's test
		if m == nil {
			continue
		}
		t.Run(m.name, func(t *testing.T) {
			for _, b := range confBehaviours() {
				t.Run(b.name, func(t *testing.T) {
					for _, c := range b.needs {
						if !confHas(m.caps, c) {
							t.Skipf("%s lacks %s (declared)", m.name, c)
						}
					}
					b.run(t, m)
				})
			}
		})
	}
}

// confSoftHSM is TestMain's SoftHSM2 module, on a token made for this run.
func confSoftHSM(t *testing.T) *confModule {
	info := newTokenLabel(t)
	return &confModule{
		name: "softhsm2", path: modulePath, mod: module, label: info.Label, so: soPIN, user: userPIN,
		caps: confCaps{InitToken: true, UniqueSerial: true, ECP384: true, RSAPSS: true, AESKeygen: true, GCM: true,
			KeyWrap: true, HMAC: true, EdDSA: true, ValueSensitive: true, ModuleLockAfter: 0},
	}
}

// confTPM2 opens tpm2-pkcs11 as described by the env file in
// KEYWARD_TPM2_ENV. It returns nil (the half is skipped) when the variable
// is unset outside CI.
func confTPM2(t *testing.T) *confModule {
	path := os.Getenv(confEnvVar)
	if path == "" {
		msg := "tpm2-pkcs11 half of TestConformance not run: " + confEnvVar + " is unset; run `make test` (or `make conformance`), " +
			"or scripts/tpm2-pkcs11.sh up DIR and " + confEnvVar + "=DIR/env go test ./softhsm-tests -run TestConformance"
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: " + msg)
		}
		t.Log(msg)
		t.Run("tpm2-pkcs11", func(t *testing.T) { t.Skip(msg) })
		return nil
	}
	env, err := confReadEnv(path)
	if err != nil {
		t.Fatalf("%s=%s: %v (written by scripts/tpm2-pkcs11.sh up)", confEnvVar, path, err)
	}
	for _, k := range []string{"KEYWARD_TPM2_MODULE", "KEYWARD_TPM2_TOKEN_LABEL", "KEYWARD_TPM2_SO_PIN", "KEYWARD_TPM2_USER_PIN", "DBUS_SESSION_BUS_ADDRESS", "TPM2_PKCS11_TCTI", "TPM2_PKCS11_STORE", "TPM2TOOLS_TCTI"} {
		if env[k] == "" {
			t.Fatalf("%s: no %s (re-run scripts/tpm2-pkcs11.sh up)", path, k)
		}
	}
	// C_Initialize reads these: they must be set before the module opens.
	// Everything but Keyward's own KEYWARD_TPM2_* lines (PINs among them)
	// goes into the process environment for this test only.
	for k, v := range env {
		if !strings.HasPrefix(k, "KEYWARD_TPM2_") {
			t.Setenv(k, v)
		}
	}
	tools := confToolsEnv(env)
	clear := func(t testing.TB) {
		t.Helper()
		cmd := exec.Command("tpm2_dictionarylockout", "--clear-lockout")
		cmd.Env = tools // explicit: a cleanup may run after t.Setenv has restored the environment
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tpm2_dictionarylockout --clear-lockout: %v: %s", err, out)
		}
	}
	clear(t) // a run that died mid-lockout must not poison this one
	mod, err := pkcs11shim.OpenModule(env["KEYWARD_TPM2_MODULE"])
	if err != nil {
		t.Fatalf("open tpm2-pkcs11: %v", err)
	}
	mod.MinReinitInterval = 100 * time.Millisecond // the recovery behaviour re-initialises it
	t.Cleanup(func() { mod.Close() })
	return &confModule{
		name: "tpm2-pkcs11", path: env["KEYWARD_TPM2_MODULE"], mod: mod, label: env["KEYWARD_TPM2_TOKEN_LABEL"],
		so: env["KEYWARD_TPM2_SO_PIN"], user: env["KEYWARD_TPM2_USER_PIN"], clearLockout: clear,
		// Measured on tpm2-pkcs11 1.9.0 (Debian 12) over swtpm 0.7.1: AES
		// and generic-secret C_GenerateKey answer CKR_FUNCTION_NOT_SUPPORTED
		// although CKM_AES_KEY_GEN is listed; no GCM, no AES key wrap, no
		// EdDSA; every token reports serial 0000000000000000; the TPM locks
		// after 3 wrong PINs (TPM2_PT_MAX_AUTH_FAIL).
		caps: confCaps{InitToken: true, UniqueSerial: false, ECP384: true, RSAPSS: true, AESKeygen: false, GCM: false,
			KeyWrap: false, HMAC: false, EdDSA: false, ValueSensitive: false, ModuleLockAfter: 3},
	}
}

// confToolsEnv is the environment tpm2-tools need (the private bus and
// tabrmd), without Keyward's own lines (which hold PINs).
func confToolsEnv(env map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH")}
	for _, k := range []string{"DBUS_SESSION_BUS_ADDRESS", "TPM2TOOLS_TCTI", "TSS2_LOG"} {
		if v, ok := env[k]; ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// confReadEnv parses KEY=VALUE lines (the first '=' splits).
func confReadEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line without '=': %.20q", line)
		}
		env[k] = v
	}
	return env, sc.Err()
}

// confLabel returns a fresh key label for this run.
func confLabel(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// confOpen opens the module's token through package token with a fresh
// guard, logging in with pin.
func confOpen(t *testing.T, m *confModule, pin string) (*token.Token, *token.Guard, error) {
	t.Helper()
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "guard.db"), 0)
	tok, err := confOpenWith(t, m, g, &switchablePIN{pin: pin})
	return tok, g, err
}

// confOpenWith opens the module's token with the given guard and PIN source.
func confOpenWith(t *testing.T, m *confModule, g *token.Guard, pin token.PINSource) (*token.Token, error) {
	t.Helper()
	return confOpenLabel(t, m, m.label, g, pin)
}

func confOpenLabel(t *testing.T, m *confModule, label string, g *token.Guard, pin token.PINSource) (*token.Token, error) {
	t.Helper()
	tok, err := token.Open(context.Background(), token.Config{Kind: token.KindHSM, Module: m.path, Label: label, PIN: pin, PINGuard: g.Config(), WaitTimeout: 10 * time.Second})
	if err == nil {
		t.Cleanup(func() { tok.Close() })
	}
	return tok, err
}

// confMustOpen opens the token with the right PIN or fails the test.
func confMustOpen(t *testing.T, m *confModule) *token.Token {
	t.Helper()
	tok, _, err := confOpen(t, m, m.user)
	if err != nil {
		t.Fatalf("token.Open %s on %s: %v", m.label, m.name, err)
	}
	return tok
}
