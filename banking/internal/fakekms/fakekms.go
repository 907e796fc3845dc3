// Package fakekms is an in-memory keysvc for banking's unit tests: it
// implements banking.KMS with real cryptography — ECDSA P-256 and SM2
// signatures, SM2 decryption, SM4-GCM data keys and HMAC-SM3 keyed hashes —
// over versioned keys that rotate, and answers refusals with the keysvc/wire
// sentinels keysvc answers with (issue 14 item 2). Tests only: no command
// links it (cmd/internal/layering's TestNoCommandLinksFakeKMS); the SoftHSM
// tests in softhsm-tests/ remain the integration layer that runs banking
// against the real keysvc.
//
// # What it models
//
//   - Keys with versions, a primary and a min_version: signing, encrypting,
//     MACing and data keys use the primary; verify, decrypt and mac-verify
//     use the version named in the "kw:v<n>:" value, refused with
//     ErrVersionNotFound (no such version) or ErrVersionNotUsable (below
//     min_version, or disabled), as keysvc's older() does.
//   - The calling client's grants: an operation the key's policy does not
//     grant the client, and any operation on a key that does not exist, is
//     ErrForbidden (keysvc hides which keys exist from non-admin clients).
//   - The enrolling client: CreateKey accepts only what keysvc's mayEnrol
//     does (a name under an enrol prefix, a signing key that is external or
//     confirm-required, granted to the client alone). The officer's own
//     operations (Provision, Rotate, SetMinVersion, Disable) are methods of
//     their own that no banking code calls.
//   - External keys (a customer's USB key): public key only, verify only;
//     signing with one is ErrWrongPurpose.
//   - Confirm-required keys (a customer's cloud key): Sign returns a pending
//     confirmation, one at a time per key (ErrConfirmationPending);
//     Approve signs the held bytes with the primary, as a holder's approval
//     on keysvc's second channel would; Reject ends it.
//
// # Limitations
//
// No audit log, no persistence, no HTTP (errors are the sentinels
// keysvc/client maps codes back to, without the client's wrapping), no
// holder PINs or setup codes (Approve stands for the holder), no
// confirmation timeout, no rotation schedule (Rotate is called by hand), no
// RSA, AES or P-384 keys (banking uses none), no admin clients. A behaviour
// banking depends on that is not listed above is proven only in
// softhsm-tests/.
//
// # Concurrency
//
// A KMS is safe for concurrent use; one mutex guards every key.
package fakekms

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emmansun/gmsm/sm2"

	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token/smcrypto"
)

// KMS is the fake keysvc as one client sees it.
type KMS struct {
	client   string
	prefixes []string

	mu       sync.Mutex
	keys     map[string]*key
	confirms map[string]*confirmation
	calls    map[string]int
	down     error
	downOps  map[string]bool // nil: every operation is down
}

// New returns an empty fake keysvc as the client named client sees it
// (banking's Config.KMSName; "banking" by default), allowed to enrol
// customer keys under enrolPrefixes (banking's: "usb-", "cust-").
func New(client string, enrolPrefixes ...string) *KMS {
	return &KMS{client: client, prefixes: enrolPrefixes, keys: map[string]*key{}, confirms: map[string]*confirmation{}, calls: map[string]int{}}
}

type key struct {
	name       string
	purpose    wire.Purpose
	alg        wire.Algorithm
	protection wire.Protection
	confirm    wire.ConfirmMode
	uid        []byte
	policy     wire.Policy
	primary    int
	minVersion int
	versions   []*version // versions[n-1] is version n
	pending    string     // the confirmation id waiting on this key
}

type version struct {
	n        int
	state    wire.State
	ec       *ecdsa.PrivateKey // ec-p256 (nil for external keys)
	sm2      *sm2.PrivateKey   // sm2 (nil for external keys)
	pub      []byte            // PKIX DER of sign and sm2 keys
	secret   []byte            // hmac-sm3 (32 bytes) and sm4 (16 bytes)
	external bool
}

type confirmation struct {
	view    wire.ConfirmationView
	key     string
	message []byte
	done    chan struct{} // closed when the confirmation ends
}

// --- the officer's side (not part of banking.KMS) ------------------------

// Provision creates a key as the bank's officer does at a ceremony, with
// no enrolment restrictions (purposes and algorithms are still checked).
func (k *KMS) Provision(req wire.CreateKeyRequest) (wire.KeyView, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.create(req)
}

// Rotate makes a new primary version of name (keysvc's POST
// /v1/keys/{name}/rotate) and returns its number.
func (k *KMS) Rotate(name string) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ky, ok := k.keys[name]
	if !ok {
		return 0, fmt.Errorf("%w: %q", wire.ErrKeyNotFound, name)
	}
	if ky.protection == wire.ProtectionExternal {
		return 0, fmt.Errorf("%w: external keys do not rotate", wire.ErrWrongPurpose)
	}
	v, err := newVersion(ky.alg, len(ky.versions)+1)
	if err != nil {
		return 0, err
	}
	ky.versions = append(ky.versions, v)
	ky.primary = v.n
	return v.n, nil
}

// SetMinVersion retires the versions of name below n (keysvc's settings
// min_version): values they made no longer verify or decrypt.
func (k *KMS) SetMinVersion(name string, n int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	ky, ok := k.keys[name]
	if !ok {
		return fmt.Errorf("%w: %q", wire.ErrKeyNotFound, name)
	}
	if n < 1 || n > ky.primary {
		return fmt.Errorf("%w: min_version must be 1..%d", wire.ErrInvalidArgument, ky.primary)
	}
	ky.minVersion = n
	return nil
}

// Primary returns name's primary version.
func (k *KMS) Primary(name string) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ky, ok := k.keys[name]
	if !ok {
		return 0, fmt.Errorf("%w: %q", wire.ErrKeyNotFound, name)
	}
	return ky.primary, nil
}

// SetDown makes the client's calls of ops (as Calls names them; none:
// every operation) answer err, as keysvc answers when its token or audit
// log is unavailable; SetDown(nil) brings everything up again.
func (k *KMS) SetDown(err error, ops ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.down, k.downOps = err, nil
	if len(ops) > 0 {
		k.downOps = map[string]bool{}
		for _, op := range ops {
			k.downOps[op] = true
		}
	}
}

// Calls returns how many calls of each operation ("decrypt", "mac",
// "mac-verify", "verify", "sign", "sign-batch", "datakey", "public",
// "create", "confirmation") the client made since the last Calls.
func (k *KMS) Calls() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := k.calls
	k.calls = map[string]int{}
	return n
}

// MACWith computes what MAC returns for message under version n of name,
// for tests that check the stored form (keysvc's mac under one version).
func (k *KMS) MACWith(name string, n int, message []byte) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ky, ok := k.keys[name]
	if !ok || ky.purpose != wire.PurposeMAC || n < 1 || n > len(ky.versions) {
		return "", fmt.Errorf("%w: %q v%d", wire.ErrVersionNotFound, name, n)
	}
	return wire.Versioned{Version: n, Bytes: smcrypto.HMACSM3(ky.versions[n-1].secret, message)}.String(), nil
}

// Pending returns the confirmation waiting on key name, if any.
func (k *KMS) Pending(name string) (wire.ConfirmationView, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ky, ok := k.keys[name]
	if !ok || ky.pending == "" {
		return wire.ConfirmationView{}, false
	}
	return k.confirms[ky.pending].view, true
}

// Approve is the holder's approval of confirmation id: the held bytes are
// signed with the key's primary version.
func (k *KMS) Approve(id string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	cf, ky, err := k.open(id)
	if err != nil {
		return err
	}
	v, err := ky.primaryVersion()
	if err == nil {
		var sig []byte
		if sig, err = v.sign(ky, wire.SignRequest{Message: cf.message}); err == nil {
			cf.view.Signature, cf.view.Version = wire.Versioned{Version: v.n, Bytes: sig}.String(), v.n
		}
	}
	if err != nil {
		k.end(cf, ky, wire.ConfirmFailed, "the key could not sign")
		return err
	}
	k.end(cf, ky, wire.ConfirmApproved, "")
	return nil
}

// Reject is the holder's rejection of confirmation id.
func (k *KMS) Reject(id string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	cf, ky, err := k.open(id)
	if err != nil {
		return err
	}
	k.end(cf, ky, wire.ConfirmRejected, "rejected by the holder")
	return nil
}

func (k *KMS) open(id string) (*confirmation, *key, error) {
	cf, ok := k.confirms[id]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %q", wire.ErrConfirmationNotFound, id)
	}
	if cf.view.Status != wire.ConfirmPending {
		return nil, nil, fmt.Errorf("%w: %q is %s", wire.ErrConfirmationClosed, id, cf.view.Status)
	}
	return cf, k.keys[cf.key], nil
}

func (k *KMS) end(cf *confirmation, ky *key, status wire.ConfirmationStatus, reason string) {
	cf.view.Status, cf.view.Reason = status, reason
	clear(cf.message)
	ky.pending = ""
	close(cf.done)
}

// --- banking.KMS ----------------------------------------------------------

// begin counts a call of op and answers the injected outage, if any.
func (k *KMS) begin(op string) error {
	k.calls[op]++
	if k.downOps != nil && !k.downOps[op] {
		return nil
	}
	return k.down
}

// use returns the key name if the client holds a grant for op on it, else
// ErrForbidden — also for a key that does not exist (keysvc's visible).
func (k *KMS) use(name string, op wire.Op, purposes ...wire.Purpose) (*key, error) {
	ky, ok := k.keys[name]
	if !ok || !ky.policy.Allows(k.client, op) {
		return nil, fmt.Errorf("%w: client %q may not %s with key %q (it holds no grant for it, or there is no such key)", wire.ErrForbidden, k.client, op, name)
	}
	for _, p := range purposes {
		if ky.purpose == p {
			return ky, nil
		}
	}
	return nil, fmt.Errorf("%w: key %q has purpose %s; %s needs a key for %v", wire.ErrWrongPurpose, name, ky.purpose, op, purposes)
}

// CreateKey creates a customer key as an enrolling client (keysvc's
// mayEnrol): under an enrol prefix, a signing key that is external or
// confirm-required, granted to the client alone.
func (k *KMS) CreateKey(_ context.Context, req wire.CreateKeyRequest) (wire.KeyView, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.begin("create"); err != nil {
		return wire.KeyView{}, err
	}
	prefixed := false
	for _, p := range k.prefixes {
		prefixed = prefixed || (p != "" && strings.HasPrefix(req.Name, p))
	}
	switch {
	case !prefixed:
		return wire.KeyView{}, fmt.Errorf("%w: only admin clients create keys (or enrolling clients, under their key-name prefixes)", wire.ErrForbidden)
	case req.Purpose != wire.PurposeSign || (req.Protection != wire.ProtectionExternal && req.Confirm != wire.ConfirmRequired) || req.Protection == wire.ProtectionHSM:
		return wire.KeyView{}, fmt.Errorf("%w: an enrolling client creates only customer signing keys: protection external, or wrapped with confirm required", wire.ErrForbidden)
	}
	for _, g := range req.Policy.Grants {
		if g.Client != k.client {
			return wire.KeyView{}, fmt.Errorf("%w: an enrolling client may grant a new key to itself only, not to %q", wire.ErrForbidden, g.Client)
		}
	}
	return k.create(req)
}

func (k *KMS) create(req wire.CreateKeyRequest) (wire.KeyView, error) {
	if req.Name == "" {
		return wire.KeyView{}, fmt.Errorf("%w: name is required", wire.ErrInvalidArgument)
	}
	if _, ok := k.keys[req.Name]; ok {
		return wire.KeyView{}, fmt.Errorf("%w: %q", wire.ErrKeyExists, req.Name)
	}
	want := map[wire.Algorithm]wire.Purpose{wire.AlgECP256: wire.PurposeSign, wire.AlgSM2: "", wire.AlgSM4: wire.PurposeEncrypt, wire.AlgHMACSM3: wire.PurposeMAC}
	p, ok := want[req.Algorithm]
	switch {
	case !ok:
		return wire.KeyView{}, fmt.Errorf("%w: fakekms has no %s keys", wire.ErrInvalidArgument, req.Algorithm)
	case p != "" && p != req.Purpose, req.Algorithm == wire.AlgSM2 && req.Purpose != wire.PurposeSign && req.Purpose != wire.PurposeEncrypt:
		return wire.KeyView{}, fmt.Errorf("%w: %s keys are not for %s", wire.ErrInvalidArgument, req.Algorithm, req.Purpose)
	case req.Confirm == wire.ConfirmRequired && req.Purpose != wire.PurposeSign:
		return wire.KeyView{}, fmt.Errorf("%w: confirm required is for signing keys", wire.ErrInvalidArgument)
	case (req.PublicKey != "") != (req.Protection == wire.ProtectionExternal):
		return wire.KeyView{}, fmt.Errorf("%w: public_key is required for external keys and refused for others", wire.ErrInvalidArgument)
	case req.Protection == wire.ProtectionExternal && req.Purpose != wire.PurposeSign:
		return wire.KeyView{}, fmt.Errorf("%w: external keys are signing keys", wire.ErrInvalidArgument)
	}
	ky := &key{name: req.Name, purpose: req.Purpose, alg: req.Algorithm, protection: req.Protection, confirm: req.Confirm,
		uid: []byte(smcrypto.DefaultUID), policy: req.Policy, primary: 1, minVersion: 1}
	if req.SM2UID != "" {
		ky.uid = []byte(req.SM2UID)
	}
	var v *version
	var err error
	if req.Protection == wire.ProtectionExternal {
		v, err = externalVersion(req.Algorithm, req.PublicKey)
	} else {
		v, err = newVersion(req.Algorithm, 1)
	}
	if err != nil {
		return wire.KeyView{}, err
	}
	ky.versions = []*version{v}
	k.keys[req.Name] = ky
	view := wire.KeyView{Name: ky.name, Purpose: ky.purpose, Algorithm: ky.alg, Protection: ky.protection, Primary: 1, MinVersion: 1,
		Policy: ky.policy, Confirm: ky.confirm, Versions: []wire.VersionView{{Version: 1, State: wire.StateEnabled}}}
	if ky.confirm == wire.ConfirmRequired {
		view.HolderSetupCode = rand.Text()
		view.Holder = &wire.HolderView{}
	}
	return view, nil
}

func newVersion(alg wire.Algorithm, n int) (*version, error) {
	v := &version{n: n, state: wire.StateEnabled}
	var err error
	switch alg {
	case wire.AlgECP256:
		if v.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err == nil {
			v.pub, err = x509.MarshalPKIXPublicKey(&v.ec.PublicKey)
		}
	case wire.AlgSM2:
		if v.sm2, err = smcrypto.GenerateSM2(); err == nil {
			v.pub, err = smcrypto.MarshalSM2Public(&v.sm2.PublicKey)
		}
	case wire.AlgSM4:
		v.secret = make([]byte, 16)
		_, err = rand.Read(v.secret)
	case wire.AlgHMACSM3:
		v.secret = make([]byte, 32)
		_, err = rand.Read(v.secret)
	}
	return v, err
}

// externalVersion checks a customer's PEM public key against alg, as
// keysvc's externalVersion does.
func externalVersion(alg wire.Algorithm, pemText string) (*version, error) {
	blk, rest := pem.Decode([]byte(pemText))
	if blk == nil || blk.Type != "PUBLIC KEY" || len(strings.TrimSpace(string(rest))) > 0 {
		return nil, fmt.Errorf("%w: public_key must be one PEM block of type PUBLIC KEY (PKIX)", wire.ErrInvalidArgument)
	}
	v := &version{n: 1, state: wire.StateEnabled, pub: blk.Bytes, external: true}
	if alg == wire.AlgSM2 {
		if _, err := smcrypto.ParseSM2Public(blk.Bytes); err != nil {
			return nil, fmt.Errorf("%w: public_key is not an SM2 public key", wire.ErrInvalidArgument)
		}
		return v, nil
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if p, ok := pub.(*ecdsa.PublicKey); err != nil || !ok || p.Curve != elliptic.P256() || alg != wire.AlgECP256 {
		return nil, fmt.Errorf("%w: public_key is not a %s public key", wire.ErrInvalidArgument, alg)
	}
	return v, nil
}

func (ky *key) primaryVersion() (*version, error) {
	v := ky.versions[ky.primary-1]
	if v.state != wire.StateEnabled {
		return nil, fmt.Errorf("%w: the primary version %d of %q is %s", wire.ErrVersionNotUsable, v.n, ky.name, v.state)
	}
	return v, nil
}

// older is the version a "kw:v<n>:" value names, if it may still be used
// (keysvc's older: not below min_version, enabled).
func (ky *key) older(n int) (*version, error) {
	switch {
	case n > len(ky.versions):
		return nil, fmt.Errorf("%w: key %q has no version %d", wire.ErrVersionNotFound, ky.name, n)
	case n < ky.minVersion:
		return nil, fmt.Errorf("%w: version %d of %q is below the key's minimum version %d", wire.ErrVersionNotUsable, n, ky.name, ky.minVersion)
	case ky.versions[n-1].state != wire.StateEnabled:
		return nil, fmt.Errorf("%w: version %d of %q is %s", wire.ErrVersionNotUsable, n, ky.name, ky.versions[n-1].state)
	}
	return ky.versions[n-1], nil
}

// digest is what an ec-p256 key signs: SHA-256 of the message, or the
// caller's 32-byte digest.
func digest(req wire.SignRequest) ([]byte, error) {
	switch {
	case req.Scheme != "":
		return nil, fmt.Errorf("%w: ec-p256 and sm2 keys take no scheme", wire.ErrInvalidArgument)
	case (req.Message == nil) == (req.Digest == nil):
		return nil, fmt.Errorf("%w: give exactly one of message and digest", wire.ErrInvalidArgument)
	case req.Digest != nil && len(req.Digest) != sha256.Size:
		return nil, fmt.Errorf("%w: digest must be 32 bytes", wire.ErrInvalidArgument)
	case req.Digest != nil:
		return req.Digest, nil
	}
	sum := sha256.Sum256(req.Message)
	return sum[:], nil
}

func (v *version) sign(ky *key, req wire.SignRequest) ([]byte, error) {
	e, err := digest(req)
	if err != nil {
		return nil, err
	}
	if ky.alg == wire.AlgSM2 {
		if req.Digest != nil {
			return smcrypto.SM2SignDigest(v.sm2, e)
		}
		return smcrypto.SM2Sign(v.sm2, ky.uid, req.Message)
	}
	return ecdsa.SignASN1(rand.Reader, v.ec, e)
}

// Sign signs with the primary version; a confirm-required key signs
// nothing and returns a pending confirmation instead.
func (k *KMS) Sign(_ context.Context, name string, req wire.SignRequest) (wire.SignResult, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.begin("sign"); err != nil {
		return wire.SignResult{}, err
	}
	ky, err := k.use(name, wire.OpSign, wire.PurposeSign)
	if err != nil {
		return wire.SignResult{}, err
	}
	if ky.confirm == wire.ConfirmRequired {
		return k.requestConfirmation(ky, req)
	}
	res, err := k.signAll(ky, []wire.SignRequest{req})
	if err != nil {
		return wire.SignResult{}, err
	}
	return res[0], nil
}

// SignBatch signs 1 to 1000 items with the primary version.
func (k *KMS) SignBatch(_ context.Context, name string, reqs []wire.SignRequest) ([]wire.SignResult, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.begin("sign-batch"); err != nil {
		return nil, err
	}
	if len(reqs) == 0 || len(reqs) > 1000 {
		return nil, fmt.Errorf("%w: a batch holds 1 to 1000 items, got %d", wire.ErrInvalidArgument, len(reqs))
	}
	ky, err := k.use(name, wire.OpSign, wire.PurposeSign)
	if err != nil {
		return nil, err
	}
	if ky.confirm == wire.ConfirmRequired {
		return nil, fmt.Errorf("%w: key %q signs one confirmed transaction at a time", wire.ErrConfirmationRequired, name)
	}
	return k.signAll(ky, reqs)
}

func (k *KMS) signAll(ky *key, reqs []wire.SignRequest) ([]wire.SignResult, error) {
	v, err := ky.primaryVersion()
	if err != nil {
		return nil, err
	}
	if v.external {
		return nil, fmt.Errorf("%w: key %q is external: its holder signs on their own device and keysvc only verifies", wire.ErrWrongPurpose, ky.name)
	}
	out := make([]wire.SignResult, len(reqs))
	for i, r := range reqs {
		sig, err := v.sign(ky, r)
		if err != nil {
			return nil, err
		}
		out[i] = wire.SignResult{Signature: wire.Versioned{Version: v.n, Bytes: sig}.String(), Version: v.n}
	}
	return out, nil
}

func (k *KMS) requestConfirmation(ky *key, req wire.SignRequest) (wire.SignResult, error) {
	switch {
	case ky.pending != "":
		return wire.SignResult{}, fmt.Errorf("%w: key %q", wire.ErrConfirmationPending, ky.name)
	case req.Message == nil || req.Digest != nil:
		return wire.SignResult{}, fmt.Errorf("%w: key %q signs one confirmed transaction, sent as message", wire.ErrConfirmationRequired, ky.name)
	}
	if _, err := ky.primaryVersion(); err != nil {
		return wire.SignResult{}, err
	}
	sum := sha256.Sum256(req.Message)
	now := time.Now().UTC()
	cf := &confirmation{key: ky.name, message: append([]byte(nil), req.Message...), done: make(chan struct{}),
		view: wire.ConfirmationView{ID: "cf_" + rand.Text(), Key: ky.name, Status: wire.ConfirmPending, Digest: hex.EncodeToString(sum[:]),
			CreatedAt: now, ExpiresAt: now.Add(time.Minute)}}
	k.confirms[cf.view.ID] = cf
	ky.pending = cf.view.ID
	view := cf.view
	return wire.SignResult{Confirmation: &view}, nil
}

// Confirmation returns confirmation id, waiting up to wait while it is
// pending.
func (k *KMS) Confirmation(ctx context.Context, id string, wait time.Duration) (wire.ConfirmationView, error) {
	k.mu.Lock()
	err := k.begin("confirmation")
	cf, ok := k.confirms[id]
	k.mu.Unlock()
	if err != nil {
		return wire.ConfirmationView{}, err
	}
	if !ok {
		return wire.ConfirmationView{}, fmt.Errorf("%w: %q", wire.ErrConfirmationNotFound, id)
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-cf.done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return cf.view, nil
}

// Verify checks a "kw:v<n>:" signature with version n's public key.
func (k *KMS) Verify(_ context.Context, name string, req wire.VerifyRequest) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.begin("verify"); err != nil {
		return false, err
	}
	ky, err := k.use(name, wire.OpVerify, wire.PurposeSign)
	if err != nil {
		return false, err
	}
	sig, err := wire.ParseVersioned(req.Signature, wire.ErrInvalidSignature)
	if err != nil {
		return false, err
	}
	v, err := ky.older(sig.Version)
	if err != nil {
		return false, err
	}
	e, err := digest(wire.SignRequest{Message: req.Message, Digest: req.Digest, Scheme: req.Scheme})
	if err != nil {
		return false, err
	}
	if ky.alg == wire.AlgSM2 {
		pub, err := smcrypto.ParseSM2Public(v.pub)
		if err != nil {
			return false, err
		}
		if req.Digest != nil {
			return smcrypto.SM2VerifyDigest(pub, e, sig.Bytes), nil
		}
		return smcrypto.SM2Verify(pub, ky.uid, req.Message, sig.Bytes), nil
	}
	pub, err := x509.ParsePKIXPublicKey(v.pub)
	if err != nil {
		return false, err
	}
	return ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), e, sig.Bytes), nil
}

// MAC is HMAC-SM3 of message under the primary version, "kw:v<n>:…".
func (k *KMS) MAC(_ context.Context, name string, message []byte) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.begin("mac"); err != nil {
		return "", err
	}
	ky, err := k.use(name, wire.OpMAC, wire.PurposeMAC)
	if err != nil {
		return "", err
	}
	v, err := ky.primaryVersion()
	if err != nil {
		return "", err
	}
	return wire.Versioned{Version: v.n, Bytes: smcrypto.HMACSM3(v.secret, message)}.String(), nil
}

// VerifyMAC recomputes the MAC with the version mac names and compares in
// constant time.
func (k *KMS) VerifyMAC(_ context.Context, name string, message []byte, mac string) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.begin("mac-verify"); err != nil {
		return false, err
	}
	want, err := wire.ParseVersioned(mac, wire.ErrInvalidSignature)
	if err != nil {
		return false, err
	}
	ky, err := k.use(name, wire.OpMAC, wire.PurposeMAC)
	if err != nil {
		return false, err
	}
	v, err := ky.older(want.Version)
	if err != nil {
		return false, err
	}
	return hmac.Equal(smcrypto.HMACSM3(v.secret, message), want.Bytes), nil
}

// Decrypt opens an SM2 ciphertext (sealed by a client to the public key)
// or an SM4-GCM one (from DataKey) with the version it names. Failures of
// the cipher say only ErrDecrypt.
func (k *KMS) Decrypt(_ context.Context, name string, ciphertext string, aad []byte) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.begin("decrypt"); err != nil {
		return nil, err
	}
	ky, err := k.use(name, wire.OpDecrypt, wire.PurposeEncrypt, wire.PurposeWrap)
	if err != nil {
		return nil, err
	}
	ct, err := wire.ParseVersioned(ciphertext, wire.ErrInvalidCiphertext)
	if err != nil {
		return nil, err
	}
	v, err := ky.older(ct.Version)
	if err != nil {
		return nil, err
	}
	var pt []byte
	if ky.alg == wire.AlgSM2 {
		if len(aad) > 0 {
			return nil, fmt.Errorf("%w: sm2 encryption takes no aad", wire.ErrInvalidArgument)
		}
		pt, err = smcrypto.SM2Decrypt(v.sm2, ct.Bytes)
	} else {
		pt, err = smcrypto.SM4GCMOpen(v.secret, ct.Bytes, aad)
	}
	if err != nil {
		if errors.Is(err, wire.ErrInvalidArgument) {
			return nil, err
		}
		return nil, wire.ErrDecrypt
	}
	return pt, nil
}

// DataKey returns a fresh random key of size bytes (16, 24 or 32; 0 means
// 32) in clear and sealed with SM4-GCM under the primary version and aad.
func (k *KMS) DataKey(_ context.Context, name string, size int, aad []byte) (wire.DataKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.begin("datakey"); err != nil {
		return wire.DataKey{}, err
	}
	if size == 0 {
		size = 32
	}
	if size != 16 && size != 24 && size != 32 {
		return wire.DataKey{}, fmt.Errorf("%w: data key size must be 16, 24 or 32 bytes", wire.ErrInvalidArgument)
	}
	ky, err := k.use(name, wire.OpDataKey, wire.PurposeEncrypt, wire.PurposeWrap)
	if err != nil {
		return wire.DataKey{}, err
	}
	if ky.alg != wire.AlgSM4 {
		return wire.DataKey{}, fmt.Errorf("%w: data keys are sealed by sm4 keys (fakekms has no aes-256)", wire.ErrWrongPurpose)
	}
	v, err := ky.primaryVersion()
	if err != nil {
		return wire.DataKey{}, err
	}
	pt := make([]byte, size)
	if _, err := rand.Read(pt); err != nil {
		return wire.DataKey{}, err
	}
	sealed, err := smcrypto.SM4GCMSeal(v.secret, pt, aad)
	if err != nil {
		return wire.DataKey{}, err
	}
	return wire.DataKey{Plaintext: pt, Ciphertext: wire.Versioned{Version: v.n, Bytes: sealed}.String(), Version: v.n}, nil
}

// PublicKey returns version n's public key as PEM (0: the primary). The
// JWK is left empty: banking does not read it.
func (k *KMS) PublicKey(_ context.Context, name string, n int) (wire.PublicKeyResult, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.begin("public"); err != nil {
		return wire.PublicKeyResult{}, err
	}
	ky, err := k.use(name, wire.OpPublic, wire.PurposeSign, wire.PurposeEncrypt)
	if err != nil {
		return wire.PublicKeyResult{}, err
	}
	if n == 0 {
		n = ky.primary
	}
	if n < 1 || n > len(ky.versions) {
		return wire.PublicKeyResult{}, fmt.Errorf("%w: key %q has no version %d", wire.ErrVersionNotFound, name, n)
	}
	v := ky.versions[n-1]
	if len(v.pub) == 0 {
		return wire.PublicKeyResult{Version: n}, fmt.Errorf("%w: %s keys have no public key", wire.ErrWrongPurpose, ky.alg)
	}
	return wire.PublicKeyResult{Version: n, PEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: v.pub}))}, nil
}
