package banking

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward/banking/auth/mask"
	"github.com/keyward/keyward/banking/auth/password"
	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/banking/internal/kv"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token/smcrypto"
)

var (
	bucketCustomers = []byte("bank-customers") // id → Customer JSON
	bucketLogins    = []byte("bank-logins")    // login name → id
	bucketCorp      = []byte("bank-corporate") // corporate orders
)

// Customer is a bank customer as stored. Sealed fields are SM4-GCM under
// the customer's data key (DataKeyCT is its keysvc ciphertext); banking
// never opens them.
type Customer struct {
	ID           string        `json:"id"`
	Login        string        `json:"login"`
	Name         string        `json:"name"`
	Phone        string        `json:"phone"`
	IDCardMasked string        `json:"id_card_masked"`
	CardMasked   string        `json:"card_masked"`
	IDCardSealed []byte        `json:"id_card_sealed"`
	CardSealed   []byte        `json:"card_sealed"`
	DataKeyCT    string        `json:"data_key_ct"`
	PasswordMAC  []byte        `json:"password_mac"`
	AntiPhishing string        `json:"anti_phishing"`
	USBKey       string        `json:"usb_key,omitempty"`   // keysvc external key with the USB key's public key
	CloudKey     string        `json:"cloud_key,omitempty"` // keysvc confirm-required key
	Corporate    string        `json:"corporate,omitempty"` // corporate id, for corporate operators
	Role         bankwire.Role `json:"role,omitempty"`      // corporate role
	Created      time.Time     `json:"created"`
}

// View returns the masked view of c.
func (c *Customer) View() bankwire.CustomerView {
	return bankwire.CustomerView{ID: c.ID, Login: c.Login, Name: c.Name, Phone: mask.Phone(c.Phone), IDCard: c.IDCardMasked, Card: c.CardMasked,
		AntiPhishing: c.AntiPhishing, USBKey: c.USBKey != "", CloudKey: c.CloudKey != "", Corporate: c.Corporate, Role: c.Role}
}

var (
	loginRE = regexp.MustCompile(`^[a-z][a-z0-9_.-]{3,31}$`)
	phoneRE = regexp.MustCompile(`^1[3-9][0-9]{9}$`)
	corpRE  = regexp.MustCompile(`^[a-z0-9-]{3,32}$`)
)

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
}

func validateEnrol(r *bankwire.EnrolRequest) error {
	switch {
	case !loginRE.MatchString(r.Login):
		return invalid("login must be 4-32 of a-z 0-9 _ . - starting with a letter")
	case r.Name == "" || utf8.RuneCountInString(r.Name) > 64 || strings.ContainsAny(r.Name, "<>\"'&\x00\n\r"):
		return invalid("name must be 1-64 characters without < > \" ' & or line breaks")
	case !phoneRE.MatchString(r.Phone):
		return invalid("phone must be an 11-digit mainland mobile number")
	case utf8.RuneCountInString(r.AntiPhishing) < 2 || utf8.RuneCountInString(r.AntiPhishing) > 32 || strings.ContainsAny(r.AntiPhishing, "<>\"'&\x00\n\r"):
		return invalid("anti_phishing must be 2-32 characters of your choice, shown at every login")
	case r.USBAlgorithm != "" && r.USBAlgorithm != "ec-p256" && r.USBAlgorithm != "sm2":
		return invalid("usb_algorithm must be ec-p256 or sm2")
	case (r.Corporate == "") != (r.Role == ""):
		return invalid("corporate and role go together")
	case r.Corporate != "" && !corpRE.MatchString(r.Corporate):
		return invalid("corporate must be 3-32 of a-z 0-9 -")
	case r.Role != "" && !r.Role.Valid():
		return invalid("role must be admin, maker, reviewer or authoriser")
	}
	if err := mask.ValidateID(r.IDCard); err != nil {
		return invalid("id_card: %v", err)
	}
	if err := mask.ValidateCard(r.Card); err != nil {
		return invalid("card: %v", err)
	}
	return nil
}

// newCustomerID draws "c" and 12 random digits.
func newCustomerID() (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(1e12))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("c%012d", n.Int64()), nil
}

// open decrypts a Sealed secret through keysvc and checks its challenge.
func (b *Bank) open(ctx context.Context, s bankwire.Sealed) ([]byte, error) {
	if s.KeyVersion < 1 || s.Ciphertext == "" || s.Challenge == "" {
		return nil, invalid("password needs challenge, ciphertext and key_version")
	}
	if err := b.challenges.Consume(ctx, s.Challenge); err != nil {
		return nil, err
	}
	plain, err := b.kms.Decrypt(ctx, KeyLogin, fmt.Sprintf("kw:v%d:%s", s.KeyVersion, s.Ciphertext), nil)
	if err != nil {
		if errors.Is(err, wire.ErrVersionNotUsable) {
			b.pubKeys.retired(KeyLogin, s.KeyVersion) // serve the current key again
		}
		if isClientError(err) {
			return nil, fmt.Errorf("%w: the encrypted password could not be opened; encrypt it to the current login key", password.ErrChallengeMismatch)
		}
		return nil, kmsErr(err)
	}
	b.pubKeys.seen(KeyLogin, s.KeyVersion) // sealed to a newer key than served: rotated
	pw, err := password.SplitPasswordChallenge(plain, s.Challenge)
	clear(plain)
	return pw, err
}

// isClientError reports keysvc refusing the input (not being down).
func isClientError(err error) bool {
	for _, e := range []error{wire.ErrInvalidArgument, wire.ErrInvalidCiphertext, wire.ErrDecrypt, wire.ErrVersionNotFound, wire.ErrVersionNotUsable} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// pwDomain separates password MACs from the other keyed hashes made
// under bank-pw-mac (one-time codes).
const pwDomain = "password-v1"

// pwMsg is what a password's MAC covers: customer id ‖ 0x00 ‖ password.
func pwMsg(id string, pw []byte) []byte { return append(append([]byte(id), 0), pw...) }

// pwMAC is the stored keyed hash of a customer's password, under the
// primary version of bank-pw-mac.
func (b *Bank) pwMAC(ctx context.Context, id string, pw []byte) ([]byte, error) {
	msg := pwMsg(id, pw)
	defer clear(msg)
	m, err := b.mac(ctx, pwDomain, msg)
	if err == nil {
		b.decoy.Store(&m) // under the primary: the best decoy
	}
	return m, err
}

// decoyID is the customer id an unknown login's password is checked
// under: customer ids are "c" and 12 digits, so it is no one's.
const decoyID = "c-no-customer"

// noCustomerMAC is the decoy of a bank with no customer yet: well formed,
// under version 1, matching nothing.
var noCustomerMAC = []byte("kw:v1:" + base64.StdEncoding.EncodeToString(make([]byte, 32)))

// checkPassword returns the customer whose login and password these are,
// or nil. keysvc checks the password against the stored MAC with the key
// version that made it (mac-verify), so rotating bank-pw-mac locks no one
// out (R-TOK-8); a right password stored under an older version is
// re-MACed with the primary and stored in place (upgradePasswordMAC).
// An unknown login is checked the same way against a decoy — a real
// customer's stored MAC, under decoyID — so keysvc does the same decrypt
// and mac-verify for it as for a known login with a wrong password, and
// the answer is the same: nothing tells whether the login exists.
func (b *Bank) checkPassword(ctx context.Context, login string, pw []byte) (*Customer, error) {
	c, cerr := b.customerByLogin(login)
	if cerr != nil && !errors.Is(cerr, ErrNotFound) {
		return nil, cerr // the store failed: not a wrong password
	}
	id, stored := decoyID, b.decoyMAC()
	if cerr == nil {
		id, stored = c.ID, c.PasswordMAC
	}
	msg := pwMsg(id, pw)
	defer clear(msg)
	ok, err := b.verifyMAC(ctx, pwDomain, msg, stored)
	if err != nil || !ok || cerr != nil {
		return nil, err
	}
	b.upgradePasswordMAC(ctx, c, pw)
	return c, nil
}

// decoyMAC is the value an unknown login is verified against: the newest
// password MAC this bank made (enrolment, password change, or the re-MAC
// of every successful login — so under the primary), or after a restart
// the stored MAC of the first customer in the store (a local read). Either
// is a real value under a real key version, and costs no keysvc call.
func (b *Bank) decoyMAC() []byte {
	if m := b.decoy.Load(); m != nil {
		return *m
	}
	var m []byte
	_ = b.db.View(func(tx store.Tx) error {
		_, v := tx.Bucket(bucketCustomers).Cursor().First()
		var c struct {
			PasswordMAC []byte `json:"password_mac"`
		}
		if v != nil && kv.Decode(v, &c) == nil {
			m = c.PasswordMAC
		}
		return nil
	})
	if len(m) == 0 {
		return noCustomerMAC
	}
	return m
}

// upgradePasswordMAC re-MACs a just-verified password with the primary
// version of bank-pw-mac and, if that differs from the stored value (the
// key was rotated since), replaces it in one transaction — unless the
// stored value changed meanwhile (a password change wins). It is best
// effort: a failure is logged and the next login tries again.
func (b *Bank) upgradePasswordMAC(ctx context.Context, c *Customer, pw []byte) {
	fresh, err := b.pwMAC(ctx, c.ID, pw)
	if err != nil {
		b.log.WarnContext(ctx, "password hash not moved to the new key version", "customer", c.ID, "err", err)
		return
	}
	if hmac.Equal(fresh, c.PasswordMAC) {
		return // already under the primary
	}
	err = b.updateCustomer(c.ID, func(cur *Customer) bool {
		if !hmac.Equal(cur.PasswordMAC, c.PasswordMAC) {
			return false
		}
		cur.PasswordMAC = fresh
		return true
	})
	if err != nil {
		b.log.WarnContext(ctx, "password hash not moved to the new key version", "customer", c.ID, "err", err)
		return
	}
	c.PasswordMAC = fresh
}

// Enrol creates a customer with its first account, its keys in keysvc and
// its sealed identity numbers (R-AUTH-1, R-AUTH-2, R-AUTH-7, R-SRV-6).
func (b *Bank) Enrol(ctx context.Context, req bankwire.EnrolRequest) (bankwire.EnrolResult, error) {
	if err := validateEnrol(&req); err != nil {
		return bankwire.EnrolResult{}, err
	}
	if b.cfg.Screen != nil {
		if err := b.cfg.Screen.CheckName(req.Name); err != nil {
			return bankwire.EnrolResult{}, fmt.Errorf("%w: the customer's name is on the screening list", ErrCustomerBlocked)
		}
	}
	if _, err := b.customerByLogin(req.Login); err == nil {
		return bankwire.EnrolResult{}, fmt.Errorf("%w: login %q is taken", ErrExists, req.Login)
	}
	pw, err := b.open(ctx, req.Password)
	if err != nil {
		return bankwire.EnrolResult{}, err
	}
	defer clear(pw)
	if err := password.Check(pw, req.Login, req.Phone, req.IDCard); err != nil {
		return bankwire.EnrolResult{}, err
	}
	id, err := newCustomerID()
	if err != nil {
		return bankwire.EnrolResult{}, err
	}
	c := &Customer{ID: id, Login: req.Login, Name: req.Name, Phone: req.Phone, AntiPhishing: req.AntiPhishing,
		IDCardMasked: mask.IDCard(req.IDCard), CardMasked: mask.Card(req.Card), Corporate: req.Corporate, Role: req.Role, Created: b.now().UTC()}
	if c.PasswordMAC, err = b.pwMAC(ctx, id, pw); err != nil {
		return bankwire.EnrolResult{}, err
	}
	// Envelope encryption: a fresh SM4 data key from keysvc seals the
	// numbers here; only its keysvc ciphertext is kept.
	dk, err := b.kms.DataKey(ctx, KeyPII, 16, []byte("customer:"+id))
	if err != nil {
		return bankwire.EnrolResult{}, kmsErr(err)
	}
	c.DataKeyCT = dk.Ciphertext
	c.IDCardSealed, err = smcrypto.SM4GCMSeal(dk.Plaintext, []byte(req.IDCard), []byte(id+":id_card"))
	if err == nil {
		c.CardSealed, err = smcrypto.SM4GCMSeal(dk.Plaintext, []byte(mask.CardDigits(req.Card)), []byte(id+":card"))
	}
	clear(dk.Plaintext)
	if err != nil {
		return bankwire.EnrolResult{}, err
	}
	var res bankwire.EnrolResult
	grants := wire.Policy{Grants: []wire.Grant{{Client: b.kmsClientName(), Ops: []wire.Op{wire.OpSign, wire.OpVerify, wire.OpPublic}}}}
	if req.USBPublicKey != "" {
		alg := wire.AlgECP256
		if req.USBAlgorithm == "sm2" {
			alg = wire.AlgSM2
		}
		c.USBKey = "usb-" + id
		if _, err := b.kms.CreateKey(ctx, wire.CreateKeyRequest{Name: c.USBKey, Purpose: wire.PurposeSign, Algorithm: alg,
			Protection: wire.ProtectionExternal, PublicKey: req.USBPublicKey, Policy: grants}); err != nil {
			if errors.Is(err, wire.ErrInvalidArgument) {
				return bankwire.EnrolResult{}, invalid("usb_public_key: %v", err)
			}
			return bankwire.EnrolResult{}, kmsErr(err)
		}
	}
	if req.CloudKey {
		c.CloudKey = "cust-" + id
		k, err := b.kms.CreateKey(ctx, wire.CreateKeyRequest{Name: c.CloudKey, Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256,
			Protection: wire.ProtectionWrapped, Confirm: wire.ConfirmRequired, Policy: grants})
		if err != nil {
			return bankwire.EnrolResult{}, kmsErr(err)
		}
		res.HolderSetupCode = k.HolderSetupCode
	}
	cur := req.Currency
	if cur == "" {
		cur = "CNY"
	}
	// Personal customers and a corporate's admin get an account; other
	// operators work on the corporate's accounts.
	if c.Corporate == "" || c.Role == bankwire.RoleAdmin {
		acct, err := b.Ledger.OpenAccount(ctx, ledger.OpenAccountRequest{Owner: owner(c), Currency: cur})
		if err != nil {
			return bankwire.EnrolResult{}, err
		}
		res.Account = acct.ID
	}
	if err := b.putCustomer(c, true); err != nil {
		return bankwire.EnrolResult{}, err
	}
	res.Customer = c.View()
	b.log.InfoContext(ctx, "customer enrolled", "customer", id, "usb_key", c.USBKey != "", "cloud_key", c.CloudKey != "")
	return res, nil
}

// owner is the ledger owner of a customer's accounts: the corporate id for
// corporate operators (the accounts are the company's), else the customer.
func owner(c *Customer) string {
	if c.Corporate != "" {
		return "corp:" + c.Corporate
	}
	return c.ID
}

// kmsClientName is the name keysvc knows banking by, for key policies.
func (b *Bank) kmsClientName() string {
	if b.cfg.KMSName != "" {
		return b.cfg.KMSName
	}
	return "banking"
}

// putCustomer stores c; with create, a taken login is ErrExists.
func (b *Bank) putCustomer(c *Customer, create bool) error {
	v, err := kv.Encode(c)
	if err != nil {
		return err
	}
	b.custMu.Lock()
	defer b.custMu.Unlock()
	delete(b.customers, c.ID) // read afresh after any change
	return b.db.Update(func(tx store.Tx) error {
		logins := tx.Bucket(bucketLogins)
		if create {
			if logins.Get([]byte(c.Login)) != nil {
				return fmt.Errorf("%w: login %q is taken", ErrExists, c.Login)
			}
			if err := logins.Put([]byte(c.Login), []byte(c.ID)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketCustomers).Put([]byte(c.ID), v)
	})
}

// updateCustomer changes a stored customer in one transaction: change
// edits the stored record and says whether to write it.
func (b *Bank) updateCustomer(id string, change func(*Customer) bool) error {
	b.custMu.Lock()
	defer b.custMu.Unlock()
	delete(b.customers, id)
	return b.db.Update(func(tx store.Tx) error {
		bk := tx.Bucket(bucketCustomers)
		v := bk.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("%w: customer", ErrNotFound)
		}
		var c Customer
		if err := kv.Decode(v, &c); err != nil {
			return err
		}
		if !change(&c) {
			return nil
		}
		out, err := kv.Encode(&c)
		if err != nil {
			return err
		}
		return bk.Put([]byte(id), out)
	})
}

// Customer returns a stored customer (a copy). On a store of its own
// (bbolt) it comes from a cache, since every request reads it and only
// this process's putCustomer and updateCustomer change it. On a shared
// store (PostgreSQL, several banking nodes) another node may change the
// record at any time (a password change, a new key), so every call reads
// the store: one indexed read, and never a stale record.
func (b *Bank) Customer(id string) (*Customer, error) {
	if b.db.Shared() {
		return b.loadCustomer(id)
	}
	b.custMu.RLock()
	v, ok := b.customers[id]
	b.custMu.RUnlock()
	if ok {
		c := *v
		return &c, nil
	}
	b.custMu.Lock() // exclusive: no putCustomer in between the read and the fill
	defer b.custMu.Unlock()
	c, err := b.loadCustomer(id)
	if err != nil {
		return nil, err
	}
	cached := *c
	b.customers[id] = &cached
	return c, nil
}

func (b *Bank) loadCustomer(id string) (*Customer, error) {
	var c Customer
	err := b.db.View(func(tx store.Tx) error {
		v := tx.Bucket(bucketCustomers).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("%w: customer", ErrNotFound)
		}
		return kv.Decode(v, &c)
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

func (b *Bank) customerByLogin(login string) (*Customer, error) {
	var id []byte
	err := b.db.View(func(tx store.Tx) error {
		id = append(id[:0], tx.Bucket(bucketLogins).Get([]byte(login))...)
		return nil
	})
	if err != nil { // the store's fault, never "no such login"
		return nil, fmt.Errorf("banking: look up login: %w", err)
	}
	if len(id) == 0 {
		return nil, fmt.Errorf("%w: customer", ErrNotFound)
	}
	return b.Customer(string(id))
}

// phoneOf is the otp package's phone lookup: the bank's own record.
func (b *Bank) phoneOf(_ context.Context, id string) (string, error) {
	c, err := b.Customer(id)
	if err != nil {
		return "", err
	}
	return c.Phone, nil
}
