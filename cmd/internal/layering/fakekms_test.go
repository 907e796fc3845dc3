package layering

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// fakeKMS is banking's in-memory keysvc for unit tests (issue 14 item 2).
const fakeKMS = mod + "/banking/internal/fakekms"

// TestNoCommandLinksFakeKMS: no binary links banking/internal/fakekms, the
// fake keysvc of banking's unit tests (like boltsurgeon, it is for tests
// only). The check is shown to see the package where it is linked: the
// test binary of banking does.
func TestNoCommandLinksFakeKMS(t *testing.T) {
	root := moduleRoot(t)
	roots, graph := deps(t, root, "./cmd/...")
	if len(roots) == 0 {
		t.Fatal("go list ./cmd/... found no commands")
	}
	if _, linked := graph[fakeKMS]; linked {
		t.Errorf("go list -deps ./cmd/... holds %s, the test-only fake keysvc", fakeKMS)
		for _, r := range roots {
			if chain, ok := walk(graph, r, map[[2]string]bool{})[fakeKMS]; ok {
				t.Errorf("%s links it: %s", r, strings.Join(chain, " → "))
			}
		}
	}

	// The same check on banking's tests finds it: it is not vacuous.
	if tg := testDeps(t, root, "./banking"); !slices.Contains(tg, fakeKMS) {
		t.Errorf("banking's test binary does not link %s: the check above could not see it either (was it renamed?)", fakeKMS)
	}
}

// TestBankingTestsLinkNoTokenCode: banking's test binaries (its unit layer
// over fakekms included) stay under the clients' bar — no PKCS#11 driver,
// no token code, no TPM stack, no keysvc server side — and build without
// cgo; fakekms itself imports only keysvc/wire, token/smcrypto, gmsm and
// the standard library.
func TestBankingTestsLinkNoTokenCode(t *testing.T) {
	root := moduleRoot(t)
	var bad []string
	for _, p := range testDeps(t, root, "./banking/...") {
		if isForbidden(p) {
			bad = append(bad, p)
		}
	}
	slices.Sort(bad)
	for _, p := range slices.Compact(bad) {
		t.Errorf("a test binary of banking links %s", p)
	}

	_, graph := deps(t, root, "./banking/internal/fakekms")
	for _, imp := range graph[fakeKMS].Imports {
		if graph[imp].Standard || imp == mod+"/keysvc/wire" || imp == mod+"/token/smcrypto" || under(imp, "github.com/emmansun/gmsm") {
			continue
		}
		t.Errorf("fakekms imports %s; it may import only keysvc/wire, token/smcrypto, gmsm and the standard library", imp)
	}

	// Type-check every test of banking without cgo (vet compiles the
	// test files, which go build does not).
	cmd := exec.Command(goTool(t), "vet", "./banking/...")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("CGO_ENABLED=0 go vet ./banking/...: %v\n%s", err, out)
	}
}

// testDeps lists the packages the test binaries of pattern link (go list
// -deps -test), by import path: test variants ("p [p.test]") and the
// generated main packages ("p.test") are folded into their package.
func testDeps(t *testing.T, root, pattern string) []string {
	t.Helper()
	cmd := exec.Command(goTool(t), "list", "-deps", "-test", "-f", "{{.ImportPath}}", pattern)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps -test %s: %v", pattern, err)
	}
	var paths []string
	for line := range strings.Lines(string(out)) {
		p, _, _ := strings.Cut(strings.TrimSpace(line), " [")
		if p != "" {
			paths = append(paths, strings.TrimSuffix(p, ".test"))
		}
	}
	if len(paths) == 0 {
		t.Fatalf("go list -deps -test %s listed nothing", pattern)
	}
	return paths
}
