package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// An officer approves on their own machine, which has neither the ceremony
// host's PIN files nor its PKCS#11 module nor its guard file: approve
// checks the file's form and shows the plan without them; the ceremony
// itself, on the ceremony host, still refuses what is missing there.
func TestApproveWithoutTheHostsFiles(t *testing.T) {
	setup(t)
	elsewhere := filepath.Join(t.TempDir(), "not-on-this-machine")
	f, _ := ceremonyFile(t, "backup.yaml", map[string]string{
		"LABEL": "bank-hsm", "KEYS": "bank-kek", "PINS": elsewhere,
		"MODULE": filepath.Join(elsewhere, "libsofthsm2.so"), "GUARD": filepath.Join(elsewhere, "keysvc.db"),
	})
	out := filepath.Join(t.TempDir(), "alice.approval")
	r := runBin(t, "approve", "backup", "-f", f, "-key", filepath.Join(officerDir, "alice.key"), "-out", out, "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "Plan you are approving") {
		t.Fatalf("approve on a machine without the ceremony host's files: %v", r)
	}
	if r := runBin(t, "backup", "-f", f, "--approval", out, "--dry-run"); r.code != exitUsage {
		t.Fatalf("the ceremony itself ran without its module, guard or PIN files: %v", r)
	}
}
