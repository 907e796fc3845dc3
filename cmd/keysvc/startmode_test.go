package main

import (
	"os"
	"testing"

	"github.com/keyward/keyward/cmd/internal/startmode/startmodetest"
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

// TestNoConfigNoDev (issue 12 item 10, R-SRV-9): keysvc started with neither a
// config nor -dev exits non-zero, says how to start (-config FILE and
// -dev), and creates nothing: not in the default data directory under its
// working directory, not in one named with -data-dir.
func TestNoConfigNoDev(t *testing.T) {
	startmodetest.RefusesWithoutConfig(t, "keysvc", "KEYWARD_CONFIG", envRunMain)
}
