package payee_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/internal/luhn"
	"github.com/keyward/keyward/banking/payee"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/dbtest"
)

// account makes a valid n-digit account number from a seed.
func account(n, seed int) string {
	body := fmt.Sprintf("6%0*d", n-2, seed)
	return body + string(luhn.CheckDigit(body))
}

func newBook(t *testing.T, db store.DB, max int) *payee.Book {
	t.Helper()
	clk := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	b, err := payee.New(payee.Config{DB: db, Max: max, Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clk = clk.Add(time.Second) // each add a second later: List's order is checkable
		return clk
	}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAddListRemove: payees are kept per customer with Chinese text
// intact, listed oldest first, removed by id by their owner only.
func TestAddListRemove(t *testing.T) {
	ctx := context.Background()
	b := newBook(t, dbtest.New(t).Open(), 0)
	p1, err := b.Add(ctx, "c1", payee.Payee{Account: "6222 0202 0011 2233 446", Name: " 王小明 ", Bank: "中国工商银行", Nickname: "房东"})
	if err != nil {
		t.Fatal(err)
	}
	if p1.Account != "6222020200112233446" || p1.Name != "王小明" || !strings.HasPrefix(p1.ID, "p") || len(p1.ID) != 17 {
		t.Fatalf("stored %+v", p1)
	}
	p2, err := b.Add(ctx, "c1", payee.Payee{Account: account(16, 7), Name: "Bob Li"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add(ctx, "c10", payee.Payee{Account: account(19, 8), Name: "Someone Else"}); err != nil {
		t.Fatal(err)
	}
	got, err := b.List(ctx, "c1")
	if err != nil || len(got) != 2 || got[0] != p1 || got[1] != p2 {
		t.Fatalf("List(c1) = %+v, %v; want [%+v %+v]", got, err, p1, p2)
	}
	if _, err := b.Add(ctx, "c1", payee.Payee{Account: "6222-0202-0011-2233-446", Name: "王小明"}); !errors.Is(err, payee.ErrExists) {
		t.Fatalf("the same account again: %v, want ErrExists", err)
	}
	if _, err := b.Remove(ctx, "c10", p1.ID); !errors.Is(err, payee.ErrNotFound) {
		t.Fatalf("another customer removes c1's payee: %v, want ErrNotFound", err)
	}
	if rm, err := b.Remove(ctx, "c1", p1.ID); err != nil || rm != p1 {
		t.Fatalf("Remove = %+v, %v", rm, err)
	}
	if _, err := b.Remove(ctx, "c1", p1.ID); !errors.Is(err, payee.ErrNotFound) {
		t.Fatalf("removed twice: %v", err)
	}
	for _, bad := range []string{"", "p", "x0123456789abcdef", "p0123456789abcdeg"} {
		if _, err := b.Remove(ctx, "c1", bad); !errors.Is(err, payee.ErrNotFound) {
			t.Fatalf("Remove(%q): %v", bad, err)
		}
	}
	if got, _ := b.List(ctx, "c1"); len(got) != 1 || got[0] != p2 {
		t.Fatalf("after remove: %+v", got)
	}
	if got, err := b.List(ctx, "c2"); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("no payees: %#v, %v (want an empty, non-nil list)", got, err)
	}
}

func TestValidation(t *testing.T) {
	good := payee.Payee{Account: account(19, 1), Name: "王小明"}
	for _, c := range []struct {
		name string
		edit func(p *payee.Payee)
		want string // in the message
	}{
		{"check digit", func(p *payee.Payee) { p.Account = p.Account[:18] + string('0'+(p.Account[18]-'0'+1)%10) }, "mistyped"},
		{"15 digits", func(p *payee.Payee) { p.Account = account(15, 1) }, "16 to 19"},
		{"20 digits", func(p *payee.Payee) { p.Account = account(20, 1) }, "16 to 19"},
		{"letters", func(p *payee.Payee) { p.Account = "62220202001122334x6" }, "account"},
		{"leading zero", func(p *payee.Payee) { b := "0" + account(19, 1)[1:18]; p.Account = b + string(luhn.CheckDigit(b)) }, "account"},
		{"no name", func(p *payee.Payee) { p.Name = "  " }, "name is required"},
		{"long name", func(p *payee.Payee) { p.Name = strings.Repeat("王", 65) }, "name is at most 64"},
		{"control", func(p *payee.Payee) { p.Name = "王\n小明" }, "name must not"},
		{"bidi override", func(p *payee.Payee) { p.Nickname = "a\u202eb" }, "nickname must not"},
		{"markup", func(p *payee.Payee) { p.Bank = "<b>bank</b>" }, "bank must not"},
		{"long nickname", func(p *payee.Payee) { p.Nickname = strings.Repeat("x", 33) }, "nickname is at most 32"},
	} {
		p := good
		c.edit(&p)
		_, err := payee.Normalise(p)
		if !errors.Is(err, payee.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), p.Account) && len(p.Account) > 4 {
			t.Errorf("%s: the error repeats the account number: %v", c.name, err)
		}
	}
	if _, err := payee.Normalise(good); err != nil {
		t.Fatalf("good payee: %v", err)
	}
	if _, err := payee.Normalise(payee.Payee{Account: account(16, 3), Name: strings.Repeat("王", 64), Nickname: strings.Repeat("房", 32)}); err != nil {
		t.Fatalf("longest Chinese fields: %v", err)
	}
}

// TestLimitUnderConcurrency: at Max-1 payees, eight adds at once (four on
// each of two Books sharing the store, as two banking nodes) leave exactly
// Max: the count is checked in the writing transaction.
func TestLimitUnderConcurrency(t *testing.T) {
	ctx := context.Background()
	const max = 5
	dbs := dbtest.New(t).Nodes(2)
	books := []*payee.Book{newBook(t, dbs[0], max), newBook(t, dbs[1], max)}
	for i := range max - 1 {
		if _, err := books[0].Add(ctx, "c1", payee.Payee{Account: account(19, i), Name: "Payee"}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, full int
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := books[i%2].Add(ctx, "c1", payee.Payee{Account: account(19, 100+i), Name: "Payee"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, payee.ErrFull):
				full++
			default:
				t.Errorf("add: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 || full != 7 {
		t.Fatalf("%d added, %d refused as full; want 1 and 7", ok, full)
	}
	if got, _ := books[1].List(ctx, "c1"); len(got) != max {
		t.Fatalf("%d payees kept, want %d", len(got), max)
	}
}

func TestConfig(t *testing.T) {
	if _, err := payee.New(payee.Config{}); !errors.Is(err, payee.ErrConfig) {
		t.Fatalf("no DB: %v", err)
	}
	if _, err := payee.New(payee.Config{DB: dbtest.New(t).Open(), Max: -1}); !errors.Is(err, payee.ErrConfig) {
		t.Fatalf("Max -1: %v", err)
	}
}
