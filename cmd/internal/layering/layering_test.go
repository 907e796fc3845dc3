// Package layering holds the import bar of the clients of keysvc (issue 14):
// the banking app, the customer's client bankcli and keysvc's Go client
// talk to keysvc over HTTP only, so they link no PKCS#11 driver, no token
// code, no TPM stack and none of keysvc's server side, and they build
// without cgo. keysvc itself reaches a token only through package token
// (tokenbar_test.go). docs/ARCHITECTURE.md's package map states the rules;
// these tests enforce them.
package layering

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/keyward/keyward"

// clients are the packages under the bar (patterns as go list reads them).
var clients = []string{"./cmd/banking", "./cmd/bankcli", "./keysvc/client", "./banking/..."}

// forbidden are the import paths (and their subpackages) no client may
// link: the PKCS#11 driver and its seam, token (and token/tpm), the TPM
// stack, and keysvc's server side (which brings keysvc's bbolt store).
var forbidden = []string{
	"github.com/miekg/pkcs11",
	mod + "/pkcs11shim",
	mod + "/token", // token/smcrypto, txformat and pinsource, leaves, are allowed below
	"github.com/google/go-tpm",
	mod + "/keysvc", // the Service; keysvc/wire and keysvc/client are allowed below
	mod + "/keysvc/api",
	mod + "/keysvc/boltstore",
	mod + "/keysvc/audit",
}

// allowedUnder are the subpackages of forbidden trees a client may link.
var allowedUnder = []string{
	mod + "/keysvc/wire",
	mod + "/keysvc/client",
	mod + "/token/smcrypto",
	mod + "/token/txformat",
	mod + "/token/l10n",      // languages, times and amounts for readers: golang.org/x/text only (txformat's display uses it)
	mod + "/token/pinsource", // the PIN-source grammar and readers: standard library only
	mod + "/token/l10n",      // language, catalogues, times and amounts: golang.org/x/text only (issue 18)
	mod + "/keysvc/audit",    // record, chain and checkpoint formats (a leaf: gmsm only); banking's own trail reuses them (issue 18)
}

// exceptions are import edges the bar tolerates, each with its reason. An
// exception that no longer occurs fails the test: delete it, so the bar
// only tightens. While a package under the bar depends on an exception
// marked cgo (the excepted package links the PKCS#11 driver), its cgo-free
// build is not checked: it cannot pass.
var exceptions = []struct {
	from, to, why string
	cgo           bool
}{
	{mod + "/keysvc/secrets", mod + "/token/tpm",
		"banking's own secrets file is sealed to the host TPM (pure Go, no cgo): a legitimate use of the TPM stack, not of keysvc", false},
}

// bboltOwners may import go.etcd.io/bbolt: banking/store, whose bbolt
// backend every banking package and cmd/banking reach through the store
// contract (issue 17). bbolt reached through anything else (keysvc's
// store, a banking package importing it again) is a breach.
var bboltOwners = []string{mod + "/banking/store", "go.etcd.io/bbolt"}

type pkg struct {
	ImportPath string
	Imports    []string
	Standard   bool
}

func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func isForbidden(path string) bool {
	for _, a := range allowedUnder {
		if under(path, a) {
			return false
		}
	}
	for _, f := range forbidden {
		if f == mod+"/keysvc" {
			if path == f {
				return true
			}
			continue
		}
		if under(path, f) {
			return true
		}
	}
	return false
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", dir, err)
	}
	return dir
}

func goTool(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to check the import bar: %v", err)
	}
	return gobin
}

// deps returns the dependency graph of pattern (go list -deps).
func deps(t *testing.T, root, pattern string) (roots []string, graph map[string]pkg) {
	t.Helper()
	cmd := exec.Command(goTool(t), "list", "-deps", "-json=ImportPath,Imports,Standard", pattern)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pattern, err, stderr.String())
	}
	graph = map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		graph[p.ImportPath] = p
	}
	cmd = exec.Command(goTool(t), "list", pattern)
	cmd.Dir = root
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pattern, err)
	}
	return strings.Fields(string(out)), graph
}

func excepted(from, to string) bool {
	for _, e := range exceptions {
		if e.from == from && e.to == to {
			return true
		}
	}
	return false
}

// needsCgo reports whether one of the exception edges used needs cgo.
func needsCgo(used map[[2]string]bool) bool {
	for _, e := range exceptions {
		if e.cgo && used[[2]string{e.from, e.to}] {
			return true
		}
	}
	return false
}

// walk visits what start reaches without crossing an exception edge and
// returns each reached package's shortest import chain from start. used
// collects the exception edges met.
func walk(graph map[string]pkg, start string, used map[[2]string]bool) map[string][]string {
	chain := map[string][]string{start: {start}}
	queue := []string{start}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, imp := range graph[p].Imports {
			if excepted(p, imp) {
				used[[2]string{p, imp}] = true
				continue
			}
			if _, seen := chain[imp]; seen {
				continue
			}
			if _, known := graph[imp]; !known {
				continue // "C" and other pseudo-packages
			}
			chain[imp] = append(slices.Clone(chain[p]), imp)
			queue = append(queue, imp)
		}
	}
	return chain
}

// TestClientsLinkNoTokenCode is the bar: no package under it reaches a
// forbidden package (the failure names the import chain), bbolt comes only
// from banking's own stores, and the packages build with CGO_ENABLED=0.
func TestClientsLinkNoTokenCode(t *testing.T) {
	root := moduleRoot(t)
	used := map[[2]string]bool{}
	var cgoFree []string
	for _, pattern := range clients {
		roots, graph := deps(t, root, pattern)
		for _, r := range roots {
			usedHere := map[[2]string]bool{}
			chains := walk(graph, r, usedHere)
			for e := range usedHere {
				used[e] = true
			}
			if !needsCgo(usedHere) {
				cgoFree = append(cgoFree, r)
			}
			var bad []string
			for p, ch := range chains {
				if isForbidden(p) {
					bad = append(bad, fmt.Sprintf("%s is linked: %s", p, strings.Join(ch, " → ")))
				}
				if slices.Contains(graph[p].Imports, "go.etcd.io/bbolt") && !slices.ContainsFunc(bboltOwners, func(o string) bool { return under(p, o) }) {
					bad = append(bad, fmt.Sprintf("go.etcd.io/bbolt comes through %s, not banking's own stores: %s", p, strings.Join(ch, " → ")))
				}
			}
			slices.Sort(bad)
			for _, b := range bad {
				t.Errorf("%s: %s", r, b)
			}
		}
	}
	for _, e := range exceptions {
		if !used[[2]string{e.from, e.to}] {
			t.Errorf("exception %s → %s no longer occurs; delete it from exceptions (it was: %s)", e.from, e.to, e.why)
		}
	}

	// Build without cgo, as a customer or an air-gapped bank host would.
	cmd := exec.Command(goTool(t), append([]string{"build", "-o", t.TempDir()}, cgoFree...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("CGO_ENABLED=0 go build %s: %v\n%s", strings.Join(cgoFree, " "), err, out)
	}
	for _, p := range []string{mod + "/cmd/bankcli", mod + "/keysvc/client", mod + "/banking"} {
		if !slices.Contains(cgoFree, p) {
			t.Errorf("%s must build without cgo and may use no exception", p)
		}
	}
}
