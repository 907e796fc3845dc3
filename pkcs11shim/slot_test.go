package pkcs11shim

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

func TestSelectorMerge(t *testing.T) {
	full := Selector{Label: "bank", Serial: "0123", Manufacturer: "SoftHSM project", Model: "SoftHSM v2"}
	tests := []struct {
		name string
		a, b Selector
		want Selector
	}{
		{"both empty", Selector{}, Selector{}, Selector{}},
		{"agree on everything", full, full, full},
		{"agree on label", Selector{Label: "bank"}, Selector{Label: "bank"}, Selector{Label: "bank"}},
		{"fill from other", Selector{}, full, full},
		{"keep own when other empty", full, Selector{}, full},
		{"fill serial, keep label", Selector{Label: "bank"}, Selector{Serial: "0123"}, Selector{Label: "bank", Serial: "0123"}},
		{"fill label, keep serial", Selector{Serial: "0123"}, Selector{Label: "bank"}, Selector{Label: "bank", Serial: "0123"}},
		{"agree and fill", Selector{Label: "bank", Model: "SoftHSM v2"}, Selector{Label: "bank", Manufacturer: "SoftHSM project"}, Selector{Label: "bank", Manufacturer: "SoftHSM project", Model: "SoftHSM v2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.a.Merge(tt.b)
			if err != nil {
				t.Fatalf("Merge: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Merge = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSelectorMergeConflict(t *testing.T) {
	base := Selector{Label: "bank", Serial: "0123", Manufacturer: "Acme", Model: "M1"}
	tests := []struct {
		field       string
		self, other Selector
		a, b        string
	}{
		{"label", base, Selector{Label: "shop"}, "bank", "shop"},
		{"serial", base, Selector{Label: "bank", Serial: "9999"}, "0123", "9999"},
		{"manufacturer", base, Selector{Manufacturer: "Other"}, "Acme", "Other"},
		{"model", base, Selector{Serial: "0123", Model: "M2"}, "M1", "M2"},
		// Fields filled before the conflict is found must not leak out.
		{"model", Selector{Model: "M1"}, Selector{Label: "bank", Serial: "0123", Model: "M2"}, "M1", "M2"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			got, err := tt.self.Merge(tt.other)
			if err == nil {
				t.Fatalf("Merge(%+v) = %+v, want a conflict", tt.other, got)
			}
			msg := err.Error()
			if !strings.Contains(msg, "token "+tt.field+":") || !strings.Contains(msg, `"`+tt.a+`"`) || !strings.Contains(msg, `"`+tt.b+`"`) {
				t.Errorf("error %q does not name the field %s and both values", msg, tt.field)
			}
			for _, f := range []string{"label", "serial", "manufacturer", "model"} {
				if f != tt.field && strings.Contains(msg, "token "+f+":") {
					t.Errorf("error %q names the wrong field %s", msg, f)
				}
			}
			if got != tt.self {
				t.Errorf("on conflict Merge returned %+v, want the receiver %+v unchanged", got, tt.self)
			}
		})
	}
}

func TestSelectorFromURI(t *testing.T) {
	tests := []struct {
		uri     string
		want    Selector
		wantErr bool
	}{
		{"pkcs11:token=bank", Selector{Label: "bank"}, false},
		{"pkcs11:token=My%20Token;slot-id=3", Selector{Label: "My Token"}, false},
		{"pkcs11:serial=0123abcd", Selector{Serial: "0123abcd"}, false},
		{"pkcs11:token=bank;serial=0123;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;object=k", Selector{Label: "bank", Serial: "0123", Manufacturer: "SoftHSM project", Model: "SoftHSM v2"}, false},
		{"pkcs11:slot-id=3", Selector{}, true},
		{"pkcs11:slot-id=0;object=key", Selector{}, true},
		{"pkcs11:", Selector{}, true},
		{"pkcs11:manufacturer=SoftHSM%20project;model=SoftHSM%20v2", Selector{Manufacturer: "SoftHSM project", Model: "SoftHSM v2"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			u, err := ParseURI(tt.uri)
			if err != nil {
				t.Fatalf("ParseURI: %v", err)
			}
			got, err := SelectorFromURI(u)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidURI) {
					t.Fatalf("SelectorFromURI = %+v, %v; want ErrInvalidURI", got, err)
				}
				if !strings.Contains(err.Error(), "slot-id") {
					t.Errorf("error %q does not explain slot-id", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("SelectorFromURI: %v", err)
			}
			if got != tt.want {
				t.Fatalf("SelectorFromURI = %+v, want %+v", got, tt.want)
			}
			if err := got.valid(); err != nil {
				t.Fatalf("accepted selector is not valid: %v", err)
			}
		})
	}
}

func TestSelectorValidAndMatches(t *testing.T) {
	if err := (Selector{Manufacturer: "x"}).valid(); !errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("valid() without label or serial = %v, want ErrTokenNotFound", err)
	}
	ti := pkcs11.TokenInfo{Label: "bank" + strings.Repeat(" ", 28), SerialNumber: "0123            ", ManufacturerID: "SoftHSM project ", Model: "SoftHSM v2      "}
	tests := []struct {
		sel  Selector
		want bool
	}{
		{Selector{Label: "bank"}, true},
		{Selector{Serial: "0123"}, true},
		{Selector{Label: "bank", Serial: "0123", Manufacturer: "SoftHSM project", Model: "SoftHSM v2"}, true},
		{Selector{Label: "ban"}, false},
		{Selector{Label: "bank", Serial: "0124"}, false},
		{Selector{Label: "bank", Manufacturer: "Other"}, false},
		{Selector{Label: "bank", Model: "v2"}, false},
	}
	for _, tt := range tests {
		if got := tt.sel.matches(ti); got != tt.want {
			t.Errorf("%+v.matches = %v, want %v", tt.sel, got, tt.want)
		}
	}
	// tpm2-pkcs11 pads with NULs after the blanks.
	tpm2 := pkcs11.TokenInfo{Label: "kw-tpm2" + strings.Repeat(" ", 25), SerialNumber: "0000000000000000", ManufacturerID: "IBM\x00\x00", Model: "SW   TPM\x00\x00\x00\x00\x00\x00\x00\x00"}
	if !(Selector{Label: "kw-tpm2", Manufacturer: "IBM", Model: "SW   TPM"}).matches(tpm2) {
		t.Error("a NUL-padded model or manufacturer does not match")
	}
}

func TestDecodeFlags(t *testing.T) {
	tests := []struct {
		field string
		token uint
		slot  uint
	}{
		{"Initialized", pkcs11.CKF_TOKEN_INITIALIZED, 0},
		{"LoginRequired", pkcs11.CKF_LOGIN_REQUIRED, 0},
		{"UserPINInitialized", pkcs11.CKF_USER_PIN_INITIALIZED, 0},
		{"UserPINCountLow", pkcs11.CKF_USER_PIN_COUNT_LOW, 0},
		{"UserPINFinalTry", pkcs11.CKF_USER_PIN_FINAL_TRY, 0},
		{"UserPINLocked", pkcs11.CKF_USER_PIN_LOCKED, 0},
		{"UserPINToBeChanged", pkcs11.CKF_USER_PIN_TO_BE_CHANGED, 0},
		{"SOPINCountLow", pkcs11.CKF_SO_PIN_COUNT_LOW, 0},
		{"SOPINFinalTry", pkcs11.CKF_SO_PIN_FINAL_TRY, 0},
		{"SOPINLocked", pkcs11.CKF_SO_PIN_LOCKED, 0},
		{"ProtectedAuthPath", pkcs11.CKF_PROTECTED_AUTHENTICATION_PATH, 0},
		{"WriteProtected", pkcs11.CKF_WRITE_PROTECTED, 0},
		{"RNG", pkcs11.CKF_RNG, 0},
		{"ClockOnToken", pkcs11.CKF_CLOCK_ON_TOKEN, 0},
		{"DualCryptoOps", pkcs11.CKF_DUAL_CRYPTO_OPERATIONS, 0},
		{"SecondaryAuth", pkcs11.CKF_SECONDARY_AUTHENTICATION, 0},
		{"RestoreKeyNotNeeded", pkcs11.CKF_RESTORE_KEY_NOT_NEEDED, 0},
		// Slot flags share bit values with token flags (CKF_TOKEN_PRESENT ==
		// CKF_RNG, ...): they must be read from the slot word only.
		{"Removable", 0, pkcs11.CKF_REMOVABLE_DEVICE},
		{"HardwareSlot", 0, pkcs11.CKF_HW_SLOT},
		{"TokenPresentInSlot", 0, pkcs11.CKF_TOKEN_PRESENT},
	}
	typ := reflect.TypeOf(TokenFlags{})
	if typ.NumField() != len(tests) {
		t.Fatalf("TokenFlags has %d fields, the table %d", typ.NumField(), len(tests))
	}
	var allToken, allSlot uint
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			var want TokenFlags
			f := reflect.ValueOf(&want).Elem().FieldByName(tt.field)
			if !f.IsValid() {
				t.Fatalf("no field %s", tt.field)
			}
			f.SetBool(true)
			if got := decodeFlags(tt.token, tt.slot); got != want {
				t.Errorf("decodeFlags(0x%X, 0x%X) = %+v, want only %s", tt.token, tt.slot, got, tt.field)
			}
		})
		allToken |= tt.token
		allSlot |= tt.slot
	}
	if got := decodeFlags(0, 0); got != (TokenFlags{}) {
		t.Errorf("decodeFlags(0, 0) = %+v", got)
	}
	all := decodeFlags(allToken, allSlot)
	v := reflect.ValueOf(all)
	for i := range v.NumField() {
		if !v.Field(i).Bool() {
			t.Errorf("all bits set, but %s is false", typ.Field(i).Name)
		}
	}
}

func TestMechanismName(t *testing.T) {
	known := []struct {
		mech uint
		name string
	}{
		{pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, "CKM_RSA_PKCS_KEY_PAIR_GEN"},
		{pkcs11.CKM_RSA_PKCS, "CKM_RSA_PKCS"},
		{pkcs11.CKM_RSA_PKCS_PSS, "CKM_RSA_PKCS_PSS"},
		{pkcs11.CKM_RSA_PKCS_OAEP, "CKM_RSA_PKCS_OAEP"},
		{pkcs11.CKM_SHA256_RSA_PKCS, "CKM_SHA256_RSA_PKCS"},
		{pkcs11.CKM_SHA256_RSA_PKCS_PSS, "CKM_SHA256_RSA_PKCS_PSS"},
		{pkcs11.CKM_EC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"},
		{pkcs11.CKM_ECDSA, "CKM_ECDSA"},
		{pkcs11.CKM_ECDSA_SHA256, "CKM_ECDSA_SHA256"},
		{pkcs11.CKM_ECDH1_DERIVE, "CKM_ECDH1_DERIVE"},
		{pkcs11.CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN"},
		{pkcs11.CKM_AES_GCM, "CKM_AES_GCM"},
		{pkcs11.CKM_AES_CBC_PAD, "CKM_AES_CBC_PAD"},
		{pkcs11.CKM_AES_KEY_WRAP, "CKM_AES_KEY_WRAP"},
		{pkcs11.CKM_AES_KEY_WRAP_PAD, "CKM_AES_KEY_WRAP_PAD"},
		{pkcs11.CKM_GENERIC_SECRET_KEY_GEN, "CKM_GENERIC_SECRET_KEY_GEN"},
		{pkcs11.CKM_SHA256_HMAC, "CKM_SHA256_HMAC"},
		{pkcs11.CKM_SHA256, "CKM_SHA256"},
		{pkcs11.CKM_SHA384, "CKM_SHA384"},
		{pkcs11.CKM_SHA512, "CKM_SHA512"},
	}
	for _, tt := range known {
		if got := MechanismName(tt.mech); got != tt.name {
			t.Errorf("MechanismName(0x%X) = %q, want %q", tt.mech, got, tt.name)
		}
	}
	if len(mechNames) != len(known) {
		t.Errorf("mechNames has %d entries, the test knows %d", len(mechNames), len(known))
	}
	unknown := []struct {
		mech uint
		want string
	}{
		{0xFFFF, "CKM_0x0000FFFF"},
		{pkcs11.CKM_SHA_1, "CKM_0x00000220"},
		{0x80000001, "CKM_0x80000001"},
	}
	for _, tt := range unknown {
		if got := MechanismName(tt.mech); got != tt.want {
			t.Errorf("MechanismName(0x%X) = %q, want %q", tt.mech, got, tt.want)
		}
	}
}
