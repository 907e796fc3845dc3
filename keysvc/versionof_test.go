package keysvc

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// FuzzVersionOf: VersionOf (what clients such as banking read a stored
// "kw:v<n>:…" value's version with) never panics, refuses with
// ErrInvalidArgument, accepts only what names its version canonically,
// and reads back the version of every value encodeVersioned makes.
func FuzzVersionOf(f *testing.F) {
	for _, s := range []string{"kw:v1:bWFj", "kw:v12:AAAA", "kw:v0:AAAA", "kw:v01:AAAA", "kw:v-1:AAAA", "kw:v1:", "kw:v1:!!",
		"kw:v99999999999999999999:AAAA", "kw:v1", "kw:", "", "kw:v2:a2V5:d2F5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := VersionOf(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("%q: refusal %v is not ErrInvalidArgument", s, err)
			}
			return
		}
		if n < 1 || !strings.HasPrefix(s, "kw:v"+strconv.Itoa(n)+":") {
			t.Fatalf("%q: accepted as version %d", s, n)
		}
		if got, err := VersionOf(encodeVersioned(n, []byte(s))); err != nil || got != n {
			t.Fatalf("round trip of version %d: %d, %v", n, got, err)
		}
	})
}
