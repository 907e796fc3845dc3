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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/boltstore/boltsurgeon"
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
	pubPath, _ := auditStore(t, dir, key, 5, 5)

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
	store, err := boltstore.Open(filepath.Join(dir, "keysvc.db"), boltstore.Options{})
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

// auditStore writes n records to a store in dir with a checkpoint after
// each record in cpAt, signed by key, and writes the public key file.
func auditStore(t *testing.T, dir string, key *ecdsa.PrivateKey, n int, cpAt ...uint64) (pubPath string, hashes [][]byte) {
	t.Helper()
	store, err := boltstore.Open(filepath.Join(dir, "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var prev *audit.Checkpoint
	for i := 1; i <= n; i++ {
		r := &audit.Record{Time: time.Now(), Client: "banking", Key: "k", Version: 1, Op: "sign", Result: "ok"}
		if err := store.Audit(r); err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, r.Hash)
		if slices.Contains(cpAt, uint64(i)) {
			cp, err := audit.SignCheckpoint(key, prev, r.Seq, r.Hash, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if err := store.AddCheckpoint(cp); err != nil {
				t.Fatal(err)
			}
			prev = &cp
		}
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pubPath = filepath.Join(dir, "audit-key.pem")
	os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	return pubPath, hashes
}

// TestAuditVerifyExpectCatchesCutBack is issue 12 item 6 through the
// command: checkpoints after record 10 deleted and records 11.. rewritten
// with good hashes pass a plain verify (the file cannot tell), but not one
// with -expect the anchor of the deleted checkpoint; -expect beyond the
// end, a malformed -expect and a log with no checkpoint fail too.
func TestAuditVerifyExpectCatchesCutBack(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubPath, hashes := auditStore(t, dir, key, 30, 10, 20, 30)
	anchor := audit.Anchor{Seq: 20, Hash: hashes[19]}.String()
	verify := func(extra ...string) error {
		return auditCmd(append([]string{"verify", "-data-dir", dir, "-pubkey", pubPath}, extra...))
	}
	if err := verify("-expect", anchor); err != nil {
		t.Fatalf("honest log with its anchor: %v", err)
	}
	if err := verify("-expect", "20:"+strings.Repeat("00", 32)); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("-expect with a wrong hash: %v, want ErrTampered", err)
	}
	if err := verify("-expect", "31:"+strings.Repeat("00", 32)); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("-expect beyond the end: %v, want ErrTampered", err)
	}
	if err := verify("-expect", "20"); err == nil || !strings.Contains(err.Error(), "<sequence number>:<hex hash>") {
		t.Fatalf("malformed -expect: %v", err)
	}
	db, err := boltstore.Open(filepath.Join(dir, "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := boltsurgeon.DeleteCheckpointsAfter(db.DB(), 10); err != nil || n != 2 {
		t.Fatalf("DeleteCheckpointsAfter = %d, %v", n, err)
	}
	if err := boltsurgeon.RewriteAuditFrom(db.DB(), 11, func(r *audit.Record) { r.Client = "mallory" }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := verify(); err != nil {
		t.Fatalf("the cut-back log without -expect: %v (expected to pass: the file alone cannot tell)", err)
	}
	if err := verify("-expect", anchor); !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "at record 20") {
		t.Fatalf("the cut-back log with -expect: %v, want ErrTampered at record 20", err)
	}

	// No checkpoint at all: verify fails.
	bare := t.TempDir()
	barePub, _ := auditStore(t, bare, key, 5)
	if err := auditCmd([]string{"verify", "-data-dir", bare, "-pubkey", barePub}); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("log with no checkpoint: %v, want ErrNoCheckpoint", err)
	}
}
