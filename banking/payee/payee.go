// Package payee keeps each customer's saved payees (seed clause 7.1 c):
// the accounts a customer sends money to often, with the holder's name,
// the bank, and a nickname of the customer's choice.
//
// # Rules
//
//   - A customer keeps at most Config.Max payees (default MaxPerCustomer,
//     200); one more is ErrFull: remove one first.
//   - The account is a bank account or card number: 16 to 19 digits, not
//     starting with 0, with a correct Luhn (ISO/IEC 7812) check digit —
//     the rule of the ledger's 19-digit account numbers, widened to the
//     16-digit card-style accounts of other banks. Spaces and hyphens
//     people type are removed first. A mistyped digit is caught here,
//     before a transfer is ever tried.
//   - The same account is saved once per customer (ErrExists).
//   - The name (1–64 characters), bank (0–64) and nickname (0–32) are
//     UTF-8 text — Chinese names are kept as typed — without control or
//     formatting characters (a bidi override could make a list lie) and
//     without < > " ' &, the characters the bank's pages would have to
//     escape.
//
// What the package does not decide: whether a customer may save a payee
// now (package banking asks for a recent SMS step-up) and whether the
// account or name is on the screening list (banking asks its Screen).
//
// # Storage
//
// Bucket "bank-payees" of the bank's store (bbolt or PostgreSQL), key
// customer id ‖ 0x00 ‖ payee id, value the JSON record. Add counts and
// checks for the same account in the transaction that writes, so two
// adds at once on two banking nodes cannot pass the limit together.
//
// # Concurrency
//
// A Book is safe for concurrent use; several Books (banking nodes) may
// share one store.
package payee

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keyward/keyward/banking/internal/kv"
	"github.com/keyward/keyward/banking/internal/luhn"
	"github.com/keyward/keyward/banking/store"
)

// MaxPerCustomer is the default number of payees a customer may keep.
const MaxPerCustomer = 200

// Errors. Their messages name the field to fix and never repeat the
// account number.
var (
	ErrInvalid  = errors.New("payee: invalid")
	ErrNotFound = errors.New("payee: no such payee")
	ErrExists   = errors.New("payee: this account is already saved")
	ErrFull     = errors.New("payee: too many saved payees")
	ErrConfig   = errors.New("payee: bad configuration")
)

// Payee is one saved payee.
type Payee struct {
	ID       string    `json:"id"` // "p" and 16 hex digits, random
	Account  string    `json:"account"`
	Name     string    `json:"name"`
	Bank     string    `json:"bank,omitempty"`
	Nickname string    `json:"nickname,omitempty"`
	Created  time.Time `json:"created"`
}

// Config configures a Book.
type Config struct {
	DB  store.DB         // bucket "bank-payees"
	Max int              // 0: MaxPerCustomer; 1..10000
	Now func() time.Time // nil: time.Now
}

// Book holds every customer's saved payees.
type Book struct{ cfg Config }

var bucketPayees = []byte("bank-payees")

// New checks cfg and prepares the bucket.
func New(cfg Config) (*Book, error) {
	if cfg.DB == nil {
		return nil, fmt.Errorf("%w: DB is nil", ErrConfig)
	}
	if cfg.Max == 0 {
		cfg.Max = MaxPerCustomer
	}
	if cfg.Max < 1 || cfg.Max > 10000 {
		return nil, fmt.Errorf("%w: Max must be between 1 and 10000", ErrConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := kv.Ensure(cfg.DB, bucketPayees); err != nil {
		return nil, fmt.Errorf("payee: %w", err)
	}
	return &Book{cfg: cfg}, nil
}

// Normalise returns p with the account's spaces and hyphens removed and
// the text fields trimmed, and checks it (see "Rules").
func Normalise(p Payee) (Payee, error) {
	p.Account = strings.NewReplacer(" ", "", "-", "").Replace(p.Account)
	p.Name, p.Bank, p.Nickname = strings.TrimSpace(p.Name), strings.TrimSpace(p.Bank), strings.TrimSpace(p.Nickname)
	if err := checkAccount(p.Account); err != nil {
		return p, err
	}
	if p.Name == "" {
		return p, fmt.Errorf("%w: name is required: the account holder's name as the bank knows it", ErrInvalid)
	}
	for _, f := range []struct {
		field, v string
		max      int
	}{{"name", p.Name, 64}, {"bank", p.Bank, 64}, {"nickname", p.Nickname, 32}} {
		if err := checkText(f.field, f.v, f.max); err != nil {
			return p, err
		}
	}
	return p, nil
}

func checkAccount(a string) error {
	if len(a) < 16 || len(a) > 19 {
		return fmt.Errorf("%w: account must be 16 to 19 digits (%d given)", ErrInvalid, len(a))
	}
	if a[0] == '0' || !luhn.Valid(a) {
		return fmt.Errorf("%w: account is not a valid account number (a mistyped digit?)", ErrInvalid)
	}
	return nil
}

func checkText(field, v string, max int) error {
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > max {
		return fmt.Errorf("%w: %s is at most %d characters", ErrInvalid, field, max)
	}
	for _, c := range v {
		if unicode.IsControl(c) || unicode.Is(unicode.Cf, c) || strings.ContainsRune(`<>"'&`, c) {
			return fmt.Errorf("%w: %s must not hold control characters or any of < > \" ' &", ErrInvalid, field)
		}
	}
	return nil
}

// Add saves p (Normalise'd; its ID and Created are set here) for the
// customer and returns it as stored.
func (b *Book) Add(ctx context.Context, customer string, p Payee) (Payee, error) {
	if err := kv.CheckID("customer", customer); err != nil {
		return Payee{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	p, err := Normalise(p)
	if err != nil {
		return Payee{}, err
	}
	if err := ctx.Err(); err != nil {
		return Payee{}, err
	}
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Payee{}, fmt.Errorf("payee: random id: %w", err)
	}
	p.ID, p.Created = "p"+hex.EncodeToString(raw[:]), b.cfg.Now().UTC()
	err = b.cfg.DB.Update(func(tx store.Tx) error {
		bk := tx.Bucket(bucketPayees)
		prefix := kv.Prefix(customer)
		n := 0
		c := bk.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var old Payee
			if kv.Decode(v, &old) == nil && old.Account == p.Account {
				return fmt.Errorf("%w (as %q)", ErrExists, old.ID)
			}
			n++
		}
		if n >= b.cfg.Max {
			return fmt.Errorf("%w: you keep %d, the most there may be; remove one first", ErrFull, n)
		}
		return kv.Put(bk, append(prefix, p.ID...), &p)
	})
	if err != nil {
		return Payee{}, wrapStore(err)
	}
	return p, nil
}

// List returns the customer's payees, oldest first.
func (b *Book) List(ctx context.Context, customer string) ([]Payee, error) {
	if err := kv.CheckID("customer", customer); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []Payee{}
	err := b.cfg.DB.View(func(tx store.Tx) error {
		out = out[:0]
		prefix := kv.Prefix(customer)
		c := tx.Bucket(bucketPayees).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var p Payee
			if err := kv.Decode(v, &p); err != nil {
				return fmt.Errorf("payee: stored record %q unreadable: %w", k[len(prefix):], err)
			}
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, wrapStore(err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Remove deletes one of the customer's payees and returns what it was.
// Another customer's payee id is ErrNotFound, as an unknown one.
func (b *Book) Remove(ctx context.Context, customer, id string) (Payee, error) {
	if err := kv.CheckID("customer", customer); err != nil {
		return Payee{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(id) != 17 || id[0] != 'p' {
		return Payee{}, ErrNotFound
	}
	if _, err := hex.DecodeString(id[1:]); err != nil {
		return Payee{}, ErrNotFound
	}
	if err := ctx.Err(); err != nil {
		return Payee{}, err
	}
	var p Payee
	err := b.cfg.DB.Update(func(tx store.Tx) error {
		bk := tx.Bucket(bucketPayees)
		key := append(kv.Prefix(customer), id...)
		found, err := kv.Get(bk, key, &p)
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		return bk.Delete(key)
	})
	if err != nil {
		return Payee{}, wrapStore(err)
	}
	return p, nil
}

// wrapStore leaves the package's own refusals as they are and names the
// package on anything else (the store's faults keep their chain:
// store.ErrBackend stays visible to errors.Is).
func wrapStore(err error) error {
	for _, e := range []error{ErrInvalid, ErrNotFound, ErrExists, ErrFull} {
		if errors.Is(err, e) {
			return err
		}
	}
	return fmt.Errorf("payee: %w", err)
}
