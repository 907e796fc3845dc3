package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/dbtest"

	"github.com/keyward/keyward/banking/ledger"
)

// clock is a settable Options.Now.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time   { return time.Unix(0, c.ns.Load()) }
func (c *clock) Set(t time.Time)  { c.ns.Store(t.UnixNano()) }

// newLedger opens a ledger on the test's store (dbtest: a bbolt file, or
// PostgreSQL under KEYWARD_BANKING_STORE=postgres), closed by t.Cleanup.
// It also returns the store, for tests that look under the ledger.
func newLedger(t testing.TB, opts ledger.Options) (*ledger.Ledger, store.DB) {
	t.Helper()
	h := dbtest.New(t)
	_, h.Sync = t.(*testing.B) // benchmarks commit as production does (fsync)
	db := h.Open()
	l, err := ledger.New(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, db
}

var keySeq atomic.Int64

func newKey(prefix string) string { return fmt.Sprintf("%s-%d", prefix, keySeq.Add(1)) }

// mustAccount opens a CNY account for owner and deposits balance into it.
func mustAccount(t testing.TB, l *ledger.Ledger, owner string, balance int64, lim *ledger.Limits) string {
	t.Helper()
	ctx := context.Background()
	a, err := l.OpenAccount(ctx, ledger.OpenAccountRequest{Owner: owner, Currency: "CNY", Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	if balance > 0 {
		if _, err := l.Deposit(ctx, ledger.CashRequest{IdempotencyKey: newKey("dep"), Account: a.ID, Amount: balance, Currency: "CNY"}); err != nil {
			t.Fatal(err)
		}
	}
	return a.ID
}

func mustVerify(t testing.TB, l *ledger.Ledger) ledger.Report {
	t.Helper()
	rep, err := l.Verify(context.Background())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func balance(t testing.TB, l *ledger.Ledger, id string) int64 {
	t.Helper()
	a, err := l.Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance
}

func TestTransfer(t *testing.T) {
	ctx := context.Background()
	l, _ := newLedger(t, ledger.Options{})
	alice := mustAccount(t, l, "cust-alice", 1000_00, nil)
	bob := mustAccount(t, l, "cust-bob", 0, nil)

	req := ledger.TransferRequest{IdempotencyKey: "alice/1", From: alice, To: bob, Amount: 250_50, Currency: "CNY",
		Memo: "房租 March", Reference: "E2E-1"}
	r, err := l.Transfer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if r.Replayed || r.FromBalance != 749_50 || r.ToBalance != 250_50 || r.Kind != ledger.KindTransfer || r.Seq != 2 || r.TransferID != "T000000000002" {
		t.Fatalf("receipt %+v", r)
	}
	if balance(t, l, alice) != 749_50 || balance(t, l, bob) != 250_50 {
		t.Fatal("balances not updated")
	}

	// Same key, same request: the stored receipt, nothing posted.
	again, err := l.Transfer(ctx, req)
	if err != nil || !again.Replayed || again.Seq != r.Seq || again.FromBalance != r.FromBalance {
		t.Fatalf("replay = %+v, %v", again, err)
	}
	if balance(t, l, alice) != 749_50 {
		t.Fatal("replay posted again")
	}
	// Same key, any field different: conflict.
	for _, mod := range []func(*ledger.TransferRequest){
		func(r *ledger.TransferRequest) { r.Amount++ },
		func(r *ledger.TransferRequest) { r.Memo = "other" },
		func(r *ledger.TransferRequest) { r.Reference = "E2E-2" },
		func(r *ledger.TransferRequest) { r.From, r.To = r.To, r.From },
	} {
		m := req
		mod(&m)
		if _, err := l.Transfer(ctx, m); !errors.Is(err, ledger.ErrIdempotencyConflict) {
			t.Fatalf("modified request with used key: %v", err)
		}
	}
	// The receipt is found by its id; the statement lists both legs.
	p, err := l.Posting(ctx, r.TransferID)
	if err != nil || p.Amount != 250_50 || p.Memo != "房租 March" {
		t.Fatalf("Posting = %+v, %v", p, err)
	}
	if _, err := l.Posting(ctx, "T000000000099"); !errors.Is(err, ledger.ErrTransferNotFound) {
		t.Fatalf("Posting(missing) = %v", err)
	}
	st, err := l.Statement(ctx, bob, 0, 10)
	if err != nil || len(st) != 1 || st[0].Amount != 250_50 || st[0].Counterparty != alice || st[0].Balance != 250_50 {
		t.Fatalf("Statement = %+v, %v", st, err)
	}
	rep := mustVerify(t, l)
	if rep.Postings != 2 || rep.Entries != 4 || rep.Totals["CNY"] != 0 || rep.CustomerTotals["CNY"] != 1000_00 || rep.ByKind[ledger.KindDeposit] != 1 {
		t.Fatalf("report %+v", rep)
	}
}

func TestTransferRefusals(t *testing.T) {
	ctx := context.Background()
	l, _ := newLedger(t, ledger.Options{})
	payer := mustAccount(t, l, "c1", 100_00, nil)
	payee := mustAccount(t, l, "c2", 0, nil)
	frozen := mustAccount(t, l, "c3", 10_00, nil)
	if _, err := l.SetState(ctx, frozen, ledger.StateFrozen); err != nil {
		t.Fatal(err)
	}
	closed := mustAccount(t, l, "c4", 0, nil)
	if _, err := l.SetState(ctx, closed, ledger.StateClosed); err != nil {
		t.Fatal(err)
	}
	usd, err := l.OpenAccount(ctx, ledger.OpenAccountRequest{Owner: "c5", Currency: "USD", Limits: &ledger.Limits{PerTransaction: 100, Daily: 100}})
	if err != nil {
		t.Fatal(err)
	}
	unknown, _ := ledger.AccountNumber("629990000000000001")

	ok := ledger.TransferRequest{From: payer, To: payee, Amount: 1_00, Currency: "CNY"}
	tests := []struct {
		name string
		mod  func(*ledger.TransferRequest)
		want error
	}{
		{"no key", func(r *ledger.TransferRequest) { r.IdempotencyKey = "" }, ledger.ErrInvalidArgument},
		{"key with space", func(r *ledger.TransferRequest) { r.IdempotencyKey = "a b" }, ledger.ErrInvalidArgument},
		{"zero", func(r *ledger.TransferRequest) { r.Amount = 0 }, ledger.ErrInvalidAmount},
		{"negative", func(r *ledger.TransferRequest) { r.Amount = -5 }, ledger.ErrInvalidAmount},
		{"bad currency", func(r *ledger.TransferRequest) { r.Currency = "XXX" }, ledger.ErrUnknownCurrency},
		{"bad payee number", func(r *ledger.TransferRequest) { r.To = payee[:18] + string('0'+(payee[18]-'0'+1)%10) }, ledger.ErrInvalidArgument},
		{"cash account", func(r *ledger.TransferRequest) { r.From = ledger.CashAccount("CNY") }, ledger.ErrInvalidArgument},
		{"memo control", func(r *ledger.TransferRequest) { r.Memo = "a\u202eb" }, ledger.ErrInvalidArgument},
		{"memo long", func(r *ledger.TransferRequest) { r.Memo = strings.Repeat("x", 141) }, ledger.ErrInvalidArgument},
		{"same account", func(r *ledger.TransferRequest) { r.To = r.From }, ledger.ErrSameAccount},
		{"unknown payee", func(r *ledger.TransferRequest) { r.To = unknown }, ledger.ErrAccountNotFound},
		{"frozen payee", func(r *ledger.TransferRequest) { r.To = frozen }, ledger.ErrAccountFrozen},
		{"frozen payer", func(r *ledger.TransferRequest) { r.From = frozen }, ledger.ErrAccountFrozen},
		{"closed payee", func(r *ledger.TransferRequest) { r.To = closed }, ledger.ErrAccountClosed},
		{"currency of payee", func(r *ledger.TransferRequest) { r.To = usd.ID }, ledger.ErrCurrencyMismatch},
		{"currency of request", func(r *ledger.TransferRequest) { r.Currency = "USD" }, ledger.ErrCurrencyMismatch},
		{"insufficient", func(r *ledger.TransferRequest) { r.Amount = 100_01 }, ledger.ErrInsufficientFunds},
		{"per-transaction limit", func(r *ledger.TransferRequest) { r.Amount = 50_000_01 }, ledger.ErrLimitExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := ok
			req.IdempotencyKey = newKey("refuse")
			tc.mod(&req)
			_, err := l.Transfer(ctx, req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			// A refusal stores nothing: the key is free for a good request.
			if req.IdempotencyKey != "" && !strings.Contains(req.IdempotencyKey, " ") {
				good := ok
				good.IdempotencyKey = req.IdempotencyKey
				if _, err := l.Transfer(ctx, good); err != nil {
					t.Fatalf("key not reusable after refusal: %v", err)
				}
			}
		})
	}
	mustVerify(t, l)
	for _, tc := range tests {
		if ledger.ErrorCode(tc.want) == "" {
			t.Errorf("no code for %v", tc.want)
		}
	}
}

func TestLimits(t *testing.T) {
	ctx := context.Background()
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Skip("no zone database:", err)
	}
	clk := newClock(time.Date(2026, 3, 1, 23, 0, 0, 0, shanghai))
	l, _ := newLedger(t, ledger.Options{Now: clk.Now})
	payer := mustAccount(t, l, "c1", 1_000_000_00, &ledger.Limits{PerTransaction: 600_00, Daily: 1000_00})
	payee := mustAccount(t, l, "c2", 0, nil)
	send := func(amount int64) (ledger.Receipt, error) {
		return l.Transfer(ctx, ledger.TransferRequest{IdempotencyKey: newKey("lim"), From: payer, To: payee, Amount: amount, Currency: "CNY"})
	}
	if _, err := send(600_00); err != nil {
		t.Fatal(err)
	}
	_, err = send(600_01)
	var le *ledger.LimitError
	if !errors.As(err, &le) || le.Kind != ledger.LimitPerTransaction || !errors.Is(err, ledger.ErrLimitExceeded) {
		t.Fatalf("per-transaction: %v", err)
	}
	_, err = send(400_01)
	if !errors.As(err, &le) || le.Kind != ledger.LimitDaily || le.Remaining != 400_00 || le.UsedToday != 600_00 {
		t.Fatalf("daily: %#v", err)
	}
	want := "daily limit of account " + payer + " is 1000.00 CNY; 600.00 CNY already sent today, so at most 400.00 CNY more until 2026-03-02 00:00 CST; 400.01 CNY requested"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("message %q\nwant it to contain %q", err, want)
	}
	if _, err := send(400_00); err != nil {
		t.Fatal(err)
	}
	st, err := l.LimitStatus(ctx, payer)
	if err != nil || st.Remaining != 0 || st.SentToday != 1000_00 || st.Day != "2026-03-01" {
		t.Fatalf("LimitStatus = %+v, %v", st, err)
	}
	// 16:00 UTC is midnight in Shanghai: a new day.
	clk.Set(time.Date(2026, 3, 1, 16, 0, 0, 0, time.UTC))
	if _, err := send(600_00); err != nil {
		t.Fatalf("next day: %v", err)
	}
	// Raising within the ceiling works; above it is refused; lowering below
	// today's usage blocks until tomorrow.
	if _, err := l.SetLimits(ctx, payer, ledger.Limits{PerTransaction: 1_000_000_01, Daily: 5_000_000_00}); !errors.Is(err, ledger.ErrInvalidArgument) {
		t.Fatalf("above ceiling: %v", err)
	}
	if _, err := l.SetLimits(ctx, payer, ledger.Limits{PerTransaction: 600_00, Daily: 500_00}); !errors.Is(err, ledger.ErrInvalidArgument) {
		t.Fatalf("per-transaction above daily: %v", err)
	}
	if _, err := l.SetLimits(ctx, payer, ledger.Limits{PerTransaction: 100_00, Daily: 500_00}); err != nil {
		t.Fatal(err)
	}
	if _, err := send(1); !errors.As(err, &le) || le.Remaining != 0 {
		t.Fatalf("after lowering: %v", err)
	}
	// Deposits and withdrawals are not limited.
	if _, err := l.Withdraw(ctx, ledger.CashRequest{IdempotencyKey: newKey("w"), Account: payer, Amount: 900_000_00, Currency: "CNY"}); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, l)
}

func TestAccountStates(t *testing.T) {
	ctx := context.Background()
	l, _ := newLedger(t, ledger.Options{})
	a := mustAccount(t, l, "c1", 5_00, nil)
	b := mustAccount(t, l, "c1", 0, nil)
	if _, err := l.SetState(ctx, a, ledger.StateClosed); !errors.Is(err, ledger.ErrIllegalTransition) {
		t.Fatalf("closing with a balance: %v", err)
	}
	if _, err := l.SetState(ctx, a, ledger.StateFrozen); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Withdraw(ctx, ledger.CashRequest{IdempotencyKey: newKey("w"), Account: a, Amount: 1, Currency: "CNY"}); !errors.Is(err, ledger.ErrAccountFrozen) {
		t.Fatalf("withdraw from frozen: %v", err)
	}
	if _, err := l.SetState(ctx, a, ledger.StateOpen); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Transfer(ctx, ledger.TransferRequest{IdempotencyKey: newKey("t"), From: a, To: b, Amount: 5_00, Currency: "CNY"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SetState(ctx, a, ledger.StateClosed); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SetState(ctx, a, ledger.StateOpen); !errors.Is(err, ledger.ErrIllegalTransition) {
		t.Fatalf("reopening: %v", err)
	}
	if _, err := l.Deposit(ctx, ledger.CashRequest{IdempotencyKey: newKey("d"), Account: a, Amount: 1, Currency: "CNY"}); !errors.Is(err, ledger.ErrAccountClosed) {
		t.Fatalf("deposit to closed: %v", err)
	}
	accs, err := l.AccountsByOwner(ctx, "c1")
	if err != nil || len(accs) != 2 {
		t.Fatalf("AccountsByOwner = %v, %v", accs, err)
	}
	if _, err := l.OpenAccount(ctx, ledger.OpenAccountRequest{ID: a, Owner: "c9", Currency: "CNY"}); !errors.Is(err, ledger.ErrAccountExists) {
		t.Fatalf("taken number: %v", err)
	}
	if _, err := l.OpenAccount(ctx, ledger.OpenAccountRequest{Owner: "c9", Currency: "USD"}); !errors.Is(err, ledger.ErrInvalidArgument) {
		t.Fatalf("no default limits for USD: %v", err)
	}
	mustVerify(t, l)
}

func TestScreen(t *testing.T) {
	ctx := context.Background()
	var blocked sync.Map
	l, _ := newLedger(t, ledger.Options{Screen: func(id string) error {
		if _, ok := blocked.Load(id); ok {
			return errors.New("on the fraud list")
		}
		return nil
	}})
	payer := mustAccount(t, l, "c1", 100_00, nil)
	payee := mustAccount(t, l, "c2", 0, nil)
	listed, _ := ledger.AccountNumber("629991234567890123")
	blocked.Store(listed, true)
	if _, err := l.OpenAccount(ctx, ledger.OpenAccountRequest{ID: listed, Owner: "c3", Currency: "CNY"}); !errors.Is(err, ledger.ErrBlocked) {
		t.Fatalf("open listed: %v", err)
	}
	req := ledger.TransferRequest{IdempotencyKey: "k1", From: payer, To: payee, Amount: 1_00, Currency: "CNY"}
	if _, err := l.Transfer(ctx, req); err != nil {
		t.Fatal(err)
	}
	blocked.Store(payee, true)
	// The replay of a transfer made before the payee was listed still
	// answers with its receipt; a new one is refused.
	if r, err := l.Transfer(ctx, req); err != nil || !r.Replayed {
		t.Fatalf("replay: %+v, %v", r, err)
	}
	req.IdempotencyKey = "k2"
	if _, err := l.Transfer(ctx, req); !errors.Is(err, ledger.ErrBlocked) {
		t.Fatalf("listed payee: %v", err)
	}
	if _, err := l.Deposit(ctx, ledger.CashRequest{IdempotencyKey: "k3", Account: payee, Amount: 1, Currency: "CNY"}); !errors.Is(err, ledger.ErrBlocked) {
		t.Fatalf("deposit to listed: %v", err)
	}
}

func TestStatementPages(t *testing.T) {
	ctx := context.Background()
	l, _ := newLedger(t, ledger.Options{})
	a := mustAccount(t, l, "c1", 1000_00, nil)
	b := mustAccount(t, l, "c2", 0, nil)
	c := mustAccount(t, l, "c3", 0, nil) // sorts after or before b; its entries must not leak in
	for i := 1; i <= 25; i++ {
		if _, err := l.Transfer(ctx, ledger.TransferRequest{IdempotencyKey: newKey("s"), From: a, To: b, Amount: int64(i), Currency: "CNY"}); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Transfer(ctx, ledger.TransferRequest{IdempotencyKey: newKey("s"), From: a, To: c, Amount: 1, Currency: "CNY"}); err != nil {
			t.Fatal(err)
		}
	}
	var got []int64
	var before uint64
	for {
		page, err := l.Statement(ctx, b, before, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			if e.Account != b {
				t.Fatalf("entry of %s in %s's statement", e.Account, b)
			}
			got = append(got, e.Amount)
		}
		before = page[len(page)-1].Seq
	}
	if len(got) != 25 || got[0] != 25 || got[24] != 1 {
		t.Fatalf("statement amounts %v", got)
	}
	if _, err := l.Statement(ctx, b, 0, 0); !errors.Is(err, ledger.ErrInvalidArgument) {
		t.Fatal(err)
	}
}

// TestConcurrentTransfers runs many goroutines over few accounts (so
// batches hold refusals, replays and conflicting accounts together), then
// checks the books.
func TestConcurrentTransfers(t *testing.T) {
	ctx := context.Background()
	l, _ := newLedger(t, ledger.Options{MaxBatchSize: 32})
	const nAcc, workers, per = 8, 32, 40
	lim := &ledger.Limits{PerTransaction: 1_000_00, Daily: 1_000_000_00}
	var ids []string
	for i := range nAcc {
		ids = append(ids, mustAccount(t, l, fmt.Sprintf("c%d", i), 3_00, lim))
	}
	var applied, refused, replayed atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				req := ledger.TransferRequest{IdempotencyKey: fmt.Sprintf("w%d-%d", w, i/2), // each key sent twice
					From: ids[(w+i/2)%nAcc], To: ids[(w+i/2+1+w%3)%nAcc], Amount: int64(1 + (w*(i/2))%3000), Currency: "CNY"}
				r, err := l.Transfer(ctx, req)
				switch {
				case errors.Is(err, ledger.ErrInsufficientFunds), errors.Is(err, ledger.ErrLimitExceeded):
					refused.Add(1)
				case err != nil:
					t.Error(err)
					return
				case r.Replayed:
					replayed.Add(1)
				default:
					applied.Add(1)
				}
			}
		})
	}
	wg.Wait()
	rep := mustVerify(t, l)
	if rep.ByKind[ledger.KindTransfer] != uint64(applied.Load()) || rep.CustomerTotals["CNY"] != nAcc*3_00 {
		t.Fatalf("applied %d, journal %d transfers; customers hold %d", applied.Load(), rep.ByKind[ledger.KindTransfer], rep.CustomerTotals["CNY"])
	}
	t.Logf("applied %d, replayed %d, refused %d", applied.Load(), replayed.Load(), refused.Load())
}

// TestVerifyFindsTampering edits the file behind the ledger's back.
func TestVerifyFindsTampering(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		tamper func(tx store.Tx, a, b string) error
		want   string
	}{
		{"account records swapped", func(tx store.Tx, a, b string) error {
			bk := tx.Bucket([]byte("ledger-accounts"))
			va, vb := slices.Clone(bk.Get([]byte(a))), slices.Clone(bk.Get([]byte(b)))
			if err := bk.Put([]byte(a), vb); err != nil {
				return err
			}
			return bk.Put([]byte(b), va)
		}, "entries sum to"},
		{"entry amount edited", func(tx store.Tx, _, _ string) error {
			bk := tx.Bucket([]byte("ledger-entries"))
			k := []byte{0, 0, 0, 0, 0, 0, 0, 2, 1}
			v := strings.Replace(string(bk.Get(k)), `"amount":2500`, `"amount":2600`, 1)
			return bk.Put(k, []byte(v))
		}, "does not match posting"},
		{"account record garbled", func(tx store.Tx, a, _ string) error {
			bk := tx.Bucket([]byte("ledger-accounts"))
			v := slices.Clone(bk.Get([]byte(a)))
			return bk.Put([]byte(a), v[:len(v)-1])
		}, "does not decode"},
		{"entry deleted", func(tx store.Tx, _, _ string) error {
			return tx.Bucket([]byte("ledger-entries")).Delete([]byte{0, 0, 0, 0, 0, 0, 0, 2, 1})
		}, "half applied"},
		{"entry chain broken", func(tx store.Tx, _, _ string) error {
			bk := tx.Bucket([]byte("ledger-entries"))
			k := []byte{0, 0, 0, 0, 0, 0, 0, 2, 0}
			v := strings.Replace(string(bk.Get(k)), `"prev":1`, `"prev":0`, 1)
			return bk.Put(k, []byte(v))
		}, "previous entry"},
		{"posting deleted", func(tx store.Tx, _, _ string) error {
			return tx.Bucket([]byte("ledger-journal")).Delete([]byte{0, 0, 0, 0, 0, 0, 0, 2})
		}, "holds 1 postings"},
		{"posting amount edited", func(tx store.Tx, _, _ string) error {
			bk := tx.Bucket([]byte("ledger-journal"))
			k := []byte{0, 0, 0, 0, 0, 0, 0, 2}
			v := strings.Replace(string(bk.Get(k)), `"amount":2500`, `"amount":2600`, 1)
			return bk.Put(k, []byte(v))
		}, "does not match posting"},
		{"idempotency record dropped", func(tx store.Tx, _, _ string) error {
			return tx.Bucket([]byte("ledger-idempotency")).Delete([]byte("t1"))
		}, "idempotency record"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, db := newLedger(t, ledger.Options{})
			a := mustAccount(t, l, "c1", 100_00, nil)
			b := mustAccount(t, l, "c2", 0, nil)
			if _, err := l.Transfer(ctx, ledger.TransferRequest{IdempotencyKey: "t1", From: a, To: b, Amount: 25_00, Currency: "CNY"}); err != nil {
				t.Fatal(err)
			}
			mustVerify(t, l)
			if err := db.Update(func(tx store.Tx) error { return tc.tamper(tx, a, b) }); err != nil {
				t.Fatal(err)
			}
			_, err := l.Verify(ctx)
			if !errors.Is(err, ledger.ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v, want ErrCorrupt mentioning %q", err, tc.want)
			}
		})
	}
}
