package password

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keyward/keyward/banking/internal/kv"
	"github.com/keyward/keyward/banking/store"
)

// ChallengeSize is the length of a login challenge in bytes (256 bits).
const ChallengeSize = 32

// MaxChallengeTTL is the longest a challenge may live (R-AUTH-4: short
// expiry); DefaultChallengeTTL is what a zero Config.TTL means.
const (
	MaxChallengeTTL     = 2 * time.Minute
	DefaultChallengeTTL = 2 * time.Minute
)

// Errors of login challenges. ErrChallengeMismatch is deliberately vague:
// it does not say which part of the decrypted blob was wrong.
var (
	ErrChallengeUnknown  = errors.New("password: unknown login challenge")
	ErrChallengeExpired  = errors.New("password: login challenge expired; ask for a new one")
	ErrChallengeUsed     = errors.New("password: login challenge already used (replay)")
	ErrChallengeMismatch = errors.New("password: the encrypted login data does not match the challenge")
	ErrConfig            = errors.New("password: bad configuration")
)

var bucketChallenges = []byte("auth-challenges")

// ChallengeConfig configures Challenges.
type ChallengeConfig struct {
	DB  store.DB         // required; the bucket "auth-challenges" is created
	TTL time.Duration    // 0 means DefaultChallengeTTL; at most MaxChallengeTTL
	Now func() time.Time // nil means time.Now
}

// Challenges issues and consumes login challenges (R-AUTH-4). A challenge
// is 32 random bytes, handed out as unpadded base64url (43 characters) and
// stored only as its SHA-256, with its expiry and a used flag.
//
// # Concurrency
//
// Consume is one store transaction (through DB.Batch, so concurrent logins
// share an fsync): of any number of concurrent consumers of one challenge,
// exactly one succeeds and the others get ErrChallengeUsed.
//
// # Cleaning up
//
// A consumed challenge is kept (as used) until it expires, so a replay is
// told apart from a guess. Expired records are deleted by Sweep, which New
// also runs by itself at most once per TTL.
type Challenges struct {
	db  store.DB
	ttl time.Duration
	now func() time.Time

	mu        sync.Mutex
	lastSweep time.Time
}

// Challenge is what the client gets: the value to append to the password
// before encrypting (after decoding it, see SplitPasswordChallenge) and
// when it expires.
type Challenge struct {
	Value     string    // unpadded base64url of 32 bytes
	ExpiresAt time.Time // after this, Consume says ErrChallengeExpired
}

// NewChallenges prepares the bucket and returns the issuer.
func NewChallenges(cfg ChallengeConfig) (*Challenges, error) {
	if cfg.DB == nil {
		return nil, fmt.Errorf("%w: ChallengeConfig.DB is nil", ErrConfig)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultChallengeTTL
	}
	if cfg.TTL < time.Second || cfg.TTL > MaxChallengeTTL {
		return nil, fmt.Errorf("%w: challenge TTL must be between 1s and %s (R-AUTH-4)", ErrConfig, MaxChallengeTTL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := kv.Ensure(cfg.DB, bucketChallenges); err != nil {
		return nil, fmt.Errorf("password: %w", err)
	}
	return &Challenges{db: cfg.DB, ttl: cfg.TTL, now: cfg.Now}, nil
}

// New issues a challenge. Its record is committed before New returns.
func (c *Challenges) New(ctx context.Context) (Challenge, error) {
	if err := ctx.Err(); err != nil {
		return Challenge{}, err
	}
	var raw [ChallengeSize]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Challenge{}, fmt.Errorf("password: random challenge: %w", err)
	}
	now := c.now()
	exp := now.Add(c.ttl)
	h := sha256.Sum256(raw[:])
	err := c.db.Batch(func(tx store.Tx) error {
		return tx.Bucket(bucketChallenges).Put(h[:], encodeRecord(exp, false))
	})
	if err != nil {
		return Challenge{}, fmt.Errorf("password: store challenge: %w", err)
	}
	c.maybeSweep(now)
	return Challenge{Value: base64.RawURLEncoding.EncodeToString(raw[:]), ExpiresAt: exp}, nil
}

// Consume marks the challenge used. It fails with ErrChallengeUnknown (never
// issued, malformed, or swept after expiry), ErrChallengeExpired or
// ErrChallengeUsed. A challenge is consumed even when what follows (the
// password check) fails: it is single use whatever the outcome.
func (c *Challenges) Consume(ctx context.Context, value string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	raw, ok := decodeChallenge(value)
	if !ok {
		return ErrChallengeUnknown
	}
	h := sha256.Sum256(raw)
	now := c.now()
	var result error
	err := c.db.Batch(func(tx store.Tx) error {
		b := tx.Bucket(bucketChallenges)
		exp, used, found := decodeRecord(b.Get(h[:]))
		switch {
		case !found:
			result = ErrChallengeUnknown
		case used:
			result = ErrChallengeUsed
		case !now.Before(exp):
			result = ErrChallengeExpired
		default:
			result = nil
			return b.Put(h[:], encodeRecord(exp, true))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("password: consume challenge: %w", err)
	}
	return result
}

// Redeem consumes the challenge and then checks that plain, the blob keysvc
// decrypted, is password ‖ 0x00 ‖ challenge (SplitPasswordChallenge). It
// returns the password as a new slice; the caller wipes plain and the
// password when done. The challenge is consumed first, so a blob that fails
// the check cannot be retried against the same challenge.
func (c *Challenges) Redeem(ctx context.Context, plain []byte, value string) ([]byte, error) {
	if err := c.Consume(ctx, value); err != nil {
		return nil, err
	}
	return SplitPasswordChallenge(plain, value)
}

// SplitPasswordChallenge checks the decrypted login blob and returns the
// password. The encoding (R-AUTH-4) is
//
//	password (1–1024 bytes, no 0x00) ‖ 0x00 ‖ challenge (the 32 bytes, base64url-decoded)
//
// that is, the client decodes the challenge value it was given and appends
// a zero byte and those 32 bytes to the UTF-8 password before encrypting.
// The challenge has a fixed length and sits at the end, and passwords never
// contain 0x00 (Check refuses control characters), so the split is
// unambiguous; the separator also catches a client that forgot to decode
// the challenge (43 bytes of text instead of 32). The challenge bytes are
// compared in constant time. Any deviation is ErrChallengeMismatch. The
// returned password is a copy; plain is not modified.
//
// SplitPasswordChallenge does not consume the challenge: use
// Challenges.Redeem, or call Consume yourself.
func SplitPasswordChallenge(plain []byte, challenge string) ([]byte, error) {
	raw, ok := decodeChallenge(challenge)
	if !ok {
		return nil, ErrChallengeMismatch
	}
	n := len(plain) - ChallengeSize - 1 // password length
	if n < 1 || n > 1024 {
		return nil, ErrChallengeMismatch
	}
	tailOK := subtle.ConstantTimeCompare(plain[n+1:], raw)
	if tailOK != 1 || plain[n] != 0 || bytes.IndexByte(plain[:n], 0) >= 0 {
		return nil, ErrChallengeMismatch
	}
	return bytes.Clone(plain[:n]), nil
}

// Sweep deletes expired challenge records and returns how many.
func (c *Challenges) Sweep(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := c.now()
	n := 0
	err := c.db.Update(func(tx store.Tx) error {
		b := tx.Bucket(bucketChallenges)
		var dead [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if exp, _, ok := decodeRecord(v); !ok || !now.Before(exp) {
				dead = append(dead, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(dead)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("password: sweep challenges: %w", err)
	}
	return n, nil
}

func (c *Challenges) maybeSweep(now time.Time) {
	c.mu.Lock()
	due := now.Sub(c.lastSweep) >= c.ttl
	if due {
		c.lastSweep = now
	}
	c.mu.Unlock()
	if due {
		// Best effort: a failed sweep is retried after the next TTL.
		_, _ = c.Sweep(context.Background())
	}
}

func decodeChallenge(s string) ([]byte, bool) {
	if base64.RawURLEncoding.EncodedLen(ChallengeSize) != len(s) {
		return nil, false
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(raw) != ChallengeSize {
		return nil, false
	}
	return raw, true
}

// A record is the expiry (Unix nanoseconds, big-endian) and a used byte.
func encodeRecord(exp time.Time, used bool) []byte {
	v := make([]byte, 9)
	binary.BigEndian.PutUint64(v, uint64(exp.UnixNano()))
	if used {
		v[8] = 1
	}
	return v
}

func decodeRecord(v []byte) (exp time.Time, used, found bool) {
	if len(v) != 9 {
		return time.Time{}, false, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))), v[8] == 1, true
}
