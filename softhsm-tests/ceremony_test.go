package softhsmtests

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/audit"
)

// The key ceremonies that act through keysvc's admin API (rotate,
// schedule-destroy), run as the real cmd/ceremony binary against a real
// keysvc (keysvcEnv: SoftHSM token, bbolt store, HTTP on loopback). The
// ceremony files are the templates in cmd/ceremony/testdata; the
// transcript signer is a token the binary itself initialises. The child
// processes share this package's SOFTHSM2_CONF.

var (
	cerBuildOnce sync.Once
	cerBinPath   string
	cerBuildErr  error
)

// cerBinary builds ./cmd/ceremony once per run, into the package's
// temporary SoftHSM directory (removed by TestMain).
func cerBinary(t *testing.T) string {
	t.Helper()
	cerBuildOnce.Do(func() {
		dir, err := os.MkdirTemp(confDir, "ceremony-bin-")
		if err != nil {
			cerBuildErr = err
			return
		}
		cerBinPath = filepath.Join(dir, "ceremony")
		out, err := exec.Command("go", "build", "-o", cerBinPath, "github.com/keyward/keyward/cmd/ceremony").CombinedOutput()
		if err != nil {
			cerBuildErr = fmt.Errorf("go build ./cmd/ceremony: %v\n%s", err, out)
		}
	})
	if cerBuildErr != nil {
		t.Fatal(cerBuildErr)
	}
	return cerBinPath
}

// cerResult is one run of the binary.
type cerResult struct {
	code           int
	stdout, stderr string
}

func (r cerResult) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// cerRun runs the ceremony binary with no terminal (stdin is /dev/null)
// and this process's SOFTHSM2_CONF.
func cerRun(t *testing.T, args ...string) cerResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cerBinary(t), args...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+os.Getenv("SOFTHSM2_CONF"))
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return cerResult{ee.ExitCode(), so.String(), se.String()}
	case err != nil:
		t.Fatalf("ceremony %v: %v", args, err)
	}
	return cerResult{0, so.String(), se.String()}
}

// cerPINs writes the PIN files the templates name (0600, in a 0700
// directory): the SO PIN's two parts, the user PIN, and keysvc's officer
// bearer token as admin.token.
func cerPINs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, v := range map[string]string{"so-part1": "so-Cer-5521", "so-part2": "7qz", "user": "Cer#4410!k", "admin.token": officerToken} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// cerFile fills cmd/ceremony/testdata/name's ${VARS} (MODULE, PINS, OUT and
// GUARD always; edit, if given, changes the text) and writes it into a fresh
// directory, which it returns as OUT.
func cerFile(t *testing.T, name, pins string, vars map[string]string, edit ...string) (path, out string) {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join("..", "cmd", "ceremony", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	out = t.TempDir()
	all := map[string]string{"MODULE": modulePath, "PINS": pins, "OUT": out, "GUARD": cerWorkstationGuard(t), "OFFICERS": cerOfficerDir(t)}
	for k, v := range vars {
		all[k] = v
	}
	text := os.Expand(string(tmpl), func(k string) string {
		v, ok := all[k]
		if !ok {
			t.Fatalf("%s: no value for ${%s}", name, k)
		}
		return v
	})
	if len(edit) == 2 {
		edited := strings.Replace(text, edit[0], edit[1], 1)
		if edited == text {
			t.Fatalf("%s: %q not found", name, edit[0])
		}
		text = edited
	}
	path = filepath.Join(out, name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, out
}

// cerSignerToken runs `ceremony token init` (file PINs, --yes) on a fresh
// SoftHSM token and returns its label and the printed ceremony-audit
// public key, saved as a PEM file.
func cerSignerToken(t *testing.T, pins string) (label, pubPEM string) {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	label = "cer-officers-" + hex.EncodeToString(b)
	f, out := cerFile(t, "init.yaml", pins, map[string]string{"LABEL": label})
	r := cerRun(t, append([]string{"token", "init", "-f", f, "--yes"}, cerApprovals(t, []string{"token", "init"}, f)...)...)
	if r.code != 0 {
		t.Fatalf("token init: %v", r)
	}
	i := strings.Index(r.stdout, "-----BEGIN PUBLIC KEY-----")
	j := strings.Index(r.stdout, "-----END PUBLIC KEY-----")
	if i < 0 || j < i {
		t.Fatalf("token init printed no ceremony-audit public key: %v", r)
	}
	pubPEM = filepath.Join(out, "ceremony-audit.pem")
	if err := os.WriteFile(pubPEM, []byte(r.stdout[i:j+len("-----END PUBLIC KEY-----")]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return label, pubPEM
}

// cerVerifyTranscript runs `ceremony transcript verify` pinned to the
// signer's public key and returns the Markdown transcript.
func cerVerifyTranscript(t *testing.T, out, pubPEM, ceremony string) string {
	t.Helper()
	v := cerRun(t, "transcript", "verify", filepath.Join(out, "transcript", "transcript.json"), "-pubkey", pubPEM)
	if v.code != 0 || !strings.Contains(v.stdout, "transcript ok: "+ceremony+" ceremony") {
		t.Fatalf("%s transcript does not verify: %v", ceremony, v)
	}
	md, err := os.ReadFile(filepath.Join(out, "transcript", "transcript.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(md)
}

// cerAudit counts keysvc's audit records by the officer client for op on
// key (and version, if not 0), with result.
func cerAudit(t *testing.T, e *keysvcEnv, op, key string, version int, result string) int {
	t.Helper()
	n := 0
	err := e.store.AuditRecords(0, func(r audit.Record) error {
		if r.Client == "officer" && r.Op == op && r.Key == key && (version == 0 || r.Version == version) && r.Result == result {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// cerVersion returns version v of key as keysvc's officer sees it.
func cerVersion(t *testing.T, e *keysvcEnv, key string, v int) (primary float64, ver map[string]any) {
	t.Helper()
	k := e.must(t, 200, officerToken, "GET", "/v1/keys/"+key, nil)
	for _, x := range k["versions"].([]any) {
		if m := x.(map[string]any); m["version"] == float64(v) {
			ver = m
		}
	}
	if ver == nil {
		t.Fatalf("key %s has no version %d: %v", key, v, k)
	}
	return k["primary"].(float64), ver
}

// TestCerRotateScheduleDestroy: ceremony rotate moves a real key's primary
// 1 → 2, audited as the officer, with a transcript that verifies; a
// schedule-destroy nobody could confirm (no terminal, no --yes) exits 3 and
// changes nothing; one below keysvc's minimum delay fails and changes
// nothing; with --yes version 1 is destroy-scheduled at keysvc's now + 720h.
func TestCerRotateScheduleDestroy(t *testing.T) {
	e := newKeysvcEnv(t)
	pins := cerPINs(t)
	signer, pubPEM := cerSignerToken(t, pins)
	e.createKey(t, "receipt-signer", "sign", "ec-p256", "hsm", "sign", "verify")
	if p, _ := cerVersion(t, e, "receipt-signer", 1); p != 1 {
		t.Fatalf("new key's primary is %v", p)
	}

	// rotate
	f, out := cerFile(t, "rotate.yaml", pins, map[string]string{"SIGNER": signer, "URL": e.url})
	if r := cerRun(t, "rotate", "-f", f, "--yes"); r.code != 0 {
		t.Fatalf("rotate: %v", r)
	}
	if p, _ := cerVersion(t, e, "receipt-signer", 2); p != 2 {
		t.Fatalf("primary %v after rotate, want 2", p)
	}
	if md := cerVerifyTranscript(t, out, pubPEM, "rotate"); !strings.Contains(md, "primary version 1 -> 2") {
		t.Fatalf("rotate transcript does not record 1 -> 2:\n%s", md)
	}
	if n := cerAudit(t, e, "rotate", "receipt-signer", 0, "ok"); n != 1 {
		t.Fatalf("%d rotate records by officer in keysvc's audit, want 1", n)
	}

	unchanged := func(when string) {
		t.Helper()
		p, v1 := cerVersion(t, e, "receipt-signer", 1)
		if p != 2 || v1["state"] != "enabled" || v1["destroy_at"] != nil {
			t.Fatalf("%s: key changed: primary %v, version 1 %v", when, p, v1)
		}
		if n := cerAudit(t, e, "schedule-destroy", "receipt-signer", 1, "ok"); n != 0 {
			t.Fatalf("%s: %d schedule-destroy records", when, n)
		}
	}

	// No terminal and no --yes: not confirmed, exit 3, nothing asked of keysvc.
	f, _ = cerFile(t, "schedule-destroy.yaml", pins, map[string]string{"SIGNER": signer, "URL": e.url})
	if r := cerRun(t, "schedule-destroy", "-f", f); r.code != 3 || !strings.Contains(r.stderr, "terminal") {
		t.Fatalf("schedule-destroy without --yes and without a terminal: want exit 3; %v", r)
	}
	unchanged("declined")

	// Below keysvc's MinDestroyDelay (1h): keysvc refuses, the ceremony fails.
	f, _ = cerFile(t, "schedule-destroy.yaml", pins, map[string]string{"SIGNER": signer, "URL": e.url}, "delay: 720h", "delay: 30m")
	if r := cerRun(t, "schedule-destroy", "-f", f, "--yes"); r.code != 1 || !strings.Contains(r.stderr, "schedule-destroy receipt-signer version 1") {
		t.Fatalf("schedule-destroy with delay 30m: want exit 1; %v", r)
	}
	unchanged("delay below the minimum")

	// With --yes, delay 720h (the template's).
	f, out = cerFile(t, "schedule-destroy.yaml", pins, map[string]string{"SIGNER": signer, "URL": e.url})
	if r := cerRun(t, "schedule-destroy", "-f", f, "--yes"); r.code != 0 {
		t.Fatalf("schedule-destroy: %v", r)
	}
	want := e.clock.Now().Add(720 * time.Hour) // keysvc's fake clock: 2026-11-28 09:00 UTC + 30 days
	p, v1 := cerVersion(t, e, "receipt-signer", 1)
	at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(v1["destroy_at"]))
	if err != nil || p != 2 || v1["state"] != "destroy-scheduled" || !at.Equal(want) {
		t.Fatalf("after schedule-destroy: primary %v, version 1 %v (%v); want destroy-scheduled at %s", p, v1, err, want)
	}
	if _, v2 := cerVersion(t, e, "receipt-signer", 2); v2["state"] != "enabled" {
		t.Fatalf("version 2 after schedule-destroy: %v", v2)
	}
	if md := cerVerifyTranscript(t, out, pubPEM, "schedule-destroy"); !strings.Contains(md, want.Format(time.RFC3339)) {
		t.Fatalf("schedule-destroy transcript does not name %s:\n%s", want.Format(time.RFC3339), md)
	}
	if n := cerAudit(t, e, "schedule-destroy", "receipt-signer", 1, "ok"); n != 1 {
		t.Fatalf("%d schedule-destroy records by officer in keysvc's audit, want 1", n)
	}
}

// TestCeremonyRehearsal runs scripts/ceremony-rehearsal.sh, the README's
// two-officer walk-through (init of a production and a DR token with the
// officers enrolled, a one-officer keygen refused, keygen, 3-of-5 backup,
// restore at the DR site, pinned transcript checks, an edited backup
// refused, keysvc in production mode starting on the DR token's restored
// service keys), with the binaries built from this tree: the README's
// commands stay true. The script keeps its own SoftHSM token directory.
func TestCeremonyRehearsal(t *testing.T) {
	bin := cerBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "../scripts/ceremony-rehearsal.sh", t.TempDir())
	cmd.Env = append(os.Environ(), "CEREMONY="+bin, "KEYSVC="+builtCommand(t, "keysvc"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rehearsal passed") {
		t.Fatalf("ceremony-rehearsal.sh: %v\n%s", err, out)
	}
}
