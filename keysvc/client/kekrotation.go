package client

import (
	"context"

	"github.com/keyward/keyward/keysvc/wire"
)

// kekRotationPath is keysvc's KEK rotation resource (admin clients only).
const kekRotationPath = "/v1/admin/kek-rotation"

// StartKEKRotation starts the rotation to the next KEK epoch and returns
// its status; the re-wrap goes on in keysvc's background. A rotation
// already running, or a next epoch whose KEKs the token lacks, is
// wire.ErrIllegalTransition. Not retried: a second start is refused anyway.
func (c *Client) StartKEKRotation(ctx context.Context) (wire.KEKRotationStatus, error) {
	var st wire.KEKRotationStatus
	return st, c.do(ctx, call{method: "POST", path: kekRotationPath, out: &st})
}

// KEKRotation reads the KEK epochs and a rotation's progress.
func (c *Client) KEKRotation(ctx context.Context) (wire.KEKRotationStatus, error) {
	var st wire.KEKRotationStatus
	return st, c.do(ctx, call{method: "GET", path: kekRotationPath, out: &st, repeat: true})
}
