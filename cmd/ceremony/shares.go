package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// A custodian's share of a backup KEK, printable so it can be kept on paper
// and typed back in:
//
//	payload  = backup id (16) ‖ threshold (1) ‖ Shamir share (33: 32 + x coordinate)
//	checksum = first 4 bytes of SHA-256("keyward-share-v1" ‖ payload)
//	text     = hex(payload ‖ checksum) in upper-case groups of 4, 6 groups a line
//
// A mistyped or damaged share fails the checksum; a share of another backup
// carries another backup id.

const (
	shareBegin  = "-----BEGIN KEYWARD BACKUP SHARE-----"
	shareEnd    = "-----END KEYWARD BACKUP SHARE-----"
	shareDomain = "keyward-share-v1"
	shareLen    = 16 + 1 + 33
)

var errShareChecksum = errors.New("share checksum mismatch: the share was mistyped or damaged")

type share struct {
	backupID  []byte
	threshold int
	value     []byte // 33 bytes: hashicorp/vault/shamir format
}

func shareChecksum(payload []byte) []byte {
	h := sha256.Sum256(append([]byte(shareDomain), payload...))
	return h[:4]
}

// encodeShare renders a share file for one custodian.
func encodeShare(sh share, custodian string, index, n int, created time.Time) []byte {
	payload := append(append(append([]byte{}, sh.backupID...), byte(sh.threshold)), sh.value...)
	full := strings.ToUpper(hex.EncodeToString(append(payload, shareChecksum(payload)...)))
	var b bytes.Buffer
	fmt.Fprintf(&b, "Keyward key-ceremony backup share. SECRET: keep it sealed; never copy it to a computer except for a restore.\n")
	fmt.Fprintf(&b, "backup-id: %x\ncustodian: %s\nshare: %d of %d (any %d restore)\ncreated: %s\n\n%s\n",
		sh.backupID, custodian, index, n, sh.threshold, created.UTC().Format(time.RFC3339), shareBegin)
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
	fmt.Fprintf(&b, "%s\n", shareEnd)
	return b.Bytes()
}

// parseShare reads a share file: the text between the markers, with
// spaces, dashes and line breaks ignored.
func parseShare(data []byte) (share, error) {
	// END is looked for after BEGIN: the two markers may share dashes
	// ("-----BEGIN …-----END …-----"), which once sliced backwards (found
	// by FuzzParseShare).
	_, rest, ok := strings.Cut(string(data), shareBegin)
	inner, _, ok2 := strings.Cut(rest, shareEnd)
	if !ok || !ok2 {
		return share{}, errors.New("no share between BEGIN/END KEYWARD BACKUP SHARE lines")
	}
	body := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '\n', '\r', '\t':
			return -1
		}
		return r
	}, inner)
	raw, err := hex.DecodeString(body)
	if err != nil {
		return share{}, fmt.Errorf("%w (not hexadecimal)", errShareChecksum)
	}
	if len(raw) != shareLen+4 {
		return share{}, fmt.Errorf("%w (%d bytes, want %d)", errShareChecksum, len(raw), shareLen+4)
	}
	payload := raw[:shareLen]
	if !bytes.Equal(shareChecksum(payload), raw[shareLen:]) {
		return share{}, errShareChecksum
	}
	return share{backupID: payload[:16], threshold: int(payload[16]), value: payload[17:]}, nil
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
