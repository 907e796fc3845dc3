//go:build linux

package softhsmtests

// keysvc STARTED on a token set while one token is away (issue 15, R-AV-4):
// a restart during an HSM outage must start on the tokens that answer. A
// real keysvc process on two SoftHSM2 tokens (failover_test.go's set-up),
// token B's directory moved away before it starts.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/pkcs11shim"
)

// keysvc starts with B away and serves from A (/readyz: B down); a key
// made meanwhile signs; B put back is opened, caught up (the key is on it)
// and re-admitted; then, A away, B alone signs with it.
func TestKeysvcStartsWithATokenAway(t *testing.T) {
	t0 := time.Now()
	var backB func()
	e := startKeysvcOnTwoTokensWith(t, func(_, b pkcs11shim.TokenInfo) { backB = away(t, b) })
	t.Logf("keysvc started with B away in %v", time.Since(t0).Round(time.Millisecond))
	st, re, err := e.tokenStates()
	if err != nil || st["a"] != "up" || st["b"] != "down" {
		t.Fatalf("readyz after a start with B away: %v %v, want a up and b down", st, err)
	}
	if l := logLines(e.ks.logPath, "away at start"); len(l) == 0 || !strings.Contains(strings.Join(l, "\n"), "(b)") {
		t.Errorf("keysvc's log does not say B was away at start:\n%s", strings.Join(l, "\n"))
	}

	pub := e.createKey(t, "lz-made-while-away", wire.ProtectionHSM)
	status, der, err := e.sign("lz-made-while-away", "on A")
	if status != http.StatusOK || err != nil || !verifyMsg(pub, "on A", der) {
		t.Fatalf("sign with B away since start: %d %v", status, err)
	}

	backB()
	took := e.waitState(t, "b", "up", 20*time.Second)
	t.Logf("B opened, caught up and re-admitted %v after it was put back; keysvc's log on B:\n%s", took.Round(time.Millisecond),
		strings.Join(logLines(e.ks.logPath, "member=b "), "\n"))
	if _, re2, err := e.tokenStates(); err != nil || re2["b"] != re["b"]+1 {
		t.Errorf("b's re-admissions = %d (before %d), %v; want one more", re2["b"], re["b"], err)
	}
	if labels := tokenLabels(t, e.b); !slices.Contains(labels, "kw/lz-made-while-away/v1") {
		t.Fatalf("the key made while B was away is not on B after its re-admission: %v", labels)
	}

	backA := away(t, e.a)
	defer backA()
	for i := range 5 {
		msg := fmt.Sprint("on B alone ", i)
		status, der, err := e.sign("lz-made-while-away", msg)
		if status != http.StatusOK || err != nil {
			t.Fatalf("sign with A away, B opened after start: %d %v", status, err)
		}
		if !verifyMsg(pub, msg, der) {
			t.Fatal("the signature made on B does not verify")
		}
	}
	e.waitState(t, "a", "down", 10*time.Second)
	t.Logf("whole run %v", time.Since(t0).Round(time.Millisecond))
}

// keysvc still refuses to start on a token set when no token opens, and
// when a token that is away has a configuration mistake waiting does not
// mend (here its PIN source is a file that does not exist).
func TestKeysvcRefusesTokenSetStart(t *testing.T) {
	var backB func()
	e := startKeysvcOnTwoTokensWith(t, func(_, b pkcs11shim.TokenInfo) { backB = away(t, b) })
	e.ks.stop()
	conf := e.ks.args[len(e.ks.args)-1]
	good, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	run := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, e.ks.bin, e.ks.args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ctx.Err() != nil {
			t.Fatalf("keysvc did not exit with an error (%v); output:\n%s", err, out)
		}
		t.Logf("keysvc refused to start:\n%s", out)
		return string(out)
	}

	bURI := "token=" + e.b.Label + "?module-path=" + modulePath + "&pin-source=file:"
	missing := filepath.Join(t.TempDir(), "no-such-pin")
	bad := strings.Replace(string(good), bURI+filepath.Join(filepath.Dir(conf), "user.pin"), bURI+missing, 1)
	if bad == string(good) {
		t.Fatal("test set-up: B's URI not found in keysvc's configuration")
	}
	writeFiles(t, conf, bad)
	if out := run(); !strings.Contains(out, "tokens[1] (b)") || !strings.Contains(out, missing) {
		t.Errorf("B away with an unreadable PIN source: keysvc's refusal does not name tokens[1] (b) and the file:\n%s", out)
	}

	writeFiles(t, conf, string(good))
	backA := away(t, e.a)
	defer backA()
	if out := run(); !strings.Contains(out, "none of the 2 tokens of the set could be opened") {
		t.Errorf("both tokens away: keysvc's refusal does not say no token opened:\n%s", out)
	}
	backA()
	backB()
}
