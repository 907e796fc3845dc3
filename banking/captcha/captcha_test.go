package captcha_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"image/png"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/captcha"
	"github.com/keyward/keyward/banking/internal/captchahook"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/dbtest"
)

// hasher is HMAC-SHA256 under a fixed key: banking uses keysvc's.
type hasher struct{}

func (hasher) MAC(_ context.Context, msg []byte) ([]byte, error) {
	m := hmac.New(sha256.New, []byte("captcha test key, 32 bytes long!"))
	m.Write(msg)
	return m.Sum(nil), nil
}

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func open(t *testing.T) store.DB { return dbtest.New(t).Open() }
func wrongOf(a string) string    { return strings.Map(func(r rune) rune { return '0' + (r-'0'+1)%10 }, a) }
func newSvc(t *testing.T, db store.DB, c *clock) *captcha.Service {
	t.Helper()
	s, err := captcha.New(captcha.Config{DB: db, Hasher: hasher{}, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func issue(t *testing.T, s *captcha.Service) (captcha.Captcha, string) {
	t.Helper()
	c, err := s.New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	a, ok := captchahook.Answer(c.ID)
	if !ok {
		t.Fatal("the test hook did not see the answer")
	}
	return c, a
}

// TestCaptcha: a PNG image, the answer nowhere in the store, right once
// and then gone, wrong spends it too, expired after 2 minutes, checked on
// another service sharing the store, random ids and answers, sweep.
func TestCaptcha(t *testing.T) {
	defer captchahook.Record()()
	ctx := context.Background()
	clk := newClock()
	db := open(t)
	a, b := newSvc(t, db, clk), newSvc(t, db, clk) // two nodes, one store

	c, ans := issue(t, a)
	img, err := png.Decode(bytes.NewReader(c.PNG))
	if err != nil || img.Bounds().Dx() != captcha.DefaultWidth || img.Bounds().Dy() != captcha.DefaultHeight {
		t.Fatalf("image: %v %v", err, img)
	}
	if !c.ExpiresAt.Equal(clk.now().Add(captcha.MaxTTL)) {
		t.Fatalf("expires %v", c.ExpiresAt)
	}
	// the answer is never stored in clear
	_ = db.View(func(tx store.Tx) error {
		cur := tx.Bucket([]byte("bank-captcha")).Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			if bytes.Contains(v, []byte(ans)) {
				t.Errorf("the store holds the answer in clear: %s", v)
			}
		}
		return nil
	})
	if err := b.Check(ctx, c.ID, ans[:3]+" "+ans[3:]); err != nil {
		t.Fatalf("right answer on the other node: %v", err)
	}
	if err := a.Check(ctx, c.ID, ans); !errors.Is(err, captcha.ErrUnknown) {
		t.Fatalf("reuse: %v, want ErrUnknown", err)
	}

	c, ans = issue(t, a)
	if err := a.Check(ctx, c.ID, wrongOf(ans)); !errors.Is(err, captcha.ErrWrong) {
		t.Fatalf("wrong: %v", err)
	}
	if err := a.Check(ctx, c.ID, ans); !errors.Is(err, captcha.ErrUnknown) {
		t.Fatalf("right after wrong: %v, want ErrUnknown (single use)", err)
	}

	c, ans = issue(t, a)
	if err := a.Check(ctx, c.ID, "12ab56"); !errors.Is(err, captcha.ErrFormat) {
		t.Fatalf("format: %v", err)
	}
	if err := a.Check(ctx, c.ID, ans); !errors.Is(err, captcha.ErrUnknown) {
		t.Fatalf("right after a malformed answer: %v", err)
	}

	c, ans = issue(t, a)
	clk.add(captcha.MaxTTL)
	if err := b.Check(ctx, c.ID, ans); !errors.Is(err, captcha.ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	if err := a.Check(ctx, "not-an-id", ans); !errors.Is(err, captcha.ErrUnknown) {
		t.Fatalf("bad id: %v", err)
	}

	// random: 20 captchas, distinct ids, answers not all equal
	ids, answers := map[string]bool{}, map[string]bool{}
	for range 20 {
		c, ans := issue(t, a)
		ids[c.ID], answers[ans] = true, true
	}
	if len(ids) != 20 || len(answers) < 15 {
		t.Fatalf("%d distinct ids, %d distinct answers of 20", len(ids), len(answers))
	}
	clk.add(captcha.MaxTTL)
	if n, err := a.Sweep(ctx); err != nil || n != 20 {
		t.Fatalf("sweep: %d %v, want 20", n, err)
	}
}

// TestCheckedOnce: eight nodes check one captcha with the right answer at
// once; exactly one succeeds.
func TestCheckedOnce(t *testing.T) {
	defer captchahook.Record()()
	clk := newClock()
	db := open(t)
	s := newSvc(t, db, clk)
	c, ans := issue(t, s)
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		n := newSvc(t, db, clk)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n.Check(context.Background(), c.ID, ans) == nil {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d checks succeeded, want 1", ok.Load())
	}
}

// BenchmarkNewCheck: one captcha drawn, stored and checked (bbolt, local
// HMAC): what a login under captcha adds on the bank's side, keysvc aside.
func BenchmarkNewCheck(b *testing.B) {
	defer captchahook.Record()()
	db := dbtest.New(b).Open()
	s, err := captcha.New(captcha.Config{DB: db, Hasher: hasher{}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var size int
	for b.Loop() {
		c, err := s.New(ctx)
		if err != nil {
			b.Fatal(err)
		}
		size += len(c.PNG)
		ans, _ := captchahook.Answer(c.ID)
		if err := s.Check(ctx, c.ID, ans); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)/float64(b.N), "png-bytes/op")
}
