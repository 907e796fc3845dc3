package boltsurgeon_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoCommandImportsSurgeon: the surgeon damages audit logs on purpose, so
// no binary may link it (issue 12 item 9, R-SRV-9: nothing meant for testing
// reaches production).
func TestNoCommandImportsSurgeon(t *testing.T) {
	const surgeon = "github.com/keyward/keyward/keysvc/boltstore/boltsurgeon"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/keyward/keyward/cmd/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps printed %d packages: %s", len(deps), out)
	}
	for _, d := range deps {
		if d == surgeon {
			t.Fatalf("a command under cmd/ depends on %s", surgeon)
		}
	}
}
