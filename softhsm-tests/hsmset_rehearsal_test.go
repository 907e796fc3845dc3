package softhsmtests

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestHSMSetRehearsal runs scripts/hsm-set-rehearsal.sh, the README's
// walk-through "Several HSMs" (issue 15): two HSMs initialised, keysvc's
// service keys made by keygen's preset, backed up 3-of-5 and restored into
// the second, the replication key generated on the first and installed on
// the second from shares with its check value, keysvc with `tokens:` on
// both, an hsm key created through keysvc's API and found on both tokens
// with pkcs11-tool, one token lost and re-admitted, a third HSM joining
// (keysvc copies the hsm key into it at start) and leaving by zeroize. The
// binaries are built from this tree, so the README's commands stay true;
// the script keeps its own SoftHSM token directory and fails on any step
// that does not do what the README says.
func TestHSMSetRehearsal(t *testing.T) {
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		const msg = "pkcs11-tool not found: install it with apt-get install -y opensc (scripts/deps.sh does)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (CI=true: the walk-through must run)")
		}
		t.Skip(msg)
	}
	bin := cerBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "../scripts/hsm-set-rehearsal.sh", t.TempDir())
	cmd.Env = append(os.Environ(), "CEREMONY="+bin, "KEYSVC="+builtCommand(t, "keysvc"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hsm-set rehearsal passed") {
		t.Fatalf("hsm-set-rehearsal.sh: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
