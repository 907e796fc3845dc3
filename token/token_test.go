package token

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkcs11shim"
)

func TestConfigResolve(t *testing.T) {
	guard := GuardConfig{Path: "/var/lib/keyward/keysvc.db"} // resolve only checks it; nothing is opened
	const (
		mod      = "/usr/lib/softhsm/libsofthsm2.so"
		otherMod = "/opt/hsm/lib/libcryptoki.so"
	)
	configPIN := EnvPIN{Name: "KEYWARD_CONFIG_PIN"}

	tests := []struct {
		name string
		cfg  Config

		// On success:
		wantModule string
		wantSel    pkcs11shim.Selector
		wantPIN    PINSource

		// On failure: the error matches wantIs (if set) and its text
		// contains every string in wantErr.
		wantIs  error
		wantErr []string
	}{
		{
			name:       "label only",
			cfg:        Config{Kind: KindHSM, Module: mod, Label: "bank", PINGuard: guard},
			wantModule: mod,
			wantSel:    pkcs11shim.Selector{Label: "bank"},
		},
		{
			name:       "serial only, config PIN kept",
			cfg:        Config{Kind: KindUSBKey, Module: mod, Serial: "5f3c9a1b2d4e6f70", PIN: configPIN, PINGuard: guard},
			wantModule: mod,
			wantSel:    pkcs11shim.Selector{Serial: "5f3c9a1b2d4e6f70"},
			wantPIN:    configPIN,
		},
		{
			name:       "URI token gives the label",
			cfg:        Config{Kind: KindHSM, Module: mod, URI: "pkcs11:token=bank", PINGuard: guard},
			wantModule: mod,
			wantSel:    pkcs11shim.Selector{Label: "bank"},
		},
		{
			name:       "URI token equal to config label",
			cfg:        Config{Kind: KindHSM, Module: mod, URI: "pkcs11:token=bank", Label: "bank", PINGuard: guard},
			wantModule: mod,
			wantSel:    pkcs11shim.Selector{Label: "bank"},
		},
		{
			name:       "URI token and config serial merge",
			cfg:        Config{Kind: KindHSM, Module: mod, URI: "pkcs11:token=bank;manufacturer=SoftHSM%20project;model=SoftHSM%20v2", Serial: "5f3c9a1b2d4e6f70", PINGuard: guard},
			wantModule: mod,
			wantSel:    pkcs11shim.Selector{Label: "bank", Serial: "5f3c9a1b2d4e6f70", Manufacturer: "SoftHSM project", Model: "SoftHSM v2"},
		},
		{
			name:    "URI token conflicts with config label",
			cfg:     Config{Kind: KindHSM, Module: mod, URI: "pkcs11:token=bank", Label: "treasury", PINGuard: guard},
			wantErr: []string{"conflicting", "label", `"treasury"`, `"bank"`},
		},
		{
			name:    "URI serial conflicts with config serial",
			cfg:     Config{Kind: KindHSM, Module: mod, URI: "pkcs11:serial=0001", Serial: "0002", PINGuard: guard},
			wantErr: []string{"conflicting", "serial", `"0001"`, `"0002"`},
		},
		{
			name:       "module from URI module-path",
			cfg:        Config{Kind: KindHSM, URI: "pkcs11:token=bank?module-path=" + mod, PINGuard: guard},
			wantModule: mod,
			wantSel:    pkcs11shim.Selector{Label: "bank"},
		},
		{
			name:       "URI module-path equal to config module",
			cfg:        Config{Kind: KindHSM, Module: mod, URI: "pkcs11:token=bank?module-path=" + mod, PINGuard: guard},
			wantModule: mod,
			wantSel:    pkcs11shim.Selector{Label: "bank"},
		},
		{
			name:    "URI module-path conflicts with config module",
			cfg:     Config{Kind: KindHSM, Module: otherMod, URI: "pkcs11:token=bank?module-path=" + mod, PINGuard: guard},
			wantErr: []string{"conflicting module path", otherMod, mod},
		},
		{
			name:       "pin-source file:",
			cfg:        Config{Kind: KindHSM, Module: mod, URI: "pkcs11:token=bank?pin-source=file:/run/keyward/pin", PINGuard: guard},
			wantModule: mod,
			wantSel:    pkcs11shim.Selector{Label: "bank"},
			wantPIN:    FilePIN{Path: "/run/keyward/pin"},
		},
		{
			name:       "pin-source bare path",
			cfg:        Config{Kind: KindHSM, URI: "pkcs11:token=bank?module-path=" + mod + "&pin-source=/run/keyward/pin", PINGuard: guard},
			wantModule: mod,
			wantSel:    pkcs11shim.Selector{Label: "bank"},
			wantPIN:    FilePIN{Path: "/run/keyward/pin"},
		},
		{
			name:       "pin-source env:",
			cfg:        Config{Kind: KindUSBKey, Module: mod, URI: "pkcs11:token=bank?pin-source=env:KEYWARD_PIN", PINGuard: guard},
			wantModule: mod,
			wantSel:    pkcs11shim.Selector{Label: "bank"},
			wantPIN:    EnvPIN{Name: "KEYWARD_PIN"},
		},
		{
			name:    "config PIN and URI pin-source",
			cfg:     Config{Kind: KindHSM, Module: mod, URI: "pkcs11:token=bank?pin-source=env:KEYWARD_PIN", PIN: configPIN, PINGuard: guard},
			wantErr: []string{"conflicting PIN sources", "pin-source"},
		},
		{
			name:    "missing kind",
			cfg:     Config{Module: mod, Label: "bank", PINGuard: guard},
			wantErr: []string{"kind must be hsm or usb-key"},
		},
		{
			name:    "unknown kind",
			cfg:     Config{Kind: Kind(99), Module: mod, Label: "bank", PINGuard: guard},
			wantErr: []string{"kind must be hsm or usb-key"},
		},
		{
			name:    "missing module",
			cfg:     Config{Kind: KindHSM, URI: "pkcs11:token=bank?pin-source=env:KEYWARD_PIN", PINGuard: guard},
			wantErr: []string{"no PKCS#11 module path"},
		},
		{
			name:    "missing selector",
			cfg:     Config{Kind: KindHSM, Module: mod, PINGuard: guard},
			wantErr: []string{"label or serial"},
		},
		{
			name:    "missing guard",
			cfg:     Config{Kind: KindHSM, Module: mod, Label: "bank"},
			wantErr: []string{"PIN guard is required", "PINGuard.Path"},
		},
		{
			name:    "two guard stores",
			cfg:     Config{Kind: KindHSM, Module: mod, Label: "bank", PINGuard: GuardConfig{Path: "/var/lib/keyward/keysvc.db", Store: &BoltStore{}}},
			wantErr: []string{"conflicting PIN guard stores"},
		},
		{
			name:    "relative guard file",
			cfg:     Config{Kind: KindHSM, Module: mod, Label: "bank", PINGuard: GuardConfig{Path: "keysvc.db"}},
			wantErr: []string{"absolute path"},
		},
		{
			name:   "guard limit above six",
			cfg:    Config{Kind: KindHSM, Module: mod, Label: "bank", PINGuard: GuardConfig{Path: "/var/lib/keyward/keysvc.db", Limit: 7}},
			wantIs: ErrBadLimit,
		},
		{
			name:    "slot-id-only URI",
			cfg:     Config{Kind: KindHSM, URI: "pkcs11:slot-id=0?module-path=" + mod, PINGuard: guard},
			wantIs:  pkcs11shim.ErrInvalidURI,
			wantErr: []string{"slot-id"},
		},
		{
			name:    "malformed URI",
			cfg:     Config{Kind: KindHSM, Module: mod, URI: "pkcs11:token=bank;bogus=1", PINGuard: guard},
			wantIs:  pkcs11shim.ErrInvalidURI,
			wantErr: []string{"bogus"},
		},
		{
			name:    "not a PKCS#11 URI",
			cfg:     Config{Kind: KindHSM, Module: mod, URI: "file:/etc/keyward.conf", Label: "bank", PINGuard: guard},
			wantIs:  pkcs11shim.ErrInvalidURI,
			wantErr: []string{"pkcs11:"},
		},
		{
			name:    "pin-value refused",
			cfg:     Config{Kind: KindHSM, Module: mod, URI: "pkcs11:token=bank?pin-value=S3cr3t-PIN-xyz", PINGuard: guard},
			wantIs:  pkcs11shim.ErrInvalidURI,
			wantErr: []string{"pin-value", "pin-source"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			module, sel, pin, err := tc.cfg.resolve()
			if tc.wantIs != nil || tc.wantErr != nil {
				if err == nil {
					t.Fatalf("resolve() = %q, %+v, %v; want an error", module, sel, pin)
				}
				if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
					t.Errorf("resolve() error = %v, want errors.Is %v", err, tc.wantIs)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("resolve() error = %q, want it to mention %q", err, s)
					}
				}
				if strings.Contains(err.Error(), "S3cr3t-PIN-xyz") {
					t.Errorf("resolve() error %q contains the PIN", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolve(): %v", err)
			}
			if module != tc.wantModule {
				t.Errorf("module = %q, want %q", module, tc.wantModule)
			}
			if sel != tc.wantSel {
				t.Errorf("selector = %+v, want %+v", sel, tc.wantSel)
			}
			if pin != tc.wantPIN {
				t.Errorf("PIN source = %#v, want %#v", pin, tc.wantPIN)
			}
		})
	}
}

// resolve does not change the Config it is called on.
func TestConfigResolveLeavesConfigAlone(t *testing.T) {
	guard := GuardConfig{Path: "/var/lib/keyward/keyward.db"}
	cfg := Config{Kind: KindHSM, URI: "pkcs11:token=bank?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:KEYWARD_PIN", PINGuard: guard}
	before := cfg
	if _, _, _, err := cfg.resolve(); err != nil {
		t.Fatal(err)
	}
	if cfg.Module != before.Module || cfg.Label != before.Label || cfg.Serial != before.Serial || cfg.PIN != before.PIN {
		t.Fatalf("resolve modified the config: %+v, was %+v", cfg, before)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindHSM: "hsm", KindUSBKey: "usb-key", 0: "Kind(0)", 42: "Kind(42)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}
