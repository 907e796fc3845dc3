// Package staff is who may use banking's staff API and what each person
// may do there (issue 18 item 2; seed 6.2.3.2 access control; R-AUTH-10
// in spirit: every act of a bank employee names its person).
//
// There is no shared staff credential. Each teller and supervisor is a
// Member with an id of their own, a name, a set of roles and a personal
// bearer token; banking's /staff/v1 routes authenticate the token
// (Registry.Authenticate), check the role the route declares
// (Member.Can) and record every request — accepted or refused — in
// banking's audit trail under "staff:<id>".
//
// # Roles
//
// A role is a permission for one kind of act, not a job title: a job is
// the set of roles given to the person.
//
//	enrol           open a customer's internet banking (POST /staff/v1/customers)
//	deposit         pay cash into an account (POST /staff/v1/deposits)
//	unlock          lift a customer's login lock early, after checking identity
//	limit-override  set an account's transfer limits beyond the customer's own ceiling
//	phone-change    change a customer's registered mobile number at the counter
//	ledger-verify   run the ledger's consistency check
//
// A typical teller has enrol, deposit and phone-change; a supervisor
// unlock, limit-override and ledger-verify. Nobody needs every role.
//
// # Tokens
//
// NewToken draws 32 bytes from crypto/rand and prints them as
// "kwst_" + base64url (no padding): 48 characters. The bank keeps only the
// token's SHA-256 (hex in cmd/banking's YAML, token_sha256); the person
// keeps the token in a 0600 file. A plain hash is enough here ONLY because
// the token is 256 bits of randomness, not something a person chose: there
// is nothing to guess, so a slow password hash would add nothing, and a
// leaked digest does not give the token back. Never apply this to a
// password. The digest is of the token's 48 characters exactly (no
// newline): printf %s "$(cat teller1.token)" | sha256sum gives it.
//
// # Authentication
//
// Authenticate hashes the presented token and compares the digest with
// every member's, in constant time and without stopping at a match, so the
// time taken does not tell how many members exist or which one matched. A
// malformed token costs the same comparisons before it is refused. A member
// past Expires is refused with ErrExpired (as *ExpiredError naming the
// member and the date), so the person learns to ask for a new token rather
// than retyping the old one.
//
// # Errors
//
// ErrConfig (a registry that cannot be built: every problem is listed,
// naming the member by index and id), ErrUnknownToken, ErrExpired,
// ErrRoleRequired (as *RoleError naming the role needed, never who has it).
//
// # Concurrency
//
// A Registry is immutable once built and safe for concurrent use. To change
// the staff list, build a new Registry (cmd/banking does so at start).
package staff

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Role is a permission for one kind of staff act.
type Role string

// The roles. See the package documentation for what each allows.
const (
	RoleEnrol         Role = "enrol"
	RoleDeposit       Role = "deposit"
	RoleUnlock        Role = "unlock"
	RoleLimitOverride Role = "limit-override"
	RolePhoneChange   Role = "phone-change"
	RoleLedgerVerify  Role = "ledger-verify"
)

// Roles lists every role, in the order of the package documentation.
var Roles = []Role{RoleEnrol, RoleDeposit, RoleUnlock, RoleLimitOverride, RolePhoneChange, RoleLedgerVerify}

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// roleNames is "enrol, deposit, …" for messages.
func roleNames() string {
	s := make([]string, len(Roles))
	for i, r := range Roles {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// Errors.
var (
	ErrConfig       = errors.New("staff: invalid staff list")
	ErrUnknownToken = errors.New("staff: unknown or malformed staff token")
	ErrExpired      = errors.New("staff: staff credential expired")
	ErrRoleRequired = errors.New("staff: role required")
)

// ExpiredError is the ErrExpired of a member whose Expires has passed.
type ExpiredError struct {
	ID      string
	Expires time.Time
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("the staff credential of %s expired on %s; ask the bank's administrator for a new token",
		e.ID, e.Expires.UTC().Format("2006-01-02 15:04 UTC"))
}

// Is matches ErrExpired.
func (e *ExpiredError) Is(target error) bool { return target == ErrExpired }

// RoleError is the ErrRoleRequired of an act the member has no role for.
// It names the role needed, never who holds it.
type RoleError struct{ Role Role }

func (e *RoleError) Error() string {
	return fmt.Sprintf("this act needs the staff role %q, which your credential does not have; ask a colleague who holds it", e.Role)
}

// Is matches ErrRoleRequired.
func (e *RoleError) Is(target error) bool { return target == ErrRoleRequired }

// Member is one person allowed on the staff API.
type Member struct {
	ID          string // ^[a-z][a-z0-9_-]{1,31}$, unique: what the audit trail names
	Name        string // the person's name, for people reading the trail
	Roles       []Role
	TokenSHA256 [32]byte  // SHA-256 of the personal token
	Expires     time.Time // zero: no expiry
}

// Can reports whether m holds role r.
func (m Member) Can(r Role) bool { return slices.Contains(m.Roles, r) }

// Expired reports whether m's credential has expired at now.
func (m Member) Expired(now time.Time) bool { return !m.Expires.IsZero() && !now.Before(m.Expires) }

// Require returns nil when m holds r, else a *RoleError.
func (m Member) Require(r Role) error {
	if m.Can(r) {
		return nil
	}
	return &RoleError{Role: r}
}

var idRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{1,31}$`)

// Registry is the staff list. Build it with New.
type Registry struct {
	members []Member
	now     func() time.Time
}

// New checks members and returns their registry: ids match
// ^[a-z][a-z0-9_-]{1,31}$ and are unique, names are 1-64 printable
// characters, each member has at least one role and only known ones,
// no role twice, and every token digest is set and unique (two people
// with one token could not be told apart). All problems are reported at
// once, each naming the member.
func New(members []Member) (*Registry, error) {
	var errs []error
	add := func(i int, m Member, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: staff[%d] (%s): %s", ErrConfig, i, m.ID, fmt.Sprintf(format, a...)))
	}
	ids := map[string]int{}
	digests := map[[32]byte]int{}
	for i, m := range members {
		if !idRE.MatchString(m.ID) {
			add(i, m, "id must be 2-32 of a-z 0-9 _ - starting with a letter")
		} else if j, dup := ids[m.ID]; dup {
			add(i, m, "id repeats staff[%d]", j)
		} else {
			ids[m.ID] = i
		}
		if n := utf8.RuneCountInString(m.Name); n == 0 || n > 64 || strings.ContainsAny(m.Name, "\x00\n\r\t") {
			add(i, m, "name must be 1-64 characters on one line")
		}
		if len(m.Roles) == 0 {
			add(i, m, "roles must list at least one of %s", roleNames())
		}
		seen := map[Role]bool{}
		for _, r := range m.Roles {
			switch {
			case !r.Valid():
				add(i, m, "unknown role %q (roles: %s)", r, roleNames())
			case seen[r]:
				add(i, m, "role %q is listed twice", r)
			}
			seen[r] = true
		}
		if m.TokenSHA256 == ([32]byte{}) {
			add(i, m, "token_sha256 is required (banking staff-token -out FILE prints it)")
		} else if j, dup := digests[m.TokenSHA256]; dup {
			add(i, m, "token_sha256 is the same as staff[%d]'s: every person needs a token of their own", j)
		} else {
			digests[m.TokenSHA256] = i
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := make([]Member, len(members))
	for i, m := range members {
		m.Roles = slices.Clone(m.Roles)
		out[i] = m
	}
	return &Registry{members: out, now: time.Now}, nil
}

// WithClock returns a copy of r whose Authenticate reads the time from now
// (tests; a bank whose clock is not the process's).
func (r *Registry) WithClock(now func() time.Time) *Registry {
	c := *r
	c.now = now
	return &c
}

// Len is the number of members.
func (r *Registry) Len() int { return len(r.members) }

// Members returns a copy of the list (for start-up logs and tools).
func (r *Registry) Members() []Member {
	out := make([]Member, len(r.members))
	for i, m := range r.members {
		m.Roles = slices.Clone(m.Roles)
		out[i] = m
	}
	return out
}

// Authenticate returns the member whose token this is. It compares the
// token's digest with every member's in constant time, never stopping at
// a match. Errors: ErrUnknownToken (no member has it, or it is not a
// kwst_ token), *ExpiredError.
func (r *Registry) Authenticate(token string) (Member, error) {
	sum := sha256.Sum256([]byte(token))
	wellFormed := boolInt(ValidTokenFormat(token)) // the shape only: says nothing of who holds a token
	found, idx := 0, 0
	for i := range r.members {
		eq := subtle.ConstantTimeCompare(sum[:], r.members[i].TokenSHA256[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
		found |= eq
	}
	if found&wellFormed != 1 {
		return Member{}, ErrUnknownToken
	}
	m := r.members[idx]
	if m.Expired(r.now()) {
		return Member{}, &ExpiredError{ID: m.ID, Expires: m.Expires}
	}
	m.Roles = slices.Clone(m.Roles)
	return m, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TokenPrefix starts every personal staff token.
const TokenPrefix = "kwst_"

// tokenLen is len("kwst_") + base64url of 32 bytes without padding.
const tokenLen = len(TokenPrefix) + 43

// ValidTokenFormat reports whether s has the shape of a token NewToken
// makes (it says nothing of whether anyone holds it).
func ValidTokenFormat(s string) bool {
	if len(s) != tokenLen || !strings.HasPrefix(s, TokenPrefix) {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s[len(TokenPrefix):])
	return err == nil && len(b) == 32
}

// NewToken draws a personal token: 32 bytes from crypto/rand as
// "kwst_<base64url>". It returns the token and its SHA-256, the only form
// the bank keeps.
func NewToken() (token string, sum [32]byte, err error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", sum, fmt.Errorf("staff: random token: %w", err)
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	clear(raw[:])
	return token, Digest(token), nil
}

// Digest is the SHA-256 of a token, as the registry stores it.
func Digest(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// ParseDigest reads the 64 hex digits of a token_sha256 line.
func ParseDigest(s string) ([32]byte, error) {
	var d [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(d) {
		return d, fmt.Errorf("%w: token_sha256 must be 64 hex digits (banking staff-token -out FILE prints the line)", ErrConfig)
	}
	copy(d[:], b)
	return d, nil
}
