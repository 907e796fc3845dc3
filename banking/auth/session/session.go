package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/keyward/keyward/banking/internal/kv"
	"github.com/keyward/keyward/banking/store"
)

// Defaults and limits.
const (
	IDBytes                = 32 // 256 random bits (R-AUTH-5 asks ≥ 128)
	DefaultIdleTimeout     = 10 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
	DefaultFlushInterval   = 15 * time.Second
	DefaultSweepInterval   = time.Minute
)

// Level is how strongly the customer proved who they are in this session.
// The zero value is not a level.
type Level int

// Levels, weakest first.
const (
	LevelPassword Level = iota + 1 // password (with challenge) only
	LevelOTP                       // password, then an SMS one-time code (step-up)
)

func (l Level) String() string {
	switch l {
	case LevelPassword:
		return "password"
	case LevelOTP:
		return "password+otp"
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

func (l Level) valid() bool { return l == LevelPassword || l == LevelOTP }

// Errors. ErrNotFound and ErrExpired both mean "log in again" (HTTP 401);
// they differ only so the client can say why.
var (
	ErrNotFound        = errors.New("session: not found or ended")
	ErrExpired         = errors.New("session: expired")
	ErrStepUpRequired  = errors.New("session: this needs a fresh verification (step-up)")
	ErrBadInput        = errors.New("session: invalid customer, device, address or level")
	ErrClosed          = errors.New("session: manager closed")
	ErrConfig          = errors.New("session: bad configuration")
	errRecordCorrupted = errors.New("session: stored record unreadable")
)

// Config configures a Manager. Zero durations mean the defaults.
type Config struct {
	DB              store.DB      // buckets "auth-sessions" and "auth-sessions-by-customer"
	IdleTimeout     time.Duration // ends a session not touched for this long (10 min)
	AbsoluteTimeout time.Duration // ends every session this long after creation (12 h)
	// FlushInterval is how often last-seen times kept in memory are
	// written to the database (15 s); at most IdleTimeout/2.
	FlushInterval time.Duration
	// SweepInterval is how often expired sessions are deleted (1 min);
	// negative: never by itself (call Sweep).
	SweepInterval time.Duration
	Now           func() time.Time // nil: time.Now
}

// Session is what the app learns about a live session. It never holds the
// session id.
type Session struct {
	// Ref names the session in logs, audit records and "your devices"
	// lists: the first 8 bytes of SHA-256(id) in hex. It cannot be used as
	// a session id.
	Ref         string
	Customer    string
	Device      string
	DeviceName  string // what the client calls the device (Params.DeviceName)
	IP          string // the address it was created from
	Created     time.Time
	LastSeen    time.Time
	Level       Level
	SteppedUpAt time.Time // last step-up (zero if none); see RequireStepUp
	ExpiresAt   time.Time // the earlier of idle and absolute expiry, as of LastSeen
}

// record is the stored form, keyed by SHA-256 of the id.
type record struct {
	Customer    string    `json:"customer"`
	Device      string    `json:"device"`
	DeviceName  string    `json:"device_name,omitempty"`
	IP          string    `json:"ip"`
	Created     time.Time `json:"created"`
	LastSeen    time.Time `json:"last_seen"`
	Level       Level     `json:"level"`
	SteppedUpAt time.Time `json:"stepped_up_at,omitzero"`
}

type hash = [sha256.Size]byte

type entry struct {
	rec   record
	dirty bool // LastSeen newer than the database's
}

var (
	bucketSessions   = []byte("auth-sessions")
	bucketByCustomer = []byte("auth-sessions-by-customer")
)

// Manager creates, checks and ends sessions. See the package documentation.
type Manager struct {
	cfg Config

	mu     sync.Mutex
	cache  map[hash]*entry
	gen    uint64 // bumped after every committed change to an existing session
	closed bool

	stop chan struct{}
	done chan struct{}
}

// Open checks cfg, prepares the buckets and starts the write-behind and
// sweep goroutine. Close stops it. Use one Manager per database.
func Open(cfg Config) (*Manager, error) {
	if cfg.DB == nil {
		return nil, fmt.Errorf("%w: DB is nil", ErrConfig)
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.AbsoluteTimeout == 0 {
		cfg.AbsoluteTimeout = DefaultAbsoluteTimeout
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = min(DefaultFlushInterval, cfg.IdleTimeout/2)
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	switch {
	case cfg.IdleTimeout < time.Minute || cfg.AbsoluteTimeout < cfg.IdleTimeout:
		return nil, fmt.Errorf("%w: IdleTimeout must be ≥ 1 min and AbsoluteTimeout ≥ IdleTimeout", ErrConfig)
	case cfg.FlushInterval < 100*time.Millisecond || cfg.FlushInterval > cfg.IdleTimeout/2:
		return nil, fmt.Errorf("%w: FlushInterval must be between 100ms and IdleTimeout/2", ErrConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := kv.Ensure(cfg.DB, bucketSessions, bucketByCustomer); err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	m := &Manager{cfg: cfg, cache: make(map[hash]*entry), stop: make(chan struct{}), done: make(chan struct{})}
	go m.loop()
	return m, nil
}

func (m *Manager) loop() {
	defer close(m.done)
	flush := time.NewTicker(m.cfg.FlushInterval)
	defer flush.Stop()
	var sweep <-chan time.Time
	if m.cfg.SweepInterval > 0 {
		t := time.NewTicker(m.cfg.SweepInterval)
		defer t.Stop()
		sweep = t.C
	}
	for {
		select {
		case <-m.stop:
			return
		case <-flush.C:
			_ = m.Flush(context.Background()) // retried next tick
		case <-sweep:
			_, _ = m.Sweep(context.Background())
		}
	}
}

// Close stops the background goroutine and writes pending last-seen
// times. Calls after Close fail with ErrClosed.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	close(m.stop)
	<-m.done
	return m.flush()
}

// Params describe a new session.
type Params struct {
	Customer string
	Device   string
	// DeviceName is what the client calls the device, kept until the
	// login's step-up remembers the device under it (optional).
	DeviceName string
	IP         netip.Addr
	Level      Level
}

// Create starts a session and returns its id: 32 bytes from crypto/rand as
// unpadded base64url (43 characters), given to the client once (a cookie
// with Secure, HttpOnly, SameSite=Strict). Only SHA-256(id) is stored. The
// session is committed to disk before Create returns.
func (m *Manager) Create(ctx context.Context, p Params) (string, Session, error) {
	if err := kv.CheckID("customer", p.Customer); err != nil {
		return "", Session{}, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if err := kv.CheckID("device", p.Device); err != nil {
		return "", Session{}, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if !p.IP.IsValid() || !p.Level.valid() {
		return "", Session{}, ErrBadInput
	}
	if err := m.open(ctx); err != nil {
		return "", Session{}, err
	}
	var raw [IDBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", Session{}, fmt.Errorf("session: random id: %w", err)
	}
	h := sha256.Sum256(raw[:])
	now := m.cfg.Now()
	rec := record{Customer: p.Customer, Device: p.Device, DeviceName: p.DeviceName, IP: p.IP.Unmap().String(),
		Created: now, LastSeen: now, Level: p.Level}
	if p.Level == LevelOTP {
		rec.SteppedUpAt = now
	}
	err := m.cfg.DB.Batch(func(tx store.Tx) error {
		b := tx.Bucket(bucketSessions)
		if b.Get(h[:]) != nil { // 2^-256; refuse rather than overwrite
			return errors.New("session id collision")
		}
		if err := kv.Put(b, h[:], &rec); err != nil {
			return err
		}
		return tx.Bucket(bucketByCustomer).Put(indexKey(p.Customer, h), nil)
	})
	if err != nil {
		return "", Session{}, fmt.Errorf("session: create: %w", err)
	}
	m.mu.Lock()
	m.cache[h] = &entry{rec: rec}
	m.mu.Unlock()
	return base64.RawURLEncoding.EncodeToString(raw[:]), m.view(h, rec), nil
}

func indexKey(customer string, h hash) []byte {
	return append(kv.Prefix(customer), h[:]...)
}

func (m *Manager) open(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	return nil
}

// parseID turns a client-supplied id into its hash. Anything that is not
// exactly 43 characters of strict unpadded base64url is ErrNotFound.
func parseID(id string) (hash, error) {
	if len(id) != base64.RawURLEncoding.EncodedLen(IDBytes) {
		return hash{}, ErrNotFound
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(id)
	if err != nil || len(raw) != IDBytes {
		return hash{}, ErrNotFound
	}
	return sha256.Sum256(raw), nil
}

func (m *Manager) expiry(rec *record) time.Time {
	idle := rec.LastSeen.Add(m.cfg.IdleTimeout)
	abs := rec.Created.Add(m.cfg.AbsoluteTimeout)
	if abs.Before(idle) {
		return abs
	}
	return idle
}

func (m *Manager) view(h hash, rec record) Session {
	return Session{
		Ref: hex.EncodeToString(h[:8]), Customer: rec.Customer, Device: rec.Device, DeviceName: rec.DeviceName, IP: rec.IP,
		Created: rec.Created, LastSeen: rec.LastSeen, Level: rec.Level, SteppedUpAt: rec.SteppedUpAt,
		ExpiresAt: m.expiry(&rec),
	}
}
