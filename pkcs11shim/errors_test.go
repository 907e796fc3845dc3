package pkcs11shim

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

// allSentinels is every exported sentinel error of the package.
// TestAllSentinelsListed keeps it complete.
var allSentinels = map[string]error{
	"ErrModuleLoad":              ErrModuleLoad,
	"ErrTokenNotFound":           ErrTokenNotFound,
	"ErrTokenAmbiguous":          ErrTokenAmbiguous,
	"ErrTokenNotPresent":         ErrTokenNotPresent,
	"ErrSessionClosed":           ErrSessionClosed,
	"ErrPINIncorrect":            ErrPINIncorrect,
	"ErrPINLocked":               ErrPINLocked,
	"ErrPINInvalid":              ErrPINInvalid,
	"ErrNotLoggedIn":             ErrNotLoggedIn,
	"ErrKeyNotFound":             ErrKeyNotFound,
	"ErrDuplicateLabel":          ErrDuplicateLabel,
	"ErrMechanismInvalid":        ErrMechanismInvalid,
	"ErrKeyUnextractable":        ErrKeyUnextractable,
	"ErrKeyMismatch":             ErrKeyMismatch,
	"ErrSignatureInvalid":        ErrSignatureInvalid,
	"ErrDecrypt":                 ErrDecrypt,
	"ErrInputInvalid":            ErrInputInvalid,
	"ErrPoolTimeout":             ErrPoolTimeout,
	"ErrPoolClosed":              ErrPoolClosed,
	"ErrTokenBusy":               ErrTokenBusy,
	"ErrDeviceMemory":            ErrDeviceMemory,
	"ErrInvalidURI":              ErrInvalidURI,
	"ErrPINSourceSyntax":         ErrPINSourceSyntax,
	"ErrNotTrustedOnly":          ErrNotTrustedOnly,
	"ErrLoggedIn":                ErrLoggedIn,
	"ErrUntrustedReplicationKey": ErrUntrustedReplicationKey,
}

// TestAllSentinelsListed parses the package's non-test sources and checks
// that every package-level Err* variable is in allSentinels, so a new
// sentinel cannot escape the "matches no other sentinel" checks below.
func TestAllSentinelsListed(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				for _, id := range spec.(*ast.ValueSpec).Names {
					if strings.HasPrefix(id.Name, "Err") {
						declared[id.Name] = true
					}
				}
			}
		}
	}
	if len(declared) == 0 {
		t.Fatal("found no Err* variables: parsing went wrong")
	}
	for name := range declared {
		if _, ok := allSentinels[name]; !ok {
			t.Errorf("sentinel %s is missing from allSentinels", name)
		}
	}
	for name := range allSentinels {
		if !declared[name] {
			t.Errorf("allSentinels lists %s, which is not declared", name)
		}
	}
	seen := map[error]string{}
	for name, e := range allSentinels {
		if other, dup := seen[e]; dup {
			t.Errorf("%s and %s are the same error value", name, other)
		}
		seen[e] = name
	}
}

// ckrTable is every code ckrSentinel maps, with its CKR name and the one
// sentinel it must match.
var ckrTable = []struct {
	code     uint
	name     string
	sentinel string
}{
	{pkcs11.CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT", "ErrPINIncorrect"},
	{pkcs11.CKR_PIN_LOCKED, "CKR_PIN_LOCKED", "ErrPINLocked"},
	{pkcs11.CKR_PIN_INVALID, "CKR_PIN_INVALID", "ErrPINInvalid"},
	{pkcs11.CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE", "ErrPINInvalid"},
	{pkcs11.CKR_PIN_EXPIRED, "CKR_PIN_EXPIRED", "ErrPINInvalid"},
	{pkcs11.CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN", "ErrNotLoggedIn"},
	{pkcs11.CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT", "ErrTokenNotPresent"},
	{pkcs11.CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED", "ErrTokenNotPresent"},
	{pkcs11.CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED", "ErrTokenNotPresent"},
	{pkcs11.CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR", "ErrTokenNotPresent"},
	{pkcs11.CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED", "ErrSessionClosed"},
	{pkcs11.CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID", "ErrSessionClosed"},
	{pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED", "ErrSessionClosed"},
	{pkcs11.CKR_SESSION_COUNT, "CKR_SESSION_COUNT", "ErrTokenBusy"},
	{pkcs11.CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY", "ErrDeviceMemory"},
	{pkcs11.CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID", "ErrKeyNotFound"},
	{pkcs11.CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID", "ErrKeyNotFound"},
	{pkcs11.CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID", "ErrMechanismInvalid"},
	{pkcs11.CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID", "ErrMechanismInvalid"},
	{pkcs11.CKR_KEY_UNEXTRACTABLE, "CKR_KEY_UNEXTRACTABLE", "ErrKeyUnextractable"},
	{pkcs11.CKR_KEY_NOT_WRAPPABLE, "CKR_KEY_NOT_WRAPPABLE", "ErrKeyUnextractable"},
	{pkcs11.CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE", "ErrKeyUnextractable"},
	{pkcs11.CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT", "ErrKeyMismatch"},
	{pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED", "ErrKeyMismatch"},
	{pkcs11.CKR_KEY_SIZE_RANGE, "CKR_KEY_SIZE_RANGE", "ErrKeyMismatch"},
	{pkcs11.CKR_WRAPPING_KEY_TYPE_INCONSISTENT, "CKR_WRAPPING_KEY_TYPE_INCONSISTENT", "ErrKeyMismatch"},
	{pkcs11.CKR_SIGNATURE_INVALID, "CKR_SIGNATURE_INVALID", "ErrSignatureInvalid"},
	{pkcs11.CKR_SIGNATURE_LEN_RANGE, "CKR_SIGNATURE_LEN_RANGE", "ErrSignatureInvalid"},
	{pkcs11.CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID", "ErrDecrypt"},
	{pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE, "CKR_ENCRYPTED_DATA_LEN_RANGE", "ErrDecrypt"},
	{pkcs11.CKR_WRAPPED_KEY_INVALID, "CKR_WRAPPED_KEY_INVALID", "ErrDecrypt"},
	{pkcs11.CKR_WRAPPED_KEY_LEN_RANGE, "CKR_WRAPPED_KEY_LEN_RANGE", "ErrDecrypt"},
	{pkcs11.CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE", "ErrInputInvalid"},
	{pkcs11.CKR_DATA_INVALID, "CKR_DATA_INVALID", "ErrInputInvalid"},
}

// The table above and ckrSentinel must list the same codes.
func TestCKRTableCoversMap(t *testing.T) {
	inTable := map[uint]bool{}
	for _, tt := range ckrTable {
		if inTable[tt.code] {
			t.Errorf("code 0x%X listed twice", tt.code)
		}
		inTable[tt.code] = true
		if _, ok := ckrSentinel[tt.code]; !ok {
			t.Errorf("%s is in the test table but not in ckrSentinel", tt.name)
		}
	}
	for code := range ckrSentinel {
		if !inTable[code] {
			t.Errorf("ckrSentinel code 0x%X (%v) is not tested", code, pkcs11.Error(code))
		}
	}
}

func sortedSentinelNames() []string {
	names := make([]string, 0, len(allSentinels))
	for n := range allSentinels {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func TestWrapErrMatchesExactlyItsSentinel(t *testing.T) {
	for _, tt := range ckrTable {
		t.Run(tt.name, func(t *testing.T) {
			want, ok := allSentinels[tt.sentinel]
			if !ok {
				t.Fatalf("unknown sentinel %s", tt.sentinel)
			}
			err := wrapErr("C_X", pkcs11.Error(tt.code))
			var ce *CKRError
			if !errors.As(err, &ce) {
				t.Fatalf("wrapErr returned %T, want *CKRError", err)
			}
			if ce.Op != "C_X" || ce.Code != tt.code {
				t.Fatalf("CKRError{%q, 0x%X}, want {C_X, 0x%X}", ce.Op, ce.Code, tt.code)
			}
			// Wrapped once more by a caller, the matching must not change.
			for _, e := range []error{err, fmt.Errorf("context: %w", err)} {
				for _, name := range sortedSentinelNames() {
					if got := errors.Is(e, allSentinels[name]); got != (name == tt.sentinel) {
						t.Errorf("errors.Is(%v, %s) = %v", e, name, got)
					}
				}
				if !errors.Is(e, want) {
					t.Errorf("errors.Is(%v, %s) = false", e, tt.sentinel)
				}
				if !errors.Is(e, pkcs11.Error(tt.code)) {
					t.Errorf("errors.Is(%v, pkcs11.Error(%s)) = false", e, tt.name)
				}
				if errors.Is(e, pkcs11.Error(pkcs11.CKR_GENERAL_ERROR)) || errors.Is(e, pkcs11.Error(tt.code+1)) {
					t.Errorf("%v matches another CKR code", e)
				}
			}
			msg := err.Error()
			if !strings.Contains(msg, "C_X") || !strings.Contains(msg, tt.name) {
				t.Errorf("Error() = %q, want the op C_X and %s", msg, tt.name)
			}
			if code, ok := ckrCode(fmt.Errorf("x: %w", err)); !ok || code != tt.code {
				t.Errorf("ckrCode = 0x%X, %v; want 0x%X", code, ok, tt.code)
			}
		})
	}
}

func TestWrapErrUnknownCode(t *testing.T) {
	for _, code := range []uint{pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_FUNCTION_FAILED, pkcs11.CKR_ARGUMENTS_BAD, pkcs11.CKR_OPERATION_ACTIVE, pkcs11.CKR_USER_ALREADY_LOGGED_IN, 0x8000_1234} {
		err := wrapErr("C_Sign", pkcs11.Error(code))
		var ce *CKRError
		if !errors.As(err, &ce) || ce.Code != code || ce.Op != "C_Sign" {
			t.Fatalf("wrapErr(0x%X) = %#v, want *CKRError", code, err)
		}
		for _, name := range sortedSentinelNames() {
			if errors.Is(err, allSentinels[name]) {
				t.Errorf("code 0x%X matches %s", code, name)
			}
		}
		if !errors.Is(err, pkcs11.Error(code)) {
			t.Errorf("errors.Is(%v, pkcs11.Error(0x%X)) = false", err, code)
		}
		if IsPINError(err) || sessionBroken(err) {
			t.Errorf("0x%X classified as PIN error %v / session broken %v", code, IsPINError(err), sessionBroken(err))
		}
		if !strings.Contains(err.Error(), "C_Sign") {
			t.Errorf("Error() = %q lacks the op", err.Error())
		}
	}
	if msg := wrapErr("C_Sign", pkcs11.Error(pkcs11.CKR_GENERAL_ERROR)).Error(); !strings.Contains(msg, "CKR_GENERAL_ERROR") {
		t.Errorf("Error() = %q lacks CKR_GENERAL_ERROR", msg)
	}
}

func TestWrapErrPassThrough(t *testing.T) {
	if err := wrapErr("C_X", nil); err != nil {
		t.Fatalf("wrapErr(nil) = %v", err)
	}
	plain := errors.New("plain")
	wrapped := fmt.Errorf("ctx: %w", io.ErrUnexpectedEOF)
	for _, e := range []error{plain, io.EOF, wrapped, os.ErrNotExist, ErrPINIncorrect, fmt.Errorf("%w: x", ErrKeyMismatch)} {
		if got := wrapErr("C_X", e); got != e {
			t.Errorf("wrapErr(%v) = %v, want the same error", e, got)
		}
		if _, ok := ckrCode(e); ok {
			t.Errorf("ckrCode(%v) found a code", e)
		}
	}
	if _, ok := ckrCode(nil); ok {
		t.Error("ckrCode(nil) found a code")
	}
	if code, ok := ckrCode(pkcs11.Error(pkcs11.CKR_PIN_LOCKED)); !ok || code != pkcs11.CKR_PIN_LOCKED {
		t.Errorf("ckrCode(raw pkcs11.Error) = 0x%X, %v", code, ok)
	}
}

func TestErrorClassification(t *testing.T) {
	pin := map[uint]bool{pkcs11.CKR_PIN_INCORRECT: true, pkcs11.CKR_PIN_LOCKED: true, pkcs11.CKR_PIN_INVALID: true, pkcs11.CKR_PIN_LEN_RANGE: true, pkcs11.CKR_PIN_EXPIRED: true}
	broken := map[uint]bool{
		pkcs11.CKR_SESSION_CLOSED: true, pkcs11.CKR_SESSION_HANDLE_INVALID: true, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED: true,
		pkcs11.CKR_TOKEN_NOT_PRESENT: true, pkcs11.CKR_TOKEN_NOT_RECOGNIZED: true, pkcs11.CKR_DEVICE_REMOVED: true, pkcs11.CKR_DEVICE_ERROR: true,
	}
	for _, tt := range ckrTable {
		err := fmt.Errorf("op: %w", wrapErr("C_X", pkcs11.Error(tt.code)))
		if got := IsPINError(err); got != pin[tt.code] {
			t.Errorf("IsPINError(%s) = %v", tt.name, got)
		}
		if got := sessionBroken(err); got != broken[tt.code] {
			t.Errorf("sessionBroken(%s) = %v", tt.name, got)
		}
	}
	// Sentinels used directly (e.g. by the PIN guard) classify the same way.
	for name, e := range allSentinels {
		wantPIN := e == ErrPINIncorrect || e == ErrPINLocked || e == ErrPINInvalid
		wantBroken := e == ErrSessionClosed || e == ErrTokenNotPresent
		if got := IsPINError(fmt.Errorf("x: %w", e)); got != wantPIN {
			t.Errorf("IsPINError(%s) = %v", name, got)
		}
		if got := sessionBroken(fmt.Errorf("x: %w", e)); got != wantBroken {
			t.Errorf("sessionBroken(%s) = %v", name, got)
		}
	}
	if IsPINError(nil) || sessionBroken(nil) {
		t.Error("nil classified as an error")
	}
}
