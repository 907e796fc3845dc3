package api

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/wire"
)

// BackupTaker is the store's hot backup (issue 17, R-AV-3), a Backend
// ability discovered by type assertion; *keysvc.Service implements it.
type BackupTaker interface {
	BeginBackup(c keysvc.Caller) (*keysvc.Backup, error)
}

var _ BackupTaker = (*keysvc.Service)(nil)

// Trailers of GET /v1/admin/backup, sent after the copy once it is whole
// and its audit record durable. A response without them is not a backup:
// the copy failed part-way (the connection is then also cut before the
// last chunk).
const (
	TrailerBackupSHA256 = "Keyward-Backup-Sha256"
	TrailerBackupSize   = "Keyward-Backup-Size"
)

// backup is GET /v1/admin/backup: the store's consistent copy, streamed
// (chunked) as application/octet-stream, with its SHA-256 and size in the
// trailers. Admin clients only; one backup at a time (409
// illegal_transition while one runs). Refusals are errors as for any
// route; once the 200 is sent, a failure cuts the stream instead (no
// trailers, no final chunk), and the audit record says so.
func (s *Server) backup(c *fiber.Ctx) error {
	start := time.Now()
	bt, ok := s.backend.(BackupTaker)
	if !ok {
		return fmt.Errorf("%w: this keysvc backend cannot take a backup", wire.ErrInvalidArgument)
	}
	b, err := bt.BeginBackup(caller(c))
	if err != nil {
		_, result, _, _ := classify(err)
		s.metrics.observe("backup", result, time.Since(start).Seconds())
		return err
	}
	c.Set(fiber.HeaderContentType, "application/octet-stream")
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="keysvc-backup"`)
	resp := c.Response()
	if err := resp.Header.SetTrailer(TrailerBackupSHA256 + ", " + TrailerBackupSize); err != nil {
		b.Abandon()
		return err
	}
	resp.SetBodyStream(&backupBody{s: s, b: b, resp: resp, conn: c.Context().Conn(), timeout: s.writeTimeout, start: start}, -1)
	return nil
}

// backupBody is the response body of a backup: fasthttp reads it on the
// connection's goroutine after the headers are written, so the copy
// starts only then, and the trailers are set on that goroutine before
// fasthttp writes them. Each read pushes the connection's write deadline
// on by the server's WriteTimeout: a copy that progresses is never cut, a
// stalled client is.
type backupBody struct {
	s       *Server
	b       *keysvc.Backup
	resp    *fasthttp.Response
	conn    net.Conn
	timeout time.Duration
	start   time.Time

	pr     *io.PipeReader
	cancel context.CancelFunc // ends the copy's context (Close)
	done   chan struct{}
	res    keysvc.BackupResult
	err    error
	ends   bool // metrics observed
}

// errClientGone ends the copy when fasthttp stops reading (the client went
// away or the write deadline passed).
var errClientGone = errors.New("api: the backup's client stopped reading")

func (r *backupBody) Read(p []byte) (int, error) {
	if r.pr == nil {
		pr, pw := io.Pipe()
		ctx, cancel := context.WithCancel(context.Background())
		r.pr, r.cancel, r.done = pr, cancel, make(chan struct{})
		go func() {
			defer close(r.done)
			r.res, r.err = r.b.Run(ctx, pw)
			pw.CloseWithError(r.err) // nil: EOF
		}()
	}
	if r.conn != nil && r.timeout > 0 {
		_ = r.conn.SetWriteDeadline(time.Now().Add(r.timeout))
	}
	n, err := r.pr.Read(p)
	if err == nil {
		return n, nil
	}
	<-r.done
	if err == io.EOF && r.err == nil {
		r.resp.Header.Set(TrailerBackupSHA256, hex.EncodeToString(r.res.SHA256))
		r.resp.Header.Set(TrailerBackupSize, strconv.FormatInt(r.res.Size, 10))
	}
	r.observe()
	return n, err
}

// Close runs when fasthttp is done with the body, whole or not.
func (r *backupBody) Close() error {
	if r.pr == nil { // never read (HEAD, or the client left first): nothing copied
		r.b.Abandon()
		return nil
	}
	r.pr.CloseWithError(errClientGone)
	r.cancel()
	<-r.done
	r.observe()
	return nil
}

func (r *backupBody) observe() {
	if r.ends {
		return
	}
	r.ends = true
	result := "ok"
	if r.err != nil {
		_, result, _, _ = classify(r.err)
	}
	r.s.metrics.observe("backup", result, time.Since(r.start).Seconds())
}
