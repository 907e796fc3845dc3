package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// KeyBlob is a TPM-resident signing key as stored on disk (JSON). Private is encrypted under this
// TPM's SRK: the blob is useless on any other TPM, and the private key never exists outside one.
type KeyBlob struct {
	Public  []byte `json:"public"`  // marshalled TPM2B_PUBLIC
	Private []byte `json:"private"` // marshalled TPM2B_PRIVATE
}

// signingTemplate is the public area of a signing key. One line per attribute.
var signingTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true, // can never be duplicated out of this TPM
		FixedParent:         true, // can never be re-parented
		SensitiveDataOrigin: true, // the TPM generated the private key; nobody ever saw it
		UserWithAuth:        true, // signing needs the (empty) authValue, no policy
		// The authValue is empty, so there is nothing to guess; a garbled HMAC must not count
		// toward the lockout that protects sealed secrets.
		NoDA:        true,
		SignEncrypt: true,  // signs...
		Decrypt:     false, // ...and does nothing else
		Restricted:  false, // signs any digest, not only TPM-generated structures
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA, // the key can only make ECDSA-SHA256 signatures
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
		KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// CreateSigningKey makes a new ECC P-256 ECDSA-SHA256 signing key inside the TPM, under the SRK,
// and returns it wrapped for storage. Load it with LoadSigner.
func (t *TPM) CreateSigningKey() (*KeyBlob, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, srk, err := t.connSRK()
	if err != nil {
		return nil, err
	}
	defer t.flush(srk.handle)
	rsp, err := tpm2.Create{
		// Salted session: the response HMAC proves the new public key came from this TPM.
		ParentHandle: tpm2.AuthHandle{Handle: srk.handle, Name: srk.name, Auth: srk.encIn(nil)},
		InPublic:     tpm2.New2B(signingTemplate),
	}.Execute(tr)
	if err != nil {
		return nil, fmt.Errorf("tpm: create signing key: %w", err)
	}
	return &KeyBlob{Public: tpm2.Marshal(rsp.OutPublic), Private: tpm2.Marshal(rsp.OutPrivate)}, nil
}

// Signer is a loaded TPM signing key. It implements crypto.Signer (ECDSA P-256 over SHA-256
// digests, ASN.1 DER signatures) and is safe for concurrent use: signatures are serialised by the
// TPM's mutex. Close flushes the key from the TPM.
type Signer struct {
	t      *TPM
	pub    *ecdsa.PublicKey
	handle tpm2.TPMHandle // 0 once flushed
	name   tpm2.TPM2BName
}

var _ crypto.Signer = (*Signer)(nil)

// LoadSigner loads a key made by CreateSigningKey. Keys that are not fixedTPM, TPM-generated,
// unrestricted ECDSA P-256 signing keys are refused (ErrBadBlob), as are blobs of another TPM
// (ErrWrongTPM).
func (t *TPM) LoadSigner(b *KeyBlob) (*Signer, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: nil", ErrBadBlob)
	}
	pub2b, priv, pub, err := parseBlob(b.Public, b.Private)
	if err != nil {
		return nil, err
	}
	ecPub, err := checkSigningKey(pub)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, srk, err := t.connSRK()
	if err != nil {
		return nil, err
	}
	// The TPM checks that Public belongs to Private (its name is in Private's integrity value),
	// so once loaded, the attributes checked above are the key's real ones.
	rsp, err := load(tr, srk, pub2b, priv)
	t.flush(srk.handle)
	if err != nil {
		return nil, err
	}
	s := &Signer{t: t, pub: ecPub, handle: rsp.ObjectHandle, name: rsp.Name}
	t.signers[s] = struct{}{}
	return s, nil
}

// PublicKey reads the key's public half from the blob, without a TPM.
// It is what the TPM will use once the blob loads (the TPM checks that the
// public area belongs to the private one), so callers that only need the
// public key need not load the blob.
func (b *KeyBlob) PublicKey() (*ecdsa.PublicKey, error) {
	_, _, pub, err := parseBlob(b.Public, b.Private)
	if err != nil {
		return nil, err
	}
	return checkSigningKey(pub)
}

func checkSigningKey(pub *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	a := pub.ObjectAttributes
	if pub.Type != tpm2.TPMAlgECC || !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin ||
		!a.SignEncrypt || a.Decrypt || a.Restricted {
		return nil, fmt.Errorf("%w: not a fixedTPM, TPM-generated, sign-only ECC key", ErrBadBlob)
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil || parms.CurveID != tpm2.TPMECCNistP256 {
		return nil, fmt.Errorf("%w: not a P-256 key", ErrBadBlob)
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("%w: no ECC point: %v", ErrBadBlob, err)
	}
	raw := make([]byte, 65)
	raw[0] = 4
	if len(point.X.Buffer) > 32 || len(point.Y.Buffer) > 32 {
		return nil, fmt.Errorf("%w: bad ECC point", ErrBadBlob)
	}
	copy(raw[33-len(point.X.Buffer):33], point.X.Buffer)
	copy(raw[65-len(point.Y.Buffer):], point.Y.Buffer)
	ecPub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("%w: bad ECC point: %v", ErrBadBlob, err)
	}
	return ecPub, nil
}

// Public returns the *ecdsa.PublicKey.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// Sign signs a SHA-256 digest (opts.HashFunc() must be crypto.SHA256) and returns an ASN.1 DER
// ECDSA signature. rand is ignored: the TPM draws the nonce.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 {
		return nil, errors.New("tpm: sign: the key signs SHA-256 digests only")
	}
	if len(digest) != crypto.SHA256.Size() {
		return nil, fmt.Errorf("tpm: sign: digest is %d bytes, SHA-256 needs %d", len(digest), crypto.SHA256.Size())
	}
	t := s.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.handle == 0 {
		return nil, fmt.Errorf("%w: signer", ErrClosed)
	}
	tr, err := t.conn()
	if err != nil {
		return nil, err
	}
	rsp, err := tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: s.handle, Name: s.name, Auth: tpm2.PasswordAuth(nil)},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
		},
		// An unrestricted key needs no proof that the TPM hashed the data: a NULL ticket.
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(tr)
	if err != nil {
		return nil, fmt.Errorf("tpm: sign: %w", authError("sign", err))
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("tpm: sign: %w", err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer),
		new(big.Int).SetBytes(sig.SignatureS.Buffer),
	})
}

// Close flushes the key from the TPM. Further Sign calls return ErrClosed.
func (s *Signer) Close() error {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	s.flushLocked()
	return nil
}

// flushLocked flushes the key; the caller holds t.mu.
func (s *Signer) flushLocked() {
	if s.handle == 0 {
		return
	}
	s.t.flush(s.handle)
	s.handle = 0
	delete(s.t.signers, s)
}
