package pglocal

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
)

// ErrNotInstalled is returned (wrapped) by Bin, and so by Start and
// Restore, when a PostgreSQL server program cannot be found. Install
// Debian's postgresql package (scripts/deps.sh does) or point
// KEYWARD_PG_BIN at the directory holding initdb and postgres.
var ErrNotInstalled = errors.New("pglocal: PostgreSQL server programs not found")

// debianRoot is where Debian installs each major version's server
// programs, one directory per version: /usr/lib/postgresql/<N>/bin.
var debianRoot = "/usr/lib/postgresql"

// Bin returns the path of the PostgreSQL program name (initdb, postgres,
// pg_ctl, pg_basebackup, pg_archivecleanup, …), looked for in order:
//
//  1. the directory KEYWARD_PG_BIN names, when set (and only there: a
//     name missing from it is an error, never a silent fall-back);
//  2. /usr/lib/postgresql/<N>/bin for the highest installed N (Debian's
//     layout: the server programs are not on PATH there);
//  3. PATH.
func Bin(name string) (string, error) {
	if dir := os.Getenv("KEYWARD_PG_BIN"); dir != "" {
		p := filepath.Join(dir, name)
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("%w: %s is not an executable file (KEYWARD_PG_BIN=%s)", ErrNotInstalled, p, dir)
	}
	for _, dir := range debianBinDirs() {
		p := filepath.Join(dir, name)
		if isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w: no %s in KEYWARD_PG_BIN, %s/<version>/bin or PATH (install Debian's postgresql package: scripts/deps.sh)",
		ErrNotInstalled, name, debianRoot)
}

// debianBinDirs lists /usr/lib/postgresql/<N>/bin, highest N first.
func debianBinDirs() []string {
	entries, err := os.ReadDir(debianRoot)
	if err != nil {
		return nil
	}
	var versions []int
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			versions = append(versions, n)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(versions)))
	dirs := make([]string, 0, len(versions))
	for _, v := range versions {
		dirs = append(dirs, filepath.Join(debianRoot, strconv.Itoa(v), "bin"))
	}
	return dirs
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
