package pkcs11shim

import (
	"context"
	"crypto"
	"crypto/rsa"
	"fmt"
	"io"
)

// Signer is a crypto.Signer over a token key. The rand argument of Sign is
// ignored: the token uses its own RNG.
type Signer struct {
	pool *Pool
	key  *Key
	pub  crypto.PublicKey
	// Auth supplies the per-operation PIN for always-authenticate keys.
	Auth ContextAuth
	// Context bounds each operation; default context.Background().
	Context context.Context
}

var (
	_ crypto.Signer    = (*Signer)(nil)
	_ crypto.Decrypter = (*Signer)(nil)
)

// NewSigner returns a crypto.Signer (and crypto.Decrypter for RSA keys) for
// k. The public key is read once, here.
func (p *Pool) NewSigner(ctx context.Context, k *Key) (*Signer, error) {
	pub, err := p.PublicKey(ctx, k)
	if err != nil {
		return nil, err
	}
	return &Signer{pool: p, key: k, pub: pub}, nil
}

// Public returns the public key.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// Key returns the token key behind the signer.
func (s *Signer) Key() *Key { return s.key }

func (s *Signer) ctx() context.Context {
	if s.Context != nil {
		return s.Context
	}
	return context.Background()
}

// Sign signs digest per crypto.Signer: the digest length must match
// opts.HashFunc(); ECDSA signatures are DER; *rsa.PSSOptions selects PSS.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.pool.Sign(s.ctx(), s.key, digest, opts, s.Auth)
}

// Decrypt implements crypto.Decrypter for RSA keys with *rsa.OAEPOptions.
// PKCS#1 v1.5 decryption is refused on purpose: it is the padding-oracle
// (Bleichenbacher) mode. Failures are deliberately vague (ErrDecrypt).
func (s *Signer) Decrypt(_ io.Reader, ciphertext []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	o, ok := opts.(*rsa.OAEPOptions)
	if !ok {
		return nil, fmt.Errorf("%w: only RSA-OAEP (*rsa.OAEPOptions) decryption is offered", ErrMechanismInvalid)
	}
	if o.MGFHash != 0 && o.MGFHash != o.Hash {
		return nil, fmt.Errorf("%w: OAEP MGF1 hash must equal the OAEP hash", ErrMechanismInvalid)
	}
	return s.pool.DecryptOAEP(s.ctx(), s.key, o.Hash, o.Label, ciphertext, s.Auth)
}
