package token

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writePINFile creates a file with the given contents and mode in a fresh
// temporary directory and returns its path. The mode is set with Chmod so
// that the umask does not interfere.
func writePINFile(t *testing.T, contents string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(path, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFilePINReads(t *testing.T) {
	tests := []struct {
		name     string
		contents string
		want     string
	}{
		{"newline trimmed", "482913\n", "482913"},
		{"CRLF trimmed", "482913\r\n", "482913"},
		{"no newline", "482913", "482913"},
		{"only one newline trimmed", "482913\n\n", "482913\n"},
		{"only one CRLF trimmed", "482913\r\n\r\n", "482913\r\n"},
		{"lone CR kept", "482913\r", "482913\r"},
		{"inner spaces kept", " pass w0rd \n", " pass w0rd "},
		{"exactly 1 KiB", strings.Repeat("k", 1024), strings.Repeat("k", 1024)},
		{"1 KiB including newline", strings.Repeat("k", 1023) + "\n", strings.Repeat("k", 1023)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writePINFile(t, tt.contents, 0o600)
			got, err := FilePIN{Path: path}.PIN()
			if err != nil {
				t.Fatalf("PIN() error = %v", err)
			}
			if string(got) != tt.want {
				t.Fatalf("PIN() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFilePINOwnerReadOnly(t *testing.T) {
	path := writePINFile(t, "482913\n", 0o400)
	got, err := FilePIN{Path: path}.PIN()
	if err != nil {
		t.Fatalf("PIN() error = %v", err)
	}
	if string(got) != "482913" {
		t.Fatalf("PIN() = %q, want %q", got, "482913")
	}
}

func TestFilePINRefused(t *testing.T) {
	const secret = "s3cr3t-PIN"
	tests := []struct {
		name     string
		contents string
		mode     os.FileMode
		wantMsg  []string
	}{
		{"world readable 0644", secret, 0o644, []string{"accessible by group or others", "mode 0644", "chmod 600"}},
		{"group readable 0640", secret, 0o640, []string{"mode 0640", "chmod 600"}},
		{"other readable 0604", secret, 0o604, []string{"mode 0604", "chmod 600"}},
		{"group write only 0620", secret, 0o620, []string{"mode 0620", "chmod 600"}},
		{"other exec only 0601", secret, 0o601, []string{"mode 0601", "chmod 600"}},
		{"empty", "", 0o600, []string{"is empty"}},
		{"only newline", "\n", 0o600, []string{"is empty"}},
		{"only CRLF", "\r\n", 0o600, []string{"is empty"}},
		{"1025 bytes", strings.Repeat("k", 1025), 0o600, []string{"larger than 1024 bytes"}},
		{"much larger", secret + strings.Repeat("k", 4096), 0o600, []string{"larger than 1024 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writePINFile(t, tt.contents, tt.mode)
			got, err := FilePIN{Path: path}.PIN()
			if err == nil {
				t.Fatalf("PIN() = %q, want error", got)
			}
			if got != nil {
				t.Errorf("PIN() returned %q with error", got)
			}
			if !errors.Is(err, ErrPINSource) {
				t.Errorf("error %v does not wrap ErrPINSource", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "token: PIN source: ") {
				t.Errorf("error %q lacks prefix", msg)
			}
			if !strings.Contains(msg, path) {
				t.Errorf("error %q does not name path %q", msg, path)
			}
			for _, want := range tt.wantMsg {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error %q leaks the PIN", msg)
			}
		})
	}
}

func TestFilePINMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-pin")
	got, err := FilePIN{Path: path}.PIN()
	if err == nil {
		t.Fatalf("PIN() = %q, want error", got)
	}
	if !errors.Is(err, ErrPINSource) {
		t.Errorf("error %v does not wrap ErrPINSource", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v does not wrap fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not mention %q", err, path)
	}
}

func TestFilePINDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := FilePIN{Path: dir}.PIN()
	if !errors.Is(err, ErrPINSource) {
		t.Fatalf("PIN() error = %v, want ErrPINSource", err)
	}
	if !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("error %q does not say not a regular file", err)
	}
}

func TestFilePINEmptyPath(t *testing.T) {
	_, err := FilePIN{}.PIN()
	if !errors.Is(err, ErrPINSource) {
		t.Fatalf("PIN() error = %v, want ErrPINSource", err)
	}
	if err.Error() != "token: PIN source: PIN file path is empty" {
		t.Errorf("error = %q", err)
	}
}

func TestEnvPIN(t *testing.T) {
	const name = "KEYWARD_TEST_PIN_ENV"

	t.Run("set", func(t *testing.T) {
		t.Setenv(name, "482913")
		got, err := EnvPIN{Name: name}.PIN()
		if err != nil {
			t.Fatalf("PIN() error = %v", err)
		}
		if string(got) != "482913" {
			t.Fatalf("PIN() = %q, want %q", got, "482913")
		}
		// The caller may wipe the result without affecting the environment.
		Wipe(got)
		if v := os.Getenv(name); v != "482913" {
			t.Fatalf("environment changed to %q after Wipe", v)
		}
	})

	t.Run("unset", func(t *testing.T) {
		t.Setenv(name, "placeholder") // restores the environment afterwards
		if err := os.Unsetenv(name); err != nil {
			t.Fatal(err)
		}
		got, err := EnvPIN{Name: name}.PIN()
		if err == nil {
			t.Fatalf("PIN() = %q, want error", got)
		}
		if !errors.Is(err, ErrPINSource) {
			t.Errorf("error %v does not wrap ErrPINSource", err)
		}
		want := `token: PIN source: environment variable "` + name + `" is not set`
		if err.Error() != want {
			t.Errorf("error = %q, want %q", err, want)
		}
	})

	t.Run("empty", func(t *testing.T) {
		t.Setenv(name, "")
		got, err := EnvPIN{Name: name}.PIN()
		if err == nil {
			t.Fatalf("PIN() = %q, want error", got)
		}
		if !errors.Is(err, ErrPINSource) {
			t.Errorf("error %v does not wrap ErrPINSource", err)
		}
		want := `token: PIN source: environment variable "` + name + `" is empty`
		if err.Error() != want {
			t.Errorf("error = %q, want %q", err, want)
		}
	})

	t.Run("empty name", func(t *testing.T) {
		_, err := EnvPIN{}.PIN()
		if !errors.Is(err, ErrPINSource) {
			t.Fatalf("PIN() error = %v, want ErrPINSource", err)
		}
	})
}

func TestParsePINSource(t *testing.T) {
	tests := []struct {
		in      string
		want    PINSource
		wantErr string // substring of the error; "" means success
	}{
		{"file:/etc/keyward/so.pin", FilePIN{Path: "/etc/keyward/so.pin"}, ""},
		{"/etc/keyward/so.pin", FilePIN{Path: "/etc/keyward/so.pin"}, ""},
		{"file:/a b/pin", FilePIN{Path: "/a b/pin"}, ""},
		{"env:KEYWARD_SO_PIN", EnvPIN{Name: "KEYWARD_SO_PIN"}, ""},
		{"env:_x1", EnvPIN{Name: "_x1"}, ""},
		{"env:X", EnvPIN{Name: "X"}, ""},
		{"prompt", PromptPIN{Prompt: "PIN: "}, ""},
		{"prompt:SO PIN for slot 0", PromptPIN{Prompt: "SO PIN for slot 0: "}, ""},
		{"prompt:User PIN: ", PromptPIN{Prompt: "User PIN: "}, ""},
		{"prompt:  Label  ", PromptPIN{Prompt: "Label: "}, ""},

		{"", nil, "empty PIN source"},
		{"file:pin", nil, "absolute path"},
		{"file:./pin", nil, "absolute path"},
		{"file:", nil, "absolute path"},
		{"pin.txt", nil, "unrecognised PIN source"},
		{"env:1X", nil, "invalid environment variable name"},
		{"env:", nil, "invalid environment variable name"},
		{"env:A-B", nil, "invalid environment variable name"},
		{"env:A B", nil, "invalid environment variable name"},
		{"env:A=B", nil, "invalid environment variable name"},
		{"prompt:", nil, "empty prompt label"},
		{"prompt: : ", nil, "empty prompt label"},
		{"prompt:a\x1b[2Jb", nil, "control characters"},
		{"prompt:a\nb", nil, "control characters"},
		{"http:x", nil, "unrecognised PIN source"},
		{"File:/etc/pin", nil, "unrecognised PIN source"},
		{"prompts", nil, "unrecognised PIN source"},
		{"482913", nil, "unrecognised PIN source"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePINSource(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParsePINSource(%q) error = %v", tt.in, err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("ParsePINSource(%q) = %#v, want %#v", tt.in, got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParsePINSource(%q) = %#v, want error", tt.in, got)
			}
			if got != nil {
				t.Errorf("ParsePINSource(%q) returned %#v with error", tt.in, got)
			}
			if !errors.Is(err, ErrPINSource) {
				t.Errorf("error %v does not wrap ErrPINSource", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestParsePINSourceDoesNotEchoInput checks that a PIN mistakenly given
// where a source is expected is not echoed in the error.
func TestParsePINSourceDoesNotEchoInput(t *testing.T) {
	for _, in := range []string{"Hunter2-PIN", "env:9Hunter2", "file:Hunter2", "x:Hunter2"} {
		_, err := ParsePINSource(in)
		if err == nil {
			t.Fatalf("ParsePINSource(%q) succeeded", in)
		}
		if strings.Contains(err.Error(), "Hunter2") {
			t.Errorf("ParsePINSource(%q) error %q echoes the input", in, err)
		}
	}
}

func TestPromptPINNotATerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := w.WriteString("482913\n"); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	got, err := PromptPIN{Prompt: "SO PIN: ", In: r, Out: &out}.PIN()
	if err == nil {
		t.Fatalf("PIN() = %q, want error", got)
	}
	if got != nil {
		t.Errorf("PIN() returned %q with error", got)
	}
	if !errors.Is(err, ErrPINSource) {
		t.Errorf("error %v does not wrap ErrPINSource", err)
	}
	want := "token: PIN source: no terminal: use a pin-source file or environment variable"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if out.Len() != 0 {
		t.Errorf("prompt written although input is not a terminal: %q", out.String())
	}
}

func TestPromptPINRegularFile(t *testing.T) {
	path := writePINFile(t, "482913\n", 0o600)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	_, err = PromptPIN{In: f, Out: &out}.PIN()
	if !errors.Is(err, ErrPINSource) || !strings.Contains(err.Error(), "no terminal") {
		t.Fatalf("PIN() error = %v, want no-terminal ErrPINSource", err)
	}
	if out.Len() != 0 {
		t.Errorf("prompt written: %q", out.String())
	}
}
