// Package password holds the banking app's password rules and the login
// challenge that makes an encrypted password single use.
//
// # Password rules (R-AUTH-2)
//
// Check is called when a customer chooses or changes a password. It returns
// a *WeakError listing every rule broken, each with a stable code (for the
// client's translations) and an English message a person can act on:
// length 8–64, printable ASCII, three of four character classes, nothing
// personal (customer id, phone, ID card number, their last six characters,
// the date of birth in an ID number) and nothing on the embedded list of
// common passwords (common.txt), also after stripping added digits and
// symbols and undoing l33t spelling. The list is small on purpose (a few
// hundred entries, embedded in the binary); it catches the passwords that
// pass the class rule yet are first in every guessing dictionary.
//
// Password storage is not here: the app stores only keysvc's HMAC-SM3 of
// the password (R-AUTH-1) and compares it in constant time.
//
// # Login challenge (R-AUTH-4)
//
// A login is:
//
//  1. The client asks for a challenge: Challenges.New gives 32 random bytes
//     as unpadded base64url, valid for at most 2 minutes, stored only as
//     SHA-256(bytes) with its expiry.
//  2. The client encrypts
//     password ‖ 0x00 ‖ challenge-bytes
//     (the challenge base64url-decoded, 32 bytes) to the bank's login key
//     (SM2, or RSA-OAEP) and sends the ciphertext together with the
//     challenge value.
//  3. The app asks keysvc to decrypt, then calls Challenges.Redeem(plain,
//     value): the challenge is consumed atomically (a second use is
//     ErrChallengeUsed, however close together the two requests) and the
//     blob must end in 0x00 and exactly that challenge
//     (ErrChallengeMismatch otherwise), compared in constant time.
//  4. The returned password goes to keysvc for its keyed hash, which is
//     compared with the stored one. The app wipes plain and the password.
//
// A recorded ciphertext is useless afterwards: its challenge is used or
// expired.
//
// # Limitations
//
// Consumed challenges are remembered only until they expire; after Sweep
// a replay is ErrChallengeUnknown instead of ErrChallengeUsed, refused just
// the same. Challenge issue is unauthenticated and writes to the database
// (one fsync per batch): the HTTP layer must rate-limit it per source
// address.
package password
