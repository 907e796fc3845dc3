package token

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestConsumeApprovals: a nonce is used once; a batch with one used nonce
// records none of the others (all or nothing), and the record survives
// reopening the file.
func TestConsumeApprovals(t *testing.T) {
	fs := FileStore{Path: filepath.Join(t.TempDir(), "keysvc.db")}
	use := func(n string) ApprovalUse {
		return ApprovalUse{Nonce: n, Officer: "Alice Wong", Ceremony: "backup", ConfigSHA256: "ab", UsedAt: time.Now().UTC()}
	}
	if err := fs.ConsumeApprovals([]ApprovalUse{use("n1"), use("n2")}); err != nil {
		t.Fatal(err)
	}
	if u, err := fs.UsedApproval("n1"); err != nil || u == nil || u.Ceremony != "backup" {
		t.Fatalf("n1: %+v %v", u, err)
	}
	err := fs.ConsumeApprovals([]ApprovalUse{use("n3"), use("n2")})
	if !errors.Is(err, ErrApprovalUsed) {
		t.Fatalf("a used nonce was accepted again: %v", err)
	}
	if u, _ := fs.UsedApproval("n3"); u != nil {
		t.Fatal("a refused batch recorded part of its nonces")
	}
	if err := fs.ConsumeApprovals([]ApprovalUse{{Officer: "x"}}); err == nil {
		t.Fatal("an approval without a nonce was recorded")
	}
}
