package keysvc

import (
	"context"

	"github.com/keyward/keyward/keysvc/wire"
)

// ManagedLabels lists the token objects keysvc needs on every token of a
// set (token.SetConfig.Managed): the object labels of its hsm key versions
// that are not destroyed ("kw/<name>/v<n>"). A token set copies them to a
// token that missed them and destroys other "kw/" objects on it before it
// re-admits that token. Service keys are not listed: officers restore them
// into every token by ceremony, and the set never destroys them.
func (s *Service) ManagedLabels(context.Context) ([]string, error) {
	var out []string
	err := s.eachKey(func(k *Key) {
		if k.Protection != wire.ProtectionHSM {
			return
		}
		for _, v := range k.Versions {
			if v.State != wire.StateDestroyed && v.ObjectLabel != "" {
				out = append(out, v.ObjectLabel)
			}
		}
	})
	return out, err
}
