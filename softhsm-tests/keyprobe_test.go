package softhsmtests

import (
	"strings"
	"testing"
)

// TestKeyLookupHidesExistence (issue 12 item 8): a client without a grant
// gets the same answer for a key that exists and for one that does not,
// on GET /v1/keys/{name} and on the operations (sign, public), so it
// cannot probe key names (customer ids). An admin, who lists every key
// anyway, still learns key_not_found.
func TestKeyLookupHidesExistence(t *testing.T) {
	e := newKeysvcEnv(t)
	e.createKey(t, "cust-4711", "sign", "ec-p256", "wrapped", "sign", "read", "public")
	for _, r := range []struct{ method, path string }{
		{"GET", ""}, {"GET", "/public"}, {"POST", "/sign"},
		{"POST", "/rotate"}, {"POST", "/settings"}, {"POST", "/versions/1/disable"},
	} {
		var body any
		switch r.path {
		case "/sign":
			body = map[string]any{"message": b64("m")}
		case "/settings":
			body = map[string]any{"min_version": 1}
		case "/rotate", "/versions/1/disable":
			body = map[string]any{}
		}
		stA, outA := e.call(t, intruderToken, r.method, "/v1/keys/cust-4711"+r.path, body)
		stB, outB := e.call(t, intruderToken, r.method, "/v1/keys/cust-0815"+r.path, body)
		msgA, msgB := errMessage(outA), errMessage(outB)
		if stA != 403 || stA != stB || errCode(outA) != errCode(outB) || strings.ReplaceAll(msgA, "4711", "0815") != msgB {
			t.Errorf("%s %s: existing key %d %v, missing key %d %v: the answers differ", r.method, r.path, stA, outA, stB, outB)
		}
	}
	if st, out := e.call(t, bankingToken, "GET", "/v1/keys/cust-4711", nil); st != 200 {
		t.Fatalf("granted read: %d %v", st, out)
	}
	if out := e.must(t, 404, officerToken, "GET", "/v1/keys/cust-0815", nil); errCode(out) != "key_not_found" {
		t.Fatalf("admin: %v", out)
	}
}
