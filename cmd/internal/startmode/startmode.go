// Package startmode decides how a Keyward server command starts: from a
// config file, or — only when asked with -dev — in dev mode, which makes
// tokens with clear PIN files and dev credentials. A production binary
// started with neither refuses to start before it creates anything
// (seed 6.5.4 a, R-SRV-9).
package startmode

import (
	"errors"
	"fmt"
)

// ErrNoConfig is the refusal to start with neither a config file nor -dev.
var ErrNoConfig = errors.New("no configuration")

// Check says whether prog may start with configPath (from -config or the
// environment variable envName) and the -dev flag: exactly one of them
// must be given. devWhat says what dev mode creates, for the message.
func Check(prog, envName, devWhat, configPath string, dev bool) error {
	switch {
	case configPath != "" && dev:
		return fmt.Errorf("%s: -dev and -config exclude each other: -dev builds its own configuration; drop one", prog)
	case configPath == "" && !dev:
		return fmt.Errorf("%w: start %s with -config FILE (or %s=FILE) for a real deployment, or with -dev for a local development instance (%s; never in production)", ErrNoConfig, prog, envName, devWhat)
	}
	return nil
}
