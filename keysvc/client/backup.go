package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// backupPath is keysvc's hot backup (admin clients only).
const backupPath = "/v1/admin/backup"

// Backup trailers, as keysvc/api sends them (keysvc/api's
// TrailerBackupSHA256 and TrailerBackupSize; this package does not import
// keysvc/api).
const (
	trailerBackupSHA256 = "Keyward-Backup-Sha256"
	trailerBackupSize   = "Keyward-Backup-Size"
)

// BackupInfo describes a backup that arrived whole.
type BackupInfo struct {
	Size   int64
	SHA256 string // hex; the same as in keysvc's "backup" audit record
}

// Backup streams keysvc's hot backup of its store into w (GET
// /v1/admin/backup) and checks it arrived whole: the size and SHA-256 of
// what w received must equal keysvc's trailers, which keysvc sends only
// after the copy is complete and audited. Anything else is an error, and
// what w received must be thrown away. The copy is a bbolt store file or
// an etcd snapshot, by keysvc's store backend.
//
// It is sent once, to the first endpoint (every node of a cluster copies
// the same etcd), without the HTTP client's Timeout: a large copy takes
// as long as it takes; bound it with ctx.
func (c *Client) Backup(ctx context.Context, w io.Writer) (BackupInfo, error) {
	ep := c.eps[0]
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.base+backupPath, nil)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("keysvc client: %w", err)
	}
	req.Header.Set("Accept", "application/octet-stream")
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("keysvc client: GET %s: %w", backupPath, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return BackupInfo{}, decodeError(resp)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(h, w), resp.Body)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("keysvc client: the backup stopped after %d bytes (keysvc's log and audit record say why): %w", n, err)
	}
	got := BackupInfo{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	wantSum, wantSize := resp.Trailer.Get(trailerBackupSHA256), resp.Trailer.Get(trailerBackupSize)
	if wantSum == "" || wantSize == "" {
		return got, fmt.Errorf("keysvc client: the backup ended after %d bytes without keysvc's checksum trailer: it is not complete (keysvc's log and audit record say why)", n)
	}
	if size, err := strconv.ParseInt(wantSize, 10, 64); err != nil || size != n || wantSum != got.SHA256 {
		return got, fmt.Errorf("keysvc client: the backup received (%d bytes, sha256 %s) is not what keysvc sent (%s bytes, sha256 %s)", n, got.SHA256, wantSize, wantSum)
	}
	return got, nil
}
