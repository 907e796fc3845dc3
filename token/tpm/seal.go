package tpm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// MaxSecretSize is the largest secret Seal takes: TPM2B_SENSITIVE_DATA holds at most 128 bytes
// (MAX_SYM_DATA). Seal a data-encryption key, not the data.
const MaxSecretSize = 128

// SealOptions says what a sealed secret is bound to.
type SealOptions struct {
	// PCRs are SHA-256 bank PCR indices the secret is bound to, on their values at sealing time
	// (TPM2_PolicyPCR). Empty: not bound to PCRs.
	PCRs []int
	// Auth is an authorization value needed to unseal (TPM2_PolicyAuthValue); wrong values count
	// toward dictionary-attack lockout. Any length: the object's authValue is SHA-256(Auth).
	// Empty: none.
	Auth []byte
}

// Sealed is a sealed secret as stored on disk (JSON). It is useless without the TPM that made it:
// Private is encrypted and integrity-protected with a key derived from that TPM's owner seed.
// PCRs, PCRDigest, PCRValues and Auth are unauthenticated hints; what unseals is decided by the
// policy digest inside Public, which the TPM binds to Private.
type Sealed struct {
	Public    []byte   `json:"public"`  // marshalled TPM2B_PUBLIC
	Private   []byte   `json:"private"` // marshalled TPM2B_PRIVATE
	PCRs      []int    `json:"pcrs,omitempty"`
	PCRDigest []byte   `json:"pcr_digest,omitempty"` // SHA-256 of the PCR values sealed to
	PCRValues [][]byte `json:"pcr_values,omitempty"` // the values themselves, parallel to PCRs (diagnostics: which PCR changed)
	Auth      bool     `json:"auth"`                 // an auth value is needed
	// SRKName is the name (nameAlg || SHA-256 of the public area) of the SRK the secret was sealed
	// under. Unseal refuses a TPM whose SRK has another name before anything secret is exchanged:
	// a clear ErrWrongTPM, and a salted session an interposer on the bus can't substitute.
	// Blobs without it are not checked.
	SRKName []byte `json:"srk_name,omitempty"`
}

// srk is the storage root key: the TCG ECC P-256 SRK template under the owner hierarchy, which
// CreatePrimary derives deterministically from the owner seed, so it is the same key every time
// until the TPM is cleared.
type srk struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	pub    tpm2.TPMTPublic
}

func createSRK(tr transport.TPM) (*srk, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(tr)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCBadAuth) || errors.Is(err, tpm2.TPMRCAuthFail) {
			return nil, fmt.Errorf("tpm: create SRK: the owner hierarchy has an authorization value; "+
				"Keyward needs an empty owner authorization: %w", err)
		}
		return nil, fmt.Errorf("tpm: create SRK: %w", err)
	}
	pub, err := rsp.OutPublic.Contents()
	var name *tpm2.TPM2BName
	if err == nil {
		// The name computed here from the public area, not the one in the response, is what
		// SRKName pins: a substituted key can't claim the real key's name.
		name, err = tpm2.ObjectName(pub)
	}
	if err != nil {
		tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tr)
		return nil, fmt.Errorf("tpm: create SRK: %w", err)
	}
	return &srk{handle: rsp.ObjectHandle, name: *name, pub: *pub}, nil
}

// encIn returns an HMAC session salted with the SRK (its key is unknown to anyone watching the
// bus) that encrypts the first command parameter: the sensitive data of TPM2_Create.
func (s *srk) encIn(auth []byte) tpm2.Session {
	return tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Salted(s.handle, s.pub), tpm2.Auth(auth),
		tpm2.AESEncryption(128, tpm2.EncryptIn))
}

// encOut is like encIn for the first response parameter: the secret TPM2_Unseal returns.
func (s *srk) encOut(auth []byte) tpm2.Session {
	return tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Salted(s.handle, s.pub), tpm2.Auth(auth),
		tpm2.AESEncryption(128, tpm2.EncryptOut))
}

// authValue turns SealOptions.Auth into the object's authValue: SHA-256, without trailing zero
// bytes (the TPM strips them, go-tpm's parameter encryption would not).
func authValue(auth []byte) []byte {
	if len(auth) == 0 {
		return nil
	}
	h := sha256.Sum256(auth)
	return bytes.TrimRight(h[:], "\x00")
}

// sealTemplate is the public area of a sealed data object. One line per attribute.
func sealTemplate(policy []byte, hasAuth bool) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash, // a data object: no key, just the sealed bytes
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:    true, // can never be duplicated to another TPM
			FixedParent: true, // can never be re-parented
			// With a policy (PCRs and/or auth) only a policy session unseals: an empty or known
			// authValue must not bypass the PCR binding.
			UserWithAuth: len(policy) == 0,
			// Wrong auth values count toward lockout; without an auth value there is nothing to guess.
			NoDA: !hasAuth,
		},
		AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull}, // sealed data, not an HMAC key
		}),
	}
}

// sealPolicy computes the policy digest: PolicyPCR(digest, PCRs) if PCRs, then PolicyAuthValue if
// auth. The same commands run in the same order at Unseal.
func sealPolicy(pcrs []int, digest []byte, hasAuth bool) ([]byte, error) {
	if len(pcrs) == 0 && !hasAuth {
		return nil, nil
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if len(pcrs) > 0 {
		cmd := tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: digest}, Pcrs: pcrSelection(pcrs)}
		if err := cmd.Update(calc); err != nil {
			return nil, err
		}
	}
	if hasAuth {
		if err := (tpm2.PolicyAuthValue{}).Update(calc); err != nil {
			return nil, err
		}
	}
	return calc.Hash().Digest, nil
}

// Seal seals secret (1..MaxSecretSize bytes) to this TPM under the owner-hierarchy ECC P-256 SRK,
// optionally bound to the current values of opt.PCRs and to opt.Auth. The secret and the auth
// value travel to the TPM encrypted (a session salted with the SRK).
func (t *TPM) Seal(secret []byte, opt SealOptions) (*Sealed, error) {
	if len(secret) == 0 || len(secret) > MaxSecretSize {
		return nil, fmt.Errorf("%w: %d bytes; Seal takes 1 to %d", ErrSecretSize, len(secret), MaxSecretSize)
	}
	pcrs, err := normalisePCRs(opt.PCRs)
	if err != nil {
		return nil, err
	}
	auth := authValue(opt.Auth)
	hasAuth := len(opt.Auth) > 0

	t.mu.Lock()
	defer t.mu.Unlock()
	tr, srk, err := t.connSRK()
	if err != nil {
		return nil, err
	}
	defer t.flush(srk.handle)

	// A PCR may change between reading it and creating the object (a measurement being logged):
	// read again afterwards and retry, rather than hand out a blob that can never unseal.
	for attempt := 0; ; attempt++ {
		var values [][]byte
		var digest []byte
		if len(pcrs) > 0 {
			if values, err = readPCRs(tr, pcrs); err != nil {
				return nil, err
			}
			digest = pcrDigest(values)
		}
		policy, err := sealPolicy(pcrs, digest, hasAuth)
		if err != nil {
			return nil, fmt.Errorf("tpm: seal: policy: %w", err)
		}
		rsp, err := tpm2.Create{
			ParentHandle: tpm2.AuthHandle{Handle: srk.handle, Name: srk.name, Auth: srk.encIn(nil)},
			InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
				UserAuth: tpm2.TPM2BAuth{Buffer: auth},
				Data:     tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
			}},
			InPublic: tpm2.New2B(sealTemplate(policy, hasAuth)),
		}.Execute(tr)
		if err != nil {
			return nil, fmt.Errorf("tpm: seal: %w", err)
		}
		if len(pcrs) > 0 {
			after, err := readPCRs(tr, pcrs)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(pcrDigest(after), digest) {
				if attempt < 2 {
					continue
				}
				return nil, fmt.Errorf("tpm: seal: PCR %s keep changing while sealing", joinInts(pcrs))
			}
		}
		return &Sealed{
			Public:    tpm2.Marshal(rsp.OutPublic),
			Private:   tpm2.Marshal(rsp.OutPrivate),
			PCRs:      pcrs,
			PCRDigest: digest,
			PCRValues: values,
			Auth:      hasAuth,
			SRKName:   srk.name.Buffer,
		}, nil
	}
}

// parse unmarshals a blob's public and private parts.
func parseBlob(public, private []byte) (*tpm2.TPM2BPublic, *tpm2.TPM2BPrivate, *tpm2.TPMTPublic, error) {
	if len(public) == 0 || len(private) == 0 {
		return nil, nil, nil, fmt.Errorf("%w: public or private part missing", ErrBadBlob)
	}
	pub2b, err := tpm2.Unmarshal[tpm2.TPM2BPublic](public)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: public part: %v", ErrBadBlob, err)
	}
	pub, err := pub2b.Contents()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: public part: %v", ErrBadBlob, err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](private)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: private part: %v", ErrBadBlob, err)
	}
	return pub2b, priv, pub, nil
}

// load loads a blob under the SRK. Any refusal by the TPM means the blob is not this TPM's.
func load(tr transport.TPM, srk *srk, pub *tpm2.TPM2BPublic, priv *tpm2.TPM2BPrivate) (*tpm2.LoadResponse, error) {
	rsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: srk.handle, Name: srk.name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    *priv,
		InPublic:     *pub,
	}.Execute(tr)
	if err != nil {
		var rc tpm2.TPMRC
		if errors.As(err, &rc) {
			return nil, fmt.Errorf("%w: the blob does not load under this TPM's storage root key "+
				"(sealed on another machine, TPM cleared since, or blob altered): %w", ErrWrongTPM, err)
		}
		return nil, fmt.Errorf("tpm: load: %w", err)
	}
	return rsp, nil
}

// Unseal returns the secret in s. auth is the value given to Seal (ignored unless s.Auth).
// Errors: ErrPCRMismatch (a *PCRMismatchError), ErrAuthFailed, ErrLocked, ErrWrongTPM, ErrBadBlob,
// ErrNoTPM.
func (t *TPM) Unseal(s *Sealed, auth []byte) ([]byte, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil", ErrBadBlob)
	}
	pub2b, priv, pub, err := parseBlob(s.Public, s.Private)
	if err != nil {
		return nil, err
	}
	if pub.Type != tpm2.TPMAlgKeyedHash {
		return nil, fmt.Errorf("%w: not a sealed data object", ErrBadBlob)
	}
	pcrs, err := normalisePCRs(s.PCRs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBlob, err)
	}
	var av []byte
	if s.Auth {
		if len(auth) == 0 {
			// Not sent to the TPM: a forgotten passphrase must not cost a dictionary-attack try.
			return nil, fmt.Errorf("%w: this secret needs an auth value and none was given", ErrAuthFailed)
		}
		av = authValue(auth)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	tr, srk, err := t.connSRK()
	if err != nil {
		return nil, err
	}
	srkFlushed := false
	defer func() {
		if !srkFlushed {
			t.flush(srk.handle)
		}
	}()
	if len(s.SRKName) > 0 && !bytes.Equal(s.SRKName, srk.name.Buffer) {
		return nil, fmt.Errorf("%w: the secret was sealed under storage root key %x, this TPM's is %x "+
			"(another machine, or the TPM was cleared)", ErrWrongTPM, s.SRKName, srk.name.Buffer)
	}
	obj, err := load(tr, srk, pub2b, priv)
	if err != nil {
		return nil, err
	}
	defer t.flush(obj.ObjectHandle)

	if len(pcrs) == 0 && !s.Auth {
		rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{
			Handle: obj.ObjectHandle, Name: obj.Name, Auth: srk.encOut(nil),
		}}.Execute(tr)
		if err != nil {
			return nil, t.unsealError(tr, s, pcrs, err)
		}
		return rsp.OutData.Buffer, nil
	}

	sess, closeSess, err := tpm2.PolicySession(tr, tpm2.TPMAlgSHA256, 16,
		tpm2.Salted(srk.handle, srk.pub), tpm2.Auth(av), tpm2.AESEncryption(128, tpm2.EncryptOut))
	if err != nil {
		return nil, fmt.Errorf("tpm: unseal: start policy session: %w", err)
	}
	defer closeSess()
	t.flush(srk.handle) // not needed any more: frees a slot on TPMs without a resource manager
	srkFlushed = true

	if len(pcrs) > 0 {
		_, err := tpm2.PolicyPCR{
			PolicySession: sess.Handle(),
			PcrDigest:     tpm2.TPM2BDigest{Buffer: s.PCRDigest},
			Pcrs:          pcrSelection(pcrs),
		}.Execute(tr)
		if err != nil {
			return nil, t.unsealError(tr, s, pcrs, err)
		}
	}
	if s.Auth {
		if _, err := (tpm2.PolicyAuthValue{PolicySession: sess.Handle()}).Execute(tr); err != nil {
			return nil, fmt.Errorf("tpm: unseal: PolicyAuthValue: %w", err)
		}
	}
	rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{
		Handle: obj.ObjectHandle, Name: obj.Name, Auth: sess,
	}}.Execute(tr)
	if err != nil {
		return nil, t.unsealError(tr, s, pcrs, err)
	}
	return rsp.OutData.Buffer, nil
}

// unsealError maps a failed PolicyPCR or Unseal to the typed errors.
func (t *TPM) unsealError(tr transport.TPM, s *Sealed, pcrs []int, err error) error {
	// PolicyPCR with the recorded digest fails with TPM_RC_VALUE when the PCRs differ; Unseal
	// fails with TPM_RC_POLICY_FAIL when the session's policy differs from the object's.
	if len(pcrs) > 0 && (errors.Is(err, tpm2.TPMRCValue) || errors.Is(err, tpm2.TPMRCPolicyFail)) {
		return fmt.Errorf("%w (%w)", &PCRMismatchError{PCRs: changedPCRs(tr, s, pcrs)}, err)
	}
	if errors.Is(err, tpm2.TPMRCPolicyFail) || errors.Is(err, tpm2.TPMRCAuthUnavailable) {
		return fmt.Errorf("%w: the sealed object's policy does not match the blob's pcrs/auth fields "+
			"(edited file?): %w", ErrBadBlob, err)
	}
	if e := authError("unseal", err); e != err {
		return e
	}
	return fmt.Errorf("tpm: unseal: %w", err)
}

// changedPCRs names the PCRs whose values differ from those recorded at sealing time; all of them
// when the blob recorded none or the PCRs can't be read.
func changedPCRs(tr transport.TPM, s *Sealed, pcrs []int) []int {
	if len(s.PCRValues) != len(s.PCRs) {
		return pcrs
	}
	recorded := make(map[int][]byte, len(s.PCRs))
	for i, p := range s.PCRs { // PCRValues is parallel to PCRs as stored
		recorded[p] = s.PCRValues[i]
	}
	now, err := readPCRs(tr, pcrs)
	if err != nil {
		return pcrs
	}
	var changed []int
	for i, p := range pcrs {
		if !bytes.Equal(now[i], recorded[p]) {
			changed = append(changed, p)
		}
	}
	if len(changed) == 0 {
		return pcrs // values match the record, so the record (or the policy) was altered
	}
	return changed
}
