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

// TestOpenByURIPINSourceGrammar (issue 14): a URI's pin-source= is read by
// the one PIN-source grammar. file:///abs (RFC 8089, empty authority) logs
// in on SoftHSM like file:/abs; file://HOST/abs is refused before any login
// (token used to read file://x as the path //x) and touches no PIN counter.
func TestOpenByURIPINSourceGrammar(t *testing.T) {
	info := newTokenLabel(t)
	g, _ := newGuard(t, filepath.Join(t.TempDir(), "g.db"), 0)
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte(userPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "pkcs11:token=" + info.Label + "?module-path=" + modulePath + "&pin-source="
	ctx := context.Background()

	tok, err := token.Open(ctx, token.Config{Kind: token.KindHSM, URI: base + "file://" + pinFile, PINGuard: g.Config()})
	if err != nil {
		t.Fatalf("open with pin-source=file:///abs: %v", err)
	}
	if _, err := tok.Pool().GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: "via-file-uri"}); err != nil {
		t.Fatalf("using the token: %v", err)
	}
	tok.Close()

	// "file:/" + "/" + dir: a host part that, read as a path, is the PIN file.
	hostForm := "file:/" + pinFile
	_, err = token.Open(ctx, token.Config{Kind: token.KindHSM, URI: base + hostForm, PINGuard: g.Config()})
	if !errors.Is(err, pkcs11shim.ErrInvalidURI) || !errors.Is(err, pkcs11shim.ErrPINSourceSyntax) ||
		!strings.Contains(err.Error(), "file:// names a host") {
		t.Fatalf("pin-source=%s: %v; want a refusal naming the host part", hostForm, err)
	}
	if _, err := token.ParsePINSource(hostForm); !errors.Is(err, token.ErrPINSource) {
		t.Fatalf("ParsePINSource(%s) = %v; want the same refusal as the URI", hostForm, err)
	}
	if st, _ := g.State(token.PINID(info, pkcs11shim.UserNormal)); st.Failures != 0 {
		t.Fatalf("a refused pin-source touched the PIN counter: %+v", st)
	}
}
