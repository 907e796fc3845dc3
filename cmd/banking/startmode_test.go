package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// envRunMain makes the test binary run main() instead of the tests.
const envRunMain = "KEYWARD_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestNoConfigNoDev (issue 12 item 10, R-SRV-9): banking started with
// neither a config nor -dev exits non-zero, says how to start (-config
// FILE and -dev), and creates nothing: not in the default data directory
// under its working directory, not in one named with -data-dir.
func TestNoConfigNoDev(t *testing.T) {
	for _, args := range [][]string{nil, {"-data-dir", "data"}} {
		wd := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0], args...)
		cmd.Dir = wd
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "KEYWARD_BANK_CONFIG=") && !strings.HasPrefix(kv, "KEYWARD_DATA_DIR=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, envRunMain+"=1")
		out, err := cmd.CombinedOutput()
		cancel()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 || ctx.Err() == context.DeadlineExceeded {
			t.Fatalf("banking %v: %v, want a non-zero exit at once\n%s", args, err, out)
		}
		for _, want := range []string{"no configuration", "-config FILE", "-dev"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("banking %v: the message lacks %q:\n%s", args, want, out)
			}
		}
		if ents, _ := os.ReadDir(wd); len(ents) != 0 {
			t.Errorf("banking %v created %s in its working directory", args, filepath.Join(wd, ents[0].Name()))
		}
	}
}
