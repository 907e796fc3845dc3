package layering

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// imports returns each package of pattern with its direct imports from
// non-test files (go list's Imports: test files are not in it).
func imports(t *testing.T, root, pattern string) map[string][]string {
	t.Helper()
	cmd := exec.Command(goTool(t), "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, pattern)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", pattern, err, stderr.String())
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			m[f[0]] = f[1:]
		}
	}
	return m
}

// TestKeysvcReachesTokensOnlyThroughToken: no non-test file of keysvc or
// its subpackages imports pkcs11shim or the PKCS#11 driver; keysvc uses a
// token through its KeyStore, which token.Store implements with the
// stale-handle retry on every operation (issue 14 item 2).
func TestKeysvcReachesTokensOnlyThroughToken(t *testing.T) {
	pkgs := imports(t, moduleRoot(t), "./keysvc/...")
	if _, ok := pkgs[mod+"/keysvc"]; !ok {
		t.Fatalf("package keysvc not listed (got %d packages): the test would prove nothing", len(pkgs))
	}
	for p, imps := range pkgs {
		for _, imp := range imps {
			if under(imp, mod+"/pkcs11shim") || under(imp, "github.com/miekg/pkcs11") {
				t.Errorf("%s imports %s: keysvc reaches a token only through package token (keysvc.KeyStore)", p, imp)
			}
		}
	}
}

// testOnly are packages for tests only: no command may link them.
var testOnly = []string{mod + "/token/memtoken"}

// TestCommandsLinkNoMemtoken: token/memtoken holds keys in clear in
// memory, for unit tests; no binary may link it (nor anything else in
// testOnly).
func TestCommandsLinkNoMemtoken(t *testing.T) {
	root := moduleRoot(t)
	for _, p := range testOnly {
		if len(imports(t, root, p)) != 1 {
			t.Fatalf("go list %s: the package is not where this test looks; fix testOnly", p)
		}
	}
	roots, graph := deps(t, root, "./cmd/...")
	for _, r := range roots {
		for p, ch := range walk(graph, r, map[[2]string]bool{}) {
			if slices.Contains(testOnly, p) {
				t.Errorf("%s links the test-only %s: %s", r, p, strings.Join(ch, " → "))
			}
		}
	}
}
