// Package secrets keeps keysvc's own local secrets in one encrypted file
// that is useless on another machine (issue 8; R-TOK-4, R-SRV-5).
//
// keysvc needs two secrets before it can serve: the user PIN it logs in to
// its token with, and the private key of its TLS server certificate. Left
// in clear files, a copied disk (a backup tape, a decommissioned server, a
// snapshot) gives an attacker the PIN of the bank's HSM partition. This
// package puts them in a secrets file instead:
//
//	{ "format": "keyward-secrets-v1", "names": ["tls-key","token-pin"],
//	  "nonce": …, "ciphertext": …,           AES-256-GCM under a random DEK
//	  "slots": [ {"type":"tpm", …},          the DEK sealed to the host TPM
//	             {"type":"passphrase", …} ] } the DEK under an Argon2id key
//
// The data-encryption key (DEK) is random, 32 bytes, and exists on disk
// only inside the slots, like the key slots of a LUKS volume:
//
//   - a tpm slot holds the DEK sealed to the host TPM (package token/tpm),
//     optionally bound to PCR values (the measured boot state). keysvc
//     opens it at start without anyone present ("auto-unseal"). Another
//     machine's TPM cannot load it, and a changed boot chain (other
//     firmware, bootloader, kernel, if those PCRs were chosen) cannot
//     satisfy its policy;
//   - a passphrase slot holds the DEK encrypted under a key derived from
//     the officers' recovery passphrase with Argon2id (64 MiB, 3 passes).
//     It is the fallback where there is no TPM, and the way back in when
//     the TPM slot no longer opens (a firmware update changed the PCRs, the
//     mainboard was replaced): open with the passphrase, then `ceremony
//     reseal` seals the same DEK to the TPM's current state.
//
// The names of the secrets are public (they say what the file holds); the
// values, the DEK and the passphrase never appear in errors or logs. The
// names and the format are authenticated with the ciphertext, so a file
// edited to claim other contents does not open.
//
// The bank's own application secrets are not here: wrapped key material
// in keysvc's store is already under the token's KEK, and holder PINs are
// HMACs under a token key. What this file protects is what opens the token.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/keyward/keyward/token/tpm"
)

// Format names this file format; it is authenticated with the contents.
const Format = "keyward-secrets-v1"

// Names of the secrets keysvc reads from a bundle.
const (
	TokenPIN = "token-pin" // the token user PIN keysvc logs in with
	TLSKey   = "tls-key"   // PEM private key of the service's TLS server certificate
)

// Names of the secrets cmd/banking reads: its credential towards keysvc.
const (
	KeysvcClientKey = "keysvc-client-key" // PEM private key of its mutual-TLS client certificate
	KeysvcBearer    = "keysvc-bearer"     // development: its bearer token
	PGPassword      = "pg-password"       // its PostgreSQL password (store.backend: postgres)
)

// Slot types.
const (
	SlotTPM        = "tpm"
	SlotPassphrase = "passphrase"
)

// MinPassphrase is the shortest recovery passphrase accepted, in bytes.
const MinPassphrase = 12

var (
	// ErrFormat: the file is not a secrets file this version reads.
	ErrFormat = errors.New("secrets: not a keyward-secrets-v1 file")
	// ErrNoSlot: none of the file's slots can be tried with what was given.
	ErrNoSlot = errors.New("secrets: no slot of the secrets file can be opened with what was given")
	// ErrPassphrase: the passphrase does not open the passphrase slot.
	ErrPassphrase = errors.New("secrets: wrong recovery passphrase")
	// ErrTampered: a slot gave a key but the contents do not authenticate.
	ErrTampered = errors.New("secrets: the secrets file was modified")
	// ErrPermissions: the file can be read by others than its owner.
	ErrPermissions = errors.New("secrets: the secrets file is readable by group or others")
)

// Bundle is a set of named secrets.
type Bundle map[string][]byte

// Names returns the bundle's names, sorted.
func (b Bundle) Names() []string {
	n := make([]string, 0, len(b))
	for k := range b {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Wipe overwrites every value with zeros.
func (b Bundle) Wipe() {
	for _, v := range b {
		clear(v)
	}
}

// File is a secrets file as stored (JSON, mode 0600).
type File struct {
	Format     string    `json:"format"`
	Created    time.Time `json:"created"`
	Names      []string  `json:"names"`
	Nonce      []byte    `json:"nonce"`
	Ciphertext []byte    `json:"ciphertext"`
	Slots      []Slot    `json:"slots"`
}

// Slot is one way to the DEK.
type Slot struct {
	Type     string    `json:"type"` // SlotTPM or SlotPassphrase
	SealedAt time.Time `json:"sealed_at"`
	// TPM slot: the DEK sealed to the host TPM.
	TPM *tpm.Sealed `json:"tpm,omitempty"`
	// Passphrase slot: the DEK under Argon2id(passphrase, salt).
	KDF     *KDF   `json:"kdf,omitempty"`
	Nonce   []byte `json:"nonce,omitempty"`
	Wrapped []byte `json:"wrapped,omitempty"`
}

// KDF are the Argon2id parameters of a passphrase slot.
type KDF struct {
	Name      string `json:"name"` // "argon2id"
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
	Salt      []byte `json:"salt"`
}

// DefaultKDF is used for new passphrase slots: 64 MiB, 3 passes (about
// 0.2 s on a server core), the parameters RFC 9106 gives for constrained
// memory.
var DefaultKDF = KDF{Name: "argon2id", Time: 3, MemoryKiB: 64 * 1024, Threads: 2}

// Bounds on a passphrase slot's Argon2id parameters read from a file. The
// parameters are bound into the slot's AAD, so an edited file is refused
// anyway, but only after the derivation ran: without bounds, an edited
// memory_kib would make start-up try to allocate up to 4 TiB.
const (
	maxKDFTime      = 64
	maxKDFMemoryKiB = 4 << 20 // 4 GiB
	maxKDFThreads   = 64
)

// check refuses parameters this version will not run.
func (k *KDF) check() error {
	switch {
	case k.Name != "argon2id":
		return fmt.Errorf("%w: passphrase slot with unknown key derivation %q", ErrFormat, k.Name)
	case k.Time == 0 || k.Time > maxKDFTime:
		return fmt.Errorf("%w: passphrase slot asks for %d Argon2id passes (1..%d)", ErrFormat, k.Time, maxKDFTime)
	case k.Threads == 0 || k.Threads > maxKDFThreads:
		return fmt.Errorf("%w: passphrase slot asks for %d Argon2id threads (1..%d)", ErrFormat, k.Threads, maxKDFThreads)
	case k.MemoryKiB < 8*uint32(k.Threads) || k.MemoryKiB > maxKDFMemoryKiB:
		return fmt.Errorf("%w: passphrase slot asks for %d KiB of Argon2id memory (8×threads..%d)", ErrFormat, k.MemoryKiB, maxKDFMemoryKiB)
	}
	return nil
}

// Options say how a new file is sealed. At least one of TPM and Passphrase
// must be given; a bank's officers give both.
type Options struct {
	TPM        *tpm.TPM // seal the DEK to this TPM
	PCRs       []int    // ...bound to these SHA-256 PCRs (empty: not bound)
	Passphrase []byte   // recovery passphrase (≥ MinPassphrase bytes)
	KDF        *KDF     // nil: DefaultKDF (tests lower the cost)
	Now        func() time.Time
}

// Seal encrypts b into a new File with the slots opts asks for.
func Seal(b Bundle, opts Options) (*File, error) {
	if len(b) == 0 {
		return nil, errors.New("secrets: nothing to seal")
	}
	for name, v := range b {
		if !validName(name) {
			return nil, fmt.Errorf("secrets: bad secret name %q: use lower-case letters, digits and '-'", name)
		}
		if len(v) == 0 {
			return nil, fmt.Errorf("secrets: secret %q is empty", name)
		}
	}
	if opts.TPM == nil && opts.Passphrase == nil {
		return nil, errors.New("secrets: give a TPM, a recovery passphrase, or both")
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	dek := make([]byte, 32)
	if _, err := rand.Read(dek); err != nil {
		return nil, err
	}
	defer clear(dek)
	f := &File{Format: Format, Created: now().UTC(), Names: b.Names()}
	plain, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	if f.Nonce, f.Ciphertext, err = seal(dek, plain, f.aad()); err != nil {
		return nil, err
	}
	if opts.TPM != nil {
		if err := f.setTPMSlot(dek, opts.TPM, opts.PCRs, now()); err != nil {
			return nil, err
		}
	}
	if opts.Passphrase != nil {
		if err := f.addPassphraseSlot(dek, opts.Passphrase, opts.KDF, now()); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Unlocker is what keysvc has at start to open a file: the host TPM and,
// as the fallback, a way to ask for the recovery passphrase.
type Unlocker struct {
	TPM        *tpm.TPM
	Passphrase func() ([]byte, error) // nil: no fallback (unattended only)
}

// Opened says how a file was opened.
type Opened struct {
	Slot string // SlotTPM or SlotPassphrase
	// TPMErr is why the TPM slot did not open when the passphrase did
	// (e.g. tpm.ErrPCRMismatch): the operator should reseal.
	TPMErr error
}

// Open decrypts the file: the TPM slot first (no one needs to be present),
// then the passphrase slot. Errors wrap the TPM's typed errors
// (tpm.ErrPCRMismatch, tpm.ErrWrongTPM, tpm.ErrLocked, tpm.ErrNoTPM) and
// ErrPassphrase, ErrTampered or ErrNoSlot.
func (f *File) Open(u Unlocker) (Bundle, Opened, error) {
	dek, how, err := f.dek(u)
	if err != nil {
		return nil, how, err
	}
	defer clear(dek)
	b, err := f.decrypt(dek)
	return b, how, err
}

// Reseal seals the file's DEK to t (bound to pcrs) in place of its TPM
// slot, after opening the file with u (normally the passphrase: reseal is
// what officers do when the TPM slot stopped opening). The contents and
// the passphrase slot are unchanged.
func (f *File) Reseal(u Unlocker, t *tpm.TPM, pcrs []int, now time.Time) (Opened, error) {
	dek, how, err := f.dek(u)
	if err != nil {
		return how, err
	}
	defer clear(dek)
	if _, err := f.decrypt(dek); err != nil { // never reseal a key that doesn't open the contents
		return how, err
	}
	return how, f.setTPMSlot(dek, t, pcrs, now)
}

// Slot returns the file's slot of type typ, or nil.
func (f *File) Slot(typ string) *Slot {
	for i := range f.Slots {
		if f.Slots[i].Type == typ {
			return &f.Slots[i]
		}
	}
	return nil
}

func (f *File) dek(u Unlocker) ([]byte, Opened, error) {
	var errs []error
	var how Opened
	if s := f.Slot(SlotTPM); s != nil {
		if u.TPM == nil {
			errs = append(errs, errors.New("the file has a TPM slot but no TPM is configured"))
		} else {
			dek, err := u.TPM.Unseal(s.TPM, nil)
			if err == nil {
				return dek, Opened{Slot: SlotTPM}, nil
			}
			how.TPMErr = err
			errs = append(errs, fmt.Errorf("TPM slot: %w", err))
		}
	}
	if s := f.Slot(SlotPassphrase); s != nil {
		if u.Passphrase == nil {
			errs = append(errs, errors.New("the passphrase slot needs the recovery passphrase and none can be asked for"))
		} else {
			p, err := u.Passphrase()
			if err != nil {
				return nil, how, errors.Join(append(errs, fmt.Errorf("recovery passphrase: %w", err))...)
			}
			dek, err := s.openPassphrase(p, f.aadSlot(s))
			clear(p)
			if err == nil {
				how.Slot = SlotPassphrase
				return dek, how, nil
			}
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil, how, ErrNoSlot
	}
	err := errors.Join(errs...)
	if !errors.Is(err, ErrPassphrase) && how.TPMErr == nil {
		err = fmt.Errorf("%w: %w", ErrNoSlot, err)
	}
	return nil, how, err
}

func (f *File) decrypt(dek []byte) (Bundle, error) {
	plain, err := open(dek, f.Nonce, f.Ciphertext, f.aad())
	if err != nil {
		return nil, ErrTampered
	}
	defer clear(plain)
	var b Bundle
	if err := json.Unmarshal(plain, &b); err != nil {
		return nil, ErrTampered
	}
	if !slices.Equal(b.Names(), f.Names) {
		b.Wipe()
		return nil, ErrTampered
	}
	return b, nil
}

func (f *File) setTPMSlot(dek []byte, t *tpm.TPM, pcrs []int, now time.Time) error {
	sealed, err := t.Seal(dek, tpm.SealOptions{PCRs: pcrs})
	if err != nil {
		return fmt.Errorf("secrets: seal to the TPM: %w", err)
	}
	s := Slot{Type: SlotTPM, SealedAt: now.UTC(), TPM: sealed}
	if old := f.Slot(SlotTPM); old != nil {
		*old = s
		return nil
	}
	f.Slots = append([]Slot{s}, f.Slots...)
	return nil
}

func (f *File) addPassphraseSlot(dek, pass []byte, kdf *KDF, now time.Time) error {
	if len(pass) < MinPassphrase {
		return fmt.Errorf("secrets: the recovery passphrase must have at least %d characters", MinPassphrase)
	}
	k := DefaultKDF
	if kdf != nil {
		k = *kdf
	}
	k.Name = "argon2id"
	k.Salt = make([]byte, 16)
	if _, err := rand.Read(k.Salt); err != nil {
		return err
	}
	s := Slot{Type: SlotPassphrase, SealedAt: now.UTC(), KDF: &k}
	kek := k.derive(pass)
	defer clear(kek)
	var err error
	if s.Nonce, s.Wrapped, err = seal(kek, dek, f.aadSlot(&s)); err != nil {
		return err
	}
	f.Slots = append(f.Slots, s)
	return nil
}

func (s *Slot) openPassphrase(pass, aad []byte) ([]byte, error) {
	if s.KDF == nil {
		return nil, fmt.Errorf("%w: passphrase slot without key derivation", ErrFormat)
	}
	if err := s.KDF.check(); err != nil {
		return nil, err
	}
	kek := s.KDF.derive(pass)
	defer clear(kek)
	dek, err := open(kek, s.Nonce, s.Wrapped, aad)
	if err != nil {
		return nil, ErrPassphrase
	}
	return dek, nil
}

func (k *KDF) derive(pass []byte) []byte {
	return argon2.IDKey(pass, k.Salt, k.Time, k.MemoryKiB, k.Threads, 32)
}

// aad binds the format and the list of names to the contents.
func (f *File) aad() []byte {
	return []byte(Format + "\x00contents\x00" + strings.Join(f.Names, "\x00"))
}

// aadSlot binds a passphrase slot's KDF parameters to its wrapped DEK.
func (f *File) aadSlot(s *Slot) []byte {
	k := s.KDF
	return fmt.Appendf(nil, "%s\x00passphrase\x00%s\x00%d\x00%d\x00%d\x00%x", Format, k.Name, k.Time, k.MemoryKiB, k.Threads, k.Salt)
}

func seal(key, plain, aad []byte) (nonce, ct []byte, err error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, nil, err
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, err
	}
	nonce = make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	return nonce, g.Seal(nil, nonce, plain, aad), nil
}

func open(key, nonce, ct, aad []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(nonce) != g.NonceSize() {
		return nil, errors.New("bad nonce")
	}
	return g.Open(nil, nonce, ct, aad)
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// Read loads a secrets file. It refuses a file that group or others can
// read (as ssh refuses such a private key): the fix is chmod 600.
func Read(path string) (*File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v; run chmod 600 %s", ErrPermissions, path, st.Mode().Perm(), path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return parse(raw, path)
}

// parse decodes a secrets file's bytes (path names it in errors). Every
// error wraps ErrFormat.
func parse(raw []byte, path string) (*File, error) {
	var f File
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, path, err)
	}
	if f.Format != Format {
		return nil, fmt.Errorf("%w: %s says format %q", ErrFormat, path, f.Format)
	}
	if len(f.Slots) == 0 {
		return nil, fmt.Errorf("%w: %s has no slot", ErrFormat, path)
	}
	for i, s := range f.Slots {
		switch {
		case s.Type == SlotTPM && s.TPM != nil:
		case s.Type == SlotPassphrase && s.KDF != nil:
			if err := s.KDF.check(); err != nil {
				return nil, fmt.Errorf("%s: slot %d: %w", path, i, err)
			}
		default:
			return nil, fmt.Errorf("%w: %s: slot %d (%q) is incomplete or of an unknown type", ErrFormat, path, i, s.Type)
		}
	}
	return &f, nil
}

// Write stores the file at path with mode 0600, atomically (a temporary
// file in the same directory, fsynced, then renamed). With replace false
// an existing file is an error, never overwritten.
func (f *File) Write(path string, replace bool) error {
	raw, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if !replace {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("secrets: %s already exists", path)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".secrets-*")
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(raw, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if !replace {
		// Link fails if path appeared meanwhile: never overwrite.
		if err := os.Link(tmp.Name(), path); err != nil {
			return fmt.Errorf("secrets: %w", err)
		}
		return nil
	}
	return os.Rename(tmp.Name(), path)
}
