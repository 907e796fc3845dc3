package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Fuzz targets for the two files officers hand to a ceremony that decide
// what it trusts: an officer's approval and a backup file.

// FuzzParseApproval: an approval file either parses or is refused; what
// parses is a keyward approval whose payload hashes (compact JSON) to the
// payload_sha256 it carries, with a signature to check.
func FuzzParseApproval(f *testing.F) {
	payload, _ := json.Marshal(approvalPayload{Format: approvalFormat, Officer: "Alice Wong", Ceremony: "backup",
		ConfigSHA256: "00", Token: "bank-hsm", Nonce: "0102", Created: time.Unix(0, 0).UTC(), NotAfter: time.Unix(3600, 0).UTC()})
	h := sha256.Sum256(payload)
	good, _ := json.Marshal(approvalFile{Payload: payload, PayloadSHA256: hexString(h[:]), Signature: "MEUCIQ=="})
	f.Add(good)
	f.Add(bytes.Replace(good, []byte("Alice"), []byte("Alicf"), 1))
	f.Add([]byte(`{"payload":{},"payload_sha256":"","signature":""}`))
	f.Add([]byte(`{"payload":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, sum, sig, err := parseApproval(data)
		if err != nil {
			return
		}
		if p.Format != approvalFormat || len(sig) == 0 {
			t.Fatalf("accepted %q: format %q, %d signature bytes", data, p.Format, len(sig))
		}
		var af approvalFile
		if json.Unmarshal(data, &af) != nil {
			t.Fatalf("accepted what is not an approval file: %q", data)
		}
		var compact bytes.Buffer
		if json.Compact(&compact, af.Payload) != nil || sha256.Sum256(compact.Bytes()) != sum || hexString(sum[:]) != af.PayloadSHA256 {
			t.Fatalf("accepted %q with a payload that does not hash to payload_sha256", data)
		}
	})
}

// FuzzBackupFileMAC: any backup file, checked with a fixed KEK, is either
// refused or carries exactly the MAC that KEK gives its contents: an
// edited v2 file never authenticates, and nothing panics.
func FuzzBackupFileMAC(f *testing.F) {
	kek := bytes.Repeat([]byte{0x42}, 32)
	id := bytes.Repeat([]byte{0x17}, 16)
	bf := backupFile{BackupID: hexString(id), Created: time.Unix(0, 0).UTC(), Threshold: 2, Shares: 3,
		Custodians: []string{"Carol", "Dave", "Erin"}, Mechanism: "CKM_AES_KEY_WRAP_PAD",
		Keys: []backupKey{{Label: "receipt-signer", ID: "01", Type: "ec-p256", Wrapped: "AAAA"}}}
	if err := sealBackupFile(&bf, kek, id, [][]byte{{1}, {2}, {3}}); err != nil {
		f.Fatal(err)
	}
	good, _ := json.MarshalIndent(bf, "", "  ")
	f.Add(good)
	f.Add(bytes.Replace(good, []byte("receipt-signer"), []byte("payments-root-signer"), 1))
	f.Add(bytes.Replace(good, []byte(backupFormat), []byte(backupFormatV1), 1))
	f.Add([]byte(`{}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "backup.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, gotID, err := readBackup(path)
		if err != nil {
			return
		}
		if len(gotID) != 16 {
			t.Fatalf("backup id of %d bytes accepted", len(gotID))
		}
		if _, err := checkBackupAuth(kek, id, got, path, nil, nil, false); err != nil {
			return
		}
		want, err := backupMAC(kek, id, got)
		if err != nil || got.Format != backupFormat || want != got.MAC {
			t.Fatalf("authenticated a file whose MAC is not this KEK's over its contents: %q", data)
		}
	})
}

func hexString(b []byte) string { return hex.EncodeToString(b) }
