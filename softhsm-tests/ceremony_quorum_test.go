package softhsmtests

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/keyward/keyward/pkcs11shim"
)

// Sensitive ceremonies need two enrolled officers' approvals (issue 13
// defect 2). The test officers' keys are made once with the real
// `ceremony officer keygen`; init.yaml enrols Alice, Bob and Carol; tokens
// made in this process get the same roster with the SO PIN.

var (
	cerOfficersOnce sync.Once
	cerOfficersDir  string
	cerOfficersErr  error
)

var cerOfficerNames = map[string]string{"alice": "Alice Wong", "bob": "Bob Lee", "carol": "Carol King"}

func cerOfficerDir(t *testing.T) string {
	t.Helper()
	bin := cerBinary(t)
	cerOfficersOnce.Do(func() {
		cerOfficersDir = filepath.Join(confDir, "ceremony-officers")
		if cerOfficersErr = os.Mkdir(cerOfficersDir, 0o700); cerOfficersErr != nil {
			return
		}
		for short, name := range cerOfficerNames {
			out, err := exec.Command(bin, "officer", "keygen", "-name", name, "-out", filepath.Join(cerOfficersDir, short+".key"), "-pub", filepath.Join(cerOfficersDir, short+".pub.pem")).CombinedOutput()
			if err != nil {
				cerOfficersErr = &cerError{string(out)}
				return
			}
		}
	})
	if cerOfficersErr != nil {
		t.Fatal(cerOfficersErr)
	}
	return cerOfficersDir
}

type cerError struct{ s string }

func (e *cerError) Error() string { return "officer keygen: " + e.s }

// cerEnrolOfficers writes the test officers into a token made in this
// process, as the SO (what token init's enrol: does).
func cerEnrolOfficers(t *testing.T, label string) {
	t.Helper()
	dir := cerOfficerDir(t)
	var officers []pkcs11shim.Officer
	for _, short := range []string{"alice", "bob", "carol"} {
		pub, err := readECPub(filepath.Join(dir, short+".pub.pem"))
		if err != nil {
			t.Fatal(err)
		}
		officers = append(officers, pkcs11shim.Officer{Name: cerOfficerNames[short], Public: pub})
	}
	if err := module.EnrolOfficers(pkcs11shim.Selector{Label: label}, []byte(soPIN), officers); err != nil {
		t.Fatalf("enrol officers on %s: %v", label, err)
	}
}

// cerApprovals has the officers approve file for sub and returns the
// --approval arguments; none for ceremonies that take no approval.
func cerApprovals(t *testing.T, sub []string, file string) []string {
	t.Helper()
	var who []string
	switch strings.Join(slices.DeleteFunc(slices.Clone(sub), func(s string) bool { return strings.HasPrefix(s, "-") }), " ") {
	case "token init":
		who = []string{"alice", "bob", "carol"}
	case "keygen", "backup", "restore", "zeroize", "unlock", "officer enrol":
		who = []string{"alice", "bob"}
	}
	var args []string
	for _, w := range who {
		out := filepath.Join(t.TempDir(), w+".approval")
		words := slices.DeleteFunc(slices.Clone(sub), func(s string) bool { return strings.HasPrefix(s, "-") })
		r := cerRun(t, append(append(append([]string{"approve"}, words...), "-f", file), "-key", filepath.Join(cerOfficerDir(t), w+".key"), "-out", out, "--yes")...)
		if r.code != 0 {
			t.Fatalf("approve %v by %s: %v", sub, w, r)
		}
		args = append(args, "--approval", out)
	}
	return args
}

func readECPub(path string) (*ecdsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, &cerError{path + ": no PEM"}
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, &cerError{path + ": not ECDSA"}
	}
	return pub, nil
}
