package pkcs11shim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

// These tests cover the selection logic and the invariants of the shipped
// tables. They cannot prove a table right: no Chinese HSM is available to
// CI (see vendor_sm.go, Limitations).

// testSMTable is a synthetic vendor with every code known, so the selection
// rules can be tested independently of what the real tables know.
var testSMTable = SMMechanisms{
	Vendor:          "Test Vendor",
	ManufacturerIDs: []string{"TestVendor"},
	SM2KeyPairGen:   0x80001001,
	SM2Sign:         0x80001002,
	SM2Encrypt:      0x80001003,
	SM3:             0x80001004,
	SM4KeyGen:       0x80001005,
	SM4CBC:          0x80001006,
	SM4ECB:          0x80001007,
	KeyTypeSM2:      0x80000101,
	KeyTypeSM4:      0x80000102,
}

var otherSMTable = SMMechanisms{
	Vendor:          "Other HSM",
	ManufacturerIDs: []string{"OtherCorp", "Other Labs"},
	SM2KeyPairGen:   0x80002001,
	SM2Sign:         0x80002002,
	KeyTypeSM2:      0x80000201,
}

// allSMNeeds is every non-empty combination of needs.
var allSMNeeds = []SMNeeds{
	{Sign: true}, {Encrypt: true}, {Symmetric: true},
	{Sign: true, Encrypt: true}, {Sign: true, Symmetric: true}, {Encrypt: true, Symmetric: true},
	{Sign: true, Encrypt: true, Symmetric: true},
}

// smField names one code of an SMMechanisms for the tests, independently of
// the production code's own role lists.
type smField struct {
	name    string // as it must appear in reasons: CKM_VENDOR_... / CKK_VENDOR_...
	keyType bool
	get     func(*SMMechanisms) *uint
}

var (
	fSM2KeyPairGen = smField{"CKM_VENDOR_SM2_KEY_PAIR_GEN", false, func(m *SMMechanisms) *uint { return &m.SM2KeyPairGen }}
	fSM2Sign       = smField{"CKM_VENDOR_SM2DSA", false, func(m *SMMechanisms) *uint { return &m.SM2Sign }}
	fSM2Encrypt    = smField{"CKM_VENDOR_SM2_ENCRYPT", false, func(m *SMMechanisms) *uint { return &m.SM2Encrypt }}
	fSM3           = smField{"CKM_VENDOR_SM3", false, func(m *SMMechanisms) *uint { return &m.SM3 }}
	fSM4KeyGen     = smField{"CKM_VENDOR_SM4_KEY_GEN", false, func(m *SMMechanisms) *uint { return &m.SM4KeyGen }}
	fSM4CBC        = smField{"CKM_VENDOR_SM4_CBC", false, func(m *SMMechanisms) *uint { return &m.SM4CBC }}
	fSM4ECB        = smField{"CKM_VENDOR_SM4_ECB", false, func(m *SMMechanisms) *uint { return &m.SM4ECB }}
	fKeyTypeSM2    = smField{"CKK_VENDOR_SM2", true, func(m *SMMechanisms) *uint { return &m.KeyTypeSM2 }}
	fKeyTypeSM4    = smField{"CKK_VENDOR_SM4", true, func(m *SMMechanisms) *uint { return &m.KeyTypeSM4 }}

	smMechFields    = []smField{fSM2KeyPairGen, fSM2Sign, fSM2Encrypt, fSM3, fSM4KeyGen, fSM4CBC, fSM4ECB}
	smKeyTypeFields = []smField{fKeyTypeSM2, fKeyTypeSM4}
)

// smRequired is the specification: the codes each need depends on.
func smRequired(need SMNeeds) []smField {
	var out []smField
	add := func(fs ...smField) {
		for _, f := range fs {
			dup := false
			for _, o := range out {
				dup = dup || o.name == f.name
			}
			if !dup {
				out = append(out, f)
			}
		}
	}
	if need.Sign {
		add(fSM2KeyPairGen, fSM2Sign, fKeyTypeSM2)
	}
	if need.Encrypt {
		add(fSM2KeyPairGen, fSM2Encrypt, fKeyTypeSM2)
	}
	if need.Symmetric {
		add(fSM4KeyGen, fSM4CBC, fKeyTypeSM4)
	}
	return out
}

// mechList is what a token advertising every non-zero mechanism of the
// tables (plus a few standard ones) would return.
func mechList(tables ...SMMechanisms) []Mechanism {
	out := []Mechanism{{Type: pkcs11.CKM_ECDSA}, {Type: pkcs11.CKM_AES_KEY_GEN}, {Type: pkcs11.CKM_SHA256}}
	for _, t := range tables {
		for _, f := range smMechFields {
			if c := *f.get(&t); c != 0 {
				out = append(out, Mechanism{Type: c, Name: MechanismName(c)})
			}
		}
	}
	return out
}

func withoutMech(ms []Mechanism, code uint) []Mechanism {
	var out []Mechanism
	for _, m := range ms {
		if m.Type != code {
			out = append(out, m)
		}
	}
	return out
}

func TestSelectSMByManufacturer(t *testing.T) {
	tables := []SMMechanisms{testSMTable, otherSMTable}
	mechs := mechList(tables...)
	need := SMNeeds{Sign: true}
	tests := []struct {
		manufacturer string
		wantVendor   string // "" = nothing selected
	}{
		{"TestVendor", "Test Vendor"},
		{"TestVendor, Inc.", "Test Vendor"},
		{"testvendor inc.", "Test Vendor"},
		{"TESTVENDOR", "Test Vendor"},
		{"TestVendor                      ", "Test Vendor"}, // blank-padded CK_UTF8CHAR[32]
		{"  \tTestVendor Ltd", "Test Vendor"},
		{"TestVendor\x00\x00\x00", "Test Vendor"}, // NUL-padded, as some modules do
		{"OtherCorp", "Other HSM"},
		{"other labs gmbh", "Other HSM"},
		{"TestVendorX", ""},      // the prefix must end at a word boundary
		{"TestVendor2 Corp", ""}, // likewise for digits
		{"A TestVendor", ""},     // a prefix, not a substring
		{"Test", ""},             // shorter than the prefix
		{"Other", ""},            // "Other" is not "Other Labs"
		{"", ""},                 // empty manufacturer
		{"                ", ""}, // blank manufacturer
		{"SoftHSM project", ""},  // SoftHSM2
		{"OtherCorporation", ""}, // word boundary again
		{"Test Vendor", ""},      // the Vendor name is not a ManufacturerID
		{"Other Labsx", ""},      // multi-word prefix, word boundary
		{"Other Labs, Inc.", "Other HSM"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.manufacturer), func(t *testing.T) {
			got, reason, ok := selectSM(tables, tt.manufacturer, mechs, need)
			if ok != (tt.wantVendor != "") {
				t.Fatalf("selectSM(%q) ok = %v (%s), want %v", tt.manufacturer, ok, reason, tt.wantVendor != "")
			}
			if got.Vendor != tt.wantVendor {
				t.Fatalf("selectSM(%q) picked %q, want %q", tt.manufacturer, got.Vendor, tt.wantVendor)
			}
			// The reason quotes the manufacturer without its padding.
			if want := fmt.Sprintf("manufacturer %q", strings.Trim(tt.manufacturer, " \t\x00")); !strings.Contains(reason, want) {
				t.Fatalf("reason %q does not contain %s", reason, want)
			}
			if !ok && !strings.Contains(reason, "no SM vendor table for manufacturer") {
				t.Fatalf("reason %q does not say no table matched", reason)
			}
			if ok && !strings.Contains(reason, tt.wantVendor) {
				t.Fatalf("reason %q does not name the vendor %q", reason, tt.wantVendor)
			}
		})
	}
}

// The first matching table decides: a later table is not tried even if it
// would also match and could serve the need.
func TestSelectSMFirstMatchOnly(t *testing.T) {
	broken := testSMTable
	broken.Vendor = "Broken First"
	broken.SM2Sign = 0
	tables := []SMMechanisms{broken, testSMTable}
	_, reason, ok := selectSM(tables, "TestVendor", mechList(tables...), SMNeeds{Sign: true})
	if ok {
		t.Fatal("a later table was used after the first matching one refused")
	}
	if !strings.Contains(reason, "Broken First") {
		t.Fatalf("reason %q does not name the first matching table", reason)
	}
}

func TestSelectSMRefusesMissingMechanism(t *testing.T) {
	tables := []SMMechanisms{testSMTable}
	full := mechList(testSMTable)
	for _, need := range allSMNeeds {
		required := smRequired(need)
		for _, f := range smMechFields {
			code := *f.get(&testSMTable)
			isRequired := false
			for _, r := range required {
				isRequired = isRequired || r.name == f.name
			}
			t.Run(fmt.Sprintf("%+v/without_%s", need, f.name), func(t *testing.T) {
				got, reason, ok := selectSM(tables, "TestVendor", withoutMech(full, code), need)
				if ok == isRequired {
					t.Fatalf("ok = %v (%s), want %v: %s is required: %v", ok, reason, !isRequired, f.name, isRequired)
				}
				if !isRequired {
					if got.Vendor != testSMTable.Vendor {
						t.Fatalf("selected %q", got.Vendor)
					}
					return
				}
				if got.Vendor != "" {
					t.Fatalf("refused, but returned table %q", got.Vendor)
				}
				wantName := fmt.Sprintf("%s(Test) 0x%08X", f.name, code)
				if !strings.Contains(reason, wantName) || !strings.Contains(reason, "does not advertise") {
					t.Fatalf("reason %q does not name the missing %s", reason, wantName)
				}
			})
		}
	}
}

// Every missing mechanism is named, not only the first.
func TestSelectSMNamesEveryMissingMechanism(t *testing.T) {
	_, reason, ok := selectSM([]SMMechanisms{testSMTable}, "TestVendor", nil, SMNeeds{Sign: true, Symmetric: true})
	if ok {
		t.Fatal("selected with an empty mechanism list")
	}
	for _, f := range []smField{fSM2KeyPairGen, fSM2Sign, fSM4KeyGen, fSM4CBC} {
		if !strings.Contains(reason, f.name+"(Test)") {
			t.Errorf("reason %q does not name %s", reason, f.name)
		}
	}
	for _, f := range []smField{fSM2Encrypt, fSM3, fSM4ECB} {
		if strings.Contains(reason, f.name+"(") {
			t.Errorf("reason %q names %s, which was not needed", reason, f.name)
		}
	}
}

func TestSelectSMRefusesUnknownCode(t *testing.T) {
	full := mechList(testSMTable)
	for _, need := range allSMNeeds {
		required := smRequired(need)
		for _, f := range append(append([]smField(nil), smMechFields...), smKeyTypeFields...) {
			isRequired := false
			for _, r := range required {
				isRequired = isRequired || r.name == f.name
			}
			t.Run(fmt.Sprintf("%+v/%s=0", need, f.name), func(t *testing.T) {
				tab := testSMTable
				*f.get(&tab) = 0
				// The token still advertises everything: the refusal must come
				// from the table not knowing the code.
				got, reason, ok := selectSM([]SMMechanisms{tab}, "TestVendor", full, need)
				if ok == isRequired {
					t.Fatalf("ok = %v (%s), want %v", ok, reason, !isRequired)
				}
				if !isRequired {
					if got.Vendor != tab.Vendor {
						t.Fatalf("selected %q", got.Vendor)
					}
					return
				}
				if !strings.Contains(reason, "unknown") || !strings.Contains(reason, f.name) {
					t.Fatalf("reason %q does not say %s is unknown", reason, f.name)
				}
			})
		}
	}
}

// An unknown code refuses only the needs that depend on it.
func TestSelectSMUnknownCodeOnlyAffectsItsNeed(t *testing.T) {
	tab := testSMTable
	tab.KeyTypeSM4 = 0
	tables := []SMMechanisms{tab}
	mechs := mechList(tab)
	if _, reason, ok := selectSM(tables, "TestVendor", mechs, SMNeeds{Sign: true, Encrypt: true}); !ok {
		t.Fatalf("SM2 refused because of an unknown SM4 key type: %s", reason)
	}
	if _, reason, ok := selectSM(tables, "TestVendor", mechs, SMNeeds{Sign: true, Symmetric: true}); ok {
		t.Fatalf("SM4 accepted with an unknown CKK_VENDOR_SM4: %s", reason)
	}
}

func TestSelectSMEmptyNeeds(t *testing.T) {
	got, reason, ok := selectSM([]SMMechanisms{testSMTable}, "TestVendor", mechList(testSMTable), SMNeeds{})
	if ok || got.Vendor != "" {
		t.Fatalf("empty SMNeeds selected %q", got.Vendor)
	}
	if !strings.Contains(reason, "SMNeeds is empty") {
		t.Fatalf("reason %q", reason)
	}
}

func TestSelectSMSoftHSMSelectsNothing(t *testing.T) {
	// Even a SoftHSM that (absurdly) advertised every vendor code is not
	// matched: selection starts from the manufacturer.
	mechs := mechList(VendorSMTables...)
	for _, m := range []string{"SoftHSM project", "SoftHSM project                 ", "softhsm"} {
		for _, need := range allSMNeeds {
			got, reason, ok := SelectSM(m, mechs, need)
			if ok || got.Vendor != "" {
				t.Fatalf("SelectSM(%q, %+v) selected %q: %s", m, need, got.Vendor, reason)
			}
			if !strings.Contains(reason, "no SM vendor table") {
				t.Fatalf("reason %q", reason)
			}
		}
	}
}

// For the shipped tables: a token of that vendor advertising all of its
// known mechanisms is accepted exactly for the needs whose codes are all
// known. This stays true as codes get filled in.
func TestSelectSMShippedTablesConsistent(t *testing.T) {
	if len(VendorSMTables) == 0 {
		t.Fatal("VendorSMTables is empty")
	}
	for _, tab := range VendorSMTables {
		mechs := mechList(tab)
		for _, id := range tab.ManufacturerIDs {
			manufacturer := id + ", Inc.                  "
			for _, need := range allSMNeeds {
				want := true
				var unknown []string
				for _, f := range smRequired(need) {
					if *f.get(&tab) == 0 {
						want = false
						unknown = append(unknown, f.name)
					}
				}
				got, reason, ok := SelectSM(manufacturer, mechs, need)
				if ok != want {
					t.Errorf("%s %+v: ok = %v (%s), want %v", tab.Vendor, need, ok, reason, want)
					continue
				}
				if ok && got.Vendor != tab.Vendor {
					t.Errorf("%s %+v: selected %q", tab.Vendor, need, got.Vendor)
				}
				for _, u := range unknown {
					if !strings.Contains(reason, u) {
						t.Errorf("%s %+v: reason %q does not name unknown %s", tab.Vendor, need, reason, u)
					}
				}
				// With nothing advertised, nothing is ever accepted.
				if _, reason, ok := SelectSM(manufacturer, nil, need); ok {
					t.Errorf("%s %+v: accepted with no mechanisms: %s", tab.Vendor, need, reason)
				}
			}
		}
	}
}

// checkSMTables is the invariant check the shipped tables must pass: a
// vendor name and ManufacturerIDs; no ManufacturerID of one table that
// would also select another; every non-zero code in the vendor-defined range
// of a 32-bit CK_ULONG.
func checkSMTables(tables []SMMechanisms) error {
	if err := checkSMPrefixes(tables); err != nil {
		return err
	}
	return checkSMCodeRanges(tables)
}

func checkSMPrefixes(tables []SMMechanisms) error {
	type owned struct {
		id  string
		tab int
	}
	var ids []owned
	for i, t := range tables {
		if strings.TrimSpace(t.Vendor) == "" {
			return fmt.Errorf("table %d: empty Vendor", i)
		}
		if len(t.ManufacturerIDs) == 0 {
			return fmt.Errorf("table %d (%s): no ManufacturerIDs", i, t.Vendor)
		}
		for _, id := range t.ManufacturerIDs {
			if trimManufacturer(id) == "" {
				return fmt.Errorf("table %d (%s): blank ManufacturerID", i, t.Vendor)
			}
			for _, o := range ids {
				// Either ID, as a token's manufacturer, would select the other's table.
				if o.tab != i && (manufacturerMatches(id, o.id) || manufacturerMatches(o.id, id)) {
					return fmt.Errorf("ManufacturerID %q of %s overlaps %q of %s", id, t.Vendor, o.id, tables[o.tab].Vendor)
				}
			}
			ids = append(ids, owned{id, i})
		}
	}
	return nil
}

func checkSMCodeRanges(tables []SMMechanisms) error {
	check := func(t SMMechanisms, fs []smField, base uint) error {
		for _, f := range fs {
			c := *f.get(&t)
			switch {
			case c == 0:
			case c < base:
				return fmt.Errorf("%s %s = 0x%08X is below the vendor-defined range 0x%08X", t.Vendor, f.name, c, base)
			case uint64(c) > 0xFFFFFFFF:
				return fmt.Errorf("%s %s = 0x%X does not fit a 32-bit CK_ULONG", t.Vendor, f.name, c)
			}
		}
		return nil
	}
	for _, t := range tables {
		if err := check(t, smMechFields, pkcs11.CKM_VENDOR_DEFINED); err != nil {
			return err
		}
		if err := check(t, smKeyTypeFields, pkcs11.CKK_VENDOR_DEFINED); err != nil {
			return err
		}
	}
	for _, k := range vendorKnownMechs {
		if k.code < pkcs11.CKM_VENDOR_DEFINED || uint64(k.code) > 0xFFFFFFFF {
			return fmt.Errorf("vendorKnownMechs %s 0x%X outside the vendor-defined range", k.name, k.code)
		}
	}
	return nil
}

func TestVendorSMTablesNoSharedManufacturerPrefix(t *testing.T) {
	if err := checkSMPrefixes(VendorSMTables); err != nil {
		t.Fatal(err)
	}
}

func TestVendorSMTablesCodesInVendorRange(t *testing.T) {
	if err := checkSMCodeRanges(VendorSMTables); err != nil {
		t.Fatal(err)
	}
	// Every vendorKnownMechs entry belongs to a shipped vendor.
	for _, k := range vendorKnownMechs {
		found := false
		for _, tab := range VendorSMTables {
			found = found || tab.Vendor == k.vendor
		}
		if !found {
			t.Errorf("vendorKnownMechs names vendor %q, which has no table", k.vendor)
		}
	}
}

// The invariant checks above must be able to fail.
func TestVendorSMTableChecksRejectBadTables(t *testing.T) {
	mk := func(vendor string, ids ...string) SMMechanisms {
		return SMMechanisms{Vendor: vendor, ManufacturerIDs: ids}
	}
	withCode := func(f smField, c uint) SMMechanisms {
		tab := testSMTable
		*f.get(&tab) = c
		return tab
	}
	tests := []struct {
		name   string
		tables []SMMechanisms
	}{
		{"same prefix", []SMMechanisms{mk("A", "Acme"), mk("B", "Acme")}},
		{"same prefix, other case and padding", []SMMechanisms{mk("A", "Acme"), mk("B", " ACME  ")}},
		{"one prefix of the other", []SMMechanisms{mk("A", "Acme"), mk("B", "Acme Labs")}},
		{"other prefix of the one", []SMMechanisms{mk("A", "Acme Labs"), mk("B", "acme")}},
		{"overlap in a second ID", []SMMechanisms{mk("A", "Zeta", "Acme"), mk("B", "Beta", "ACME, Inc.")}},
		{"empty vendor", []SMMechanisms{mk("", "Acme")}},
		{"no IDs", []SMMechanisms{mk("A")}},
		{"blank ID", []SMMechanisms{mk("A", "  ")}},
		{"standard mechanism code", []SMMechanisms{withCode(fSM2Sign, pkcs11.CKM_ECDSA)}},
		{"code just below the range", []SMMechanisms{withCode(fSM4CBC, pkcs11.CKM_VENDOR_DEFINED-1)}},
		{"standard key type", []SMMechanisms{withCode(fKeyTypeSM2, pkcs11.CKK_EC)}},
		{"code over 32 bits", []SMMechanisms{withCode(fSM3, uint(1)<<32|0x80000001)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkSMTables(tt.tables); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// And accept good ones.
	if err := checkSMTables([]SMMechanisms{testSMTable, otherSMTable, mk("C", "Acmes"), mk("D", "Acme")}); err != nil {
		t.Fatalf("good tables refused: %v", err)
	}
}

func TestVendorMechName(t *testing.T) {
	// Every non-zero mechanism of every shipped table is named after its
	// role and vendor.
	for _, tab := range VendorSMTables {
		tag := strings.Fields(tab.Vendor)[0]
		for _, f := range smMechFields {
			c := *f.get(&tab)
			if c == 0 {
				continue
			}
			name, ok := vendorMechName(c)
			if !ok || !strings.Contains(name, f.name+"("+tag+")") {
				t.Errorf("vendorMechName(0x%08X) = %q, %v; want it to contain %s(%s)", c, name, ok, f.name, tag)
			}
		}
	}
	for _, k := range vendorKnownMechs {
		name, ok := vendorMechName(k.code)
		want := "CKM_VENDOR_" + k.name + "(" + strings.Fields(k.vendor)[0] + ")"
		if !ok || !strings.Contains(name, want) {
			t.Errorf("vendorMechName(0x%08X) = %q, %v; want %s", k.code, name, ok, want)
		}
	}

	tests := []struct {
		code   uint
		want   string
		wantOK bool
	}{
		{0x80000B21, "CKM_VENDOR_SM2DSA(Thales)", true},
		{0x80008001, "CKM_VENDOR_SM2_KEY_PAIR_GEN(TASS)", true},
		{0x80008000, "CKM_VENDOR_SM2(TASS)", true},
		{pkcs11.CKM_ECDSA, "", false},
		{0, "", false},
		{pkcs11.CKM_VENDOR_DEFINED, "", false},
		{0x8FFFFFFF, "", false},
	}
	for _, tt := range tests {
		got, ok := vendorMechName(tt.code)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("vendorMechName(0x%08X) = %q, %v; want %q, %v", tt.code, got, ok, tt.want, tt.wantOK)
		}
	}

	// Key types are another number space: a CKK_ value is not named as a
	// mechanism (unless some table also uses it as a mechanism code).
	mechCodes := map[uint]bool{}
	for _, tab := range VendorSMTables {
		for _, f := range smMechFields {
			mechCodes[*f.get(&tab)] = true
		}
	}
	for _, tab := range VendorSMTables {
		for _, f := range smKeyTypeFields {
			c := *f.get(&tab)
			if c == 0 || mechCodes[c] {
				continue
			}
			if name, ok := vendorMechName(c); ok {
				t.Errorf("key type %s 0x%08X of %s named as mechanism %q", f.name, c, tab.Vendor, name)
			}
		}
	}
}

// A code claimed by two vendors gets both names: the caller of
// MechanismName does not know the manufacturer.
func TestVendorMechNameCollision(t *testing.T) {
	saved := VendorSMTables
	t.Cleanup(func() { VendorSMTables = saved })
	a, b := testSMTable, otherSMTable
	b.SM2Sign = a.SM2Sign
	VendorSMTables = []SMMechanisms{a, b}

	got, ok := vendorMechName(a.SM2Sign)
	if !ok || got != "CKM_VENDOR_SM2DSA(Test)|CKM_VENDOR_SM2DSA(Other)" {
		t.Fatalf("vendorMechName = %q, %v", got, ok)
	}
	got, ok = vendorMechName(a.SM4CBC)
	if !ok || got != "CKM_VENDOR_SM4_CBC(Test)" {
		t.Fatalf("vendorMechName = %q, %v", got, ok)
	}
}

// smFakeCtx is the pool fake with a manufacturer and a mechanism list.
type smFakeCtx struct {
	*fakeCtx
	tokenManufacturer string
	libManufacturer   string
	mechs             []uint
	mechErr           error
}

func (f *smFakeCtx) GetTokenInfo(slot uint) (pkcs11.TokenInfo, error) {
	ti, err := f.fakeCtx.GetTokenInfo(slot)
	ti.ManufacturerID = fmt.Sprintf("%-32s", f.tokenManufacturer)
	return ti, err
}

func (f *smFakeCtx) GetInfo() (pkcs11.Info, error) {
	return pkcs11.Info{ManufacturerID: fmt.Sprintf("%-32s", f.libManufacturer)}, nil
}

func (f *smFakeCtx) GetMechanismList(uint) ([]*pkcs11.Mechanism, error) {
	if f.mechErr != nil {
		return nil, f.mechErr
	}
	var out []*pkcs11.Mechanism
	for _, c := range f.mechs {
		out = append(out, pkcs11.NewMechanism(c, nil))
	}
	return out, nil
}

func TestPoolSMSupport(t *testing.T) {
	saved := VendorSMTables
	t.Cleanup(func() { VendorSMTables = saved })
	VendorSMTables = []SMMechanisms{testSMTable, otherSMTable}

	var all []uint
	for _, m := range mechList(testSMTable) {
		all = append(all, m.Type)
	}
	tests := []struct {
		name       string
		token, lib string
		mechs      []uint
		mechErr    error
		need       SMNeeds
		wantVendor string
		wantReason string
	}{
		{"token manufacturer", "TestVendor Inc.", "Whatever", all, nil, SMNeeds{Sign: true, Symmetric: true}, "Test Vendor", "selected"},
		{"library manufacturer when the token's matches nothing", "Fake", "TestVendor", all, nil, SMNeeds{Sign: true}, "Test Vendor", "selected"},
		{"token manufacturer wins over the library's", "OtherCorp", "TestVendor", all, nil, SMNeeds{Sign: true}, "", "Other HSM"},
		{"mechanism missing", "TestVendor", "", all[:len(all)-2], nil, SMNeeds{Symmetric: true}, "", "does not advertise"},
		{"SoftHSM", "SoftHSM project", "SoftHSM", all, nil, SMNeeds{Sign: true}, "", "no SM vendor table"},
		{"mechanism list fails", "TestVendor", "", nil, pkcs11.Error(pkcs11.CKR_DEVICE_ERROR), SMNeeds{Sign: true}, "", "cannot list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &smFakeCtx{fakeCtx: newFakeCtx(), tokenManufacturer: tt.token, libManufacturer: tt.lib, mechs: tt.mechs, mechErr: tt.mechErr}
			m, err := newModule("/fake/libsm.so", f)
			if err != nil {
				t.Fatalf("newModule: %v", err)
			}
			p, err := NewPool(context.Background(), m, PoolConfig{Selector: Selector{Label: "bank"}})
			if err != nil {
				t.Fatalf("NewPool: %v", err)
			}
			t.Cleanup(func() { _ = p.Close() })

			got, reason, ok := p.SMSupport(tt.need)
			if ok != (tt.wantVendor != "") || got.Vendor != tt.wantVendor {
				t.Fatalf("SMSupport = %q, %v (%s); want %q", got.Vendor, ok, reason, tt.wantVendor)
			}
			if !strings.Contains(reason, tt.wantReason) {
				t.Fatalf("reason %q does not contain %q", reason, tt.wantReason)
			}
			if tt.mechErr != nil && !strings.Contains(reason, "C_GetMechanismList") {
				t.Fatalf("reason %q does not name the failing call", reason)
			}
		})
	}
}

// SMSupport must not turn a broken token into a silent success.
func TestPoolSMSupportErrorIsNotSupport(t *testing.T) {
	f := &smFakeCtx{fakeCtx: newFakeCtx(), tokenManufacturer: "TestVendor", mechErr: errors.New("boom")}
	m, err := newModule("/fake/libsm2.so", f)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPool(context.Background(), m, PoolConfig{Selector: Selector{Label: "bank"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if got, reason, ok := p.SMSupport(SMNeeds{Sign: true}); ok || got.Vendor != "" || !strings.Contains(reason, "boom") {
		t.Fatalf("SMSupport = %q, %v, %q", got.Vendor, ok, reason)
	}
}
