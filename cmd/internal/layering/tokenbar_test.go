package layering

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
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

// unguardedLogins are pkcs11shim names through which a program could log
// in to a token without token's PIN guard: a pool of its own (NewPool with
// an Authenticator) or a direct C_Login, C_InitPIN or C_SetPIN. Method
// names are matched by name (no type check): token's guarded equivalents
// are called otherwise (Open, Admin.Unlock, Admin.ChangePIN).
var unguardedLogins = map[string]bool{
	"NewPool": true, "PoolConfig": true, "Authenticator": true, "LoginFunc": true, // package-level
	"CheckLogin": true, "InitPIN": true, "SetPIN": true, "Login": true, // methods of Module and Pool
}

// TestCommandsLogInOnlyThroughToken: no non-test file of a command builds
// its own pkcs11shim pool or logs in directly; every user login goes
// through token.Open, which builds the PIN guard from Config.PINGuard (a
// bbolt file: six wrong PINs lock across runs), and every SO login through
// token.Admin or Guard.Attempt (issue 14 item 2).
func TestCommandsLogInOnlyThroughToken(t *testing.T) {
	root := moduleRoot(t)
	cmd := exec.Command(goTool(t), "list", "-f", `{{.Dir}}{{range .GoFiles}} {{.}}{{end}}`, "./cmd/...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./cmd/...: %v", err)
	}
	files := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		for _, name := range f[1:] {
			files++
			path := filepath.Join(f[0], name)
			af, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			shim, tokenCode := "", false // pkcs11shim's local name; whether the file reaches tokens at all
			for _, imp := range af.Imports {
				switch imp.Path.Value {
				case `"` + mod + `/pkcs11shim"`:
					shim, tokenCode = "pkcs11shim", true
					if imp.Name != nil {
						shim = imp.Name.Name
					}
				case `"` + mod + `/token"`:
					tokenCode = true
				}
			}
			ast.Inspect(af, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.SelectorExpr:
					if id, ok := n.X.(*ast.Ident); ok && id.Name == shim && unguardedLogins[n.Sel.Name] {
						t.Errorf("%s: uses %s.%s: log in through token.Open (PIN guard) instead", rel(root, path), shim, n.Sel.Name)
					}
				case *ast.CallExpr:
					if sel, ok := n.Fun.(*ast.SelectorExpr); ok && tokenCode && unguardedLogins[sel.Sel.Name] {
						if id, ok := sel.X.(*ast.Ident); !ok || id.Name != shim {
							t.Errorf("%s: calls .%s: a direct login past the PIN guard; use token.Open or token.Admin", rel(root, path), sel.Sel.Name)
						}
					}
				}
				return true
			})
		}
	}
	if files < 10 {
		t.Fatalf("only %d command files found: the test would prove nothing", files)
	}
}

func rel(root, path string) string {
	if r, err := filepath.Rel(root, path); err == nil {
		return r
	}
	return path
}
