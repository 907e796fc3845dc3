//go:build linux

package main

import (
	"errors"
	"os"
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
	term := startTTY(t, append([]string{"token", "init", "-f", f}, approveFor(t, []string{"token", "init"}, f, "alice", "bob", "carol")...)...)
	for _, step := range []struct{ prompt, answer string }{
		{"New SO PIN part 1 of 2 (officer Alice Wong): ", soPart1},
		{"Repeat New SO PIN part 1 of 2 (officer Alice Wong): ", soPart1},
		{"New SO PIN part 2 of 2 (officer Bob Lee): ", soPart2},
		{"Repeat New SO PIN part 2 of 2 (officer Bob Lee): ", soPart2},
		{"New user PIN of token " + label + ": ", userPIN},
		{"Repeat New user PIN of token " + label + ": ", userPIN},
		{`Type "yes" to continue: `, "yes"},
	} {
		term.expect(step.prompt)
		term.typeLine(step.answer)
	}
	term.expect("transcript signed by ceremony-audit")
	code, o := term.wait()
	if code != 0 {
		t.Fatalf("ceremony: exit %d\n%s", code, o)
	}
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

// ttySession is the binary running at a pseudo-terminal, as an officer
// sees it: everything it writes is collected; expect waits for text,
// typeLine answers a prompt.
type ttySession struct {
	t        *testing.T
	cmd      *exec.Cmd
	ptmx     *os.File
	mu       sync.Mutex
	buf      []byte
	seen     int // output consumed by earlier expects
	readDone chan struct{}
}

// startTTY starts the binary with args at a new pseudo-terminal.
func startTTY(t *testing.T, args ...string) *ttySession {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ptmx.Close() })
	s := &ttySession{t: t, cmd: exec.Command(binPath, args...), ptmx: ptmx, readDone: make(chan struct{})}
	s.cmd.Stdin, s.cmd.Stdout, s.cmd.Stderr = tty, tty, tty
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	go func() {
		defer close(s.readDone)
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			s.mu.Lock()
			s.buf = append(s.buf, b[:n]...)
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return s
}

func (s *ttySession) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.buf)
}

// expect waits up to 20 s for text after what earlier expects consumed.
func (s *ttySession) expect(text string) {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		o := s.output()
		if i := strings.Index(o[s.seen:], text); i >= 0 {
			s.seen += i + len(text)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.cmd.Process.Kill()
	s.t.Fatalf("no %q on the terminal; got:\n%s", text, s.output())
}

// typeLine types line and Enter.
func (s *ttySession) typeLine(line string) {
	time.Sleep(50 * time.Millisecond) // the prompt is written just before echo is turned off
	s.ptmx.Write([]byte(line + "\r"))
}

// wait waits up to 20 s for the binary to end and returns its exit code
// and everything the terminal showed.
func (s *ttySession) wait() (int, string) {
	s.t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	var code int
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			s.t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		s.t.Fatalf("ceremony did not end:\n%s", s.output())
	}
	s.ptmx.Close()
	<-s.readDone
	return code, s.output()
}
