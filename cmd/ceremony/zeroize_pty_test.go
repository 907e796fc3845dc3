//go:build linux

package main

import (
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// ttyRun runs the binary at a pseudo-terminal, waits for prompt, types
// answer and returns the exit code and everything the terminal showed.
func ttyRun(t *testing.T, prompt, answer string, args ...string) (int, string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	cmd := exec.Command(binPath, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var mu sync.Mutex
	var buf []byte
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			mu.Lock()
			buf = append(buf, b[:n]...)
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	output := func() string { mu.Lock(); defer mu.Unlock(); return string(buf) }
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(output(), prompt) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no %q on the terminal; got:\n%s", prompt, output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ptmx.Write([]byte(answer + "\r"))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var code int
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("ceremony did not end:\n%s", output())
	}
	ptmx.Close()
	<-readDone
	return code, output()
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
