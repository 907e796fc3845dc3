package token

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkcs11shim"
)

// pinGrammarRows is the one PIN-source grammar (issue 14): every row is
// accepted or refused alike by pkcs11shim.ParsePINSource, by
// ParsePINSource (config fields and flags) and by a URI's pin-source=.
var pinGrammarRows = []struct {
	in      string
	want    PINSource // nil: refused
	wantErr string    // substring of the refusal
}{
	{"file:/etc/keyward/so.pin", FilePIN{Path: "/etc/keyward/so.pin"}, ""},
	{"file:///etc/keyward/so.pin", FilePIN{Path: "/etc/keyward/so.pin"}, ""}, // RFC 8089, empty authority
	{"/etc/keyward/so.pin", FilePIN{Path: "/etc/keyward/so.pin"}, ""},
	{"file:/a b/pin", FilePIN{Path: "/a b/pin"}, ""},
	{"env:KEYWARD_SO_PIN", EnvPIN{Name: "KEYWARD_SO_PIN"}, ""},
	{"env:_x1", EnvPIN{Name: "_x1"}, ""},
	{"prompt", PromptPIN{Prompt: "PIN: "}, ""},
	{"prompt:SO PIN for slot 0", PromptPIN{Prompt: "SO PIN for slot 0: "}, ""},
	{"prompt:User PIN: ", PromptPIN{Prompt: "User PIN: "}, ""},

	// Issue 14: token read file://x as the path //x; a host part is refused.
	{"file://x", nil, "file:// names a host"},
	{"file://host/run/pin", nil, "file:// names a host"},
	{"file://localhost/run/pin", nil, "file:// names a host"},
	{"file:////run/pin", nil, "ambiguous"},
	{"file:", nil, "absolute path"},
	{"file:pin", nil, "absolute path"},
	{"file:./pin", nil, "absolute path"},
	{"file:/a\x00b", nil, "NUL byte"},
	{"|/usr/bin/get-pin", nil, "|command) is not supported"},
	{"", nil, "empty"},
	{"pin.txt", nil, "unrecognised PIN source"},
	{"http:x", nil, "unrecognised PIN source"},
	{"File:/etc/pin", nil, "unrecognised PIN source"},
	{"prompts", nil, "unrecognised PIN source"},
	{"482913", nil, "unrecognised PIN source"},
	{"Hunter2-PIN", nil, "unrecognised PIN source"},
	{"env:", nil, "invalid environment variable name"},
	{"env:1X", nil, "invalid environment variable name"},
	{"env:A-B", nil, "invalid environment variable name"},
	{"env:A=B", nil, "invalid environment variable name"},
	{"env:9Hunter2", nil, "invalid environment variable name"},
	{"file:Hunter2", nil, "absolute path"},
	{"file://Hunter2/x", nil, "file:// names a host"},
	{"prompt:", nil, "empty prompt label"},
	{"prompt: : ", nil, "empty prompt label"},
	{"prompt:a\nb", nil, "control characters"},
}

// uriPINSource writes src as a URI's pin-source value, percent-encoding
// every byte but unreserved ones, "/" and ":".
func uriPINSource(src string) string {
	var b strings.Builder
	for i := 0; i < len(src); i++ {
		c := src[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/:", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return "pkcs11:token=t?pin-source=" + b.String()
}

func TestPINSourceGrammar(t *testing.T) {
	for _, tt := range pinGrammarRows {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePINSource(tt.in)
			if tt.want != nil {
				if err != nil || !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("ParsePINSource(%q) = %#v, %v; want %#v", tt.in, got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParsePINSource(%q) = %#v, want an error containing %q", tt.in, got, tt.wantErr)
			}
			if !errors.Is(err, ErrPINSource) || !errors.Is(err, pkcs11shim.ErrPINSourceSyntax) {
				t.Errorf("error %v does not match ErrPINSource and pkcs11shim.ErrPINSourceSyntax", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "Hunter2") {
				t.Errorf("error %q echoes the source (R-TOK-4)", err)
			}
		})
	}
}

// TestPINSourceGrammarURIAgrees: the URI parser and ParsePINSource accept
// and refuse the same pin-sources, and an accepted one yields the same
// reader through the URI (issue 14: the URI refused prompt and file:///,
// token read file://x as //x).
func TestPINSourceGrammarURIAgrees(t *testing.T) {
	for _, tt := range pinGrammarRows {
		t.Run(tt.in, func(t *testing.T) {
			_, perr := ParsePINSource(tt.in)
			u, uerr := pkcs11shim.ParseURI(uriPINSource(tt.in))
			if (perr == nil) != (uerr == nil) {
				t.Fatalf("disagreement on %q: ParsePINSource error %v, ParseURI error %v", tt.in, perr, uerr)
			}
			if uerr != nil {
				if strings.Contains(uerr.Error(), "Hunter2") {
					t.Errorf("URI error %q echoes the pin-source (R-TOK-4)", uerr)
				}
				if tt.in != "" && !strings.Contains(uerr.Error(), tt.wantErr) {
					t.Errorf("URI error %q does not say %q", uerr, tt.wantErr)
				}
				return
			}
			if u.PINSource != tt.in {
				t.Fatalf("URI pin-source = %q, want %q", u.PINSource, tt.in)
			}
			got, err := ParsePINSource(u.PINSource)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("the URI's pin-source reads as %#v, %v; want %#v", got, err, tt.want)
			}
		})
	}
}

// FuzzPINSourceGrammar: for any string, ParsePINSource and a URI's
// pin-source= agree (accept both or refuse both), and an accepted URI
// yields the same reader.
func FuzzPINSourceGrammar(f *testing.F) {
	for _, r := range pinGrammarRows {
		f.Add(r.in)
	}
	f.Fuzz(func(t *testing.T, src string) {
		direct, perr := ParsePINSource(src)
		u, uerr := pkcs11shim.ParseURI(uriPINSource(src))
		if (perr == nil) != (uerr == nil) {
			t.Fatalf("disagreement on %q: ParsePINSource error %v, ParseURI error %v", src, perr, uerr)
		}
		if uerr != nil {
			return
		}
		viaURI, err := ParsePINSource(u.PINSource)
		if err != nil || !reflect.DeepEqual(direct, viaURI) {
			t.Fatalf("%q: direct %#v, via the URI %#v (%v)", src, direct, viaURI, err)
		}
	})
}
