package pkcs11shim

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/miekg/pkcs11"
)

// Selector names a token by what survives re-initialisation and slot
// renumbering: its label and/or serial number (plus, optionally, the
// manufacturer and model). Slot ids are never a selector on their own:
// SoftHSM renumbers slots after C_InitToken and HSMs after a restart.
type Selector struct {
	Label        string
	Serial       string
	Manufacturer string
	Model        string
}

// SelectorFromURI takes the token attributes of a PKCS#11 URI. A URI that
// names a token only by slot-id is refused.
func SelectorFromURI(u *URI) (Selector, error) {
	s := Selector{Label: u.Token, Serial: u.Serial, Manufacturer: u.Manufacturer, Model: u.Model}
	if s.Label == "" && s.Serial == "" {
		return s, fmt.Errorf("%w: the URI must name the token by token= (label) or serial=; slot-id alone is not accepted because slot ids move", ErrInvalidURI)
	}
	return s, nil
}

// Merge combines two selectors (say, a config's label and a URI). Fields
// given in both must agree; a conflict is refused by name.
func (s Selector) Merge(o Selector) (Selector, error) {
	out := s
	pairs := []struct {
		name string
		a    *string
		b    string
	}{{"label", &out.Label, o.Label}, {"serial", &out.Serial, o.Serial}, {"manufacturer", &out.Manufacturer, o.Manufacturer}, {"model", &out.Model, o.Model}}
	for _, p := range pairs {
		switch {
		case p.b == "":
		case *p.a == "":
			*p.a = p.b
		case *p.a != p.b:
			return s, fmt.Errorf("pkcs11shim: conflicting token %s: %q and %q", p.name, *p.a, p.b)
		}
	}
	return out, nil
}

func (s Selector) valid() error {
	if s.Label == "" && s.Serial == "" {
		return fmt.Errorf("%w: a token label or serial is required", ErrTokenNotFound)
	}
	return nil
}

func (s Selector) matches(ti pkcs11.TokenInfo) bool {
	return (s.Label == "" || s.Label == padTrim(ti.Label)) &&
		(s.Serial == "" || s.Serial == padTrim(ti.SerialNumber)) &&
		(s.Manufacturer == "" || s.Manufacturer == padTrim(ti.ManufacturerID)) &&
		(s.Model == "" || s.Model == padTrim(ti.Model))
}

// padTrim strips the padding of a fixed-length PKCS#11 text field: blanks
// per the standard, and NULs, which some modules (tpm2-pkcs11: "SW   TPM"
// followed by eight NULs) pad with instead.
func padTrim(s string) string { return strings.Trim(s, " \x00") }

func (s Selector) String() string {
	var parts []string
	for _, kv := range [][2]string{{"label", s.Label}, {"serial", s.Serial}, {"manufacturer", s.Manufacturer}, {"model", s.Model}} {
		if kv[1] != "" {
			parts = append(parts, fmt.Sprintf("%s=%q", kv[0], kv[1]))
		}
	}
	return strings.Join(parts, " ")
}

// TokenFlags are the CKF_ token flags a caller acts on, decoded.
type TokenFlags struct {
	Initialized         bool // CKF_TOKEN_INITIALIZED
	LoginRequired       bool // CKF_LOGIN_REQUIRED
	UserPINInitialized  bool // CKF_USER_PIN_INITIALIZED
	UserPINCountLow     bool // CKF_USER_PIN_COUNT_LOW: a wrong user PIN was entered since the last success
	UserPINFinalTry     bool // CKF_USER_PIN_FINAL_TRY: the next wrong user PIN locks it
	UserPINLocked       bool // CKF_USER_PIN_LOCKED
	UserPINToBeChanged  bool // CKF_USER_PIN_TO_BE_CHANGED
	SOPINCountLow       bool // CKF_SO_PIN_COUNT_LOW
	SOPINFinalTry       bool // CKF_SO_PIN_FINAL_TRY
	SOPINLocked         bool // CKF_SO_PIN_LOCKED
	ProtectedAuthPath   bool // CKF_PROTECTED_AUTHENTICATION_PATH: PIN pad on the device
	WriteProtected      bool // CKF_WRITE_PROTECTED
	RNG                 bool // CKF_RNG
	Removable           bool // CKF_REMOVABLE_DEVICE on the slot: a USB key or smart card
	HardwareSlot        bool // CKF_HW_SLOT on the slot
	ClockOnToken        bool // CKF_CLOCK_ON_TOKEN
	TokenPresentInSlot  bool // CKF_TOKEN_PRESENT on the slot
	DualCryptoOps       bool // CKF_DUAL_CRYPTO_OPERATIONS
	SecondaryAuth       bool // CKF_SECONDARY_AUTHENTICATION (deprecated)
	RestoreKeyNotNeeded bool // CKF_RESTORE_KEY_NOT_NEEDED
}

func decodeFlags(token, slot uint) TokenFlags {
	has := func(f, bit uint) bool { return f&bit != 0 }
	return TokenFlags{
		Initialized:         has(token, pkcs11.CKF_TOKEN_INITIALIZED),
		LoginRequired:       has(token, pkcs11.CKF_LOGIN_REQUIRED),
		UserPINInitialized:  has(token, pkcs11.CKF_USER_PIN_INITIALIZED),
		UserPINCountLow:     has(token, pkcs11.CKF_USER_PIN_COUNT_LOW),
		UserPINFinalTry:     has(token, pkcs11.CKF_USER_PIN_FINAL_TRY),
		UserPINLocked:       has(token, pkcs11.CKF_USER_PIN_LOCKED),
		UserPINToBeChanged:  has(token, pkcs11.CKF_USER_PIN_TO_BE_CHANGED),
		SOPINCountLow:       has(token, pkcs11.CKF_SO_PIN_COUNT_LOW),
		SOPINFinalTry:       has(token, pkcs11.CKF_SO_PIN_FINAL_TRY),
		SOPINLocked:         has(token, pkcs11.CKF_SO_PIN_LOCKED),
		ProtectedAuthPath:   has(token, pkcs11.CKF_PROTECTED_AUTHENTICATION_PATH),
		WriteProtected:      has(token, pkcs11.CKF_WRITE_PROTECTED),
		RNG:                 has(token, pkcs11.CKF_RNG),
		ClockOnToken:        has(token, pkcs11.CKF_CLOCK_ON_TOKEN),
		DualCryptoOps:       has(token, pkcs11.CKF_DUAL_CRYPTO_OPERATIONS),
		SecondaryAuth:       has(token, pkcs11.CKF_SECONDARY_AUTHENTICATION),
		RestoreKeyNotNeeded: has(token, pkcs11.CKF_RESTORE_KEY_NOT_NEEDED),
		Removable:           has(slot, pkcs11.CKF_REMOVABLE_DEVICE),
		HardwareSlot:        has(slot, pkcs11.CKF_HW_SLOT),
		TokenPresentInSlot:  has(slot, pkcs11.CKF_TOKEN_PRESENT),
	}
}

// TokenInfo describes a token, with its flags decoded. SlotID is
// informational: it may change, so never store it as the token's identity.
type TokenInfo struct {
	SlotID          uint
	Label           string
	Serial          string
	Manufacturer    string
	Model           string
	SlotDescription string
	Flags           TokenFlags
	RawFlags        uint
	MinPINLen       uint
	MaxPINLen       uint
	SessionCount    uint
	MaxSessionCount uint
}

func (m *Module) tokenInfo(ctx PKCtx, slot uint) (TokenInfo, error) {
	ti, err := ctx.GetTokenInfo(slot)
	if err != nil {
		return TokenInfo{}, wrapErr("C_GetTokenInfo", err)
	}
	si, err := ctx.GetSlotInfo(slot)
	if err != nil {
		return TokenInfo{}, wrapErr("C_GetSlotInfo", err)
	}
	return TokenInfo{
		SlotID:          slot,
		Label:           padTrim(ti.Label),
		Serial:          padTrim(ti.SerialNumber),
		Manufacturer:    padTrim(ti.ManufacturerID),
		Model:           padTrim(ti.Model),
		SlotDescription: padTrim(si.SlotDescription),
		Flags:           decodeFlags(ti.Flags, si.Flags),
		RawFlags:        ti.Flags,
		MinPINLen:       ti.MinPinLen,
		MaxPINLen:       ti.MaxPinLen,
		SessionCount:    ti.SessionCount,
		MaxSessionCount: ti.MaxSessionCount,
	}, nil
}

// Tokens lists the tokens present in the module's slots.
func (m *Module) Tokens() ([]TokenInfo, error) {
	var out []TokenInfo
	err := m.call(func(ctx PKCtx) error {
		slots, err := ctx.GetSlotList(true)
		if err != nil {
			return wrapErr("C_GetSlotList", err)
		}
		for _, slot := range slots {
			ti, err := m.tokenInfo(ctx, slot)
			if err != nil {
				// Removed between the two calls, or broken (SoftHSM answers
				// CKR_GENERAL_ERROR for a token whose files vanished): one bad
				// slot must not hide the others.
				continue
			}
			out = append(out, ti)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].SlotID < out[j].SlotID })
	return out, err
}

// FindToken returns the one initialised token matching sel. When none
// matches it re-initialises the module once (rate-limited) and looks again,
// because tokens created by another process are only visible after a new
// C_Initialize.
func (m *Module) FindToken(sel Selector) (TokenInfo, error) {
	if err := sel.valid(); err != nil {
		return TokenInfo{}, err
	}
	gen := m.Generation()
	ti, err := m.findToken(sel)
	if errors.Is(err, ErrTokenNotFound) {
		if m.Reinitialize(gen) == nil {
			ti, err = m.findToken(sel)
		}
	}
	return ti, err
}

// LookupToken is FindToken without the re-initialisation: it never
// disturbs other users of the module.
func (m *Module) LookupToken(sel Selector) (TokenInfo, error) {
	if err := sel.valid(); err != nil {
		return TokenInfo{}, err
	}
	return m.findToken(sel)
}

func (m *Module) findToken(sel Selector) (TokenInfo, error) {
	all, err := m.Tokens()
	if err != nil {
		return TokenInfo{}, err
	}
	var found []TokenInfo
	for _, ti := range all {
		if ti.Flags.Initialized && sel.matches(pkcs11.TokenInfo{Label: ti.Label, SerialNumber: ti.Serial, ManufacturerID: ti.Manufacturer, Model: ti.Model}) {
			found = append(found, ti)
		}
	}
	switch len(found) {
	case 0:
		return TokenInfo{}, fmt.Errorf("%w: no initialised token with %s in %s", ErrTokenNotFound, sel, m.path)
	case 1:
		return found[0], nil
	default:
		return TokenInfo{}, fmt.Errorf("%w: %d tokens with %s; add serial= to choose one", ErrTokenAmbiguous, len(found), sel)
	}
}

// Mechanism is one mechanism a token offers.
type Mechanism struct {
	Type uint
	Name string
}

// Mechanisms lists what the token in slot supports (C_GetMechanismList).
func (m *Module) Mechanisms(slot uint) ([]Mechanism, error) {
	var out []Mechanism
	err := m.call(func(ctx PKCtx) error {
		list, err := ctx.GetMechanismList(slot)
		if err != nil {
			return wrapErr("C_GetMechanismList", err)
		}
		for _, mech := range list {
			out = append(out, Mechanism{Type: mech.Mechanism, Name: MechanismName(mech.Mechanism)})
		}
		return nil
	})
	return out, err
}

// MechanismName returns the CKM_ name of a mechanism, or its hex value.
func MechanismName(t uint) string {
	if n, ok := mechNames[t]; ok {
		return n
	}
	if n, ok := vendorMechName(t); ok {
		return n
	}
	return fmt.Sprintf("CKM_0x%08X", t)
}

var mechNames = map[uint]string{
	pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN:  "CKM_RSA_PKCS_KEY_PAIR_GEN",
	pkcs11.CKM_RSA_PKCS:               "CKM_RSA_PKCS",
	pkcs11.CKM_RSA_PKCS_PSS:           "CKM_RSA_PKCS_PSS",
	pkcs11.CKM_RSA_PKCS_OAEP:          "CKM_RSA_PKCS_OAEP",
	pkcs11.CKM_SHA256_RSA_PKCS:        "CKM_SHA256_RSA_PKCS",
	pkcs11.CKM_SHA256_RSA_PKCS_PSS:    "CKM_SHA256_RSA_PKCS_PSS",
	pkcs11.CKM_EC_KEY_PAIR_GEN:        "CKM_EC_KEY_PAIR_GEN",
	pkcs11.CKM_ECDSA:                  "CKM_ECDSA",
	pkcs11.CKM_ECDSA_SHA256:           "CKM_ECDSA_SHA256",
	pkcs11.CKM_ECDH1_DERIVE:           "CKM_ECDH1_DERIVE",
	pkcs11.CKM_AES_KEY_GEN:            "CKM_AES_KEY_GEN",
	pkcs11.CKM_AES_GCM:                "CKM_AES_GCM",
	pkcs11.CKM_AES_CBC_PAD:            "CKM_AES_CBC_PAD",
	pkcs11.CKM_AES_KEY_WRAP:           "CKM_AES_KEY_WRAP",
	pkcs11.CKM_AES_KEY_WRAP_PAD:       "CKM_AES_KEY_WRAP_PAD",
	pkcs11.CKM_GENERIC_SECRET_KEY_GEN: "CKM_GENERIC_SECRET_KEY_GEN",
	pkcs11.CKM_SHA256_HMAC:            "CKM_SHA256_HMAC",
	pkcs11.CKM_SHA256:                 "CKM_SHA256",
	pkcs11.CKM_SHA384:                 "CKM_SHA384",
	pkcs11.CKM_SHA512:                 "CKM_SHA512",
}
