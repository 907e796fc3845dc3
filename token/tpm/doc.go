// Package tpm keeps keysvc's local secrets in the host's TPM 2.0 (issue 8): it seals small
// secrets to the machine, optionally to its measured boot state and to an authorization value,
// and it holds ECC P-256 signing keys whose private half never leaves the TPM.
//
// # What is sealed, and under which key
//
// keysvc seals one 32-byte data-encryption key: the key of its secrets file, which holds the
// token PIN and the TLS private key. With the key sealed, keysvc starts unattended after a reboot
// and nobody types the PIN; the file itself stays on disk, encrypted.
//
// Seal asks the TPM to create a sealed data object (a keyed-hash object with no scheme and the
// secret as its sensitive data) under the storage root key (SRK): the TCG ECC P-256 SRK template
// (tpm2.ECCSRKTemplate) in the owner hierarchy. The SRK is never stored anywhere: CreatePrimary
// derives it afresh from the owner hierarchy's primary seed for every operation, so it is the
// same key every time, and it is flushed afterwards. The object is fixedTPM and fixedParent: the
// TPM will never export or re-parent it.
//
// What Seal returns (Sealed, stored as JSON) is the object's public area and its private area.
// The private area is encrypted and integrity-protected with keys derived from the SRK, that is
// from the owner seed, which never leaves the TPM. The secret and the authorization value travel
// to the TPM, and the secret back, encrypted with a session salted to the SRK, so they are not
// visible on the bus to a discrete TPM either.
//
// # What a copied disk gives an attacker
//
// Nothing. The Sealed blob, without the TPM that made it, is ciphertext under a key no one can
// obtain; on any other TPM, Unseal fails with ErrWrongTPM (the blob does not load under that
// TPM's SRK), and so does LoadSigner. The same happens on the same machine after its TPM was
// cleared (TPM2_Clear makes a new owner seed): sealed secrets are then lost for good, which is
// why the secrets file keeps a passphrase-protected copy of its key beside the sealed one.
//
// An attacker who has the machine itself, not a copy, is a different matter: without PCR binding
// or an auth value, whoever can run code on it as a user with access to the TPM device can
// unseal. PCR binding limits that to the measured boot chain the secret was sealed under; an
// auth value adds something to know.
//
// # PCR binding, and what it means for operators
//
// SealOptions.PCRs binds the secret to the current values of those SHA-256 bank PCRs
// (TPM2_PolicyPCR): the TPM unseals only while they hold exactly the values they held at sealing.
// PCRs are reset at boot and extended by each boot stage with a measurement of the next: on a
// typical UEFI machine PCR 0 is firmware code, 2 option ROMs, 4 the boot loader, 7 the Secure Boot
// state (keys and databases), 8 and 9 the kernel command line and files GRUB loads, 11 a unified
// kernel image. Booting something else (another kernel, Secure Boot off, a live USB) gives other
// values and the secret stays sealed.
//
// The price: a legitimate firmware, boot loader or kernel update changes PCRs too. After such an
// update and the reboot, Unseal fails with ErrPCRMismatch, and the error (a *PCRMismatchError)
// names the PCRs that changed. keysvc then does not start unattended; an operator unlocks the
// secrets file with the passphrase fallback and reseals to the new values with `ceremony reseal`.
// Bind to as few PCRs as give the protection you want: PCR 7 alone survives kernel and most
// firmware updates (it changes when Secure Boot keys or dbx change), PCRs 0, 2 and 4 change with
// every firmware or boot loader update. Sealed records the values it was sealed to (PCRValues,
// PCRDigest) for that diagnosis; they are hints, not security: the policy is inside the object,
// and editing them only makes Unseal fail.
//
// ExtendPCR lets a boot stage "cap" a PCR once it has taken its secret, so later software on the
// same boot can't unseal it again; it is also how the tests simulate an update (PCR 16 or 23).
//
// # Authorization values and dictionary-attack lockout
//
// SealOptions.Auth adds TPM2_PolicyAuthValue: Unseal needs the same value. The object's
// authValue is SHA-256(Auth), so any length works. The TPM checks it with an HMAC (the value
// itself never crosses the bus), and counts every wrong value toward dictionary-attack (DA)
// lockout: after MaxTries failures (swtpm's default: 3) the TPM is in lockout and refuses every
// DA-protected object, even with the right value, with ErrLocked. One failure is forgotten every
// RecoveryTime (swtpm's default: 1000 s); ClearDALockout ends the lockout at once
// (TPM2_DictionaryAttackLockReset with the lockout hierarchy's authorization, which this package
// assumes is empty; a failed attempt at that locks the lockout hierarchy itself for
// LockoutRecovery). DAState reports the counters; SetDAParameters changes them.
//
// Sealed secrets without an auth value (PCR-only or plain) are not DA-protected and keep working
// during a lockout; so does Seal. Unseal of a secret that needs an auth value refuses an empty one
// itself (ErrAuthFailed) without asking the TPM, so a forgotten passphrase does not cost a try.
//
// # Signing keys
//
// CreateSigningKey makes an ECC NIST P-256 key inside the TPM under the SRK: fixedTPM,
// fixedParent, sensitiveDataOrigin (the TPM generated it), sign-only, unrestricted, ECDSA-SHA256
// scheme, empty authorization and exempt from DA (there is nothing to guess). KeyBlob holds it
// wrapped like a sealed object: useless on another TPM. LoadSigner loads it (and refuses blobs
// that are not such a key) and returns a Signer, a crypto.Signer that keeps the key loaded until
// Close. A TPM signs in about half a millisecond on swtpm and tens of milliseconds on hardware, one
// signature at a time: it suits low-volume keys such as the audit-checkpoint key, not request
// signing.
//
// # Transports
//
// Open takes "/dev/tpmrm0" or "device:/dev/tpmrm0": the kernel's TPM through its resource manager,
// which gives each open file its own view of loaded objects and sessions and flushes them when the
// file is closed. Prefer tpmrm0 to tpm0 (no resource manager, one user at a time). The user needs
// read-write access (group tss on most distributions).
//
// "tcp:HOST:PORT" speaks the TPM simulator protocol to swtpm or the reference simulator, for tests
// and development (package tpmtest starts one). A simulator has no resource manager: Open flushes
// what an earlier client left loaded, and swtpm holds only three objects at once.
//
// Commands the TPM answers with TPM_RC_RETRY, TPM_RC_YIELDED or TPM_RC_TESTING are sent again
// (for about 5 s), as tpm2-tss does. A transport that fails (device gone, simulator stopped) gives
// ErrNoTPM.
//
// # Errors
//
// ErrNoTPM, ErrPCRMismatch (*PCRMismatchError), ErrAuthFailed, ErrLocked, ErrWrongTPM, ErrBadBlob,
// ErrSecretSize and ErrClosed are told apart with errors.Is. They wrap the TPM's response code for
// logs. No error and no log line of this package contains a secret or an authorization value.
//
// # Concurrency
//
// A *TPM is safe for concurrent use: one mutex serialises each operation's whole command sequence
// (the TPM executes one command at a time anyway). Signers share their TPM's mutex. Close on the
// TPM flushes Signers still loaded.
//
// # Limitations
//
//   - The owner hierarchy's authorization must be empty (the usual state on Linux servers), and
//     ClearDALockout/SetDAParameters need an empty lockout authorization.
//   - Sealed.SRKName pins the SRK for Unseal, but Seal and CreateSigningKey trust the SRK the
//     TPM presents: an active attacker on the bus of a discrete TPM at sealing time could answer
//     CreatePrimary with a key of their own and read what is salted to it. Seal in a trusted
//     moment (a ceremony), or compare the SRK name with one recorded at provisioning.
//   - PCR policies are exact values (no TPM2_PolicyAuthorize), so new PCR values can't be
//     authorized ahead of an update: reseal after it, with the passphrase fallback.
//   - Only the SHA-256 PCR bank, only PCRs 0..23.
//   - Secrets are 1 to 128 bytes (TPM2B_SENSITIVE_DATA): seal a key, not data.
//   - On a simulator, a Signer stays loaded until Close; with swtpm's three object slots, Unseal
//     needs two, so keep at most one Signer loaded there.
package tpm
