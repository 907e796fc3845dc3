package otp

import (
	"bytes"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/keyward/keyward/banking/auth"
	"github.com/keyward/keyward/banking/auth/mask"
	"github.com/keyward/keyward/banking/internal/kv"
	"github.com/keyward/keyward/banking/store"
)

// Issue creates a code for the customer and purpose (e.g. "login",
// "change-password", "transfer"), replacing any earlier code for the same
// pair, stores its keyed hash and sends it to the customer's registered
// phone. It fails with ErrRateLimited (as *RateLimitedError) when the
// customer had IssuesPerHour codes in the last hour, and with ErrSend when
// the gateway fails (the new code is then cancelled; the attempt still
// counts against the hourly limit, so a failing gateway is not hammered).
func (s *Service) Issue(ctx context.Context, customerID, purpose string) (Sent, error) {
	if err := checkInput(customerID, purpose); err != nil {
		return Sent{}, err
	}
	now := s.cfg.Now()
	// Cheap refusal first: no phone lookup, no keyed hash, no write.
	var log issues
	err := s.cfg.DB.View(func(tx store.Tx) error {
		_, err := kv.Get(tx.Bucket(bucketIssues), []byte(customerID), &log)
		return err
	})
	if err != nil {
		return Sent{}, fmt.Errorf("otp: %w", err)
	}
	log.prune(now)
	if len(log.Times) >= s.cfg.IssuesPerHour {
		return Sent{}, s.refuse(ctx, customerID, now)
	}

	phone, err := s.cfg.Phone(ctx, customerID)
	if err != nil {
		return Sent{}, fmt.Errorf("otp: phone of customer: %w", err)
	}
	if phone == "" {
		return Sent{}, fmt.Errorf("otp: customer has no registered phone: %w", ErrBadInput)
	}
	code, err := randomDigits(s.rand, Digits)
	if err != nil {
		return Sent{}, fmt.Errorf("otp: random code: %w", err)
	}
	defer clear(code)
	nonce := make([]byte, 16)
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return Sent{}, fmt.Errorf("otp: random nonce: %w", err)
	}
	mac, err := s.cfg.Hasher.MAC(ctx, macInput(customerID, purpose, nonce, code))
	if err != nil {
		return Sent{}, fmt.Errorf("otp: keyed hash: %w", err)
	}
	rec := record{Nonce: nonce, MAC: mac, IssuedAt: now, ExpiresAt: now.Add(s.cfg.TTL)}
	key := kv.Key(customerID, purpose)
	limited := false
	err = s.cfg.DB.Update(func(tx store.Tx) error {
		var log issues
		if _, err := kv.Get(tx.Bucket(bucketIssues), []byte(customerID), &log); err != nil {
			return err
		}
		log.prune(now)
		if limited = len(log.Times) >= s.cfg.IssuesPerHour; limited {
			return nil // a concurrent Issue took the last slot
		}
		log.Times = append(log.Times, now)
		if err := kv.Put(tx.Bucket(bucketIssues), []byte(customerID), &log); err != nil {
			return err
		}
		return kv.Put(tx.Bucket(bucketCodes), key, &rec)
	})
	if err != nil {
		return Sent{}, fmt.Errorf("otp: store code: %w", err)
	}
	if limited {
		return Sent{}, s.refuse(ctx, customerID, now)
	}

	sendCtx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	defer cancel()
	text := s.cfg.Message(purpose, string(code), s.cfg.TTL)
	if err := s.send(sendCtx, phone, text, rec.ExpiresAt); err != nil {
		s.cancelCode(key, nonce)
		if strings.Contains(err.Error(), string(code)) {
			// The gateway echoed the message: keep the code out of our error.
			return Sent{}, ErrSend
		}
		return Sent{}, fmt.Errorf("%w: %w", ErrSend, err)
	}
	return Sent{Phone: mask.Phone(phone), ExpiresAt: rec.ExpiresAt}, nil
}

// refuse builds the rate-limit error and raises one alert per window.
func (s *Service) refuse(ctx context.Context, customerID string, now time.Time) error {
	var retry time.Duration
	alert := false
	var count int
	err := s.cfg.DB.Update(func(tx store.Tx) error {
		retry, alert, count = 0, false, 0 // fn may run again (store contract)
		b := tx.Bucket(bucketIssues)
		var log issues
		if _, err := kv.Get(b, []byte(customerID), &log); err != nil {
			return err
		}
		log.prune(now)
		if len(log.Times) == 0 {
			return nil
		}
		retry = log.Times[0].Add(time.Hour).Sub(now)
		count = len(log.Times)
		if alert = !log.AlertedFor.Equal(log.Times[0]); alert {
			log.AlertedFor = log.Times[0]
			return kv.Put(b, []byte(customerID), &log)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("otp: %w", err)
	}
	if alert {
		s.cfg.Alerts.Alert(ctx, auth.Event{Kind: auth.KindOTPRateLimited, Account: customerID,
			IP: auth.Source(ctx), Time: now, Count: count})
	}
	return &RateLimitedError{RetryAfter: retry}
}

// cancelCode deletes the record if it is still the one issued with nonce.
func (s *Service) cancelCode(key, nonce []byte) {
	_ = s.cfg.DB.Update(func(tx store.Tx) error {
		b := tx.Bucket(bucketCodes)
		var rec record
		if found, err := kv.Get(b, key, &rec); err != nil || !found || !bytes.Equal(rec.Nonce, nonce) {
			return err
		}
		return b.Delete(key)
	})
}

// Verify checks a code for the customer and purpose. nil means the code
// was right, still valid, and is now used: no second Verify of it succeeds,
// however close together. A wrong code is *InvalidError with the guesses
// left, until the last allowed wrong guess, which is ErrOTPLocked (and
// raises an alert); a locked, used or expired code stays refused whatever
// is typed, until Issue replaces it. The comparison of keyed hashes is in
// constant time. A malformed code (not 6 ASCII digits) is ErrOTPFormat and
// is not counted as a guess.
func (s *Service) Verify(ctx context.Context, customerID, purpose, code string) error {
	if err := checkInput(customerID, purpose); err != nil {
		return err
	}
	if len(code) != Digits || strings.Trim(code, "0123456789") != "" {
		return ErrOTPFormat
	}
	key := kv.Key(customerID, purpose)
	// The keyed hash may be a network call to keysvc: compute it outside
	// the write transaction, with the nonce read first; if the code was
	// replaced in between, start again with the new nonce.
	for range 3 {
		var rec record
		var found bool
		err := s.cfg.DB.View(func(tx store.Tx) (err error) {
			found, err = kv.Get(tx.Bucket(bucketCodes), key, &rec)
			return err
		})
		if err != nil {
			return fmt.Errorf("otp: %w", err)
		}
		if !found {
			return ErrOTPNotFound
		}
		if err := s.state(&rec, s.cfg.Now()); err != nil {
			return err
		}
		match, err := s.matches(ctx, macInput(customerID, purpose, rec.Nonce, []byte(code)), rec.MAC)
		if err != nil {
			return fmt.Errorf("otp: keyed hash: %w", err)
		}
		result, err := s.settle(ctx, customerID, key, rec.Nonce, match)
		if errors.Is(err, errReplaced) {
			continue
		}
		if err != nil {
			return err
		}
		if result == nil {
			s.spent(ctx, customerID, code)
		}
		return result
	}
	return ErrOTPNotFound
}

var errReplaced = errors.New("otp: code replaced during verification")

// matches reports whether in has the stored MAC: through the Hasher's
// Verifier when it has one (the stored value names its key version), else
// by recomputing it and comparing in constant time.
func (s *Service) matches(ctx context.Context, in, stored []byte) (bool, error) {
	defer clear(in)
	if v, ok := s.cfg.Hasher.(Verifier); ok {
		return v.VerifyMAC(ctx, in, stored)
	}
	mac, err := s.cfg.Hasher.MAC(ctx, in)
	if err != nil {
		return false, err
	}
	return hmac.Equal(mac, stored), nil
}

// state refuses a code that can no longer verify, in the order a person
// would want to hear it.
func (s *Service) state(rec *record, now time.Time) error {
	switch {
	case rec.Used:
		return ErrOTPUsed
	case rec.Failures >= s.cfg.MaxGuesses:
		return ErrOTPLocked
	case !now.Before(rec.ExpiresAt):
		return ErrOTPExpired
	}
	return nil
}

// settle records the outcome of one guess (match: the code's MAC matched
// the record issued with nonce) inside one write transaction, so
// concurrent guesses are counted one by one and a right code is used once.
// The first return is the verdict; the second an operational error.
func (s *Service) settle(ctx context.Context, customerID string, key, nonce []byte, match bool) (verdict, err error) {
	now := s.cfg.Now()
	var rec record
	lockedNow := false
	err = s.cfg.DB.Update(func(tx store.Tx) error {
		rec, lockedNow = record{}, false // fn may run again (store contract)
		b := tx.Bucket(bucketCodes)
		found, err := kv.Get(b, key, &rec)
		switch {
		case err != nil:
			return err
		case !found:
			verdict = ErrOTPNotFound
			return nil
		case !bytes.Equal(rec.Nonce, nonce):
			return errReplaced
		}
		if verdict = s.state(&rec, now); verdict != nil {
			return nil
		}
		if match {
			rec.Used = true
			verdict = nil
		} else {
			rec.Failures++
			verdict = &InvalidError{Remaining: s.cfg.MaxGuesses - rec.Failures}
			if rec.Failures >= s.cfg.MaxGuesses {
				verdict, lockedNow = ErrOTPLocked, true
			}
		}
		return kv.Put(b, key, &rec)
	})
	if errors.Is(err, errReplaced) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("otp: %w", err)
	}
	if lockedNow {
		s.cfg.Alerts.Alert(ctx, auth.Event{Kind: auth.KindOTPLocked, Account: customerID,
			IP: auth.Source(ctx), Time: now, Count: rec.Failures})
	}
	return verdict, nil
}

// Sweep deletes expired codes and empty issue logs; run it every few
// minutes. Expired codes are refused whether swept or not (a swept one is
// ErrOTPNotFound instead of ErrOTPExpired).
func (s *Service) Sweep(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := s.cfg.Now()
	n := 0
	err := s.cfg.DB.Update(func(tx store.Tx) error {
		n = 0
		codes := tx.Bucket(bucketCodes)
		var dead [][]byte
		err := codes.ForEach(func(k, v []byte) error {
			var rec record
			if _, err := kv.Get(codes, k, &rec); err != nil || !now.Before(rec.ExpiresAt) {
				dead = append(dead, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dead {
			if err := codes.Delete(k); err != nil {
				return err
			}
		}
		n = len(dead)
		logs := tx.Bucket(bucketIssues)
		dead = dead[:0]
		err = logs.ForEach(func(k, v []byte) error {
			var log issues
			if _, err := kv.Get(logs, k, &log); err == nil {
				log.prune(now)
				if len(log.Times) > 0 {
					return nil
				}
			}
			dead = append(dead, bytes.Clone(k))
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dead {
			if err := logs.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("otp: sweep: %w", err)
	}
	if err := s.expireKept(now); err != nil {
		return n, fmt.Errorf("otp: sweep: %w", err)
	}
	return n, nil
}
