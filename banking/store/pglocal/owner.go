package pglocal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// account is who the server programs run as: the current user, or, when
// the current user is root (initdb and postgres refuse root), the
// unprivileged `postgres` user (else `nobody`).
type account struct {
	cred *syscall.Credential // nil: run as the current user
	name string
}

func serverAccount() (account, error) {
	if os.Geteuid() != 0 {
		return account{}, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return account{
			cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true},
			name: name,
		}, nil
	}
	return account{}, errors.New("pglocal: running as root, and PostgreSQL refuses to run as root: " +
		"no unprivileged 'postgres' or 'nobody' user to run it as (create one: useradd --system postgres)")
}

// own makes the tree at dir belong to the server account, and lets that
// account reach dir: every ancestor that denies others the search (x) bit
// gets it (search only, never read: the names inside stay unlistable).
// Test temporary directories are 0700 root, which would otherwise keep the
// postgres user out. Nothing is changed when running as a non-root user.
func (a account) own(dir string) error {
	if a.cred == nil {
		return nil
	}
	uid, gid := int(a.cred.Uid), int(a.cred.Gid)
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("pglocal: giving %s to user %s: %w", dir, a.name, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("pglocal: letting user %s reach %s: %w", a.name, dir, err)
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
