package keysvc

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token/smcrypto"
)

// externalVersion is version 1 of an external key: the public key the
// creator gave, checked against the key's algorithm, and no material.
// A customer registers their USB key's public key this way; the bank then
// verifies the customer's signatures through keysvc like any other.
func externalVersion(k *Key, pemText string, now time.Time) (Version, error) {
	v := Version{Version: 1, State: wire.StateEnabled, CreatedAt: now}
	blk, rest := pem.Decode([]byte(pemText))
	if blk == nil || blk.Type != "PUBLIC KEY" || len(pemText) > 16<<10 || len(bytes.TrimSpace(rest)) > 0 {
		return v, fmt.Errorf("%w: public_key must be one PEM block of type PUBLIC KEY (PKIX)", wire.ErrInvalidArgument)
	}
	if k.Algorithm == wire.AlgSM2 {
		if _, err := smcrypto.ParseSM2Public(blk.Bytes); err != nil {
			return v, fmt.Errorf("%w: public_key is not an SM2 public key", wire.ErrInvalidArgument)
		}
		v.PublicKey = blk.Bytes
		return v, nil
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return v, fmt.Errorf("%w: public_key does not parse as PKIX", wire.ErrInvalidArgument)
	}
	ok := false
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		ok = (k.Algorithm == wire.AlgECP256 && p.Curve == elliptic.P256()) || (k.Algorithm == wire.AlgECP384 && p.Curve == elliptic.P384())
	case *rsa.PublicKey:
		ok = (k.Algorithm == wire.AlgRSA2048 && p.N.BitLen() == 2048) || (k.Algorithm == wire.AlgRSA3072 && p.N.BitLen() == 3072)
	}
	if !ok {
		return v, fmt.Errorf("%w: public_key is not a %s public key", wire.ErrInvalidArgument, k.Algorithm)
	}
	v.PublicKey = blk.Bytes
	return v, nil
}

// errExternal refuses private-key use of an external key.
func errExternal(k *Key) error {
	return fmt.Errorf("%w: key %q is external: its holder signs on their own device and keysvc only verifies", wire.ErrWrongPurpose, k.Name)
}
