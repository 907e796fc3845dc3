package softhsmtests

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// TestOpenByURI opens a token from an RFC 7512 URI alone (module-path and
// pin-source=file:), and refuses selectors that disagree or name only a slot.
func TestOpenByURI(t *testing.T) {
	info := newTokenLabel(t)
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "g.db"), 0)
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(userPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	uri := "pkcs11:token=" + info.Label + ";serial=" + info.Serial + "?module-path=" + modulePath + "&pin-source=file:" + pinFile
	tok, err := token.Open(context.Background(), token.Config{Kind: token.KindHSM, URI: uri, PINGuard: g.Config()})
	if err != nil {
		t.Fatalf("open by URI: %v", err)
	}
	defer tok.Close()
	if _, err := tok.Pool().GenerateKey(context.Background(), pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: "via-uri"}); err != nil {
		t.Fatalf("using the token: %v", err)
	}
	for name, c := range map[string]struct {
		cfg  token.Config
		want string
	}{
		"label conflict":  {token.Config{Kind: token.KindHSM, URI: uri, Label: "other", PINGuard: g.Config()}, "conflicting token label"},
		"slot-id only":    {token.Config{Kind: token.KindHSM, URI: "pkcs11:slot-id=0?module-path=" + modulePath + "&pin-source=file:" + pinFile, PINGuard: g.Config()}, "slot-id"},
		"pin in URI":      {token.Config{Kind: token.KindHSM, URI: "pkcs11:token=" + info.Label + "?pin-value=" + userPIN, Module: modulePath, PINGuard: g.Config()}, "pin-source"},
		"no such token":   {token.Config{Kind: token.KindHSM, URI: "pkcs11:token=nope?module-path=" + modulePath + "&pin-source=file:" + pinFile, PINGuard: g.Config()}, "no initialised token"},
		"group-readable":  {token.Config{Kind: token.KindHSM, URI: "pkcs11:token=" + info.Label + "?module-path=" + modulePath + "&pin-source=file:" + worldReadable(t), PINGuard: g.Config()}, "chmod 600"},
		"missing library": {token.Config{Kind: token.KindHSM, URI: "pkcs11:token=" + info.Label + "?module-path=/nonexistent/lib.so&pin-source=file:" + pinFile, PINGuard: g.Config()}, "apt-get install softhsm2"},
	} {
		tok, err := token.Open(context.Background(), c.cfg)
		if err == nil {
			tok.Close()
			t.Errorf("%s: opened", name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not say %q", name, err, c.want)
		}
		if strings.Contains(err.Error(), userPIN) {
			t.Errorf("%s: error shows the PIN", name)
		}
	}
	if st, _ := g.State(token.PINID(info, pkcs11shim.UserNormal)); st.Failures != 0 {
		t.Fatalf("refused opens touched the PIN counter: %+v", st)
	}
	if _, err := pkcs11shim.OpenModule("/nonexistent/lib.so"); !errors.Is(err, pkcs11shim.ErrModuleLoad) {
		t.Fatalf("missing library: %v", err)
	}
}

func worldReadable(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "pin644")
	os.WriteFile(p, []byte(userPIN), 0o644)
	os.Chmod(p, 0o644)
	return p
}

// TestChangePIN: the new PIN must pass the rules (R-TOK-4); a wrong old PIN
// is a counted attempt; the right one changes the PIN on the token.
func TestChangePIN(t *testing.T) {
	env := mustNewToken(t, token.KindHSM)
	ctx := context.Background()
	k, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyAES256, Label: "still-usable"})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.tok.ChangePIN([]byte(userPIN), []byte("111111")); !errors.Is(err, token.ErrPINRepeated) {
		t.Fatalf("weak PIN: %v", err)
	}
	if err := env.tok.ChangePIN([]byte(userPIN), []byte(userPIN)); !errors.Is(err, token.ErrPINReused) {
		t.Fatalf("same PIN: %v", err)
	}
	if err := env.tok.ChangePIN([]byte("999999"), []byte("p4ss-w0rd-n3w")); !errors.Is(err, token.ErrPINIncorrect) {
		t.Fatalf("wrong old PIN: %v", err)
	}
	if st, _ := env.tok.PINState(); st.Failures != 1 {
		t.Fatalf("wrong old PIN not counted: %+v", st)
	}
	if err := env.tok.ChangePIN([]byte(userPIN), []byte("p4ss-w0rd-n3w")); err != nil {
		t.Fatalf("change: %v", err)
	}
	if st, _ := env.tok.PINState(); st.Failures != 0 {
		t.Fatalf("counter not reset: %+v", st)
	}
	// The running pool is still logged in: a PIN change must not log it out.
	if _, err := env.pool.EncryptGCM(ctx, k, []byte("x"), nil); err != nil {
		t.Fatalf("pool after PIN change: %v", err)
	}
	env.tok.Close() // so C_Login really checks the PIN (no session logged in)
	if err := module.CheckLogin(pkcs11shim.Selector{Label: env.info.Label}, pkcs11shim.UserNormal, []byte("p4ss-w0rd-n3w")); err != nil {
		t.Fatalf("new PIN does not log in: %v", err)
	}
	if err := module.CheckLogin(pkcs11shim.Selector{Label: env.info.Label}, pkcs11shim.UserNormal, []byte(userPIN)); !errors.Is(err, pkcs11shim.ErrPINIncorrect) {
		t.Fatalf("old PIN still logs in: %v", err)
	}
}
