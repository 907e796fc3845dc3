//go:build linux

package main

import (
	"strings"
	"testing"
)

// ttyRun runs the binary at a pseudo-terminal, waits for prompt, types
// answer and returns the exit code and everything the terminal showed.
func ttyRun(t *testing.T, prompt, answer string, args ...string) (int, string) {
	t.Helper()
	term := startTTY(t, args...)
	term.expect(prompt)
	term.typeLine(answer)
	return term.wait()
}

// TestZeroizeAtTerminal: at a terminal the officer types the zeroize
// phrase after being shown which keys have no backup; a wrong phrase
// erases nothing.
func TestZeroizeAtTerminal(t *testing.T) {
	setup(t)
	officers := initToken(t, "zofficers")
	victim := initToken(t, "ztty")
	kf, kout := ceremonyFile(t, "keygen.yaml", map[string]string{"LABEL": victim})
	mustRun(t, []string{"keygen"}, kf, kout)
	backup, _ := backupOf(t, victim, "receipt-signer")
	before := objectLabels(t, victim)
	ack := []string{"ceremony-audit", "bank-kek", "login-decrypt"}
	question := "3 key(s) have NO backup and are lost for good: "
	prompt := `Type "ZEROIZE ` + victim + `" to continue: `

	f, _ := zeroizeFile(t, victim, officers, []string{backup}, ack)
	code, o := ttyRun(t, prompt, "zeroize "+victim, append([]string{"zeroize", "-f", f}, approveFor(t, []string{"zeroize"}, f, "alice", "bob")...)...)
	if code != exitDeclined || !strings.Contains(o, question) {
		t.Fatalf("zeroize with a wrong phrase: exit %d\n%s", code, o)
	}
	if got := objectLabels(t, victim); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Fatalf("a declined zeroize changed the token: %v -> %v", before, got)
	}
	f, _ = zeroizeFile(t, victim, officers, []string{backup}, ack)
	if code, o := ttyRun(t, prompt, "ZEROIZE "+victim, append([]string{"zeroize", "-f", f}, approveFor(t, []string{"zeroize"}, f, "alice", "bob")...)...); code != 0 {
		t.Fatalf("zeroize at a terminal: exit %d\n%s", code, o)
	}
	wantReinitialised(t, victim, "")
}
