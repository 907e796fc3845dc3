// Package device remembers each customer's known devices and decides when a
// login needs step-up verification (R-AUTH-9).
//
// # The rule
//
// Assess(customer, device, os, ip) asks for step-up (an SMS code) when any
// of these holds, and lists every reason that applied:
//
//   - new-device: the device id is not among the customer's known devices;
//   - os-changed: the device is known but reports a different OS string
//     than when it was last remembered;
//   - ip-changed: the address is not on the same network as the device's
//     last address. "Same network" (SameNetwork) is the same IPv4 /24 or
//     the same IPv6 /64: a home or mobile line moves within those all the
//     time (DHCP, IPv6 privacy addresses, RFC 4941), and asking for a code
//     on every such move trains customers to type codes without reading.
//     A change between IPv4 and IPv6 counts as a change. IPv4-mapped IPv6
//     addresses are compared as IPv4.
//
// Assess only reads. After the customer has fully authenticated — the
// password, plus the code when Assess asked for one — call Remember, which
// records the device with its OS and address (and moves its "last
// address" along within the same network). Never call Remember before the
// step-up has succeeded: that would let the next attempt skip it.
//
// # What to pass
//
// The device id is what the client app generated at installation and keeps
// (a random value, not a hardware id); the web client keeps one in local
// storage. It is stored only as SHA-256, keyed per customer, so a copy of
// the database does not give out ids that would pass as known devices.
// The OS string should be the OS family and major version ("iOS 17",
// "Android 14", "Windows 11"): a full build string would change with every
// update and ask for a code each time. It is compared exactly after
// trimming spaces.
//
// # Names and refs
//
// A device is listed by its Ref (RefOf: the first 8 bytes of SHA-256 of
// its id, in hex), which Forget takes and which cannot be turned back into
// an id. RememberNamed also keeps the name the client gave the device
// ("小王的手机"; CheckName: at most 32 characters, no control or
// formatting characters), so a customer can tell devices apart.
//
// # Limitations
//
// A customer keeps at most Config.MaxDevices (default 10) devices; Remember
// forgets the one seen least recently beyond that. The device id and OS are
// claims of the client: they raise the bar (an attacker must also steal
// them) but are not proof; the OTP step-up is what the rule protects.
package device

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keyward/keyward/banking/internal/kv"
	"github.com/keyward/keyward/banking/store"
)

// DefaultMaxDevices is the number of devices kept per customer when
// Config.MaxDevices is zero.
const DefaultMaxDevices = 10

// Reasons for step-up.
type Reason string

// The reasons Assess can give.
const (
	ReasonNewDevice Reason = "new-device"
	ReasonOSChanged Reason = "os-changed"
	ReasonIPChanged Reason = "ip-changed"
)

// Errors.
var (
	ErrBadInput = errors.New("device: invalid customer, device, OS or address")
	ErrNotFound = errors.New("device: no such device")
	ErrConfig   = errors.New("device: bad configuration")
)

// Config configures a Registry.
type Config struct {
	DB         store.DB         // bucket "auth-devices"
	MaxDevices int              // 0: DefaultMaxDevices; 1..100
	Now        func() time.Time // nil: time.Now
}

// Registry holds the known devices.
type Registry struct{ cfg Config }

var bucketDevices = []byte("auth-devices")

// New checks cfg and prepares the bucket.
func New(cfg Config) (*Registry, error) {
	if cfg.DB == nil {
		return nil, fmt.Errorf("%w: DB is nil", ErrConfig)
	}
	if cfg.MaxDevices == 0 {
		cfg.MaxDevices = DefaultMaxDevices
	}
	if cfg.MaxDevices < 1 || cfg.MaxDevices > 100 {
		return nil, fmt.Errorf("%w: MaxDevices must be between 1 and 100", ErrConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := kv.Ensure(cfg.DB, bucketDevices); err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	return &Registry{cfg: cfg}, nil
}

// Device is a remembered device, as shown to the customer or an officer.
type Device struct {
	Ref       string // first 8 bytes of SHA-256(device id), hex; for Forget
	Name      string // what the customer calls it ("Ana's phone"); may be empty
	OS        string
	LastIP    string
	FirstSeen time.Time
	LastSeen  time.Time
}

type record struct {
	Name      string    `json:"name,omitempty"`
	OS        string    `json:"os"`
	LastIP    string    `json:"last_ip"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// Assessment is Assess's answer.
type Assessment struct {
	StepUp  bool     // true when Reasons is not empty
	Reasons []Reason // in the order new-device, os-changed, ip-changed
}

func check(customer, device, os string, ip netip.Addr) (string, error) {
	if err := kv.CheckID("customer", customer); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if err := kv.CheckID("device", device); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	os = strings.TrimSpace(os)
	if err := kv.CheckID("os", os); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if !ip.IsValid() {
		return "", fmt.Errorf("%w: no address", ErrBadInput)
	}
	return os, nil
}

func deviceKey(customer, device string) []byte {
	h := sha256.Sum256([]byte(device))
	return append(kv.Prefix(customer), hex.EncodeToString(h[:])...)
}

// RefOf is the Ref a device id is listed under (Device.Ref): the first 8
// bytes of SHA-256(device id) in hex. The session package names a
// session's device the same way, so "forget this device" can end the
// device's sessions too (session.Manager.LogoutDevice).
func RefOf(device string) string {
	h := sha256.Sum256([]byte(device))
	return hex.EncodeToString(h[:8])
}

// SameNetwork reports whether b is on a's network for the step-up rule:
// the same IPv4 /24 or the same IPv6 /64.
func SameNetwork(a, b netip.Addr) bool {
	a, b = a.Unmap().WithZone(""), b.Unmap().WithZone("")
	if !a.IsValid() || !b.IsValid() || a.Is4() != b.Is4() {
		return false
	}
	bits := 64
	if a.Is4() {
		bits = 24
	}
	pa, _ := a.Prefix(bits)
	pb, _ := b.Prefix(bits)
	return pa == pb
}

// Assess tells whether this login needs step-up. See the package
// documentation for the rule.
func (r *Registry) Assess(ctx context.Context, customer, device, os string, ip netip.Addr) (Assessment, error) {
	os, err := check(customer, device, os, ip)
	if err != nil {
		return Assessment{}, err
	}
	if err := ctx.Err(); err != nil {
		return Assessment{}, err
	}
	var rec record
	var found bool
	err = r.cfg.DB.View(func(tx store.Tx) (err error) {
		found, err = kv.Get(tx.Bucket(bucketDevices), deviceKey(customer, device), &rec)
		return err
	})
	if err != nil {
		return Assessment{}, fmt.Errorf("device: %w", err)
	}
	var a Assessment
	if !found {
		a.Reasons = append(a.Reasons, ReasonNewDevice)
	} else {
		if rec.OS != os {
			a.Reasons = append(a.Reasons, ReasonOSChanged)
		}
		last, err := netip.ParseAddr(rec.LastIP)
		if err != nil || !SameNetwork(last, ip) {
			a.Reasons = append(a.Reasons, ReasonIPChanged)
		}
	}
	a.StepUp = len(a.Reasons) > 0
	return a, nil
}

// Remember records the device as known with this OS and address, after a
// fully authenticated login (see the package documentation).
func (r *Registry) Remember(ctx context.Context, customer, device, os string, ip netip.Addr) error {
	return r.RememberNamed(ctx, customer, device, "", os, ip)
}

// MaxNameLen is the longest device name, in characters.
const MaxNameLen = 32

// CheckName refuses a device name longer than MaxNameLen characters, not
// UTF-8, or holding a control or formatting character (a bidirectional
// override would make a list lie about which device is which). Empty is
// allowed: the device has no name.
func CheckName(name string) error {
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxNameLen {
		return fmt.Errorf("%w: a device name is at most %d characters of UTF-8", ErrBadInput, MaxNameLen)
	}
	for _, c := range name {
		if unicode.IsControl(c) || unicode.Is(unicode.Cf, c) {
			return fmt.Errorf("%w: a device name holds no control or formatting characters", ErrBadInput)
		}
	}
	return nil
}

// RememberNamed is Remember that also names the device (what the client
// says it is called: "Ana's phone", "办公室电脑"), shown in List; an empty
// name keeps the name it had.
func (r *Registry) RememberNamed(ctx context.Context, customer, device, name, os string, ip netip.Addr) error {
	os, err := check(customer, device, os, ip)
	if err != nil {
		return err
	}
	if err := CheckName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := r.cfg.Now()
	key := deviceKey(customer, device)
	err = r.cfg.DB.Update(func(tx store.Tx) error {
		b := tx.Bucket(bucketDevices)
		var rec record
		found, err := kv.Get(b, key, &rec)
		if err != nil {
			return err
		}
		if !found {
			rec.FirstSeen = now
		}
		if name != "" {
			rec.Name = name
		}
		rec.OS, rec.LastIP, rec.LastSeen = os, ip.Unmap().WithZone("").String(), now
		if err := kv.Put(b, key, &rec); err != nil {
			return err
		}
		return r.trim(b, customer)
	})
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	return nil
}

// trim forgets the least recently seen devices beyond MaxDevices.
func (r *Registry) trim(b store.Bucket, customer string) error {
	type item struct {
		key  []byte
		seen time.Time
	}
	var items []item
	prefix := kv.Prefix(customer)
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		var rec record
		_, _ = kv.Get(b, k, &rec) // an unreadable record sorts first and goes
		items = append(items, item{bytes.Clone(k), rec.LastSeen})
	}
	if len(items) <= r.cfg.MaxDevices {
		return nil
	}
	sort.Slice(items, func(i, j int) bool { return items[i].seen.Before(items[j].seen) })
	for _, it := range items[:len(items)-r.cfg.MaxDevices] {
		if err := b.Delete(it.key); err != nil {
			return err
		}
	}
	return nil
}

// List returns the customer's known devices, most recently seen first.
func (r *Registry) List(ctx context.Context, customer string) ([]Device, error) {
	if err := kv.CheckID("customer", customer); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	var out []Device
	err := r.cfg.DB.View(func(tx store.Tx) error {
		b := tx.Bucket(bucketDevices)
		prefix := kv.Prefix(customer)
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			var rec record
			if _, err := kv.Get(b, k, &rec); err != nil {
				continue
			}
			out = append(out, Device{Ref: string(k[len(prefix) : len(prefix)+16]), Name: rec.Name, OS: rec.OS, LastIP: rec.LastIP,
				FirstSeen: rec.FirstSeen, LastSeen: rec.LastSeen})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastSeen.After(out[j].LastSeen) })
	return out, nil
}

// Forget removes one device by its Ref (from List); the next login from it
// asks for step-up.
func (r *Registry) Forget(ctx context.Context, customer, ref string) error {
	if err := kv.CheckID("customer", customer); err != nil {
		return fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if len(ref) != 16 {
		return ErrNotFound
	}
	return r.cfg.DB.Update(func(tx store.Tx) error {
		b := tx.Bucket(bucketDevices)
		prefix := append(kv.Prefix(customer), ref...)
		c := b.Cursor()
		if k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) {
			return b.Delete(bytes.Clone(k))
		}
		return ErrNotFound
	})
}

// ForgetAll removes every device of the customer (after a suspected
// compromise, or when the customer asks) and returns how many.
func (r *Registry) ForgetAll(ctx context.Context, customer string) (int, error) {
	if err := kv.CheckID("customer", customer); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	n := 0
	err := r.cfg.DB.Update(func(tx store.Tx) error {
		n = 0
		b := tx.Bucket(bucketDevices)
		prefix := kv.Prefix(customer)
		var keys [][]byte
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("device: %w", err)
	}
	return n, nil
}
