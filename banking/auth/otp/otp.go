package otp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/keyward/keyward/banking/auth"
	"github.com/keyward/keyward/banking/internal/kv"
	"github.com/keyward/keyward/banking/store"
)

// Limits (R-AUTH-8).
const (
	Digits               = 6               // length of a code
	MaxTTL               = 6 * time.Minute // a code never lives longer
	DefaultTTL           = 5 * time.Minute
	MaxGuesses           = 5 // wrong guesses a code survives at most
	DefaultIssuesPerHour = 5
	DefaultSendTimeout   = 10 * time.Second
	maxPurposeLen        = 32
)

// Errors. Every error Verify returns for a code that did not verify is one
// of ErrOTPInvalid (as *InvalidError), ErrOTPExpired, ErrOTPUsed,
// ErrOTPLocked, ErrOTPNotFound or ErrOTPFormat; none holds the code.
var (
	ErrOTPInvalid  = errors.New("otp: wrong code")
	ErrOTPExpired  = errors.New("otp: the code has expired; ask for a new one")
	ErrOTPUsed     = errors.New("otp: the code has already been used; ask for a new one")
	ErrOTPLocked   = errors.New("otp: too many wrong codes; ask for a new one")
	ErrOTPNotFound = errors.New("otp: no code was sent for this; ask for one")
	ErrOTPFormat   = errors.New("otp: a code is 6 digits")
	ErrRateLimited = errors.New("otp: too many codes requested; try again later")
	ErrSend        = errors.New("otp: the code could not be sent")
	ErrBadInput    = errors.New("otp: invalid customer id or purpose")
	ErrConfig      = errors.New("otp: bad configuration")
)

// InvalidError is a wrong code that left the code alive: Remaining more
// wrong guesses are allowed. errors.Is(err, ErrOTPInvalid) is true.
type InvalidError struct{ Remaining int }

func (e *InvalidError) Error() string {
	return fmt.Sprintf("otp: wrong code (%d more attempts before the code is cancelled)", e.Remaining)
}

// Is makes errors.Is(err, ErrOTPInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrOTPInvalid }

// RateLimitedError says when the next code may be issued.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("otp: too many codes requested; try again in %s", e.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitedError) Is(target error) bool { return target == ErrRateLimited }

// Hasher computes the keyed hash codes are stored under. The banking app
// uses keysvc's HMAC-SM3 (a "mac" key; the key never leaves keysvc); tests
// and development use NewHMACSHA256. MAC must be deterministic for a given
// key: the code is hashed at issue and again at verification.
type Hasher interface {
	MAC(ctx context.Context, msg []byte) ([]byte, error)
}

// Verifier is a Hasher that checks a stored MAC itself, with the key
// version that made it (keysvc's mac-verify on a "kw:v<n>:…" value). With
// one, a code issued before the MAC key was rotated still verifies after
// the rotation (R-TOK-8); without one, Verify recomputes the MAC and
// compares in constant time, which only works while the key is unchanged.
type Verifier interface {
	VerifyMAC(ctx context.Context, msg, mac []byte) (bool, error)
}

// HasherFunc adapts a function to Hasher.
type HasherFunc func(ctx context.Context, msg []byte) ([]byte, error)

// MAC calls f.
func (f HasherFunc) MAC(ctx context.Context, msg []byte) ([]byte, error) { return f(ctx, msg) }

type hmacSHA256 struct{ key []byte }

// NewHMACSHA256 returns a Hasher computing HMAC-SHA256 under key (at least
// 32 bytes, copied).
func NewHMACSHA256(key []byte) (Hasher, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("%w: HMAC key must be at least 32 bytes", ErrConfig)
	}
	return hmacSHA256{key: append([]byte(nil), key...)}, nil
}

func (h hmacSHA256) MAC(_ context.Context, msg []byte) ([]byte, error) {
	m := hmac.New(sha256.New, h.key)
	m.Write(msg)
	return m.Sum(nil), nil
}

// Gateway delivers a text message to a phone. See the package
// documentation for what a real implementation must do.
type Gateway interface {
	Send(ctx context.Context, phone, text string) error
}

// Config configures a Service. DB, Hasher, Gateway and Phone are required.
type Config struct {
	DB      store.DB // buckets "auth-otp" and "auth-otp-issues"
	Hasher  Hasher
	Gateway Gateway
	// Phone returns the customer's registered mobile number. It comes from
	// the bank's own records, never from the request (R-SRV-1).
	Phone func(ctx context.Context, customerID string) (string, error)

	TTL           time.Duration // 0: DefaultTTL; at most MaxTTL
	MaxGuesses    int           // 0: MaxGuesses; 1..MaxGuesses
	IssuesPerHour int           // 0: DefaultIssuesPerHour; codes per customer per sliding hour, all purposes
	SendTimeout   time.Duration // 0: DefaultSendTimeout; deadline given to Gateway.Send
	// Message builds the SMS text; nil: DefaultMessage (Chinese, with
	// the purpose named and the security notice, 6.4.3 b). A custom one
	// must keep the code once and the notice.
	Message func(purpose, code string, ttl time.Duration) string
	Alerts  auth.Alerts      // nil: dropped
	Now     func() time.Time // nil: time.Now
}

// Service issues and verifies one-time codes.
type Service struct {
	cfg  Config
	rand io.Reader
}

var (
	bucketCodes  = []byte("auth-otp")
	bucketIssues = []byte("auth-otp-issues")
)

// New checks cfg, fills defaults and prepares the buckets.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.DB == nil:
		return nil, fmt.Errorf("%w: DB is nil", ErrConfig)
	case cfg.Hasher == nil:
		return nil, fmt.Errorf("%w: Hasher is nil", ErrConfig)
	case cfg.Gateway == nil:
		return nil, fmt.Errorf("%w: Gateway is nil", ErrConfig)
	case cfg.Phone == nil:
		return nil, fmt.Errorf("%w: Phone is nil", ErrConfig)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < 30*time.Second || cfg.TTL > MaxTTL {
		return nil, fmt.Errorf("%w: TTL must be between 30s and %s (R-AUTH-8)", ErrConfig, MaxTTL)
	}
	if cfg.MaxGuesses == 0 {
		cfg.MaxGuesses = MaxGuesses
	}
	if cfg.MaxGuesses < 1 || cfg.MaxGuesses > MaxGuesses {
		return nil, fmt.Errorf("%w: MaxGuesses must be between 1 and %d", ErrConfig, MaxGuesses)
	}
	if cfg.IssuesPerHour == 0 {
		cfg.IssuesPerHour = DefaultIssuesPerHour
	}
	if cfg.IssuesPerHour < 1 || cfg.IssuesPerHour > 100 {
		return nil, fmt.Errorf("%w: IssuesPerHour must be between 1 and 100", ErrConfig)
	}
	if cfg.SendTimeout == 0 {
		cfg.SendTimeout = DefaultSendTimeout
	}
	if cfg.SendTimeout < 0 {
		return nil, fmt.Errorf("%w: SendTimeout is negative", ErrConfig)
	}
	if cfg.Message == nil {
		cfg.Message = DefaultMessage
	}
	if cfg.Alerts == nil {
		cfg.Alerts = auth.NopAlerts{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := kv.Ensure(cfg.DB, bucketCodes, bucketIssues); err != nil {
		return nil, fmt.Errorf("otp: %w", err)
	}
	return &Service{cfg: cfg, rand: rand.Reader}, nil
}

// record is what is stored per customer and purpose: never the code.
type record struct {
	Nonce     []byte    `json:"nonce"` // random per issue, part of the MAC input
	MAC       []byte    `json:"mac"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Failures  int       `json:"failures"`
	Used      bool      `json:"used"`
}

// issues is the sliding-hour issue log of one customer.
type issues struct {
	Times []time.Time `json:"times"`
	// AlertedFor is Times[0] when the rate-limit alert was last raised, so
	// a burst raises one alert per window, not one per refusal.
	AlertedFor time.Time `json:"alerted_for,omitzero"`
}

func (l *issues) prune(now time.Time) {
	i := 0
	for i < len(l.Times) && !l.Times[i].After(now.Add(-time.Hour)) {
		i++
	}
	l.Times = l.Times[i:]
}

// Sent tells the caller where the code went (masked) and until when it is
// valid. It never holds the code.
type Sent struct {
	Phone     string // masked, e.g. "138****5678"
	ExpiresAt time.Time
}

func checkInput(customerID, purpose string) error {
	if err := kv.CheckID("customer id", customerID); err != nil {
		return fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if purpose == "" || len(purpose) > maxPurposeLen || strings.Trim(purpose, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != "" {
		return fmt.Errorf("%w: purpose must be 1-%d characters of a-z, 0-9, '-', '_', '.'", ErrBadInput, maxPurposeLen)
	}
	return nil
}

// macInput binds the code to its customer, purpose and issue: a fixed
// prefix, the two ids (no 0x00 inside, see kv.CheckID), then the 16-byte
// nonce and the 6-digit code, both of fixed length.
func macInput(customerID, purpose string, nonce []byte, code []byte) []byte {
	in := make([]byte, 0, 64+len(customerID)+len(purpose))
	in = append(in, "keyward/otp/v1\x00"...)
	in = append(in, customerID...)
	in = append(in, 0)
	in = append(in, purpose...)
	in = append(in, 0)
	in = append(in, nonce...)
	return append(in, code...)
}

// randomDigits returns n decimal digits, each uniform: a random uint32 is
// rejected when it falls in the incomplete last block of 10^n (so no value
// is more likely than another), else reduced modulo 10^n.
func randomDigits(r io.Reader, n int) ([]byte, error) {
	mod := uint32(1)
	for range n {
		mod *= 10
	}
	limit := (1<<32 - 1) / mod * mod // largest multiple of mod ≤ 2^32-1
	var b [4]byte
	for range 1000 {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		if v >= limit {
			continue
		}
		v %= mod
		out := make([]byte, n)
		for i := n - 1; i >= 0; i-- {
			out[i] = byte('0' + v%10)
			v /= 10
		}
		return out, nil
	}
	return nil, errors.New("random source keeps returning values out of range")
}
