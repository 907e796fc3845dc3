//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// errLineTooLong is a typed line longer than the buffer it is read into.
var errLineTooLong = errors.New("line too long")

// terminal is the holder's terminal: standard input, with standard error
// on the same device showing the fields and prompts. Requiring the same
// device means the question is shown where the answer comes from: a
// redirected standard error would have the holder answer blind (R-DC-1).
//
// Reads are bounded by a context (poll on the terminal and on a pipe that
// closes when the context ends), so the timeout and Ctrl-C end a pending
// question or PIN prompt at once, and the deferred clean-up runs.
type terminal struct {
	fd    int
	out   io.Writer
	saved *unix.Termios // the terminal's settings at start, put back by restore
}

func openTerminal(in, out *os.File) (*terminal, error) {
	fd := int(in.Fd())
	saved, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, errNoTerminal
	}
	var si, so unix.Stat_t
	if _, err := unix.IoctlGetTermios(int(out.Fd()), unix.TCGETS); err != nil {
		return nil, errors.New("standard error is not a terminal, so the holder would not see what is to be signed")
	}
	if unix.Fstat(fd, &si) != nil || unix.Fstat(int(out.Fd()), &so) != nil || si.Rdev != so.Rdev {
		return nil, errors.New("standard input and standard error are different terminals: the question must be shown where the answer is typed")
	}
	return &terminal{fd: fd, out: out, saved: saved}, nil
}

// restore puts the terminal's settings back (echo on again after a PIN
// prompt that timed out) and discards anything typed but not read, so a
// half-typed PIN never reaches the shell after kwsign exits.
func (t *terminal) restore() {
	_ = unix.IoctlSetTermios(t.fd, unix.TCSETS, t.saved)
	t.flushInput()
}

func (t *terminal) flushInput() { _ = unix.IoctlSetInt(t.fd, unix.TCFLSH, unix.TCIFLUSH) }

// readLine writes prompt and reads one line into buf, returning its length
// without the line end. With echo false the typed characters are not shown
// (the PIN). Input typed before the prompt appeared is discarded first: an
// answer must be given to what is on the screen (R-DC-1), and a PIN typed
// before echo was off has been shown already. It returns ctx's error when
// ctx ends first, io.EOF at end of input, errLineTooLong when buf is full.
func (t *terminal) readLine(ctx context.Context, prompt string, echo bool, buf []byte) (int, error) {
	mode := *t.saved
	mode.Lflag |= unix.ICANON | unix.ISIG // line editing; Ctrl-C interrupts
	mode.Iflag |= unix.ICRNL
	if echo {
		mode.Lflag |= unix.ECHO
	} else {
		mode.Lflag &^= unix.ECHO
	}
	if err := unix.IoctlSetTermios(t.fd, unix.TCSETS, &mode); err != nil {
		return 0, fmt.Errorf("set terminal mode: %w", err)
	}
	defer func() {
		_ = unix.IoctlSetTermios(t.fd, unix.TCSETS, t.saved)
		if !echo {
			fmt.Fprintln(t.out) // the holder's Enter was not echoed
		}
	}()
	t.flushInput()
	if _, err := io.WriteString(t.out, prompt); err != nil {
		return 0, err
	}
	wake, err := closedWhenDone(ctx)
	if err != nil {
		return 0, err
	}
	defer wake.Close()
	n, err := t.read(ctx, int(wake.Fd()), buf)
	if err != nil {
		t.flushInput()
	}
	return n, err
}

// closedWhenDone returns the read end of a pipe whose write end is closed
// when ctx ends (or when the read end is closed), so poll can wait on it.
func closedWhenDone(ctx context.Context) (*wakePipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p := &wakePipe{r: r, stop: make(chan struct{})}
	go func() {
		select {
		case <-ctx.Done():
		case <-p.stop:
		}
		w.Close()
	}()
	return p, nil
}

type wakePipe struct {
	r    *os.File
	stop chan struct{}
}

func (p *wakePipe) Fd() uintptr { return p.r.Fd() }

func (p *wakePipe) Close() {
	close(p.stop)
	p.r.Close()
}

// read polls the terminal and the wake pipe and reads until a line end.
// In canonical mode the terminal is readable once a whole line is typed.
func (t *terminal) read(ctx context.Context, wake int, buf []byte) (int, error) {
	fds := []unix.PollFd{{Fd: int32(t.fd), Events: unix.POLLIN}, {Fd: int32(wake), Events: unix.POLLIN}}
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return 0, fmt.Errorf("poll terminal: %w", err)
		}
		if fds[1].Revents != 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			return 0, errors.New("terminal wait ended")
		}
		if fds[0].Revents&unix.POLLIN == 0 { // hung up or error: the terminal is gone
			return 0, io.EOF
		}
		m, err := unix.Read(t.fd, buf[n:])
		switch {
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
			continue
		case err != nil:
			return 0, fmt.Errorf("read terminal: %w", err)
		case m == 0:
			return 0, io.EOF
		}
		n += m
		for i := n - m; i < n; i++ {
			if buf[i] == '\n' {
				if i > 0 && buf[i-1] == '\r' {
					i--
				}
				return i, nil
			}
		}
		if n == len(buf) {
			return 0, errLineTooLong
		}
	}
}
