package layering

import (
	"testing"
)

// edge is the one HTTP edge keysvc/api and banking share (issue 14 item 3).
const edge = mod + "/keysvc/wire/httpedge"

// TestEdgeIsALeaf: the edge links no Keyward package at all — not keysvc,
// token or banking, nor even keysvc/wire — so both services can use it
// and banking keeps building without cgo. Its outside dependencies are
// fiber and go-json-experiment.
func TestEdgeIsALeaf(t *testing.T) {
	roots, graph := deps(t, moduleRoot(t), "./keysvc/wire/httpedge")
	if len(roots) != 1 || roots[0] != edge {
		t.Fatalf("go list ./keysvc/wire/httpedge = %v", roots)
	}
	for p, chain := range walk(graph, edge, map[[2]string]bool{}) {
		if p != edge && under(p, mod) {
			t.Errorf("the edge reaches %s: %v", p, chain)
		}
		if under(p, "github.com/miekg/pkcs11") || under(p, "github.com/google/go-tpm") || under(p, "go.etcd.io/bbolt") {
			t.Errorf("the edge reaches %s: %v", p, chain)
		}
	}
}
