package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// A custodian's share of a backup KEK, printable so it can be kept on paper
// and typed back in. Format v2 (issue 13 defect 5) carries the header —
// custodian, share number, total, threshold — inside the checksummed
// payload:
//
//	payload  = backup id (16) ‖ threshold (1) ‖ share number (1) ‖ total (1) ‖
//	           custodian length (1) ‖ custodian (UTF-8, 1..64) ‖ Shamir share (33: 32 + x coordinate)
//	checksum = first 4 bytes of SHA-256("keyward-share-v2" ‖ payload)
//	text     = hex(payload ‖ checksum) in upper-case groups of 4, 6 groups a line,
//	           between BEGIN/END KEYWARD BACKUP SHARE V2 lines
//
// The checksum only catches typing mistakes: anyone can recompute it. The
// header is authenticated at restore, where it must match the backup
// file's custodian list and each custodian's share x coordinate, both
// under the backup file's MAC (backupfile.go). The readable lines above
// the block must say the same as the payload.
//
// Format v1 (payload = backup id ‖ threshold ‖ Shamir share; domain
// "keyward-share-v1"; BEGIN/END KEYWARD BACKUP SHARE) had its header only
// in the readable lines; it is still read, for restoring a v1 backup the
// restore file explicitly accepts.

const (
	shareBegin    = "-----BEGIN KEYWARD BACKUP SHARE V2-----"
	shareEnd      = "-----END KEYWARD BACKUP SHARE V2-----"
	shareDomain   = "keyward-share-v2"
	shareBeginV1  = "-----BEGIN KEYWARD BACKUP SHARE-----"
	shareEndV1    = "-----END KEYWARD BACKUP SHARE-----"
	shareDomainV1 = "keyward-share-v1"
	shareLenV1    = 16 + 1 + 33
	maxCustodian  = 64 // bytes of a custodian's name in a v2 share
)

var errShareChecksum = errors.New("share checksum mismatch: the share was mistyped or damaged")

type share struct {
	backupID  []byte
	threshold int
	value     []byte // 33 bytes: hashicorp/vault/shamir format

	version   int    // 1 or 2
	custodian string // v2: from the payload; v1: from the readable header (unauthenticated)
	index     int    // share number, 1-based (v1: from the readable header, 0 if absent)
	total     int
}

// x is the share's Shamir x coordinate.
func (sh share) x() byte { return sh.value[len(sh.value)-1] }

func checksum(domain string, payload []byte) []byte {
	h := sha256.Sum256(append([]byte(domain), payload...))
	return h[:4]
}

// encodeShare renders a v2 share file for one custodian (share index of n).
func encodeShare(sh share, custodian string, index, n int, created time.Time) []byte {
	payload := append([]byte{}, sh.backupID...)
	payload = append(payload, byte(sh.threshold), byte(index), byte(n), byte(len(custodian)))
	payload = append(append(payload, custodian...), sh.value...)
	return renderShare(payload, checksum(shareDomain, payload), shareBegin, shareEnd, sh, custodian, index, n, created)
}

func renderShare(payload, sum []byte, begin, end string, sh share, custodian string, index, n int, created time.Time) []byte {
	full := strings.ToUpper(hex.EncodeToString(append(append([]byte{}, payload...), sum...)))
	var b bytes.Buffer
	fmt.Fprintf(&b, "Keyward key-ceremony backup share. SECRET: keep it sealed; never copy it to a computer except for a restore.\n")
	fmt.Fprintf(&b, "backup-id: %x\ncustodian: %s\nshare: %d of %d (any %d restore)\ncreated: %s\n\n%s\n",
		sh.backupID, custodian, index, n, sh.threshold, created.UTC().Format(time.RFC3339), begin)
	for i := 0; i < len(full); i += 4 {
		b.WriteString(full[i:min(i+4, len(full))])
		switch {
		case i+4 >= len(full):
			b.WriteByte('\n')
		case (i/4)%6 == 5:
			b.WriteByte('\n')
		default:
			b.WriteByte(' ')
		}
	}
	fmt.Fprintf(&b, "%s\n", end)
	return b.Bytes()
}

// block returns the hex text between begin and end, with spaces, dashes
// and line breaks dropped, and the text before begin.
func block(data, begin, end string) (head, body string, ok bool) {
	// END is looked for after BEGIN: the two markers may share dashes
	// ("-----BEGIN …-----END …-----"), which once sliced backwards (found
	// by FuzzParseShare).
	head, rest, ok := strings.Cut(data, begin)
	inner, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		return "", "", false
	}
	return head, strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '\n', '\r', '\t':
			return -1
		}
		return r
	}, inner), true
}

// parseShare reads a share file, v2 or v1.
func parseShare(data []byte) (share, error) {
	if head, body, ok := block(string(data), shareBegin, shareEnd); ok {
		return parseShareV2(head, body)
	}
	if head, body, ok := block(string(data), shareBeginV1, shareEndV1); ok {
		return parseShareV1(head, body)
	}
	return share{}, errors.New("no share between BEGIN/END KEYWARD BACKUP SHARE lines")
}

func parseShareV2(head, body string) (share, error) {
	raw, err := hex.DecodeString(body)
	if err != nil {
		return share{}, fmt.Errorf("%w (not hexadecimal)", errShareChecksum)
	}
	if len(raw) < 16+4+1+33+4 {
		return share{}, fmt.Errorf("%w (%d bytes: too short)", errShareChecksum, len(raw))
	}
	payload, sum := raw[:len(raw)-4], raw[len(raw)-4:]
	if !bytes.Equal(checksum(shareDomain, payload), sum) {
		return share{}, errShareChecksum
	}
	nameLen := int(payload[19])
	if len(payload) != 20+nameLen+33 {
		return share{}, fmt.Errorf("%w (%d bytes, want %d)", errShareChecksum, len(payload)+4, 20+nameLen+33+4)
	}
	sh := share{version: 2, backupID: payload[:16], threshold: int(payload[16]), index: int(payload[17]), total: int(payload[18]),
		custodian: string(payload[20 : 20+nameLen]), value: payload[20+nameLen:]}
	if nameLen == 0 || nameLen > maxCustodian || !utf8.ValidString(sh.custodian) || sh.index < 1 || sh.index > sh.total || sh.threshold < 1 || sh.threshold > sh.total {
		return share{}, errors.New("the share's header (custodian, share number, total, threshold) is malformed")
	}
	// The readable lines are what the custodian reads: they must say what
	// the share holds.
	name, index, total, found := readableHeader(head)
	if found && (name != sh.custodian || index != sh.index || total != sh.total) {
		return share{}, fmt.Errorf("the readable header (custodian %q, share %d of %d) differs from the share itself (custodian %q, share %d of %d): the share file was edited",
			name, index, total, sh.custodian, sh.index, sh.total)
	}
	return sh, nil
}

func parseShareV1(head, body string) (share, error) {
	raw, err := hex.DecodeString(body)
	if err != nil {
		return share{}, fmt.Errorf("%w (not hexadecimal)", errShareChecksum)
	}
	if len(raw) != shareLenV1+4 {
		return share{}, fmt.Errorf("%w (%d bytes, want %d)", errShareChecksum, len(raw), shareLenV1+4)
	}
	payload := raw[:shareLenV1]
	if !bytes.Equal(checksum(shareDomainV1, payload), raw[shareLenV1:]) {
		return share{}, errShareChecksum
	}
	sh := share{version: 1, backupID: payload[:16], threshold: int(payload[16]), value: payload[17:]}
	sh.custodian, sh.index, sh.total, _ = readableHeader(head)
	return sh, nil
}

// readableHeader reads the "custodian:" and "share: N of M" lines.
func readableHeader(head string) (name string, index, total int, found bool) {
	for _, line := range strings.Split(head, "\n") {
		line = strings.TrimRight(line, "\r")
		if v, ok := strings.CutPrefix(line, "custodian: "); ok {
			name, found = v, true
		}
		if v, ok := strings.CutPrefix(line, "share: "); ok {
			f := strings.Fields(v)
			if len(f) >= 3 && f[1] == "of" {
				index, _ = strconv.Atoi(f[0])
				total, _ = strconv.Atoi(f[2])
			}
			found = true
		}
	}
	return name, index, total, found
}

func readShare(path string) (share, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return share{}, err
	}
	sh, err := parseShare(data)
	if err != nil {
		return share{}, fmt.Errorf("share file %s: %w", path, err)
	}
	return sh, nil
}
