package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// officer retire removes officers from a token's trusted roster: both SO
// PIN parts, and approvals from a quorum of the officers who remain (a
// retiring officer's approval does not count toward it). The roster must
// keep at least the quorum; enrol a replacement first.

type officerRetireConfig struct {
	common   `yaml:",inline"`
	soTarget `yaml:",inline"`
	Retire   []string `yaml:"retire"`
}

func (c *officerRetireConfig) validate() error {
	if err := c.common.validate(true); err != nil {
		return err
	}
	if err := c.needSigner(); err != nil {
		return err
	}
	if err := c.soTarget.validate(&c.common); err != nil {
		return err
	}
	if len(c.Retire) == 0 {
		return cfgErr("retire", "required: the names of the officers to remove from the roster")
	}
	seen := map[string]bool{}
	for i, n := range c.Retire {
		if !validOfficerName(n) || seen[n] {
			return cfgErr(fmt.Sprintf("retire[%d]", i), "empty, repeated or not an officer name (%s)", officerNameRule)
		}
		seen[n] = true
	}
	return nil
}

func (c *officerRetireConfig) approvalTarget() approvalTarget {
	return approvalTarget{token: c.Token.Label, sel: c.selector(), parts: c.SOPIN, exclude: c.Retire, quorum: c.quorum()}
}

func runOfficerRetire(ctx context.Context, o *options) error {
	var c officerRetireConfig
	s, err := start(o, "officer retire", &c, &c.common, func() []string {
		return []string{
			fmt.Sprintf("read the trusted officer roster of token %s; check the approvals (a quorum of the officers who remain, both SO PIN part holders)", c.Token.Label),
			fmt.Sprintf("read the two SO PIN parts (%s)", partOfficers(c.SOPIN)),
			fmt.Sprintf("as the SO, destroy the roster objects of %s", strings.Join(c.Retire, ", ")),
			"read the roster again and check they are gone",
		}
	})
	if s == nil || err != nil {
		return err
	}
	return s.finish(ctx, &c.common, s.officerRetire(ctx, &c))
}

func (s *session) officerRetire(ctx context.Context, c *officerRetireConfig) error {
	admin, ti, err := s.adminToken(c.selector(), "roster")
	if err != nil {
		return err
	}
	before, err := admin.TrustedOfficers()
	if err != nil {
		return err
	}
	var remain []string
	for _, o := range before {
		if !contains(c.Retire, o.Name) {
			remain = append(remain, o.Name)
		}
	}
	for _, n := range c.Retire {
		if !contains(officerList(before), n) {
			return fmt.Errorf("%w: retire: %q is not on token %s's trusted roster (%s)", errConfig, n, ti.Label, strings.Join(officerList(before), ", "))
		}
	}
	if len(remain) < c.quorum() {
		return fmt.Errorf("%w: retiring %s would leave %d officers (%s), fewer than the quorum of %d: enrol a replacement first. Nothing was done",
			errConfig, strings.Join(c.Retire, ", "), len(remain), strings.Join(remain, ", "), c.quorum())
	}
	so, err := readParts(s.o, c.SOPIN, "SO PIN", false)
	if err != nil {
		return err
	}
	defer token.Wipe(so)
	s.rec.step("dual control", "SO PIN parts entered by %s", partOfficers(c.SOPIN))
	if err := admin.RetireOfficers(so, c.Retire, partOfficers(c.SOPIN)); err != nil {
		return fmt.Errorf("retire officers: %w", err)
	}
	after, err := admin.TrustedOfficers()
	if err != nil {
		return err
	}
	for _, n := range c.Retire {
		if contains(officerList(after), n) {
			return fmt.Errorf("%w: officer %s is still on the roster", errVerify, n)
		}
		s.rec.step("retire "+n, "the SO destroyed the roster object %s%s", pkcs11shim.OfficerLabelPrefix, n)
	}
	s.rec.step("officer roster", "the token's trusted roster now: %s", strings.Join(officerList(after), ", "))
	return s.signer(ctx, &c.common, nil)
}

func officerList(os []pkcs11shim.Officer) []string {
	var n []string
	for _, o := range os {
		n = append(n, o.Name)
	}
	return n
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

const exampleOfficerRetire = `module: /usr/lib/softhsm/libsofthsm2.so
officers: [Alice Wong, Bob Lee]
transcript:
  dir: ./out/retire-carol
  signer: {label: bank-hsm, user_pin: prompt}
pin_guard: /var/lib/keyward/keysvc.db
token: {label: bank-hsm}
so_pin:                 # both parts; both holders approve
  - {officer: Alice Wong, pin: prompt}
  - {officer: Bob Lee, pin: prompt}
retire: [Carol King]    # her approval does not count; at least the quorum must remain
# Run: ceremony approve officer retire -f retire.yaml -key alice.key -out alice.approval (Bob likewise), then
#      ceremony officer retire -f retire.yaml --approval alice.approval --approval bob.approval
`
