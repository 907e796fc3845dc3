package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/boltsurgeon"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
)

// TestAuditVerifyCommand runs `keysvc audit verify` on a real store file
// (opened read-only) with a signed checkpoint, then on the same file after
// a record was edited.
func TestAuditVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	store, err := boltstore.Open(filepath.Join(dir, "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := store.Audit(&audit.Record{Time: time.Now(), Client: "banking", Key: "k", Version: 1, Op: "sign", Result: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	seq, hash, err := store.LastAudit()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.SignCheckpoint(key, seq, hash, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.AddCheckpoint(cp); err != nil {
		t.Fatal(err)
	}
	store.Close()
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pubPath := filepath.Join(dir, "audit-key.pem")
	os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)

	if err := auditCmd([]string{"verify", "-data-dir", dir, "-pubkey", pubPath}); err != nil {
		t.Fatalf("clean log: %v", err)
	}
	if err := auditCmd([]string{"check"}); err == nil {
		t.Fatal("unknown subcommand accepted")
	}
	// The checkpoint does not verify under another key.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherDER, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	otherPath := filepath.Join(dir, "other.pem")
	os.WriteFile(otherPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: otherDER}), 0o644)
	if err := auditCmd([]string{"verify", "-data-dir", dir, "-pubkey", otherPath}); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("wrong audit key: %v, want ErrTampered", err)
	}
	// Someone with the file edits record 2.
	store, err = boltstore.Open(filepath.Join(dir, "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := boltsurgeon.TamperAudit(store.DB(), 2, func(raw []byte) []byte { return []byte(string(raw[:len(raw)-1]) + `,"detail":"x"}`) }); err != nil {
		t.Fatal(err)
	}
	store.Close()
	if err := auditCmd([]string{"verify", "-data-dir", dir, "-pubkey", pubPath}); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("edited log: %v, want ErrTampered", err)
	}
}
