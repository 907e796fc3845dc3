package keysvc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"runtime"
	"strconv"

	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/smcrypto"
	"golang.org/x/sync/errgroup"
)

// MaxBatch is the most items one sign-batch request may carry.
const MaxBatch = 1000

// batchSplitMin is the fewest items per session when a batch is spread.
const batchSplitMin = 16

// load reads the key and checks the caller's grant and the key's purpose.
func (s *Service) load(c Caller, name string, op wire.Op, purposes ...wire.Purpose) (*Key, error) {
	k, err := s.cachedKey(name)
	if k, err = visible(c, name, op, k, err); err != nil {
		return nil, err
	}
	for _, p := range purposes {
		if k.Purpose == p {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: key %q has purpose %s; %s needs a key for %v", wire.ErrWrongPurpose, name, k.Purpose, op, purposes)
}

// primary returns the version that signs and encrypts, if it is enabled.
func primary(k *Key) (*Version, error) {
	v := k.Version(k.Primary)
	if v == nil || v.State != wire.StateEnabled {
		state := wire.StateDestroyed
		if v != nil {
			state = v.State
		}
		return nil, fmt.Errorf("%w: the primary version %d of %q is %s; enable it or rotate the key", wire.ErrVersionNotUsable, k.Primary, k.Name, state)
	}
	return v, nil
}

// older returns version n for verify/decrypt: at least MinVersion and
// enabled (or, for verify only, destroyed: its public key remains).
func older(k *Key, n int, verify bool) (*Version, error) {
	v := k.Version(n)
	switch {
	case v == nil:
		return nil, fmt.Errorf("%w: key %q has no version %d", wire.ErrVersionNotFound, k.Name, n)
	case n < k.MinVersion:
		return nil, fmt.Errorf("%w: version %d of %q is below the key's minimum version %d", wire.ErrVersionNotUsable, n, k.Name, k.MinVersion)
	case v.State == wire.StateEnabled, verify && v.State == wire.StateDestroyed:
		return v, nil
	}
	return nil, fmt.Errorf("%w: version %d of %q is %s", wire.ErrVersionNotUsable, n, k.Name, v.State)
}

// hashFor is the message hash of a signing algorithm.
func hashFor(a wire.Algorithm) crypto.Hash {
	if a == wire.AlgECP384 {
		return crypto.SHA384
	}
	return crypto.SHA256
}

// digestAndOpts turns a sign/verify request into the digest and signer
// options for key k.
func digestAndOpts(k *Key, message, digest []byte, scheme string) ([]byte, crypto.SignerOpts, error) {
	h := hashFor(k.Algorithm)
	var opts crypto.SignerOpts = h
	switch scheme {
	case "", "pkcs1v15":
	case "pss":
		if k.Algorithm != wire.AlgRSA2048 && k.Algorithm != wire.AlgRSA3072 {
			return nil, nil, fmt.Errorf("%w: scheme pss is for RSA keys", wire.ErrInvalidArgument)
		}
		opts = &rsa.PSSOptions{Hash: h, SaltLength: rsa.PSSSaltLengthEqualsHash}
	default:
		return nil, nil, fmt.Errorf("%w: scheme must be pkcs1v15 or pss", wire.ErrInvalidArgument)
	}
	switch {
	case (message == nil) == (digest == nil):
		return nil, nil, fmt.Errorf("%w: give exactly one of message and digest", wire.ErrInvalidArgument)
	case digest != nil && len(digest) != h.Size():
		return nil, nil, fmt.Errorf("%w: digest must be %d bytes (%v) for %s keys, got %d", wire.ErrInvalidArgument, h.Size(), h, k.Algorithm, len(digest))
	case digest != nil:
		return digest, opts, nil
	}
	hh := h.New()
	hh.Write(message)
	return hh.Sum(nil), opts, nil
}

// Sign signs with the primary version.
//
// On a confirm-required key it signs nothing: it returns a pending
// confirmation instead (SignResult.Confirmation; see confirm.go).
func (s *Service) Sign(ctx context.Context, c Caller, name string, req wire.SignRequest) (wire.SignResult, error) {
	k, err := s.load(c, name, wire.OpSign, wire.PurposeSign)
	if err == nil && k.Confirm == wire.ConfirmRequired {
		return s.signRequest(ctx, c, k, req)
	}
	var (
		res     []wire.SignResult
		version int
	)
	if err == nil {
		res, version, err = s.sign(ctx, k, []wire.SignRequest{req})
	}
	if err = s.finish(c, name, version, "sign", err); err != nil {
		return wire.SignResult{}, err
	}
	return res[0], nil
}

// SignBatch signs many items with the primary version in one request (one
// audit record, with the item count).
func (s *Service) SignBatch(ctx context.Context, c Caller, name string, reqs []wire.SignRequest) ([]wire.SignResult, error) {
	if len(reqs) == 0 || len(reqs) > MaxBatch {
		return nil, s.finish(c, name, 0, "sign-batch", fmt.Errorf("%w: a batch holds 1 to %d items, got %d", wire.ErrInvalidArgument, MaxBatch, len(reqs)))
	}
	var (
		res     []wire.SignResult
		version int
	)
	k, err := s.load(c, name, wire.OpSign, wire.PurposeSign)
	if err == nil {
		res, version, err = s.sign(ctx, k, reqs)
	}
	rec := s.record(c, name, version, "sign-batch", err)
	rec.Detail = "items=" + strconv.Itoa(len(reqs))
	if aerr := s.audit(rec); aerr != nil {
		return nil, aerr
	}
	return res, err
}

// sign signs reqs with the primary version of k, a key load has checked
// policy and purpose of.
func (s *Service) sign(ctx context.Context, k *Key, reqs []wire.SignRequest) ([]wire.SignResult, int, error) {
	v, err := primary(k)
	if err != nil {
		return nil, 0, err
	}
	if k.Protection == wire.ProtectionExternal {
		return nil, v.Version, errExternal(k)
	}
	if k.Confirm == wire.ConfirmRequired { // R-DC-4: batches and digests can't be shown
		return nil, v.Version, fmt.Errorf("%w: key %q signs one confirmed transaction at a time; send it alone to /sign as message", wire.ErrConfirmationRequired, k.Name)
	}
	out, err := s.signWith(ctx, k, v, reqs)
	return out, v.Version, err
}

// signWith signs reqs with version v of k; callers have checked policy,
// state and confirmation.
func (s *Service) signWith(ctx context.Context, k *Key, v *Version, reqs []wire.SignRequest) ([]wire.SignResult, error) {
	if isSM(k.Algorithm) {
		return s.smSign(ctx, k, v, reqs)
	}
	var err error
	digests := make([][]byte, len(reqs))
	opts := make([]crypto.SignerOpts, len(reqs))
	for i, r := range reqs {
		if digests[i], opts[i], err = digestAndOpts(k, r.Message, r.Digest, r.Scheme); err != nil {
			if len(reqs) > 1 {
				err = fmt.Errorf("item %d: %w", i, err)
			}
			return nil, err
		}
	}
	out := make([]wire.SignResult, len(reqs))
	if k.Protection == wire.ProtectionTPM {
		sigs, err := s.tpmSign(k, v, digests, opts)
		if err != nil {
			return nil, err
		}
		for i, sig := range sigs {
			out[i] = wire.SignResult{Signature: encodeVersioned(v.Version, sig), Version: v.Version}
		}
		return out, nil
	}
	signRange := func(lo, hi int) error {
		return s.withMaterial(ctx, k, v, func(u token.KeyUse) error {
			for i := lo; i < hi; i++ {
				sig, err := u.Sign(digests[i], opts[i])
				if err != nil {
					return err
				}
				out[i] = wire.SignResult{Signature: encodeVersioned(v.Version, sig), Version: v.Version}
			}
			return nil
		})
	}
	// A large batch is spread over one session per CPU, so a single
	// request can use the whole machine.
	parts := min(runtime.GOMAXPROCS(0), len(reqs)/batchSplitMin)
	if parts <= 1 {
		err = signRange(0, len(reqs))
	} else {
		var g errgroup.Group
		for p := 0; p < parts; p++ {
			lo, hi := p*len(reqs)/parts, (p+1)*len(reqs)/parts
			g.Go(func() error { return signRange(lo, hi) })
		}
		err = g.Wait()
	}
	return out, err
}

// Verify checks a signature against the version it names, in Go, with the
// stored public key (so destroyed versions still verify).
func (s *Service) Verify(_ context.Context, c Caller, name string, req wire.VerifyRequest) (bool, error) {
	ok, version, err := s.verify(c, name, req)
	return ok, s.finish(c, name, version, "verify", err)
}

func (s *Service) verify(c Caller, name string, req wire.VerifyRequest) (bool, int, error) {
	k, err := s.load(c, name, wire.OpVerify, wire.PurposeSign)
	if err != nil {
		return false, 0, err
	}
	n, sig, err := decodeVersioned(req.Signature, wire.ErrInvalidSignature)
	if err != nil {
		return false, 0, err
	}
	v, err := older(k, n, true)
	if err != nil {
		return false, n, err
	}
	if k.Algorithm == wire.AlgSM2 {
		ok, err := smVerify(k, v, req, sig)
		return ok, n, err
	}
	digest, opts, err := digestAndOpts(k, req.Message, req.Digest, req.Scheme)
	if err != nil {
		return false, n, err
	}
	pub, err := x509.ParsePKIXPublicKey(v.PublicKey)
	if err != nil {
		return false, n, fmt.Errorf("keysvc: stored public key of %s v%d: %w", name, n, err)
	}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(p, digest, sig), n, nil
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			return rsa.VerifyPSS(p, opts.HashFunc(), digest, sig, pss) == nil, n, nil
		}
		return rsa.VerifyPKCS1v15(p, opts.HashFunc(), digest, sig) == nil, n, nil
	}
	return false, n, fmt.Errorf("keysvc: unsupported public key %T", pub)
}

// Encrypt seals plaintext with the primary version: AES-256-GCM with aad
// in the token, or RSA-OAEP with the public key.
func (s *Service) Encrypt(ctx context.Context, c Caller, name string, plaintext, aad []byte) (string, int, error) {
	ct, version, err := s.encrypt(ctx, c, name, wire.OpEncrypt, plaintext, aad, wire.PurposeEncrypt)
	if err = s.finish(c, name, version, "encrypt", err); err != nil {
		return "", 0, err
	}
	return ct, version, nil
}

func (s *Service) encrypt(ctx context.Context, c Caller, name string, op wire.Op, plaintext, aad []byte, purposes ...wire.Purpose) (string, int, error) {
	k, err := s.load(c, name, op, purposes...)
	if err != nil {
		return "", 0, err
	}
	v, err := primary(k)
	if err != nil {
		return "", 0, err
	}
	if isSM(k.Algorithm) {
		ct, err := s.smEncrypt(ctx, k, v, plaintext, aad)
		if err != nil {
			return "", v.Version, err
		}
		return encodeVersioned(v.Version, ct), v.Version, nil
	}
	if k.Algorithm != wire.AlgAES256 {
		if len(aad) > 0 {
			return "", v.Version, fmt.Errorf("%w: RSA-OAEP keys take no aad", wire.ErrInvalidArgument)
		}
		pub, err := x509.ParsePKIXPublicKey(v.PublicKey)
		if err != nil {
			return "", v.Version, err
		}
		ct, err := rsa.EncryptOAEP(oaepHash(v).New(), rand.Reader, pub.(*rsa.PublicKey), plaintext, nil)
		if err != nil {
			return "", v.Version, fmt.Errorf("%w: %w", wire.ErrInvalidArgument, err)
		}
		return encodeVersioned(v.Version, ct), v.Version, nil
	}
	var sealed []byte
	err = s.withMaterial(ctx, k, v, func(u token.KeyUse) error {
		var err error
		sealed, err = u.EncryptGCM(plaintext, aad)
		return err
	})
	if err != nil {
		return "", v.Version, err
	}
	return encodeVersioned(v.Version, sealed), v.Version, nil
}

func oaepHash(v *Version) crypto.Hash {
	if v.OAEPHash == "sha1" {
		return crypto.SHA1
	}
	return crypto.SHA256
}

// Decrypt opens a ciphertext made by Encrypt or DataKey with the version
// it names. Failures say only "decryption failed".
func (s *Service) Decrypt(ctx context.Context, c Caller, name, ciphertext string, aad []byte) ([]byte, error) {
	pt, version, err := s.decrypt(ctx, c, name, ciphertext, aad)
	if err = s.finish(c, name, version, "decrypt", err); err != nil {
		return nil, err
	}
	return pt, nil
}

func (s *Service) decrypt(ctx context.Context, c Caller, name, ciphertext string, aad []byte) ([]byte, int, error) {
	k, err := s.load(c, name, wire.OpDecrypt, wire.PurposeEncrypt, wire.PurposeWrap)
	if err != nil {
		return nil, 0, err
	}
	n, ct, err := decodeVersioned(ciphertext, wire.ErrInvalidCiphertext)
	if err != nil {
		return nil, 0, err
	}
	v, err := older(k, n, false)
	if err != nil {
		return nil, n, err
	}
	if isSM(k.Algorithm) {
		pt, err := s.smDecrypt(ctx, k, v, ct, aad)
		return pt, n, err
	}
	var pt []byte
	err = s.withMaterial(ctx, k, v, func(u token.KeyUse) error {
		var err error
		if k.Algorithm == wire.AlgAES256 {
			pt, err = u.DecryptGCM(ct, aad)
		} else {
			pt, err = u.DecryptOAEP(oaepHash(v), ct)
		}
		return err
	})
	if err != nil {
		return nil, n, err
	}
	return pt, n, nil
}

// DataKey makes a data key of size bytes from the token's RNG and returns
// it in clear and sealed under the key (envelope encryption).
func (s *Service) DataKey(ctx context.Context, c Caller, name string, size int, aad []byte) (wire.DataKey, error) {
	dk, err := s.dataKey(ctx, c, name, size, aad)
	if err = s.finish(c, name, dk.Version, "datakey", err); err != nil {
		return wire.DataKey{}, err
	}
	return dk, nil
}

func (s *Service) dataKey(ctx context.Context, c Caller, name string, size int, aad []byte) (wire.DataKey, error) {
	if size == 0 {
		size = 32
	}
	if size != 16 && size != 24 && size != 32 {
		return wire.DataKey{}, fmt.Errorf("%w: data key size must be 16, 24 or 32 bytes", wire.ErrInvalidArgument)
	}
	k, err := s.load(c, name, wire.OpDataKey, wire.PurposeEncrypt, wire.PurposeWrap)
	if err != nil {
		return wire.DataKey{}, err
	}
	if k.Algorithm != wire.AlgAES256 && k.Algorithm != wire.AlgSM4 {
		return wire.DataKey{}, fmt.Errorf("%w: data keys are sealed by aes-256 or sm4 keys", wire.ErrWrongPurpose)
	}
	pt, err := s.keys.Random(ctx, size)
	if err != nil {
		return wire.DataKey{}, tokenErr(err)
	}
	ct, version, err := s.encrypt(ctx, c, name, wire.OpDataKey, pt, aad, wire.PurposeEncrypt, wire.PurposeWrap)
	if err != nil {
		return wire.DataKey{Version: version}, err
	}
	return wire.DataKey{Plaintext: pt, Ciphertext: ct, Version: version}, nil
}

// PublicKey returns version n's public key (0: the primary) as PEM and JWK.
func (s *Service) PublicKey(_ context.Context, c Caller, name string, n int) (wire.PublicKeyResult, error) {
	res, err := s.publicKey(c, name, n)
	if err = s.finish(c, name, res.Version, "public", err); err != nil {
		return wire.PublicKeyResult{}, err
	}
	return res, nil
}

func (s *Service) publicKey(c Caller, name string, n int) (wire.PublicKeyResult, error) {
	k, err := s.load(c, name, wire.OpPublic, wire.PurposeSign, wire.PurposeEncrypt)
	if err != nil {
		return wire.PublicKeyResult{}, err
	}
	if n == 0 {
		n = k.Primary
	}
	v := k.Version(n)
	if v == nil {
		return wire.PublicKeyResult{}, fmt.Errorf("%w: key %q has no version %d", wire.ErrVersionNotFound, name, n)
	}
	if len(v.PublicKey) == 0 {
		return wire.PublicKeyResult{Version: n}, fmt.Errorf("%w: %s keys have no public key", wire.ErrWrongPurpose, k.Algorithm)
	}
	kid := fmt.Sprintf("%s/v%d", name, n)
	res := wire.PublicKeyResult{Version: n, PEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: v.PublicKey}))}
	if k.Algorithm == wire.AlgSM2 {
		pub, err := smcrypto.ParseSM2Public(v.PublicKey)
		if err != nil {
			return wire.PublicKeyResult{Version: n}, err
		}
		res.JWK = sm2JWK(pub, kid)
	} else {
		pub, err := x509.ParsePKIXPublicKey(v.PublicKey)
		if err != nil {
			return wire.PublicKeyResult{Version: n}, err
		}
		res.JWK = jwk(pub, kid)
	}
	if k.Purpose == wire.PurposeSign {
		res.JWK.Use = "sig"
	} else {
		res.JWK.Use = "enc"
	}
	return res, nil
}

// jwk encodes a public key as an RFC 7517/7518 JWK.
func jwk(pub crypto.PublicKey, kid string) wire.JWK {
	b64 := base64.RawURLEncoding.EncodeToString
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		size := (p.Curve.Params().BitSize + 7) / 8
		crv := p.Curve.Params().Name // "P-256", "P-384": the JWK names (RFC 7518 §6.2.1.1)
		if crv != "P-256" && crv != "P-384" {
			return wire.JWK{Kid: kid}
		}
		return wire.JWK{Kty: "EC", Crv: crv, X: b64(p.X.FillBytes(make([]byte, size))), Y: b64(p.Y.FillBytes(make([]byte, size))), Kid: kid}
	case *rsa.PublicKey:
		return wire.JWK{Kty: "RSA", N: b64(p.N.Bytes()), E: b64(big.NewInt(int64(p.E)).Bytes()), Kid: kid}
	}
	return wire.JWK{Kid: kid}
}
