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
	"time"

	"github.com/hashicorp/vault/shamir"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// M-of-N backup (R-AV-3, R-TOK-8). A fresh 32-byte backup KEK comes from the
// token's RNG, is imported as a session AES key (it dies with the session
// and is destroyed at once), wraps each key with CKM_AES_KEY_WRAP_PAD, and is
// split with Shamir's secret sharing (hashicorp/vault/shamir v1.14.1, the
// last MPL-2.0 release) into one share per custodian. The backup file holds
// only wrapped keys, public keys and a check value of the KEK.

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
			fmt.Sprintf("open token %s and log in as user", c.Token.Label),
			"draw a fresh 32-byte backup KEK from the token's RNG; import it as a session AES key",
			fmt.Sprintf("wrap %v with CKM_AES_KEY_WRAP_PAD; destroy the session KEK", c.Keys),
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
	p, err := s.openToken(ctx, &c.common, &c.Token, "backup-source")
	if err != nil {
		return err
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	bf := backupFile{Format: backupFormat, BackupID: hex.EncodeToString(id), Created: time.Now().UTC(), SourceToken: identity("backup-source", p.Info()),
		Threshold: c.Threshold, Shares: len(c.Custodians), Mechanism: "CKM_AES_KEY_WRAP_PAD"}
	var keys []*pkcs11shim.Key
	for _, label := range c.Keys {
		k, err := p.FindKey(ctx, label)
		if err != nil {
			return fmt.Errorf("key %s: %w", label, err)
		}
		usage, err := p.KeyUsage(ctx, k)
		if err != nil {
			return err
		}
		bk := backupKey{Label: k.Label, ID: hex.EncodeToString(k.ID), Type: k.Type.String(), Usage: uint(usage)}
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
		keys = append(keys, k)
		bf.Keys = append(bf.Keys, bk)
	}
	s.rec.step("find keys", "%d keys found on token %s", len(keys), p.Info().Label)

	kek, err := p.GenerateRandom(ctx, 32)
	if err != nil {
		return err
	}
	defer token.Wipe(kek)
	bf.KEKCheck = kekCheck(kek, id)
	s.rec.step("backup KEK", "32 bytes from the token's RNG (C_GenerateRandom); backup id %s", bf.BackupID)
	stop := progress(s.o, fmt.Sprintf("wrapping %d keys", len(keys)))
	err = p.WithSession(ctx, func(ss *pkcs11shim.Session) error {
		w, err := ss.ImportAES(kek, backupKEK, true)
		if err != nil {
			return fmt.Errorf("import the backup KEK: %w", err)
		}
		defer ss.DestroyKey(w)
		for i, k := range keys {
			blob, err := ss.WrapKey(w, k)
			if errors.Is(err, pkcs11shim.ErrKeyUnextractable) {
				return fmt.Errorf("key %s cannot be backed up: it was generated without backup: true (%w)", k.Label, err)
			}
			if err != nil {
				return fmt.Errorf("wrap %s: %w", k.Label, err)
			}
			bf.Keys[i].Wrapped = base64.StdEncoding.EncodeToString(blob)
		}
		return nil
	})
	stop()
	if err != nil {
		return err
	}
	for _, bk := range bf.Keys {
		s.rec.key(keyRecord{Label: bk.Label, ID: bk.ID, Type: bk.Type, Token: p.Info().Label, PublicSHA: bk.PublicSHA, Note: "wrapped into the backup"})
	}
	s.rec.step("wrap keys", "%d keys wrapped with CKM_AES_KEY_WRAP_PAD; the session KEK was destroyed", len(keys))

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
	s.rec.step("backup file", "%s (%d wrapped keys, %d-of-%d)", c.Output, len(keys), c.Threshold, len(parts))

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
			fmt.Sprintf("open the target token %s; import the KEK as a session key", c.Token.Label),
			"unwrap each key as a token key, not extractable; create its public key object",
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
		w, err := ss.ImportAES(kek, backupKEK, true)
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
			k, err := ss.UnwrapKey(w, blob, pkcs11shim.KeySpec{Type: kt, Label: bk.Label, ID: kid, Usage: pkcs11shim.Usage(bk.Usage)})
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
				if err := ss.ImportPublicKey(k, pub); err != nil {
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
	s.rec.step("unwrap keys", "%d keys unwrapped into token %s as token objects, not extractable; the session KEK was destroyed", len(done), p.Info().Label)
	for _, r := range done {
		k, err := p.FindKey(ctx, r.bk.Label)
		if err != nil {
			return err
		}
		checked, err := checkKeyWith(ctx, p, k, r.pub)
		if err != nil {
			return fmt.Errorf("%w: restored key %s: %v", errVerify, r.bk.Label, err)
		}
		s.rec.key(keyRecord{Label: r.bk.Label, ID: r.bk.ID, Type: r.bk.Type, Token: p.Info().Label, PublicSHA: r.bk.PublicSHA, Note: "restored; " + checked})
		s.rec.step("check "+r.bk.Label, "%s%s", checked, fpText(r.bk.PublicSHA))
	}
	return nil
}
