package main

import (
	"fmt"
	"os"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// Checks made before a ceremony claims transcript.dir, and in --dry-run
// (issue 13 friction): a run that can only fail must not use up the
// directory. Outputs that exist are refused by validate; here: PIN files
// exist with an owner-only mode and are not empty, and the PKCS#11 module
// loads.

// checkPINFile checks a file: PIN source as FilePIN.PIN will read it,
// without reading the PIN.
func checkPINFile(path, src string) error {
	s, err := token.ParsePINSource(src)
	if err != nil {
		return nil // validPINSource reports it
	}
	fp, ok := s.(token.FilePIN)
	if !ok {
		return nil
	}
	st, err := os.Stat(fp.Path)
	switch {
	case err != nil:
		return cfgErr(path, "PIN file %s: %v", fp.Path, errText(err))
	case !st.Mode().IsRegular():
		return cfgErr(path, "PIN file %s is not a regular file", fp.Path)
	case st.Mode().Perm()&0o077 != 0:
		return cfgErr(path, "PIN file %s is readable or writable by group or others (mode %04o): chmod 600 (or 400) it", fp.Path, uint32(st.Mode().Perm()))
	case st.Size() == 0:
		return cfgErr(path, "PIN file %s is empty", fp.Path)
	case st.Size() > 1024:
		return cfgErr(path, "PIN file %s is larger than 1 KiB", fp.Path)
	}
	f, err := os.Open(fp.Path)
	if err != nil {
		return cfgErr(path, "PIN file %s cannot be read: %v", fp.Path, errText(err))
	}
	return f.Close()
}

// errText is an os error without the path it repeats.
func errText(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// checkModule loads the PKCS#11 module once and unloads it.
func checkModule(path string) error {
	if path == "" {
		return nil
	}
	m, err := pkcs11shim.OpenModule(path)
	if err != nil {
		return cfgErr("module", "%s cannot be loaded as a PKCS#11 module: %v", path, err)
	}
	if err := m.Close(); err != nil {
		return fmt.Errorf("%w: module: %s: %v", errConfig, path, err)
	}
	return nil
}
