package api

import (
	"net/http"
	"regexp"
	"time"

	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

// MaxConfirmationWait is the longest long poll of GET
// /v1/confirmations/{id}?wait=...
const MaxConfirmationWait = 30 * time.Second

var confirmationIDRE = regexp.MustCompile(`^cf_[A-Za-z0-9_-]{22}$`)

func confirmationID(r *call) (string, error) {
	id := r.fc.Params("id")
	if !confirmationIDRE.MatchString(id) {
		return "", newError(http.StatusNotFound, "confirmation_not_found", "no such confirmation; ids look like cf_ followed by 22 characters")
	}
	return id, nil
}

// confirmation answers the requester's poll; ?wait=25s long-polls until
// the confirmation ends (at most MaxConfirmationWait).
func (s *Server) confirmation(r *call) (reply, error) {
	id, err := confirmationID(r)
	if err != nil {
		return reply{}, err
	}
	var wait time.Duration
	if w := r.fc.Query("wait"); w != "" {
		if wait, err = time.ParseDuration(w); err != nil || wait < 0 || wait > MaxConfirmationWait {
			return reply{}, invalidArgument(`"wait" must be a duration from 0s to 30s, such as "25s"`)
		}
	}
	v, err := s.backend.Confirmation(r.ctx, r.caller, id, wait)
	if err != nil {
		return reply{}, err
	}
	return ok(v)
}

func (s *Server) cancelConfirmation(r *call) (reply, error) {
	id, err := confirmationID(r)
	if err != nil {
		return reply{}, err
	}
	v, err := s.backend.CancelConfirmation(r.ctx, r.caller, id)
	if err != nil {
		return reply{}, err
	}
	return ok(v)
}

// holderUnlock is the security officer's unlock of a key's holder after
// six wrong PINs (R-TOK-5); admin clients only.
func (s *Server) holderUnlock(r *call) (reply, error) {
	if err := httpedge.DecodeOptional(r.fc, &struct{}{}); err != nil {
		return reply{}, err
	}
	v, err := view(s.backend.UnlockHolder(r.ctx, r.caller, r.name))
	if err != nil {
		return reply{}, err
	}
	return ok(v)
}

// holderReset forgets the holder PIN and returns a new one-time setup code.
func (s *Server) holderReset(r *call) (reply, error) {
	if err := httpedge.DecodeOptional(r.fc, &struct{}{}); err != nil {
		return reply{}, err
	}
	v, err := view(s.backend.ResetHolder(r.ctx, r.caller, r.name))
	if err != nil {
		return reply{}, err
	}
	return ok(v)
}
