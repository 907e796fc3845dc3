package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkcs11shim"
)

// Issue 15 (hardening, gap 1): an epoch KEK made with keygen destroyable:
// true must stay destroyable when restored into a second HSM, or keysvc's
// KEK rotation stops at retirement on that HSM. The backup file records
// CKA_DESTROYABLE under its MAC; a key without it (every file made before
// the field, and every undestroyable key now) restores undestroyable.
func TestRestoreKeepsDestroyable(t *testing.T) {
	setup(t)
	ctx := context.Background()
	src := initToken(t, "dsrc")
	kf, kout := ceremonyFile(t, "keygen-kek.yaml", map[string]string{"LABEL": src})
	mustRun(t, []string{"keygen"}, kf, kout)
	bfile, bout := ceremonyFile(t, "backup.yaml", map[string]string{"LABEL": src, "KEYS": "keysvc-kek-e2, kept-kek"})
	mustRun(t, []string{"backup"}, bfile, bout)
	backup := filepath.Join(bout, "backup.json")
	shares := []string{filepath.Join(bout, "share-1.txt"), filepath.Join(bout, "share-3.txt"), filepath.Join(bout, "share-5.txt")}

	// The file says which key is destroyable, and says nothing for the
	// other: its entry is encoded exactly as before the field existed.
	raw, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	var generic struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &generic); err != nil || len(generic.Keys) != 2 {
		t.Fatalf("backup file: %v %s", err, raw)
	}
	if d, ok := generic.Keys[0]["destroyable"]; generic.Keys[0]["label"] != "keysvc-kek-e2" || d != true || !ok {
		t.Fatalf("keysvc-kek-e2 in the backup: %v; want destroyable: true", generic.Keys[0])
	}
	if _, ok := generic.Keys[1]["destroyable"]; generic.Keys[1]["label"] != "kept-kek" || ok {
		t.Fatalf("kept-kek in the backup: %v; want no destroyable field", generic.Keys[1])
	}

	// The flag is under the MAC: a file edited to drop it is refused, the
	// target untouched.
	edited := bytes.Replace(raw, []byte(`"destroyable": true`), []byte(`"destroyable": false`), 1)
	if bytes.Equal(edited, raw) {
		t.Fatal(`backup file: "destroyable": true not found`)
	}
	r, dr, _ := restoreOn(t, writeTemp(t, "edited.json", edited), shares, "")
	if r.code == 0 || !strings.Contains(r.stderr, "MAC does not verify") {
		t.Fatalf("restore of a file whose destroyable flag was edited: %v", r)
	}
	mustUntouched(t, "edited destroyable flag", dr)

	// Restore into B: the epoch KEK is destroyable there, the other is not.
	r, dr, rout := restoreOn(t, backup, shares, "")
	if r.code != 0 {
		t.Fatalf("restore: %v", r)
	}
	if v := verifyPinned(t, filepath.Join(rout, "transcript", "transcript.json")); v.code != 0 {
		t.Fatalf("restore transcript: %v", v)
	}
	md, _ := os.ReadFile(filepath.Join(rout, "transcript", "transcript.md"))
	if !strings.Contains(string(md), "destroyable with the user PIN as their originals were: keysvc-kek-e2") {
		t.Fatalf("the restore transcript does not say which keys are destroyable:\n%s", md)
	}
	p := testPool(t, dr, userPIN)
	kept, err := p.FindKey(ctx, "kept-kek")
	if err != nil {
		t.Fatal(err)
	}
	e2, err := p.FindKey(ctx, "keysvc-kek-e2")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		k    *pkcs11shim.Key
		want bool
	}{{kept, false}, {e2, true}} {
		wp, err := p.KeyWrapPolicy(ctx, c.k)
		if err != nil || wp.Destroyable != c.want || wp.Extractable {
			t.Fatalf("restored %s: %+v %v; want destroyable %v, not extractable", c.k.Label, wp, err, c.want)
		}
	}
	if err := p.DestroyKey(ctx, kept); err == nil {
		t.Fatal("restored kept-kek (not destroyable in the source) was destroyed with the user PIN")
	}
	if err := p.DestroyKey(ctx, e2); err != nil {
		t.Fatalf("restored keysvc-kek-e2 (destroyable: true in the source) cannot be destroyed: %v", err)
	}
	if _, err := p.FindKey(ctx, "keysvc-kek-e2"); !errors.Is(err, pkcs11shim.ErrKeyNotFound) {
		t.Fatalf("keysvc-kek-e2 after its destruction on the restored token: %v", err)
	}
	if _, err := p.FindKey(ctx, "kept-kek"); err != nil {
		t.Fatalf("kept-kek after the refused destruction: %v", err)
	}
}
