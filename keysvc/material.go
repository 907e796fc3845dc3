package keysvc

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"

	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/tpm"
)

var algKeyTypes = map[wire.Algorithm]token.KeyType{
	wire.AlgECP256:  token.KeyECP256,
	wire.AlgECP384:  token.KeyECP384,
	wire.AlgRSA2048: token.KeyRSA2048,
	wire.AlgRSA3072: token.KeyRSA3072,
	wire.AlgAES256:  token.KeyAES256,
}

// objectLabel is the CKA_LABEL of an hsm version.
func objectLabel(name string, version int) string { return "kw/" + name + "/v" + strconv.Itoa(version) }

// spec is the token key spec of one version of k.
func spec(k *Key, version int) token.KeySpec {
	ks := token.KeySpec{Type: algKeyTypes[k.Algorithm], Label: objectLabel(k.Name, version)}
	switch k.Purpose {
	case wire.PurposeSign:
		ks.Usage = token.UsageSign
	default: // encrypt and wrap keys both seal with AES-GCM / RSA-OAEP
		ks.Usage = token.UsageEncrypt
	}
	return ks
}

// newVersion generates the material of version n of k in the token (R-TOK-1):
// a token object for hsm keys; for wrapped keys a session object that is
// wrapped under the KEK and destroyed, leaving only the blob.
func (s *Service) newVersion(ctx context.Context, k *Key, n int) (Version, error) {
	v := Version{Version: n, State: wire.StateEnabled, CreatedAt: s.now()}
	if isSM(k.Algorithm) {
		return s.newSMVersion(ctx, k, v)
	}
	ks := spec(k, n)
	var pub crypto.PublicKey
	switch k.Protection {
	case wire.ProtectionTPM:
		var err error
		if v.TPMKey, pub, err = s.newTPMKey(); err != nil {
			return v, err
		}
	case wire.ProtectionHSM:
		tk, err := s.keys.GenerateKey(ctx, ks)
		if err != nil {
			return v, fmt.Errorf("keysvc: generate %s: %w", ks.Label, tokenErr(err))
		}
		v.ObjectLabel = ks.Label
		if ks.Type.IsPair() {
			err := s.keys.Use(ctx, token.Material{Key: tk}, func(u token.KeyUse) error {
				var err error
				pub, err = u.PublicKey()
				return err
			})
			if err != nil {
				return v, tokenErr(err)
			}
		}
	case wire.ProtectionWrapped:
		err := s.sealKEK(false, func(epoch int, kek token.KeyRef) error {
			var err error
			v.Wrapped, pub, err = s.keys.GenerateWrapped(ctx, kek, ks)
			v.KEKEpoch = epoch
			return err
		})
		if err != nil {
			return v, fmt.Errorf("keysvc: generate wrapped %s: %w", ks.Label, tokenErr(err))
		}
	}
	if pub != nil {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return v, err
		}
		v.PublicKey = der
	}
	if k.Purpose == wire.PurposeEncrypt && ks.Type.IsPair() {
		v.OAEPHash = s.oaepHash(ctx, k, &v)
	}
	return v, nil
}

// oaepHash picks SHA-256 for RSA-OAEP, or SHA-1 when the token implements
// nothing else (SoftHSM 2.6.1): it encrypts a probe with SHA-256 in Go and
// asks the token to decrypt it. The choice is stored with the version.
func (s *Service) oaepHash(ctx context.Context, k *Key, v *Version) string {
	pub, err := x509.ParsePKIXPublicKey(v.PublicKey)
	if err != nil {
		return "sha256"
	}
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub.(*rsa.PublicKey), []byte("probe"), nil)
	if err != nil {
		return "sha256"
	}
	err = s.withMaterial(ctx, k, v, func(u token.KeyUse) error {
		_, err := u.DecryptOAEP(crypto.SHA256, ct)
		return err
	})
	if errors.Is(err, token.ErrMechanismInvalid) {
		return "sha1"
	}
	return "sha256"
}

// withMaterial runs fn with version v's key usable: the token object for
// hsm keys, or the blob unwrapped into a session object that is destroyed
// right after fn. The key store retries a stale handle, so fn may run
// twice: it only computes.
func (s *Service) withMaterial(ctx context.Context, k *Key, v *Version, fn func(u token.KeyUse) error) error {
	switch k.Protection {
	case wire.ProtectionHSM:
		tk, err := s.keys.FindKey(ctx, v.ObjectLabel)
		if err != nil {
			return tokenErr(err)
		}
		return tokenErr(s.keys.Use(ctx, token.Material{Key: tk}, fn))
	case wire.ProtectionWrapped:
		if len(v.Wrapped) == 0 {
			return fmt.Errorf("%w: version %d of %q has no key material", wire.ErrVersionNotUsable, v.Version, k.Name)
		}
		err := s.useWrapped(ctx, k, v, fn)
		if errors.Is(err, errEpochGone) {
			if fk, fv, ok := s.freshVersion(k, v); ok && len(fv.Wrapped) > 0 {
				return s.useWrapped(ctx, fk, fv, fn)
			}
		}
		return err
	}
	if k.Protection == wire.ProtectionExternal {
		return errExternal(k)
	}
	if k.Protection == wire.ProtectionTPM {
		return fmt.Errorf("%w: key %q is in the TPM and signs only", wire.ErrWrongPurpose, k.Name)
	}
	return fmt.Errorf("keysvc: unknown protection %q", k.Protection)
}

// useWrapped unwraps v's blob under the KEK of its epoch for fn.
func (s *Service) useWrapped(ctx context.Context, k *Key, v *Version, fn func(u token.KeyUse) error) error {
	return s.withKEK(k, v, false, func(kek token.KeyRef) error {
		return tokenErr(s.keys.Use(ctx, token.Material{KEK: kek, Wrapped: v.Wrapped, Spec: spec(k, v.Version)}, fn))
	})
}

// destroyMaterial removes a version's material from the token (R-TOK-7).
// A wrapped version has nothing in the token: dropping its blob (done by the
// caller in the store) destroys it.
func (s *Service) destroyMaterial(ctx context.Context, k *Key, v *Version) error {
	if k.Protection != wire.ProtectionHSM {
		return nil
	}
	tk, err := s.keys.FindKey(ctx, v.ObjectLabel)
	if errors.Is(err, token.ErrKeyNotFound) {
		return nil // already gone (a crash after destroying, before recording)
	}
	if err != nil {
		return tokenErr(err)
	}
	if err := s.keys.DestroyKey(ctx, tk); err != nil && !errors.Is(err, token.ErrKeyNotFound) {
		return tokenErr(err)
	}
	return nil
}

// discardMaterial undoes newVersion when the store refused the version.
func (s *Service) discardMaterial(ctx context.Context, k *Key, v *Version) {
	if err := s.destroyMaterial(ctx, k, v); err != nil {
		s.log.Error("could not remove the token object of an unrecorded version", "label", v.ObjectLabel, "err", err)
	}
}

// newTPMKey creates a version's key in the host TPM (protection tpm) and
// returns its blob and public key (read from the blob: no load needed).
func (s *Service) newTPMKey() (*tpm.KeyBlob, crypto.PublicKey, error) {
	if s.cfg.TPM == nil {
		return nil, nil, fmt.Errorf("%w: this keysvc has no TPM for protection tpm", wire.ErrVersionNotUsable)
	}
	s.tpmMu.Lock()
	defer s.tpmMu.Unlock()
	kb, err := s.cfg.TPM.CreateSigningKey()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: create the key in the TPM: %w", wire.ErrTokenUnavailable, err)
	}
	pub, err := kb.PublicKey()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: the new TPM key: %w", wire.ErrTokenUnavailable, err)
	}
	return kb, pub, nil
}

// tpmSign signs digests with version v of a tpm key: the blob is loaded
// into the TPM for the batch and flushed after.
func (s *Service) tpmSign(k *Key, v *Version, digests [][]byte, opts []crypto.SignerOpts) ([][]byte, error) {
	if v.TPMKey == nil {
		return nil, fmt.Errorf("%w: version %d of %q has no TPM key", wire.ErrVersionNotUsable, v.Version, k.Name)
	}
	if s.cfg.TPM == nil {
		return nil, fmt.Errorf("%w: key %q is in a TPM and this keysvc has none configured", wire.ErrTokenUnavailable, k.Name)
	}
	s.tpmMu.Lock()
	defer s.tpmMu.Unlock()
	sg, err := s.cfg.TPM.LoadSigner(v.TPMKey)
	if errors.Is(err, tpm.ErrWrongTPM) {
		return nil, fmt.Errorf("%w: version %d of %q was created in another TPM", wire.ErrVersionNotUsable, v.Version, k.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", wire.ErrTokenUnavailable, err)
	}
	defer sg.Close()
	out := make([][]byte, len(digests))
	for i, d := range digests {
		if out[i], err = sg.Sign(nil, d, opts[i]); err != nil {
			return nil, fmt.Errorf("%w: TPM sign: %w", wire.ErrTokenUnavailable, err)
		}
	}
	return out, nil
}
