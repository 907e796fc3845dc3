// Package smcrypto is Keyward's single entry point to the Chinese national
// ("ShangMi", SM) cryptographic algorithms required by the bank's
// cryptographic standard, requirement ids R-TOK-6 (token-held key material
// must be usable with the national algorithms) and R-AUTH-1 (authentication
// signatures use SM2/SM3):
//
//   - SM2 elliptic-curve digital signatures and public-key encryption,
//     GB/T 32918.1-5-2016/2017 (formerly GM/T 0003), on the recommended
//     256-bit curve of GB/T 32918.5 ("sm2p256v1", OID 1.2.156.10197.1.301);
//   - the SM3 hash function, GB/T 32905-2016 (formerly GM/T 0004), and
//     HMAC-SM3 (GM/T 0042-2015 Appendix D);
//   - the SM4 block cipher, GB/T 32907-2016 (formerly GM/T 0002), in GCM
//     (authenticated, preferred) and CBC (interoperability only) modes.
//
// The package is a thin, opinionated wrapper over
// github.com/emmansun/gmsm. It fixes every interoperability choice that the
// standards leave open, so that keysvc never has to think about them, and it
// produces formats that OpenSSL 3 reads and writes:
//
// # Keys
//
// An SM2 private key is the 32-byte big-endian scalar d, 1 ≤ d ≤ n-2
// ([MarshalSM2Private], [ParseSM2Private]). This is the form keysvc wraps
// under a token-held KEK. A public key travels as a PKIX
// SubjectPublicKeyInfo (DER; PEM type "PUBLIC KEY") with algorithm
// id-ecPublicKey and named curve SM2 ([MarshalSM2Public],
// [ParseSM2Public]), exactly what "openssl pkey -pubout" emits for an SM2
// key. Public keys on any other curve (for example NIST P-256) are refused
// with [ErrInvalidKey]: the two curves have the same size and confusing them
// must never be silent.
//
// # Signatures (GB/T 32918.2)
//
// SM2 does not sign the message directly. The signer computes
//
//	Z_A = SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A)
//	e   = SM3(Z_A ‖ M)
//
// where ID_A is the signer's distinguishing identifier. When the caller
// passes a nil or empty uid the default identifier [DefaultUID]
// ("1234567812345678", GB/T 35276-2017 and GM/T 0009) is used; the same
// identifier must be supplied to verify. [SM2Sign] and [SM2Verify] work on
// the message; [SM2Digest] computes e so that a large message can be hashed
// elsewhere, and [SM2SignDigest] / [SM2VerifyDigest] then take e. Signatures
// are DER SEQUENCE { r INTEGER, s INTEGER } (GM/T 0009 SM2Signature), the
// encoding used by OpenSSL, X.509 and CMS. Signing is hedged: gmsm derives
// the per-signature nonce from HMAC-SM3 over the private key, e and fresh
// randomness from crypto/rand, so a weak random source cannot leak the key.
//
// OpenSSL 3.0 note: "openssl dgst -sm3 -sign/-verify" only computes Z_A with
// the default identifier if it is asked to: pass
// "-sigopt distid:1234567812345678" explicitly, otherwise OpenSSL uses an
// empty identifier and signatures do not verify across implementations.
//
// # Encryption (GB/T 32918.4)
//
// An SM2 ciphertext has three parts: C1 = kG (an uncompressed point), C3 =
// SM3(x2 ‖ M ‖ y2) and C2 = M ⊕ KDF(x2 ‖ y2). The current standard orders
// them C1 ‖ C3 ‖ C2; this package always produces that order and never the
// obsolete C1 ‖ C2 ‖ C3. [SM2Encrypt] can emit two encodings:
//
//   - [EncodingASN1]: GM/T 0009 SM2Cipher, SEQUENCE { x INTEGER, y INTEGER,
//     hash OCTET STRING, ciphertext OCTET STRING }, which is what
//     "openssl pkeyutl -encrypt" produces and "-decrypt" expects;
//   - [EncodingRaw]: 0x04 ‖ x ‖ y ‖ C3 ‖ C2 (97 bytes of overhead), common in
//     HSM and SDF (GM/T 0018) interfaces.
//
// [SM2Decrypt] accepts either encoding. Plaintexts must be non-empty. Every
// decryption failure, whatever its cause, is reported as the single error
// [ErrDecrypt] so that callers cannot accidentally build a decryption
// oracle.
//
// The all-zero rule of GB/T 32918.4-2016 is kept on both sides: when t =
// KDF(x2 ‖ y2, klen) is all zero, [SM2Encrypt] starts again from step A1
// with a new k (6.1 A5; gmsm's own restart is bypassed because it reused a
// clobbered copy of the public key, see singleDraw), and [SM2Decrypt]
// refuses the ciphertext (7.1 B4), as OpenSSL 3.0 does. The npm package
// sm-crypto (0.5.8), common in bank web front ends, applies neither rule:
// about one in 256 of its 1-byte ciphertexts (one in 65,536 of 2-byte
// ones) carries C2 = M in clear and is refused here, as the standard
// requires. Plaintexts of several bytes, such as passwords, are not
// affected in practice.
//
// # Hashing and symmetric encryption
//
// [SM3] and [HMACSM3] are the plain GB/T 32905 hash and RFC 2104 HMAC over
// it. [SM4GCMSeal] / [SM4GCMOpen] use SM4 in GCM mode (NIST SP 800-38D
// construction, as in RFC 8998) with a fresh random 96-bit nonce per
// message and a 128-bit tag; the output is nonce ‖ ciphertext ‖ tag and the
// additional data is authenticated but not included. Do not seal more than
// about 2^32 messages under one key (random-nonce collision bound).
// [SM4CBCEncrypt] / [SM4CBCDecrypt] implement SM4-CBC with a random IV and
// PKCS#7 padding for peers that cannot do GCM; CBC is not authenticated, so
// a CBC ciphertext must be protected by a MAC (for example HMAC-SM3 over IV
// ‖ ciphertext, checked before decrypting) whenever an attacker can submit
// ciphertexts. Every SM4 key is exactly 16 bytes.
//
// # Handling unwrapped key material
//
// keysvc keeps SM2 and SM4 keys wrapped under a KEK that never leaves the
// token and unwraps a key into memory for a single operation. The intended
// pattern is:
//
//	d := unwrap(...)                 // 32-byte SM2 scalar
//	defer smcrypto.Wipe(d)
//	priv, err := smcrypto.ParseSM2Private(d)
//	if err != nil { ... }
//	defer clear(priv.D.Bits())       // best effort, see below
//	sig, err := smcrypto.SM2Sign(priv, uid, msg)
//
// [Wipe] zeroes a byte slice. [ParseSM2Private] copies its input, so the
// caller may wipe d as soon as it returns. The scalar also lives in
// priv.D (a *big.Int), which clear(priv.D.Bits()) zeroes once the key is
// no longer needed. Go offers no guarantee that the runtime or gmsm
// (which caches a derived form of the key for as long as priv is reachable)
// has not made further copies, so wiping reduces exposure but is not a
// substitute for keeping keys on the token.
//
// All functions are safe for concurrent use.
package smcrypto
