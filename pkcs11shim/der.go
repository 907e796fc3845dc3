package pkcs11shim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	oidP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
)

// ECDSARawToDER turns PKCS#11's raw r‖s (CKM_ECDSA output) into the ASN.1
// DER ECDSA-Sig-Value that crypto.Signer callers, X.509 and openssl expect.
func ECDSARawToDER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("%w: raw ECDSA signature of odd length %d", ErrInputInvalid, len(raw))
	}
	r := new(big.Int).SetBytes(raw[:len(raw)/2])
	s := new(big.Int).SetBytes(raw[len(raw)/2:])
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	return b.Bytes()
}

// ECDSADERToRaw turns a DER ECDSA-Sig-Value into fixed-width r‖s for a curve
// whose order has byteLen bytes (32 for P-256, 48 for P-384), as C_Verify
// with CKM_ECDSA expects.
func ECDSADERToRaw(der []byte, byteLen int) ([]byte, error) {
	var r, s big.Int
	in := cryptobyte.String(der)
	var inner cryptobyte.String
	if !in.ReadASN1(&inner, cbasn1.SEQUENCE) || !in.Empty() ||
		!inner.ReadASN1Integer(&r) || !inner.ReadASN1Integer(&s) || !inner.Empty() {
		return nil, fmt.Errorf("%w: malformed DER ECDSA signature", ErrSignatureInvalid)
	}
	if r.Sign() <= 0 || s.Sign() <= 0 || len(r.Bytes()) > byteLen || len(s.Bytes()) > byteLen {
		return nil, fmt.Errorf("%w: ECDSA signature values out of range", ErrSignatureInvalid)
	}
	out := make([]byte, 2*byteLen)
	r.FillBytes(out[:byteLen])
	s.FillBytes(out[byteLen:])
	return out, nil
}

// parseECPoint decodes CKA_EC_POINT. The spec says a DER OCTET STRING
// holding the X9.62 point (SoftHSM does this); some HSMs return the raw
// point. Both are accepted.
func parseECPoint(curve elliptic.Curve, v []byte) (*ecdsa.PublicKey, error) {
	byteLen := (curve.Params().BitSize + 7) / 8
	point := v
	if len(v) != 1+2*byteLen { // not a raw uncompressed point: unwrap the OCTET STRING
		var inner []byte
		rest, err := asn1.Unmarshal(v, &inner)
		if err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("%w: CKA_EC_POINT is neither a raw point nor a DER OCTET STRING", ErrKeyMismatch)
		}
		point = inner
	}
	x, y := elliptic.Unmarshal(curve, point) //nolint:staticcheck // validates the point is on the curve
	if x == nil {
		return nil, fmt.Errorf("%w: CKA_EC_POINT is not a valid uncompressed point", ErrKeyMismatch)
	}
	return &ecdsa.PublicKey{Curve: curve, X: x, Y: y}, nil
}

func rsaPublic(mod, exp []byte) *rsa.PublicKey {
	return &rsa.PublicKey{N: new(big.Int).SetBytes(mod), E: int(new(big.Int).SetBytes(exp).Int64())}
}
