package softhsmtests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

const (
	soPIN   = "so-secret-8842"
	userPIN = "482913"
	// envConfDir, when set, makes TestMain reuse a prepared SoftHSM
	// directory instead of creating one (child processes).
	envConfDir = "KEYWARD_TEST_SOFTHSM_DIR"
	// envChild names the test a child process is running for.
	envChild = "KEYWARD_TEST_CHILD"
)

var (
	modulePath string
	module     *pkcs11shim.Module // held open for the whole run
	confDir    string
	removable  bool
)

func findModule() string {
	if p := os.Getenv("KEYWARD_PKCS11_MODULE"); p != "" {
		return p
	}
	for _, p := range []string{
		"/usr/lib/softhsm/libsofthsm2.so",
		"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/local/lib/softhsm/libsofthsm2.so",
	} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// writeConf writes a SoftHSM2 config with its own token directory.
func writeConf(dir string, removable bool) (string, error) {
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return "", err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = %v\nslots.mechanisms = ALL\nlibrary.reset_on_fork = false\n", tokens, removable)
	return conf, os.WriteFile(conf, []byte(body), 0o600)
}

func TestMain(m *testing.M) {
	modulePath = findModule()
	if modulePath == "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "FAIL: SoftHSM2 is not installed and CI=true: install it with apt-get install -y softhsm2 (or set KEYWARD_PKCS11_MODULE)")
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "SKIP softhsm-tests: SoftHSM2 not found; install the Debian package softhsm2 (apt-get install -y softhsm2) or set KEYWARD_PKCS11_MODULE")
		os.Exit(0)
	}
	removable = os.Getenv("KEYWARD_TEST_REMOVABLE") == "true"
	confDir = os.Getenv(envConfDir)
	if removable {
		confDir = "" // a removable-slots config of its own; the parent's must not change under it
	}
	owned := false
	if confDir == "" {
		var err error
		if confDir, err = os.MkdirTemp("", "keyward-softhsm-"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		owned = true
	}
	conf, err := writeConf(confDir, removable)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	module, err = pkcs11shim.OpenModule(modulePath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	module.MinReinitInterval = 100 * time.Millisecond
	code := m.Run()
	module.Close()
	printBenchSummary()
	if owned {
		os.RemoveAll(confDir)
	}
	os.Exit(code)
}

// newTokenLabel creates a fresh token through the PKCS#11 API and returns
// its info. The token is erased from disk at cleanup only when the test
// owns the directory (child processes share their parent's).
func newTokenLabel(t testing.TB) pkcs11shim.TokenInfo {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	label := "kw-" + hex.EncodeToString(b)
	ti, err := module.InitToken("", []byte(soPIN), label)
	if err != nil {
		t.Fatalf("InitToken: %v", err)
	}
	if err := module.InitPIN(pkcs11shim.Selector{Label: label}, []byte(soPIN), []byte(userPIN)); err != nil {
		t.Fatalf("InitPIN: %v", err)
	}
	return ti
}

// switchablePIN is a PIN source tests can change between attempts.
type switchablePIN struct {
	mu  sync.Mutex
	pin string
}

func (s *switchablePIN) PIN() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []byte(s.pin), nil
}

func (s *switchablePIN) set(p string) {
	s.mu.Lock()
	s.pin = p
	s.mu.Unlock()
}

// newGuard opens a PIN guard on a bbolt file in dir.
func newGuard(t testing.TB, path string, limit int) (*token.Guard, *token.BoltStore) {
	t.Helper()
	st, err := token.OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g, err := token.NewGuard(st, limit)
	if err != nil {
		t.Fatal(err)
	}
	return g, st
}

// tokenEnv is one throwaway token opened through package token.
type tokenEnv struct {
	info  pkcs11shim.TokenInfo
	tok   *token.Token
	pool  *pkcs11shim.Pool
	pin   *switchablePIN
	guard *token.Guard
	store *token.BoltStore
}

// mustNewToken makes a token, a guard and an open token.Token.
func mustNewToken(t testing.TB, kind token.Kind) *tokenEnv {
	t.Helper()
	info := newTokenLabel(t)
	g, st := newGuard(t, filepath.Join(t.TempDir(), "guard.db"), 0)
	pin := &switchablePIN{pin: userPIN}
	tok, err := token.Open(context.Background(), token.Config{Kind: kind, Module: modulePath, Label: info.Label, PIN: pin, PINGuard: g.Config(), WaitTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("token.Open: %v", err)
	}
	t.Cleanup(func() { tok.Close() })
	return &tokenEnv{info: info, tok: tok, pool: tok.Pool(), pin: pin, guard: g, store: st}
}

// runChild re-runs this test binary for test name with extra environment,
// sharing this process's SoftHSM directory. It returns combined output.
func runChild(t *testing.T, name string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^"+name+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), append([]string{envConfDir + "=" + confDir, envChild + "=" + name}, env...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// childOnly skips a test unless it runs as the named child.
func childOnly(t *testing.T) {
	if os.Getenv(envChild) != t.Name() {
		t.Skip("runs only as a child process of another test")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// mustOpenSecond opens a second token.Token (own pool, same guard) on env's token.
func mustOpenSecond(t testing.TB, env *tokenEnv) *token.Token {
	t.Helper()
	tok, err := token.Open(context.Background(), token.Config{Kind: env.tok.Kind(), Module: modulePath, Serial: env.info.Serial, PIN: env.pin, PINGuard: env.guard.Config()})
	if err != nil {
		t.Fatalf("second token.Open: %v", err)
	}
	t.Cleanup(func() { tok.Close() })
	return tok
}
