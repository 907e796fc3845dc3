package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParse: the sealed secrets file is read from disk at every start of
// keysvc and banking. Any bytes either parse into a file with a known
// format and at least one complete slot, or are refused with ErrFormat —
// never a panic; what parses survives being written and read again
// unchanged. Parsing only: no slot is opened.
func FuzzParse(f *testing.F) {
	sealed, err := Seal(Bundle{TokenPIN: []byte("123456"), TLSKey: []byte("-----BEGIN PRIVATE KEY-----")},
		Options{Passphrase: []byte("correct horse battery"), KDF: &KDF{Name: "argon2id", Time: 1, MemoryKiB: 8, Threads: 1}})
	if err != nil {
		f.Fatal(err)
	}
	good, err := json.MarshalIndent(sealed, "", "  ")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"format":"keyward-secrets-v1","slots":[{"type":"tpm","tpm":{}}]}`))
	f.Add([]byte(`{"format":"keyward-secrets-v1","slots":[{"type":"passphrase"}]}`))
	f.Add([]byte(`{"format":"keyward-secrets-v1","slots":[]}`))
	f.Add([]byte(`{"format":"something-else","slots":[{"type":"passphrase","kdf":{}}]}`))
	f.Add([]byte(`{"format":"keyward-secrets-v1","nonce":"!!","slots":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		file, err := parse(raw, "fuzz.json")
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("refused other than as ErrFormat: %v", err)
			}
			return
		}
		if file.Format != Format || len(file.Slots) == 0 {
			t.Fatalf("accepted format %q with %d slots", file.Format, len(file.Slots))
		}
		for i, s := range file.Slots {
			if (s.Type != SlotTPM || s.TPM == nil) && (s.Type != SlotPassphrase || s.KDF == nil) {
				t.Fatalf("accepted an incomplete slot %d: %+v", i, s)
			}
		}
		out, err := json.Marshal(file)
		if err != nil {
			t.Fatalf("a parsed file does not marshal: %v", err)
		}
		again, err := parse(out, "again.json")
		if err != nil {
			t.Fatalf("a parsed file, written again, is refused: %v", err)
		}
		out2, _ := json.Marshal(again)
		if !bytes.Equal(out, out2) {
			t.Fatalf("a parsed file changes when written and read again:\n%s\n%s", out, out2)
		}
	})
}
