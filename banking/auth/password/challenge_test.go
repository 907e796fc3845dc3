package password_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/auth/internal/authtest"
	"github.com/keyward/keyward/banking/auth/password"
)

func newChallenges(t *testing.T) (*password.Challenges, *authtest.Clock) {
	t.Helper()
	clk := authtest.NewClock()
	c, err := password.NewChallenges(password.ChallengeConfig{DB: authtest.MustOpenDB(t), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return c, clk
}

func blob(pw string, challenge string) []byte {
	raw, err := base64.RawURLEncoding.DecodeString(challenge)
	if err != nil {
		panic(err)
	}
	return append(append([]byte(pw), 0), raw...)
}

func TestChallengeConfig(t *testing.T) {
	db := authtest.MustOpenDB(t)
	for _, cfg := range []password.ChallengeConfig{
		{},
		{DB: db, TTL: 3 * time.Minute},
		{DB: db, TTL: time.Millisecond},
	} {
		if _, err := password.NewChallenges(cfg); !errors.Is(err, password.ErrConfig) {
			t.Errorf("%+v: err = %v, want ErrConfig", cfg.TTL, err)
		}
	}
}

func TestChallengeLifecycle(t *testing.T) {
	ctx := context.Background()
	c, clk := newChallenges(t)
	ch, err := c.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Value) != 43 || !ch.ExpiresAt.Equal(clk.Now().Add(2*time.Minute)) {
		t.Fatalf("challenge %q expires %v", ch.Value, ch.ExpiresAt)
	}
	pw, err := c.Redeem(ctx, blob("Tr0ub4dor&3x", ch.Value), ch.Value)
	if err != nil || string(pw) != "Tr0ub4dor&3x" {
		t.Fatalf("Redeem = %q, %v", pw, err)
	}
	if _, err := c.Redeem(ctx, blob("Tr0ub4dor&3x", ch.Value), ch.Value); !errors.Is(err, password.ErrChallengeUsed) {
		t.Fatalf("replay: %v, want ErrChallengeUsed", err)
	}

	ch2, _ := c.New(ctx)
	clk.Advance(2 * time.Minute)
	if err := c.Consume(ctx, ch2.Value); !errors.Is(err, password.ErrChallengeExpired) {
		t.Fatalf("expired: %v", err)
	}
	var other [32]byte
	if err := c.Consume(ctx, base64.RawURLEncoding.EncodeToString(other[:])); !errors.Is(err, password.ErrChallengeUnknown) {
		t.Fatalf("unknown: %v", err)
	}
	if err := c.Consume(ctx, "not-a-challenge"); !errors.Is(err, password.ErrChallengeUnknown) {
		t.Fatalf("malformed: %v", err)
	}
}

func TestRedeemConsumesEvenOnMismatch(t *testing.T) {
	ctx := context.Background()
	c, _ := newChallenges(t)
	ch, _ := c.New(ctx)
	other, _ := c.New(ctx)
	if _, err := c.Redeem(ctx, blob("pw-one", other.Value), ch.Value); !errors.Is(err, password.ErrChallengeMismatch) {
		t.Fatalf("wrong challenge inside: %v", err)
	}
	if _, err := c.Redeem(ctx, blob("pw-one", ch.Value), ch.Value); !errors.Is(err, password.ErrChallengeUsed) {
		t.Fatalf("retry after mismatch: %v, want ErrChallengeUsed", err)
	}
}

func TestConsumeConcurrent(t *testing.T) {
	ctx := context.Background()
	c, _ := newChallenges(t)
	ch, _ := c.New(ctx)
	var ok, used atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := c.Consume(ctx, ch.Value); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, password.ErrChallengeUsed):
				used.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || used.Load() != 49 {
		t.Fatalf("ok=%d used=%d, want 1 and 49", ok.Load(), used.Load())
	}
}

func TestSplitPasswordChallenge(t *testing.T) {
	var raw [32]byte
	for i := range raw {
		raw[i] = byte(i + 1)
	}
	ch := base64.RawURLEncoding.EncodeToString(raw[:])
	good := blob("secret-pw", ch)
	other := append([]byte(nil), good...)
	other[len(other)-1] ^= 1
	for _, tc := range []struct {
		name  string
		plain []byte
		want  string
		err   error
	}{
		{"good", good, "secret-pw", nil},
		{"challenge differs", other, "", password.ErrChallengeMismatch},
		{"no separator", append([]byte("secret-pw"), raw[:]...), "", password.ErrChallengeMismatch},
		{"text challenge", append([]byte("secret-pw\x00"), ch...), "", password.ErrChallengeMismatch},
		{"empty password", append([]byte{0}, raw[:]...), "", password.ErrChallengeMismatch},
		{"NUL in password", blob("sec\x00ret", ch), "", password.ErrChallengeMismatch},
		{"too short", raw[:], "", password.ErrChallengeMismatch},
		{"nothing", nil, "", password.ErrChallengeMismatch},
		{"password is 0x00 bytes", blob(string(bytes.Repeat([]byte{0}, 3)), ch), "", password.ErrChallengeMismatch},
	} {
		pw, err := password.SplitPasswordChallenge(tc.plain, ch)
		if !errors.Is(err, tc.err) || string(pw) != tc.want {
			t.Errorf("%s: %q, %v; want %q, %v", tc.name, pw, err, tc.want, tc.err)
		}
	}
	if _, err := password.SplitPasswordChallenge(good, "short"); !errors.Is(err, password.ErrChallengeMismatch) {
		t.Errorf("bad challenge value: %v", err)
	}
	// The password returned is a copy: wiping the blob leaves it intact.
	pw, _ := password.SplitPasswordChallenge(good, ch)
	clear(good)
	if string(pw) != "secret-pw" {
		t.Errorf("password aliases the blob")
	}
}

func TestSweep(t *testing.T) {
	ctx := context.Background()
	c, clk := newChallenges(t)
	var old []password.Challenge
	for range 5 {
		ch, _ := c.New(ctx)
		old = append(old, ch)
	}
	clk.Advance(90 * time.Second)
	fresh, _ := c.New(ctx)
	clk.Advance(31 * time.Second) // the first five are expired, fresh is not
	n, err := c.Sweep(ctx)
	if err != nil || n != 5 {
		t.Fatalf("Sweep = %d, %v; want 5", n, err)
	}
	if err := c.Consume(ctx, old[0].Value); !errors.Is(err, password.ErrChallengeUnknown) {
		t.Fatalf("swept: %v", err)
	}
	if err := c.Consume(ctx, fresh.Value); err != nil {
		t.Fatalf("fresh: %v", err)
	}
}
