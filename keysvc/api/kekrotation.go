package api

import (
	"context"
	"fmt"
	"net/http"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

// KEKRotator is the KEK rotation (issue 15 item 2), a Backend ability
// discovered by type assertion; *keysvc.Service implements it. Both calls
// are for admin clients only and refuse others with wire.ErrForbidden.
type KEKRotator interface {
	StartKEKRotation(ctx context.Context, c keysvc.Caller) (wire.KEKRotationStatus, error)
	KEKRotation(ctx context.Context, c keysvc.Caller) (wire.KEKRotationStatus, error)
}

var _ KEKRotator = (*keysvc.Service)(nil)

func (s *Server) kekRotator() (KEKRotator, error) {
	kr, ok := s.backend.(KEKRotator)
	if !ok {
		return nil, fmt.Errorf("%w: this keysvc backend has no KEK rotation", wire.ErrInvalidArgument)
	}
	return kr, nil
}

// startKEKRotation is POST /v1/admin/kek-rotation: 202 with the status
// (the re-wrap goes on in the background).
func (s *Server) startKEKRotation(r *call) (reply, error) {
	if err := httpedge.DecodeOptional(r.fc, &struct{}{}); err != nil {
		return reply{}, err
	}
	kr, err := s.kekRotator()
	if err != nil {
		return reply{}, err
	}
	st, err := kr.StartKEKRotation(r.ctx, r.caller)
	if err != nil {
		return reply{}, err
	}
	return reply{http.StatusAccepted, st}, nil
}

// kekRotation is GET /v1/admin/kek-rotation: the epochs and the progress.
func (s *Server) kekRotation(r *call) (reply, error) {
	kr, err := s.kekRotator()
	if err != nil {
		return reply{}, err
	}
	st, err := kr.KEKRotation(r.ctx, r.caller)
	if err != nil {
		return reply{}, err
	}
	return ok(st)
}
