package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// Emergency zeroize (R-TOK-8, issue 13 defect 6) is C_InitToken of the
// token with the SO PIN, the canonical PKCS#11 zeroize: the token erases
// every object itself, keeps its label, and is left with no user PIN. It
// does not destroy objects one by one (keys may be CKA_DESTROYABLE=false),
// and the SO PIN comes in two parts from two officers, so one holder of the
// user PIN cannot wipe the token.
//
// Before anything is erased, zeroize lists every object as the user and
// works out which keys have no backup: a key counts as backed up when a
// file in backups, made by `ceremony backup` from this token's serial,
// holds its label and CKA_ID. acknowledge_unbacked must list exactly the
// keys with no backup, or nothing happens; the transcript records them.

// validBackups checks backups and acknowledge_unbacked and reads the
// backup files (before any token is opened).
func (c *zeroizeConfig) validBackups() error {
	for i := range c.Backups {
		path := fmt.Sprintf("backups[%d]", i)
		if err := c.input(path, &c.Backups[i]); err != nil {
			return err
		}
		bf, _, err := readBackup(c.Backups[i])
		if err != nil {
			return cfgErr(path, "%v", err)
		}
		c.backups = append(c.backups, bf)
	}
	seen := map[string]bool{}
	for i, l := range c.AcknowledgeUnbacked {
		path := fmt.Sprintf("acknowledge_unbacked[%d]", i)
		if strings.TrimSpace(l) == "" {
			return cfgErr(path, "empty label")
		}
		if seen[l] {
			return cfgErr(path, "%q listed twice", l)
		}
		seen[l] = true
	}
	return nil
}

func runZeroize(ctx context.Context, o *options) error {
	var c zeroizeConfig
	s, err := start(o, "zeroize", &c, &c.common, func() []string {
		return []string{
			fmt.Sprintf("open the signing token %s, then token %s as user", c.Transcript.Signer.Label, c.Token.Label),
			fmt.Sprintf("list every object on the token; a key is backed up when one of the %d backup file(s) of this token's serial holds its label and CKA_ID", len(c.Backups)),
			fmt.Sprintf("refuse unless acknowledge_unbacked (%d label(s)) lists exactly the keys with no backup", len(c.AcknowledgeUnbacked)),
			fmt.Sprintf("read the two SO PIN parts (%s)", partOfficers(c.SOPIN)),
			fmt.Sprintf("the officer types %q (or --yes with confirmation in the file)", zeroizePhrase(c.Token.Label)),
			fmt.Sprintf("C_InitToken on token %s with the SO PIN (counted in the PIN guard): every object erased, label kept, no user PIN", c.Token.Label),
			"check: the token is initialised under its label and has no user PIN",
		}
	})
	if s == nil || err != nil {
		return err
	}
	return s.finish(ctx, &c.common, s.zeroize(ctx, &c))
}

// zeroizeKey is one key on the token to be zeroized.
type zeroizeKey struct {
	label, typ, id string
	backup         string // "backup <id> (<file>)" holding it; "" if none
}

func (s *session) zeroize(ctx context.Context, c *zeroizeConfig) error {
	if err := s.openSigner(ctx, &c.common); err != nil {
		return err
	}
	keys, ti, err := s.zeroizeInventory(ctx, c)
	if err != nil {
		return err
	}
	var unbacked []string
	for _, k := range keys {
		if k.backup == "" {
			unbacked = append(unbacked, k.label)
		}
	}
	ackErr := checkAcknowledged(ti.Label, unbacked, c.AcknowledgeUnbacked)
	for _, k := range keys {
		note := "backed up in " + k.backup
		if k.backup == "" {
			note = "NO BACKUP, acknowledged in acknowledge_unbacked"
			if ackErr != nil {
				note = "NO BACKUP, not acknowledged"
			}
			if n := unbackedNote(k.label); n != "" {
				note += "; " + n
			}
		}
		s.rec.key(keyRecord{Label: k.label, ID: k.id, Type: k.typ, Token: ti.Label, Note: note})
	}
	if ackErr != nil {
		return ackErr
	}
	s.rec.step("unbacked keys acknowledged", "%d key(s) without a backup, each listed in acknowledge_unbacked: %s", len(unbacked), strings.Join(unbacked, ", "))

	so, err := readParts(s.o, c.SOPIN, "SO PIN of token "+ti.Label, false)
	if err != nil {
		return err
	}
	defer token.Wipe(so)
	s.rec.step("dual control", "SO PIN parts entered by %s (two officers)", partOfficers(c.SOPIN))
	phrase := zeroizePhrase(c.Token.Label)
	if s.o.yes {
		if c.Confirmation != phrase {
			return fmt.Errorf("%w: --yes needs confirmation: %q in the ceremony file", errDeclined, phrase)
		}
	} else {
		lost := "every key on it has a backup listed in backups."
		if len(unbacked) > 0 {
			lost = fmt.Sprintf("%d key(s) have NO backup and are lost for good: %s.", len(unbacked), strings.Join(unbacked, ", "))
		}
		if err := confirm(s.o, fmt.Sprintf("EMERGENCY ZEROIZE: token %s (serial %s) will be re-initialised and every object on it erased; %s This cannot be undone.", ti.Label, ti.Serial, lost), phrase); err != nil {
			return err
		}
	}
	s.rec.step("confirmed", "the phrase %q was given", phrase)

	// A refusal that never reaches the token must not count as a guess
	// (as initTokenGuarded): C_InitToken must name exactly this token.
	if dup, err := s.mod.LookupToken(pkcs11shim.Selector{Label: ti.Label}); errors.Is(err, pkcs11shim.ErrTokenAmbiguous) || (err == nil && dup.Serial != ti.Serial) {
		return fmt.Errorf("%w: another token is labelled %q too; nothing was erased", pkcs11shim.ErrDuplicateLabel, ti.Label)
	}
	var after pkcs11shim.TokenInfo
	err = s.guard.Attempt(token.PINID(ti, pkcs11shim.UserSO), func() (err error) {
		after, err = s.mod.InitToken(ti.Serial, so, ti.Label)
		return err
	})
	if err != nil {
		return fmt.Errorf("C_InitToken: %w", err)
	}
	s.rec.token("zeroized-after", after)
	s.rec.step("C_InitToken", "token %s (serial %s) re-initialised with the SO PIN: every object erased", after.Label, after.Serial)
	now, err := s.mod.LookupToken(pkcs11shim.Selector{Label: ti.Label, Serial: after.Serial})
	if err != nil {
		return fmt.Errorf("%w: find the token after C_InitToken: %v", errVerify, err)
	}
	if !now.Flags.Initialized || now.Flags.UserPINInitialized {
		return fmt.Errorf("%w: after C_InitToken token %s is initialised=%v, user PIN initialised=%v", errVerify, now.Label, now.Flags.Initialized, now.Flags.UserPINInitialized)
	}
	s.rec.step("verify", "token %s is initialised and has no user PIN: nothing on it can be used until token init or unlock sets one", now.Label)
	return nil
}

// zeroizeInventory opens c.Token as the user, lists its objects and which
// keys a backup holds, and closes the token again (C_InitToken needs it
// without sessions).
func (s *session) zeroizeInventory(ctx context.Context, c *zeroizeConfig) ([]zeroizeKey, pkcs11shim.TokenInfo, error) {
	pin := &lazyPIN{read: func() ([]byte, error) {
		return readPIN(s.o, c.Token.UserPIN, fmt.Sprintf("User PIN of token %s (zeroized)", c.Token.Label), false)
	}}
	defer pin.wipe()
	t, err := token.Open(ctx, token.Config{Kind: token.KindHSM, Module: s.modPath, Label: c.Token.Label, Serial: c.Token.Serial,
		PIN: pin, PINGuard: s.pinGuard(), MaxSessions: 2, Logger: quietLog})
	if err != nil {
		return nil, pkcs11shim.TokenInfo{}, fmt.Errorf("open token %s: %w", c.Token.Label, err)
	}
	var once sync.Once
	closeTok := func() { once.Do(func() { t.Close() }) }
	defer closeTok()
	p := t.Pool()
	ti := p.Info()
	s.rec.token("zeroized", ti)
	s.rec.step("open token", "zeroized: label %s, serial %s, %s %s; logged in as user", ti.Label, ti.Serial, ti.Manufacturer, ti.Model)

	held := map[string]string{} // label + "/" + CKA_ID hex -> which backup holds it
	for i, bf := range c.backups {
		if bf.SourceToken.Serial != ti.Serial {
			s.rec.step("backup ignored", "%s: backup %s is of token %s serial %s, not of this token (serial %s)", c.Backups[i], bf.BackupID, bf.SourceToken.Label, bf.SourceToken.Serial, ti.Serial)
			continue
		}
		for _, bk := range bf.Keys {
			held[bk.Label+"/"+bk.ID] = fmt.Sprintf("backup %s (%s)", bf.BackupID, c.Backups[i])
		}
		// Its MAC needs the KEK, which only the custodians' shares rebuild:
		// record the file's SHA-256, which the backup's own transcript lists
		// among its outputs, so an auditor can match the two.
		s.rec.step("backup file", "%s (SHA-256 %s): backup %s of this token, %d key(s); not MAC-checked here (that needs the shares): compare the SHA-256 with the backup ceremony's transcript", c.Backups[i], fileSHA256(c.Backups[i]), bf.BackupID, len(bf.Keys))
	}

	objs, err := p.ListTokenObjects(ctx)
	if err != nil {
		return nil, ti, err
	}
	fmt.Fprintf(s.o.stdout, "\nToken %s (serial %s) holds %d objects:\n", ti.Label, ti.Serial, len(objs))
	var keys []zeroizeKey
	for _, ob := range objs {
		id := hex.EncodeToString(ob.ID)
		line := fmt.Sprintf("   %-12s %-32s id %s", ob.ClassName(), ob.Label, id)
		if ob.ClassName() == "private-key" || ob.ClassName() == "secret-key" {
			k := zeroizeKey{label: ob.Label, typ: ob.ClassName(), id: id, backup: held[ob.Label+"/"+id]}
			if fk, err := p.FindKey(ctx, ob.Label); err == nil && hex.EncodeToString(fk.ID) == id {
				k.typ = fk.Type.String()
			}
			line = fmt.Sprintf("   %-12s %-32s id %s %s", ob.ClassName(), ob.Label, id, k.typ)
			if k.backup != "" {
				line += "   backed up: " + k.backup
			} else {
				line += "   NO BACKUP"
				if n := unbackedNote(k.label); n != "" {
					line += " (" + n + ")"
				}
			}
			keys = append(keys, k)
		}
		fmt.Fprintln(s.o.stdout, line)
	}
	s.rec.step("inventory", "%d objects on the token, %d of them private or secret keys", len(objs), len(keys))
	closeTok()
	return keys, ti, nil
}

// unbackedNote says what losing a key with this label means.
func unbackedNote(label string) string {
	switch {
	case keysvc.IsServiceKeyLabel(label):
		return "keysvc service key: keysvc will refuse to start on this token with its existing data directory"
	case strings.HasPrefix(label, "kw/"):
		return "a key version keysvc keeps in the token (protection hsm)"
	case label == auditKeyLabel:
		return "the ceremony transcript signing key: keep its public key to verify earlier transcripts"
	}
	return ""
}

// checkAcknowledged refuses unless ack lists exactly the unbacked labels.
func checkAcknowledged(tokenLabel string, unbacked, ack []string) error {
	var missing, extra []string
	for _, l := range unbacked {
		if !slices.Contains(ack, l) && !slices.Contains(missing, l) {
			missing = append(missing, l)
		}
	}
	for _, l := range ack {
		if !slices.Contains(unbacked, l) {
			extra = append(extra, l)
		}
	}
	var why []string
	if len(missing) > 0 {
		why = append(why, fmt.Sprintf("these keys on token %s have no backup among backups and are not listed: %s (back them up first, or list them to accept that they are lost)", tokenLabel, strings.Join(missing, ", ")))
	}
	if len(extra) > 0 {
		why = append(why, fmt.Sprintf("it lists %s, which is not a key without a backup on token %s (backed up, or not on the token): remove it", strings.Join(extra, ", "), tokenLabel))
	}
	if len(why) == 0 {
		return nil
	}
	return cfgErr("acknowledge_unbacked", "must list exactly the keys with no backup; %s. Nothing was erased", strings.Join(why, "; "))
}

// fileSHA256 is the hex SHA-256 of the file at path ("unreadable" if it
// cannot be read).
func fileSHA256(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unreadable"
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
