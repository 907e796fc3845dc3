package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/vault/shamir"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// M-of-N backup (R-AV-3, R-TOK-8). A fresh 32-byte backup KEK comes from the
// token's RNG. Backup-able keys carry CKA_WRAP_WITH_TRUSTED, so the token
// wraps them only under a CKA_TRUSTED key, which only the SO can make
// (issue 13): with both parts of the SO PIN, in one session, the SO makes
// the KEK a trusted, wrap-only session key and logs out; the user logs in,
// wraps each key with CKM_AES_KEY_WRAP_PAD; the KEK is destroyed
// (token.Admin.WrapForBackup). The KEK is split with Shamir's secret sharing
// (hashicorp/vault/shamir v1.14.1, the last MPL-2.0 release) into one share
// per custodian. The backup file holds only wrapped keys, public keys and a
// check value of the KEK. Restore imports the KEK unwrap-only.

const (
	backupFormat = "keyward.ceremony.backup.v2" // v1: backupfile.go
	kcvDomain    = "keyward ceremony backup KEK check v1"
	backupKEK    = "ceremony-backup-kek"
)

type backupKey struct {
	Label        string `json:"label"`
	ID           string `json:"id"` // CKA_ID, hex
	Type         string `json:"type"`
	Usage        uint   `json:"usage"` // pkcs11shim.Usage bits
	PublicKeyPEM string `json:"public_key_pem,omitempty"`
	PublicSHA    string `json:"public_key_sha256,omitempty"`
	Wrapped      string `json:"wrapped"` // base64, CKM_AES_KEY_WRAP_PAD under the backup KEK
	// Destroyable records the key's CKA_DESTROYABLE (keygen's destroyable:
	// true, which a KEK epoch needs: keysvc destroys it at the end of a KEK
	// rotation); restore gives the copy the same. Omitted when false, so a
	// file made before this field existed has the same canonical encoding,
	// its MAC still verifies, and its keys restore undestroyable as then.
	Destroyable bool `json:"destroyable,omitempty"`
}

type backupFile struct {
	Format      string        `json:"format"`
	BackupID    string        `json:"backup_id"`
	Created     time.Time     `json:"created"`
	SourceToken tokenIdentity `json:"source_token"`
	Threshold   int           `json:"threshold"`
	Shares      int           `json:"shares"`
	Custodians  []string      `json:"custodians"`
	Mechanism   string        `json:"mechanism"`
	KEKCheck    string        `json:"kek_check"` // HMAC-SHA256(KEK, domain ‖ backup id), hex
	Keys        []backupKey   `json:"keys"`
	ShareX      []int         `json:"share_x,omitempty"` // v2: custodians[i]'s share x coordinate
	MAC         string        `json:"mac,omitempty"`     // v2: backupfile.go
}

func kekCheck(kek, id []byte) string {
	m := hmac.New(sha256.New, kek)
	m.Write([]byte(kcvDomain))
	m.Write(id)
	return hex.EncodeToString(m.Sum(nil))
}

func runBackup(ctx context.Context, o *options) error {
	var c backupConfig
	s, err := start(o, "backup", &c, &c.common, func() []string {
		plan := []string{
			fmt.Sprintf("open token %s and log in as user; check every key was generated with backup: true (extractable only under a trusted key)", c.Token.Label),
			"draw a fresh 32-byte backup KEK from the token's RNG; log out",
			fmt.Sprintf("read the two SO PIN parts (%s); in one session: SO login (counted in the PIN guard), create the KEK as a trusted, wrap-only session key, log out", partOfficers(c.SOPIN)),
			fmt.Sprintf("user login in that session; wrap %v with CKM_AES_KEY_WRAP_PAD; destroy the KEK; log out", c.Keys),
			fmt.Sprintf("split the KEK %d-of-%d (Shamir); write one share file per custodian (0600)", c.Threshold, len(c.Custodians)),
		}
		for _, cu := range c.Custodians {
			plan = append(plan, fmt.Sprintf("  share for %s -> %s", cu.Name, cu.ShareFile))
		}
		return append(plan, "write the backup file "+c.Output, "check: re-read every share and rebuild the KEK from two different sets of shares")
	})
	if s == nil || err != nil {
		return err
	}
	return s.finish(ctx, &c.common, s.backup(ctx, &c))
}

func (s *session) backup(ctx context.Context, c *backupConfig) error {
	if err := s.openModule(c.Module); err != nil {
		return err
	}
	// One user PIN entry for the whole ceremony: the pre-check login, the
	// wrap session's login and the transcript signer's login.
	pin := &lazyPIN{read: func() ([]byte, error) {
		return readPIN(s.o, c.Token.UserPIN, fmt.Sprintf("User PIN of token %s (backup-source)", c.Token.Label), false)
	}}
	s.closers = append(s.closers, pin.wipe)
	p, err := s.login(ctx, c.Token.selector(), pin)
	if err != nil {
		return fmt.Errorf("open token %s: %w", c.Token.Label, err)
	}
	info := p.Info()
	sel := pkcs11shim.Selector{Label: info.Label, Serial: info.Serial}
	s.rec.token("backup-source", info)
	s.rec.step("open token", "backup-source: label %s, serial %s, %s %s; logged in as user", info.Label, info.Serial, info.Manufacturer, info.Model)
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	bf := backupFile{Format: backupFormat, BackupID: hex.EncodeToString(id), Created: time.Now().UTC(), SourceToken: identity("backup-source", info),
		Threshold: c.Threshold, Shares: len(c.Custodians), Mechanism: "CKM_AES_KEY_WRAP_PAD"}
	var refused []string
	for _, label := range c.Keys {
		k, err := p.FindKey(ctx, label)
		if err != nil {
			return fmt.Errorf("key %s: %w", label, err)
		}
		wp, err := p.KeyWrapPolicy(ctx, k)
		if err != nil {
			return fmt.Errorf("key %s: %w", label, err)
		}
		switch {
		case !wp.Extractable:
			refused = append(refused, fmt.Sprintf("key %s cannot be backed up: it was generated without backup: true (not extractable)", label))
			continue
		case !wp.WrapWithTrusted:
			refused = append(refused, fmt.Sprintf("key %s cannot be backed up: it is extractable without CKA_WRAP_WITH_TRUSTED (generated before this version), so anyone with the user PIN can export it in clear; generate a replacement with keygen (backup: true), rotate to it, and back up the replacement", label))
			continue
		}
		usage, err := p.KeyUsage(ctx, k)
		if err != nil {
			return err
		}
		bk := backupKey{Label: k.Label, ID: hex.EncodeToString(k.ID), Type: k.Type.String(), Usage: uint(usage), Destroyable: wp.Destroyable}
		if k.Type.IsPair() {
			pub, err := p.PublicKey(ctx, k)
			if err != nil {
				return err
			}
			fp, pemBytes, err := fingerprint(pub)
			if err != nil {
				return err
			}
			bk.PublicKeyPEM, bk.PublicSHA = string(pemBytes), fp
		}
		bf.Keys = append(bf.Keys, bk)
	}
	if len(refused) > 0 {
		return fmt.Errorf("%s; nothing was wrapped", strings.Join(refused, "; "))
	}
	s.rec.step("find keys", "%d keys found on token %s, each extractable only under a trusted key (CKA_WRAP_WITH_TRUSTED)", len(bf.Keys), info.Label)

	kek, err := p.GenerateRandom(ctx, 32)
	if err != nil {
		return err
	}
	defer token.Wipe(kek)
	bf.KEKCheck = kekCheck(kek, id)
	s.rec.step("backup KEK", "32 bytes from the token's RNG (C_GenerateRandom); backup id %s", bf.BackupID)
	// Login state belongs to the application: the SO cannot log in while
	// this ceremony's user pool is.
	if err := p.Close(); err != nil {
		return err
	}
	s.rec.step("log out", "the user pool on %s is closed before the SO logs in", info.Label)

	so, err := readParts(s.o, c.SOPIN, "SO PIN of token "+info.Label, false)
	if err != nil {
		return err
	}
	defer token.Wipe(so)
	user, err := pin.PIN()
	if err != nil {
		return err
	}
	defer token.Wipe(user)
	s.rec.step("dual control", "SO PIN parts entered by %s (two officers)", partOfficers(c.SOPIN))
	admin, err := s.admin(sel)
	if err != nil {
		return err
	}
	stop := progress(s.o, fmt.Sprintf("wrapping %d keys under the SO's trusted KEK", len(bf.Keys)))
	wrapped, werr := admin.WrapForBackup(so, user, kek, c.Keys)
	stop()
	// The transcript is signed by the token's ceremony-audit key: log in
	// again (as the user) whatever the outcome.
	if p2, err := s.login(ctx, sel, pin); err == nil {
		if err := s.signer(ctx, &c.common, p2); err != nil && werr == nil {
			return err
		}
	} else if werr == nil {
		return fmt.Errorf("log in again for the transcript: %w", err)
	}
	switch {
	case errors.Is(werr, pkcs11shim.ErrNotTrustedOnly), errors.Is(werr, pkcs11shim.ErrKeyUnextractable):
		return fmt.Errorf("a key cannot be backed up (generate a replacement with backup: true and rotate to it): %w", werr)
	case werr != nil:
		return werr
	}
	if len(wrapped) != len(bf.Keys) {
		return fmt.Errorf("%w: %d keys wrapped, %d asked", errVerify, len(wrapped), len(bf.Keys))
	}
	for i, w := range wrapped {
		if w.Label != bf.Keys[i].Label || hex.EncodeToString(w.ID) != bf.Keys[i].ID {
			return fmt.Errorf("%w: wrapped key %s (id %x) is not the key %s checked before", errVerify, w.Label, w.ID, bf.Keys[i].Label)
		}
		bf.Keys[i].Wrapped = base64.StdEncoding.EncodeToString(w.Blob)
	}
	s.rec.step("trusted wrap", "SO login (counted in the PIN guard), trusted wrap-only session KEK created, SO logged out; user login; %d keys wrapped; KEK destroyed", len(wrapped))
	for _, bk := range bf.Keys {
		s.rec.key(keyRecord{Label: bk.Label, ID: bk.ID, Type: bk.Type, Token: info.Label, PublicSHA: bk.PublicSHA, Note: "wrapped into the backup under the SO's trusted KEK; " + destroyText(bk.Destroyable)})
	}

	parts, err := shamir.Split(kek, len(c.Custodians), c.Threshold)
	if err != nil {
		return fmt.Errorf("shamir split: %w", err)
	}
	defer func() {
		for _, sh := range parts {
			token.Wipe(sh)
		}
	}()
	for i, cu := range c.Custodians {
		txt := encodeShare(share{backupID: id, threshold: c.Threshold, value: parts[i]}, cu.Name, i+1, len(parts), bf.Created)
		err := writeExcl(cu.ShareFile, txt, 0o600)
		token.Wipe(txt)
		if err != nil {
			return fmt.Errorf("share for %s: %w", cu.Name, err)
		}
		bf.Custodians = append(bf.Custodians, cu.Name)
		s.rec.step("share written", "share %d of %d for custodian %s: %s", i+1, len(parts), cu.Name, cu.ShareFile)
	}
	if err := sealBackupFile(&bf, kek, id, parts); err != nil {
		return err
	}
	js, err := json.MarshalIndent(bf, "", "  ")
	if err != nil {
		return err
	}
	js = append(js, '\n')
	if err := writeExcl(c.Output, js, 0o640); err != nil {
		return err
	}
	s.rec.output(c.Output, js)
	s.rec.step("backup file", "%s (%d wrapped keys, %d-of-%d)", c.Output, len(bf.Keys), c.Threshold, len(parts))

	// Check our own work: every share file reads back, and two different
	// sets of M shares rebuild the KEK.
	read := make([][]byte, len(c.Custodians))
	for i, cu := range c.Custodians {
		sh, err := readShare(cu.ShareFile)
		if err != nil {
			return fmt.Errorf("%w: %v", errVerify, err)
		}
		read[i] = sh.value
	}
	for _, set := range [][][]byte{read[:c.Threshold], read[len(read)-c.Threshold:]} {
		got, err := shamir.Combine(set)
		if err != nil || !bytes.Equal(got, kek) {
			return fmt.Errorf("%w: the shares written do not rebuild the backup KEK", errVerify)
		}
		token.Wipe(got)
	}
	if err := checkWrittenBackup(c.Output, kek, id); err != nil {
		return err
	}
	s.rec.step("verify", "all %d share files read back with good checksums; the first and last %d shares rebuild the KEK; the backup file's MAC verifies", len(read), c.Threshold)
	fmt.Fprintf(s.o.stdout, "\nHand each custodian their share file now; they print it or copy it to their own medium and seal it.\n")
	return nil
}

// --- restore ----------------------------------------------------------------------

func runRestore(ctx context.Context, o *options) error {
	var c restoreConfig
	s, err := start(o, "restore", &c, &c.common, func() []string {
		return []string{
			"read the backup file " + c.BackupFile,
			fmt.Sprintf("read %d share files, check their checksums and backup id; rebuild the KEK and check it", len(c.Shares)),
			fmt.Sprintf("open the target token %s; import the KEK as an unwrap-only session key (not modifiable, not copyable)", c.Token.Label),
			"unwrap each key as a token key, not extractable, not copyable, destroyable with the user PIN only if the backup says the original was (keygen destroyable: true); create its public key object",
			"check each restored key against the backed-up public key; destroy the session KEK",
		}
	})
	if s == nil || err != nil {
		return err
	}
	return s.finish(ctx, &c.common, s.restore(ctx, &c))
}

func readBackup(path string) (*backupFile, []byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var bf backupFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&bf); err != nil || (bf.Format != backupFormat && bf.Format != backupFormatV1) {
		return nil, nil, fmt.Errorf("%s is not a %s file", path, backupFormat)
	}
	id, err := hex.DecodeString(bf.BackupID)
	if err != nil || len(id) != 16 {
		return nil, nil, fmt.Errorf("%s: bad backup_id", path)
	}
	return &bf, id, nil
}

func (s *session) restore(ctx context.Context, c *restoreConfig) error {
	s.signRef = &c.Token // a restore refused before the target opens is still signed (by it)
	bf, id, err := readBackup(c.BackupFile)
	if err != nil {
		return err
	}
	s.rec.step("backup file", "%s: backup id %s from token %s (serial %s), %d keys, %d-of-%d", c.BackupFile, bf.BackupID, bf.SourceToken.Label, bf.SourceToken.Serial, len(bf.Keys), bf.Threshold, bf.Shares)
	if bf.Format == backupFormatV1 && !c.AcceptV1 {
		return v1Refusal(c.BackupFile)
	}
	var parts [][]byte
	var shares []share
	seenX := map[byte]string{}
	for _, path := range c.Shares {
		sh, err := readShare(path)
		if err != nil {
			return err
		}
		shares = append(shares, sh)
		if !bytes.Equal(sh.backupID, id) {
			return fmt.Errorf("share file %s belongs to backup %x, not to %s", path, sh.backupID, bf.BackupID)
		}
		x := sh.value[len(sh.value)-1]
		if prev, dup := seenX[x]; dup {
			return fmt.Errorf("share files %s and %s hold the same share", prev, path)
		}
		seenX[x] = path
		parts = append(parts, sh.value)
	}
	if len(parts) < bf.Threshold {
		return fmt.Errorf("%d shares given; this backup needs %d", len(parts), bf.Threshold)
	}
	s.rec.step("shares", "%d share files with good checksums for backup %s", len(parts), bf.BackupID)
	kek, err := shamir.Combine(parts)
	if err != nil {
		return fmt.Errorf("shamir combine: %w", err)
	}
	defer token.Wipe(kek)
	if !hmac.Equal([]byte(kekCheck(kek, id)), []byte(bf.KEKCheck)) {
		return fmt.Errorf("%w: the shares do not rebuild this backup's KEK (check value differs)", errVerify)
	}
	s.rec.step("rebuild KEK", "the KEK's check value matches the backup file")
	used, err := checkBackupAuth(kek, id, bf, c.BackupFile, shares, c.Shares, c.AcceptV1)
	if err != nil {
		return err
	}
	s.authStep(bf, c.BackupFile, used)

	p, err := s.openToken(ctx, &c.common, &c.Token, "restore-target")
	if err != nil {
		return err
	}
	objs, err := p.ListTokenObjects(ctx)
	if err != nil {
		return err
	}
	for _, bk := range bf.Keys {
		for _, ob := range objs {
			if ob.Label == bk.Label {
				return fmt.Errorf("token %s already holds an object labelled %q; nothing was restored", p.Info().Label, bk.Label)
			}
		}
	}
	type restored struct {
		bk  backupKey
		pub any
	}
	var done []restored
	stop := progress(s.o, fmt.Sprintf("unwrapping %d keys", len(bf.Keys)))
	err = p.WithSession(ctx, func(ss *pkcs11shim.Session) error {
		w, err := ss.ImportUnwrapKEK(kek, backupKEK)
		if err != nil {
			return fmt.Errorf("import the backup KEK: %w", err)
		}
		defer ss.DestroyKey(w)
		for _, bk := range bf.Keys {
			kt, ok := keyTypes[bk.Type]
			if !ok {
				return fmt.Errorf("key %s: unknown type %q in the backup", bk.Label, bk.Type)
			}
			kid, err := hex.DecodeString(bk.ID)
			if err != nil {
				return fmt.Errorf("key %s: bad id", bk.Label)
			}
			blob, err := base64.StdEncoding.DecodeString(bk.Wrapped)
			if err != nil {
				return fmt.Errorf("key %s: bad wrapped value", bk.Label)
			}
			// Restored keys are never extractable again: the backup is the only copy that can leave.
			// Like keygen's keys they are removed only by zeroize, unless the original was made
			// destroyable (a KEK epoch, which keysvc destroys when its rotation retires it in
			// every token): the backup records CKA_DESTROYABLE and the copy keeps it.
			k, err := ss.UnwrapKey(w, blob, pkcs11shim.KeySpec{Type: kt, Label: bk.Label, ID: kid, Usage: pkcs11shim.Usage(bk.Usage), Undestroyable: !bk.Destroyable})
			if err != nil {
				return fmt.Errorf("unwrap %s: %w", bk.Label, err)
			}
			var pub any
			if kt.IsPair() {
				blk, _ := pem.Decode([]byte(bk.PublicKeyPEM))
				if blk == nil {
					return fmt.Errorf("key %s: no public key in the backup", bk.Label)
				}
				if pub, err = x509.ParsePKIXPublicKey(blk.Bytes); err != nil {
					return fmt.Errorf("key %s: %w", bk.Label, err)
				}
				if err := ss.ImportPublicKey(k, pub, pkcs11shim.Usage(bk.Usage), !bk.Destroyable); err != nil {
					return fmt.Errorf("public key of %s: %w", bk.Label, err)
				}
			}
			done = append(done, restored{bk, pub})
		}
		return nil
	})
	stop()
	if err != nil {
		return err
	}
	var destroyable []string
	for _, r := range done {
		if r.bk.Destroyable {
			destroyable = append(destroyable, r.bk.Label)
		}
	}
	s.rec.step("unwrap keys", "%d keys unwrapped into token %s as token objects, not extractable, not copyable; %s; the unwrap-only session KEK was destroyed", len(done), p.Info().Label, destroyableText(destroyable))
	for _, r := range done {
		k, err := p.FindKey(ctx, r.bk.Label)
		if err != nil {
			return err
		}
		checked, err := checkKeyWith(ctx, p, k, r.pub)
		if err != nil {
			return fmt.Errorf("%w: restored key %s: %v", errVerify, r.bk.Label, err)
		}
		s.rec.key(keyRecord{Label: r.bk.Label, ID: r.bk.ID, Type: r.bk.Type, Token: p.Info().Label, PublicSHA: r.bk.PublicSHA, Note: "restored; " + destroyText(r.bk.Destroyable) + "; " + checked})
		s.rec.step("check "+r.bk.Label, "%s%s", checked, fpText(r.bk.PublicSHA))
	}
	return nil
}

// destroyableText says which restored keys a user-PIN holder may destroy.
func destroyableText(labels []string) string {
	if len(labels) == 0 {
		return "none destroyable with the user PIN"
	}
	return "destroyable with the user PIN as their originals were: " + strings.Join(labels, ", ") + "; every other key not destroyable"
}
