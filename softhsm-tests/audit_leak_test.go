package softhsmtests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestAuditHoldsNoPasswordFunction is issue 12 item 1's regression test: a
// known password goes through banking's enrolment and login (real banking
// and keysvc servers on loopback, real bbolt files); afterwards no file
// under either data directory holds it in any form an offline guesser
// could test against: plain, hex, base64, SHA-256 of the password, and for
// every request banking sent keysvc the SHA-256 of the body and of the
// message, raw and hex.
func TestAuditHoldsNoPasswordFunction(t *testing.T) {
	be := newBankEnv(t)
	const password = "Gl4cier-Walk-7q" // what enrol and login send
	c := be.enrol(t, "leaktest", "Bob Li", "13800002222", "110101199003070011", false, false, "", "")
	be.login(t, c, "dev-1")
	if err := be.ks.svc.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}

	forms := map[string][]byte{}
	add := func(name string, b []byte) {
		forms[name] = b
		forms[name+" (hex)"] = []byte(hex.EncodeToString(b))
		forms[name+" (HEX)"] = bytes.ToUpper([]byte(hex.EncodeToString(b)))
		forms[name+" (base64)"] = []byte(base64.StdEncoding.EncodeToString(b))
		forms[name+" (base64url)"] = []byte(base64.RawURLEncoding.EncodeToString(b))
	}
	add("password", []byte(password))
	pwSum := sha256.Sum256([]byte(password))
	add("SHA-256 of the password", pwSum[:])
	macs := 0
	for i, body := range be.kmsBodies.all() {
		sum := sha256.Sum256(body)
		add("SHA-256 of keysvc request body "+itoa(i), sum[:])
		var req struct {
			Message []byte `json:"message"`
		}
		if json.Unmarshal(body, &req) == nil && bytes.Contains(req.Message, []byte(password)) {
			macs++
			msgSum := sha256.Sum256(req.Message)
			add("keysvc request message "+itoa(i), req.Message)
			add("SHA-256 of keysvc request message "+itoa(i), msgSum[:])
		}
	}
	if macs < 2 {
		t.Fatalf("banking sent the password to keysvc in %d requests; want its enrolment and login MACs", macs)
	}

	be.ks.stop() // every write on disk, the store closed
	dirs := []string{filepath.Dir(be.ks.dbPath), be.dir}
	files := 0
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			for name, form := range forms {
				if bytes.Contains(raw, form) {
					t.Errorf("%s holds the %s", path, name)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if files < 2 {
		t.Fatalf("read %d files; want keysvc.db and bank.db at least", files)
	}
}

func itoa(i int) string {
	return string(rune('0'+i/100%10)) + string(rune('0'+i/10%10)) + string(rune('0'+i%10))
}
