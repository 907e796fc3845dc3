package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 13 friction: a failed run used up transcript.dir. What can be
// checked — PIN files and their modes, inputs, the module — is checked
// before the directory is claimed, and in --dry-run.
func TestPreflightKeepsTranscriptDir(t *testing.T) {
	setup(t)
	label := newLabel("pre")
	f, out := ceremonyFile(t, "init.yaml", map[string]string{"LABEL": label})
	raw, _ := os.ReadFile(f)
	pins := t.TempDir()
	userFile := filepath.Join(pins, "user")
	if err := os.WriteFile(userFile, []byte(userPIN), 0o644); err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(raw), "user_pin: file:"+pinDir+"/user", "user_pin: file:"+userFile, 1)
	os.WriteFile(f, []byte(text), 0o600)
	transcript := filepath.Join(out, "transcript")
	for _, args := range [][]string{{"--dry-run"}, {"--yes"}} {
		r := runBin(t, append([]string{"token", "init", "-f", f}, args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "user_pin: PIN file "+userFile+" is readable or writable by group or others (mode 0644)") {
			t.Fatalf("init %v with a 0644 PIN file: want exit 2 naming user_pin; %v", args, r)
		}
		if _, err := os.Stat(transcript); !os.IsNotExist(err) {
			t.Fatalf("init %v with a 0644 PIN file claimed transcript.dir: %v", args, err)
		}
	}
	os.Remove(userFile)
	if r := runBin(t, "token", "init", "-f", f, "--yes"); r.code != exitUsage || !strings.Contains(r.stderr, "user_pin: PIN file "+userFile+": no such file") {
		t.Fatalf("init with a missing PIN file: %v", r)
	}
	os.WriteFile(userFile, []byte(userPIN), 0o400)
	// A module that does not load: refused in a dry run too.
	notLib := filepath.Join(t.TempDir(), "libnot.so")
	os.WriteFile(notLib, []byte("not a library"), 0o644)
	mf := filepath.Join(t.TempDir(), "m.yaml")
	os.WriteFile(mf, []byte(strings.Replace(text, "module: "+modPath, "module: "+notLib, 1)), 0o600)
	if r := runBin(t, "token", "init", "-f", mf, "--dry-run"); r.code != exitUsage || !strings.Contains(r.stderr, "module: "+notLib+" cannot be loaded") {
		t.Fatalf("dry run with a module that does not load: %v", r)
	}
	// Fixed, the same file and transcript.dir work: nothing was used up.
	mustRun(t, []string{"token", "init"}, f, out, "--yes")
}
