// Package tpmtest starts throwaway software TPMs (swtpm) for tests in any package of the module.
//
//	spec := tpmtest.Start(t)          // "tcp:127.0.0.1:PORT", killed at t.Cleanup
//	tp, err := tpm.Open(spec)
//
// Each call starts its own swtpm process with its own state directory under t.TempDir(), so every
// test gets a freshly manufactured TPM: its own seeds (a blob sealed on one is useless on another),
// empty hierarchy authorizations, default dictionary-attack parameters. swtpm is started with
// --flags not-need-init,startup-clear, so it is powered on and has run TPM2_Startup(CLEAR) before it
// accepts its first command.
//
// swtpm serves one client connection at a time: a second tpm.Open on the same spec waits until the
// first connection is closed. Open one *tpm.TPM per simulator and share it (it is safe for
// concurrent use).
//
// When swtpm is not installed, tests are skipped, except under CI=true where they fail: CI must
// prove the TPM code (scripts/deps.sh installs swtpm).
package tpmtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/token/tpm"
)

// Sim is one running swtpm with its state directory. Spec is what tpm.Open takes.
type Sim struct {
	Spec string // "tcp:127.0.0.1:PORT"; the control channel listens on PORT+1
	Dir  string // swtpm state directory (--tpmstate dir=Dir); survives Restart

	mu   sync.Mutex
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
	logf string        // swtpm log file
}

// Start starts a fresh swtpm and returns its spec; it is stopped at t.Cleanup.
func Start(t testing.TB) string {
	t.Helper()
	return StartSim(t).Spec
}

// StartSim starts a fresh swtpm and returns it, so the test can Restart it later. It is stopped
// at t.Cleanup.
func StartSim(t testing.TB) *Sim {
	t.Helper()
	bin := swtpmPath(t)
	s := &Sim{Dir: t.TempDir()}
	s.logf = s.Dir + ".log"
	if err := s.start(bin, 0); err != nil {
		t.Fatalf("tpmtest: %v", err)
	}
	t.Cleanup(func() { s.stop() })
	return s
}

// Restart stops swtpm and starts it again on the same state directory: a reboot. Permanent state
// (seeds, hence the SRK and every sealed blob; the dictionary-attack counter) survives; volatile
// state (PCRs, loaded objects, sessions) does not. Clients must reconnect (tpm.Open again) after
// Restart. Spec is kept when the old ports can be bound again, else it changes.
func (s *Sim) Restart(t testing.TB) {
	t.Helper()
	s.stop()
	if err := s.start(swtpmPath(t), s.port); err != nil {
		t.Fatalf("tpmtest: restart: %v", err)
	}
}

// With opens the TPM at spec for f only and closes it after: swtpm serves
// one connection at a time, so a test that runs a process using the same
// simulator (keysvc, ceremony) looks at it between that process's runs.
func With(t testing.TB, spec string, f func(*tpm.TPM)) {
	t.Helper()
	tp, err := tpm.Open(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	f(tp)
}

// Stop stops swtpm now (it is also stopped at t.Cleanup). Tests use it to prove what happens when
// the TPM goes away.
func (s *Sim) Stop() { s.stop() }

func swtpmPath(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err == nil {
		return bin
	}
	const fix = "install swtpm: apt-get install -y swtpm swtpm-tools (scripts/deps.sh)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("tpmtest: swtpm not found (%v); %s", err, fix)
	}
	t.Skipf("tpmtest: swtpm not found; %s", fix)
	return ""
}

// start launches swtpm. With port != 0 it tries that port first (Restart keeps the spec);
// otherwise, and after failures (a port taken between choosing and binding it), it picks free
// ports again.
func (s *Sim) start(bin string, port int) error {
	var lastErr error
	for attempt := 0; attempt < 8; attempt++ {
		p := port
		if p == 0 || attempt >= 3 { // a restarted swtpm may need a moment to release its ports
			var err error
			if p, err = freePortPair(); err != nil {
				lastErr = err
				continue
			}
		}
		err := s.launch(bin, p)
		if err == nil {
			return nil
		}
		lastErr = err
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	return lastErr
}

func (s *Sim) launch(bin string, port int) error {
	logf, err := os.OpenFile(s.logf, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "socket", "--tpm2",
		"--tpmstate", "dir="+s.Dir,
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
		"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
		"--flags", "not-need-init,startup-clear",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // no orphan if the test binary dies
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start swtpm: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := probe(addr)
		if err == nil && !listensOn(cmd.Process.Pid, port) {
			// Another test's swtpm took the port between choosing and binding it: that one
			// answered, ours will exit. Never hand out someone else's TPM.
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("port %d taken by another process", port)
		}
		if err == nil {
			break
		}
		select {
		case <-done:
			out, _ := os.ReadFile(s.logf)
			return fmt.Errorf("swtpm on port %d exited: %s", port, bytes.TrimSpace(out))
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("swtpm on port %d does not answer: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	s.cmd, s.done, s.port = cmd, done, port
	s.Spec = "tcp:" + addr
	s.mu.Unlock()
	return nil
}

// stop terminates swtpm (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (s *Sim) stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// freePortPair returns a port P such that P and P+1 were both free a moment ago.
func freePortPair() (int, error) {
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		l.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return p, nil
	}
	return 0, errors.New("no free pair of TCP ports")
}

// probe sends TPM2_GetRandom(8) over the simulator protocol and expects TPM_RC_SUCCESS. It closes
// its connection, so the test's own client is served next.
func probe(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	getRandom := []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8}
	var req bytes.Buffer
	_ = binary.Write(&req, binary.BigEndian, uint32(8)) // TPM_SEND_COMMAND
	req.WriteByte(0)                                    // locality
	_ = binary.Write(&req, binary.BigEndian, uint32(len(getRandom)))
	req.Write(getRandom)
	if _, err := c.Write(req.Bytes()); err != nil {
		return err
	}
	var n uint32
	if err := binary.Read(c, binary.BigEndian, &n); err != nil {
		return err
	}
	if n < 10 || n > 4096 {
		return fmt.Errorf("bad response length %d", n)
	}
	rsp := make([]byte, n+4)
	if _, err := io.ReadFull(c, rsp); err != nil {
		return err
	}
	if rc := binary.BigEndian.Uint32(rsp[6:10]); rc != 0 {
		return fmt.Errorf("TPM2_GetRandom: rc 0x%x", rc)
	}
	return nil
}

// listensOn reports whether process pid holds the listening socket on 127.0.0.1:port (Linux:
// /proc/PID/fd names socket inodes, /proc/net/tcp lists listeners with their inodes).
func listensOn(pid, port int) bool {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	tab, err := os.ReadFile("/proc/net/tcp")
	if len(fds) == 0 || err != nil {
		return true // no /proc to ask: trust the probe
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(tab), "\n") {
		f := strings.Fields(line)
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if len(f) > 9 && f[1] == local && f[3] == "0A" && inodes[f[9]] {
			return true
		}
	}
	return false
}
