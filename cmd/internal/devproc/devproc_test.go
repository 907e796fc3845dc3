package devproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary is also the child: DEVPROC_CHILD says what it does.
//
//	ignore-term  ignores SIGTERM, prints "ready", waits to be killed
//	obey-term    prints "ready", exits on SIGTERM (the default action)
//	exit3        prints "bye" and exits with status 3
func TestMain(m *testing.M) {
	switch os.Getenv("DEVPROC_CHILD") {
	case "":
		os.Exit(m.Run())
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		for {
			time.Sleep(time.Hour)
		}
	case "obey-term":
		fmt.Println("ready")
		// Sleep, not select {}: with no other goroutine (a build without
		// -race has none) the runtime ends a bare select {} as a deadlock,
		// exit status 2, before any signal comes.
		for {
			time.Sleep(time.Hour)
		}
	case "exit3":
		fmt.Println("bye")
		fmt.Fprintln(os.Stderr, "on stderr")
		os.Exit(3)
	}
	os.Exit(99)
}

// child is a Node running this test binary as role.
func child(t *testing.T, role string) *Node {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("DEVPROC_CHILD", role) // the children started next inherit it; restored after the test
	n := &Node{Name: role, Log: filepath.Join(dir, role+".log"), PIDFile: filepath.Join(dir, role+".pid")}
	return n
}

func start(t *testing.T, n *Node) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(exe, "-test.run=^$"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // never leave a child behind a failed test
		if n.cmd != nil {
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
	})
}

// logSays is a readiness check: n's log holds the line want.
func logSays(n *Node, want string) func() bool {
	return func() bool {
		b, _ := os.ReadFile(n.Log)
		return bytes.Contains(b, []byte(want+"\n"))
	}
}

func pidFile(t *testing.T, n *Node) int {
	t.Helper()
	b, err := os.ReadFile(n.PIDFile)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSuffix(string(b), "\n"))
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	return pid
}

func signalOf(t *testing.T, n *Node) syscall.Signal {
	t.Helper()
	ws, ok := n.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		t.Fatalf("%s: %v, want ended by a signal", n.Name, n.cmd.ProcessState)
	}
	return ws.Signal()
}

// TestStopAllKillsAfterGrace: StopAll sends SIGTERM to every node; one
// that obeys ends by SIGTERM, one that ignores it is killed (SIGKILL)
// once the grace period has passed, not before; both pid files are
// written while they run and removed afterwards.
func TestStopAllKillsAfterGrace(t *testing.T) {
	const grace = 500 * time.Millisecond
	stubborn := child(t, "ignore-term")
	start(t, stubborn)
	polite := child(t, "obey-term")
	start(t, polite)
	for _, n := range []*Node{stubborn, polite} {
		if err := n.WaitReady(context.Background(), 10*time.Millisecond, 10*time.Second, logSays(n, "ready")); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		if got := pidFile(t, n); got != n.PID() || got <= 0 {
			t.Fatalf("%s: pid file says %d, process is %d", n.Name, got, n.PID())
		}
		if fi, err := os.Stat(n.PIDFile); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: pid file mode %v (%v), want 0600", n.Name, fi.Mode().Perm(), err)
		}
	}
	begin := time.Now()
	StopAll([]*Node{stubborn, polite}, grace)
	took := time.Since(begin)
	if sig := signalOf(t, stubborn); sig != syscall.SIGKILL {
		t.Errorf("the node ignoring SIGTERM ended by %v, want SIGKILL", sig)
	}
	if sig := signalOf(t, polite); sig != syscall.SIGTERM {
		t.Errorf("the obeying node ended by %v, want SIGTERM", sig)
	}
	if took < grace {
		t.Errorf("StopAll returned after %v: killed before the grace period (%v)", took, grace)
	}
	for _, n := range []*Node{stubborn, polite} {
		if _, err := os.Stat(n.PIDFile); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: pid file after StopAll: %v, want it removed", n.Name, err)
		}
	}
	t.Logf("StopAll with grace %v took %v", grace, took)
}

// TestReapOnceAndRestart: a node that exits by itself is reported by Reap
// once, with its exit status; its pid file goes; Start runs it again,
// appending to the same log (standard output and error both).
func TestReapOnceAndRestart(t *testing.T) {
	n := child(t, "exit3")
	for run := 1; run <= 2; run++ {
		start(t, n)
		if !n.Running() {
			t.Fatal("not running after Start")
		}
		pidFile(t, n)
		var st *os.ProcessState
		deadline := time.Now().Add(10 * time.Second)
		for st == nil {
			var ok bool
			if st, ok = n.Reap(); !ok {
				if time.Now().After(deadline) {
					t.Fatal("Reap never saw the node exit")
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		if st.ExitCode() != 3 {
			t.Fatalf("exit state %v, want status 3", st)
		}
		if n.Running() || n.PID() != 0 {
			t.Fatal("still running after Reap")
		}
		if _, err := os.Stat(n.PIDFile); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("pid file after Reap: %v", err)
		}
		if _, ok := n.Reap(); ok {
			t.Fatal("Reap reported the same exit twice")
		}
		b, _ := os.ReadFile(n.Log)
		if got := strings.Count(string(b), "bye\n"); got != run || strings.Count(string(b), "on stderr\n") != run {
			t.Fatalf("log after run %d:\n%s", run, b)
		}
	}
}

// TestWaitReady: a node that exits during start-up is an *ExitError (and
// no longer running); a check that never holds is ErrNotReady; a
// cancelled context is its error.
func TestWaitReady(t *testing.T) {
	n := child(t, "exit3")
	start(t, n)
	err := n.WaitReady(context.Background(), 10*time.Millisecond, 10*time.Second, func() bool { return false })
	var exit *ExitError
	if !errors.As(err, &exit) || exit.State.ExitCode() != 3 || n.Running() {
		t.Fatalf("WaitReady on an exiting node: %v (running %v), want *ExitError with status 3", err, n.Running())
	}
	if !strings.HasPrefix(err.Error(), "exit3 exited during start-up: exit status 3") {
		t.Fatalf("message %q", err)
	}

	m := child(t, "obey-term")
	start(t, m)
	if err := m.WaitReady(context.Background(), 10*time.Millisecond, 100*time.Millisecond, func() bool { return false }); !errors.Is(err, ErrNotReady) {
		t.Fatalf("WaitReady on a check that never holds: %v, want ErrNotReady", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.WaitReady(ctx, 10*time.Millisecond, 10*time.Second, func() bool { return false }); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitReady with a cancelled context: %v", err)
	}
	StopAll([]*Node{m}, time.Second)
}

// TestStdoutWrapperAndPIDMode: Stdout sees the process's standard output
// (and passes it to the log); PIDMode sets the pid file's mode.
func TestStdoutWrapperAndPIDMode(t *testing.T) {
	n := child(t, "obey-term")
	n.PIDMode = 0o644
	tee := &lines{}
	n.Stdout = func(log io.Writer) io.Writer { tee.log = log; return tee }
	start(t, n)
	if err := n.WaitReady(context.Background(), 10*time.Millisecond, 10*time.Second, logSays(n, "ready")); err != nil {
		t.Fatal(err)
	}
	if got := tee.String(); got != "ready\n" {
		t.Fatalf("the wrapper saw %q", got)
	}
	if fi, err := os.Stat(n.PIDFile); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("pid file mode %v (%v), want 0644", fi.Mode().Perm(), err)
	}
	StopAll([]*Node{n}, time.Second)
}

type lines struct {
	mu  sync.Mutex
	log io.Writer
	buf bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	return l.log.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
