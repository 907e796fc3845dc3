package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkcs11shim"
)

// Issue 13 friction: `pkcs11-tool --token-label bank-hsm` prefix-matches
// bank-hsm-dr. Keyward's label matching (pkcs11shim.Selector) is exact:
// a ceremony naming bank-hsm never opens bank-hsm-dr.
func TestTokenLabelMatchIsExact(t *testing.T) {
	setup(t)
	short := newLabel("bank-hsm")
	long := short + "-dr"
	f, out := ceremonyFile(t, "init.yaml", map[string]string{"LABEL": long})
	mustRun(t, []string{"token", "init"}, f, out, "--yes")

	// Only bank-hsm-…-dr exists: naming bank-hsm-… finds no token.
	mod, err := pkcs11shim.OpenModule(modPath)
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close()
	if err := mod.Reinitialize(mod.Generation()); err != nil {
		t.Fatal(err)
	}
	if ti, err := mod.LookupToken(pkcs11shim.Selector{Label: short}); !errors.Is(err, pkcs11shim.ErrTokenNotFound) {
		t.Fatalf("label %s selected token %s (%v)", short, ti.Label, err)
	}
	before, _ := testPool(t, long, userPIN).ListTokenObjects(context.Background())
	kf, kout := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": short})
	if r := runApproved(t, []string{"keygen"}, kf); r.code != exitFailed || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("keygen on %s with only %s present: %v", short, long, r)
	}
	if _, err := os.Stat(filepath.Join(kout, "receipt-signer.pem")); !os.IsNotExist(err) {
		t.Fatalf("keygen wrote a key: %v", err)
	}
	if objs, _ := testPool(t, long, userPIN).ListTokenObjects(context.Background()); len(objs) != len(before) {
		t.Fatalf("%s changed: %v", long, objs)
	}

	// Both exist: each label selects its own token.
	f, out = ceremonyFile(t, "init.yaml", map[string]string{"LABEL": short})
	mustRun(t, []string{"token", "init"}, f, out, "--yes")
	ps, pl := testPool(t, short, userPIN), testPool(t, long, userPIN)
	if ps.Info().Serial == pl.Info().Serial {
		t.Fatalf("%s and %s are one token", short, long)
	}
	kf, kout = ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": short})
	mustRun(t, []string{"keygen"}, kf, kout)
	body, err := verifyTranscript(filepath.Join(kout, "transcript", "transcript.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if body.Tokens[0].Label != short || body.Tokens[0].Serial != ps.Info().Serial {
		t.Fatalf("keygen on %s used token %s serial %s", short, body.Tokens[0].Label, body.Tokens[0].Serial)
	}
	if objs, _ := pl.ListTokenObjects(context.Background()); len(withoutRoster(objs)) != 2 {
		t.Fatalf("keygen on %s changed %s: %v", short, long, objs)
	}
}

// Issue 13 friction: the ceremony-audit public key was only printed; token
// init writes it to audit_public_key_out (never overwriting), and that
// file pins the transcripts.
func TestInitWritesAuditPublicKey(t *testing.T) {
	setup(t)
	label := newLabel("apk")
	f, out := ceremonyFile(t, "init.yaml", map[string]string{"LABEL": label})
	pub := filepath.Join(out, "ceremony-audit.pem")
	raw, _ := os.ReadFile(f)
	os.WriteFile(f, append(raw, []byte("audit_public_key_out: "+pub+"\n")...), 0o600)
	if r := runBin(t, "token", "init", "-f", f, "--dry-run"); r.code != 0 || !strings.Contains(r.stdout, "write it to "+pub) {
		t.Fatalf("dry run: %v", r)
	}
	mustRun(t, []string{"token", "init"}, f, out, "--yes")
	if v := runBin(t, "transcript", "verify", filepath.Join(out, "transcript", "transcript.json"), "-pubkey", pub); v.code != 0 {
		t.Fatalf("transcript pinned with audit_public_key_out: %v", v)
	}
	// An existing file is never overwritten: refused before anything is done.
	f2, out2 := ceremonyFile(t, "init.yaml", map[string]string{"LABEL": newLabel("apk")})
	raw, _ = os.ReadFile(f2)
	os.WriteFile(f2, append(raw, []byte("audit_public_key_out: "+pub+"\n")...), 0o600)
	if r := runBin(t, "token", "init", "-f", f2, "--yes"); r.code != exitUsage || !strings.Contains(r.stderr, "audit_public_key_out: "+pub+" already exists") {
		t.Fatalf("init over an existing audit_public_key_out: %v", r)
	}
	if _, err := os.Stat(filepath.Join(out2, "transcript")); !os.IsNotExist(err) {
		t.Fatalf("refused init claimed transcript.dir: %v", err)
	}
}
