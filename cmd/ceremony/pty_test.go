//go:build linux

package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// TestInteractiveInit runs token init at a pseudo-terminal as officers
// would: two SO PIN parts and the user PIN typed twice without echo, then
// the typed confirmation. The PINs must never appear on the terminal.
func TestInteractiveInit(t *testing.T) {
	setup(t)
	label := newLabel("tty")
	f, out := ceremonyFile(t, "init-prompt.yaml", map[string]string{"LABEL": label})
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	cmd := exec.Command(binPath, append([]string{"token", "init", "-f", f}, approveFor(t, []string{"token", "init"}, f, "alice", "bob", "carol")...)...)
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
	output := func() string {
		mu.Lock()
		defer mu.Unlock()
		return string(buf)
	}
	seen := 0 // output consumed by earlier expects
	expect := func(s string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			o := output()
			if i := strings.Index(o[seen:], s); i >= 0 {
				seen += i + len(s)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		cmd.Process.Kill()
		t.Fatalf("no %q on the terminal; got:\n%s", s, output())
	}
	typeLine := func(s string) {
		time.Sleep(50 * time.Millisecond) // the prompt is written just before echo is turned off
		ptmx.Write([]byte(s + "\r"))
	}
	for _, step := range []struct{ prompt, answer string }{
		{"New SO PIN part 1 of 2 (officer Alice Wong): ", soPart1},
		{"Repeat New SO PIN part 1 of 2 (officer Alice Wong): ", soPart1},
		{"New SO PIN part 2 of 2 (officer Bob Lee): ", soPart2},
		{"Repeat New SO PIN part 2 of 2 (officer Bob Lee): ", soPart2},
		{"New user PIN of token " + label + ": ", userPIN},
		{"Repeat New user PIN of token " + label + ": ", userPIN},
		{`Type "yes" to continue: `, "yes"},
	} {
		expect(step.prompt)
		typeLine(step.answer)
	}
	expect("transcript signed by ceremony-audit")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ceremony: %v\n%s", err, output())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("ceremony did not end:\n%s", output())
	}
	ptmx.Close()
	<-readDone
	o := output()
	for _, pin := range []string{soPart1, soPart2, userPIN} {
		if strings.Contains(o, pin) {
			t.Fatalf("a PIN was echoed:\n%s", o)
		}
	}
	recordAuditKey(t, label, o)
	if v := verifyPinned(t, filepath.Join(out, "transcript", "transcript.json")); v.code != 0 {
		t.Fatalf("transcript: %v", v)
	}
	testPool(t, label, userPIN).Close()                     // the typed user PIN works
	if err := checkSO(label, soPart1+soPart2); err != nil { // the SO PIN is part 1 then part 2
		t.Fatalf("SO PIN: %v", err)
	}
}
