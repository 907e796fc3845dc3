// Package captcha is the image captcha banking asks for after repeated
// failed logins (seed 6.2.3.2 captcha a–d; issue 18 item 5).
//
// A captcha is six random digits drawn by github.com/dchest/captcha
// (distorted digits, noise circles and a strike-through line) into a PNG
// on the server. The client gets the image and an id, never the answer:
//
//   - generated and checked on the server only: the digits come from
//     crypto/rand, the image is drawn here, and the store keeps only a
//     keyed MAC of the answer bound to the captcha's id (through the
//     bank's keysvc MAC key in banking; the Hasher), so neither the store
//     nor a log holds an answer (a);
//   - random (b): ids and digits from crypto/rand, the drawing seeded by
//     a per-process secret;
//   - single-use (c): Check deletes the captcha before it compares, in the
//     same store transaction that reads it, so a captcha is checked once
//     — right or wrong — on whichever node;
//   - time-limited (d): at most MaxTTL (2 minutes) after issue.
//
// Captchas live in the banking store (bucket "bank-captcha"): one node
// issues, another checks, as stateless banking nodes on PostgreSQL do.
// Sweep deletes expired ones.
//
// # Limitations
//
// An image captcha slows a password-guessing script; it does not stop a
// person or an OCR service. The bound on guesses stays the brute-force
// guard's lock (banking/auth/bruteforce).
package captcha

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	dcaptcha "github.com/dchest/captcha"

	"github.com/keyward/keyward/banking/internal/captchahook"
	"github.com/keyward/keyward/banking/internal/kv"
	"github.com/keyward/keyward/banking/store"
)

// Limits.
const (
	Digits        = 6
	MaxTTL        = 2 * time.Minute
	DefaultWidth  = 240
	DefaultHeight = 80
	idLen         = 26 // base32 of 16 random bytes
)

// Errors of Check. ErrRequired is what banking answers when a login
// needs a captcha and came without one. None holds an answer.
var (
	ErrRequired = errors.New("captcha: a captcha is required after repeated failed logins; fetch one from GET /v1/login/captcha")
	ErrWrong    = errors.New("captcha: wrong captcha; fetch a new one")
	ErrExpired  = errors.New("captcha: the captcha has expired; fetch a new one")
	ErrUnknown  = errors.New("captcha: no such captcha, or it was already used; fetch a new one")
	ErrFormat   = errors.New("captcha: a captcha answer is its digits")
	ErrConfig   = errors.New("captcha: bad configuration")
)

// Hasher keys the stored answer; banking's uses keysvc's MAC key. With
// a Verifier beside it, Check asks it to verify (keysvc's mac-verify,
// which survives a key rotation); else it recomputes and compares in
// constant time.
type Hasher interface {
	MAC(ctx context.Context, msg []byte) ([]byte, error)
}

// Verifier checks a stored MAC itself.
type Verifier interface {
	VerifyMAC(ctx context.Context, msg, mac []byte) (bool, error)
}

// Config configures a Service; DB and Hasher are required.
type Config struct {
	DB            store.DB
	Hasher        Hasher
	TTL           time.Duration // 0: MaxTTL; at most MaxTTL
	Width, Height int           // image size; 0: 240×80
	Now           func() time.Time
}

// Service issues and checks captchas.
type Service struct{ cfg Config }

var bucket = []byte("bank-captcha")

// New checks cfg and prepares the bucket.
func New(cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Hasher == nil {
		return nil, fmt.Errorf("%w: DB and Hasher are required", ErrConfig)
	}
	if cfg.TTL == 0 {
		cfg.TTL = MaxTTL
	}
	if cfg.TTL < 10*time.Second || cfg.TTL > MaxTTL {
		return nil, fmt.Errorf("%w: TTL must be between 10s and %s", ErrConfig, MaxTTL)
	}
	if cfg.Width == 0 {
		cfg.Width = DefaultWidth
	}
	if cfg.Height == 0 {
		cfg.Height = DefaultHeight
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := kv.Ensure(cfg.DB, bucket); err != nil {
		return nil, fmt.Errorf("captcha: %w", err)
	}
	return &Service{cfg: cfg}, nil
}

// Captcha is what the client gets: the id to send back with the answer,
// the PNG image, and when it dies.
type Captcha struct {
	ID        string
	PNG       []byte
	ExpiresAt time.Time
}

// record is what is stored: never the answer.
type record struct {
	MAC       []byte    `json:"mac"`
	ExpiresAt time.Time `json:"expires_at"`
}

var idEnc = base32.StdEncoding.WithPadding(base32.NoPadding)

// macInput binds the answer to its captcha: a fixed prefix, the id, the
// digits as ASCII.
func macInput(id, answer string) []byte {
	return []byte("keyward/captcha/v1\x00" + id + "\x00" + answer)
}

// New draws a new captcha and stores the keyed MAC of its answer.
func (s *Service) New(ctx context.Context) (Captcha, error) {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Captcha{}, err
	}
	id := idEnc.EncodeToString(raw[:])
	digits := dcaptcha.RandomDigits(Digits) // crypto/rand, no modulo bias
	answer := make([]byte, len(digits))
	for i, d := range digits {
		answer[i] = '0' + d
	}
	var png bytes.Buffer
	if _, err := dcaptcha.NewImage(id, digits, s.cfg.Width, s.cfg.Height).WriteTo(&png); err != nil {
		return Captcha{}, fmt.Errorf("captcha: drawing: %w", err)
	}
	mac, err := s.cfg.Hasher.MAC(ctx, macInput(id, string(answer)))
	if err != nil {
		return Captcha{}, err
	}
	exp := s.cfg.Now().Add(s.cfg.TTL)
	err = s.cfg.DB.Update(func(tx store.Tx) error {
		return kv.Put(tx.Bucket(bucket), []byte(id), &record{MAC: mac, ExpiresAt: exp})
	})
	if err != nil {
		return Captcha{}, fmt.Errorf("captcha: %w", err)
	}
	captchahook.Issued(id, string(answer))
	clear(answer)
	return Captcha{ID: id, PNG: png.Bytes(), ExpiresAt: exp}, nil
}

// Check verifies answer for captcha id and deletes the captcha whatever
// the outcome: ErrUnknown (no such id, or already checked), ErrExpired,
// ErrFormat (not Digits digits; spaces are ignored), ErrWrong, or nil.
// A store or MAC failure is returned as is (the captcha is gone all the
// same).
func (s *Service) Check(ctx context.Context, id, answer string) error {
	if len(id) != idLen {
		return ErrUnknown
	}
	var (
		rec   record
		found bool
	)
	err := s.cfg.DB.Update(func(tx store.Tx) error {
		b := tx.Bucket(bucket)
		var err error
		if found, err = kv.Get(b, []byte(id), &rec); err != nil || !found {
			return err
		}
		return b.Delete([]byte(id))
	})
	switch {
	case err != nil:
		return fmt.Errorf("captcha: %w", err)
	case !found:
		return ErrUnknown
	case !s.cfg.Now().Before(rec.ExpiresAt):
		return ErrExpired
	}
	answer = strings.ReplaceAll(answer, " ", "")
	if len(answer) != Digits || strings.Trim(answer, "0123456789") != "" {
		return ErrFormat
	}
	msg := macInput(id, answer)
	var ok bool
	if v, isV := s.cfg.Hasher.(Verifier); isV {
		ok, err = v.VerifyMAC(ctx, msg, rec.MAC)
	} else {
		var m []byte
		m, err = s.cfg.Hasher.MAC(ctx, msg)
		ok = err == nil && hmac.Equal(m, rec.MAC)
	}
	if err != nil {
		return err
	}
	if !ok {
		return ErrWrong
	}
	return nil
}

// Sweep deletes expired captchas and returns how many.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	now := s.cfg.Now()
	n := 0
	err := s.cfg.DB.Update(func(tx store.Tx) error {
		n = 0
		b := tx.Bucket(bucket)
		var dead [][]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var rec record
			if kv.Decode(v, &rec) != nil || !now.Before(rec.ExpiresAt) {
				dead = append(dead, append([]byte(nil), k...))
			}
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
		return 0, fmt.Errorf("captcha: sweep: %w", err)
	}
	return n, nil
}
