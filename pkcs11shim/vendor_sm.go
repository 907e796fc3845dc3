package pkcs11shim

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/miekg/pkcs11"
)

// Vendor mechanism tables for the Chinese national algorithms SM2, SM3 and
// SM4 (R-TOK-6).
//
// No PKCS#11 standard defines SM mechanisms or key types (oasis-tcs/pkcs11
// issue 119). HSMs that offer them do so under vendor-defined codes
// (CKM_VENDOR_DEFINED = 0x80000000 and up), and different vendors give the
// same number different meanings. A code is therefore only meaningful
// together with the vendor that defined it: Keyward picks a table by the
// token's manufacturer string and then confirms with C_GetMechanismList that
// the token really advertises every mechanism the caller needs.
//
// # Where SM keys live
//
// When SelectSM (or Pool.SMSupport) accepts a table, SM keys are generated
// and used inside the token with the table's codes, exactly like the
// international algorithms: the private or secret key never leaves it. When
// it refuses (no table for this manufacturer, a needed code unknown, or the
// token not advertising it), keysvc generates the SM key in software and
// stores it only wrapped under a token KEK; the key is then in the clear in
// process memory while it is used. The reason string says which case applies
// and should be logged, because the two give different protection.
//
// # Limitations
//
// The tables are NOT verified against real hardware: no Chinese HSM is
// available to CI, and the vendor headers (Thales's cryptoki_v2.h, TASS's SDK)
// are not public. Every value below carries its source and confidence. A
// code we could not confirm is 0, meaning "unknown", and a need that depends
// on it is refused, so the worst an incomplete table does is send the key to
// the software fallback; a wrong non-zero code could instead make the token
// run a different operation than intended. Never fill in a code from memory
// or from another vendor's header.
//
// The mechanism-list check proves a code is advertised, not what it does: a
// token of another product line that happens to report a matching
// manufacturer prefix and advertises the same number for something else
// would pass it. Thales ProtectServer, for instance, also reports
// "SafeNet, Inc." as its manufacturerID (thalesdocs.com PTK 5.7,
// C_GetTokenInfo). Before relying on a table in production, generate a key,
// sign, and verify the signature in software against the public key (and
// encrypt/decrypt a known value for SM4) on the bank's own hardware.
//
// # Adding a vendor
//
//  1. Take the codes from the vendor's own PKCS#11 header or SDK manual for
//     the exact product and firmware, never from another vendor's header
//     (many Chinese vendors reuse similar names with different values).
//  2. Append an SMMechanisms to VendorSMTables. Fill only the codes you have
//     confirmed and leave the rest 0. Comment each value with its source
//     (document, header file, version) and confidence.
//  3. Set ManufacturerIDs to the CK_TOKEN_INFO.manufacturerID (or
//     CK_INFO.manufacturerID) the product really reports: list it with
//     Module.Tokens (TokenInfo.Manufacturer) or `pkcs11-tool -L`. Matching
//     is by prefix, case-insensitive, after trimming blanks, and the prefix
//     must end at a word boundary.
//     The new IDs must not overlap another table's (the tests check this).
//  4. SM2Sign must take a caller-computed e = SM3(Z || M) (32 bytes), as
//     CKM_ECDSA takes a digest; a mechanism that hashes (SM3 + Z) inside the
//     token belongs elsewhere, not in SM2Sign.
//  5. Run the tests: they check the vendor range, prefix overlaps and the
//     selection rules. Then run the on-hardware check described above.

// SMMechanisms is one vendor's codes for the national algorithms. Zero means
// "not offered / unknown": a need that depends on a zero code is refused.
type SMMechanisms struct {
	// Vendor is the human name, e.g. "Thales Luna". Its first word tags the
	// vendor's mechanism names ("CKM_VENDOR_SM2DSA(Thales)").
	Vendor string
	// ManufacturerIDs are CK_TOKEN_INFO.manufacturerID / CK_INFO.manufacturerID
	// prefixes that select this table (case-insensitive, trimmed, ending at
	// a word boundary).
	ManufacturerIDs []string

	SM2KeyPairGen uint // CKM_: SM2 key pair generation
	SM2Sign       uint // CKM_: SM2 signature over a caller-computed e = SM3(Z||M)
	SM2Encrypt    uint // CKM_: SM2 public-key encryption (GB/T 32918.4)
	SM3           uint // CKM_: SM3 digest (optional; Keyward computes e in software)
	SM4KeyGen     uint // CKM_: SM4 key generation
	SM4CBC        uint // CKM_: SM4 in CBC mode, no padding
	SM4ECB        uint // CKM_: SM4 in ECB mode (optional; never used for data)
	KeyTypeSM2    uint // CKK_: SM2 key type, for CKA_KEY_TYPE
	KeyTypeSM4    uint // CKK_: SM4 key type, for CKA_KEY_TYPE
}

// SMNeeds says which national-algorithm capabilities the caller needs from
// the token.
type SMNeeds struct {
	Sign      bool // SM2 key pairs that sign (needs SM2KeyPairGen, SM2Sign, KeyTypeSM2)
	Encrypt   bool // SM2 key pairs that decrypt (needs SM2KeyPairGen, SM2Encrypt, KeyTypeSM2)
	Symmetric bool // SM4 secret keys (needs SM4KeyGen, SM4CBC, KeyTypeSM4)
}

// VendorSMTables are the known vendor tables, tried in order; the first whose
// ManufacturerIDs match is the only one considered. See the file comment for
// how to add one, and for the fact that none of them has been checked on real
// hardware.
var VendorSMTables = []SMMechanisms{
	{
		Vendor: "Thales Luna",
		// Luna partitions report "Safenet, Inc." / "SafeNet, Inc." (legacy
		// SafeNet branding). Confidence: medium — from Luna client output as
		// remembered, not from a document we could cite; ProtectServer reports
		// the same string (thalesdocs.com PTK 5.7, C_GetTokenInfo), see
		// Limitations.
		ManufacturerIDs: []string{"SafeNet"},
		// Luna's cryptoki_v2.h names CKM_SM2_KEY_PAIR_GEN, CKK_SM2 and
		// CKK_SM4 (they are used by ThalesGroup/luna-kmu, pkcs11/src/p11util.c
		// and p11.c), but the header's values are not public and we could not
		// confirm them. Candidates seen in our notes, all UNCONFIRMED and
		// deliberately not used: CKM_SM2_KEY_PAIR_GEN 0x80000B20, CKM_SM2DSA_SM3
		// 0x80000B22, CKM_SM3 0x80000B01, CKM_SM4_KEY_GEN 0x80000B10. Check
		// them against cryptoki_v2.h of the deployed Luna client before use.
		SM2KeyPairGen: 0, // unknown (see above)
		// CKM_SM2DSA = 0x80000B21. Source: given to us as a fact by the
		// project (R-TOK-6 brief); not found in any public source we could
		// search. Semantics (sign a caller-computed e, no hashing in the
		// token) inferred from the name's parallel with CKM_ECDSA and from the
		// existence of a separate CKM_SM2DSA_SM3. Confidence: medium for the
		// code, medium-low for the semantics.
		SM2Sign:    0x80000B21,
		SM2Encrypt: 0, // unknown
		SM3:        0, // unknown
		SM4KeyGen:  0, // unknown
		SM4CBC:     0, // unknown
		SM4ECB:     0, // unknown
		// CKK_SM2 = 0x80000016. Source: given to us as a fact by the project;
		// not confirmed in a public source. Confidence: medium.
		KeyTypeSM2: 0x80000016,
		KeyTypeSM4: 0, // unknown (luna-kmu uses the name CKK_SM4; value not public)
	},
	{
		Vendor: "TASS",
		// TASS (Beijing Jiangnan TianAn). The manufacturerID its tokens report
		// is NOT confirmed: "TASS" is the brand name, used as a guess.
		// Confidence: low. Replace with the string the bank's HSM reports.
		ManufacturerIDs: []string{"TASS"},
		// CKM_SM2_KEY_PAIR_GEN = 0x80008001 (CKM_VENDOR_DEFINED + 0x8000 + 1).
		// Source: given to us as a fact by the project. The same numbering
		// (CKM_SM2 = VENDOR+0x8000, KEY_PAIR_GEN = CKM_SM2+1, CKK_SM2 =
		// CKK_VENDOR_DEFINED+4) appears in several public Chinese-vendor
		// headers, which supports it but is not TASS's own header.
		// Confidence: medium.
		SM2KeyPairGen: 0x80008001,
		// TASS's CKM_SM2 = 0x80008000 is also given as a fact, but not what it
		// does: in related public headers 0x80008000 is only the base of the
		// SM2 family, and the signing mechanisms are offsets from it (with or
		// without SM3/Z inside the token). Assigning it to SM2Sign would guess
		// its semantics, so SM2Sign stays unknown; 0x80008000 is only named
		// (vendorKnownMechs). Ask TASS which mechanism signs a raw e.
		SM2Sign:    0, // unknown
		SM2Encrypt: 0, // unknown
		SM3:        0, // unknown
		SM4KeyGen:  0, // unknown
		SM4CBC:     0, // unknown
		SM4ECB:     0, // unknown
		// CKK_SM2 = 0x80000004 (CKK_VENDOR_DEFINED + 4). Source: given to us as
		// a fact by the project. Confidence: medium.
		KeyTypeSM2: 0x80000004,
		KeyTypeSM4: 0, // unknown
	},
}

// vendorKnownMechs are vendor mechanism codes we know the name of but cannot
// assign to a role in SMMechanisms. They are used only for naming.
var vendorKnownMechs = []struct {
	vendor string // matches SMMechanisms.Vendor
	code   uint
	name   string // without the CKM_VENDOR_ prefix
}{
	// Given to us as a fact for TASS; its operation is unconfirmed (see the
	// TASS table).
	{"TASS", 0x80008000, "SM2"},
}

// smRole is one mechanism slot of an SMMechanisms.
type smRole struct {
	name string // e.g. "SM2DSA"; printed as CKM_VENDOR_<name>(<vendor tag>)
	code uint
}

// mechRoles lists the table's mechanism codes (not its key types) by role.
func (t SMMechanisms) mechRoles() []smRole {
	return []smRole{
		{"SM2_KEY_PAIR_GEN", t.SM2KeyPairGen},
		{"SM2DSA", t.SM2Sign},
		{"SM2_ENCRYPT", t.SM2Encrypt},
		{"SM3", t.SM3},
		{"SM4_KEY_GEN", t.SM4KeyGen},
		{"SM4_CBC", t.SM4CBC},
		{"SM4_ECB", t.SM4ECB},
	}
}

// tag is the short vendor name used in mechanism names: the first word of
// Vendor ("Thales Luna" → "Thales").
func (t SMMechanisms) tag() string { return vendorTag(t.Vendor) }

func vendorTag(vendor string) string {
	if f := strings.Fields(vendor); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

// smRequirement is one code a need depends on.
type smRequirement struct {
	role    smRole
	keyType bool // a CKK_ value: must be known, but is not in the mechanism list
}

func (r smRequirement) String() string {
	if r.keyType {
		return "CKK_VENDOR_" + r.role.name
	}
	return "CKM_VENDOR_" + r.role.name
}

// smPurpose is one SMNeeds flag with what it depends on.
type smPurpose struct {
	what string // for the reason: "SM2 signing"
	reqs []smRequirement
}

// purposes returns what need asks of table t, in a fixed order.
func (t SMMechanisms) purposes(need SMNeeds) []smPurpose {
	var out []smPurpose
	if need.Sign {
		out = append(out, smPurpose{"SM2 signing", []smRequirement{
			{smRole{"SM2_KEY_PAIR_GEN", t.SM2KeyPairGen}, false},
			{smRole{"SM2DSA", t.SM2Sign}, false},
			{smRole{"SM2", t.KeyTypeSM2}, true},
		}})
	}
	if need.Encrypt {
		out = append(out, smPurpose{"SM2 encryption", []smRequirement{
			{smRole{"SM2_KEY_PAIR_GEN", t.SM2KeyPairGen}, false},
			{smRole{"SM2_ENCRYPT", t.SM2Encrypt}, false},
			{smRole{"SM2", t.KeyTypeSM2}, true},
		}})
	}
	if need.Symmetric {
		out = append(out, smPurpose{"SM4", []smRequirement{
			{smRole{"SM4_KEY_GEN", t.SM4KeyGen}, false},
			{smRole{"SM4_CBC", t.SM4CBC}, false},
			{smRole{"SM4", t.KeyTypeSM4}, true},
		}})
	}
	return out
}

// SelectSM picks the vendor table for a token: the first table in
// VendorSMTables whose ManufacturerIDs match manufacturer, and only if every
// code that need depends on is known (non-zero) and every such mechanism is
// in mechs (the token's C_GetMechanismList). It returns the table, a reason
// for the logs and true; or the zero table, the reason it was refused
// (naming each unknown or missing code) and false. On false, keysvc falls
// back to SM keys generated in software and wrapped under a token KEK.
func SelectSM(manufacturer string, mechs []Mechanism, need SMNeeds) (SMMechanisms, string, bool) {
	return selectSM(VendorSMTables, manufacturer, mechs, need)
}

func selectSM(tables []SMMechanisms, manufacturer string, mechs []Mechanism, need SMNeeds) (SMMechanisms, string, bool) {
	if need == (SMNeeds{}) {
		return SMMechanisms{}, "no SM capability requested (SMNeeds is empty)", false
	}
	t, ok := matchSMTable(tables, manufacturer)
	if !ok {
		return SMMechanisms{}, fmt.Sprintf("no SM vendor table for manufacturer %q", trimManufacturer(manufacturer)), false
	}
	advertised := make(map[uint]bool, len(mechs))
	for _, m := range mechs {
		advertised[m.Type] = true
	}
	var problems, served []string
	for _, p := range t.purposes(need) {
		var unknown, missing []string
		for _, r := range p.reqs {
			switch {
			case r.role.code == 0:
				unknown = append(unknown, r.String())
			case !r.keyType && !advertised[r.role.code]:
				missing = append(missing, fmt.Sprintf("%s(%s) 0x%08X", r, t.tag(), r.role.code))
			}
		}
		if len(unknown) > 0 {
			problems = append(problems, fmt.Sprintf("%s: code unknown for %s (0 in the table): %s", p.what, t.Vendor, strings.Join(unknown, ", ")))
		}
		if len(missing) > 0 {
			problems = append(problems, fmt.Sprintf("%s: token does not advertise %s in C_GetMechanismList", p.what, strings.Join(missing, ", ")))
		}
		if len(unknown) == 0 && len(missing) == 0 {
			served = append(served, p.what)
		}
	}
	head := fmt.Sprintf("SM vendor table %q (manufacturer %q)", t.Vendor, trimManufacturer(manufacturer))
	if len(problems) > 0 {
		return SMMechanisms{}, head + " refused: " + strings.Join(problems, "; "), false
	}
	return t, head + " selected for " + strings.Join(served, ", ") + "; SM keys stay inside the token", true
}

// matchSMTable returns the first table with a ManufacturerIDs entry matching
// manufacturer.
func matchSMTable(tables []SMMechanisms, manufacturer string) (SMMechanisms, bool) {
	for _, t := range tables {
		for _, id := range t.ManufacturerIDs {
			if manufacturerMatches(manufacturer, id) {
				return t, true
			}
		}
	}
	return SMMechanisms{}, false
}

// trimManufacturer removes the blank (and, from some modules, NUL) padding
// of a PKCS#11 fixed-length string.
func trimManufacturer(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return r == 0 || unicode.IsSpace(r) })
}

// manufacturerMatches reports whether manufacturer starts with prefix,
// ignoring case and padding, and the prefix ends at a word boundary ("TASS"
// matches "TASS Inc." but not "TASSEL"). An empty prefix matches nothing.
func manufacturerMatches(manufacturer, prefix string) bool {
	m := strings.ToLower(trimManufacturer(manufacturer))
	p := strings.ToLower(trimManufacturer(prefix))
	if p == "" || !strings.HasPrefix(m, p) {
		return false
	}
	rest := m[len(p):]
	if rest == "" {
		return true
	}
	last, _ := utf8.DecodeLastRuneInString(p)
	next, _ := utf8.DecodeRuneInString(rest)
	return !isWordRune(last) || !isWordRune(next)
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// SMSupport is SelectSM for an open pool: the token's manufacturer (from the
// pool's TokenInfo) and its C_GetMechanismList. If no table matches the
// token's manufacturer, the library's CK_INFO.manufacturerID is tried.
//
// A failure to list the mechanisms is reported as a refusal whose reason
// starts with "cannot list"; the caller must not take that as a permanent
// "no SM support" (the token may just be away) before deciding where a new
// key lives.
func (p *Pool) SMSupport(need SMNeeds) (SMMechanisms, string, bool) {
	mechs, err := p.Mechanisms()
	if err != nil {
		return SMMechanisms{}, fmt.Sprintf("cannot list the token's mechanisms: %v", err), false
	}
	manufacturer := p.Info().Manufacturer
	if _, ok := matchSMTable(VendorSMTables, manufacturer); !ok {
		if lib, err := p.mod.libraryManufacturer(); err == nil {
			if _, ok := matchSMTable(VendorSMTables, lib); ok {
				manufacturer = lib
			}
		}
	}
	return SelectSM(manufacturer, mechs, need)
}

// libraryManufacturer returns CK_INFO.manufacturerID, trimmed.
func (m *Module) libraryManufacturer() (string, error) {
	var out string
	err := m.call(func(ctx PKCtx) error {
		info, err := ctx.GetInfo()
		if err != nil {
			return wrapErr("C_GetInfo", err)
		}
		out = trimManufacturer(info.ManufacturerID)
		return nil
	})
	return out, err
}

// vendorMechName names a vendor-defined mechanism code from the tables, e.g.
// "CKM_VENDOR_SM2DSA(Thales)". Vendor codes are only unique per vendor and
// the caller has no manufacturer to go by, so a code claimed by several
// vendors gets every name, joined by "|". Key types (CKK_) are a different
// number space and are never returned. MechanismName should call it for
// codes not in mechNames.
func vendorMechName(t uint) (string, bool) {
	if t < pkcs11.CKM_VENDOR_DEFINED {
		return "", false
	}
	var names []string
	add := func(n string) {
		for _, have := range names {
			if have == n {
				return
			}
		}
		names = append(names, n)
	}
	for _, tab := range VendorSMTables {
		for _, r := range tab.mechRoles() {
			if r.code == t {
				add(fmt.Sprintf("CKM_VENDOR_%s(%s)", r.name, tab.tag()))
			}
		}
	}
	for _, k := range vendorKnownMechs {
		if k.code == t {
			add(fmt.Sprintf("CKM_VENDOR_%s(%s)", k.name, vendorTag(k.vendor)))
		}
	}
	if len(names) == 0 {
		return "", false
	}
	return strings.Join(names, "|"), true
}
