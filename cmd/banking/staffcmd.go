package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyward/keyward/banking/staff"
)

// staffTokenCmd is `banking staff-token -out FILE`: a new personal staff
// token written to FILE (0600, O_EXCL: never over an existing file) and
// its token_sha256 line printed on out for the person's staff: entry. The
// token itself goes nowhere else: not to the terminal, not to argv.
func staffTokenCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("banking staff-token", flag.ContinueOnError)
	path := fs.String("out", "", "file to write the new token to (created 0600; an existing file is refused)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("staff-token: unexpected argument %q", fs.Arg(0))
	}
	if *path == "" {
		return errors.New("staff-token: -out FILE is required: the token is written to a file only, never to the terminal")
	}
	_, sum, err := writeStaffToken(*path)
	if err != nil {
		return fmt.Errorf("staff-token: %w", err)
	}
	_, err = fmt.Fprintf(out, "token_sha256: %s\n", hex.EncodeToString(sum[:]))
	return err
}

// writeStaffToken creates path (0600, O_EXCL) holding a new token.
func writeStaffToken(path string) (string, [32]byte, error) {
	tok, sum, err := staff.NewToken()
	if err != nil {
		return "", sum, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", sum, err
	}
	_, err = f.WriteString(tok + "\n")
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		os.Remove(path)
		return "", sum, err
	}
	return tok, sum, nil
}

// devStaff is who dev mode's staff list holds: a teller and a supervisor,
// so that a developer sees the separation of duties at work.
var devStaff = []struct {
	id, name string
	roles    []string
}{
	{"teller1", "Teller One (dev)", []string{"enrol", "deposit", "phone-change"}},
	{"supervisor1", "Supervisor One (dev)", []string{"unlock", "limit-override", "ledger-verify"}},
}

// ensureDevStaff makes, once, dir (0700) and each dev person's token file
// <id>.token (0600), and returns their staff entries. An existing token
// file is reused (it must be 0600 and hold a kwst_ token), never replaced.
func ensureDevStaff(dir string) ([]staffConfig, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var out []staffConfig
	for _, p := range devStaff {
		path := filepath.Join(dir, p.id+".token")
		tok, err := readSecretFile(path)
		var sum [32]byte
		switch {
		case err == nil && !staff.ValidTokenFormat(tok):
			return nil, fmt.Errorf("%s does not hold a staff token (kwst_…); remove it and start again to get a new one", path)
		case err == nil:
			sum = staff.Digest(tok)
		case errors.Is(err, os.ErrNotExist):
			if _, sum, err = writeStaffToken(path); err != nil {
				return nil, err
			}
		default:
			return nil, err
		}
		out = append(out, staffConfig{ID: p.id, Name: p.name, Roles: p.roles, TokenSHA256: hex.EncodeToString(sum[:])})
	}
	return out, nil
}

// logStaff says at start who may use the staff API (ids and roles, never
// a token), and in dev mode where the tokens are.
func logStaff(log *slog.Logger, cfg *Config, dev *devInfo) {
	if cfg.staff == nil {
		log.Info("no staff: list in the configuration; the staff API (/staff/v1) is off")
		return
	}
	for _, m := range cfg.staff.Members() {
		roles := make([]string, len(m.Roles))
		for i, r := range m.Roles {
			roles[i] = string(r)
		}
		attrs := []any{"id", m.ID, "roles", strings.Join(roles, ",")}
		if !m.Expires.IsZero() {
			attrs = append(attrs, "expires", m.Expires.UTC())
		}
		log.Info("staff member", attrs...)
	}
	if dev != nil {
		log.Info("dev staff tokens", "teller1", dev.tellerToken, "supervisor1", dev.supervisorToken)
	}
}
