package banking

import (
	"context"
	"errors"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
)

// instrumentedKMS is the one place banking's keysvc calls are timed and
// their errors counted (keyward_bank_keysvc_*): New puts it around
// Config.KMS, and every part of the bank calls keysvc through it. The op
// label is the operation, never the key's name (customers' keys are named
// after them).
type instrumentedKMS struct {
	next KMS
	m    *metrics
}

var _ KMS = instrumentedKMS{}

// keysvc operation names, the op label.
const (
	opCreateKey    = "create_key"
	opSign         = "sign"
	opSignBatch    = "sign_batch"
	opVerify       = "verify"
	opMAC          = "mac"
	opVerifyMAC    = "verify_mac"
	opDecrypt      = "decrypt"
	opDataKey      = "datakey"
	opPublicKey    = "public_key"
	opConfirmation = "confirmation"
)

func (k instrumentedKMS) done(op string, start time.Time, err error) {
	k.m.kmsLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		k.m.kmsErrors.WithLabelValues(op, kmsCode(err)).Inc()
	}
}

// kmsCode is the code label of a failed keysvc call: keysvc's own code
// (wire.SentinelCodes), or what went wrong on the way.
func kmsCode(err error) string {
	for _, s := range wire.SentinelCodes {
		if errors.Is(err, s.Err) {
			return s.Code
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case isTransport(err):
		return "unreachable"
	}
	return "other"
}

func (k instrumentedKMS) CreateKey(ctx context.Context, req wire.CreateKeyRequest) (wire.KeyView, error) {
	start := time.Now()
	v, err := k.next.CreateKey(ctx, req)
	k.done(opCreateKey, start, err)
	return v, err
}

func (k instrumentedKMS) Sign(ctx context.Context, name string, req wire.SignRequest) (wire.SignResult, error) {
	start := time.Now()
	r, err := k.next.Sign(ctx, name, req)
	k.done(opSign, start, err)
	return r, err
}

func (k instrumentedKMS) SignBatch(ctx context.Context, name string, reqs []wire.SignRequest) ([]wire.SignResult, error) {
	start := time.Now()
	r, err := k.next.SignBatch(ctx, name, reqs)
	k.done(opSignBatch, start, err)
	return r, err
}

func (k instrumentedKMS) Verify(ctx context.Context, name string, req wire.VerifyRequest) (bool, error) {
	start := time.Now()
	ok, err := k.next.Verify(ctx, name, req)
	k.done(opVerify, start, err)
	return ok, err
}

func (k instrumentedKMS) MAC(ctx context.Context, name string, message []byte) (string, error) {
	start := time.Now()
	m, err := k.next.MAC(ctx, name, message)
	k.done(opMAC, start, err)
	return m, err
}

func (k instrumentedKMS) VerifyMAC(ctx context.Context, name string, message []byte, mac string) (bool, error) {
	start := time.Now()
	ok, err := k.next.VerifyMAC(ctx, name, message, mac)
	k.done(opVerifyMAC, start, err)
	return ok, err
}

func (k instrumentedKMS) Decrypt(ctx context.Context, name string, ciphertext string, aad []byte) ([]byte, error) {
	start := time.Now()
	p, err := k.next.Decrypt(ctx, name, ciphertext, aad)
	k.done(opDecrypt, start, err)
	return p, err
}

func (k instrumentedKMS) DataKey(ctx context.Context, name string, size int, aad []byte) (wire.DataKey, error) {
	start := time.Now()
	d, err := k.next.DataKey(ctx, name, size, aad)
	k.done(opDataKey, start, err)
	return d, err
}

func (k instrumentedKMS) PublicKey(ctx context.Context, name string, version int) (wire.PublicKeyResult, error) {
	start := time.Now()
	p, err := k.next.PublicKey(ctx, name, version)
	k.done(opPublicKey, start, err)
	return p, err
}

func (k instrumentedKMS) Confirmation(ctx context.Context, id string, wait time.Duration) (wire.ConfirmationView, error) {
	start := time.Now()
	v, err := k.next.Confirmation(ctx, id, wait)
	k.done(opConfirmation, start, err)
	return v, err
}
