package staff_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/staff"
)

func mustToken(t *testing.T) (string, [32]byte) {
	t.Helper()
	tok, sum, err := staff.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return tok, sum
}

func TestNewTokenShape(t *testing.T) {
	tok, sum := mustToken(t)
	if !strings.HasPrefix(tok, "kwst_") || len(tok) != 48 || !staff.ValidTokenFormat(tok) {
		t.Fatalf("token %d characters, prefix %q: not kwst_ + 43 base64url", len(tok), tok[:5])
	}
	if staff.Digest(tok) != sum {
		t.Fatal("NewToken's digest is not the SHA-256 of the token")
	}
	tok2, _ := mustToken(t)
	if tok2 == tok {
		t.Fatal("two tokens are equal")
	}
	for _, bad := range []string{"", "kwst_", tok[:47], tok + "A", "kwsx_" + tok[5:], tok[:47] + "=", strings.Replace(tok, tok[10:11], "+", 1)} {
		if staff.ValidTokenFormat(bad) {
			t.Errorf("ValidTokenFormat(%d chars) = true", len(bad))
		}
	}
}

func TestAuthenticate(t *testing.T) {
	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	tTeller, dTeller := mustToken(t)
	tSup, dSup := mustToken(t)
	tOld, dOld := mustToken(t)
	reg, err := staff.New([]staff.Member{
		{ID: "teller1", Name: "Li Na", Roles: []staff.Role{staff.RoleEnrol, staff.RoleDeposit, staff.RolePhoneChange}, TokenSHA256: dTeller},
		{ID: "supervisor1", Name: "Wang Wei", Roles: []staff.Role{staff.RoleUnlock, staff.RoleLimitOverride, staff.RoleLedgerVerify}, TokenSHA256: dSup, Expires: now.Add(time.Hour)},
		{ID: "retired", Name: "Zhao Lei", Roles: []staff.Role{staff.RoleDeposit}, TokenSHA256: dOld, Expires: now},
	})
	if err != nil {
		t.Fatal(err)
	}
	reg = reg.WithClock(func() time.Time { return now })

	m, err := reg.Authenticate(tTeller)
	if err != nil || m.ID != "teller1" || m.Name != "Li Na" {
		t.Fatalf("teller: %+v %v", m, err)
	}
	if !m.Can(staff.RoleEnrol) || m.Can(staff.RoleUnlock) || m.Can(staff.RoleLimitOverride) {
		t.Fatalf("teller's roles: %v", m.Roles)
	}
	var re *staff.RoleError
	if err := m.Require(staff.RoleUnlock); !errors.As(err, &re) || re.Role != staff.RoleUnlock || !errors.Is(err, staff.ErrRoleRequired) {
		t.Fatalf("Require(unlock) = %v", err)
	}
	if err := m.Require(staff.RoleDeposit); err != nil {
		t.Fatalf("Require(deposit) = %v", err)
	}
	if strings.Contains((&staff.RoleError{Role: staff.RoleUnlock}).Error(), "supervisor1") {
		t.Fatal("a role refusal names who holds the role")
	}
	m, err = reg.Authenticate(tSup)
	if err != nil || m.ID != "supervisor1" || !m.Can(staff.RoleUnlock) {
		t.Fatalf("supervisor: %+v %v", m, err)
	}
	// Roles handed out are copies: changing them does not change the registry.
	m.Roles[0] = staff.RoleEnrol
	if m2, _ := reg.Authenticate(tSup); m2.Roles[0] != staff.RoleUnlock {
		t.Fatal("a caller changed the registry's roles")
	}

	var ee *staff.ExpiredError
	_, err = reg.Authenticate(tOld)
	if !errors.As(err, &ee) || ee.ID != "retired" || !errors.Is(err, staff.ErrExpired) || !strings.Contains(err.Error(), "expired on 2026-12-07 06:00 UTC") {
		t.Fatalf("expired member: %v", err)
	}
	other, _ := mustToken(t)
	for name, tok := range map[string]string{"unknown": other, "empty": "", "digest as token": string(dTeller[:]), "not kwst": "staff-token-unit"} {
		if _, err := reg.Authenticate(tok); !errors.Is(err, staff.ErrUnknownToken) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A well-formed digest match is required: a member configured with the
	// digest of a non-kwst token is still refused.
	reg2, err := staff.New([]staff.Member{{ID: "legacy", Name: "Old Shared", Roles: []staff.Role{staff.RoleDeposit}, TokenSHA256: staff.Digest("staff-token-unit")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg2.Authenticate("staff-token-unit"); !errors.Is(err, staff.ErrUnknownToken) {
		t.Fatalf("a token not made by NewToken: %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	_, d1 := mustToken(t)
	_, d2 := mustToken(t)
	ok := staff.Member{ID: "teller1", Name: "Li Na", Roles: []staff.Role{staff.RoleEnrol}, TokenSHA256: d1}
	with := func(f func(*staff.Member)) []staff.Member {
		m := ok
		m.Roles = append([]staff.Role(nil), ok.Roles...)
		f(&m)
		return []staff.Member{m}
	}
	for _, c := range []struct {
		name    string
		members []staff.Member
		want    string
	}{
		{"bad id", with(func(m *staff.Member) { m.ID = "Teller1" }), "staff[0] (Teller1): id must be"},
		{"one-letter id", with(func(m *staff.Member) { m.ID = "t" }), "id must be"},
		{"long id", with(func(m *staff.Member) { m.ID = "t" + strings.Repeat("x", 32) }), "id must be"},
		{"no name", with(func(m *staff.Member) { m.Name = "" }), "name must be"},
		{"no roles", with(func(m *staff.Member) { m.Roles = nil }), "roles must list at least one of enrol, deposit, unlock, limit-override, phone-change, ledger-verify"},
		{"unknown role", with(func(m *staff.Member) { m.Roles = []staff.Role{"admin"} }), `unknown role "admin"`},
		{"role twice", with(func(m *staff.Member) { m.Roles = []staff.Role{staff.RoleEnrol, staff.RoleEnrol} }), `role "enrol" is listed twice`},
		{"no digest", with(func(m *staff.Member) { m.TokenSHA256 = [32]byte{} }), "token_sha256 is required"},
		{"same id", []staff.Member{ok, {ID: "teller1", Name: "Other", Roles: []staff.Role{staff.RoleDeposit}, TokenSHA256: d2}}, "staff[1] (teller1): id repeats staff[0]"},
		{"same token", []staff.Member{ok, {ID: "teller2", Name: "Other", Roles: []staff.Role{staff.RoleDeposit}, TokenSHA256: d1}}, "staff[1] (teller2): token_sha256 is the same as staff[0]'s"},
	} {
		_, err := staff.New(c.members)
		if !errors.Is(err, staff.ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := staff.New([]staff.Member{ok}); err != nil {
		t.Fatal(err)
	}
}

func TestParseDigest(t *testing.T) {
	tok, sum := mustToken(t)
	_ = tok
	d, err := staff.ParseDigest(strings.ToLower(hexOf(sum)))
	if err != nil || d != sum {
		t.Fatalf("ParseDigest: %v", err)
	}
	for _, bad := range []string{"", "5e88", hexOf(sum) + "00", "zz" + hexOf(sum)[2:]} {
		if _, err := staff.ParseDigest(bad); !errors.Is(err, staff.ErrConfig) {
			t.Errorf("ParseDigest(%q) = %v", bad, err)
		}
	}
}

func hexOf(b [32]byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 64)
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

// BenchmarkAuthenticate shows the cost of one authentication over a
// registry of 200 members (make bench; no timing is asserted).
func BenchmarkAuthenticate(b *testing.B) {
	var ms []staff.Member
	var last string
	for i := 0; i < 200; i++ {
		tok, sum, _ := staff.NewToken()
		ms = append(ms, staff.Member{ID: "s" + strings.Repeat("x", i%20) + string(rune('a'+i%26)) + string(rune('a'+i/26)), Name: "N", Roles: []staff.Role{staff.RoleDeposit}, TokenSHA256: sum})
		last = tok
	}
	reg, err := staff.New(ms)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := reg.Authenticate(last); err != nil {
			b.Fatal(err)
		}
	}
}
