//go:build !linux

package main

import (
	"context"
	"errors"
	"io"
	"os"
)

var errLineTooLong = errors.New("line too long")

// terminal is implemented for Linux only (tty_linux.go): reading a line
// under a deadline needs poll and termios, which this port does not have
// yet. Elsewhere kwsign refuses to run.
type terminal struct{ out io.Writer }

func openTerminal(_, _ *os.File) (*terminal, error) {
	return nil, errors.New("kwsign's terminal handling is implemented for Linux only")
}

func (t *terminal) restore() {}

func (t *terminal) readLine(context.Context, string, bool, []byte) (int, error) {
	return 0, errNoTerminal
}
