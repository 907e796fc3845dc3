package txformat_test

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/keyward/keyward/token/txformat"
)

// painSample and jsonSample are the realistic documents in testdata/.
var (
	painSample = mustRead("testdata/pain001_sample.xml")
	jsonSample = strings.TrimSpace(mustRead("testdata/transfer_sample.json"))
)

func mustRead(name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// replaceNth replaces the n-th (1-based) occurrence of old in s and fails
// the test if there is none, so a mutation never silently does nothing.
func replaceNth(t testing.TB, s, old, new string, n int) string {
	t.Helper()
	at := -1
	for i := 0; i < n; i++ {
		j := strings.Index(s[at+1:], old)
		if j < 0 {
			t.Fatalf("occurrence %d of %q not found", n, old)
		}
		at += 1 + j
	}
	return s[:at] + new + s[at+len(old):]
}

// replaceOnce replaces old, which must occur exactly once.
func replaceOnce(t testing.TB, s, old, new string) string {
	t.Helper()
	if c := strings.Count(s, old); c != 1 {
		t.Fatalf("%q occurs %d times, want exactly once", old, c)
	}
	return strings.Replace(s, old, new, 1)
}

// withJSONField sets the sample's member key to the raw JSON value.
func withJSONField(t testing.TB, key, raw string) string {
	t.Helper()
	re := regexp.MustCompile(`"` + regexp.QuoteMeta(key) + `":"[^"]*"`)
	if len(re.FindAllString(jsonSample, -1)) != 1 {
		t.Fatalf("sample has no single member %q", key)
	}
	return re.ReplaceAllLiteralString(jsonSample, `"`+key+`":`+raw)
}

// withoutJSONField removes the sample's member key.
func withoutJSONField(t testing.TB, key string) string {
	t.Helper()
	re := regexp.MustCompile(`,?"` + regexp.QuoteMeta(key) + `":"[^"]*"`)
	if len(re.FindAllString(jsonSample, -1)) != 1 {
		t.Fatalf("sample has no single member %q", key)
	}
	return re.ReplaceAllLiteralString(jsonSample, "")
}

// assertRefused checks err wraps ErrInvalid (and not ErrUnrecognised), is a
// *FieldError with exactly wantPath, and that the message names the path
// and contains wantReason.
func assertRefused(t testing.TB, err error, wantPath, wantReason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want refusal at %q (%s)", wantPath, wantReason)
	}
	if !errors.Is(err, txformat.ErrInvalid) {
		t.Fatalf("error %v does not wrap ErrInvalid", err)
	}
	if errors.Is(err, txformat.ErrUnrecognised) {
		t.Fatalf("error %v wraps ErrUnrecognised too", err)
	}
	var fe *txformat.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a *FieldError", err)
	}
	if fe.Path != wantPath {
		t.Errorf("path = %q, want %q (error: %v)", fe.Path, wantPath, err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "txformat: invalid document: ") {
		t.Errorf("message %q lacks the package prefix", msg)
	}
	if wantPath != "" && !strings.Contains(msg, wantPath) {
		t.Errorf("message %q does not name %q", msg, wantPath)
	}
	if !strings.Contains(msg, wantReason) {
		t.Errorf("message %q does not contain %q", msg, wantReason)
	}
}
