package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// The replication-key ceremony (issue 15 items 4 and 5), run as the real
// binary on SoftHSM2 tokens: generate on token A (5 shares, threshold 3),
// install on token B from 3 shares with the check value; then keysvc's way
// to the tokens (token.Store, in this process) copies an hsm key from A to
// B, and B signs what A's public key verifies. Wrong share sets are refused
// before the target token is touched.

var checkValueLine = regexp.MustCompile(`(?m)^check value: ([0-9a-f]{80})$`)

// generateReplicationKey runs mode generate on a fresh token and returns the
// token's label, the share files and the check value it printed.
func generateReplicationKey(t *testing.T, prefix string) (label string, shares []string, check string) {
	t.Helper()
	label = initToken(t, prefix)
	f, out := ceremonyFile(t, "replication-generate.yaml", map[string]string{"LABEL": label})
	r := mustRun(t, []string{"replication-key"}, f, out)
	m := checkValueLine.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("generate printed no check value: %v", r)
	}
	for i := 1; i <= 5; i++ {
		p := filepath.Join(out, fmt.Sprintf("share-%d.txt", i))
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("share %d: %v %v", i, err, st)
		}
		shares = append(shares, p)
	}
	// Neither the transcript nor stdout holds a share.
	tj, _ := os.ReadFile(filepath.Join(out, "transcript", "transcript.json"))
	tm, _ := os.ReadFile(filepath.Join(out, "transcript", "transcript.md"))
	for i, p := range shares {
		sh, err := readShare(p)
		if err != nil {
			t.Fatal(err)
		}
		for what, data := range map[string][]byte{"transcript.json": tj, "transcript.md": tm, "stdout": []byte(r.stdout)} {
			if bytes.Contains(data, []byte(hex.EncodeToString(sh.value))) || bytes.Contains(bytes.ToUpper(data), []byte(strings.ToUpper(hex.EncodeToString(sh.value[:4])))) {
				t.Fatalf("%s holds share %d", what, i+1)
			}
		}
	}
	if !bytes.Contains(tj, []byte(m[1])) {
		t.Fatalf("the transcript does not record the check value %s", m[1])
	}
	return label, shares, m[1]
}

func installFile(t *testing.T, label string, shares []string, check string) (string, string) {
	t.Helper()
	cv := ""
	if check != "" {
		cv = "check_value: " + check
	}
	return ceremonyFile(t, "replication-install.yaml", map[string]string{"LABEL": label, "SHARES": strings.Join(shares, ", "), "CHECK": cv})
}

// openStores opens each label as keysvc does (token.Open, its own PIN
// guard file) and returns their key stores. The module is re-initialised
// once first (the ceremonies ran in other processes: SoftHSM shows their
// tokens only after a new C_Initialize here); not between the opens, which
// would log the first pools out.
func openStores(t *testing.T, labels ...string) []*token.Token {
	t.Helper()
	mod, err := pkcs11shim.OpenModule(modPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mod.Close() })
	mod.MinReinitInterval = time.Millisecond
	time.Sleep(2 * time.Millisecond)
	if err := mod.Reinitialize(mod.Generation()); err != nil {
		t.Fatal(err)
	}
	var out []*token.Token
	for _, label := range labels {
		tk, err := token.Open(context.Background(), token.Config{Kind: token.KindHSM, Module: modPath, Label: label,
			PIN: token.HeldPIN(userPIN), PINGuard: token.GuardConfig{Path: filepath.Join(t.TempDir(), "guard.db")}, MaxSessions: 2, Logger: quietLog})
		if err != nil {
			t.Fatalf("open %s: %v", label, err)
		}
		t.Cleanup(func() { tk.Close() })
		out = append(out, tk)
	}
	return out
}

func TestReplicationKeyCeremony(t *testing.T) {
	setup(t)
	a, shares, check := generateReplicationKey(t, "repA")

	// The file is checked whole before anything opens (exit 2), and a dry
	// run shows the plan.
	good, _ := installFile(t, a, shares[:3], check)
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ edit, want string }{
		{"mode: install|mode: copy", "mode: must be generate or install"},
		{"mode: install\n|", "mode: required: generate"},
		{"check_value: |check_value: 00", "check_value: must be the 80 hexadecimal digits"},
		{"shares: [|threshold: 3\nshares: [", "threshold and custodians belong to mode: generate"},
		{"mode: install|mode: generate", "shares: shares and check_value belong to mode: install"},
		{"  - {officer: Bob Lee, pin: \"file:" + pinDir + "/so-part2\"}\n|", "so_pin: needs exactly two parts"},
	} {
		from, to, _ := strings.Cut(tc.edit, "|")
		if !strings.Contains(string(raw), from) {
			t.Fatalf("edit %q: %q not in the file", tc.edit, from)
		}
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(bad, []byte(strings.Replace(string(raw), from, to, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		if r := runBin(t, "replication-key", "-f", bad, "--dry-run"); r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Fatalf("edit %q: want exit 2 and %q, got %v", tc.edit, tc.want, r)
		}
	}
	if r := runBin(t, "replication-key", "-f", good, "--dry-run"); r.code != 0 || !strings.Contains(r.stdout, "compare the rebuilt key's check value with check_value "+check) {
		t.Fatalf("dry run: %v", r)
	}

	// A second generate on the same token is refused before any SO PIN.
	f, _ := ceremonyFile(t, "replication-generate.yaml", map[string]string{"LABEL": a})
	if r := runApproved(t, []string{"replication-key"}, f); r.code != exitFailed || !strings.Contains(r.stderr, "already holds a replication key") || !strings.Contains(r.stderr, check) {
		t.Fatalf("a second replication key on %s: %v", a, r)
	}

	// Install on B from 3 of the 5 shares (not the first three), with the check value.
	b := initToken(t, "repB")
	bf, bout := installFile(t, b, []string{shares[4], shares[1], shares[2]}, check)
	r := mustRun(t, []string{"replication-key"}, bf, bout)
	if !strings.Contains(r.stdout, "check value: "+check) {
		t.Fatalf("install printed another check value: %v", r)
	}

	// keysvc's way: token.Store on each token.
	ctx := context.Background()
	toks := openStores(t, a, b)
	sa, sb := toks[0].Store(), toks[1].Store()
	for _, s := range []*token.Store{sa, sb} {
		ok, err := s.Replicable(ctx)
		if err != nil || !ok {
			t.Fatalf("Replicable: %v %v", ok, err)
		}
		cv, err := s.ReplicationCheckValue(ctx)
		if err != nil || hex.EncodeToString(cv) != check {
			t.Fatalf("ReplicationCheckValue %x (%v), want %s", cv, err, check)
		}
	}
	k, err := sa.GenerateKey(ctx, token.KeySpec{Type: token.KeyECP256, Label: "cloud-key-7", Extractable: true})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := sa.ExportReplica(ctx, k)
	if err != nil {
		t.Fatalf("ExportReplica on A: %v", err)
	}
	kb, err := sb.ImportReplica(ctx, rep)
	if err != nil {
		t.Fatalf("ImportReplica on B: %v", err)
	}
	d := sha256.Sum256([]byte("pay 42.00 CNY to 6222..."))
	var sig []byte
	if err := sb.Use(ctx, token.Material{Key: kb}, func(u token.KeyUse) (err error) {
		sig, err = u.Sign(d[:], crypto.SHA256)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var pubA crypto.PublicKey
	if err := sa.Use(ctx, token.Material{Key: k}, func(u token.KeyUse) (err error) {
		pubA, err = u.PublicKey()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(pubA.(*ecdsa.PublicKey), d[:], sig) {
		t.Fatal("B's copy signs, A's public key does not verify it")
	}
	// A key that is not replicable is refused by name.
	fixed, err := sa.GenerateKey(ctx, token.KeySpec{Type: token.KeyAES256, Label: "fixed-key"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sa.ExportReplica(ctx, fixed); !errors.Is(err, token.ErrKeyUnextractable) {
		t.Fatalf("ExportReplica of a non-extractable key: %v, want ErrKeyUnextractable", err)
	}

	// Wrong share sets, each refused before token D is touched.
	for _, tk := range toks { // done with A and B
		tk.Close()
	}
	_, other, otherCheck := generateReplicationKey(t, "repC")
	if otherCheck == check {
		t.Fatal("two generated replication keys have the same check value")
	}
	for _, tc := range []struct {
		name   string
		shares []string
		check  string
		code   int
		want   string
	}{
		{"shares of two keys", []string{shares[0], shares[1], other[2]}, check, exitFailed, "the shares are of different keys"},
		{"another key's shares under this check value", []string{other[0], other[1], other[2]}, check, exitVerify, "not check_value " + check},
		{"too few shares", []string{shares[0], shares[3]}, check, exitFailed, "2 shares given; replication key"},
		{"the same share twice", []string{shares[0], shares[3], shares[3]}, "", exitFailed, "hold the same share"},
	} {
		d := initToken(t, "repD")
		f, _ := installFile(t, d, tc.shares, tc.check)
		r := runApproved(t, []string{"replication-key"}, f)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Fatalf("%s: want exit %d and %q, got %v", tc.name, tc.code, tc.want, r)
		}
		if ok, err := openStores(t, d)[0].Store().Replicable(ctx); err != nil || ok {
			t.Fatalf("%s: token %s has a replication key after a refused install (%v)", tc.name, d, err)
		}
	}
}
