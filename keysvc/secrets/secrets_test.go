package secrets_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/secrets"
	"github.com/keyward/keyward/token/tpm"
	"github.com/keyward/keyward/token/tpm/tpmtest"
)

// cheapKDF keeps the tests fast; the format records the parameters.
var cheapKDF = &secrets.KDF{Time: 1, MemoryKiB: 1024, Threads: 1}

const pass = "correct horse battery"

func bundle() secrets.Bundle {
	return secrets.Bundle{secrets.TokenPIN: []byte("482913"), secrets.TLSKey: []byte("-----BEGIN EC PRIVATE KEY-----\nMHc...\n-----END EC PRIVATE KEY-----\n")}
}

func passphrase(p string) func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(p), nil }
}

func openTPM(t *testing.T, spec string) *tpm.TPM {
	t.Helper()
	tp, err := tpm.Open(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	return tp
}

func writeRead(t *testing.T, f *secrets.File) *secrets.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secrets.json")
	if err := f.Write(path, false); err != nil {
		t.Fatal(err)
	}
	g, err := secrets.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestPassphraseRoundTrip(t *testing.T) {
	f, err := secrets.Seal(bundle(), secrets.Options{Passphrase: []byte(pass), KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	f = writeRead(t, f)
	b, how, err := f.Open(secrets.Unlocker{Passphrase: passphrase(pass)})
	if err != nil {
		t.Fatal(err)
	}
	if how.Slot != secrets.SlotPassphrase || string(b[secrets.TokenPIN]) != "482913" || !bytes.Equal(b[secrets.TLSKey], bundle()[secrets.TLSKey]) {
		t.Fatalf("opened %v by %v", b.Names(), how)
	}
	if _, _, err := f.Open(secrets.Unlocker{Passphrase: passphrase("wrong horse battery")}); !errors.Is(err, secrets.ErrPassphrase) {
		t.Fatalf("wrong passphrase: %v, want ErrPassphrase", err)
	}
	if _, _, err := f.Open(secrets.Unlocker{}); !errors.Is(err, secrets.ErrNoSlot) {
		t.Fatalf("nothing given: %v, want ErrNoSlot", err)
	}
}

// The file on disk holds no secret, and edits to it are caught.
func TestFileHoldsNoClearSecretAndDetectsEdits(t *testing.T) {
	f, err := secrets.Seal(bundle(), secrets.Options{Passphrase: []byte(pass), KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "secrets.json")
	if err := f.Write(path, false); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	for _, s := range []string{"482913", "PRIVATE KEY", pass} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("the file contains %q in clear", s)
		}
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if err := f.Write(path, false); err == nil {
		t.Error("Write without replace overwrote an existing file")
	}

	edits := map[string]func(*secrets.File){
		"names claim other contents": func(f *secrets.File) { f.Names = []string{secrets.TokenPIN} },
		"ciphertext bit flipped":     func(f *secrets.File) { f.Ciphertext[3] ^= 1 },
		"kdf weakened":               func(f *secrets.File) { f.Slots[0].KDF.Time = 1; f.Slots[0].KDF.MemoryKiB = 8 },
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			g, err := secrets.Read(path)
			if err != nil {
				t.Fatal(err)
			}
			edit(g)
			b, _, err := g.Open(secrets.Unlocker{Passphrase: passphrase(pass)})
			if err == nil {
				t.Fatalf("an edited file opened: %v", b.Names())
			}
			if !errors.Is(err, secrets.ErrTampered) && !errors.Is(err, secrets.ErrPassphrase) {
				t.Fatalf("err %v, want ErrTampered or ErrPassphrase", err)
			}
		})
	}
}

func TestReadRefuses(t *testing.T) {
	dir := t.TempDir()
	f, err := secrets.Seal(bundle(), secrets.Options{Passphrase: []byte(pass), KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s.json")
	if err := f.Write(path, false); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	if _, err := secrets.Read(path); !errors.Is(err, secrets.ErrPermissions) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable file: %v", err)
	}
	other := filepath.Join(dir, "other.json")
	os.WriteFile(other, []byte(`{"format":"something-else","slots":[{"type":"passphrase","kdf":{}}]}`), 0o600)
	if _, err := secrets.Read(other); !errors.Is(err, secrets.ErrFormat) {
		t.Errorf("other format: %v", err)
	}
	if _, err := secrets.Seal(bundle(), secrets.Options{Passphrase: []byte("short"), KDF: cheapKDF}); err == nil {
		t.Error("a 5-character passphrase was accepted")
	}
	if _, err := secrets.Seal(bundle(), secrets.Options{}); err == nil {
		t.Error("a file with no slot was made")
	}
	if _, err := secrets.Seal(secrets.Bundle{"Bad Name": []byte("x")}, secrets.Options{Passphrase: []byte(pass)}); err == nil {
		t.Error("a bad secret name was accepted")
	}
}

// A copied disk: the file opens on its own TPM, not on another machine's,
// where only the passphrase gets in.
func TestTPMSlotAndCopiedDisk(t *testing.T) {
	here := openTPM(t, tpmtest.Start(t))
	f, err := secrets.Seal(bundle(), secrets.Options{TPM: here, Passphrase: []byte(pass), KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	f = writeRead(t, f)
	b, how, err := f.Open(secrets.Unlocker{TPM: here})
	if err != nil || how.Slot != secrets.SlotTPM || string(b[secrets.TokenPIN]) != "482913" {
		t.Fatalf("unattended open: %v by %+v", err, how)
	}
	elsewhere := openTPM(t, tpmtest.Start(t))
	if _, _, err := f.Open(secrets.Unlocker{TPM: elsewhere}); !errors.Is(err, tpm.ErrWrongTPM) {
		t.Fatalf("on another TPM: %v, want tpm.ErrWrongTPM", err)
	}
	b, how, err = f.Open(secrets.Unlocker{TPM: elsewhere, Passphrase: passphrase(pass)})
	if err != nil || how.Slot != secrets.SlotPassphrase || !errors.Is(how.TPMErr, tpm.ErrWrongTPM) {
		t.Fatalf("passphrase fallback: %v by %+v", err, how)
	}
	if string(b[secrets.TokenPIN]) != "482913" {
		t.Fatal("wrong contents")
	}
}

// PCR-bound: a changed boot state refuses the TPM slot; reseal with the
// passphrase binds the same contents to the new state.
func TestPCRChangeAndReseal(t *testing.T) {
	tp := openTPM(t, tpmtest.Start(t))
	pcrs := []int{16}
	f, err := secrets.Seal(bundle(), secrets.Options{TPM: tp, PCRs: pcrs, Passphrase: []byte(pass), KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Open(secrets.Unlocker{TPM: tp}); err != nil {
		t.Fatal(err)
	}
	if err := tp.ExtendPCR(16, []byte("a new kernel")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Open(secrets.Unlocker{TPM: tp}); !errors.Is(err, tpm.ErrPCRMismatch) {
		t.Fatalf("after a PCR change: %v, want tpm.ErrPCRMismatch", err)
	}
	before := f.Ciphertext
	if _, err := f.Reseal(secrets.Unlocker{Passphrase: passphrase("not the passphrase")}, tp, pcrs, time.Now()); !errors.Is(err, secrets.ErrPassphrase) {
		t.Fatalf("reseal with a wrong passphrase: %v", err)
	}
	if _, err := f.Reseal(secrets.Unlocker{Passphrase: passphrase(pass)}, tp, pcrs, time.Now()); err != nil {
		t.Fatal(err)
	}
	f = writeRead(t, f)
	b, how, err := f.Open(secrets.Unlocker{TPM: tp})
	if err != nil || how.Slot != secrets.SlotTPM || string(b[secrets.TokenPIN]) != "482913" {
		t.Fatalf("after reseal: %v by %+v", err, how)
	}
	if !bytes.Equal(before, f.Ciphertext) || len(f.Slots) != 2 {
		t.Fatalf("reseal changed the contents or the slots: %d slots", len(f.Slots))
	}
	raw, _ := json.Marshal(f)
	if bytes.Contains(raw, []byte("482913")) {
		t.Fatal("clear PIN in the file")
	}
}

// An edited passphrase slot asking Argon2id for absurd work is refused when
// the file is read, before any derivation runs (the AAD would catch the edit
// only after the derivation).
func TestReadRefusesUnboundedKDF(t *testing.T) {
	f, err := secrets.Seal(bundle(), secrets.Options{Passphrase: []byte(pass), KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "s.json")
	if err := f.Write(path, false); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, edit := range []struct{ field, huge string }{
		{"memory_kib", "4294967295"},
		{"time", "4294967295"},
		{"threads", "255"},
	} {
		re := regexp.MustCompile(`("` + edit.field + `":\s*)\d+`)
		if !re.Match(good) {
			t.Fatalf("the file has no %s: %s", edit.field, good)
		}
		if err := os.WriteFile(path, re.ReplaceAll(good, []byte("${1}"+edit.huge)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := secrets.Read(path); !errors.Is(err, secrets.ErrFormat) {
			t.Errorf("%s %s: %v, want ErrFormat", edit.field, edit.huge, err)
		}
	}
}
