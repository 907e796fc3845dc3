package main

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The backup file's authentication (issue 13 defect 5, R-AV-3). Format v2
// carries a MAC: HMAC-SHA256 under a key derived from the backup KEK with
// HKDF-SHA256 (salt: the backup id; info: backupMACInfo), over the
// canonical encoding of everything else in the file — backup id, created,
// source token, threshold, share count, custodians and each custodian's
// share x coordinate, mechanism, KEK check value, and every key's label,
// id, type, usage, public key, wrapped blob and destroyable flag, in order
// (the flag is omitted when false, so files made before it was recorded
// keep their canonical encoding and MAC). The canonical
// encoding is Go's encoding/json of the decoded file with mac empty: the
// struct fixes the field order and holds no maps, so it is deterministic,
// and it covers exactly the values restore acts on (and any field added to
// the file later).
//
// restore verifies the MAC right after rebuilding the KEK, before the
// target token is opened: an edited label, a swapped wrapped blob or an
// edited custodian list is refused (exit 4). Each share's header
// (custodian, share number, total, threshold) must then match the
// authenticated custodian list, and its x coordinate the one recorded for
// that custodian, so a share relabelled as another custodian's is refused
// too. crypto/hkdf is the standard library's (Go 1.24+): no new dependency.
//
// Format v1 files (no MAC; made by the ceremony before issue 13) are
// restored only when the restore file says accept_unauthenticated_v1_backup:
// true, and the transcript says so in capitals.

const (
	backupFormatV1 = "keyward.ceremony.backup.v1"
	backupMACInfo  = "keyward ceremony backup file MAC v2"
)

// backupMAC computes the MAC of bf (its MAC field ignored).
func backupMAC(kek, id []byte, bf *backupFile) (string, error) {
	key, err := hkdf.Key(sha256.New, kek, id, backupMACInfo, 32)
	if err != nil {
		return "", err
	}
	c := *bf
	c.MAC = ""
	canon, err := json.Marshal(&c)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, key)
	m.Write(canon)
	return hex.EncodeToString(m.Sum(nil)), nil
}

// sealBackupFile records each custodian's share x coordinate and sets the
// file's MAC (format v2). parts[i] is custodians[i]'s Shamir share.
func sealBackupFile(bf *backupFile, kek, id []byte, parts [][]byte) error {
	bf.Format = backupFormat
	bf.ShareX = nil
	for _, p := range parts {
		bf.ShareX = append(bf.ShareX, int(p[len(p)-1]))
	}
	mac, err := backupMAC(kek, id, bf)
	bf.MAC = mac
	return err
}

// checkBackupAuth authenticates a backup file and the shares given for it,
// once the KEK is rebuilt and its check value matched: the file's MAC
// (v2), or the explicit acceptance of a v1 file; and every share's header
// against the file's custodian list. It returns the transcript's words for
// whose shares were used.
func checkBackupAuth(kek, id []byte, bf *backupFile, path string, shares []share, files []string, acceptV1 bool) (string, error) {
	if bf.Format == backupFormatV1 {
		if !acceptV1 {
			return "", v1Refusal(path)
		}
		var used []string
		for i, sh := range shares {
			used = append(used, fmt.Sprintf("%s (%s; header not authenticated)", shareWho(sh), files[i]))
		}
		return strings.Join(used, ", "), nil
	}
	want, err := backupMAC(kek, id, bf)
	if err != nil {
		return "", err
	}
	if !hmac.Equal([]byte(want), []byte(bf.MAC)) {
		return "", fmt.Errorf("%w: the backup file %s was changed after the backup was made: its MAC does not verify under the backup KEK the shares rebuild (key list, labels, wrapped keys or custodians differ from what was backed up). Nothing was restored", errVerify, path)
	}
	if len(bf.ShareX) != len(bf.Custodians) || bf.Shares != len(bf.Custodians) {
		return "", fmt.Errorf("%w: the backup file %s lists %d custodians, %d shares and %d share coordinates", errVerify, path, len(bf.Custodians), bf.Shares, len(bf.ShareX))
	}
	var used []string
	for i, sh := range shares {
		if sh.version != 2 {
			return "", fmt.Errorf("%w: share file %s is a v1 share, but the backup is v2: its shares are v2", errVerify, files[i])
		}
		if sh.total != bf.Shares || sh.threshold != bf.Threshold || sh.index < 1 || sh.index > len(bf.Custodians) ||
			bf.Custodians[sh.index-1] != sh.custodian || bf.ShareX[sh.index-1] != int(sh.x()) {
			return "", fmt.Errorf("%w: share file %s says it is %s, %d-of-%d, which the backup's authenticated custodian list does not confirm: the share file was changed", errVerify, files[i], shareWho(sh), sh.threshold, sh.total)
		}
		used = append(used, fmt.Sprintf("%s (%s)", shareWho(sh), files[i]))
	}
	return strings.Join(used, ", "), nil
}

func v1Refusal(path string) error {
	return fmt.Errorf("%w: %s is a v1 backup file (%s): it has no MAC, so its key list, labels and share headers cannot be checked — an edited file would restore keys under other names. Restore it only if the file comes from your own safe and you accept that: add accept_unauthenticated_v1_backup: true to the restore file (the transcript records it); make a new v2 backup afterwards", errVerify, path, backupFormatV1)
}

func shareWho(sh share) string {
	name := sh.custodian
	if name == "" {
		name = "an unnamed custodian"
	}
	if sh.index == 0 {
		return "the share of " + name
	}
	return fmt.Sprintf("share %d of %d held by %s", sh.index, sh.total, name)
}

// validCustodianName: a name fits in a v2 share's header (1 to 64 bytes of
// UTF-8, no control characters: it is printed on the share's own line).
func validCustodianName(path, name string) error {
	if len(name) > maxCustodian || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		return cfgErr(path, "must be 1 to %d bytes of text without control characters (it is written into the share)", maxCustodian)
	}
	return nil
}

// authStep records how the backup file was authenticated and whose shares
// were used; a v1 file's acceptance is said in capitals, on stderr too.
func (s *session) authStep(bf *backupFile, path, used string) {
	if bf.Format == backupFormatV1 {
		fmt.Fprintf(s.o.stderr, "WARNING: %s is an UNAUTHENTICATED v1 backup file, restored because the restore file says accept_unauthenticated_v1_backup: true\n", path)
		s.rec.step("UNAUTHENTICATED V1 BACKUP ACCEPTED", "%s has no MAC: its key list, labels and share headers were NOT authenticated; restored only because the restore file says accept_unauthenticated_v1_backup: true", path)
	} else {
		s.rec.step("authenticate backup", "the backup file's MAC (HMAC-SHA256, key from the rebuilt KEK by HKDF-SHA256) verifies: key list, labels, wrapped keys and custodians are as backed up")
	}
	s.rec.step("shares used", "%s", used)
}

// checkWrittenBackup re-reads the backup file just written and checks its
// MAC (the backup checks its own work).
func checkWrittenBackup(path string, kek, id []byte) error {
	bf, _, err := readBackup(path)
	if err != nil {
		return fmt.Errorf("%w: %v", errVerify, err)
	}
	want, err := backupMAC(kek, id, bf)
	if err != nil {
		return err
	}
	if bf.Format != backupFormat || !hmac.Equal([]byte(want), []byte(bf.MAC)) {
		return fmt.Errorf("%w: the backup file %s does not read back with a good MAC", errVerify, path)
	}
	return nil
}
