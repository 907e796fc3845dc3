// Package devproc is the child-process handling the developer tools
// under cmd/internal share (runcluster: `make run-cluster`; runbankpg:
// `make run-banking-pg`). Nothing here is linked into a production
// command.
//
// A Node is one long-running child (a keysvc or banking process) with a
// name, a log file and a pid file:
//
//   - Start runs the command with its standard output and error appended
//     to Log (Stdout may wrap the log for standard output, e.g. to repeat
//     some lines on the terminal), with Pdeathsig SIGKILL so no child
//     outlives the tool, optionally in its own process group (Setpgid: a
//     ^C in the terminal then reaches only the tool, which stops the nodes
//     in its own order). It writes the pid to PIDFile (mode PIDMode, 0600
//     when zero) for the walk-throughs' `kill -9 $(cat …)`.
//   - WaitReady polls a readiness check until it holds, the process
//     exits (an *ExitError carrying its state: the caller names the log),
//     the context ends, or the time is up (ErrNotReady).
//   - Reap, called from the tool's loop, tells once that a node has exited
//     (killed in a walk-through) and removes its pid file; Running is
//     false afterwards, and Start may run it again.
//   - StopAll sends SIGTERM to every running node (graceful: keysvc writes
//     its final audit checkpoint, banking flushes sessions), waits up to
//     the grace period (Grace, 15 s, in the tools) for each, sends SIGKILL
//     to one still there, and removes the pid files.
//
// A Node is used from one goroutine (the tool's loop).
package devproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// Grace is how long the tools' StopAll waits after SIGTERM before SIGKILL.
const Grace = 15 * time.Second

// ErrNotReady is WaitReady's answer when the readiness check did not hold
// in time.
var ErrNotReady = errors.New("not ready in time")

// ExitError is WaitReady's answer when the process exited during start-up.
type ExitError struct {
	Name  string
	State *os.ProcessState
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s exited during start-up: %v", e.Name, e.State)
}

// Node is one child process of a developer tool. Set the exported fields,
// then Start.
type Node struct {
	Name    string      // for messages
	Log     string      // standard output and error are appended here
	PIDFile string      // the pid is written here while the node runs
	PIDMode os.FileMode // PIDFile's mode; 0600 when zero
	Setpgid bool        // run in its own process group
	// Stdout, if set, is the process's standard output, given the log
	// file (it must write everything to it).
	Stdout func(log io.Writer) io.Writer

	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs path with args as n (see the package doc) and writes its pid
// file. A node that fails to start is not running.
func (n *Node) Start(path string, args ...string) error {
	logf, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if n.Stdout != nil {
		cmd.Stdout = n.Stdout(logf)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: n.Setpgid, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); logf.Close(); close(done) }(n.exited)
	mode := n.PIDMode
	if mode == 0 {
		mode = 0o600
	}
	return WritePID(n.PIDFile, cmd.Process.Pid, mode)
}

// Running reports whether n was started and has not been reaped (or
// found exited by WaitReady) since.
func (n *Node) Running() bool { return n.cmd != nil }

// PID is the running node's process id, or 0.
func (n *Node) PID() int {
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// WaitReady calls ready every `every` until it returns true (nil), the
// process exits (*ExitError; n is then not running), ctx ends (its
// error), or `within` has passed (ErrNotReady).
func (n *Node) WaitReady(ctx context.Context, every, within time.Duration, ready func() bool) error {
	deadline := time.Now().Add(within)
	for {
		if ready() {
			return nil
		}
		select {
		case <-n.exited:
			st := n.cmd.ProcessState
			n.cmd = nil
			return &ExitError{Name: n.Name, State: st}
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
		if time.Now().After(deadline) {
			return ErrNotReady
		}
	}
}

// Reap tells whether a running n has exited since, once: it then returns
// the exit state and true, removes the pid file, and n is not running.
// It does not block.
func (n *Node) Reap() (*os.ProcessState, bool) {
	if n.cmd == nil {
		return nil, false
	}
	select {
	case <-n.exited:
		st := n.cmd.ProcessState
		n.cmd = nil
		_ = os.Remove(n.PIDFile)
		return st, true
	default:
		return nil, false
	}
}

// StopAll sends SIGTERM to every running node, then waits for each up to
// grace (counted from that node's turn), sends SIGKILL to one still
// there, and removes each one's pid file.
func StopAll(nodes []*Node, grace time.Duration) {
	for _, n := range nodes {
		if n.cmd != nil {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, n := range nodes {
		if n.cmd == nil {
			continue
		}
		select {
		case <-n.exited:
		case <-time.After(grace):
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
		_ = os.Remove(n.PIDFile)
	}
}

// WritePID writes pid and a newline to path with mode perm (for processes
// the tools do not start themselves: etcd members, PostgreSQL servers).
func WritePID(path string, pid int, perm os.FileMode) error {
	return os.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"), perm)
}

// Lines is the tools' "press Enter here": a channel that receives once
// for every line read from r (os.Stdin), read by a goroutine that ends
// with r. Each line must be received before the next is read.
func Lines(r io.Reader) <-chan struct{} {
	lines := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- struct{}{}
		}
	}()
	return lines
}
