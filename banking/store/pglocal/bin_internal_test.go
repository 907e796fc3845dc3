package pglocal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeExec(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestBin: KEYWARD_PG_BIN wins and has no fall-back; else the highest
// Debian version directory (numerically: 9 < 15); else PATH; else
// ErrNotInstalled naming the program.
func TestBin(t *testing.T) {
	root := t.TempDir()
	old := debianRoot
	debianRoot = filepath.Join(root, "usr-lib-postgresql")
	t.Cleanup(func() { debianRoot = old })
	writeExec(t, filepath.Join(debianRoot, "9", "bin", "initdb"))
	writeExec(t, filepath.Join(debianRoot, "15", "bin", "initdb"))
	if err := os.MkdirAll(filepath.Join(debianRoot, "15", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeExec(t, filepath.Join(debianRoot, "9", "bin", "pg_ctl")) // only in 9
	pathDir := filepath.Join(root, "path")
	writeExec(t, filepath.Join(pathDir, "pg_waldump"))
	own := filepath.Join(root, "own")
	writeExec(t, filepath.Join(own, "initdb"))
	t.Setenv("PATH", pathDir)

	t.Setenv("KEYWARD_PG_BIN", "")
	for name, want := range map[string]string{
		"initdb":     filepath.Join(debianRoot, "15", "bin", "initdb"),
		"pg_ctl":     filepath.Join(debianRoot, "9", "bin", "pg_ctl"),
		"pg_waldump": filepath.Join(pathDir, "pg_waldump"),
	} {
		if got, err := Bin(name); err != nil || got != want {
			t.Errorf("Bin(%s) = %s, %v; want %s", name, got, err, want)
		}
	}
	if _, err := Bin("pg_nothing"); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("Bin(pg_nothing): %v, want ErrNotInstalled", err)
	}

	t.Setenv("KEYWARD_PG_BIN", own)
	if got, err := Bin("initdb"); err != nil || got != filepath.Join(own, "initdb") {
		t.Errorf("with KEYWARD_PG_BIN: Bin(initdb) = %s, %v", got, err)
	}
	if _, err := Bin("pg_ctl"); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("with KEYWARD_PG_BIN: Bin(pg_ctl) found outside it: %v", err)
	}
}

// TestArchiveCommandRefusesShellCharacters: a path that would change the
// meaning of the shell command is refused, not quoted.
func TestArchiveCommandRefusesShellCharacters(t *testing.T) {
	for _, dir := range []string{"/a b", "/a'b", "/a$b", "/a%b", "/a;b", "/a`b`", "/a|b", "/a\nb", "/a*"} {
		if _, err := archiveCommand(dir); err == nil {
			t.Errorf("archiveCommand(%q) accepted", dir)
		}
	}
	cmd, err := archiveCommand("/srv/wal")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"test -f /srv/wal/%f", "cmp -s %p /srv/wal/%f", "mv /srv/wal/%f.tmp /srv/wal/%f"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("archive command %q lacks %q", cmd, want)
		}
	}
}
