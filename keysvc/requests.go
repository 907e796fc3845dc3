package keysvc

import (
	"github.com/keyward/keyward/keysvc/wire"
)

// Caller is an authenticated client (R-SRV-2). The HTTP layer fills it
// from the client certificate or bearer token.
type Caller struct {
	Name  string
	Admin bool // may create keys, and read and manage every key
	// EnrolPrefixes lets a non-admin client (the banking app) create
	// customer keys whose names start with one of these prefixes — only
	// external or confirm-required signing keys whose policy grants the
	// client itself and nobody else. See CreateKey.
	EnrolPrefixes []string
	// BodySHA256 is the SHA-256 of the request body. It stays in memory:
	// the audit record holds only its keyed digest (audit.DigestScheme),
	// never this unkeyed function of the request (issue 12).
	BodySHA256 []byte
}

// View returns what API clients may see of k.
func (k *Key) View() wire.KeyView {
	v := wire.KeyView{Name: k.Name, Purpose: k.Purpose, Algorithm: k.Algorithm, Protection: k.Protection, Primary: k.Primary,
		MinVersion: k.MinVersion, RotationPeriod: k.RotationPeriod, LastRotated: k.LastRotated, Policy: k.Policy, CreatedAt: k.CreatedAt, SM2UID: k.SM2UID,
		Confirm: k.Confirm, HolderSetupCode: k.setupCode}
	if h := k.Holder; h != nil {
		v.Holder = &wire.HolderView{Enrolled: len(h.PINHash) > 0, Failures: h.Failures, Locked: h.Locked, LockedAt: h.LockedAt}
	}
	for _, ver := range k.Versions {
		v.Versions = append(v.Versions, wire.VersionView{Version: ver.Version, State: ver.State, CreatedAt: ver.CreatedAt, DestroyAt: ver.DestroyAt, DestroyedAt: ver.DestroyedAt})
	}
	return v
}
