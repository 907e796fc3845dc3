package main

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/shamir"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// The replication key (issue 15 items 4 and 5, R-AV-4): keysvc copies its
// hsm keys between the tokens of its set under an AES-256 key the security
// officers install in every token, as the SO (token.Admin.
// InstallReplicationKey: CKA_TRUSTED, wrap and unwrap only, a
// CKA_UNWRAP_TEMPLATE that keeps every copy sensitive and trusted-only; see
// docs/ARCHITECTURE.md, "Replicating hsm keys").
//
//	mode: generate  32 bytes from the token's RNG → installed in this token
//	                as the SO (both SO PIN parts) → split M-of-N (Shamir) into
//	                one share file per custodian → the check value printed
//	                and recorded.
//	mode: install   M share files → the value rebuilt and its check value
//	                compared with check_value (the one generate printed)
//	                BEFORE anything touches the token → installed in this
//	                token as the SO → the token's check value compared again.
//
// The value exists in this process's memory only while it is split or
// rebuilt, and is wiped after use. The shares use the backup share format
// (shares.go), with the replication key's id where a backup has its backup
// id, so a share of a backup or of another replication key is refused by
// id, and a mixed set cannot be combined.

const (
	replicationGenerate = "generate"
	replicationInstall  = "install"
)

type replicationKeyConfig struct {
	common `yaml:",inline"`
	// Mode is generate (a new replication key, this token first) or install
	// (the same key into another token, from the custodians' shares).
	Mode  string   `yaml:"mode"`
	Token tokenRef `yaml:"token"`
	// SOPIN: both parts, held by two officers; only the SO can make a
	// CKA_TRUSTED key.
	SOPIN []pinPart `yaml:"so_pin"`
	// generate: the threshold and the custodians, as in backup.
	Threshold  int         `yaml:"threshold"`
	Custodians []custodian `yaml:"custodians"`
	// install: the custodians' share files (at least the threshold), and
	// the check value generate printed (recommended: without it a share
	// set of another replication key would be installed, and only the
	// check values compared afterwards would show it).
	Shares     []string `yaml:"shares"`
	CheckValue string   `yaml:"check_value"`
}

func (c *replicationKeyConfig) validate() error {
	if err := c.common.validate(true); err != nil {
		return err
	}
	if len(c.Officers) < 2 {
		return cfgErr("officers", "the replication key is made under dual control: name at least two officers (R-AV-3)")
	}
	if err := c.Token.validate(&c.common, "token"); err != nil {
		return err
	}
	if err := validParts(&c.common, "so_pin", c.SOPIN, 2); err != nil {
		return err
	}
	switch c.Mode {
	case replicationGenerate:
		if len(c.Shares) > 0 || c.CheckValue != "" {
			return cfgErr("shares", "shares and check_value belong to mode: install")
		}
		return validCustodians(&c.common, c.Custodians, c.Threshold)
	case replicationInstall:
		if c.Threshold != 0 || len(c.Custodians) > 0 {
			return cfgErr("custodians", "threshold and custodians belong to mode: generate (install reads the threshold from the shares)")
		}
		if len(c.Shares) < 2 {
			return cfgErr("shares", "required: at least the threshold of the custodians' share files (2 or more)")
		}
		for i := range c.Shares {
			if err := c.input(fmt.Sprintf("shares[%d]", i), &c.Shares[i]); err != nil {
				return err
			}
		}
		if c.CheckValue != "" {
			if b, err := hex.DecodeString(c.CheckValue); err != nil || len(b) != 40 {
				return cfgErr("check_value", "must be the 80 hexadecimal digits generate printed (check value of the replication key)")
			}
		}
		return nil
	case "":
		return cfgErr("mode", "required: %s (a new replication key, into this token first) or %s (the same key into another token, from the shares)", replicationGenerate, replicationInstall)
	}
	return cfgErr("mode", "must be %s or %s", replicationGenerate, replicationInstall)
}

func (c *replicationKeyConfig) approvalTarget() approvalTarget {
	return approvalTarget{token: c.Token.Label, sel: c.Token.selector(), parts: c.SOPIN, quorum: c.quorum()}
}

func runReplicationKey(ctx context.Context, o *options) error {
	var c replicationKeyConfig
	s, err := start(o, "replication-key", &c, &c.common, func() []string {
		open := fmt.Sprintf("open token %s and log in as user; check it holds no %s key yet", c.Token.Label, token.ReplicationKeyLabel)
		so := fmt.Sprintf("close the user pool; read the two SO PIN parts (%s); as the SO (counted in the PIN guard) create %s: AES-256, CKA_TRUSTED, wrap and unwrap only, its unwrap template keeping every copy sensitive and trusted-only; not modifiable, copyable nor destroyable", partOfficers(c.SOPIN), token.ReplicationKeyLabel)
		check := "log in as user again; check the token's check value of the key is the value's"
		if c.Mode == replicationInstall {
			cv := "no check_value given: print the rebuilt key's check value for the officers to compare with generate's"
			if c.CheckValue != "" {
				cv = "compare the rebuilt key's check value with check_value " + c.CheckValue + " before any token is touched"
			}
			return []string{fmt.Sprintf("read %d share files; check their checksums, that they belong to one replication key, and their number against its threshold; rebuild the value (Shamir)", len(c.Shares)), cv, open, so, check, "wipe the value"}
		}
		plan := []string{open, "draw 32 bytes from the token's RNG", so, check,
			fmt.Sprintf("split the value %d-of-%d (Shamir); write one share file per custodian (0600)", c.Threshold, len(c.Custodians))}
		for _, cu := range c.Custodians {
			plan = append(plan, fmt.Sprintf("  share for %s -> %s", cu.Name, cu.ShareFile))
		}
		return append(plan, "check: re-read every share and rebuild the value from two different sets of shares; wipe the value", "print and record the check value (install compares with it)")
	})
	if s == nil || err != nil {
		return err
	}
	return s.finish(ctx, &c.common, s.replicationKey(ctx, &c))
}

func (s *session) replicationKey(ctx context.Context, c *replicationKeyConfig) error {
	var value, id []byte
	var threshold, total int
	if c.Mode == replicationInstall {
		var err error
		value, id, threshold, total, err = s.rebuildReplicationKey(c)
		if err != nil {
			return err
		}
		defer token.Wipe(value)
	}
	if err := s.openModule(c.Module); err != nil {
		return err
	}
	pin := &lazyPIN{read: func() ([]byte, error) {
		return readPIN(s.o, c.Token.UserPIN, fmt.Sprintf("User PIN of token %s (replication key)", c.Token.Label), false)
	}}
	s.closers = append(s.closers, pin.wipe)
	s.signRef = &c.Token
	p, err := s.login(ctx, c.Token.selector(), pin)
	if err != nil {
		return fmt.Errorf("open token %s: %w", c.Token.Label, err)
	}
	info := p.Info()
	sel := pkcs11shim.Selector{Label: info.Label, Serial: info.Serial}
	s.rec.token("replication-key", info)
	s.rec.step("open token", "label %s, serial %s, %s %s; logged in as user", info.Label, info.Serial, info.Manufacturer, info.Model)
	switch rk, err := p.ReplicationKey(ctx); {
	case err == nil:
		_, cv, _ := p.CheckValue(ctx, rk)
		return fmt.Errorf("token %s already holds a replication key (%s, check value %x); a token holds one, and only zeroize removes it", info.Label, token.ReplicationKeyLabel, cv)
	case errors.Is(err, pkcs11shim.ErrUntrustedReplicationKey), errors.Is(err, pkcs11shim.ErrDuplicateLabel):
		return fmt.Errorf("token %s holds an object labelled %s that is not the officers' replication key: remove it (it was not made by the SO) and run again: %w", info.Label, token.ReplicationKeyLabel, err)
	case !errors.Is(err, pkcs11shim.ErrKeyNotFound):
		return err
	}
	s.rec.step("check token", "no %s key on token %s yet", token.ReplicationKeyLabel, info.Label)
	if c.Mode == replicationGenerate {
		if value, err = p.GenerateRandom(ctx, 32); err != nil {
			return err
		}
		defer token.Wipe(value)
		id = make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return err
		}
		threshold, total = c.Threshold, len(c.Custodians)
		s.rec.step("replication key value", "32 bytes from the token's RNG (C_GenerateRandom); replication key id %x", id)
	}
	want, err := kwpCheckValue(value)
	if err != nil {
		return err
	}
	// Login state belongs to the application: the SO cannot log in while
	// this ceremony's user pool is.
	if err := p.Close(); err != nil {
		return err
	}
	so, err := readParts(s.o, c.SOPIN, "SO PIN of token "+info.Label, false)
	if err != nil {
		return err
	}
	defer token.Wipe(so)
	s.rec.step("dual control", "SO PIN parts entered by %s (two officers)", partOfficers(c.SOPIN))
	admin, err := s.admin(sel)
	if err != nil {
		return err
	}
	got, ierr := admin.InstallReplicationKey(so, value)
	// The transcript is signed by the token's ceremony-audit key: log in
	// again (as the user) whatever the outcome.
	p2, lerr := s.login(ctx, sel, pin)
	if lerr == nil {
		if err := s.signer(ctx, &c.common, p2); err != nil && ierr == nil {
			return err
		}
	}
	if ierr != nil {
		return fmt.Errorf("install the replication key: %w", ierr)
	}
	if lerr != nil {
		return fmt.Errorf("log in again to check the key: %w", lerr)
	}
	if !hmac.Equal(got, want) {
		return fmt.Errorf("%w: the token's check value of the new replication key %x is not the value's %x", errVerify, got, want)
	}
	rk, err := p2.ReplicationKey(ctx)
	if err != nil {
		return fmt.Errorf("%w: the user does not find the new replication key as the officers' one: %v", errVerify, err)
	}
	method, cv, err := p2.CheckValue(ctx, rk)
	if err != nil || method != pkcs11shim.CheckAESKWPFixed || !hmac.Equal(cv, want) {
		return fmt.Errorf("%w: the user's check value of the replication key (%s %x, %v) is not the value's %x", errVerify, method, cv, err, want)
	}
	s.rec.step("install", "SO login (counted in the PIN guard); %s created on %s: AES-256, CKA_TRUSTED, wrap and unwrap (KWP) only, unwrap template pinned, not modifiable, copyable nor destroyable; the user finds it trusted and computes the same check value",
		token.ReplicationKeyLabel, info.Label)
	s.rec.key(keyRecord{Label: rk.Label, ID: hex.EncodeToString(rk.ID), Type: rk.Type.String(), Token: info.Label,
		Note: fmt.Sprintf("replication key %x (%d-of-%d shares); check value (%s) %x", id, threshold, total, pkcs11shim.CheckAESKWPFixed, want)})
	if c.Mode == replicationGenerate {
		if err := s.splitReplicationKey(c, value, id); err != nil {
			return err
		}
	}
	s.rec.step("check value", "%s %x", pkcs11shim.CheckAESKWPFixed, want)
	fmt.Fprintf(s.o.stdout, "\nReplication key %x installed on token %s.\ncheck value: %x\n", id, info.Label, want)
	if c.Mode == replicationGenerate {
		fmt.Fprintf(s.o.stdout, "Put this check value in every install file (check_value:), and hand each custodian their share file now.\n")
	}
	return nil
}

// rebuildReplicationKey reads install's share files, checks they make one
// replication key's threshold, rebuilds the value and checks it against
// check_value, all before a token is opened.
func (s *session) rebuildReplicationKey(c *replicationKeyConfig) (value, id []byte, threshold, total int, err error) {
	var parts [][]byte
	defer func() {
		for _, p := range parts {
			token.Wipe(p)
		}
	}()
	seenX := map[byte]string{}
	var custodians []string
	for i, path := range c.Shares {
		sh, err := readShare(path)
		if err != nil {
			return nil, nil, 0, 0, err
		}
		if sh.version != 2 {
			return nil, nil, 0, 0, fmt.Errorf("share file %s is a v1 backup share, not a replication key's", path)
		}
		if i == 0 {
			id, threshold, total = sh.backupID, sh.threshold, sh.total
		} else if !bytes.Equal(sh.backupID, id) {
			return nil, nil, 0, 0, fmt.Errorf("share file %s belongs to replication key (or backup) %x, but %s to %x: the shares are of different keys", path, sh.backupID, c.Shares[0], id)
		}
		if sh.threshold != threshold {
			return nil, nil, 0, 0, fmt.Errorf("share file %s says %d shares rebuild its key, %s says %d", path, sh.threshold, c.Shares[0], threshold)
		}
		if prev, dup := seenX[sh.x()]; dup {
			return nil, nil, 0, 0, fmt.Errorf("share files %s and %s hold the same share", prev, path)
		}
		seenX[sh.x()] = path
		parts = append(parts, append([]byte(nil), sh.value...))
		custodians = append(custodians, fmt.Sprintf("%s (share %d of %d)", sh.custodian, sh.index, sh.total))
	}
	if len(parts) < threshold {
		return nil, nil, 0, 0, fmt.Errorf("%d shares given; replication key %x needs %d", len(parts), id, threshold)
	}
	s.rec.step("shares", "%d share files with good checksums for replication key %x (threshold %d): %s", len(parts), id, threshold, strings.Join(custodians, ", "))
	value, err = shamir.Combine(parts)
	if err != nil {
		return nil, nil, 0, 0, fmt.Errorf("shamir combine: %w", err)
	}
	if len(value) != 32 {
		token.Wipe(value)
		return nil, nil, 0, 0, fmt.Errorf("the shares rebuild %d bytes, not a 32-byte replication key", len(value))
	}
	cv, err := kwpCheckValue(value)
	if err != nil {
		token.Wipe(value)
		return nil, nil, 0, 0, err
	}
	if c.CheckValue != "" {
		if want, _ := hex.DecodeString(c.CheckValue); !hmac.Equal(cv, want) {
			token.Wipe(value)
			return nil, nil, 0, 0, fmt.Errorf("%w: the shares rebuild a key whose check value is %x, not check_value %s: a share is of another replication key or was changed; nothing was installed", errVerify, cv, c.CheckValue)
		}
		s.rec.step("rebuild", "the rebuilt key's check value matches check_value %s", c.CheckValue)
	} else {
		s.rec.step("rebuild", "the rebuilt key's check value is %x (no check_value in the file to compare with)", cv)
	}
	return value, id, threshold, total, nil
}

// splitReplicationKey writes the custodians' share files of value and
// checks them.
func (s *session) splitReplicationKey(c *replicationKeyConfig, value, id []byte) error {
	parts, err := shamir.Split(value, len(c.Custodians), c.Threshold)
	if err != nil {
		return fmt.Errorf("shamir split: %w", err)
	}
	defer func() {
		for _, sh := range parts {
			token.Wipe(sh)
		}
	}()
	created := time.Now().UTC()
	for i, cu := range c.Custodians {
		txt := encodeShare(share{backupID: id, threshold: c.Threshold, value: parts[i]}, cu.Name, i+1, len(parts), created)
		err := writeExcl(cu.ShareFile, txt, 0o600)
		token.Wipe(txt)
		if err != nil {
			return fmt.Errorf("share for %s: %w", cu.Name, err)
		}
		s.rec.step("share written", "share %d of %d for custodian %s: %s", i+1, len(parts), cu.Name, cu.ShareFile)
	}
	read := make([][]byte, len(c.Custodians))
	for i, cu := range c.Custodians {
		sh, err := readShare(cu.ShareFile)
		if err != nil {
			return fmt.Errorf("%w: %v", errVerify, err)
		}
		if !bytes.Equal(sh.backupID, id) {
			return fmt.Errorf("%w: share file %s reads back with another id", errVerify, cu.ShareFile)
		}
		read[i] = sh.value
	}
	for _, set := range [][][]byte{read[:c.Threshold], read[len(read)-c.Threshold:]} {
		got, err := shamir.Combine(set)
		if err != nil || !bytes.Equal(got, value) {
			return fmt.Errorf("%w: the shares written do not rebuild the replication key", errVerify)
		}
		token.Wipe(got)
	}
	s.rec.step("verify shares", "all %d share files read back with good checksums; the first and last %d shares rebuild the value", len(read), c.Threshold)
	return nil
}

// checkWrapValue is pkcs11shim's published constant for aes-kwp-fixed check
// values (checkvalue.go): the AES key a wrap-only key wraps.
var checkWrapValue = sha256.Sum256([]byte("keyward key check value v1 (aes-kwp)"))

// kwpCheckValue computes, in software, the check value the token gives a
// wrap-only AES key made from kek (pkcs11shim.CheckAESKWPFixed): RFC 5649
// key wrap with padding of checkWrapValue under kek. The ceremony compares
// it with check_value before the key reaches any token, and with the
// token's own afterwards.
func kwpCheckValue(kek []byte) ([]byte, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	p := checkWrapValue[:] // 32 bytes: a multiple of 8, no padding; n = 4 > 1, so RFC 3394's wrap with RFC 5649's AIV
	n := len(p) / 8
	var a [8]byte
	binary.BigEndian.PutUint32(a[:4], 0xA65959A6)
	binary.BigEndian.PutUint32(a[4:], uint32(len(p)))
	r := make([]byte, len(p))
	copy(r, p)
	var buf [16]byte
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			copy(buf[:8], a[:])
			copy(buf[8:], r[i*8:(i+1)*8])
			b.Encrypt(buf[:], buf[:])
			t := uint64(n*j + i + 1)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(buf[:8])^t)
			copy(r[i*8:], buf[8:])
		}
	}
	return append(a[:], r...), nil
}
