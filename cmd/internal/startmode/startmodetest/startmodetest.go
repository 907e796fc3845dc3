// Package startmodetest checks, from a command's own tests, that the
// command refuses to start without a configuration and without -dev
// (issue 12 item 10, R-SRV-9). It is imported only by _test.go files.
package startmodetest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// RefusesWithoutConfig runs the test binary as the command (the command's
// TestMain calls main() when runMainEnv=1) with no arguments and with
// -data-dir only, and with configEnv and KEYWARD_DATA_DIR removed from the
// environment. Each run must exit non-zero at once, name "-config FILE"
// and "-dev" in what it prints, and create nothing in its working
// directory.
func RefusesWithoutConfig(t *testing.T, name, configEnv, runMainEnv string) {
	t.Helper()
	for _, args := range [][]string{nil, {"-data-dir", "data"}} {
		wd := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0], args...)
		cmd.Dir = wd
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, configEnv+"=") && !strings.HasPrefix(kv, "KEYWARD_DATA_DIR=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, runMainEnv+"=1")
		out, err := cmd.CombinedOutput()
		cancel()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 || ctx.Err() == context.DeadlineExceeded {
			t.Fatalf("%s %v: %v, want a non-zero exit at once\n%s", name, args, err, out)
		}
		for _, want := range []string{"no configuration", "-config FILE", "-dev"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s %v: the message lacks %q:\n%s", name, args, want, out)
			}
		}
		if ents, _ := os.ReadDir(wd); len(ents) != 0 {
			t.Errorf("%s %v created %s in its working directory", name, args, filepath.Join(wd, ents[0].Name()))
		}
	}
}
